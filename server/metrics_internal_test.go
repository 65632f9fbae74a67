package server

import (
	"slices"
	"testing"

	"github.com/keygate/keygate/metrics"
)

// Every refusal the token endpoint can answer with (token.go, oauth2.go)
// has its own outcome in keygate_token_requests_total, so "other" stays 0
// and a dashboard that lists metrics.TokenOutcomes misses nothing.
func TestTokenOutcomesCoverTheTokenEndpoint(t *testing.T) {
	codes := []*oauthError{
		invalidRequest("x"), httpStatusError(405, "x"),
		errInvalidClient, errInvalidScope, errUnsupportedGrant, errServer, errUnavailable,
	}
	for _, e := range codes {
		if !slices.Contains(metrics.TokenOutcomes, e.code.Error()) {
			t.Errorf("token endpoint error %q is not in metrics.TokenOutcomes", e.code.Error())
		}
	}
	if !slices.Contains(metrics.TokenOutcomes, outcomeIssued) {
		t.Errorf("%q is not in metrics.TokenOutcomes", outcomeIssued)
	}
}
