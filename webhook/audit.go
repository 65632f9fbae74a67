package webhook

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"

	"github.com/keygate/keygate/store"
)

// AuditReader is the part of the store the audit stream is read from
// (store.Store has it).
type AuditReader interface {
	AllAuditEvents(ctx context.Context, q store.AuditQuery) (store.AuditPage, error)
}

// AuditSource is a Source over the store's operator-wide audit stream.
// Render makes an event's data, the JSON object receivers get as the
// payload's data: the same shape GET /v1/events answers with (the server
// owns that shape, so the caller passes it).
type AuditSource struct {
	Store  AuditReader
	Render func(store.AuditEvent) (json.RawMessage, error)
}

// maxWindowHops bounds how many empty cursor windows EventsAfter steps over
// before it walks the stream page by page instead.
const maxWindowHops = 16

// EventsAfter implements Source. The stream is read newest first, so the
// oldest events after a cursor are asked for as a window of cursors:
// (after, after+limit] holds at most limit events, so one newest-first
// page of limit events returns all of them, and they come back in stream
// order. An empty window (cursors that were never used, or were pruned) is
// stepped over; past maxWindowHops of them the stream is walked from the
// newest event down to the cursor, keeping the oldest limit events: more
// reads, but bounded by the backlog, and needed only after a long gap.
func (a AuditSource) EventsAfter(ctx context.Context, after uint64, limit int) ([]Event, error) {
	limit = min(max(limit, 1), store.MaxAuditLimit)
	head, err := a.Head(ctx)
	if err != nil || head <= after {
		return nil, err
	}
	cur := int64(after)
	for hop := 0; hop < maxWindowHops && uint64(cur) < head; hop++ {
		upper := min(cur+int64(limit), int64(head))
		page, err := a.Store.AllAuditEvents(ctx, store.AuditQuery{NewerThan: cur, After: upper + 1, Limit: limit})
		if err != nil {
			return nil, fmt.Errorf("read the audit stream after %d: %w", cur, err)
		}
		if len(page.Events) > 0 {
			return a.events(page.Events)
		}
		cur = upper
	}
	// A long gap: walk down from the newest event.
	var oldest []store.AuditEvent // newest first, the last limit seen
	q := store.AuditQuery{NewerThan: int64(after), Limit: store.MaxAuditLimit}
	for {
		page, err := a.Store.AllAuditEvents(ctx, q)
		if err != nil {
			return nil, fmt.Errorf("read the audit stream after %d: %w", after, err)
		}
		oldest = append(oldest, page.Events...)
		if len(oldest) > limit {
			oldest = slices.Clone(oldest[len(oldest)-limit:])
		}
		if page.Next == 0 || (q.After != 0 && page.Next >= q.After) {
			break
		}
		q.After = page.Next
	}
	return a.events(oldest)
}

// events converts a newest-first page into Events, oldest first.
func (a AuditSource) events(page []store.AuditEvent) ([]Event, error) {
	out := make([]Event, 0, len(page))
	for i := len(page) - 1; i >= 0; i-- {
		ev := page[i]
		data, err := a.Render(ev)
		if err != nil {
			return nil, fmt.Errorf("render audit event %s: %w", ev.ID, err)
		}
		out = append(out, Event{ID: ev.ID, Seq: uint64(ev.Seq), Type: string(ev.Action), Time: ev.Time, Data: data})
	}
	return out, nil
}

// Head implements Source: the cursor of the newest event in the stream.
func (a AuditSource) Head(ctx context.Context) (uint64, error) {
	page, err := a.Store.AllAuditEvents(ctx, store.AuditQuery{Limit: 1})
	if err != nil {
		return 0, fmt.Errorf("read the audit stream's head: %w", err)
	}
	if len(page.Events) == 0 {
		return 0, nil
	}
	return uint64(page.Events[0].Seq), nil
}
