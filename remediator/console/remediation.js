// Vigil console, remediator part: the shell (views by URL fragment, kill switch, token).
// #runs (optionally ?fingerprint=...), #run/<id>, #playbooks.
import { adminPost, setToken, token } from "./admin.js";
import { announce, fetchJSON, link } from "./dom.js";
import { showPlaybooks } from "./playbooks.js";
import { showRun, showRuns } from "./runs.js";

const view = document.getElementById("view");

function route() {
  const hash = location.hash.replace(/^#/, "") || "runs";
  const [path, query] = hash.split("?");
  const params = new URLSearchParams(query || "");
  const section = path.startsWith("run/") ? "runs" : path;
  for (const a of document.querySelectorAll("nav a[data-route]")) {
    if (a.dataset.route === section) a.setAttribute("aria-current", "page");
    else a.removeAttribute("aria-current");
  }
  announce("");
  if (path.startsWith("run/")) return showRun(view, decodeURIComponent(path.slice(4)));
  if (path === "playbooks") return showPlaybooks(view);
  return showRuns(view, params);
}

async function status() {
  const badge = document.getElementById("switch-state");
  try {
    const s = await fetchJSON("/api/v1/status");
    badge.textContent = s.paused ? "remediation paused" : "remediation active";
    badge.className = `badge ${s.paused ? "paused" : "allow"}`;
    document.getElementById("pause").hidden = s.paused;
    document.getElementById("resume").hidden = !s.paused;
    const nav = document.getElementById("nav-anomalies");
    const to = s.detector_url ? link(`${s.detector_url.replace(/\/+$/, "")}/`, "Anomalies") : null;
    if (to && to.tagName === "A") { nav.href = to.href; nav.hidden = false; }
  } catch (exc) {
    badge.textContent = "status unknown";
    badge.className = "badge";
  }
}

async function flip(paused) {
  const what = paused ? "Pause all remediation (every replica)?" : "Resume remediation?";
  if (paused && !window.confirm(what)) return;
  try {
    await adminPost(paused ? "/api/v1/pause" : "/api/v1/resume");
    announce(paused ? "Remediation paused." : "Remediation resumed.");
  } catch (exc) {
    announce(`${paused ? "Pause" : "Resume"} failed: ${exc.message}`, true);
  }
  await status();
  document.getElementById(paused ? "resume" : "pause").focus();
}

function tokenForm() {
  const form = document.getElementById("token-form");
  const toggle = document.getElementById("token-toggle");
  const input = document.getElementById("token");
  const state = document.getElementById("token-state");
  const show = () => { state.textContent = token() ? "a token is set for this tab" : "no token set"; };
  toggle.addEventListener("click", () => {
    form.hidden = !form.hidden;
    toggle.setAttribute("aria-expanded", String(!form.hidden));
    show();
    if (!form.hidden) input.focus();
  });
  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    setToken(input.value.trim());
    input.value = "";
    show();
    announce("Admin token kept for this tab.");
  });
  document.getElementById("token-forget").addEventListener("click", () => {
    setToken("");
    show();
    announce("Admin token forgotten.");
  });
}

document.getElementById("pause").addEventListener("click", () => flip(true));
document.getElementById("resume").addEventListener("click", () => flip(false));
window.addEventListener("hashchange", route);
tokenForm();
status();
route();
