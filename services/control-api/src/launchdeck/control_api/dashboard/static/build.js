// The build page: the log streams in over /api/v1/builds/<id>/logs/ws (replayed from the first
// line, then live, then `end`), ANSI colours become spans, the view follows the end until the
// user scrolls up; the status follows the project's build events on /api/v1/ws.
"use strict";

(function () {
  const root = document.getElementById("build");
  if (!root) return;
  const buildId = root.dataset.buildId;
  const log = root.querySelector('[data-testid="log"]');
  const status = root.querySelector('[data-testid="build-status"]');
  const errorBox = root.querySelector('[data-testid="build-error"]');
  const search = root.querySelector('[data-testid="log-search"]');
  const jump = root.querySelector('[data-testid="jump-to-end"]');
  const FINISHED = new Set(["succeeded", "failed", "cancelled"]);
  let lastSeq = 0;
  let ended = false;

  function setStatus(value, error) {
    if (!value || (FINISHED.has(status.textContent) && !FINISHED.has(value))) return;
    status.textContent = value;
    status.className = "status status-" + value;
    if (value === "failed" && error) { errorBox.textContent = error; errorBox.hidden = false; }
  }

  const render = window.launchdeckAnsi; // dashboard.js

  const view = window.launchdeckLogView(log, search, jump); // dashboard.js

  function append(entry) {
    if (entry.seq <= lastSeq) return; // replayed after a reconnect
    lastSeq = entry.seq;
    const div = document.createElement("div");
    div.className = "log-line " + entry.stream;
    div.dataset.seq = String(entry.seq);
    div.dataset.stream = entry.stream;
    render(entry.line, div);
    view.add(div);
  }

  window.launchdeckSocket(
    () => `/api/v1/builds/${buildId}/logs/ws?batch=true&from_seq=${lastSeq + 1}`,
    () => {},
    (frame) => view.update(() => {
      if (frame.type === "log") append(frame);
      else if (frame.type === "logs") frame.lines.forEach(append);
      else if (frame.type === "end") { ended = true; setStatus(frame.status); }
    }),
    () => ended,
  );

  // Statuses between `queued` and the end (cloning, building, ...) come as project events.
  const channel = "project:" + root.dataset.projectId + ":events";
  window.launchdeckSocket(
    () => "/api/v1/ws",
    (ws) => ws.send(JSON.stringify({ type: "subscribe", channel })),
    (frame) => {
      if (frame.type === "event" && frame.kind === "build" && frame.event && frame.event.build_id === buildId) {
        setStatus(frame.event.status, frame.event.error);
        if (FINISHED.has(frame.event.status)) {
          const cancel = root.querySelector('[data-testid="cancel"]');
          if (cancel) cancel.remove();
        }
      }
    },
  );
})();
