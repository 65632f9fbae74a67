// Client-side checks that mirror the management API's own (server/
// management.go: validateName, teamIDPattern), so mistakes show inline
// before a request. The server checks again and has the last word: its
// problem detail is shown in the same place when it disagrees.

export const MAX_NAME_LENGTH = 64;

const TEAM_ID = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;
const TEAM_PREFIX = /^(?:[A-Za-z0-9][A-Za-z0-9._-]{0,63})?$/;
// What Go's unicode.IsPrint accepts (letters, marks, numbers, punctuation,
// symbols) plus the ASCII space; anything else is refused by the API.
const NOT_PRINTABLE = /[^\p{L}\p{M}\p{N}\p{P}\p{S} ]/u;

/** Returns an error message for a key name, or "" when it is acceptable. */
export function nameError(raw, max = MAX_NAME_LENGTH) {
  const name = raw.trim();
  if (!name.isWellFormed()) return "The name contains an invalid character.";
  const length = [...name].length;
  if (length === 0) return "Give the key a name people will recognise, e.g. “Production sync”.";
  if (length > max) return `The name is ${length} characters long; use at most ${max}.`;
  if (NOT_PRINTABLE.test(name)) return "The name must not contain control or non-printable characters.";
  return "";
}

/** Returns an error message for a team ID, or "" when it is acceptable. */
export function teamError(raw) {
  if (raw === "") return "Enter a team ID.";
  if (!TEAM_ID.test(raw)) {
    return "Use 1–64 characters of A–Z a–z 0–9 . _ -, starting with a letter or digit.";
  }
  return "";
}

/** Whether raw can begin a team ID (so it is worth filtering the list by). */
export function teamPrefixOK(raw) {
  return TEAM_PREFIX.test(raw);
}
