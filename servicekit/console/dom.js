// Vigil console: DOM and fetch helpers, identical in detector/web/assets and remediator/console.
// Data is only ever put into the page as text nodes or attribute values: never as markup.

const SVG_NS = "http://www.w3.org/2000/svg";

function build(node, attrs, children) {
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "text") node.textContent = String(value);
    else if (key.startsWith("on") && typeof value === "function") {
      node.addEventListener(key.slice(2), value);
    } else node.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

/** An HTML element: el("a", {href, class: "x"}, "text", otherNode). */
export function el(tag, attrs, ...children) {
  return build(document.createElement(tag), attrs, children);
}

/** An SVG element. */
export function svg(tag, attrs, ...children) {
  return build(document.createElementNS(SVG_NS, tag), attrs, children);
}

/** A URL fit for href: http(s), or a path or fragment of this site; else null. */
export function safeHref(url) {
  if (typeof url !== "string") return null;
  if (url.startsWith("#") || (url.startsWith("/") && !url.startsWith("//"))) return url;
  try {
    const u = new URL(url);
    return u.protocol === "http:" || u.protocol === "https:" ? u.href : null;
  } catch {
    return null;
  }
}

/** A link, or plain text when the URL is not one to follow. */
export function link(url, text, attrs) {
  const href = safeHref(url);
  return href ? el("a", { ...attrs, href }, text) : el("span", {}, text);
}

/** fetch + JSON; throws an Error whose message says what went wrong. */
export async function fetchJSON(url, options) {
  let resp;
  try {
    resp = await fetch(url, { cache: "no-store", ...options });
  } catch (exc) {
    throw new Error(`${url}: ${exc.message}`);
  }
  let doc = null;
  try {
    doc = await resp.json();
  } catch {
    // a non-JSON error page: the status says enough
  }
  if (!resp.ok) {
    const why = doc && (doc.error || doc.status) ? doc.error || doc.status : resp.statusText;
    const err = new Error(`${resp.status}: ${why}`);
    err.status = resp.status;
    throw err;
  }
  return doc;
}

export function fmtTime(ms) {
  if (ms === null || ms === undefined) return "–";
  const d = new Date(ms);
  return d.toLocaleString(undefined, { dateStyle: "short", timeStyle: "medium" });
}

export function fmtDuration(ms) {
  if (ms === null || ms === undefined || !isFinite(ms)) return "–";
  const s = Math.max(0, Math.round(ms / 1000));
  if (s < 90) return `${s} s`;
  const m = Math.round(s / 60);
  if (m < 90) return `${m} min`;
  const h = Math.floor(m / 60);
  return h < 48 ? `${h} h ${m % 60} min` : `${Math.floor(h / 24)} d ${h % 24} h`;
}

export function fmtNum(x) {
  if (x === null || x === undefined || !isFinite(x)) return "–";
  const a = Math.abs(x);
  if (a !== 0 && (a >= 1e6 || a < 1e-3)) return x.toExponential(3);
  return String(Number(x.toPrecision(4)));
}

/** A definition list from [term, value] pairs; values may be nodes. */
export function facts(pairs) {
  return el("dl", { class: "facts" },
    pairs.filter(([, v]) => v !== null && v !== undefined && v !== "")
      .map(([k, v]) => [el("dt", {}, k), el("dd", {}, v)]));
}

/** Say something in the page's live region (read by screen readers). */
export function announce(text, isError) {
  const region = document.getElementById("status");
  if (!region) return;
  region.textContent = text;
  region.classList.toggle("error", Boolean(isError));
}
