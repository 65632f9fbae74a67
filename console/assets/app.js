// The "Developers > API Keys" page: sign in with an admin key, choose a
// team, then list, generate, rotate and delete its API keys, or read its
// activity (activity.js). A team-bound caller (a team's key-management key,
// or a console link a platform handed out: #session=<code>) sees its one
// team, with no team picker. All data goes through api.js; all rendering
// through dom.js (text only, never HTML).

import * as activity from "./activity.js";
import * as api from "./api.js";
import * as dialogs from "./dialogs.js";
import { byId, el, setError, setText, show, svgEl } from "./dom.js";
import { MAX_NAME_LENGTH, nameError, teamError, teamPrefixOK } from "./validate.js";

// A console link's one-time code leaves the address bar before anything
// else happens: not in the history, not in a bookmark, not in a screenshot,
// not for a script that reads location later. The code is redeemed below.
const linkCode = (() => {
  if (!location.hash.startsWith("#session=")) return null;
  const code = location.hash.slice("#session=".length);
  history.replaceState(null, "", location.pathname + location.search);
  return code;
})();

const state = {
  section: "keys",
  // The one team of a team-bound caller ("" for an operator): no picker.
  fixedTeam: "",
  // Signed in through a console link: no sign-in form to come back to.
  viaLink: false, // which page of a team: "keys" or "activity"
  team: "",
  keys: [],
  maxKeys: 5,
  catalog: new Map(), // permission id → {id, name, description, scopes}
  maxNameLength: MAX_NAME_LENGTH,
  tokenURL: "",
  secret: null, // what the secret dialog shows, until it is closed
  expiredWhileSecret: "", // a session that lapsed while a secret was shown
  target: null, // the key a delete, rotate, suspend or resume dialog is about
  suspend: true, // whether the suspend dialog suspends (else resumes)
  usage: null, // the team's usage by day (usageByDay), null when it could not be read
};

const views = {
  link: byId("link-view"),
  signin: byId("signin-view"),
  team: byId("team-view"),
  keys: byId("keys-view"),
  activity: byId("activity-view"),
};

// The navigation's pages: their link and title.
const sections = {
  keys: { link: byId("nav-api-keys"), title: "API Keys" },
  activity: { link: byId("nav-activity"), title: "Activity" },
};

function setSection(name) {
  state.section = name;
  for (const [n, s] of Object.entries(sections)) {
    if (n === name) s.link.setAttribute("aria-current", "page");
    else s.link.removeAttribute("aria-current");
  }
  setText(byId("page-title"), sections[name].title);
  document.title = `${sections[name].title} · keygate`;
}

const when = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "short" });

function timeText(iso) {
  return el("time", { datetime: iso, title: iso }, when.format(new Date(iso)));
}

function showView(name) {
  for (const [n, node] of Object.entries(views)) show(node, n === name);
  const signedIn = name !== "signin" && name !== "link";
  show(byId("session"), signedIn);
  setText(byId("session-who"), signedIn ? whoText() : "");
  show(byId("sidenav"), name !== "link");
  // A team-bound caller has one team: nothing to switch to.
  for (const id of ["switch-team", "activity-switch-team"]) show(byId(id), state.fixedTeam === "");
}

/** The header: "alice@example.com — team acme" for a console link. */
function whoText() {
  const me = api.identity();
  if (state.fixedTeam === "") return `Signed in as ${api.who()}`;
  const name = (me && me.user) || (me && me.client_id) || api.who();
  return `${name} — team ${state.fixedTeam}`;
}

/** The page of a console link that cannot be (or no longer is) used. */
function showLink(title, message) {
  setText(byId("link-title"), title);
  setText(byId("link-message"), message);
  showView("link");
  byId("main").focus();
}

const LINK_FAILED = "This console link cannot be used";
const LINK_FAILED_MESSAGE = "The link was already used or has expired: each link opens the console once, within a minute of being made. Ask for a new link where you got this one.";

/** Takes the team of a team-bound caller as the only one. */
function adoptIdentity() {
  const me = api.identity();
  state.fixedTeam = me && me.team_id ? me.team_id : "";
  if (state.fixedTeam) state.team = state.fixedTeam;
}

