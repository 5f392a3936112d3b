// A pass's detail view: four tabs (Overview, Permissions, Usage, Settings), each at its
// own URL (/ui/projects/{p}/passes/{pass_id}/{tab}); the tab shown is the only one that
// refreshes.
import {
  ApiError, Poller, STATE_LABELS, apiJson, capabilities, clearCredentials, confirmAction, copyText, day,
  escapeHtml, expiry, fieldErrors, humanize, millis, number, openDialog, percent,
  renderPassFields, say, scopeLabel, send, showCredentials, showFieldErrors, signIn, when,
} from "/ui/static/common.js";
import { mountUsage } from "/ui/static/usage.js";

const TABS = ["overview", "permissions", "usage", "settings"];
const [, , , projectId, , passId] = location.pathname.split("/").map(decodeURIComponent);
const root = `/ui/projects/${encodeURIComponent(projectId)}/passes/${encodeURIComponent(passId)}`;
const base = `/v1/projects/${encodeURIComponent(projectId)}/passes/${encodeURIComponent(passId)}`;
const $ = (selector) => document.querySelector(selector);
const $$ = (selector) => [...document.querySelectorAll(selector)];

let pass = null; // the registry's record; null for a pass known only from its activity
const pollers = {};

$("#pass-title").textContent = passId;
$("#back").href = `/ui/projects/${encodeURIComponent(projectId)}`;

// -- tabs ------------------------------------------------------------------------------

function tabFromUrl() {
  const last = location.pathname.split("/").pop();
  return TABS.includes(last) ? last : "overview";
}

function showTab(tab, { focus = false } = {}) {
  for (const name of TABS) {
    const selected = name === tab;
    const link = $(`#tab-${name}`);
    link.setAttribute("aria-selected", String(selected));
    link.tabIndex = selected ? 0 : -1;
    $(`#panel-${name}`).hidden = !selected;
    if (selected) pollers[name]?.start(); else pollers[name]?.stop();
  }
  if (tab === "settings") loadAudit();
  document.title = `${$(`#tab-${tab}`).textContent} · ${passId} · Sentinel Pass`;
  if (focus) $(`#tab-${tab}`).focus();
}

function wireTabs() {
  for (const name of TABS) $(`#tab-${name}`).href = `${root}/${name}`;
  $("#tabs").addEventListener("click", (event) => {
    const link = event.target.closest("[role=tab]");
    if (!link || link.hidden || event.metaKey || event.ctrlKey || event.shiftKey) return;
    event.preventDefault();
    history.pushState(null, "", link.href);
    showTab(link.dataset.tab);
  });
  // The tabs pattern of WAI-ARIA: arrows, Home and End move between the visible tabs.
  $("#tabs").addEventListener("keydown", (event) => {
    const shown = TABS.filter((name) => !$(`#tab-${name}`).hidden);
    const at = shown.indexOf(tabFromUrl());
    const next = { ArrowRight: at + 1, ArrowLeft: at - 1, Home: 0, End: shown.length - 1 }[event.key];
    if (next === undefined) return;
    event.preventDefault();
    const tab = shown[(next + shown.length) % shown.length];
    history.pushState(null, "", `${root}/${tab}`);
    showTab(tab, { focus: true });
  });
  window.addEventListener("popstate", () => showTab(tabFromUrl()));
}

// -- the pass's record, on every tab ------------------------------------------------------

async function loadPass() {
  try {
    pass = await apiJson(base);
  } catch (error) {
    if (!(error instanceof ApiError && error.status === 404)) throw error;
    pass = null;
  }
  renderPass();
}

