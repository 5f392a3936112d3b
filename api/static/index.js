import { apiJson, escapeHtml, number, percent, signIn, when } from "/ui/static/common.js";

const projectId = decodeURIComponent(location.pathname.split("/")[3]);
document.querySelector("#project-title").textContent = `Sentinel Passes · ${projectId}`;

signIn(document.querySelector("#auth"), projectId, async () => {
  document.querySelector("#main").hidden = false;
  const body = await apiJson(`/v1/projects/${encodeURIComponent(projectId)}/passes`);
  // Registry passes first; pass ids seen only in events are marked as not managed here.
  const cards = [...body.items, ...body.unmanaged.map((p) => ({ ...p, unmanaged: true }))];
  document.querySelector("#empty").hidden = cards.length > 0;
  document.querySelector("#passes").innerHTML = cards.map((p) => `
    <li>
      <a href="/ui/projects/${encodeURIComponent(projectId)}/passes/${encodeURIComponent(p.pass_id)}/usage">${escapeHtml(p.pass_id)}</a>
      ${p.agent_name ? `<span>${escapeHtml(p.agent_name)} · ${escapeHtml(p.state)}</span>` : ""}
      ${p.unmanaged ? '<span class="muted">not managed here</span>' : ""}
      <dl>
        <dt>Last used</dt><dd>${when(p.last_used_at)}</dd>
        <dt>Requests (24 h)</dt><dd data-field="total_requests_24h">${number(p.total_requests_24h)}</dd>
        <dt>Error rate (24 h)</dt><dd data-field="error_rate_24h">${percent(p.error_rate_24h)}</dd>
      </dl>
    </li>`).join("");
});
