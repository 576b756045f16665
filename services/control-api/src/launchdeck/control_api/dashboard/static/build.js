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
  let follow = true;

  function setStatus(value, error) {
    if (!value || (FINISHED.has(status.textContent) && !FINISHED.has(value))) return;
    status.textContent = value;
    status.className = "status status-" + value;
    if (value === "failed" && error) { errorBox.textContent = error; errorBox.hidden = false; }
  }

  // --- ANSI SGR colours ---------------------------------------------------------------------
  const SGR = /\x1b\[([0-9;]*)m/g;
  const OTHER_ESCAPES = /\x1b\[[0-9;?]*[A-Za-ln-z]|\x1b\][^\x07]*\x07|\r/g;
  function render(line, into) {
    const text = line.replace(OTHER_ESCAPES, "");
    let state = { fg: null, bg: null, bold: false, dim: false, italic: false, underline: false };
    let at = 0;
    let match;
    SGR.lastIndex = 0;
    const emit = (piece) => {
      if (!piece) return;
      const classes = [];
      if (state.fg !== null) classes.push("fg-" + state.fg);
      if (state.bg !== null) classes.push("bg-" + state.bg);
      for (const flag of ["bold", "dim", "italic", "underline"]) if (state[flag]) classes.push(flag);
      if (!classes.length) { into.appendChild(document.createTextNode(piece)); return; }
      const span = document.createElement("span");
      span.className = classes.join(" ");
      span.textContent = piece;
      into.appendChild(span);
    };
    while ((match = SGR.exec(text)) !== null) {
      emit(text.slice(at, match.index));
      at = SGR.lastIndex;
      const codes = match[1] === "" ? [0] : match[1].split(";").map(Number);
      for (let i = 0; i < codes.length; i++) {
        const c = codes[i];
        if (c === 0) state = { fg: null, bg: null, bold: false, dim: false, italic: false, underline: false };
        else if (c === 1) state.bold = true;
        else if (c === 2) state.dim = true;
        else if (c === 3) state.italic = true;
        else if (c === 4) state.underline = true;
        else if (c === 22) { state.bold = false; state.dim = false; }
        else if (c === 23) state.italic = false;
        else if (c === 24) state.underline = false;
        else if ((c >= 30 && c <= 37) || (c >= 90 && c <= 97)) state.fg = c;
        else if (c === 39) state.fg = null;
        else if ((c >= 40 && c <= 47) || (c >= 100 && c <= 107)) state.bg = c;
        else if (c === 49) state.bg = null;
        else if (c === 38 || c === 48) i += codes[i + 1] === 5 ? 2 : 4; // 256/true colour: skipped
      }
    }
    emit(text.slice(at));
  }

  // --- search -------------------------------------------------------------------------------
  function matches(div) {
    const q = search.value.trim().toLowerCase();
    const hit = !q || div.textContent.toLowerCase().includes(q);
    div.hidden = !hit;
    div.classList.toggle("hit", Boolean(q) && hit);
  }
  search.addEventListener("input", () => {
    for (const div of log.children) matches(div);
    if (follow) log.scrollTop = log.scrollHeight;
  });

  // --- following the end --------------------------------------------------------------------
  log.addEventListener("scroll", () => {
    follow = log.scrollTop + log.clientHeight >= log.scrollHeight - 8;
    jump.classList.toggle("attention", !follow);
  });
  jump.addEventListener("click", () => {
    follow = true;
    log.scrollTop = log.scrollHeight;
    jump.classList.remove("attention");
  });

  function append(entry) {
    if (entry.seq <= lastSeq) return; // replayed after a reconnect
    lastSeq = entry.seq;
    const div = document.createElement("div");
    div.className = "log-line " + entry.stream;
    div.dataset.seq = String(entry.seq);
    div.dataset.stream = entry.stream;
    render(entry.line, div);
    matches(div);
    log.appendChild(div);
  }

  window.launchdeckSocket(
    () => `/api/v1/builds/${buildId}/logs/ws?batch=true&from_seq=${lastSeq + 1}`,
    () => {},
    (frame) => {
      const wasFollowing = follow;
      if (frame.type === "log") append(frame);
      else if (frame.type === "logs") frame.lines.forEach(append);
      else if (frame.type === "end") { ended = true; setStatus(frame.status); }
      if (wasFollowing) log.scrollTop = log.scrollHeight;
    },
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
