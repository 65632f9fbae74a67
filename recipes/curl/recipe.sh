#!/usr/bin/env bash
# The curl recipe of docs/recipes.md: a token, its claims, a call to an API
# that verifies it, introspection, revocation. Run against a real keygate by
# scripts/ci/recipes.sh; needs curl and jq.
#
# Environment: KEYGATE_ISSUER (keygate's issuer URL), KEYGATE_AUDIENCE
# (keygate's audience setting, the issuer unless set), KEYGATE_CLIENT_ID,
# KEYGATE_CLIENT_SECRET, and RECIPE_API_URL, a resource server that verifies
# keygate's tokens (here: `recipe api` of recipes/go, which serves
# GET /invoices with scope accounting:read, and GET /other-api/invoices for
# another audience).
#
# Only keygate's Go package verify (what that API uses) enforces keygate's
# token status list. Other verifiers (jose, PyJWT, gateways) accept a deleted
# key's tokens until they expire: keep token_ttl short, or introspect (step 4).
set -euo pipefail
: "${KEYGATE_ISSUER:?}" "${KEYGATE_AUDIENCE:?}" "${KEYGATE_CLIENT_ID:?}" "${KEYGATE_CLIENT_SECRET:?}" "${RECIPE_API_URL:?}"

fail() { echo "recipe (curl): $*" >&2; exit 1; }
# The key's ID and secret go to curl through a config on a pipe, not as
# arguments, which any user can read in ps.
as_key() { curl --config <(printf 'user = "%s:%s"\n' "$KEYGATE_CLIENT_ID" "$KEYGATE_CLIENT_SECRET") "$@"; }
# status URL [curl args…]: the HTTP status of a GET, the body to $body_file.
body_file=$(mktemp); trap 'rm -f "$body_file"' EXIT
status() { local url=$1; shift; curl -sS --max-time 10 -o "$body_file" -w '%{http_code}' "$@" "$url"; }

# 1. A token (client credentials; scope is optional and narrows the key's).
TOKEN=$(as_key -fsS --max-time 10 -d grant_type=client_credentials -d scope=accounting:read \
  "$KEYGATE_ISSUER/oauth/token" | jq -er .access_token)
echo "token: ${#TOKEN} characters"

# 2. Decode it. Decoding is not verifying: the signature is checked by the
#    resource server (step 3), against keygate's JWKS. These are the values
#    every verifier must pin.
decode() { jq -R "split(\".\")[$1] | gsub(\"-\"; \"+\") | gsub(\"_\"; \"/\") | @base64d | fromjson" <<<"$TOKEN"; }
header=$(decode 0) claims=$(decode 1)
jq -c '{typ, alg, kid}' <<<"$header"
jq -c '{iss, aud, sub, team_id, scope, exp}' <<<"$claims"
jq -e '.typ == "at+jwt" and .alg == "ES256"' <<<"$header" >/dev/null || fail "header is not at+jwt / ES256: $(jq -c . <<<"$header")"
jq -e --arg iss "$KEYGATE_ISSUER" --arg aud "$KEYGATE_AUDIENCE" \
  '.iss == $iss and ([.aud] | flatten | any(. == $aud))' <<<"$claims" >/dev/null ||
  fail "unexpected iss or aud: $(jq -c . <<<"$claims")"

# 3. Call an API with it; the API verifies the token offline.
code=$(status "$RECIPE_API_URL/invoices" -H "Authorization: Bearer $TOKEN")
[ "$code" = 200 ] || fail "the API refused a good token: $code $(cat "$body_file")"
echo "call: $code $(cat "$body_file")"
#    … and what it refuses: no token, a tampered signature (its first
#    character changed), a token for another audience, a missing scope.
sig=${TOKEN##*.}
if [ "${sig:0:1}" = A ]; then c=B; else c=A; fi
TAMPERED=${TOKEN%.*}.$c${sig:1}
NARROW=$(as_key -fsS --max-time 10 -d grant_type=client_credentials -d scope=banking:read \
  "$KEYGATE_ISSUER/oauth/token" | jq -er .access_token)
check_refused() { # what want_status want_error url [curl args…]
  local what=$1 want=$2 err=$3 url=$4; shift 4
  local got www
  got=$(curl -sS --max-time 10 -o /dev/null -D - "$@" "$url" | tr -d '\r')
  www=$(grep -i '^www-authenticate:' <<<"$got" || true)
  [ "$(head -n 1 <<<"$got" | cut -d' ' -f2)" = "$want" ] && grep -qF "$err" <<<"$www" ||
    fail "$what: want $want $err, got $(head -n 1 <<<"$got") $www"
  echo "refused as it should be: $what ($want ${www#*: })"
}
check_refused 'no token' 401 'Bearer realm="keygate"' "$RECIPE_API_URL/invoices"
check_refused 'a tampered signature' 401 'error="invalid_token"' "$RECIPE_API_URL/invoices" \
  -H "Authorization: Bearer $TAMPERED"
check_refused "another API's audience" 401 'error="invalid_token"' "$RECIPE_API_URL/other-api/invoices" \
  -H "Authorization: Bearer $TOKEN"
check_refused 'a token without accounting:read' 403 'error="insufficient_scope"' "$RECIPE_API_URL/invoices" \
  -H "Authorization: Bearer $NARROW"

# 4. Introspection (RFC 7662): keygate's own answer, the status list and
#    revocations included. A key sees its own team's tokens.
active=$(as_key -fsS --max-time 10 --data-urlencode "token=$TOKEN" "$KEYGATE_ISSUER/oauth/introspect")
jq -c '{active, client_id, team_id, scope}' <<<"$active"
jq -e '.active == true' <<<"$active" >/dev/null || fail "introspection: not active: $active"
tampered=$(as_key -fsS --max-time 10 --data-urlencode "token=$TAMPERED" "$KEYGATE_ISSUER/oauth/introspect")
[ "$tampered" = '{"active":false}' ] || fail "introspection of a tampered token: $tampered"

# 5. Revocation (RFC 7009): the token goes on a deny list that introspection
#    reads. Resource servers that verify offline do not: they accept it until
#    it expires (to cut a key off everywhere, delete it).
as_key -fsS --max-time 10 -o /dev/null --data-urlencode "token=$TOKEN" "$KEYGATE_ISSUER/oauth/revoke"
after=$(as_key -fsS --max-time 10 --data-urlencode "token=$TOKEN" "$KEYGATE_ISSUER/oauth/introspect")
[ "$after" = '{"active":false}' ] || fail "introspection after revocation: $after"
echo "revoked: introspection says $after"
code=$(status "$RECIPE_API_URL/invoices" -H "Authorization: Bearer $TOKEN")
[ "$code" = 200 ] || fail "the API refused a revoked token ($code); revocation should reach only introspection"
echo "as documented, the API (offline) still accepts the revoked token until it expires"
