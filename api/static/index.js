// The project's passes: one card per pass, found by name or pass ID and by status, a
// page at a time (the API's keyset cursor), and the creation flow whose secret is shown
// once.
import {
  STATE_LABELS, apiJson, clearCredentials, escapeHtml, expiry, fieldErrors, humanize, latestOnly,
  number, openDialog, percent, renderPassFields, say, send, showCredentials, showFieldErrors, signIn, when,
} from "/ui/static/common.js";

const PAGE_SIZE = 24;
const projectId = decodeURIComponent(location.pathname.split("/")[3]);
const passes = `/v1/projects/${encodeURIComponent(projectId)}/passes`;
const $ = (selector) => document.querySelector(selector);

// `cursors[i]` is the cursor of page i + 1 (null for the first).
const list = { search: "", state: "", cursors: [null], next: null };

document.querySelector("#project-title").textContent = `Sentinel Passes · ${projectId}`;

const detail = (passId, tab) => `/ui/projects/${encodeURIComponent(projectId)}/passes/${encodeURIComponent(passId)}/${tab}`;

// -- the list --------------------------------------------------------------------------

function card(p) {
  const validity = expiry(p.valid_until);
  return `
    <li class="card" data-pass-id="${escapeHtml(p.pass_id)}">
      <div class="card-head">
        <a class="card-title" href="${detail(p.pass_id, "overview")}">${escapeHtml(p.agent_name)}</a>
        <span class="badge state-${p.state}" data-field="state">${STATE_LABELS[p.state]}</span>
      </div>
      <code class="muted" data-field="pass_id">${escapeHtml(p.pass_id)}</code>
      <ul class="chips" aria-label="Scopes">${p.scopes.map((s) => `<li>${escapeHtml(s)}</li>`).join("")}</ul>
      <dl>
        <dt>Last used</dt><dd data-field="last_used_at">${when(p.last_used_at)}</dd>
        <dt>Requests (24 h)</dt><dd data-field="total_requests_24h">${number(p.total_requests_24h)}</dd>
        <dt>Error rate (24 h)</dt><dd data-field="error_rate_24h">${percent(p.error_rate_24h)}</dd>
        <dt>Expiry</dt><dd data-field="expiry" class="expiry-${validity.level}">${escapeHtml(validity.text)}</dd>
      </dl>
    </li>`;
}

function unmanagedCard(p) {
  return `
    <li class="card" data-pass-id="${escapeHtml(p.pass_id)}">
      <a class="card-title" href="${detail(p.pass_id, "usage")}">${escapeHtml(p.pass_id)}</a>
      <span class="muted">not managed here: activity only</span>
      <dl>
        <dt>Last used</dt><dd>${when(p.last_used_at)}</dd>
        <dt>Requests (24 h)</dt><dd data-field="total_requests_24h">${number(p.total_requests_24h)}</dd>
        <dt>Error rate (24 h)</dt><dd data-field="error_rate_24h">${percent(p.error_rate_24h)}</dd>
      </dl>
    </li>`;
}

const listCall = latestOnly();

async function loadList() {
  const current = listCall();
  const page = list.cursors.length;
  const params = new URLSearchParams({ limit: PAGE_SIZE });
  if (list.search) params.set("search", list.search);
  if (list.state) params.set("state", list.state);
  if (list.cursors[page - 1]) params.set("cursor", list.cursors[page - 1]);
  $("#main").setAttribute("aria-busy", "true");
  let body;
  try {
    body = await apiJson(`${passes}?${params}`);
    if (!current()) return;
    $("#list-error").hidden = true;
  } catch (error) {
    if (!current()) return;
    $("#list-error").innerHTML = `The passes could not be loaded (${escapeHtml(error.message)}).
      <button type="button" id="retry">Try again</button>`;
    $("#list-error").hidden = false;
    $("#retry").addEventListener("click", loadList);
    return;
  } finally {
    if (current()) $("#main").removeAttribute("aria-busy");
  }
  list.next = body.next_cursor;
  $("#passes").innerHTML = body.items.map(card).join("");
  $("#unmanaged").innerHTML = body.unmanaged.map(unmanagedCard).join("");
  $("#unmanaged-section").hidden = body.unmanaged.length === 0;
  const filtered = list.search || list.state;
  const empty = body.items.length === 0 && page === 1;
  $("#empty").hidden = !empty;
  $("#empty").textContent = filtered
    ? "No pass matches this search. Clear the search or the status filter to see them all."
    : "This project has no Sentinel Pass yet. Create one to let an agent call the project's APIs.";
  $("#prev").disabled = page === 1;
  $("#next").disabled = !list.next;
  $("#page-info").textContent = empty ? "" : `Page ${page}`;
}

// -- creation ----------------------------------------------------------------------------

const dialog = $("#create-dialog");
const form = $("#create-form");
const OPTIONAL = ["description", "pass_id", "organization", "integration_notes"];
let spec = null;

