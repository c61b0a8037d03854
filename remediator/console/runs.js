// Vigil console, remediator part: the runs (newest first) and one run's timeline:
// decision, guard verdicts, plan, actions, verification, undo, escalation; approvals.
import { adminPost } from "./admin.js";
import { announce, el, facts, fetchJSON, fmtTime, link } from "./dom.js";

const STATES = ["", "planned", "refused", "shadow", "waiting_approval", "approved", "running",
  "verifying", "succeeded", "failed", "undone", "escalated", "interrupted", "expired", "dry_run"];

function badge(state) {
  return el("span", { class: `badge ${state}` }, state.replace(/_/g, " "));
}

export async function showRuns(view, params) {
  const fingerprint = params.get("fingerprint");
  const state = params.get("state") || "";
  // several fingerprints: the alert's severities (an escalation makes a new alert)
  const queries = (fingerprint ? fingerprint.split(",") : [null]).map((fp) => {
    const query = new URLSearchParams({ limit: "200" });
    if (fp) query.set("fingerprint", fp);
    if (state) query.set("state", state);
    return query;
  });
  const select = el("select", { id: "run-state" }, STATES.map((s) =>
    el("option", { value: s, selected: s === state }, s ? s.replace(/_/g, " ") : "any")));
  select.addEventListener("change", () => {
    const next = new URLSearchParams(params);
    if (select.value) next.set("state", select.value); else next.delete("state");
    location.hash = `runs${next.toString() ? "?" + next : ""}`;
  });
  const heading = el("h1", { tabindex: "-1" }, fingerprint ? "Runs for one alert" : "Runs");
  const body = el("div", {}, el("p", { class: "muted" }, "Loading the runs…"));
  view.replaceChildren(heading,
    el("div", { class: "toolbar" },
      el("label", {}, "State ", select),
      el("button", { type: "button", onclick: () => showRuns(view, params) }, "Refresh"),
      fingerprint ? el("span", {}, `alert fingerprint ${fingerprint.replace(/,/g, ", ")} · `,
        el("a", { href: "#runs" }, "all runs")) : null),
    body);
  try {
    const docs = await Promise.all(queries.map((q) => fetchJSON(`/api/v1/runs?${q}`)));
    const runs = docs.flatMap((d) => d.data).sort((a, b) => b.created_ms - a.created_ms);
    body.replaceChildren(runs.length ? table(runs)
      : el("p", { class: "muted" }, fingerprint ? "No run followed this alert (yet)." : "No runs yet."));
    announce(`${runs.length} runs.`);
  } catch (exc) {
    body.replaceChildren(el("p", { class: "error" }, `Could not load the runs: ${exc.message}`));
  }
}

function table(runs) {
  return el("table", { id: "runs" },
    el("caption", { class: "visually-hidden" }, "Runs, newest first"),
    el("thead", {}, el("tr", {}, ["Created", "Playbook", "Alert", "Target", "Mode", "State",
      "Outcome"].map((t) => el("th", { scope: "col" }, t)))),
    el("tbody", {}, runs.map((r) => el("tr", { "data-run": r.id },
      el("td", {}, el("a", { href: `#run/${encodeURIComponent(r.id)}` }, fmtTime(r.created_ms))),
      el("td", {}, r.playbook), el("td", {}, r.alertname || "–"), el("td", {}, r.target || "–"),
      el("td", {}, r.mode), el("td", {}, badge(r.state)), el("td", {}, r.outcome || "–")))));
}

function pretty(value) {
  return el("pre", {}, typeof value === "string" ? value : JSON.stringify(value, null, 2));
}

function eventItem(e) {
  const detail = e.detail && Object.keys(e.detail).length ? e.detail : null;
  const onlyReason = detail && typeof detail.reason === "string"
    && Object.keys(detail).every((k) => k === "reason" || (k === "shadow" && !detail.shadow));
  const verdict = e.verdict ? el("span", { class: `badge ${e.verdict}` }, e.verdict) : null;
  return el("li", { "data-kind": e.kind },
    el("div", {}, el("time", { datetime: new Date(e.ts_ms).toISOString() }, fmtTime(e.ts_ms)), " ",
      el("strong", {}, e.kind.replace(/_/g, " ")), e.name ? ` · ${e.name} ` : " ", verdict),
    onlyReason ? el("div", { class: "muted" }, detail.reason)
      : detail ? (JSON.stringify(detail).length > 160
      ? el("details", {}, el("summary", {}, "detail"), pretty(detail)) : pretty(detail)) : null);
}

