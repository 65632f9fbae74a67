"""The Python recipe of docs/recipes.md, run against a real keygate by
scripts/ci/recipes.sh with Debian's python3-authlib and python3-jwt.

    recipe.py client   get a token with Authlib (client credentials), verify
                       it with PyJWT; a wrong audience, a tampered signature
                       and a JWT that is no access token must be refused
    recipe.py verify   verify the token in KEYGATE_TOKEN: exit 0 if accepted,
                       1 if refused

Settings come from the environment: KEYGATE_ISSUER (keygate's issuer URL),
KEYGATE_AUDIENCE (keygate's audience setting, the issuer unless set), and for
the client KEYGATE_CLIENT_ID and KEYGATE_CLIENT_SECRET.

PyJWT does not read keygate's token status list: a deleted key's tokens are
accepted here until they expire (at most keygate's token_ttl). Keep token_ttl
short, or ask keygate (POST /oauth/introspect) where that is not enough.
"""

import os
import sys

import jwt  # PyJWT
import requests
from authlib.integrations.requests_client import OAuth2Session

# keygate signs with one algorithm, its signing_alg setting (default ES256).
# Pin it: never let the token's header choose.
ALGORITHMS = ["ES256"]
# RFC 9068 §2.1: access tokens carry typ at+jwt (or application/at+jwt).
ACCESS_TOKEN_TYPES = {"at+jwt", "application/at+jwt"}
REQUIRED_CLAIMS = ["iss", "aud", "exp", "iat", "sub", "client_id", "jti"]
TIMEOUT = 10  # seconds, for every call to keygate


class WrongTokenType(jwt.InvalidTokenError):
    """A JWT that is not an access token (its typ is not at+jwt)."""


def env(name):
    value = os.environ.get(name)
    if not value:
        sys.exit(f"recipe (python): {name} is not set")
    return value


def metadata(issuer):
    """keygate's RFC 8414 metadata (keygate is no OpenID provider: there is
    no /.well-known/openid-configuration)."""
    resp = requests.get(issuer + "/.well-known/oauth-authorization-server", timeout=TIMEOUT)
    resp.raise_for_status()
    meta = resp.json()
    if meta.get("issuer") != issuer:  # RFC 8414 §3.3
        raise ValueError(f"metadata names issuer {meta.get('issuer')!r}, not {issuer!r}")
    return meta


class Verifier:
    """Checks keygate access tokens offline against keygate's JWKS."""

    def __init__(self, issuer, audience, jwks_uri):
        self.issuer = issuer
        self.audience = audience
        # Caches the key set; fetches again for a kid it does not know.
        self.jwks = jwt.PyJWKClient(jwks_uri, cache_keys=True)

    def verify(self, token):
        # PyJWT does not check the typ header: without this line an ID token
        # or any other JWT signed by the same keys would pass (RFC 9068 §4).
        typ = jwt.get_unverified_header(token).get("typ", "")
        if typ.lower() not in ACCESS_TOKEN_TYPES:
            raise WrongTokenType(f"not an access token (typ {typ!r})")
        key = self.jwks.get_signing_key_from_jwt(token)
        return jwt.decode(
            token,
            key.key,
            algorithms=ALGORITHMS,
            issuer=self.issuer,
            audience=self.audience,  # without it PyJWT refuses any token with aud
            options={"require": REQUIRED_CLAIMS},
            leeway=30,  # seconds of clock skew
        )


def tamper_signature(token):
    """Change the signature's first character (the last one may carry only
    padding bits)."""
    head, sig = token.rsplit(".", 1)
    return head + "." + ("B" if sig[0] == "A" else "A") + sig[1:]


def client(issuer, audience):
    meta = metadata(issuer)
    session = OAuth2Session(
        env("KEYGATE_CLIENT_ID"),
        env("KEYGATE_CLIENT_SECRET"),
        token_endpoint_auth_method="client_secret_basic",
        scope="accounting:read",  # optional: narrows the key's scopes
    )
    token = session.fetch_token(meta["token_endpoint"], grant_type="client_credentials", timeout=TIMEOUT)
    print(f"token: type {token['token_type']}, expires in {token['expires_in']} s")

    verifier = Verifier(issuer, audience, meta["jwks_uri"])
    try:
        claims = verifier.verify(token["access_token"])
    except jwt.InvalidTokenError as e:
        sys.exit(f"recipe (python): keygate's own token refused: {e}")
    print(f"verified: client {claims['client_id']} of team {claims['team_id']}, scope {claims['scope']}")
    if "accounting:read" not in claims["scope"].split():
        sys.exit("recipe (python): the token lacks the scope it was asked for")

    status_list = requests.get(issuer + "/statuslists/1", timeout=TIMEOUT)
    status_list.raise_for_status()
    cases = [
        ("another API's audience",
         Verifier(issuer, "https://other-api.example.test", meta["jwks_uri"]),
         token["access_token"], jwt.InvalidAudienceError),
        ("a tampered signature", verifier, tamper_signature(token["access_token"]),
         jwt.InvalidSignatureError),
        ("a keygate JWT that is no access token (the status list, typ statuslist+jwt)",
         verifier, status_list.text.strip(), WrongTokenType),
    ]
    for what, v, tok, want in cases:
        try:
            v.verify(tok)
        except want as e:
            print(f"refused as it should be: {what} ({e})")
        else:
            sys.exit(f"recipe (python): {what} was accepted")


def verify_only(issuer, audience):
    verifier = Verifier(issuer, audience, metadata(issuer)["jwks_uri"])
    try:
        claims = verifier.verify(env("KEYGATE_TOKEN"))
    except jwt.InvalidTokenError as e:
        print(f"refused: {e}")
        sys.exit(1)
    print(f"accepted: client {claims['client_id']} of team {claims['team_id']}")


def main():
    if len(sys.argv) != 2 or sys.argv[1] not in ("client", "verify"):
        sys.exit("usage: recipe.py client | recipe.py verify")
    issuer, audience = env("KEYGATE_ISSUER"), env("KEYGATE_AUDIENCE")
    if sys.argv[1] == "client":
        client(issuer, audience)
    else:
        verify_only(issuer, audience)


if __name__ == "__main__":
    main()