function step(name) {
  dialog.querySelectorAll("[data-step-panel]").forEach((panel) => { panel.hidden = panel.dataset.stepPanel !== name; });
  dialog.querySelectorAll(".steps li").forEach((li) => {
    if (li.dataset.step === name) li.setAttribute("aria-current", "step"); else li.removeAttribute("aria-current");
  });
  const first = dialog.querySelector(`[data-step-panel=${name}]`).querySelector("input, button.primary");
  first?.focus();
}

// A preview only (the API normalises): "Sourcing Agent" → sourcing_agent.
const normalisedType = (text) => text.trim().toLowerCase().replace(/[^a-z0-9]+/g, "_").replace(/^_+|_+$/g, "");

function isoDay(date) {
  return date.toISOString().slice(0, 10);
}

function resetForm() {
  form.reset();
  const today = new Date();
  const nextYear = new Date(today);
  nextYear.setUTCFullYear(today.getUTCFullYear() + 1);
  form.elements.valid_from.value = isoDay(today);
  form.elements.valid_until.value = isoDay(nextYear);
  form.elements.access_level.value = "standard";
  form.elements.usage_type.value = "automation_tool";
  form.elements.scopes.value = "read,write";
  showFieldErrors(form, {});
  previewType();
}

function previewType() {
  const shown = normalisedType(form.elements.agent_type.value);
  $("#create-form-agent_type-hint").textContent = shown ? `Saved as ${shown}` : "Saved as lowercase with underscores.";
}

function collect() {
  const body = {};
  for (const [name, value] of new FormData(form)) {
    const text = String(value).trim();
    if (OPTIONAL.includes(name) && text === "") continue;
    body[name] = text;
  }
  return body;
}

function review(body) {
  const rows = [
    ["Agent name", body.agent_name], ["Agent type", normalisedType(body.agent_type)],
    ["Description", body.description], ["Pass ID", body.pass_id || "generated"],
    ["Access level", humanize(body.access_level)], ["Organization", body.organization],
    ["Usage type", humanize(body.usage_type)], ["Valid from", body.valid_from],
    ["Valid until", body.valid_until], ["Permissions", body.scopes],
    ["Integration notes", body.integration_notes],
  ];
  $("#review").innerHTML = rows.map(([label, value]) => `<dt>${label}</dt><dd>${escapeHtml(value || "—")}</dd>`).join("");
}

function formErrors(byField) {
  const unclaimed = showFieldErrors(form, byField);
  const general = form.querySelector('[data-error-for=""]');
  general.textContent = unclaimed.join("; ");
  general.hidden = !unclaimed.length;
}

async function create() {
  let credentials;
  try {
    credentials = await send("POST", passes, spec);
  } catch (error) {
    const byField = fieldErrors(error);
    if (error.status === 409) { byField.pass_id = byField[""]; delete byField[""]; }
    step("form");
    formErrors(byField);
    form.querySelector("[aria-invalid=true]")?.focus();
    return;
  }
  spec = null;
  showCredentials($("#create-credentials"), credentials);
  $("#create-done").dataset.created = `${credentials.pass.agent_name} (${credentials.pass.pass_id})`;
  step("credentials");
}

function wireCreation() {
  form.elements.agent_type.addEventListener("input", previewType);
  $("#create").addEventListener("click", () => {
    resetForm();
    step("form");
    openDialog(dialog);
    form.elements.agent_name.focus();
  });
  form.querySelector(".cancel").addEventListener("click", () => dialog.close());
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    if (!form.reportValidity()) return;
    formErrors({});
    spec = collect();
    review(spec);
    step("review");
  });
  $("#review-back").addEventListener("click", () => step("form"));
  $("#create-submit").addEventListener("click", create);
  $("#create-done").addEventListener("click", () => {
    say(`${$("#create-done").dataset.created} was created. Its client secret cannot be shown again.`);
    clearCredentials($("#create-credentials")); // now: "close" is dispatched later, as a task
    dialog.close();
  });
  // However the dialog closes (Complete, Escape), the secret leaves the page.
  dialog.addEventListener("close", () => {
    clearCredentials($("#create-credentials"));
    if (!$("[data-step-panel=credentials]").hidden) {
      list.cursors = [null];
      loadList();
    }
    step("form");
  });
}

// -- start --------------------------------------------------------------------------------

signIn($("#auth"), projectId, async () => {
  $("#main").hidden = false;
  say(sessionStorage.getItem("sentinel.notice") || "");
  sessionStorage.removeItem("sentinel.notice");
  $("#find").addEventListener("submit", (event) => {
    event.preventDefault();
    list.search = event.target.elements.search.value.trim();
    list.state = event.target.elements.state.value;
    list.cursors = [null];
    loadList();
  });
  $("#next").addEventListener("click", () => { list.cursors.push(list.next); loadList(); });
  $("#prev").addEventListener("click", () => { list.cursors.pop(); loadList(); });
  await Promise.all([
    renderPassFields(form).then(() => {
      wireCreation();
      $("#create").disabled = false; // enabled once its form is there
    }),
    loadList(),
  ]);
});