// ---- session ---------------------------------------------------------

let expiryTimer = 0;

function anyDialogOpen() {
  return document.querySelector("dialog[open]") !== null;
}

/** Back to the sign-in form, keeping the chosen team for afterwards. */
function expire(message) {
  api.signOut();
  clearTimeout(expiryTimer);
  if (state.secret) {
    // Never take the one view of a secret away; ask once it is closed.
    state.expiredWhileSecret = message;
    return;
  }
  for (const d of document.querySelectorAll("dialog[open]")) d.close();
  if (state.viaLink) {
    // No credentials to sign in again with: the platform hands out links.
    forgetTeam();
    showLink("Your console session has ended", "Ask for a new link where you got this one to come back.");
    return;
  }
  const notice = byId("signin-notice");
  setText(notice, message);
  show(notice, Boolean(message));
  showView("signin");
  byId("signin-id").focus();
}

function scheduleExpiry() {
  clearTimeout(expiryTimer);
  expiryTimer = setTimeout(() => {
    if (!anyDialogOpen()) expire("Your session expired. Sign in again.");
  }, api.remaining());
}

/** Shows err where it belongs: a lapsed session sends back to sign-in. */
function report(err, node) {
  if (err instanceof api.SessionExpired) {
    expire(err.message);
    return;
  }
  if (!(err instanceof api.APIError)) console.error(err);
  setError(node, err.message || "Something went wrong.");
}

byId("signin-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const idField = byId("signin-id");
  const secretField = byId("signin-secret");
  const error = byId("signin-error");
  const id = idField.value.trim();
  if (id === "" || secretField.value === "") {
    setError(error, "Enter the admin client ID and secret.");
    (id === "" ? idField : secretField).focus();
    return;
  }
  setError(error, "");
  try {
    await whileBusy(byId("signin-submit"), () => api.signIn(id, secretField.value));
  } catch (err) {
    setError(error, err.message);
    secretField.select();
    secretField.focus();
    return;
  }
  secretField.value = "";
  show(byId("signin-notice"), false);
  adoptIdentity();
  scheduleExpiry();
  try {
    await loadCatalog();
  } catch (err) {
    report(err, error);
    return;
  }
  const team = state.team || teamFromHash();
  if (team && !teamError(team)) {
    await openTeam(team);
  } else {
    await showTeams();
  }
});

/** Leaves none of the last team's data in the (hidden) page. */
function forgetTeam() {
  state.team = "";
  state.fixedTeam = "";
  state.keys = [];
  renderKeys();
  activity.clear();
  byId("team-list").replaceChildren();
  show(byId("team-more"), false);
  history.replaceState(null, "", location.pathname);
}

byId("sign-out").addEventListener("click", () => {
  api.signOut();
  clearTimeout(expiryTimer);
  forgetTeam();
  if (state.viaLink) {
    showLink("You are signed out", "Ask for a new link where you got this one to open the console again.");
    return;
  }
  setText(byId("signin-notice"), "You are signed out.");
  show(byId("signin-notice"), true);
  showView("signin");
  byId("signin-id").focus();
});

async function loadCatalog() {
  const body = await api.permissions();
  state.catalog = new Map(body.permissions.map((p) => [p.id, p]));
  if (Number.isInteger(body.max_name_length)) state.maxNameLength = body.max_name_length;
  if (!state.tokenURL) state.tokenURL = await api.tokenEndpoint();
}

// ---- teams -----------------------------------------------------------

// The address names the team and page: #team=acme, #team=acme&view=activity.
function teamFromHash() {
  const m = /^#team=([^&]+)(&view=activity)?$/.exec(location.hash);
  if (m && m[2]) setSection("activity");
  try {
    return m ? decodeURIComponent(m[1]) : "";
  } catch {
    return ""; // a mangled link: pick the team instead
  }
}

function teamHash(team) {
  return `#team=${encodeURIComponent(team)}${state.section === "activity" ? "&view=activity" : ""}`;
}

const TEAM_PAGE = 50;
let teamQuery = { prefix: "", next: null, seq: 0 };
let teamFilterTimer = 0;

