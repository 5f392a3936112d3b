// The Usage tab: metrics, the timeline chart, the activity log with its filters and
// pages, and the export. `mountUsage` wires it once; the detail view starts and stops
// its refresh as the tab is shown and left.
import { ApiError, Poller, api, apiJson, escapeHtml, latestOnly, millis, number, percent, when } from "/ui/static/common.js";

const $ = (selector) => document.querySelector(selector);
let base = "";

const state = {
  range: "24h",
  tz: Intl.DateTimeFormat().resolvedOptions().timeZone || "UTC",
  filters: {},
  page: 1,
  perPage: 25,
  total: 0,
  exportCursor: null,
};

// -- metrics and chart ---------------------------------------------------------

function latencyLevel(ms) {
  if (ms == null) return "";
  return ms < 200 ? "level-green" : ms <= 500 ? "level-yellow" : "level-red";
}

function renderMetrics(m) {
  $("#m-total").textContent = number(m.total_requests);
  $("#m-success").textContent = percent(m.success_rate);
  const avg = $("#m-avg");
  avg.textContent = millis(m.avg_latency_ms);
  avg.className = `value ${latencyLevel(m.avg_latency_ms)}`;
  $("#m-p95").textContent = millis(m.p95_latency_ms);
  $("#m-p50").textContent = millis(m.p50_latency_ms);
  $("#m-p99").textContent = millis(m.p99_latency_ms);
  $("#m-endpoints").textContent = number(m.unique_endpoints);
  $("#m-errors").textContent = percent(m.error_rate);
  $("#m-error-warning").hidden = !m.error_rate_warning;
}

function renderChart(timeline, granularity) {
  const svg = $("#chart");
  const width = svg.clientWidth || 800;
  const height = svg.clientHeight || 260;
  const pad = { left: 48, right: 48, top: 12, bottom: 28 };
  const innerW = width - pad.left - pad.right;
  const innerH = height - pad.top - pad.bottom;
  const maxTotal = Math.max(1, ...timeline.map((b) => b.total_requests));
  const step = innerW / Math.max(1, timeline.length - 1);
  const x = (i) => pad.left + i * step;
  const yLeft = (v) => pad.top + innerH - (v / maxTotal) * innerH;
  const yRight = (pct) => pad.top + innerH - (pct / 100) * innerH;
  const line = (points) => points.map(([px, py], i) => `${i ? "L" : "M"}${px.toFixed(1)},${py.toFixed(1)}`).join("");
  const totals = timeline.map((b, i) => [x(i), yLeft(b.total_requests)]);
  const rates = timeline
    .map((b, i) => (b.success_rate == null ? null : [x(i), yRight(b.success_rate * 100)]))
    .filter(Boolean);
  const label = (iso) => {
    const d = new Date(iso);
    return granularity === "hour"
      ? d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", timeZone: state.tz })
      : d.toLocaleDateString([], { month: "short", day: "numeric", timeZone: state.tz });
  };
  const every = Math.ceil(timeline.length / Math.max(2, Math.floor(innerW / 70)));
  svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
  svg.innerHTML = `
    <g class="axis" font-size="11" fill="#57606a">
      <text x="${pad.left - 6}" y="${pad.top + 4}" text-anchor="end">${number(maxTotal)}</text>
      <text x="${pad.left - 6}" y="${pad.top + innerH}" text-anchor="end">0</text>
      <text x="${width - pad.right + 6}" y="${pad.top + 4}">100%</text>
      <text x="${width - pad.right + 6}" y="${pad.top + innerH}">0%</text>
      ${timeline.map((b, i) => (i % every ? "" : `<text x="${x(i)}" y="${height - 8}" text-anchor="middle">${escapeHtml(label(b.bucket_start))}</text>`)).join("")}
    </g>
    <line x1="${pad.left}" x2="${width - pad.right}" y1="${pad.top + innerH}" y2="${pad.top + innerH}" stroke="#d0d7de"/>
    <path d="${line(totals)}" fill="none" stroke="var(--blue)" stroke-width="2" data-series="total_requests"/>
    <path d="${line(rates)}" fill="none" stroke="var(--green)" stroke-width="2" stroke-dasharray="4 2" data-series="success_rate"/>
    ${timeline.map((b, i) => `<rect class="hit" data-index="${i}" tabindex="0"
        aria-label="${escapeHtml(label(b.bucket_start))}: ${b.total_requests} requests"
        x="${x(i) - step / 2}" y="${pad.top}" width="${Math.max(step, 4)}" height="${innerH}" fill="transparent"/>`).join("")}`;
  const tooltip = $("#tooltip");
  const show = (event) => {
    const b = timeline[Number(event.target.dataset.index)];
    tooltip.innerHTML = `<strong>${escapeHtml(label(b.bucket_start))}</strong><br>
      Total requests: <span data-field="total_requests">${number(b.total_requests)}</span><br>
      Success: <span data-field="success_count">${number(b.success_count)}</span><br>
      Errors: <span data-field="error_count">${number(b.error_count)}</span><br>
      Avg latency: <span data-field="avg_latency_ms">${millis(b.avg_latency_ms)}</span>`;
    tooltip.hidden = false;
    const box = event.target.getBBox();
    tooltip.style.left = `${Math.min(box.x + box.width, width - 180)}px`;
    tooltip.style.top = `${pad.top}px`;
  };
  svg.querySelectorAll("rect.hit").forEach((rect) => {
    rect.addEventListener("mouseenter", show);
    rect.addEventListener("focus", show);
    rect.addEventListener("mouseleave", () => { tooltip.hidden = true; });
    rect.addEventListener("blur", () => { tooltip.hidden = true; });
  });
}

