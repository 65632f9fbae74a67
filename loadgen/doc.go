// Package loadgen is keygate's load generator, the engine of `keygate bench`:
// like redis-benchmark or wrk, but it checks every answer, so a server that
// fails fast cannot look fast.
//
// # What it measures
//
// Run opens Config.Connections keep-alive connections to one endpoint
// (token, jwks or introspect) and sends requests for Config.Duration. Every
// answer is checked — the token endpoint must answer 200 with a non-empty
// "access_token", the JWKS 200 with at least one key, introspection 200 with
// "active":true. Only checked successes count toward requests/s and the
// latency histogram; everything else is counted by cause in Result.Errors
// ("401", "503", "bad body", "timeout", "transport"). A 401 costs the
// server less than a signed token, so counting it would inflate throughput.
//
// # Closed and open loop
//
// With Config.Rate 0 the generator runs a closed loop: each connection sends
// its next request as soon as the previous answer arrives. This finds the
// maximum throughput, but its latencies flatter a server that stalls: while
// a connection waits, the requests it would have sent are simply not sent,
// so the stall is recorded once instead of for every request it delayed
// ("coordinated omission", Gil Tene).
//
// With Config.Rate > 0 the generator runs an open loop, as wrk2 does:
// request n is due at start + n/Rate regardless of answers, the next free
// connection takes the next due request, and latency is measured from the
// time it was due, not from when it could be sent. A 300 ms stall then shows
// in every request that had to wait for it. If the connections cannot keep
// up, requests fall behind schedule; those still unsent at the end are
// reported as Result.Unsent, and a non-zero count means the rate was not
// sustained.
//
// # Cost of the generator
//
// The generator shares the machine with the server, so it is kept cheap:
// requests are built once per credential (Basic header, form body) and
// copied per request, one http.Transport serves every connection without
// compression or proxy, response bodies are read into a buffer each
// connection reuses and checked with byte searches, not decoded, and each
// connection records into its own HDR histogram (1 µs to 60 s, 3
// significant digits), merged once at the end: nothing is locked per
// request.
//
// # The floor
//
// NewFloorHandler is the cheapest server that does what a token endpoint
// must: parse the form, check the grant type, sign keygate's claim set with
// keygate's signer and answer keygate's response shape. It does not
// authenticate and has no store, so nothing can be faster while signing the
// same token; keygate's throughput is reported as a ratio to it, measured in
// the same run. It also serves the JWKS bytes keygate would, from a minimal
// net/http handler: the baseline for the JWKS endpoint.
package loadgen
