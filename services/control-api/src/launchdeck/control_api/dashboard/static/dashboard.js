// Launchdeck dashboard: what every page shares. Plain JavaScript, no build step.
"use strict";

// Forms that change something important ask first (`data-confirm`): inline handlers are not
// allowed by the page's Content-Security-Policy, so this listens for every form's submit.
document.addEventListener("submit", (event) => {
  const form = event.target;
  if (form instanceof HTMLFormElement && form.dataset.confirm && !window.confirm(form.dataset.confirm)) {
    event.preventDefault();
  }
});

// A WebSocket to this site's API (the HttpOnly session cookie authenticates it), opened again
// after a drop with a growing delay. `onOpen(ws)` runs on every (re)connection, `onFrame(frame)`
// for every JSON frame; `done()` returning true stops reconnecting.
window.launchdeckSocket = function (path, onOpen, onFrame, done) {
  let delay = 500;
  function connect() {
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    const ws = new WebSocket(scheme + "//" + location.host + path());
    ws.addEventListener("open", () => { delay = 500; onOpen(ws); });
    ws.addEventListener("message", (message) => {
      let frame;
      try { frame = JSON.parse(message.data); } catch (_) { return; }
      onFrame(frame);
    });
    ws.addEventListener("close", () => {
      if (done && done()) return;
      setTimeout(connect, delay);
      delay = Math.min(delay * 2, 10000);
    });
  }
  connect();
};

// A log line with ANSI SGR colours (build and app logs) appended to `into` as text and spans
// (`fg-31`, `bold`…); other escapes are dropped.
{
  const SGR = /\x1b\[([0-9;]*)m/g;
  const OTHER_ESCAPES = /\x1b\[[0-9;?]*[A-Za-ln-z]|\x1b\][^\x07]*\x07|\r/g;
  window.launchdeckAnsi = function (line, into) {
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
  };
}

// A log box (the build and apps pages): the search box hides the lines that do not match, the
// view follows the end until the user scrolls up, and "jump to end" follows it again.
window.launchdeckLogView = function (log, search, jump) {
  let follow = true;
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
  log.addEventListener("scroll", () => {
    follow = log.scrollTop + log.clientHeight >= log.scrollHeight - 8;
    jump.classList.toggle("attention", !follow);
  });
  jump.addEventListener("click", () => {
    follow = true;
    log.scrollTop = log.scrollHeight;
    jump.classList.remove("attention");
  });
  return {
    add(div) { matches(div); log.appendChild(div); },
    // Run `change` (it adds lines); the end stays in view if it was.
    update(change) {
      const wasFollowing = follow;
      change();
      if (wasFollowing) log.scrollTop = log.scrollHeight;
    },
  };
};
