// The Node recipe of docs/recipes.md, run against a real keygate by
// scripts/ci/recipes.sh (after `npm ci` here).
//
//   node recipe.mjs client   get a token with openid-client (OAuth 2.0
//                            discovery, client credentials), verify it with
//                            jose; a wrong audience, a tampered signature and
//                            a JWT that is no access token must be refused
//   node recipe.mjs verify   verify the token in KEYGATE_TOKEN: exit 0 if
//                            accepted, 1 if refused
//
// Settings come from the environment: KEYGATE_ISSUER (keygate's issuer URL),
// KEYGATE_AUDIENCE (keygate's audience setting, the issuer unless set), and
// for the client KEYGATE_CLIENT_ID and KEYGATE_CLIENT_SECRET.
//
// jose does not read keygate's token status list: a deleted key's tokens are
// accepted here until they expire (at most keygate's token_ttl). Keep
// token_ttl short, or ask keygate (POST /oauth/introspect) where that is not
// enough.
import * as client from 'openid-client'
import { createRemoteJWKSet, jwtVerify, errors } from 'jose'

const env = (name) => {
  const value = process.env[name]
  if (!value) {
    console.error(`recipe (node): ${name} is not set`)
    process.exit(2)
  }
  return value
}
const issuer = env('KEYGATE_ISSUER')
const audience = env('KEYGATE_AUDIENCE')

// keygate is an OAuth 2.0 authorization server, not an OpenID provider: its
// metadata is at /.well-known/oauth-authorization-server (RFC 8414).
// openid-client's default ('oidc') asks /.well-known/openid-configuration,
// which keygate answers with 404; algorithm 'oauth2' asks the right place.
// allowInsecureRequests only because this runs against http://127.0.0.1;
// leave it out for an https issuer.
async function discover({ clientId = 'recipe', clientSecret, algorithm = 'oauth2' } = {}) {
  return client.discovery(
    new URL(issuer),
    clientId,
    undefined,
    clientSecret === undefined ? client.None() : client.ClientSecretBasic(clientSecret),
    {
      algorithm,
      execute: issuer.startsWith('http://') ? [client.allowInsecureRequests] : [],
      timeout: 10,
    },
  )
}

// Pins everything a resource server must: the issuer, its audience, the
// algorithm keygate signs with (its signing_alg setting, default ES256) and
// RFC 9068's typ. The JWKS is fetched once and cached; an unknown kid causes
// a refetch at most every 30 s.
function verifier(jwksUri, expectedAudience = audience) {
  const jwks = createRemoteJWKSet(new URL(jwksUri), { timeoutDuration: 10000 })
  return (token) =>
    jwtVerify(token, jwks, {
      issuer,
      audience: expectedAudience,
      algorithms: ['ES256'],
      typ: 'at+jwt',
      requiredClaims: ['iss', 'aud', 'exp', 'iat', 'sub', 'client_id', 'jti'],
      clockTolerance: 30, // seconds
    })
}

// The first character of the signature (the last one may carry only
// padding bits).
function tamperSignature(token) {
  const i = token.lastIndexOf('.') + 1
  return token.slice(0, i) + (token[i] === 'A' ? 'B' : 'A') + token.slice(i + 1)
}

async function clientRecipe() {
  const config = await discover({
    clientId: env('KEYGATE_CLIENT_ID'),
    clientSecret: env('KEYGATE_CLIENT_SECRET'),
  })
  const tokens = await client.clientCredentialsGrant(config, { scope: 'accounting:read' })
  console.log(`token: type ${tokens.token_type}, expires in ${tokens.expiresIn()} s`)

  const { jwks_uri: jwksUri } = config.serverMetadata()
  const verify = verifier(jwksUri)
  const { payload } = await verify(tokens.access_token)
  console.log(`verified: client ${payload.client_id} of team ${payload.team_id}, scope ${payload.scope}`)
  if (!payload.scope.split(' ').includes('accounting:read')) {
    throw new Error('the token lacks the scope it was asked for')
  }

  const statusList = await (await fetch(`${issuer}/statuslists/1`, { signal: AbortSignal.timeout(10000) })).text()
  const cases = [
    ["another API's audience", verifier(jwksUri, 'https://other-api.example.test'), tokens.access_token,
      (e) => e instanceof errors.JWTClaimValidationFailed && e.claim === 'aud'],
    ['a tampered signature', verify, tamperSignature(tokens.access_token),
      (e) => e instanceof errors.JWSSignatureVerificationFailed],
    ['a keygate JWT that is no access token (the status list, typ statuslist+jwt)', verify, statusList.trim(),
      (e) => e instanceof errors.JWTClaimValidationFailed && e.claim === 'typ'],
  ]
  for (const [what, v, token, expected] of cases) {
    try {
      await v(token)
    } catch (e) {
      if (!expected(e)) throw new Error(`${what}: refused for the wrong reason: ${e.code} ${e.message}`)
      console.log(`refused as it should be: ${what} (${e.message})`)
      continue
    }
    throw new Error(`${what} was accepted`)
  }

  // The default discovery is OpenID Connect's, which keygate does not offer.
  try {
    await discover({ algorithm: 'oidc' })
  } catch (e) {
    if (e.cause?.status !== 404) throw new Error(`OpenID Connect discovery: want a 404, got ${e.message}`)
    console.log(`as expected, OpenID Connect discovery finds nothing: ${e.message} (${e.cause.status})`)
    return
  }
  throw new Error('OpenID Connect discovery unexpectedly succeeded')
}

async function verifyOnly() {
  const config = await discover()
  try {
    const { payload } = await verifier(config.serverMetadata().jwks_uri)(env('KEYGATE_TOKEN'))
    console.log(`accepted: client ${payload.client_id} of team ${payload.team_id}`)
  } catch (e) {
    if (!(e instanceof errors.JOSEError)) throw e
    console.log(`refused: ${e.code} ${e.message}`)
    process.exit(1)
  }
}

const commands = { client: clientRecipe, verify: verifyOnly }
const command = commands[process.argv[2]]
if (!command) {
  console.error('usage: node recipe.mjs client | node recipe.mjs verify')
  process.exit(2)
}
try {
  await command()
} catch (e) {
  console.error(`recipe (node): ${e.message}`)
  process.exit(1)
}
