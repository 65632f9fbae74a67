// The "Activity" view: one team's audit trail (GET /v1/teams/{team_id}/events,
// docs/audit.md), newest first, filtered by action, older pages on request.
// User agents and key names are whatever a caller chose to send, so every
// value of an event reaches the page as text, through dom.js, like the
// rest of the console.

import * as api from "./api.js";
import { byId, el, setError, setText, show } from "./dom.js";

// How many further requests one load may send while the server answers
// short or empty pages with next set: one request examines at most 10 000
// events (docs/audit.md), so a filter that matches little can take a few.
// After that the "Load older" button stays for the operator to go on.
const EXTRA_REQUESTS = 5;

const DEFAULT_PAGE = 50;

const ACTIONS = {
  "key.created": "Key created",
  "key.rotated": "Secret rotated",
  "key.deleted": "Key deleted",
  "key.secret_leaked": "Secret reported leaked",
  "token.revoked": "Token revoked",
  "management.auth_failed": "Refused management call",
};

const ACTORS = {
  admin_key: "Admin key",
  team_key: "Team key",
  system: "keygate",
  anonymous: "Unknown caller",
};

const REASONS = {
  no_token: "no token",
  invalid_token: "invalid or expired token",
  insufficient_scope: "token lacks the permission",
  key_gone: "admin key deleted",
  token_revoked: "token revoked",
};

const view = {
  team: "",
  action: "",
  next: null, // the after= of the next older page; null when there is none
  seq: 0, // drops answers to a superseded load (another team or filter)
  loading: false,
  names: null, // client ID → name of the team's current keys; null when unknown
};

let report = (err, node) => setError(node, err.message);

/** Wires the view's controls; onError shows an error where it belongs. */
export function setup(onError) {
  report = onError;
  byId("activity-action").addEventListener("change", () => {
    view.action = byId("activity-action").value;
    load(false);
  });
  byId("activity-more").addEventListener("click", () => {
    if (!view.loading) load(true);
  });
}

/** Shows the team's newest events (with the filter as it is). */
export async function open(team) {
  if (team !== view.team) {
    view.action = "";
    byId("activity-action").value = "";
  }
  view.team = team;
  setText(byId("activity-team"), team);
  // Names are an extra: without them the rows still show client IDs.
  const names = api.listKeys(team).then((body) => new Map(body.keys.map((k) => [k.client_id, k.name])), () => null);
  byId("activity-body").replaceChildren();
  show(byId("activity-empty"), false);
  show(byId("activity-more"), false);
  view.names = await names;
  await load(false);
}

/** Forgets the shown events (at sign-out). */
export function clear() {
  view.seq++;
  view.team = "";
  view.next = null;
  view.names = null;
  byId("activity-body").replaceChildren();
  show(byId("activity-empty"), false);
  show(byId("activity-more"), false);
  setError(byId("activity-error"), "");
}

function pageSize() {
  const n = Number(byId("activity-view").dataset.pageSize);
  return Number.isInteger(n) && n >= 1 && n <= 1000 ? n : DEFAULT_PAGE;
}

/**
 * Loads the newest page (replacing the rows) or, with more, the next older
 * one (appended): up to a page of events, asking again while the server
 * answers short pages with next set, at most EXTRA_REQUESTS more times.
 */
