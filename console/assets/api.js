// The console's only way to the server: keygate's public HTTP API, as any
// client would use it. The access token (an admin's, a team management
// key's, or a console session's) lives in this module's memory and nowhere
// else (no localStorage, no sessionStorage, no cookie), so it is gone when
// the tab closes or reloads, and no other page can read it.

// Scopes that open the management API: a full admin, a read-only admin, a
// team's key-management key.
const MANAGEMENT_SCOPES = ["keys:admin", "keys:read", "keys:manage"];

/** An answer the API refused; message is what to show the operator. */
export class APIError extends Error {
  constructor(status, message, type = "") {
    super(message);
    this.status = status;
    this.type = type;
  }
}

/** The admin token expired or was refused: sign in again. */
export class SessionExpired extends Error {}

let token = null;
let expiresAt = 0; // ms since epoch
let clientID = "";
// Who the token speaks for: GET /v1/me's answer ({kind, client_id, team_id,
// user, role, scopes, expires_at}). A team_id means the console shows that
// team alone.
let me = null;

/** GET /v1/me's answer for the current token, null when signed out. */
export function identity() {
  return me;
}

/** Whether a token is held and still valid for a few more seconds. */
export function signedIn() {
  return token !== null && Date.now() < expiresAt;
}

/** The admin client ID of the current session. */
export function who() {
  return clientID;
}

/** Milliseconds until the token expires (0 when none). */
export function remaining() {
  return token === null ? 0 : Math.max(0, expiresAt - Date.now());
}

/** Forgets the token. */
export function signOut() {
  token = null;
  expiresAt = 0;
  clientID = "";
  me = null;
}

/**
 * The token's own claims, read without verifying them: only to show whose
 * team this is should GET /v1/me be missing (an older keygate). Nothing
 * is decided on them; the server checks the token on every call.
 */
function claimsOf(tok) {
  try {
    const part = tok.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
    return JSON.parse(atob(part));
  } catch {
    return {};
  }
}

/** Asks the server who the token is for. */
async function loadMe() {
  try {
    me = await call("GET", "/v1/me");
  } catch (err) {
    if (!(err instanceof APIError && (err.status === 404 || err.status === 405))) {
      signOut();
      throw err;
    }
    const c = claimsOf(token);
    me = { kind: c.team_id ? "team" : "admin", client_id: c.client_id || clientID, team_id: c.team_id || "", user: (c.act && c.act.sub) || "" };
  }
  if (typeof me.team_id !== "string") me.team_id = "";
}

/**
 * Redeems a console link's one-time code (POST /console/session, the code
 * in the body, never in a URL) for the session's token.
 */
export async function redeemSession(code) {
  let res;
  try {
    res = await fetch("/console/session", {
      method: "POST",
      credentials: "omit",
      cache: "no-store",
      headers: { "Content-Type": "application/json", Accept: "application/json" },
      body: JSON.stringify({ code }),
    });
  } catch {
    throw new APIError(0, "keygate did not answer. Check your connection and ask for a new link.");
  }
  const body = await res.json().catch(() => ({}));
  if (!res.ok) {
    throw new APIError(res.status, typeof body.detail === "string" ? body.detail : `The link could not be opened (HTTP ${res.status}).`, body.type || "");
  }
  token = body.access_token;
  expiresAt = Date.now() + Math.max(0, (Number(body.expires_in) || 0) - 5) * 1000;
  clientID = body.user || "";
  await loadMe();
}

/**
 * Exchanges an admin key's ID and secret at the token endpoint. The
 * credentials go as form fields (client_secret_post) with credentials
 * "omit": the browser sends no cookie or cached Basic credentials and,
 * because the request carries no Authorization header, never shows its own
 * login prompt when the answer is 401.
 */
export async function signIn(id, secret) {
  let res;
  try {
    res = await fetch("/oauth/token", {
      method: "POST",
      credentials: "omit",
      cache: "no-store",
      headers: { "Content-Type": "application/x-www-form-urlencoded", Accept: "application/json" },
      body: new URLSearchParams({ grant_type: "client_credentials", client_id: id, client_secret: secret }),
    });
  } catch {
    throw new APIError(0, "keygate did not answer. Check that it is running and try again.");
  }
  const body = await res.json().catch(() => ({}));
  if (!res.ok) {
    if (body.error === "invalid_client") {
      throw new APIError(res.status, "The client ID or secret is wrong.", body.error);
    }
    if (res.status === 503) {
      throw new APIError(res.status, "keygate cannot reach its key store right now. Try again shortly.");
    }
    throw new APIError(res.status, body.error_description || `Sign-in failed (HTTP ${res.status}).`, body.error);
  }
  const granted = String(body.scope || "").split(" ");
  if (!granted.some((s) => MANAGEMENT_SCOPES.includes(s))) {
    throw new APIError(403, "This is a team's API key, not an admin key or a key-management key. Sign in with one of those.");
  }
  token = body.access_token;
  // Ask again a little before the real expiry rather than fail a request.
  expiresAt = Date.now() + Math.max(0, (Number(body.expires_in) || 0) - 10) * 1000;
  clientID = id;
  if (granted.includes("keys:admin") || granted.includes("keys:read")) {
    // An operator: every team, nothing more to ask.
    me = { kind: "admin", client_id: id, team_id: "", user: "" };
    return;
  }
  await loadMe();
}

