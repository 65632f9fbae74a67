package storeio

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"math/bits"
	"slices"
	"time"

	"github.com/keygate/keygate/store"
)

// ExportOptions tune Export.
type ExportOptions struct {
	// Source names the backend in the header ("bolt", "redis").
	Source string
	// Now is the export's clock (header time, which deny entries are
	// live); nil means time.Now.
	Now func() time.Time
}

// Export writes the whole of st to w as a stream (see the package
// comment). It only reads st. On an error the stream is incomplete (it
// lacks its end line), so an import refuses it.
func Export(ctx context.Context, w io.Writer, st store.Store, opts ExportOptions) (Summary, error) {
	var sum Summary
	ex, ok := store.Feature[store.Exporter](st)
	if !ok {
		return sum, fmt.Errorf("export: %w", ErrUnsupported)
	}
	now := time.Now
	if opts.Now != nil {
		now = opts.Now
	}
	bw := bufio.NewWriterSize(w, 64<<10)
	enc := json.NewEncoder(bw)
	enc.SetEscapeHTML(false)
	write := func(what string, v any) error {
		if err := enc.Encode(v); err != nil {
			return fmt.Errorf("export: write %s: %w", what, err)
		}
		return nil
	}

	before, err := st.StatusList(ctx)
	if err != nil {
		return sum, fmt.Errorf("export: %w", err)
	}
	if err := write(kindHeader, headerLine{Kind: kindHeader, Format: Format, Version: Version, Source: opts.Source,
		ExportedAt: now().UTC(), StatusCounter: before.Allocated}); err != nil {
		return sum, err
	}

	singletons, err := ex.Singletons(ctx)
	if err != nil {
		return sum, fmt.Errorf("export: %w", err)
	}
	// The status schedule is not exported (its entries live a grace
	// period at most), so neither is the marker that says it is complete:
	// the target's first start walks its keys and completes its own
	// (apikey/statusschedule.go).
	delete(singletons, store.StatusScheduleComplete)
	for _, name := range sortedNames(singletons) {
		if err := write("singleton "+name, singletonLine{Kind: kindSingleton, Name: name, Value: singletons[name]}); err != nil {
			return sum, err
		}
		sum.Singletons++
	}

	sk, err := st.SigningKeys(ctx)
	if err != nil {
		return sum, fmt.Errorf("export: %w", err)
	}
	// The whole set as one JSON value: whatever store.SigningKeys holds
	// travels without this package knowing its fields.
	raw, err := json.Marshal(sk)
	if err != nil {
		return sum, fmt.Errorf("export: encode signing keys: %w", err)
	}
	if err := write(kindSigning, signingLine{Kind: kindSigning, Keys: raw}); err != nil {
		return sum, err
	}

	err = st.ForEachKey(ctx, func(k store.Key) error {
		sum.Keys++
		return write("key "+k.ClientID, toKeyLine(k))
	})
	if err != nil {
		return sum, fmt.Errorf("export: %w", err)
	}

	// After the keys: a key deleted during the walk had its bit set
	// before it went, so it is revoked here even if the walk saw it.
	sl, err := st.StatusList(ctx)
	if err != nil {
		return sum, fmt.Errorf("export: %w", err)
	}
	revoked, suspended := entryBitmap(sl, store.StatusInvalid), entryBitmap(sl, store.StatusSuspended)
	sum.StatusAllocated, sum.RevokedBits, sum.SuspendedBits = sl.Allocated, countBits(revoked), countBits(suspended)
	if err := write(kindStatus, statusLine{Kind: kindStatus, Allocated: sl.Allocated, Revoked: trimZeros(revoked), Suspended: trimZeros(suspended)}); err != nil {
		return sum, err
	}

	err = ex.ForEachDenied(ctx, now(), func(jti string, until time.Time) error {
		sum.Denied++
		return write("deny entry", denyLine{Kind: kindDeny, JTI: jti, Until: until.UTC()})
	})
	if err != nil {
		return sum, fmt.Errorf("export: %w", err)
	}

	streamSeqs, err := streamCursors(ctx, st)
	if err != nil {
		return sum, fmt.Errorf("export: %w", err)
	}
	err = ex.ForEachAuditEvent(ctx, func(ev store.AuditEvent) error {
		rec, err := store.EncodeAuditEvent(ev)
		if err != nil {
			return err
		}
		sum.AuditEvents++
		return write("audit event "+ev.ID, auditLine{Kind: kindAudit, Event: rec, StreamSeq: streamSeqs[ev.ID]})
	})
	if err != nil {
		return sum, fmt.Errorf("export: %w", err)
	}

	err = ex.ForEachWebhookState(ctx, func(ep string, ws store.WebhookState) error {
		sum.Webhooks++
		return write("webhook state", webhookLine{Kind: kindWebhook, Endpoint: ep, Delivered: ws.Delivered,
			Disabled: ws.Disabled, DisabledAt: ws.DisabledAt, DisabledReason: ws.DisabledReason})
	})
	if err != nil {
		return sum, fmt.Errorf("export: %w", err)
	}

	if err := write(kindEnd, endLine{Kind: kindEnd, Singletons: sum.Singletons, Keys: sum.Keys, Denied: sum.Denied, AuditEvents: sum.AuditEvents, Webhooks: sum.Webhooks}); err != nil {
		return sum, err
	}
	if err := bw.Flush(); err != nil {
		return sum, fmt.Errorf("export: write: %w", err)
	}
	return sum, nil
}

func sortedNames(m map[string][]byte) []string {
	// Sorted so that two exports of one store are the same stream.
	return slices.Sorted(maps.Keys(m))
}

func countBits(b []byte) int {
	n := 0
	for _, x := range b {
		n += bits.OnesCount8(x)
	}
	return n
}

// trimZeros drops the bitmap's trailing zero bytes: a backend may keep
// more than its set bits need (Redis grows by SETBIT), the meaning is the
// same.
func trimZeros(b []byte) []byte {
	for len(b) > 0 && b[len(b)-1] == 0 {
		b = b[:len(b)-1]
	}
	return b
}

// streamEvents returns st's operator-wide audit stream (AllAuditEvents),
// oldest first.
func streamEvents(ctx context.Context, st store.Store) ([]store.AuditEvent, error) {
	var out []store.AuditEvent
	q := store.AuditQuery{Limit: store.MaxAuditLimit}
	for {
		page, err := st.AllAuditEvents(ctx, q)
		if err != nil {
			return nil, err
		}
		out = append(out, page.Events...)
		if page.Next == 0 {
			break
		}
		q.After = page.Next
	}
	slices.Reverse(out)
	return out, nil
}

// streamCursors maps each event ID of st's operator-wide stream to its
// cursor there.
func streamCursors(ctx context.Context, st store.Store) (map[string]int64, error) {
	evs, err := streamEvents(ctx, st)
	if err != nil {
		return nil, err
	}
	out := make(map[string]int64, len(evs))
	for _, ev := range evs {
		out[ev.ID] = ev.Seq
	}
	return out, nil
}

// entryBitmap is the 1-bit bitmap (LSB first) of l's entries that are st.
func entryBitmap(l store.StatusList, st store.Status) []byte {
	n := int64(len(l.Statuses)) * 4
	out := make([]byte, (n+7)/8)
	for i := range n {
		if l.Entry(i) == st {
			out[i/8] |= 1 << (i % 8)
		}
	}
	return out
}
