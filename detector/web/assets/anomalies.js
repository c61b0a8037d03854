// Vigil console, detector part: the series alerting now or lately, each with its chart,
// score, alert text, enrichment and links (Alertmanager, the remediator's runs, runbook).
import { announce, el, facts, fetchJSON, fmtDuration, fmtNum, fmtTime, link } from "./dom.js";
import { drawChart, legend } from "./chart.js";

const REFRESH_MS = 15000;
const STANDARD = new Set(["summary", "description", "value", "expected", "lower", "upper",
  "direction", "score", "anomalous_since", "detector", "detector_settings", "series",
  "runbook_url", "dashboard_url", "members", "related"]);
const charts = new Map(); // id -> {last_ms, node}: a chart is drawn again only when it moved
let entries = [];
let timer = null;

const observer = "IntersectionObserver" in window
  ? new IntersectionObserver((seen) => {
    for (const e of seen) {
      if (e.isIntersecting) { observer.unobserve(e.target); loadChart(e.target); }
    }
  }, { rootMargin: "200px" })
  : null;

async function loadChart(figure) {
  const id = figure.dataset.id;
  const lastMs = Number(figure.dataset.lastMs);
  const slot = figure.querySelector(".plot");
  try {
    const doc = await fetchJSON(`/api/v1/anomalies/${encodeURIComponent(id)}/history`);
    const h = doc.data;
    if (!h.ts_ms.length) { slot.textContent = "No samples kept."; return; }
    const node = drawChart(h, `chart-${id}`);
    const table = dataTable(h);
    charts.set(id, { last_ms: lastMs, node, table });
    slot.replaceChildren(node);
    figure.querySelector(".table").replaceChildren(table);
  } catch (exc) {
    slot.textContent = `The chart could not be loaded (${exc.message}).`;
  }
}

function dataTable(h) {
  const n = h.ts_ms.length;
  const rows = [];
  for (let i = Math.max(0, n - 12); i < n; i++) {
    rows.push(el("tr", {}, el("td", {}, fmtTime(h.ts_ms[i])), el("td", {}, fmtNum(h.value[i])),
      el("td", {}, fmtNum(h.expected[i])),
      el("td", {}, `${fmtNum(h.lower[i])} – ${fmtNum(h.upper[i])}`),
      el("td", {}, h.score[i] === null ? "–" : h.score[i].toFixed(6))));
  }
  return el("details", {}, el("summary", {}, "Latest samples as a table"),
    el("table", {}, el("thead", {}, el("tr", {}, ["Time", "Value", "Expected", "Band", "Score"]
      .map((t) => el("th", { scope: "col" }, t)))), el("tbody", {}, rows)));
}

function card(a, i) {
  const titleId = a.id === null ? `anomaly-${i}` : `chart-${a.id}`;
  const alert = a.alert || {};
  const ann = alert.annotations || {};
  const labels = alert.labels || {};
  const until = a.ended_ms === null ? Date.now() : a.ended_ms;
  const figure = a.id === null ? el("p", { class: "muted" }, "No chart: this detector keeps no history for it.")
    : el("figure", { "data-id": a.id, "data-last-ms": a.last_ms },
      el("div", { class: "plot" }, "Loading the chart…"), legend(),
      el("figcaption", {}, a.rate ? "Per-second rate of the counter, as the detector scores it."
        : "Value as the detector scores it."), el("div", { class: "table" }));
  const enrichment = Object.entries({ ...ann, ...(alert.enrichment || {}) })
    .filter(([k]) => !STANDARD.has(k));
  const links = Object.entries(a.links || {}).map(([name, url]) => el("li", {},
    link(url, {
      alertmanager: "Alertmanager", runs: "Runs that followed", runbook: "Runbook",
      dashboard: "Dashboard",
    }[name] || name.replace(/^alertmanager(\d+)$/, "Alertmanager $1"))));
  const node = el("article", { class: "card", "aria-labelledby": titleId, "data-state": a.state },
    el("header", {}, el("h2", { id: titleId }, a.series),
      el("span", { class: `badge ${a.state}` }, a.state),
      labels.severity ? el("span", { class: "badge" }, labels.severity) : null),
    facts([
      ["Alert", labels.alertname || null],
      ["Score now", a.score === null ? "–" : a.score.toFixed(6)],
      ["Peak score", a.peak === null ? null : a.peak.toFixed(6)],
      ["Anomalous since", a.since_ms === null ? null : fmtTime(a.since_ms)],
      ["Lasted", a.since_ms === null ? null : fmtDuration(until - a.since_ms)],
      ["Ended", a.ended_ms === null ? null : fmtTime(a.ended_ms)],
      ["Resolved", a.resolution || null],
      ["Fingerprint", alert.fingerprint || null],
    ]),
    figure,
    ann.summary ? el("p", {}, ann.summary) : null,
    ann.description ? el("p", { class: "muted" }, ann.description) : null,
    enrichment.length ? el("h3", {}, "Context") : null,
    enrichment.length ? facts(enrichment.map(([k, v]) => [k,
      v.includes("\n") ? el("pre", {}, v) : v])) : null,
    ann.related ? el("details", {}, el("summary", {}, "Related anomalies"), el("pre", {}, ann.related)) : null,
    links.length ? el("ul", { class: "links", "aria-label": "Links" }, links) : null);
  if (a.id !== null) {
    const cached = charts.get(String(a.id));
    if (cached && cached.last_ms === a.last_ms) {
      figure.querySelector(".plot").replaceChildren(cached.node);
      figure.querySelector(".table").replaceChildren(cached.table);
    } else if (observer) observer.observe(figure);
    else loadChart(figure);
  }
  return node;
}

function render() {
  const wanted = document.getElementById("filter").value;
  const shown = entries.filter((a) => wanted === "all"
    || (wanted === "firing" ? a.state !== "resolved" : a.state === "resolved"));
  const list = document.getElementById("list");
  list.replaceChildren(...(shown.length ? shown.map(card)
    : [el("p", { class: "muted" }, entries.length ? "Nothing matches this filter."
      : "No anomalies now or in the last hours.")]));
}

async function refresh(manual) {
  const list = document.getElementById("list");
  if (!manual && list.contains(document.activeElement)) return; // never pull focus away
  try {
    const doc = await fetchJSON("/api/v1/anomalies/recent");
    entries = doc.data;
    navLinks(doc.remediator_url);
    render();
    const firing = entries.filter((a) => a.state !== "resolved").length;
    const n = entries.length;
    announce(`${n} ${n === 1 ? "anomaly" : "anomalies"}, ${firing} firing or pending. ` +
      `Updated ${fmtTime(doc.now_ms)}.`);
  } catch (exc) {
    announce(`Could not load the anomalies: ${exc.message}`, true);
  }
}

function navLinks(url) {
  if (!url) return;
  const base = url.replace(/\/+$/, "");
  for (const [id, hash] of [["nav-runs", "#runs"], ["nav-playbooks", "#playbooks"]]) {
    const a = document.getElementById(id);
    const next = link(`${base}/${hash}`, a.textContent);
    if (next.tagName === "A") { a.href = next.href; a.hidden = false; }
  }
}

function schedule() {
  clearInterval(timer);
  timer = null;
  if (document.getElementById("auto").checked) {
    timer = setInterval(() => { if (!document.hidden) refresh(false); }, REFRESH_MS);
  }
}

document.getElementById("refresh").addEventListener("click", () => refresh(true));
document.getElementById("auto").addEventListener("change", schedule);
document.getElementById("filter").addEventListener("change", render);
refresh(true);
schedule();