async function showTeams() {
  if (state.fixedTeam) {
    await openTeam(state.fixedTeam);
    return;
  }
  state.team = "";
  history.replaceState(null, "", location.pathname);
  showView("team");
  setError(byId("team-error"), "");
  byId("team-id").value = "";
  byId("team-id").focus();
  await loadTeams("", false);
}

/**
 * Loads a page of teams whose ID starts with prefix: the first page
 * (replacing the list) or, with more, the next one (appended). Answers to
 * superseded queries (the operator kept typing) are dropped.
 */
async function loadTeams(prefix, more) {
  const seq = ++teamQuery.seq;
  const list = byId("team-list");
  // A large Redis store takes a moment per query: say so, keep the old
  // list visible meanwhile.
  list.setAttribute("aria-busy", "true");
  let body;
  try {
    body = await api.teams({ prefix, after: more ? teamQuery.next : "", limit: TEAM_PAGE });
  } catch (err) {
    if (seq === teamQuery.seq) {
      list.setAttribute("aria-busy", "false");
      report(err, byId("team-error"));
    }
    return;
  }
  if (seq !== teamQuery.seq) return;
  list.setAttribute("aria-busy", "false");
  teamQuery = { prefix, next: body.next, seq };
  state.maxKeys = body.max_keys;
  const items = body.teams.map((t) =>
    el("li", {},
      el("button", { type: "button", className: "team", "data-team": t.team_id, on: { click: () => openTeam(t.team_id) } },
        el("span", { className: "team-id" }, t.team_id),
        el("span", { className: "team-count" }, `${t.key_count} of ${body.max_keys} ${body.max_keys === 1 ? "key" : "keys"}`))));
  if (more) list.append(...items);
  else list.replaceChildren(...items);
  const empty = list.children.length === 0;
  setText(byId("team-empty"), prefix ? `No team whose ID starts with “${prefix}” has keys: open it to start a new team.` : "No team has keys yet.");
  show(byId("team-empty"), empty);
  show(byId("team-more"), body.next !== null && body.next !== undefined);
}

byId("team-more").addEventListener("click", () => loadTeams(teamQuery.prefix, true));

// Typing a team ID filters the list (by prefix, on the server), so a large
// installation never sends every team to the browser.
byId("team-id").addEventListener("input", () => {
  clearTimeout(teamFilterTimer);
  const prefix = byId("team-id").value.trim();
  if (!teamPrefixOK(prefix) || prefix === teamQuery.prefix) return;
  teamFilterTimer = setTimeout(() => loadTeams(prefix, false), 200);
});

byId("team-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const field = byId("team-id");
  const value = field.value.trim();
  const problem = teamError(value);
  setError(byId("team-error"), problem);
  field.setAttribute("aria-invalid", problem ? "true" : "false");
  if (problem) {
    field.focus();
    return;
  }
  field.value = "";
  openTeam(value);
});

byId("switch-team").addEventListener("click", () => showTeams());
byId("activity-switch-team").addEventListener("click", () => showTeams());

for (const [name, s] of Object.entries(sections)) {
  s.link.addEventListener("click", (event) => {
    event.preventDefault();
    if (!views.link.hidden) return;
    setSection(name);
    if (!views.signin.hidden) {
      byId("signin-id").focus();
      return;
    }
    // A lapsed session surfaces here as SessionExpired: sign-in, then back.
    if (state.team) openTeam(state.team);
    else showTeams();
  });
}

activity.setup((err, node) => report(err, node));

/** Opens the team on the current page of the navigation. */
async function openTeam(team) {
  state.team = team;
  history.replaceState(null, "", teamHash(team));
  if (state.section === "activity") {
    showView("activity");
    await activity.open(team);
    // Unless a lapsed session sent the operator to sign in meanwhile.
    if (!views.activity.hidden) byId("main").focus();
    return;
  }
  setText(byId("keys-team"), team);
  state.keys = [];
  state.usage = null;
  renderKeys();
  showView("keys");
  await refreshKeys();
  byId("main").focus();
}

// ---- the key list ----------------------------------------------------

