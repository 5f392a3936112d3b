// Shared by the pass pages: the bearer token (kept in sessionStorage, never in a URL),
// calls to the API, the 30-second refresh, dialogs, the credentials shown once, and
// formatting.

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

export async function apiJson(path, options = {}) {
  return (await api(path, options)).json();
}

// Tickets for the calls of a loader the user can start again before its answer came (a
// search, a filter): `const call = latestOnly();` once, then in the loader `const current =
// call();` and after each await `if (!current()) return;`. Answers may come in any order; only the latest call's is shown (the first
// of two quick searches, answered last, used to overwrite the second's list).
export function latestOnly() {
  let started = 0;
  return () => {
    const mine = ++started;
    return () => mine === started;
  };
}

// A JSON body sent with a method: POST, PATCH...
export async function send(method, path, body) {
  const options = { method };
  if (body !== undefined) {
    options.body = JSON.stringify(body);
    options.headers = { "Content-Type": "application/json" };
  }
  const response = await api(path, options);
  return response.status === 204 ? null : response.json();
}

// A 422's `detail` is a list of {loc, msg}: the messages by field name ("scopes" for
// ["body", "scopes", 0]); anything else (409, 400...) goes under "" for the form.
export function fieldErrors(error) {
  const byField = {};
  const add = (field, message) => { (byField[field] ||= []).push(message); };
  let detail;
  try { detail = JSON.parse(error.message); } catch { detail = error.message; }
  if (error.status === 422 && Array.isArray(detail)) {
    for (const item of detail) {
      const field = item.loc?.[0] === "body" && typeof item.loc[1] === "string" ? item.loc[1] : "";
      add(field, item.msg.replace(/^Value error, /, ""));
    }
  } else {
    add("", typeof detail === "string" ? detail : error.message);
  }
  return byField;
}

// Shows each message beside its field (an element `[data-error-for=name]` in the form);
// returns the messages no field claimed.
export function showFieldErrors(form, byField) {
  const unclaimed = [];
  form.querySelectorAll("[data-error-for]").forEach((slot) => {
    slot.textContent = "";
    slot.hidden = true;
    form.querySelector(`[name="${slot.dataset.errorFor}"]`)?.removeAttribute("aria-invalid");
  });
  for (const [field, messages] of Object.entries(byField)) {
    const slot = field && form.querySelector(`[data-error-for="${field}"]`);
    if (!slot) { unclaimed.push(...messages); continue; }
    slot.textContent = messages.join("; ");
    slot.hidden = false;
    form.querySelector(`[name="${field}"]`)?.setAttribute("aria-invalid", "true");
  }
  return unclaimed;
}

// The 30-second refresh of a tab's figures: paused while the browser tab is hidden or
// the view is not shown, and stopped after three failures in a row until a manual
// refresh or a reopened page (the seeds' "Real-time updates").
export class Poller {
  static INTERVAL_MS = 30_000;
  static MAX_FAILURES = 3;

  constructor(load, { status, updated, enabled = () => true }) {
    this.load = load;
    this.status = status;
    this.updated = updated;
    this.enabled = enabled;
    this.failures = 0;
    this.paused = false;
    this.active = false;
    this.timer = null;
    this.started = 0; // refreshes started; only the latest one's outcome counts
  }

  start() {
    this.active = true;
    this.refresh({ manual: true });
    this.timer ??= setInterval(() => this.tick(), Poller.INTERVAL_MS);
  }

  stop() {
    this.active = false;
    clearInterval(this.timer);
    this.timer = null;
  }

  tick() {
    if (!this.active || !this.enabled() || this.paused || document.hidden) return;
    this.refresh();
  }

  async refresh({ manual = false } = {}) {
    if (manual) {
      this.failures = 0;
      this.paused = false;
      this.say("");
    }
    const mine = ++this.started;
    try {
      await this.load();
      // A slow success that a later refresh overtook says nothing of now: it does not
      // clear the failures counted since.
      if (mine !== this.started) return;
      this.failures = 0;
      this.say("");
      const now = new Date();
      this.updated.textContent = now.toLocaleTimeString();
      this.updated.dateTime = now.toISOString();
    } catch (error) {
      this.failures += 1;
      if (this.failures >= Poller.MAX_FAILURES) {
        this.paused = true;
        this.say(`Auto-refresh paused after ${Poller.MAX_FAILURES} failed refreshes (${error.message}). Refresh manually or reopen the page to resume.`);
      } else {
        this.say(`Refresh failed (${error.message}); retrying.`);
      }
    }
  }

