package storeio

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"math/bits"
	"os"
	"slices"
	"time"

	"github.com/keygate/keygate/store"
)

// ImportOptions tune Import.
type ImportOptions struct {
	// CheckSecrets, when set, is called with the stream's singletons and
	// signing keys once the whole stream has been read and checked, before
	// anything is written; an error refuses the import
	// (apikey.CheckSealed: the master key must open them).
	CheckSecrets func(singletons map[string][]byte, keys store.SigningKeys) error
	// TempDir holds the stream between the check and the writes (a file
	// of mode 0600, removed on return); "" means os.TempDir.
	TempDir string
	// Batch is how many keys one CreateKeys call writes; 0 means 10 000.
	Batch int
	// Now is the import's clock (deny entries expired by then are
	// skipped); nil means time.Now.
	Now func() time.Time
}

// Stream is a stream read and checked by Check, kept in a temporary file
// until Close, ready to be written by Import.
type Stream struct {
	header     headerLine
	singletons map[string][]byte
	signing    store.SigningKeys
	status     statusLine
	webhooks   []webhookLine
	end        endLine
	spool      *os.File
	opts       ImportOptions
}

// Check reads a whole stream (see the package comment) from r into a
// temporary file and checks it: a stream of another version (ErrVersion),
// a malformed, truncated or inconsistent one (ErrCorrupt, naming the line)
// or secrets opts.CheckSecrets refuses is an error. It opens no store, so
// a refused stream leaves every store as it was. Close the Stream.
func Check(r io.Reader, opts ImportOptions) (*Stream, error) {
	spool, err := os.CreateTemp(opts.TempDir, "keygate-import-*.jsonl")
	if err != nil {
		return nil, fmt.Errorf("import: temporary file: %w", err)
	}
	s := &Stream{singletons: map[string][]byte{}, spool: spool, opts: opts}
	if err := s.check(r); err != nil {
		s.Close()
		return nil, err
	}
	if opts.CheckSecrets != nil {
		if err := opts.CheckSecrets(s.singletons, s.signing); err != nil {
			s.Close()
			return nil, fmt.Errorf("import refused, nothing written: %w", err)
		}
	}
	return s, nil
}

// Close removes the stream's temporary file.
func (s *Stream) Close() error {
	s.spool.Close()
	return os.Remove(s.spool.Name())
}

// Import writes the checked stream into st, which must be empty: no key,
// no signing key, no status index handed out and none of the stream's
// singletons (the pepper) with another value, else ErrNotEmpty and
// nothing is written. It writes through the bulk path
// (store.BulkLoader): singletons, signing keys, the status-index counter,
// the keys, the status bits, the deny list, the audit events and the
// webhook states. A failure
// while writing (the backend went away) leaves a partial store: import
// again into an empty one (a new data directory, a fresh Redis prefix) —
// the error says so.
func (s *Stream) Import(ctx context.Context, st store.Store) (Summary, error) {
	var sum Summary
	bulk, ok := store.Feature[store.BulkLoader](st)
	if !ok {
		return sum, fmt.Errorf("import: %w: no bulk path (store.BulkLoader)", ErrUnsupported)
	}
	ex, ok := store.Feature[store.Exporter](st)
	if !ok {
		return sum, fmt.Errorf("import: %w: cannot check that the target is empty (store.Exporter)", ErrUnsupported)
	}
	if err := checkEmpty(ctx, st, ex, s.singletons); err != nil {
		return sum, err
	}
	if _, err := s.spool.Seek(0, io.SeekStart); err != nil {
		return sum, fmt.Errorf("import: temporary file: %w", err)
	}
	now := time.Now
	if s.opts.Now != nil {
		now = s.opts.Now
	}
	sum, err := s.write(ctx, st, bulk, now())
	if err != nil {
		return sum, fmt.Errorf("%w; the target store now holds part of the export: import again into an empty store (a new data directory, a fresh Redis prefix)", err)
	}
	return sum, nil
}

// Import is Check, then Stream.Import into st.
func Import(ctx context.Context, r io.Reader, st store.Store, opts ImportOptions) (Summary, error) {
	s, err := Check(r, opts)
	if err != nil {
		return Summary{}, err
	}
	defer s.Close()
	return s.Import(ctx, st)
}