async function refreshKeys() {
  const error = byId("keys-error");
  // Usage is an extra: if it cannot be read, the keys still show.
  const usage = api.usage(state.team).then(usageByDay, () => null);
  try {
    const body = await api.listKeys(state.team);
    state.keys = body.keys;
    state.maxKeys = body.max_keys;
    setError(error, "");
  } catch (err) {
    report(err, error);
  }
  state.usage = await usage;
  renderKeys();
}

// ---- usage -----------------------------------------------------------

const DAY_MS = 24 * 60 * 60 * 1000;

/**
 * Turns the API's usage answer (active buckets only) into one count of
 * tokens per day of its range, per key and for the whole team.
 */
function usageByDay(u) {
  const from = Date.parse(u.from);
  const days = Math.max(1, Math.round((Date.parse(u.to) - from) / DAY_MS));
  const series = (buckets) => {
    const out = new Array(days).fill(0);
    for (const b of buckets) {
      const i = Math.round((Date.parse(b.start) - from) / DAY_MS);
      if (i >= 0 && i < days) out[i] += b.tokens;
    }
    return out;
  };
  const keys = new Map();
  for (const k of u.keys) {
    keys.set(k.client_id, { days: series(k.buckets), tokens: k.tokens, failures: k.failed_authentications });
  }
  const team = { days: series(u.buckets), tokens: u.total.tokens, failures: u.total.failed_authentications };
  return { days, keys, team };
}

function plural(n, one, many) {
  return `${n.toLocaleString()} ${n === 1 ? one : many}`;
}

function usageLabel(u, days) {
  let text = `${plural(u.tokens, "token", "tokens")} in the last ${days} days`;
  if (u.failures > 0) text += `, ${plural(u.failures, "failed authentication", "failed authentications")}`;
  return text;
}

/**
 * A small bar chart of tokens per day, oldest day first: inline SVG with
 * role img and the total as its accessible name and tooltip. Bars are
 * scaled to the busiest day; data-tokens carries the series.
 */
function usageChart(u, days) {
  const label = usageLabel(u, days);
  const h = 16;
  const max = Math.max(1, ...u.days);
  const bars = u.days.map((n, i) => {
    const bh = n > 0 ? Math.max(2, Math.round((n / max) * h)) : 0;
    return bh ? svgEl("rect", { class: "bar", x: i * 1.5, y: h - bh, width: 1, height: bh }) : null;
  });
  return svgEl("svg", {
    class: "spark", role: "img", "aria-label": label, viewBox: `0 0 ${days * 1.5} ${h + 1}`,
    width: days * 1.5, height: h + 1, "data-tokens": u.days.join(","), "data-total": u.tokens,
  },
  svgEl("title", {}, label),
  svgEl("line", { class: "axis", x1: 0, y1: h + 0.5, x2: days * 1.5, y2: h + 0.5 }),
  ...bars);
}

/** A key's usage under its last-used time: the chart and the total. */
function usageCell(u) {
  if (!state.usage) return el("span", { className: "muted", title: "Usage could not be loaded" }, "–");
  const days = state.usage.days;
  const data = u || { days: new Array(days).fill(0), tokens: 0, failures: 0 };
  return el("span", { className: "usage-cell" }, usageChart(data, days),
    el("span", { className: "usage-total", "aria-hidden": "true" }, data.tokens.toLocaleString()));
}

function permissionNames(ids) {
  return ids.map((id) => (state.catalog.get(id) || { name: id }).name);
}

const DAY = 24 * 60 * 60 * 1000;

/** "12 days", "5 hours", "3 minutes": ms in its largest whole unit. */
function span(ms) {
  if (ms >= DAY) return plural(Math.floor(ms / DAY), "day", "days");
  if (ms >= 60 * 60 * 1000) return plural(Math.floor(ms / (60 * 60 * 1000)), "hour", "hours");
  if (ms >= 60 * 1000) return plural(Math.floor(ms / (60 * 1000)), "minute", "minutes");
  return "under a minute";
}

const STATUS_TEXT = { active: "Active", suspended: "Suspended", expired: "Expired" };

/**
 * A key's state: status, expiry (with the near-expiry mark the server
 * decides from key_expiry_warning), rotation and restrictions.
 */