function renderRetention(retention) {
  const note = $("#retention-note");
  note.hidden = !retention.partial;
  note.textContent = retention.partial
    ? `Part of this range is older than the ${retention.days}-day retention: before ${when(retention.held_from)} only what is still kept is counted.`
    : "";
}

function renderEndpoints(found) {
  const classes = Object.entries(found.status_codes.classes);
  $("#status-classes").textContent = classes.length
    ? `Status codes: ${classes.map(([k, n]) => `${k} ${number(n)}`).join(" · ")}`
    : "";
  $("#endpoints tbody").innerHTML = found.items.map((e) => `<tr>
      <td>${escapeHtml(e.endpoint)}</td><td>${number(e.total_requests)}</td>
      <td>${number(e.error_count)}</td><td>${percent(e.error_rate)}</td>
      <td>${millis(e.avg_latency_ms)}</td><td>${millis(e.p95_latency_ms)}</td></tr>`).join("");
  $("#endpoints-empty").hidden = found.items.length > 0;
}

async function loadUsage() {
  const range = { range: state.range, tz: state.tz };
  const [usage, found] = await Promise.all([
    apiJson(`${base}/usage?${new URLSearchParams({ ...range, percentiles: "50,95,99" })}`),
    apiJson(`${base}/endpoints?${new URLSearchParams({ ...range, per_page: 10 })}`),
  ]);
  renderMetrics(usage.metrics);
  renderRetention(usage.retention);
  renderChart(usage.timeline, usage.granularity);
  renderEndpoints(found);
  return usage;
}

// -- activity log ----------------------------------------------------------------

function filterParams() {
  const params = new URLSearchParams();
  for (const [key, value] of Object.entries(state.filters)) if (value) params.set(key, value);
  // The date inputs pick whole days: the end day is included (the API's end is exclusive).
  if (params.get("end_date")) {
    const next = new Date(`${params.get("end_date")}T00:00:00Z`);
    next.setUTCDate(next.getUTCDate() + 1);
    params.set("end_date", next.toISOString().slice(0, 10));
  }
  return params;
}

function renderRows(items) {
  const tbody = $("#log tbody");
  tbody.innerHTML = items.map((row, i) => `
    <tr data-event-id="${escapeHtml(row.event_id)}">
      <td><button type="button" class="expand" aria-expanded="false" aria-controls="details-${i}"
          aria-label="Show details">+</button></td>
      <td data-label="Timestamp">${escapeHtml(when(row.started_at))}</td>
      <td data-label="Endpoint">${escapeHtml(row.endpoint)}</td>
      <td data-label="Method">${escapeHtml(row.http_method)}</td>
      <td data-label="Status" class="${row.success ? "ok" : "fail"}" aria-label="${row.success ? "Success" : "Failed"}">${row.success ? "✓" : "✗"}</td>
      <td data-label="Duration">${millis(row.duration_ms)}</td>
      <td data-label="IP address">${escapeHtml(row.client_ip ?? "—")}</td>
    </tr>
    <tr class="details" id="details-${i}" hidden><td colspan="7"><dl>
      <dt>User agent</dt><dd>${escapeHtml(row.user_agent ?? "—")}</dd>
      <dt>Status code</dt><dd>${escapeHtml(row.status_code ?? "—")}</dd>
      <dt>Error message</dt><dd>${escapeHtml(row.error_message ?? "—")}</dd>
      <dt>Metadata</dt><dd><pre>${escapeHtml(JSON.stringify(row.metadata, null, 2))}</pre></dd>
    </dl></td></tr>`).join("");
  tbody.querySelectorAll("button.expand").forEach((button) => {
    button.addEventListener("click", () => {
      const details = document.getElementById(button.getAttribute("aria-controls"));
      details.hidden = !details.hidden;
      button.setAttribute("aria-expanded", String(!details.hidden));
      button.textContent = details.hidden ? "+" : "−";
    });
  });
}

