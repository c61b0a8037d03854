// Vigil console, remediator part: the loaded playbooks, the catalog's problems, and the
// simulator (paste an alert, see which playbooks match, the guards' verdicts and the plan).
import { announce, el, facts, fetchJSON } from "./dom.js";

const EXAMPLE = {
  status: "firing",
  labels: { alertname: "VigilAnomaly", severity: "warning", metric_name: "http_requests_per_second",
    namespace: "shop", service: "checkout" },
  annotations: { summary: "http_requests_per_second is 4.2, expected 1.0–1.6" },
  startsAt: new Date().toISOString(), endsAt: "0001-01-01T00:00:00Z",
  generatorURL: "", fingerprint: "0000000000000000",
};

export async function showPlaybooks(view) {
  const list = el("div", {}, el("p", { class: "muted" }, "Loading the playbooks…"));
  const input = el("textarea", { id: "sim-input", spellcheck: "false",
    "aria-describedby": "sim-help" });
  const out = el("div", { id: "sim-result", "aria-live": "polite" });
  const form = el("form", { id: "sim-form" },
    el("label", { for: "sim-input" }, "Alert JSON"),
    el("p", { id: "sim-help", class: "muted" },
      "An alert, an Alertmanager webhook body, or a recorded webhook request. Nothing is executed."),
    input,
    el("div", { class: "toolbar" },
      el("button", { type: "submit", class: "primary" }, "Simulate"),
      el("button", { type: "button", onclick: () => { input.value = JSON.stringify(EXAMPLE, null, 2); input.focus(); } },
        "Fill in an example")));
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    out.replaceChildren(el("p", { class: "muted" }, "Simulating…"));
    try {
      const doc = await fetchJSON("/api/v1/simulate", { method: "POST",
        headers: { "Content-Type": "application/json" }, body: input.value });
      out.replaceChildren(...doc.reports.map(report));
      announce(`Simulated ${doc.reports.length} alert(s).`);
    } catch (exc) {
      out.replaceChildren(el("p", { class: "error" }, `Simulation failed: ${exc.message}`));
    }
  });
  const heading = el("h1", { tabindex: "-1" }, "Playbooks");
  view.replaceChildren(heading, list,
    el("section", { "aria-labelledby": "sim-h" }, el("h2", { id: "sim-h" }, "Simulator"), form, out));
  try {
    const doc = await fetchJSON("/api/v1/playbooks");
    list.replaceChildren(catalog(doc));
  } catch (exc) {
    list.replaceChildren(el("p", { class: "error" }, `Could not load the playbooks: ${exc.message}`));
  }
}

function catalog(doc) {
  const rows = doc.loaded.map((p) => el("tr", {},
    el("td", {}, p.name), el("td", {}, p.mode), el("td", {}, el("span", { class: "badge allow" }, "valid")),
    el("td", {}, p.description || "–"), el("td", {}, el("code", {}, p.file))));
  return el("div", {},
    el("table", { id: "playbooks" },
      el("caption", { class: "visually-hidden" }, "Loaded playbooks"),
      el("thead", {}, el("tr", {}, ["Name", "Mode", "Validation", "Description", "File"]
        .map((t) => el("th", { scope: "col" }, t)))),
      el("tbody", {}, rows)),
    doc.problems.length
      ? el("section", {}, el("h2", {}, `Problems (${doc.problems.length})`),
        el("p", { class: "muted" }, "Files with problems are not loaded; the last good set stays."),
        el("ul", { class: "problems" }, doc.problems.map((p) => el("li", {}, p))))
      : el("p", { class: "muted" }, "Every playbook file is valid."));
}

function report(r) {
  const alert = r.alert || {};
  const title = `${(alert.labels || {}).alertname || "alert"}: ${r.matches.length} matching playbook(s)`;
  return el("article", { class: "card sim-report" }, el("h3", {}, title),
    r.matches.length ? r.matches.map(match)
      : el("p", { class: "muted" }, "No playbook matches this alert: nothing would happen."));
}

function match(m) {
  const d = m.decision || {};
  const verdict = d.act ? (d.shadow ? "shadow" : "act") : "refused";
  return el("section", { class: "match" },
    el("h4", {}, `${m.playbook} `, el("span", { class: `badge ${d.act ? "allow" : "deny"}` }, verdict)),
    facts([["Mode", m.mode], ["Target", m.target], ["Decision", d.reason || null],
      ["Plan hash", m.plan_hash || null], ["Not evaluated", (m.not_evaluated || []).join("; ") || null]]),
    el("table", {}, el("thead", {}, el("tr", {}, ["Guard", "Verdict", "Why"].map((t) => el("th", { scope: "col" }, t)))),
      el("tbody", {}, (m.guards || []).map((g) => el("tr", {}, el("td", {}, g.guard),
        el("td", {}, el("span", { class: `badge ${g.allow ? "allow" : "deny"}` }, g.allow ? "allow" : "deny")),
        el("td", {}, g.reason || "–"))))),
    m.plan ? el("div", { class: "plan" }, el("h4", {}, "Plan"),
      el("ol", {}, m.plan.map((s) => el("li", {}, el("pre", {}, JSON.stringify(s, null, 2))))))
      : el("p", { class: "error" }, m.plan_error || "No plan."));
}