// checkEmpty refuses a target that holds any part of a store: keys,
// signing keys, a status index handed out, or a singleton of the stream's
// (the pepper) with another value. Singletons the stream does not carry
// are left alone: a backend may record some of its own when it opens.
func checkEmpty(ctx context.Context, st store.Store, ex store.Exporter, want map[string][]byte) error {
	refuse := func(what string) error {
		return fmt.Errorf("import refused, nothing written: %w: it holds %s; import only into a store that was never started", ErrNotEmpty, what)
	}
	singletons, err := ex.Singletons(ctx)
	if err != nil {
		return fmt.Errorf("import: %w", err)
	}
	for _, name := range slices.Sorted(maps.Keys(singletons)) {
		if w, ok := want[name]; ok && !bytes.Equal(w, singletons[name]) {
			return refuse("a " + name)
		}
	}
	sk, err := st.SigningKeys(ctx)
	if err != nil {
		return fmt.Errorf("import: %w", err)
	}
	if sk.Active != nil || sk.Next != nil || len(sk.Retired) > 0 {
		return refuse("signing keys")
	}
	errFound := errors.New("found")
	switch err := st.ForEachKey(ctx, func(store.Key) error { return errFound }); {
	case errors.Is(err, errFound):
		return refuse("keys")
	case err != nil:
		return fmt.Errorf("import: %w", err)
	}
	sl, err := st.StatusList(ctx)
	if err != nil {
		return fmt.Errorf("import: %w", err)
	}
	if sl.Allocated > 0 {
		return refuse("a status list")
	}
	return nil
}

// lines reads r line by line, numbering from 1; fn gets each line without
// its newline. A last line without a newline is a line too.
func lines(r io.Reader, fn func(n int, line []byte) error) (int, error) {
	br := bufio.NewReaderSize(r, 64<<10)
	n := 0
	for {
		line, err := br.ReadBytes('\n')
		if len(line) > 0 {
			n++
			if ferr := fn(n, bytes.TrimSuffix(line, []byte("\n"))); ferr != nil {
				return n, ferr
			}
		}
		if errors.Is(err, io.EOF) {
			return n, nil
		}
		if err != nil {
			return n, fmt.Errorf("import: read line %d: %w", n+1, err)
		}
	}
}

// decodeStrict decodes one line into v, refusing unknown fields.
func decodeStrict(line []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(line))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if dec.More() {
		return errors.New("more than one JSON value")
	}
	return nil
}