/**
 * Calls the management API. JSON in, JSON out; a problem+json answer
 * becomes an APIError carrying its detail, a 401 a SessionExpired.
 */
export async function call(method, path, body, contentType = "application/json") {
  if (!signedIn()) {
    signOut();
    throw new SessionExpired("Your session expired. Sign in again.");
  }
  const headers = { Authorization: `Bearer ${token}`, Accept: "application/json" };
  const init = { method, headers, credentials: "omit", cache: "no-store" };
  if (body !== undefined) {
    headers["Content-Type"] = contentType;
    init.body = JSON.stringify(body);
  }
  let res;
  try {
    res = await fetch(path, init);
  } catch {
    throw new APIError(0, "keygate did not answer. Check that it is running and try again.");
  }
  if (res.status === 401) {
    signOut();
    throw new SessionExpired("Your session expired or was ended. Sign in again.");
  }
  if (res.status === 204) return null;
  const data = await res.json().catch(() => null);
  if (!res.ok) {
    const detail = data && typeof data.detail === "string" ? data.detail : `The request failed (HTTP ${res.status}).`;
    throw new APIError(res.status, detail, (data && data.type) || "");
  }
  return data;
}

/** The token endpoint as keygate advertises it (RFC 8414 metadata). */
export async function tokenEndpoint() {
  try {
    const res = await fetch("/.well-known/oauth-authorization-server", { credentials: "omit" });
    const meta = await res.json();
    if (typeof meta.token_endpoint === "string") return meta.token_endpoint;
  } catch {
    // Fall through to this origin's endpoint.
  }
  return new URL("/oauth/token", location.origin).href;
}

const seg = encodeURIComponent;

/** "?a=1&b=2" of q's non-empty entries, "" when there are none. */
function query(q) {
  const params = new URLSearchParams();
  for (const [k, v] of Object.entries(q)) if (v !== undefined && v !== null && v !== "") params.set(k, String(v));
  const qs = params.toString();
  return qs ? `?${qs}` : "";
}

/** A page of teams: {prefix, after, limit}, each optional. */
export const teams = (q = {}) => call("GET", `/v1/teams${query(q)}`);
export const permissions = () => call("GET", "/v1/permissions");
export const listKeys = (team) => call("GET", `/v1/teams/${seg(team)}/keys`);
/** Creates a key; policy holds optional members (expires_at, allowed_cidrs…). */
export const createKey = (team, name, perms, policy = {}) =>
  call("POST", `/v1/teams/${seg(team)}/keys`, { name, permissions: perms, ...policy });
export const deleteKey = (team, id) => call("DELETE", `/v1/teams/${seg(team)}/keys/${seg(id)}`);
export const rotateKey = (team, id, grace) =>
  call("POST", `/v1/teams/${seg(team)}/keys/${seg(id)}/rotate`, { grace_period: grace });
/**
 * Suspends (disabled true) or resumes (false) a key: a JSON merge patch,
 * the only form PATCH takes.
 */
export const setDisabled = (team, id, disabled) =>
  call("PATCH", `/v1/teams/${seg(team)}/keys/${seg(id)}`, { disabled }, "application/merge-patch+json");
/**
 * The status list's ttl in seconds (how long a resource server may use its
 * copy), read from the public list's token; null when it cannot be read.
 */
export async function statusListTTL() {
  try {
    const res = await fetch("/statuslists/1", { credentials: "omit", cache: "no-store" });
    if (!res.ok) return null;
    const payload = (await res.text()).split(".")[1] || "";
    const claims = JSON.parse(atob(payload.replace(/-/g, "+").replace(/_/g, "/")));
    return Number.isInteger(claims.ttl) && claims.ttl > 0 ? claims.ttl : null;
  } catch {
    return null;
  }
}
/** The team's usage per key by UTC day, over the server's default range (the last 30 days). */
export const usage = (team) => call("GET", `/v1/teams/${seg(team)}/usage?granularity=day`);
/**
 * A page of the team's audit trail, newest first: {action, after, limit},
 * each optional. The answer is {events, next}; follow next (the after of
 * the older page) until it is null.
 */
export const events = (team, q = {}) => call("GET", `/v1/teams/${seg(team)}/events${query(q)}`);
