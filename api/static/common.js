// Shared by the Usage pages: the bearer token (kept in sessionStorage, never in a
// URL), calls to the API, and formatting.

const TOKEN_KEY = "sentinel.token";

export function token() {
  return sessionStorage.getItem(TOKEN_KEY);
}

export class ApiError extends Error {
  constructor(status, detail) {
    super(typeof detail === "string" ? detail : JSON.stringify(detail));
    this.status = status;
  }
}

export async function api(path, options = {}) {
  const response = await fetch(path, {
    ...options,
    headers: { ...(options.headers || {}), Authorization: `Bearer ${token()}` },
  });
  if (response.status === 401) {
    sessionStorage.removeItem(TOKEN_KEY);
  }
  if (!response.ok) {
    let detail = response.statusText;
    try { detail = (await response.json()).detail; } catch { /* not JSON */ }
    throw new ApiError(response.status, detail);
  }
  return response;
}

export async function apiJson(path) {
  return (await api(path)).json();
}

// Shows the sign-in form until a token is present, then calls onReady().
export async function signIn(container, projectId, onReady) {
  if (token()) {
    container.innerHTML = "";
    const out = document.createElement("button");
    out.type = "button";
    out.textContent = "Sign out";
    out.addEventListener("click", () => { sessionStorage.removeItem(TOKEN_KEY); location.reload(); });
    container.append(out);
    onReady();
    return;
  }
  const config = await (await fetch("/ui/config")).json();
  container.innerHTML = `
    <form id="token-form" aria-label="Sign in">
      <label>Bearer token <input id="token-input" type="password" autocomplete="off" required></label>
      <button type="submit">Sign in</button>
      ${config.local_sign_in ? '<button type="button" id="local-sign-in">Local sign-in</button>' : ""}
    </form>`;
  container.querySelector("#token-form").addEventListener("submit", (event) => {
    event.preventDefault();
    sessionStorage.setItem(TOKEN_KEY, container.querySelector("#token-input").value.trim());
    signIn(container, projectId, onReady);
  });
  const local = container.querySelector("#local-sign-in");
  if (local) {
    local.addEventListener("click", async () => {
      const response = await fetch("/ui/local-token", {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ project_id: projectId }),
      });
      sessionStorage.setItem(TOKEN_KEY, (await response.json()).token);
      signIn(container, projectId, onReady);
    });
  }
}

export const number = (value) => (value == null ? "—" : Number(value).toLocaleString("en-US"));
export const percent = (value) => (value == null ? "—" : `${(value * 100).toFixed(1)}%`);
export const millis = (value) => (value == null ? "—" : `${Number(value).toFixed(1)} ms`);
export const when = (iso) => (iso ? new Date(iso).toLocaleString() : "—");

export function escapeHtml(text) {
  return String(text ?? "").replace(/[&<>"']/g, (c) => ({
    "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;",
  })[c]);
}