function stateCell(k) {
  const status = k.status || "active";
  const parts = [el("span", { className: `status status-${status}` }, STATUS_TEXT[status] || status)];
  if (k.disabled && k.disabled_at && status === "suspended") {
    parts.push(el("span", { className: "detail disabled-at" }, "suspended since ", timeText(k.disabled_at)));
  }
  let expiry;
  if (!k.expires_at) {
    expiry = el("span", { className: "detail expiry" }, "never expires");
  } else {
    const left = new Date(k.expires_at).getTime() - Date.now();
    const text = status === "expired" || left <= 0 ? "expired" : `expires in ${span(left)}`;
    expiry = el("span", { className: "detail expiry", title: k.expires_at }, text,
      k.expiring_soon && text !== "expired"
        ? el("span", { className: "expiring-soon", title: "This key expires soon" }, " ⚠ expires soon")
        : null);
  }
  parts.push(expiry);
  if (k.secret_rotated_at) {
    parts.push(el("span", { className: "detail rotation" }, "rotated ", timeText(k.secret_rotated_at),
      k.previous_secret_expires_at
        ? el("span", { className: "previous-secret" }, "; previous secret live until ", timeText(k.previous_secret_expires_at))
        : null));
  }
  const limits = [];
  if (k.audiences && k.audiences.length) limits.push(`audiences: ${k.audiences.join(", ")}`);
  if (k.allowed_cidrs && k.allowed_cidrs.length) limits.push(`source addresses: ${k.allowed_cidrs.join(", ")}`);
  if (k.token_ttl) limits.push(`token lifetime: ${k.token_ttl} s`);
  if (k.metadata && Object.keys(k.metadata).length) limits.push(`metadata: ${JSON.stringify(k.metadata)}`);
  if (limits.length) parts.push(el("ul", { className: "restrictions" }, ...limits.map((l) => el("li", {}, l))));
  return parts;
}

function renderKeys() {
  const body = byId("keys-body");
  const rows = state.keys.map((k) =>
    el("tr", { "data-client-id": k.client_id },
      el("td", { className: "name", "data-label": "Name" }, k.name,
        // A secret reported leaked (POST /v1/leaked-secrets) works nowhere
        // until the key is rotated.
        k.secret_suspended_at
          ? el("span", { className: "suspended", title: `Reported leaked ${when.format(new Date(k.secret_suspended_at))}` },
            "Secret suspended: reported leaked. Rotate to get a working secret.")
          : null),
      el("td", { className: "client-id", "data-label": "Client ID" }, el("code", {}, k.client_id)),
      el("td", { className: "state", "data-label": "State" }, ...stateCell(k)),
      el("td", { className: "created", "data-label": "Created" }, timeText(k.created_at)),
      el("td", { className: "last-used", "data-label": "Last used" },
        el("span", { className: "when" }, k.last_used_at ? timeText(k.last_used_at) : "never"),
        usageCell(state.usage && state.usage.keys.get(k.client_id))),
      el("td", { className: "permissions", "data-label": "Permissions" },
        el("ul", {}, ...permissionNames(k.permissions).map((n) => el("li", {}, n)))),
      el("td", { className: "key-actions" },
        el("div", { className: "row-actions" },
          el("button", { type: "button", className: "rotate", "aria-label": `Rotate the secret of ${k.name}`, on: { click: () => askRotate(k) } }, "Rotate"),
          k.disabled
            ? el("button", { type: "button", className: "resume", "aria-label": `Resume ${k.name}`, on: { click: () => askSuspend(k, false) } }, "Resume")
            : el("button", { type: "button", className: "suspend", "aria-label": `Suspend ${k.name}`, on: { click: () => askSuspend(k, true) } }, "Suspend"),
          el("button", { type: "button", className: "danger delete", "aria-label": `Delete ${k.name}`, on: { click: () => askDelete(k) } }, "Delete")))));
  body.replaceChildren(...rows);
  show(byId("keys-table"), rows.length > 0);
  show(byId("keys-empty"), rows.length === 0);

  const n = state.keys.length;
  setText(byId("key-usage"), `${n} of ${state.maxKeys} keys used`);
  const team = byId("team-usage");
  if (state.usage) {
    team.replaceChildren(el("span", {}, `Team: ${usageLabel(state.usage.team, state.usage.days)}`), " ",
      usageChart(state.usage.team, state.usage.days));
  } else {
    team.replaceChildren();
  }
  show(team, state.usage !== null);
  const full = n >= state.maxKeys;
  const generate = byId("generate");
  generate.disabled = full;
  const reason = byId("limit-reason");
  setText(reason, full
    ? `This team has ${state.maxKeys} API keys, the maximum. Delete a key before generating another.`
    : "");
  show(reason, full);
}