  say(text) {
    this.status.textContent = text;
    this.status.hidden = !text;
  }
}

// A modal <dialog>: showModal() moves focus into it (to [autofocus] when there is one)
// and traps it there; on close, focus goes back to what opened it.
export function openDialog(dialog) {
  const opener = document.activeElement;
  dialog.addEventListener("close", () => opener?.focus?.(), { once: true });
  dialog.showModal();
}

// Asks in a dialog that says what will happen; resolves true when confirmed.
export function confirmAction(dialog, { title, body, action, danger = false }) {
  dialog.querySelector("[data-slot=title]").textContent = title;
  dialog.querySelector("[data-slot=body]").textContent = body;
  const button = dialog.querySelector("[data-slot=confirm]");
  button.textContent = action;
  button.classList.toggle("danger", danger);
  return new Promise((resolve) => {
    dialog.addEventListener("close", () => resolve(dialog.returnValue === "confirm"), { once: true });
    dialog.returnValue = "";
    openDialog(dialog);
  });
}

// The credentials of a creation or a regeneration, shown once: both formats, each with
// a copy button. The caller removes them (clearCredentials) when the user is done; they
// live nowhere else (not in storage, not in the URL).
export function showCredentials(container, credentials) {
  container.innerHTML = `
    <p class="notice" role="alert">Copy the client secret now: it is shown this once and cannot be
      shown again. Store it in a secret manager; never commit it to source control.</p>
    <dl class="fields">
      <dt>Client ID</dt><dd><code data-field="client_id">${escapeHtml(credentials.client_id)}</code></dd>
      <dt>Pass ID</dt><dd><code>${escapeHtml(credentials.pass.pass_id)}</code></dd>
    </dl>
    ${[["json", "JSON", "Paste into a secrets manager or a configuration file."],
       ["bash", "Bash export", "Source it in a shell or a CI environment."]].map(([key, name, hint]) => `
      <figure class="secret-format">
        <figcaption>${name} <span class="muted">${hint}</span>
          <button type="button" class="copy" data-copy="${key}" aria-label="Copy the ${name} format">Copy</button>
          <span class="copied muted" role="status"></span></figcaption>
        <pre data-format="${key}">${escapeHtml(credentials.formats[key])}</pre>
      </figure>`).join("")}`;
  container.querySelectorAll("button.copy").forEach((button) => {
    button.addEventListener("click", () => copyText(
      button, container.querySelector(`pre[data-format=${button.dataset.copy}]`).textContent,
    ));
  });
}

// Copies `text`, and says how it went in the `.copied` status beside `button`.
export async function copyText(button, text) {
  const said = button.parentElement.querySelector(".copied");
  try {
    await navigator.clipboard.writeText(text);
    said.textContent = "Copied";
  } catch {
    said.textContent = "Copy failed: select the text and copy it by hand";
  }
}

// The page's notice line (`#page-notice`): `text`, or hidden when empty.
export function say(text) {
  const notice = document.querySelector("#page-notice");
  notice.textContent = text;
  notice.hidden = !text;
}

