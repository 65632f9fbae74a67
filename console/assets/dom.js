// DOM helpers. Everything that comes from the server or the user reaches
// the page through text nodes and attribute values set here: this file (and
// the whole console) never assigns innerHTML, outerHTML or insertAdjacentHTML,
// so a key named <img src=x onerror=…> is shown as exactly those characters.

/** Returns the element with that id; a missing one is a bug in index.html. */
export function byId(id) {
  const el = document.getElementById(id);
  if (!el) throw new Error(`console: no element #${id}`);
  return el;
}

/**
 * Creates an element. props are set as properties (className, title,
 * dataset entries via "data-…" keys become attributes); children are
 * strings (text) or nodes; null and false children are skipped.
 */
export function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(props)) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("data-") || k.startsWith("aria-") || k === "role" || k === "datetime" || k === "scope") {
      node.setAttribute(k, String(v));
    } else if (k === "on") {
      for (const [type, fn] of Object.entries(v)) node.addEventListener(type, fn);
    } else {
      node[k] = v;
    }
  }
  for (const c of children) {
    if (c === null || c === undefined || c === false) continue;
    node.append(typeof c === "string" ? document.createTextNode(c) : c);
  }
  return node;
}

/** Replaces an element's content with text. */
export function setText(node, text) {
  node.textContent = text ?? "";
}

/** Shows or hides an element (the hidden attribute). */
export function show(node, visible = true) {
  node.hidden = !visible;
}

/** Sets an error paragraph: shown with its text, or hidden when empty. */
export function setError(node, message) {
  setText(node, message || "");
  node.hidden = !message;
}

/**
 * Creates an SVG element: attrs are set as attributes, children are
 * strings (text) or nodes, as for el. The SVG namespace is read off the
 * empty <svg id="svg-namespace"> the HTML parser made in index.html, so
 * the scripts carry no absolute URL (console_test.go holds them to that).
 */
export function svgEl(tag, attrs = {}, ...children) {
  const node = document.createElementNS(byId("svg-namespace").namespaceURI, tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v !== undefined && v !== null && v !== false) node.setAttribute(k, String(v));
  }
  for (const c of children) {
    if (c === null || c === undefined || c === false) continue;
    node.append(typeof c === "string" ? document.createTextNode(c) : c);
  }
  return node;
}
