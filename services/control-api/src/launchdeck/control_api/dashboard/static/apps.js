// The apps page: the instances table is fetched again every few seconds and at once on a
// project event (`project:<id>:events` on /api/v1/ws); the app's log streams from
// /api/v1/projects/<id>/logs/ws (the last lines, then live), resumed by cursor after a drop.
"use strict";

(function () {
  const root = document.getElementById("apps");
  if (!root) return;
  const projectId = root.dataset.projectId;
  const log = document.querySelector('[data-testid="app-log"]');
  const search = document.querySelector('[data-testid="log-search"]');
  const jump = document.querySelector('[data-testid="jump-to-end"]');
  const REFRESH_MS = 3000;
  const MAX_LINES = 2000;
  let timer = null;
  let cursor = 0;
  const seen = new Set();

  async function refresh() {
    timer = null;
    try {
      const response = await fetch(root.dataset.fragment, { credentials: "same-origin", headers: { Accept: "text/html" } });
      if (!response.redirected && response.ok) root.innerHTML = await response.text();
    } finally {
      schedule(REFRESH_MS);
    }
  }
  function schedule(ms) {
    if (timer) clearTimeout(timer);
    timer = setTimeout(refresh, ms);
  }
  schedule(REFRESH_MS);

  window.launchdeckSocket(
    () => "/api/v1/ws",
    (ws) => ws.send(JSON.stringify({ type: "subscribe", channel: "project:" + projectId + ":events" })),
    (frame) => { if (frame.type === "event") schedule(300); },
  );

  // --- the log --------------------------------------------------------------------------------
  const view = window.launchdeckLogView(log, search, jump); // dashboard.js

  function append(frame) {
    // After a reconnect the last batch comes again (resumed at its cursor): drop what was seen.
    const key = frame.deployment_id + ":" + frame.process + ":" + frame.seq;
    if (seen.has(key)) return;
    seen.add(key);
    if (seen.size > MAX_LINES * 2) seen.delete(seen.values().next().value);
    cursor = Math.max(cursor, frame.cursor || 0);
    const div = document.createElement("div");
    div.className = "log-line " + frame.stream;
    div.dataset.seq = String(frame.seq);
    div.dataset.stream = frame.stream;
    div.dataset.process = frame.process;
    const label = document.createElement("span");
    label.className = "dim";
    label.textContent = (frame.ts || "").slice(11, 19) + " " + frame.process + " ";
    div.appendChild(label);
    window.launchdeckAnsi(frame.line, div);
    view.add(div);
    while (log.children.length > MAX_LINES) log.firstChild.remove();
  }

  window.launchdeckSocket(
    () => `/api/v1/projects/${projectId}/logs/ws` + (cursor ? `?from_cursor=${cursor}` : ""),
    () => {},
    (frame) => view.update(() => {
      if (frame.type === "app_log") append(frame);
    }),
  );
})();