// check reads the whole stream from r, copying it to the spool, and checks it:
// the header's format and version, the order of the kinds, every line's
// contents, and the end line's counts.
func (s *Stream) check(r io.Reader) error {
	spool := s.spool
	corrupt := func(n int, format string, args ...any) error {
		return fmt.Errorf("import refused, nothing written: line %d: %w: %s", n, ErrCorrupt, fmt.Sprintf(format, args...))
	}
	prev, seen := -1, map[string]bool{}
	ids := map[string]struct{}{}
	var keys, denied, audit int
	var maxIndex int64
	total, err := lines(r, func(n int, line []byte) error {
		if _, err := spool.Write(append(line, '\n')); err != nil {
			return fmt.Errorf("import: temporary file: %w", err)
		}
		var k struct {
			Kind    string `json:"kind"`
			Format  string `json:"format"`
			Version int    `json:"version"`
		}
		if err := json.Unmarshal(line, &k); err != nil {
			return corrupt(n, "not a JSON object: %v", err)
		}
		if n == 1 {
			if k.Kind != kindHeader || k.Format != Format {
				return corrupt(n, "no %s header: not a keygate store export", Format)
			}
			if k.Version != Version {
				return fmt.Errorf("import refused, nothing written: %w: the stream is version %d, this keygate reads version %d; import it with the keygate version that exported it", ErrVersion, k.Version, Version)
			}
		}
		rk, known := rank[k.Kind]
		switch {
		case !known:
			return corrupt(n, "unknown kind %q", k.Kind)
		case seen[kindEnd]:
			return corrupt(n, "a line after the end line")
		case rk < prev || (once[k.Kind] && seen[k.Kind]):
			return corrupt(n, "a %s line out of order", k.Kind)
		case rk > rank[kindSigning] && !seen[kindSigning]:
			return corrupt(n, "a %s line before the signing keys", k.Kind)
		case rk > rank[kindStatus] && !seen[kindStatus]:
			return corrupt(n, "a %s line before the status list", k.Kind)
		}
		prev, seen[k.Kind] = rk, true
		switch k.Kind {
		case kindHeader:
			if err := decodeStrict(line, &s.header); err != nil {
				return corrupt(n, "header: %v", err)
			}
			if s.header.StatusCounter < 0 {
				return corrupt(n, "negative status counter")
			}
		case kindSingleton:
			var l singletonLine
			if err := decodeStrict(line, &l); err != nil {
				return corrupt(n, "singleton: %v", err)
			}
			if l.Name == "" || len(l.Value) == 0 {
				return corrupt(n, "singleton without a name or a value")
			}
			if _, dup := s.singletons[l.Name]; dup {
				return corrupt(n, "singleton %s given twice", l.Name)
			}
			s.singletons[l.Name] = l.Value
		case kindSigning:
			var l signingLine
			if err := decodeStrict(line, &l); err != nil {
				return corrupt(n, "signing keys: %v", err)
			}
			if err := decodeStrict(l.Keys, &s.signing); err != nil {
				return corrupt(n, "signing keys: %v", err)
			}
		case kindKey:
			var l keyLine
			if err := decodeStrict(line, &l); err != nil {
				return corrupt(n, "key: %v", err)
			}
			key := l.key()
			if err := store.CheckClientID(key); err != nil {
				return corrupt(n, "key: %v", err)
			}
			if _, dup := ids[key.ClientID]; dup {
				return corrupt(n, "key %s given twice", key.ClientID)
			}
			if key.StatusIndex < 0 || key.PreviousStatusIndex < 0 {
				return corrupt(n, "key %s: negative status index", key.ClientID)
			}
			ids[key.ClientID] = struct{}{}
			maxIndex = max(maxIndex, key.StatusIndex, key.PreviousStatusIndex)
			keys++
		case kindStatus:
			if err := decodeStrict(line, &s.status); err != nil {
				return corrupt(n, "status list: %v", err)
			}
			if s.status.Allocated < s.header.StatusCounter || s.status.Allocated < maxIndex {
				return corrupt(n, "status counter %d is below the header's %d or a key's index %d", s.status.Allocated, s.header.StatusCounter, maxIndex)
			}
		case kindDeny:
			var l denyLine
			if err := decodeStrict(line, &l); err != nil {
				return corrupt(n, "deny entry: %v", err)
			}
			if l.JTI == "" || l.Until.IsZero() {
				return corrupt(n, "deny entry without a jti or an expiry")
			}
			denied++
		case kindAudit:
			var l auditLine
			if err := decodeStrict(line, &l); err != nil {
				return corrupt(n, "audit event: %v", err)
			}
			ev, err := store.DecodeAuditEvent(l.Event, 0)
			if err != nil {
				return corrupt(n, "%v", err)
			}
			if err := store.CheckAuditEvent(ev, nil, nil); err != nil {
				return corrupt(n, "%v", err)
			}
			if l.StreamSeq < 0 {
				return corrupt(n, "negative stream_seq")
			}
			audit++
		case kindWebhook:
			var l webhookLine
			if err := decodeStrict(line, &l); err != nil {
				return corrupt(n, "webhook state: %v", err)
			}
			if l.Endpoint == "" {
				return corrupt(n, "webhook state without an endpoint")
			}
			for _, w := range s.webhooks {
				if w.Endpoint == l.Endpoint {
					return corrupt(n, "webhook endpoint %s given twice", l.Endpoint)
				}
			}
			s.webhooks = append(s.webhooks, l)
		case kindEnd:
			if err := decodeStrict(line, &s.end); err != nil {
				return corrupt(n, "end: %v", err)
			}
			got := endLine{Kind: kindEnd, Singletons: len(s.singletons), Keys: keys, Denied: denied, AuditEvents: audit, Webhooks: len(s.webhooks)}
			if s.end != got {
				return corrupt(n, "the end line counts %+v, the stream holds %+v", s.end, got)
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	if total == 0 {
		return fmt.Errorf("import refused, nothing written: %w: the stream is empty", ErrCorrupt)
	}
	if !seen[kindEnd] {
		return fmt.Errorf("import refused, nothing written: %w: the stream ends after line %d without its end line (truncated?)", ErrCorrupt, total)
	}
	return nil
}

// write writes the checked stream in spool to st.
func (s *Stream) write(ctx context.Context, st store.Store, bulk store.BulkLoader, now time.Time) (Summary, error) {
	spool, opts := s.spool, s.opts
	var sum Summary
	for _, name := range slices.Sorted(maps.Keys(s.singletons)) {
		v := s.singletons[name]
		stored, err := st.CreateSingleton(ctx, name, v)
		if err != nil {
			return sum, fmt.Errorf("import singleton %s: %w", name, err)
		}
		if !bytes.Equal(stored, v) {
			return sum, fmt.Errorf("import singleton %s: %w: another process created it meanwhile", name, ErrNotEmpty)
		}
		sum.Singletons++
	}
	_, err := st.UpdateSigningKeys(ctx, func(cur store.SigningKeys) (store.SigningKeys, error) {
		if cur.Active != nil || len(cur.Retired) > 0 {
			return cur, fmt.Errorf("%w: signing keys were created meanwhile", ErrNotEmpty)
		}
		return s.signing, nil
	})
	if err != nil {
		return sum, fmt.Errorf("import signing keys: %w", err)
	}
	if s.status.Allocated > 0 {
		if s.status.Allocated > 1<<31 {
			return sum, fmt.Errorf("import status counter: %d indices is more than one call allocates", s.status.Allocated)
		}
		first, err := bulk.NextStatusIndices(ctx, int(s.status.Allocated))
		if err != nil {
			return sum, fmt.Errorf("import status counter: %w", err)
		}
		if first != 1 {
			return sum, fmt.Errorf("import status counter: %w: indices were handed out meanwhile (the counter was at %d)", ErrNotEmpty, first-1)
		}
	}
	sum.StatusAllocated = s.status.Allocated

	batch := opts.Batch
	if batch <= 0 {
		batch = 10000
	}
	var keys []store.Key
	raised := 0
	// raise raises the target's schema level to level before the first
	// record an older keygate would misread lands, as apikey does.
	raise := func(level int, what string) error {
		if raised >= level {
			return nil
		}
		r, ok := store.Feature[store.SchemaRaiser](st)
		if !ok {
			return fmt.Errorf("import: %w: %s needs a store that records schema levels (store.SchemaRaiser)", ErrUnsupported, what)
		}
		if err := r.RaiseSchema(ctx, level); err != nil {
			return fmt.Errorf("import: raise the schema level: %w", err)
		}
		raised = level
		return nil
	}
	flush := func() error {
		if len(keys) == 0 {
			return nil
		}
		// A read-only admin key would be misread as a full admin, a key
		// policy ignored (tokens for a suspended, expired or restricted
		// key).
		if slices.ContainsFunc(keys, func(k store.Key) bool { return k.Role != store.RoleAdmin }) {
			if err := raise(store.SchemaLevelAdminRoles, "a read-only admin key"); err != nil {
				return err
			}
		}
		if slices.ContainsFunc(keys, store.Key.HasPolicy) {
			if err := raise(store.SchemaLevelKeyPolicy, "a key policy"); err != nil {
				return err
			}
		}
		if err := bulk.CreateKeys(ctx, keys); err != nil {
			return fmt.Errorf("import keys: %w", err)
		}
		sum.Keys += len(keys)
		keys = keys[:0]
		return nil
	}
	var events []store.AuditEvent
	sourceSeq := map[string]int64{} // event ID → its cursor in the source's stream
	_, err = lines(spool, func(n int, line []byte) error {
		var k struct {
			Kind string `json:"kind"`
		}
		if err := json.Unmarshal(line, &k); err != nil {
			return fmt.Errorf("import: line %d: %w", n, err)
		}
		switch k.Kind {
		case kindKey:
			var l keyLine
			if err := json.Unmarshal(line, &l); err != nil {
				return fmt.Errorf("import: line %d: %w", n, err)
			}
			if keys = append(keys, l.key()); len(keys) >= batch {
				return flush()
			}
		case kindStatus:
			// The keys are in; their bits follow, so no key is ever
			// stored without the revocation it had.
			if err := flush(); err != nil {
				return err
			}
			for i, b := range s.status.Revoked {
				for bit := 0; bit < 8; bit++ {
					if b&(1<<bit) == 0 {
						continue
					}
					if err := st.RevokeStatus(ctx, int64(i*8+bit)); err != nil {
						return fmt.Errorf("import status list: %w", err)
					}
					sum.RevokedBits++
				}
			}
			for i, b := range s.status.Suspended {
				for ; b != 0; b &= b - 1 {
					if err := raise(store.SchemaLevelKeyPolicy, "a suspended status entry"); err != nil {
						return err
					}
					if err := st.SetStatus(ctx, int64(i)*8+int64(bits.TrailingZeros8(b)), store.StatusSuspended); err != nil {
						return fmt.Errorf("import status list: %w", err)
					}
					sum.SuspendedBits++
				}
			}
		case kindDeny:
			var l denyLine
			if err := json.Unmarshal(line, &l); err != nil {
				return fmt.Errorf("import: line %d: %w", n, err)
			}
			if !l.Until.After(now) {
				return nil // expired since the export: nothing to deny
			}
			if err := st.DenyToken(ctx, l.JTI, l.Until); err != nil {
				return fmt.Errorf("import deny list: %w", err)
			}
			sum.Denied++
		case kindAudit:
			var l auditLine
			if err := json.Unmarshal(line, &l); err != nil {
				return fmt.Errorf("import: line %d: %w", n, err)
			}
			ev, err := store.DecodeAuditEvent(l.Event, 0)
			if err != nil {
				return fmt.Errorf("import: line %d: %w", n, err)
			}
			if l.StreamSeq > 0 {
				sourceSeq[ev.ID] = l.StreamSeq
			}
			events = append(events, ev)
			if len(events) >= batch {
				return appendEvents(ctx, st, &events, &sum)
			}
		}
		return nil
	})
	if err != nil {
		return sum, err
	}
	if err := flush(); err != nil {
		return sum, err
	}
	if err := appendEvents(ctx, st, &events, &sum); err != nil {
		return sum, err
	}
	// Feed the operator-wide stream now rather than at the first start
	// (a no-op where it never lags).
	for {
		n, err := st.MoveAudit(ctx)
		if err != nil {
			return sum, fmt.Errorf("import audit events: %w", err)
		}
		if n == 0 {
			break
		}
	}
	if err := s.writeWebhooks(ctx, st, sourceSeq, &sum); err != nil {
		return sum, err
	}
	return sum, nil
}

// writeWebhooks saves each endpoint's state with its position translated
// into the target's stream: the last event of that stream up to which
// every event had been delivered on the source (its cursor there at most
// the endpoint's), so nothing undelivered is skipped; an event the source
// had delivered but that comes after one it had not is sent again.
func (s *Stream) writeWebhooks(ctx context.Context, st store.Store, sourceSeq map[string]int64, sum *Summary) error {
	if len(s.webhooks) == 0 {
		return nil
	}
	evs, err := streamEvents(ctx, st)
	if err != nil {
		return fmt.Errorf("import webhook states: %w", err)
	}
	for _, w := range s.webhooks {
		var delivered uint64
		for _, ev := range evs {
			src := sourceSeq[ev.ID]
			if src == 0 || uint64(src) > w.Delivered {
				break
			}
			delivered = uint64(ev.Seq)
		}
		_, err := st.UpdateWebhookState(ctx, w.Endpoint, func(store.WebhookState) (store.WebhookState, error) {
			return store.WebhookState{Delivered: delivered, Disabled: w.Disabled, DisabledAt: w.DisabledAt, DisabledReason: w.DisabledReason}, nil
		})
		if err != nil {
			return fmt.Errorf("import webhook state %s: %w", w.Endpoint, err)
		}
		sum.Webhooks++
	}
	return nil
}

func appendEvents(ctx context.Context, st store.Store, events *[]store.AuditEvent, sum *Summary) error {
	for _, ev := range *events {
		if err := st.AppendAudit(ctx, ev); err != nil {
			return fmt.Errorf("import audit event %s: %w", ev.ID, err)
		}
		sum.AuditEvents++
	}
	*events = (*events)[:0]
	return nil
}
