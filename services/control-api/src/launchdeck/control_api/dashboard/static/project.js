// The project page: builds and deployments follow the project's events (`project:<id>:events`
// on /api/v1/ws). An event patches its row at once; the tables are then fetched again from the
// server (new rows, the live URL, which builds can be rolled back to), and statuses the events
// already told are kept over ones the database has not caught up with yet.
"use strict";

(function () {
  const live = document.getElementById("live");
  if (!live) return;
  const BUILD_RANK = { queued: 0, cloning: 1, installing: 2, building: 3, packaging: 4, succeeded: 5, failed: 5, cancelled: 5 };
  const DEPLOYMENT_RANK = { pending: 0, activating: 1, active: 2, unhealthy: 2, failed: 3, superseded: 3, rolled_back: 3 };
  const told = new Map(); // row selector → {status, rank}
  let timer = null;
  let retries = 0;

  function rowOf(kind, id) {
    return live.querySelector(kind === "build" ? `tr[data-build="${id}"][data-testid="build-row"]` : `tr[data-deployment="${id}"]`);
  }

  function setStatus(row, status) {
    row.dataset.status = status;
    const badge = row.querySelector('[data-role="status"]');
    if (badge) { badge.textContent = status; badge.className = "status status-" + status; }
  }

  // Apply what the events told over the rows; true when every told row is on the page.
  function applyTold() {
    let all = true;
    for (const [key, value] of told) {
      const [kind, id] = key.split(":");
      const row = rowOf(kind, id);
      if (!row) { all = false; continue; }
      const ranks = kind === "build" ? BUILD_RANK : DEPLOYMENT_RANK;
      if ((ranks[value.status] ?? -1) > (ranks[row.dataset.status] ?? -1)) setStatus(row, value.status);
    }
    return all;
  }

  async function refresh() {
    timer = null;
    const response = await fetch(live.dataset.fragment, { credentials: "same-origin", headers: { Accept: "text/html" } });
    if (response.redirected || !response.ok) return;
    live.innerHTML = await response.text();
    if (!applyTold() && retries < 10) { retries += 1; schedule(500 * retries); }
  }

  function schedule(ms) {
    if (timer) clearTimeout(timer);
    timer = setTimeout(refresh, ms);
  }

  const channel = "project:" + live.dataset.projectId + ":events";
  window.launchdeckSocket(
    () => "/api/v1/ws",
    (ws) => ws.send(JSON.stringify({ type: "subscribe", channel })),
    (frame) => {
      if (frame.type !== "event" || !frame.event) return;
      const id = frame.kind === "build" ? frame.event.build_id : frame.event.deployment_id;
      if (!id || (frame.kind !== "build" && frame.kind !== "deployment")) return;
      told.set(frame.kind + ":" + id, { status: frame.event.status });
      const row = rowOf(frame.kind, id);
      if (row) setStatus(row, frame.event.status);
      retries = 0;
      schedule(200);
    },
  );
})();