function approvalForm(run, view) {
  // who decides is the token's owner (a personal token, or the admin token behind the
  // authenticating proxy): the server takes the name from the credential, never from here
  const by = el("input", { id: "approve-by", type: "text", autocomplete: "name", maxlength: "200" });
  const reason = el("input", { id: "decision-reason", type: "text", maxlength: "200" });
  const approveBtn = el("button", { type: "submit", class: "primary" },
    `Approve plan ${run.plan_hash.slice(0, 12)}…`);
  const rejectBtn = el("button", { type: "button", id: "reject-run" }, "Reject");
  const form = el("form", { class: "inline", id: "approve-form" },
    el("label", { for: "approve-by" }, "Note (your name)"), by,
    el("label", { for: "decision-reason" }, "Reason for a rejection"), reason,
    approveBtn, rejectBtn);
  const decide = async (what) => {
    try {
      const note = by.value.trim() || "console";
      const body = what === "approve" ? { plan_hash: run.plan_hash, by: note }
        : { reason: reason.value.trim(), by: note };
      await adminPost(`/api/v1/runs/${encodeURIComponent(run.id)}/${what}`, body);
      announce(what === "approve" ? "Approved: the run goes on." : "Rejected: the run will not act.");
      await showRun(view, run.id);
    } catch (exc) {
      announce(`${what === "approve" ? "Approval" : "Rejection"} failed: ${exc.message}`, true);
    }
  };
  form.addEventListener("submit", (ev) => { ev.preventDefault(); decide("approve"); });
  rejectBtn.addEventListener("click", () => decide("reject"));
  return el("section", { "aria-labelledby": "approval-h" },
    el("h2", { id: "approval-h" }, "Approval"),
    el("p", {}, `This run waits for approval until ${fmtTime(run.approval_expires_ms)}. ` +
      "Approving runs exactly the plan below (its hash is checked); rejecting ends the run. " +
      "Your token (Admin token, above: a personal token from the users file works) says who you are."),
    form);
}

export async function showRun(view, id) {
  view.replaceChildren(el("p", { class: "muted" }, "Loading the run…"));
  let run;
  try {
    run = await fetchJSON(`/api/v1/runs/${encodeURIComponent(id)}`);
  } catch (exc) {
    view.replaceChildren(el("p", { class: "error" }, `Could not load run ${id}: ${exc.message}`));
    return;
  }
  const alert = run.alert || {};
  const heading = el("h1", { tabindex: "-1" }, `Run of ${run.playbook} `, badge(run.state));
  view.replaceChildren(...[
    el("p", {}, el("a", { href: "#runs" }, "← All runs"), " · ",
      el("a", { href: `#runs?fingerprint=${encodeURIComponent(run.fingerprint)}` }, "Runs for this alert")),
    heading,
    facts([["Run", run.id], ["Alert", run.alertname], ["Fingerprint", run.fingerprint],
      ["Target", run.target], ["Mode", run.mode], ["Outcome", run.outcome],
      ["Created", fmtTime(run.created_ms)], ["Updated", fmtTime(run.updated_ms)],
      ["Executed", run.executed_ms ? fmtTime(run.executed_ms) : null],
      ["Approved by", run.approved_by], ["Plan hash", run.plan_hash],
      ["Alert source", alert.generatorURL ? link(alert.generatorURL, alert.generatorURL) : null]]),
    run.state === "waiting_approval" && run.plan_hash ? approvalForm(run, view) : null,
    el("h2", {}, "Timeline"),
    el("ol", { class: "timeline", id: "timeline" }, (run.events || []).map(eventItem)),
    el("h2", {}, "Plan"), run.plan ? pretty(run.plan) : el("p", { class: "muted" }, "No plan."),
    el("details", {}, el("summary", {}, "The alert"), pretty(alert))].filter(Boolean));
  heading.focus();
}
