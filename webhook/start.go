package webhook

import (
	"context"
	"fmt"

	"github.com/keygate/keygate/config"
)

// Service is the set of dispatchers of a configuration.
type Service struct {
	dispatchers []*Dispatcher
	states      StateStore
}

// Start starts one dispatcher per endpoint of hooks (the webhooks setting;
// none when it is empty) and returns at once: delivery runs in the
// dispatchers' goroutines only. Call Close to stop them.
func Start(hooks []config.Webhook, src Source, states StateStore, opts Options) (*Service, error) {
	s := &Service{states: states}
	for i, h := range hooks {
		ep := Endpoint{Index: i, ID: EndpointID(h.URL), URL: h.URL, Secret: h.Secret, Events: h.Events}
		d, err := New(ep, src, states, opts)
		if err != nil {
			s.Close()
			return nil, err
		}
		s.dispatchers = append(s.dispatchers, d)
	}
	return s, nil
}

// Endpoints returns the endpoints, in configuration order.
func (s *Service) Endpoints() []Endpoint {
	out := make([]Endpoint, len(s.dispatchers))
	for i, d := range s.dispatchers {
		out[i] = d.ep
	}
	return out
}

// Enable re-enables the disabled endpoint with that ID (see
// Dispatcher.Enable).
func (s *Service) Enable(ctx context.Context, endpointID string) error {
	for _, d := range s.dispatchers {
		if d.ep.ID == endpointID {
			return d.Enable(ctx)
		}
	}
	return fmt.Errorf("enable webhook %s: no such endpoint", endpointID)
}

// Delivered returns the lowest delivered cursor of the configured
// endpoints, disabled ones included, and false when there is none: the
// retention of the event stream must keep every event after it, or an
// endpoint would never receive it.
func (s *Service) Delivered(ctx context.Context) (uint64, bool, error) {
	var low uint64
	for i, d := range s.dispatchers {
		st, err := s.states.WebhookState(ctx, d.ep.ID)
		if err != nil {
			return 0, false, fmt.Errorf("webhook %d delivery state: %w", d.ep.Index, err)
		}
		if i == 0 || st.Delivered < low {
			low = st.Delivered
		}
	}
	return low, len(s.dispatchers) > 0, nil
}

// Close stops every dispatcher. Idempotent.
func (s *Service) Close() {
	for _, d := range s.dispatchers {
		d.Close()
	}
}