export function clearCredentials(container) {
  container.innerHTML = "";
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
export const day = (isoDate) => (isoDate ? new Date(`${isoDate}T00:00:00Z`).toLocaleDateString([], { timeZone: "UTC", year: "numeric", month: "short", day: "numeric" }) : "—");

// `ai_assistant` → "AI Assistant", `scopes_changed` → "Scopes Changed".
const ACRONYMS = new Set(["ai", "api", "mcp", "id", "ip"]);
export const humanize = (value) => String(value ?? "").split("_").filter(Boolean)
  .map((w) => (ACRONYMS.has(w) ? w.toUpperCase() : w[0].toUpperCase() + w.slice(1))).join(" ");

// The choices of a pass's enumerated fields, from the API's own document (declared once,
// in passes/model.py): {access_level: [...], usage_type: [...]}.
let enums = null;
export async function passEnums() {
  enums ??= fetch("/openapi.json").then((r) => r.json()).then((doc) => {
    const create = doc.components.schemas.PassCreate.properties;
    const choices = (field) => {
      const ref = (create[field].$ref || create[field].allOf?.[0]?.$ref || "").split("/").pop();
      return doc.components.schemas[ref].enum;
    };
    return { access_level: choices("access_level"), usage_type: choices("usage_type") };
  });
  return enums;
}

// A pass's editable fields, as the creation form and the Settings tab show them; the
// limits are the API's (passes/model.py), which has the last word and says why.
const PASS_FIELDS = {
  agent_name: { label: "Agent name", attrs: 'required maxlength="100" autocomplete="off"',
    hint: "Letters, numbers and spaces; it appears in metrics and audit logs." },
  agent_type: { label: "Agent type", attrs: 'required maxlength="64" autocomplete="off"',
    hint: "Saved as lowercase with underscores." },
  description: { label: "Description", rows: 2 },
  pass_id: { label: "Pass ID (optional)", attrs: 'autocomplete="off" placeholder="SP-2026-A1B2C3"',
    hint: "SP-YYYY-XXXXXX; generated when left empty." },
  access_level: { label: "Access level", choices: true },
  organization: { label: "Organization", attrs: 'maxlength="200" autocomplete="organization"' },
  usage_type: { label: "Usage type", choices: true },
  valid_from: { label: "Valid from", attrs: 'type="date" required' },
  valid_until: { label: "Valid until", attrs: 'type="date" required' },
  scopes: { label: "Permissions", attrs: 'autocomplete="off"',
    hint: "Comma-separated, e.g. read:data,write:data. Grant only what the agent needs." },
  integration_notes: { label: "Integration notes", rows: 3 },
};

// Renders the fields a form's `[data-fields]` names, each with its hint and the slot
// where the API's message for it goes; returns their names.
export async function renderPassFields(form) {
  const slot = form.querySelector("[data-fields]");
  const names = slot.dataset.fields.split(" ");
  const enums = await passEnums();
  slot.outerHTML = names.map((name) => {
    const field = PASS_FIELDS[name];
    const hintId = `${form.id}-${name}-hint`;
    const described = field.hint ? ` aria-describedby="${hintId}"` : "";
    const control = field.choices
      ? `<select name="${name}">${enums[name].map((v) => `<option value="${escapeHtml(v)}">${escapeHtml(humanize(v))}</option>`).join("")}</select>`
      : field.rows
        ? `<textarea name="${name}" rows="${field.rows}" maxlength="5000"${described}></textarea>`
        : `<input name="${name}" ${field.attrs}${described}>`;
    return `<label>${field.label} ${control}</label>
      ${field.hint ? `<p class="muted" id="${hintId}">${field.hint}</p>` : ""}
      <p class="field-error" data-error-for="${name}" hidden></p>`;
  }).join("");
  return names;
}

export const STATE_LABELS = { active: "Active", inactive: "Inactive", revoked: "Revoked" };

// `read:data` → "Read Data", `admin:users` → "Admin Users".
export const scopeLabel = (scope) => scope.split(/[:_.\-]+/).filter(Boolean)
  .map((word) => word[0].toUpperCase() + word.slice(1)).join(" ");

// What the scopes let the agent do, one line per resource: `read:data` and
// `write:data` → "Data Read/Write"; every pass has API access (client credentials).
export function capabilities(scopes) {
  const byResource = new Map();
  for (const scope of scopes) {
    const [action, ...rest] = scope.split(":");
    const resource = rest.length ? scopeLabel(rest.join(":")) : "";
    if (!byResource.has(resource)) byResource.set(resource, []);
    byResource.get(resource).push(scopeLabel(action));
  }
  return ["API Access (OAuth 2.0 client credentials)",
    ...[...byResource].map(([resource, actions]) => `${resource ? `${resource} ` : ""}${actions.join("/")}`)];
}

// A pass is valid through valid_until (a UTC day): red once that day has passed,
// yellow within 30 days of it.
export function expiry(validUntil, now = new Date()) {
  const today = Date.UTC(now.getUTCFullYear(), now.getUTCMonth(), now.getUTCDate());
  const days = Math.round((Date.parse(`${validUntil}T00:00:00Z`) - today) / 86_400_000);
  if (days < 0) return { level: "expired", text: `Expired on ${day(validUntil)}` };
  if (days === 0) return { level: "expiring", text: `Expires today (${day(validUntil)})` };
  if (days <= 30) {
    return { level: "expiring", text: `Expires in ${days} day${days === 1 ? "" : "s"} (${day(validUntil)})` };
  }
  return { level: "valid", text: `Expires ${day(validUntil)}` };
}

export function escapeHtml(text) {
  return String(text ?? "").replace(/[&<>"']/g, (c) => ({
    "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;",
  })[c]);
}
