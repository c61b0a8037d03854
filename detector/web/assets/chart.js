// Vigil console: a series' recent history as an inline SVG chart (no chart library).
// Draws the expected band, the expected value, the value, the samples scoring at or above
// the alert threshold, the anomalous stretches and the band expected before the anomaly.
import { fmtNum, fmtTime, svg } from "./dom.js";

const W = 640, H = 200, L = 56, R = 8, T = 8, B = 22;

function finite(xs) {
  return xs.filter((x) => x !== null && x !== undefined && isFinite(x));
}

/** Path data through the points, broken where a value is missing. */
function line(ts, ys, x, y) {
  let d = "", pen = false;
  for (let i = 0; i < ts.length; i++) {
    if (ys[i] === null) { pen = false; continue; }
    d += `${pen ? "L" : "M"}${x(ts[i]).toFixed(1)},${y(ys[i]).toFixed(1)}`;
    pen = true;
  }
  return d;
}

/** The band between lower and upper as closed polygons, one per unbroken run. */
function band(ts, lo, hi, x, y) {
  let d = "", run = [];
  const flush = () => {
    if (run.length > 1) {
      d += "M" + run.map((i) => `${x(ts[i]).toFixed(1)},${y(hi[i]).toFixed(1)}`).join("L");
      d += "L" + run.slice().reverse()
        .map((i) => `${x(ts[i]).toFixed(1)},${y(lo[i]).toFixed(1)}`).join("L") + "Z";
    }
    run = [];
  };
  for (let i = 0; i < ts.length; i++) {
    if (lo[i] === null || hi[i] === null) flush(); else run.push(i);
  }
  flush();
  return d;
}

/** The chart of one history document (GET /api/v1/anomalies/{id}/history). */
export function drawChart(h, titleId) {
  const ts = h.ts_ms;
  const t0 = ts[0], t1 = ts.length > 1 ? ts[ts.length - 1] : ts[0] + 1;
  const base = h.baseline || {};
  const ys = finite([...h.value, ...h.lower, ...h.upper, base.lower, base.upper]);
  let y0 = Math.min(...ys), y1 = Math.max(...ys);
  if (!isFinite(y0)) { y0 = 0; y1 = 1; }
  if (y1 - y0 < 1e-12) { y0 -= 1; y1 += 1; }
  const pad = (y1 - y0) * 0.06;
  y0 -= pad; y1 += pad;
  const x = (t) => L + ((t - t0) / (t1 - t0)) * (W - L - R);
  const y = (v) => T + (1 - (v - y0) / (y1 - y0)) * (H - T - B);
  const hot = [];
  if (h.threshold !== null) {
    for (let i = 0; i < ts.length; i++) {
      if (h.score[i] !== null && h.score[i] >= h.threshold && h.value[i] !== null) hot.push(i);
    }
  }
  const stretches = (h.stretches || []).filter(([s, e]) => (e === null || e >= t0) && s <= t1);
  const desc = describe(h, stretches, hot.length);
  const g = svg("svg", {
    class: "chart", viewBox: `0 0 ${W} ${H}`, role: "img", "aria-labelledby": titleId,
    "aria-describedby": `${titleId}-desc`, preserveAspectRatio: "none",
  },
  svg("desc", { id: `${titleId}-desc`, text: desc }),
  svg("line", { class: "axis", x1: L, y1: H - B, x2: W - R, y2: H - B }),
  svg("line", { class: "axis", x1: L, y1: T, x2: L, y2: H - B }));
  for (const [s, e] of stretches) {
    const a = x(Math.max(s, t0)), b = x(e === null ? t1 : Math.min(e, t1));
    g.append(svg("rect", {
      class: "stretch", x: a.toFixed(1), y: T, width: Math.max(2, b - a).toFixed(1),
      height: H - T - B, "data-start-ms": s, "data-end-ms": e === null ? "" : e,
    }, svg("title", { text: `anomalous from ${fmtTime(s)} to ${e === null ? "now" : fmtTime(e)}` })));
  }
  g.append(svg("path", { class: "band", d: band(ts, h.lower, h.upper, x, y) }));
  for (const v of [base.lower, base.upper]) {
    if (v !== null && v !== undefined) {
      g.append(svg("line", { class: "baseline", x1: L, x2: W - R, y1: y(v), y2: y(v) }));
    }
  }
  g.append(svg("path", { class: "expected", d: line(ts, h.expected, x, y) }));
  g.append(svg("path", { class: "value", d: line(ts, h.value, x, y) }));
  for (const i of hot.slice(-200)) {
    g.append(svg("circle", { class: "hot", cx: x(ts[i]).toFixed(1), cy: y(h.value[i]).toFixed(1), r: 2.2 }));
  }
  for (const v of [y0 + pad, (y0 + y1) / 2, y1 - pad]) {
    g.append(svg("text", { x: L - 4, y: y(v) + 4, "text-anchor": "end", text: fmtNum(v) }));
  }
  g.append(svg("text", { x: L, y: H - 6, text: fmtTime(t0) }));
  g.append(svg("text", { x: W - R, y: H - 6, "text-anchor": "end", text: fmtTime(t1) }));
  return g;
}

function describe(h, stretches, nHot) {
  const n = h.ts_ms.length;
  const last = n - 1;
  const parts = [`${n} samples from ${fmtTime(h.ts_ms[0])} to ${fmtTime(h.ts_ms[last])}.`,
    `Latest value ${fmtNum(h.value[last])}, expected ${fmtNum(h.expected[last])} ` +
    `(band ${fmtNum(h.lower[last])} to ${fmtNum(h.upper[last])}).`];
  const b = h.baseline || {};
  if (b.lower !== null && b.lower !== undefined) {
    parts.push(`Before the anomaly the band was ${fmtNum(b.lower)} to ${fmtNum(b.upper)}.`);
  }
  for (const [s, e] of stretches) {
    parts.push(`Anomalous from ${fmtTime(s)} to ${e === null ? "now" : fmtTime(e)}.`);
  }
  if (nHot) parts.push(`${nHot} samples scored at or above the alert threshold.`);
  return parts.join(" ");
}

/** A legend for the chart's marks. */
export function legend() {
  const item = (cls, text) => {
    const li = document.createElement("li");
    const mark = document.createElement("span");
    mark.className = cls;
    mark.setAttribute("aria-hidden", "true");
    li.append(mark, text);
    return li;
  };
  const ul = document.createElement("ul");
  ul.className = "legend";
  ul.append(item("k-value", "value"), item("k-band", "expected band"),
    item("k-expected", "expected"), item("k-stretch", "anomalous stretch"));
  return ul;
}