function renderPass() {
  for (const name of ["overview", "permissions", "settings"]) $(`#tab-${name}`).hidden = !pass;
  if (!pass) {
    $("#pass-name").textContent = passId;
    say("This pass is not managed by this registry: only its activity is known.");
    return;
  }
  const state = $("#pass-state");
  state.hidden = false;
  state.textContent = STATE_LABELS[pass.state];
  state.className = `badge state-${pass.state}`;
  $("#pass-name").textContent = pass.agent_name;
  const validity = expiry(pass.valid_until);
  for (const target of [$("#pass-expiry"), $("#p-expiry")]) {
    target.hidden = validity.level === "valid";
    target.textContent = validity.text;
    target.className = `expiry expiry-${validity.level}`;
  }

  const field = (name) => $(`#o-fields [data-field=${name}]`);
  field("pass_id").textContent = pass.pass_id;
  field("client_id").textContent = pass.client_id;
  field("state").textContent = STATE_LABELS[pass.state];
  field("created_at").textContent = when(pass.created_at);
  field("valid_until").textContent = validity.text;
  field("valid_until").className = `expiry-${validity.level}`;
  field("agent_type").textContent = pass.agent_type;
  field("organization").textContent = pass.organization || "—";
  field("usage_type").textContent = humanize(pass.usage_type);
  const capabilityItems = capabilities(pass.scopes).map((c) => `<li>${escapeHtml(c)}</li>`).join("");
  field("capabilities").innerHTML = capabilityItems;

  $("#p-scopes").innerHTML = pass.scopes.map((scope) => `
    <li data-scope="${escapeHtml(scope)}"><span class="scope-label">${escapeHtml(scopeLabel(scope))}</span>
      <code>${escapeHtml(scope)}</code></li>`).join("");
  $("#p-access-level").textContent = humanize(pass.access_level);
  $("#p-access-level").className = `level level-${pass.access_level}`;
  $("#p-validity").textContent = `${day(pass.valid_from)} – ${day(pass.valid_until)}`;
  $("#p-capabilities").innerHTML = capabilityItems;
  const scopes = $("#scopes-form [name=scopes]");
  if (document.activeElement !== scopes) scopes.value = pass.scopes.join(",");

  const active = pass.state === "active";
  $$(".toggle-status").forEach((b) => { b.textContent = active ? "Pause (set inactive)" : "Activate"; });
  $("#s-active").checked = active;
  $("#s-active-label").textContent = STATE_LABELS[pass.state];
  $("#s-revoke").hidden = pass.state === "revoked";
  $("#s-activate").hidden = pass.state !== "revoked";
  fillMetadata();
}

// -- overview --------------------------------------------------------------------------

async function loadOverview() {
  const [overview] = await Promise.all([apiJson(`${base}/overview`), loadPass()]);
  $("#o-total").textContent = number(overview.total_requests);
  $("#o-success").textContent = percent(overview.success_rate);
  $("#o-success-dot").className = overview.success_rate == null ? "dot" : "dot green";
  $("#o-avg").textContent = millis(overview.avg_latency_ms);
  $("#o-last-used").textContent = when(overview.last_used_at);
}

// -- actions ---------------------------------------------------------------------------

async function act(work, done) {
  say("");
  try {
    await work();
    if (done) say(done);
  } catch (error) {
    say(`That did not work: ${error.message}`);
  }
  await loadPass().catch(() => {});
  if (tabFromUrl() === "settings") loadAudit();
}

async function regenerate() {
  const yes = await confirmAction($("#confirm-dialog"), {
    title: `Regenerate the credentials of ${pass.agent_name} (${pass.pass_id})?`,
    body: "The current client secret stops working at once, and so does every token issued under it. The new secret is shown once.",
    action: "Regenerate",
    danger: true,
  });
  if (!yes) return;
  await act(async () => {
    const credentials = await send("POST", `${base}/regenerate`);
    showCredentials($("#secret-credentials"), credentials);
    openDialog($("#secret-dialog"));
  });
}

async function setStatus(active) {
  await act(() => send("POST", `${base}/${active ? "activate" : "deactivate"}`),
    active ? "The pass is active." : "The pass is paused: its token exchanges fail until it is activated.");
}

async function revoke() {
  const yes = await confirmAction($("#confirm-dialog"), {
    title: `Revoke ${pass.agent_name} (${pass.pass_id})?`,
    body: "The pass becomes inactive and its tokens are refused at once. Its record and usage history stay; Activate re-enables it.",
    action: "Revoke",
    danger: true,
  });
  if (yes) await act(() => send("POST", `${base}/revoke`), "The pass is revoked.");
}