async function load(more) {
  const seq = ++view.seq;
  const { team, action } = view;
  const size = pageSize();
  const table = byId("activity-table");
  const button = byId("activity-more");
  const error = byId("activity-error");
  let after = more ? view.next : null;
  const got = [];
  let next = null;
  // aria-disabled rather than disabled: a disabled button loses focus,
  // and a keyboard user pressing Load older again would start from the top.
  view.loading = true;
  table.setAttribute("aria-busy", "true");
  button.setAttribute("aria-disabled", "true");
  try {
    for (let i = 0; i <= EXTRA_REQUESTS; i++) {
      const body = await api.events(team, { action, after, limit: size - got.length });
      if (seq !== view.seq) return;
      got.push(...body.events);
      next = body.next ?? null;
      if (got.length >= size || next === null) break;
      after = next;
    }
  } catch (err) {
    if (seq === view.seq) report(err, error);
    return;
  } finally {
    if (seq === view.seq) {
      view.loading = false;
      table.setAttribute("aria-busy", "false");
      button.removeAttribute("aria-disabled");
    }
  }
  setError(error, "");
  view.next = next;
  const rows = got.map(row);
  const tbody = byId("activity-body");
  if (more) tbody.append(...rows);
  else tbody.replaceChildren(...rows);

  const none = tbody.children.length === 0;
  show(table, !none);
  const empty = byId("activity-empty");
  const what = action ? `No “${byId("activity-action").selectedOptions[0].text}” events` : "No activity";
  setText(empty, next === null
    ? `${what} in the retention period: keygate keeps events for 90 days, unless the operator set another audit_retention.`
    : `${what} among the most recent events examined so far. Load older to look further back.`);
  show(empty, none);
  const focused = document.activeElement === button;
  show(button, next !== null);
  setText(byId("activity-status"), more
    ? `${rows.length} older ${rows.length === 1 ? "event" : "events"} loaded.`
    : `${rows.length} ${rows.length === 1 ? "event" : "events"} shown.`);
  // The button the operator pressed went away (no older events): keep
  // focus in the list rather than drop it to the page.
  if (focused && button.hidden) {
    const target = rows[0] || table;
    target.tabIndex = -1;
    target.focus();
  }
}

const when = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "medium" });

/** The local time, with the full UTC time as its tooltip. */
function timeOf(iso) {
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return el("span", {}, iso);
  const utc = d.toISOString().replace("T", " ").replace(/\.\d+Z$/, " UTC");
  return el("time", { datetime: iso, title: utc }, when.format(d));
}

/** What happened, in words: a key.updated says what it changed. */
export function actionText(ev) {
  if (ev.action === "key.updated") {
    const fields = ev.fields || [];
    const parts = [];
    if (fields.includes("name")) parts.push("Key renamed");
    if (fields.includes("permissions")) parts.push(parts.length ? "permissions changed" : "Permissions changed");
    if (fields.includes("token_quota")) parts.push(parts.length ? "token quota changed" : "Token quota changed");
    return parts.length ? parts.join(", ") : "Key updated (nothing changed)";
  }
  return ACTIONS[ev.action] || ev.action;
}

function actorCell(actor) {
  const kind = ACTORS[actor.type] || actor.type;
  return [
    el("span", { className: "actor-type" }, kind),
    actor.id ? el("code", { className: "actor-id" }, actor.id) : null,
    actor.on_behalf_of ? el("span", { className: "muted detail" }, `for ${actor.on_behalf_of}`) : null,
    actor.via ? el("span", { className: "muted detail" }, `via ${actor.via}`) : null,
  ];
}

function keyCell(id) {
  if (!id) return ["—"];
  const name = view.names && view.names.get(id);
  if (name !== undefined && name !== null) {
    return [el("span", { className: "key-name" }, name), el("code", {}, id)];
  }
  return [el("code", {}, id), view.names ? el("span", { className: "muted detail" }, "no longer exists") : null];
}

function outcomeText(ev) {
  if (ev.outcome === "success") return "Success";
  if (ev.outcome === "denied") return ev.reason ? `Denied: ${REASONS[ev.reason] || ev.reason}` : "Denied";
  return ev.outcome;
}

function row(ev) {
  const count = ev.count > 1 ? ` ×${ev.count}` : "";
  return el("tr", { "data-event-id": ev.id, "data-action": ev.action },
    el("td", { className: "time", "data-label": "Time" }, timeOf(ev.time)),
    el("td", { className: "action", "data-label": "Action" }, actionText(ev) + count),
    el("td", { className: "actor", "data-label": "By" }, ...actorCell(ev.actor || {})),
    el("td", { className: "target", "data-label": "Key" }, ...keyCell(ev.client_id)),
    el("td", { className: "source", "data-label": "Source" },
      el("span", { className: "address" }, ev.source_address || "—"),
      ev.user_agent ? el("span", { className: "user-agent muted detail", title: ev.user_agent }, ev.user_agent) : null,
      ev.request_id ? el("span", { className: "muted detail" }, "Request ", el("code", { className: "request-id" }, ev.request_id)) : null),
    el("td", { className: `outcome ${ev.outcome === "success" ? "ok" : "denied"}`, "data-label": "Outcome" }, outcomeText(ev)));
}
