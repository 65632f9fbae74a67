package store

import (
	"encoding/json"
	"fmt"
	"time"
)

// auditRecord is the stored form of an AuditEvent, shared by the backends
// so that every one of them writes the same bytes. A private type, as the
// backends' key records are: a change to the API's JSON cannot change the
// data. Seq is not part of it: a backend keeps it beside the record (the
// bbolt key, the Redis score), since the same record has one cursor per
// view.
type auditRecord struct {
	ID          string    `json:"id"`
	Time        time.Time `json:"time"`
	Action      string    `json:"action"`
	ActorType   string    `json:"actor_type"`
	ActorID     string    `json:"actor_id,omitempty"`
	OnBehalfOf  string    `json:"on_behalf_of,omitempty"`
	Via         string    `json:"via,omitempty"`
	TeamID      string    `json:"team_id"`
	ClientID    string    `json:"client_id,omitempty"`
	RequestID   string    `json:"request_id,omitempty"`
	SourceAddr  string    `json:"source_addr,omitempty"`
	UserAgent   string    `json:"user_agent,omitempty"`
	Outcome     string    `json:"outcome,omitempty"`
	Fields      []string  `json:"fields,omitempty"`
	Reason      string    `json:"reason,omitempty"`
	Count       int       `json:"count,omitempty"`
	StatusIndex int64     `json:"status_index,omitempty"`
}

// EncodeAuditEvent returns the stored form of ev (without Seq).
func EncodeAuditEvent(ev AuditEvent) ([]byte, error) {
	b, err := json.Marshal(auditRecord{
		ID: ev.ID, Time: ev.Time.UTC(), Action: string(ev.Action),
		ActorType: ev.Actor.Type, ActorID: ev.Actor.ID, OnBehalfOf: ev.Actor.OnBehalfOf, Via: ev.Actor.Via,
		TeamID: ev.TeamID, ClientID: ev.ClientID, RequestID: ev.RequestID,
		SourceAddr: ev.SourceAddr, UserAgent: ev.UserAgent, Outcome: ev.Outcome,
		Fields: ev.Fields, Reason: ev.Reason, Count: ev.Count, StatusIndex: ev.StatusIndex,
	})
	if err != nil {
		return nil, fmt.Errorf("encode audit event %s: %w", ev.ID, err)
	}
	return b, nil
}

// DecodeAuditEvent reads what EncodeAuditEvent wrote and sets Seq.
func DecodeAuditEvent(b []byte, seq int64) (AuditEvent, error) {
	var r auditRecord
	if err := json.Unmarshal(b, &r); err != nil {
		return AuditEvent{}, fmt.Errorf("decode audit event %d: %w", seq, err)
	}
	return AuditEvent{
		Seq: seq, ID: r.ID, Time: r.Time.UTC(), Action: AuditAction(r.Action),
		Actor:  AuditActor{Type: r.ActorType, ID: r.ActorID, OnBehalfOf: r.OnBehalfOf, Via: r.Via},
		TeamID: r.TeamID, ClientID: r.ClientID, RequestID: r.RequestID,
		SourceAddr: r.SourceAddr, UserAgent: r.UserAgent, Outcome: r.Outcome,
		Fields: r.Fields, Reason: r.Reason, Count: r.Count, StatusIndex: r.StatusIndex,
	}, nil
}

// AuditPager collects a page from events read newest first, for backends:
// Offer each event in turn until it returns false, then take Page. It
// applies q's filters, cursor bounds, limit and MaxAuditScan the same way
// on every backend.
type AuditPager struct {
	q       AuditQuery
	limit   int
	scanned int
	page    AuditPage
	done    bool
}

// NewAuditPager checks q and starts a page.
func NewAuditPager(q AuditQuery) (*AuditPager, error) {
	limit, err := q.PageLimit()
	if err != nil {
		return nil, err
	}
	if q.After < 0 || q.NewerThan < 0 {
		return nil, fmt.Errorf("%w: negative audit cursor", ErrInvalid)
	}
	return &AuditPager{q: q, limit: limit, page: AuditPage{Events: []AuditEvent{}}}, nil
}

// Offer takes the next older event; false means the page is complete and
// no more events are wanted. Events at or below NewerThan end the page with
// Next 0, as does the end of the trail (the caller simply stops offering).
func (p *AuditPager) Offer(ev AuditEvent) bool {
	if p.done {
		return false
	}
	if p.q.After > 0 && ev.Seq >= p.q.After {
		return true // a backend that could not seek exactly
	}
	if p.q.NewerThan > 0 && ev.Seq <= p.q.NewerThan {
		p.page.Next, p.done = 0, true
		return false
	}
	p.scanned++
	if p.q.Matches(ev) {
		p.page.Events = append(p.page.Events, ev)
	}
	if len(p.page.Events) >= p.limit || p.scanned >= MaxAuditScan {
		p.page.Next, p.done = ev.Seq, true
		return false
	}
	return true
}

// Page returns the page; call it once offering is over.
func (p *AuditPager) Page() AuditPage {
	if p.page.Next == 1 {
		p.page.Next = 0 // nothing is older than the first sequence number
	}
	return p.page
}
