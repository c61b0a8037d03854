// Vigil console, remediator part: the admin token (sessionStorage only: it lives as long
// as the tab, is never logged and never sent anywhere but this remediator's admin calls).
import { fetchJSON } from "./dom.js";

const KEY = "vigil-admin-token";

export function token() {
  try { return sessionStorage.getItem(KEY) || ""; } catch { return ""; }
}

export function setToken(value) {
  try {
    if (value) sessionStorage.setItem(KEY, value); else sessionStorage.removeItem(KEY);
  } catch {
    // storage disabled: the token is simply not kept
  }
}

/** POST JSON to an admin endpoint with the token; throws with the server's reason. */
export async function adminPost(url, body) {
  const headers = { "Content-Type": "application/json" };
  const t = token();
  if (t) headers.Authorization = `Bearer ${t}`;
  try {
    return await fetchJSON(url, { method: "POST", headers, body: JSON.stringify(body || {}) });
  } catch (exc) {
    if (exc.status === 401) {
      throw new Error(t ? "the token was refused" : "this needs the admin token or your own token (Admin token, above)");
    }
    throw exc;
  }
}