async function remove() {
  const yes = await confirmAction($("#confirm-dialog"), {
    title: `Delete ${pass.agent_name} (${pass.pass_id})?`,
    body: `Deleting ${pass.pass_id} is permanent: the pass and its metadata are removed and its tokens are refused at once. This cannot be undone.`,
    action: `Delete ${pass.pass_id}`,
    danger: true,
  });
  if (!yes) return;
  try {
    await send("DELETE", base);
  } catch (error) {
    say(`The pass was not deleted: ${error.message}`);
    return;
  }
  sessionStorage.setItem("sentinel.notice", `${pass.agent_name} (${pass.pass_id}) was deleted.`);
  location.assign(`/ui/projects/${encodeURIComponent(projectId)}`);
}

// -- forms -----------------------------------------------------------------------------

let METADATA = []; // the Settings form's fields, as renderPassFields drew them

function fillMetadata() {
  const form = $("#metadata-form");
  if (!METADATA.length || form.contains(document.activeElement)) return; // never under the user's typing
  for (const name of METADATA) form.elements[name].value = pass[name] ?? "";
}

// Only what changed is sent; a cleared optional text is sent as null (cleared).
function metadataChanges(form) {
  const changes = {};
  for (const name of METADATA) {
    const value = form.elements[name].value.trim();
    if (value === (pass[name] ?? "")) continue;
    changes[name] = value === "" && !form.elements[name].required ? null : value;
  }
  return changes;
}

async function submitForm(form, body, savedSlot, savedText) {
  savedSlot.textContent = "";
  try {
    await send("PATCH", base, body);
  } catch (error) {
    const unclaimed = showFieldErrors(form, fieldErrors(error));
    const general = form.querySelector('[data-error-for=""]');
    general.textContent = unclaimed.join("; ");
    general.hidden = !unclaimed.length;
    return;
  }
  showFieldErrors(form, {});
  form.querySelector('[data-error-for=""]').hidden = true;
  document.activeElement.blur?.();
  await loadPass();
  savedSlot.textContent = savedText;
}

function wireActions() {
  $$(".regenerate").forEach((b) => b.addEventListener("click", regenerate));
  $$(".toggle-status").forEach((b) => b.addEventListener("click", () => setStatus(pass.state !== "active")));
  $("#s-active").addEventListener("change", (e) => setStatus(e.target.checked));
  $("#s-revoke").addEventListener("click", revoke);
  $("#s-activate").addEventListener("click", () => setStatus(true));
  $("#s-delete").addEventListener("click", remove);
  $("#secret-done").addEventListener("click", () => {
    clearCredentials($("#secret-credentials"));
    $("#secret-dialog").close();
  });
  // Escape must not leave a secret on the page either.
  $("#secret-dialog").addEventListener("close", () => clearCredentials($("#secret-credentials")));
  $("#copy-client-id").addEventListener("click", (event) => copyText(event.target, pass.client_id));
  $("#scopes-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const scopes = event.target.elements.scopes.value;
    submitForm(event.target, { scopes }, $("#scopes-saved"),
      "Saved: the new permissions apply at the next token exchange.");
  });
  $("#metadata-form").addEventListener("submit", (event) => {
    event.preventDefault();
    submitForm(event.target, metadataChanges(event.target), $("#metadata-saved"), "Saved.");
  });
}

// -- start ---------------------------------------------------------------------------------

signIn($("#auth"), projectId, async () => {
  $("#main").hidden = false;
  wireTabs();
  wireActions();
  pollers.usage = mountUsage(base);
  pollers.overview = new Poller(loadOverview, {
    status: $("#overview-status"),
    updated: $("#overview-updated"),
  });
  $("#overview-refresh").addEventListener("click", () => pollers.overview.refresh({ manual: true }));
  METADATA = await renderPassFields($("#metadata-form"));
  try {
    await loadPass();
  } catch (error) {
    say(`The pass could not be loaded: ${error.message}`);
  }
  const tab = tabFromUrl();
  showTab(pass || tab === "usage" ? tab : "usage");
  if (!pass && tab !== "usage") history.replaceState(null, "", `${root}/usage`);
});

async function loadAudit() {
  if (!pass) return;
  const body = await apiJson(`${base}/audit?limit=20`).catch(() => ({ items: [] }));
  $("#s-audit").innerHTML = body.items.map((entry) => `
    <li><time datetime="${escapeHtml(entry.at)}">${escapeHtml(when(entry.at))}</time>
      ${escapeHtml(humanize(entry.action))} <span class="muted">by ${escapeHtml(entry.subject)}</span></li>`).join("")
    || '<li class="muted">No changes recorded.</li>';
}
