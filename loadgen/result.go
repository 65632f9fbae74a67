package loadgen

import (
	"encoding/json"
	"time"
)

// Error causes in Result.Errors besides HTTP status codes ("401", "503", …).
const (
	// ErrBadBody: a 200 whose body failed the endpoint's check (no token,
	// no key, not active) or was larger than the generator reads.
	ErrBadBody = "bad body"
	// ErrTimeout: no complete answer within Config.Timeout.
	ErrTimeout = "timeout"
	// ErrTransport: connecting, writing or reading failed.
	ErrTransport = "transport"
)

// Result is what a run measured. Requests cut off by the end of the run
// (in flight when the time was up) are not counted at all.
type Result struct {
	URL         string  // base URL
	Endpoint    string  // token, jwks or introspect
	Connections int     // concurrent connections
	Rate        float64 // open-loop requests/s; 0 for a closed loop

	// Duration is how long requests were sent: Config.Duration, or less if
	// the context was cancelled first.
	Duration time.Duration
	// Requests is every answered or failed request: Successes plus the
	// sum of Errors.
	Requests  int64
	Successes int64
	// Errors counts failed requests by cause: the HTTP status ("401"),
	// ErrBadBody, ErrTimeout or ErrTransport. Never nil.
	Errors map[string]int64
	// Unsent counts open-loop requests that were due before the end but
	// never sent because every connection was still busy: the rate was not
	// sustained and the latencies understate. Requests due in the last 5 ms
	// are not counted (they could not have been answered in time anyway).
	// Always 0 in a closed loop.
	Unsent int64

	// RPS is Successes per second of Duration: failures never count.
	RPS float64
	// Latencies of successes only, from the HDR histogram: from sending in a
	// closed loop, from the time the request was due in an open loop.
	Mean, P50, P90, P99, P999, Max time.Duration
}

// ErrorCount is the number of failed requests.
func (r *Result) ErrorCount() int64 {
	var n int64
	for _, c := range r.Errors {
		n += c
	}
	return n
}

// resultJSON is Result on the wire: durations as float milliseconds.
type resultJSON struct {
	URL         string           `json:"url"`
	Endpoint    string           `json:"endpoint"`
	Connections int              `json:"connections"`
	Rate        float64          `json:"rate"`
	DurationMS  float64          `json:"duration_ms"`
	Requests    int64            `json:"requests"`
	Successes   int64            `json:"successes"`
	Errors      map[string]int64 `json:"errors"`
	Unsent      int64            `json:"unsent"`
	RPS         float64          `json:"rps"`
	MeanMS      float64          `json:"mean_ms"`
	P50MS       float64          `json:"p50_ms"`
	P90MS       float64          `json:"p90_ms"`
	P99MS       float64          `json:"p99_ms"`
	P999MS      float64          `json:"p999_ms"`
	MaxMS       float64          `json:"max_ms"`
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func fromMS(f float64) time.Duration { return time.Duration(f * float64(time.Millisecond)) }

// MarshalJSON writes durations as milliseconds ("p99_ms": 3.2).
func (r Result) MarshalJSON() ([]byte, error) {
	errs := r.Errors
	if errs == nil {
		errs = map[string]int64{}
	}
	return json.Marshal(resultJSON{
		URL: r.URL, Endpoint: r.Endpoint, Connections: r.Connections, Rate: r.Rate,
		DurationMS: ms(r.Duration), Requests: r.Requests, Successes: r.Successes,
		Errors: errs, Unsent: r.Unsent, RPS: r.RPS,
		MeanMS: ms(r.Mean), P50MS: ms(r.P50), P90MS: ms(r.P90), P99MS: ms(r.P99),
		P999MS: ms(r.P999), MaxMS: ms(r.Max),
	})
}

// UnmarshalJSON reads what MarshalJSON writes.
func (r *Result) UnmarshalJSON(b []byte) error {
	var j resultJSON
	if err := json.Unmarshal(b, &j); err != nil {
		return err
	}
	*r = Result{
		URL: j.URL, Endpoint: j.Endpoint, Connections: j.Connections, Rate: j.Rate,
		Duration: fromMS(j.DurationMS), Requests: j.Requests, Successes: j.Successes,
		Errors: j.Errors, Unsent: j.Unsent, RPS: j.RPS,
		Mean: fromMS(j.MeanMS), P50: fromMS(j.P50MS), P90: fromMS(j.P90MS), P99: fromMS(j.P99MS),
		P999: fromMS(j.P999MS), Max: fromMS(j.MaxMS),
	}
	if r.Errors == nil {
		r.Errors = map[string]int64{}
	}
	return nil
}