function announce(message) {
  setText(byId("keys-status"), message);
}

/** Runs fn with button disabled, so a double click sends one request. */
async function whileBusy(button, fn) {
  button.disabled = true;
  try {
    return await fn();
  } finally {
    button.disabled = false;
  }
}

/** Opens the delete or rotate dialog about one key, with no old error. */
function openForKey(prefix, key, focus) {
  state.target = key;
  setText(byId(`${prefix}-name`), key.name);
  setText(byId(`${prefix}-id`), key.client_id);
  setError(byId(`${prefix}-error`), "");
  dialogs.open(byId(`${prefix}-dialog`), focus);
}

// ---- generate --------------------------------------------------------

const generateDialog = byId("generate-dialog");
dialogs.setup(generateDialog);

byId("generate").addEventListener("click", () => {
  byId("generate-form").reset();
  const nameField = byId("key-name");
  nameField.maxLength = state.maxNameLength * 4; // room to type; the count is checked below
  nameField.removeAttribute("aria-invalid");
  setError(byId("key-name-error"), "");
  setError(byId("key-perms-error"), "");
  setError(byId("generate-error"), "");
  const list = byId("key-perms-list");
  list.replaceChildren(...[...state.catalog.values()].map((p, i) =>
    el("label", { className: "choice" },
      el("input", { type: "checkbox", name: "permission", value: p.id, checked: i === 0 && state.catalog.size === 1, "aria-describedby": `perm-desc-${i}` }),
      el("span", {},
        el("span", { className: "choice-name" }, p.name),
        el("span", { className: "choice-desc", id: `perm-desc-${i}` }, p.description)))));
  dialogs.open(generateDialog, nameField);
});

function checkName() {
  const field = byId("key-name");
  const problem = nameError(field.value, state.maxNameLength);
  setError(byId("key-name-error"), problem);
  field.setAttribute("aria-invalid", problem ? "true" : "false");
  return problem;
}

byId("key-name").addEventListener("blur", () => {
  if (byId("key-name").value !== "") checkName();
});
byId("key-name").addEventListener("input", () => {
  if (!byId("key-name-error").hidden) checkName();
});

// chosenPolicy is the generate dialog's optional policy members: an expiry
// in whole days from now, and source addresses (the server checks both and
// names the field it refuses).
function chosenPolicy() {
  const policy = {};
  const days = Number(byId("key-expiry").value);
  if (days > 0) {
    policy.expires_at = new Date(Date.now() + days * 86400000).toISOString().replace(/\.\d{3}Z$/, "Z");
  }
  const cidrs = byId("key-cidrs").value.split(/[\s,]+/).filter(Boolean);
  if (cidrs.length > 0) policy.allowed_cidrs = cidrs;
  return policy;
}

function chosenPermissions() {
  return [...byId("key-perms-list").querySelectorAll("input[name=permission]:checked")].map((n) => n.value);
}

byId("generate-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  setError(byId("generate-error"), "");
  const nameProblem = checkName();
  const perms = chosenPermissions();
  const permProblem = perms.length === 0 ? "Choose at least one permission." : "";
  setError(byId("key-perms-error"), permProblem);
  if (nameProblem) {
    byId("key-name").focus();
    return;
  }
  if (permProblem) {
    byId("key-perms-list").querySelector("input")?.focus();
    return;
  }
  let created;
  try {
    created = await whileBusy(byId("generate-submit"), () => api.createKey(state.team, byId("key-name").value.trim(), perms, chosenPolicy()));
  } catch (err) {
    if (err instanceof api.APIError && err.message.startsWith('"name"')) {
      setError(byId("key-name-error"), err.message);
      byId("key-name").setAttribute("aria-invalid", "true");
      byId("key-name").focus();
    } else if (err instanceof api.APIError && /permission/i.test(err.message) && err.status === 400) {
      setError(byId("key-perms-error"), err.message);
    } else {
      report(err, byId("generate-error"));
    }
    return;
  }
  dialogs.close(generateDialog);
  showSecret("API key created", created, created.client_secret, "");
  announce(`Created ${created.name}.`);
  await refreshKeys();
});