const activityCall = latestOnly();

async function loadActivity() {
  const current = activityCall();
  const params = filterParams();
  params.set("page", state.page);
  params.set("per_page", state.perPage);
  let body;
  try {
    body = await apiJson(`${base}/activity?${params}`);
    if (!current()) return;
    $("#filter-error").hidden = true;
  } catch (error) {
    if (!current()) return;
    if (error instanceof ApiError && error.status === 422) {
      $("#filter-error").textContent = error.message;
      $("#filter-error").hidden = false;
      return;
    }
    throw error;
  }
  state.total = body.total;
  renderRows(body.items);
  const pages = Math.max(1, Math.ceil(body.total / state.perPage));
  $("#page-info").textContent = `Page ${state.page} of ${pages} · ${number(body.total)} records`;
  $("#prev").disabled = state.page <= 1;
  $("#next").disabled = state.page >= pages;
}

// -- export ------------------------------------------------------------------------

async function exportBatch(cursor) {
  const params = filterParams();
  params.set("format", $("#export-format").value);
  if (cursor) params.set("cursor", cursor);
  const response = await api(`${base}/activity/export?${params}`);
  const name = /filename="([^"]+)"/.exec(response.headers.get("Content-Disposition"))[1];
  const link = document.createElement("a");
  link.href = URL.createObjectURL(await response.blob());
  link.download = name;
  document.body.append(link);
  link.click();
  link.remove();
  const truncated = response.headers.get("X-Export-Truncated") === "true";
  state.exportCursor = truncated ? response.headers.get("X-Next-Cursor") : null;
  const status = $("#export-status");
  status.hidden = false;
  status.textContent = truncated
    ? `${number(response.headers.get("X-Total-Count"))} records match: this file holds ${number(response.headers.get("X-Export-Rows"))}. Exports are limited to 10,000 records; download the next batch to continue.`
    : `Exported ${number(response.headers.get("X-Export-Rows"))} records (${name}).`;
  $("#export-next").hidden = !truncated;
}

// -- wiring ----------------------------------------------------------------------------

// Wires the tab's controls once, for the pass whose API paths start at `passBase`;
// returns the tab's refresh (start it when the tab is shown, stop it when it is left).
export function mountUsage(passBase) {
  base = passBase;
  const poller = new Poller(() => Promise.all([loadUsage(), loadActivity()]), {
    status: $("#refresh-status"),
    updated: $("#updated"),
    enabled: () => $("#auto").checked,
  });
  $("#range").addEventListener("change", (e) => { state.range = e.target.value; poller.refresh(); });
  $("#refresh").addEventListener("click", () => poller.refresh({ manual: true }));
  $("#filters").addEventListener("submit", (e) => {
    e.preventDefault();
    state.filters = Object.fromEntries(new FormData(e.target));
    state.page = 1;
    loadActivity();
  });
  $("#clear").addEventListener("click", () => {
    $("#filters").reset();
    state.filters = {};
    state.page = 1;
    loadActivity();
  });
  $("#prev").addEventListener("click", () => { state.page -= 1; loadActivity(); });
  $("#next").addEventListener("click", () => { state.page += 1; loadActivity(); });
  $("#per-page").addEventListener("change", (e) => { state.perPage = Number(e.target.value); state.page = 1; loadActivity(); });
  $("#export").addEventListener("click", () => exportBatch(null));
  $("#export-next").addEventListener("click", () => exportBatch(state.exportCursor));
  return poller;
}
