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