// ---- the secret, once -------------------------------------------------

const secretDialog = byId("secret-dialog");
const confirmDialog = byId("close-confirm-dialog");
dialogs.setup(secretDialog, { onCancel: () => dialogs.open(confirmDialog, byId("close-confirm-back")) });
dialogs.setup(confirmDialog);

function showSecret(title, key, secret, graceNote) {
  state.secret = {
    client_id: key.client_id,
    client_secret: secret,
    token_url: state.tokenURL,
    scopes: key.scopes,
    team_id: key.team_id,
    name: key.name,
  };
  setText(byId("secret-title"), title);
  setText(byId("secret-client-id"), key.client_id);
  setText(byId("secret-client-secret"), secret);
  setText(byId("secret-grace"), graceNote);
  show(byId("secret-grace"), Boolean(graceNote));
  setText(byId("copy-status"), "");
  dialogs.open(secretDialog, byId("copy-client-secret"));
}

async function copy(text, what) {
  const status = byId("copy-status");
  try {
    await navigator.clipboard.writeText(text);
    setText(status, `${what} copied.`);
  } catch {
    setText(status, `Could not copy: select the ${what.toLowerCase()} and copy it by hand.`);
  }
}

byId("copy-client-id").addEventListener("click", () => state.secret && copy(state.secret.client_id, "Client ID"));
byId("copy-client-secret").addEventListener("click", () => state.secret && copy(state.secret.client_secret, "Client secret"));

byId("download-key").addEventListener("click", () => {
  if (!state.secret) return;
  const s = state.secret;
  const json = JSON.stringify({
    client_id: s.client_id,
    client_secret: s.client_secret,
    token_url: s.token_url,
    scopes: s.scopes,
    team_id: s.team_id,
    name: s.name,
  }, null, 2) + "\n";
  const url = URL.createObjectURL(new Blob([json], { type: "application/json" }));
  const a = el("a", { href: url, download: `keygate-${s.client_id}.json` });
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10_000);
  setText(byId("copy-status"), "Downloaded. Keep the file somewhere safe and delete it once the secret is stored.");
});

byId("secret-done").addEventListener("click", () => dialogs.open(confirmDialog, byId("close-confirm-back")));

byId("close-confirm-yes").addEventListener("click", () => {
  state.secret = null;
  // Leave no copy of the secret in the page once it has been dismissed.
  setText(byId("secret-client-secret"), "");
  setText(byId("secret-client-id"), "");
  dialogs.close(confirmDialog);
  dialogs.close(secretDialog);
  if (state.expiredWhileSecret) {
    const message = state.expiredWhileSecret;
    state.expiredWhileSecret = "";
    expire(message);
  } else if (!api.signedIn()) {
    expire("Your session expired. Sign in again.");
  }
});

// Chrome may close a modal dialog on a repeated Esc without a cancelable
// event; a secret not yet confirmed as saved brings the dialog back.
secretDialog.addEventListener("close", () => {
  if (state.secret) {
    secretDialog.showModal();
    dialogs.open(confirmDialog, byId("close-confirm-back"));
  }
});

addEventListener("beforeunload", (event) => {
  if (state.secret) event.preventDefault();
});

// ---- delete ----------------------------------------------------------

const deleteDialog = byId("delete-dialog");
dialogs.setup(deleteDialog);

function askDelete(key) {
  // Focus starts on Cancel: Enter alone must not delete a key.
  openForKey("delete", key, byId("delete-cancel"));
}

