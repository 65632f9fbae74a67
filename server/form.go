package server

import (
	"errors"
	"net/url"
	"strings"
)

// clientForm is a parsed application/x-www-form-urlencoded body of the
// endpoints clients call (token, introspection, revocation). Only the
// parameters keygate reads are kept; a parameter's presence is recorded
// separately from its value, because "sent empty" and "not sent" differ.
type clientForm struct {
	grantType, scope, clientID, clientSecret, token string
	// RFC 8693 token exchange (server/exchange.go).
	subjectToken, subjectTokenType, actorToken string
	// RFC 8707 resource indicator.
	resource string
	has      uint16 // bit set per param in formParams
}

// The parameters clientForm keeps, by bit.
const (
	pGrantType = 1 << iota
	pScope
	pClientID
	pClientSecret
	pToken
	pSubjectToken
	pSubjectTokenType
	pActorToken
	pResource
)

var formParams = map[string]uint16{
	"grant_type":    pGrantType,
	"scope":         pScope,
	"client_id":     pClientID,
	"client_secret": pClientSecret,
	"token":         pToken,
	// RFC 8693 §2.1.
	"subject_token":      pSubjectToken,
	"subject_token_type": pSubjectTokenType,
	"actor_token":        pActorToken,
	// RFC 8707 §2.
	"resource": pResource,
}

func (f *clientForm) sent(p uint16) bool { return f.has&p != 0 }

var (
	errRepeated = errors.New("repeated parameter")
	errEncoding = errors.New("bad form encoding")
)

// parseForm reads body the way url.ParseQuery does (same escapes, ';'
// refused) but without building a map per request, and it refuses any
// parameter sent twice (RFC 6749 §3.2), the unknown ones included. It
// returns the offending name with errRepeated.
func parseForm(body string) (clientForm, string, error) {
	var f clientForm
	var others []string // names of unknown parameters, to catch repeats
	for body != "" {
		var pair string
		pair, body, _ = strings.Cut(body, "&")
		if pair == "" {
			continue
		}
		if strings.IndexByte(pair, ';') >= 0 {
			return clientForm{}, "", errEncoding
		}
		rawKey, rawVal, _ := strings.Cut(pair, "=")
		key, err := unescape(rawKey)
		if err != nil {
			return clientForm{}, "", errEncoding
		}
		val, err := unescape(rawVal)
		if err != nil {
			return clientForm{}, "", errEncoding
		}
		bit, known := formParams[key]
		if !known {
			for _, o := range others {
				if o == key {
					return clientForm{}, key, errRepeated
				}
			}
			others = append(others, key)
			continue
		}
		if f.has&bit != 0 {
			return clientForm{}, key, errRepeated
		}
		f.has |= bit
		switch bit {
		case pGrantType:
			f.grantType = val
		case pScope:
			f.scope = val
		case pClientID:
			f.clientID = val
		case pClientSecret:
			f.clientSecret = val
		case pToken:
			f.token = val
		case pSubjectToken:
			f.subjectToken = val
		case pSubjectTokenType:
			f.subjectTokenType = val
		case pActorToken:
			f.actorToken = val
		case pResource:
			f.resource = val
		}
	}
	return f, "", nil
}

// unescape decodes form encoding only when there is something to decode:
// the common body has no escapes and needs no new string.
func unescape(s string) (string, error) {
	if strings.IndexByte(s, '%') < 0 && strings.IndexByte(s, '+') < 0 {
		return s, nil
	}
	return url.QueryUnescape(s)
}