byId("delete-confirm").addEventListener("click", async () => {
  const key = state.target;
  if (!key) return;
  try {
    await whileBusy(byId("delete-confirm"), () => api.deleteKey(state.team, key.client_id));
  } catch (err) {
    // Already gone (another admin, another tab): the list will show it.
    if (!(err instanceof api.APIError && err.status === 404)) {
      report(err, byId("delete-error"));
      return;
    }
  }
  state.target = null;
  dialogs.close(deleteDialog);
  announce(`Deleted ${key.name}.`);
  await refreshKeys();
  byId("generate").disabled ? byId("main").focus() : byId("generate").focus();
});

// ---- rotate ----------------------------------------------------------

const rotateDialog = byId("rotate-dialog");
dialogs.setup(rotateDialog);

function askRotate(key) {
  byId("rotate-grace").value = "24h";
  openForKey("rotate", key, byId("rotate-grace"));
}

byId("rotate-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const key = state.target;
  if (!key) return;
  let rotated;
  try {
    rotated = await whileBusy(byId("rotate-confirm"), () => api.rotateKey(state.team, key.client_id, byId("rotate-grace").value));
  } catch (err) {
    report(err, byId("rotate-error"));
    return;
  }
  state.target = null;
  dialogs.close(rotateDialog);
  const grace = rotated.previous_secret_expires_at
    ? `The previous secret keeps working until ${when.format(new Date(rotated.previous_secret_expires_at))}.`
    : "The previous secret no longer works.";
  showSecret("Secret rotated", rotated, rotated.client_secret, grace);
  await refreshKeys();
});

// ---- suspend and resume -----------------------------------------------

const suspendDialog = byId("suspend-dialog");
dialogs.setup(suspendDialog);

/** The status list's ttl as words, fetched once. */
let ttlWords = null;
async function statusListTTLWords() {
  if (ttlWords === null) {
    const ttl = await api.statusListTTL();
    ttlWords = ttl ? span(ttl * 1000) : "";
  }
  return ttlWords || "the status list's ttl";
}

async function askSuspend(key, suspend) {
  state.suspend = suspend;
  setText(byId("suspend-title"), suspend ? "Suspend API key?" : "Resume API key?");
  setText(byId("suspend-confirm"), suspend ? "Suspend key" : "Resume key");
  const within = await statusListTTLWords();
  setText(byId("suspend-consequence"), suspend
    ? `It gets no new tokens; its outstanding tokens are refused by resource servers that check the status list within ${within}. Resuming makes its unexpired tokens valid again.`
    : "It gets tokens again, and its tokens that have not expired are valid again.");
  openForKey("suspend", key, byId("suspend-cancel"));
}

byId("suspend-confirm").addEventListener("click", async () => {
  const key = state.target;
  if (!key) return;
  const suspend = state.suspend;
  try {
    await whileBusy(byId("suspend-confirm"), () => api.setDisabled(state.team, key.client_id, suspend));
  } catch (err) {
    report(err, byId("suspend-error"));
    return;
  }
  state.target = null;
  dialogs.close(suspendDialog);
  announce(suspend ? `Suspended ${key.name}.` : `Resumed ${key.name}.`);
  await refreshKeys();
});

// ---- start -----------------------------------------------------------

/** Opens the console from a link's code: the team, without a sign-in. */
async function startFromLink(code) {
  showLink("Opening the console…", "");
  if (!/^[A-Za-z0-9_-]{1,256}$/.test(code)) {
    showLink(LINK_FAILED, LINK_FAILED_MESSAGE);
    return;
  }
  try {
    await api.redeemSession(code);
  } catch (err) {
    if (!(err instanceof api.APIError)) console.error(err);
    showLink(LINK_FAILED, err.status === 400 ? LINK_FAILED_MESSAGE : err.message);
    return;
  }
  state.viaLink = true;
  adoptIdentity();
  if (!state.fixedTeam) {
    api.signOut();
    showLink(LINK_FAILED, LINK_FAILED_MESSAGE);
    return;
  }
  scheduleExpiry();
  try {
    await loadCatalog();
  } catch (err) {
    showView("keys");
    report(err, byId("keys-error"));
    return;
  }
  await openTeam(state.fixedTeam);
}

if (linkCode !== null) {
  startFromLink(linkCode);
} else {
  showView("signin");
  byId("signin-id").focus();
  api.tokenEndpoint().then((url) => {
    if (!state.tokenURL) state.tokenURL = url;
  });
}
