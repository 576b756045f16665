// A generation job's page: progress follows the `generation:<id>` channel of /api/v1/ws (done
// / total, tokens, cost, rate, ETA); the chart of items/s, tokens and cost over time is fetched
// again from the job's timeline (at most once a second while events come), and so are the
// items (first page only: a later page the user is reading does not move under them).
"use strict";

(function () {
  const root = document.getElementById("generation");
  if (!root) return;
  const jobId = root.dataset.generationId;
  const progress = root.querySelector('[data-testid="progress"]');
  const status = root.querySelector('[data-testid="generation-status"]');
  const errorBox = root.querySelector('[data-testid="generation-error"]');
  const chartBox = root.querySelector('[data-testid="rate-chart"]');
  const items = document.getElementById("items");
  const FINISHED = new Set(["succeeded", "failed", "budget_exceeded", "cancelled"]);
  let finished = FINISHED.has(root.dataset.status);
  let chart = null;
  // The y scales start at 0: a rate that halves must look halved.
  const FROM_ZERO = (u, min, max) => [0, max > 0 ? max * 1.1 : 1];
  // Time steps of the x axis: whole seconds and up (a short job must not get ":03.250" ticks).
  const WHOLE_SECONDS = [1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400];

  const field = (name) => progress.querySelector(`[data-role="${name}"]`);
  function duration(seconds) {
    if (seconds == null) return "—";
    const s = Math.round(seconds);
    if (s < 60) return s + " s";
    if (s < 3600) return Math.floor(s / 60) + " min " + (s % 60) + " s";
    return Math.floor(s / 3600) + " h " + Math.floor((s % 3600) / 60) + " min";
  }

  function show(event) {
    if (FINISHED.has(status.textContent) && !FINISHED.has(event.status)) return; // stale
    status.textContent = event.status;
    status.className = "status status-" + event.status;
    root.dataset.status = event.status;
    field("done").textContent = event.done;
    field("total").textContent = event.total;
    field("failed").textContent = event.failed;
    field("tokens_in").textContent = event.tokens_in;
    field("tokens_out").textContent = event.tokens_out;
    field("cost").textContent = event.cost_usd;
    const bar = field("bar");
    bar.max = Math.max(1, event.total);
    bar.value = event.done + event.failed;
    if (FINISHED.has(event.status)) {
      finished = true;
      field("rate").textContent = "—";
      field("eta").textContent = "finished";
      const cancel = root.querySelector('[data-testid="cancel-generation"]');
      if (cancel) cancel.remove();
    } else {
      field("rate").textContent = event.items_per_s ? event.items_per_s.toFixed(2) : "—";
      field("eta").textContent = duration(event.eta_s);
    }
    if (event.error) { errorBox.textContent = event.error; errorBox.hidden = false; }
  }

  // --- the timeline chart -------------------------------------------------------------------
  function columns(timeline) {
    const t = [], rate = [], tokens = [], cost = [];
    for (const b of timeline.buckets) {
      t.push(Date.parse(b.at) / 1000);
      rate.push(b.items_per_s);
      tokens.push(b.tokens_in + b.tokens_out);
      cost.push(Number(b.cost_usd));
    }
    return [t, rate, tokens, cost];
  }

  async function drawTimeline() {
    if (!window.uPlot) return;
    const response = await fetch(chartBox.dataset.timeline, { credentials: "same-origin" });
    if (!response.ok || response.redirected) return;
    const data = columns(await response.json());
    if (chart) { chart.setData(data); return; }
    chart = window.launchdeckChart(
      chartBox,
      (c) => ({
        scales: { x: { time: true }, rate: { range: FROM_ZERO }, tokens: { range: FROM_ZERO }, usd: { range: FROM_ZERO } },
        axes: [
          window.launchdeckAxis(c, { incrs: WHOLE_SECONDS }),
          window.launchdeckAxis(c, { scale: "rate", label: "items/s", size: 50 }),
          window.launchdeckAxis(c, { scale: "tokens", label: "tokens", side: 1, size: 60, grid: { show: false } }),
        ],
        series: [
          {},
          { label: "Items/s", scale: "rate", stroke: c.accent, width: 2, value: (u, v) => (v == null ? "—" : v.toFixed(2)) },
          { label: "Tokens", scale: "tokens", stroke: c.ok, width: 2 },
          { label: "Cost", scale: "usd", stroke: c.warn, width: 2, dash: [6, 4], value: (u, v) => (v == null ? "—" : "$" + v) },
        ],
      }),
      data,
    );
  }

  async function refreshItems() {
    const response = await fetch(items.dataset.fragment, { credentials: "same-origin", headers: { Accept: "text/html" } });
    if (response.ok && !response.redirected) items.innerHTML = await response.text();
  }

  // At most one refresh a second while events come, and a last one when the job has finished.
  let timer = null;
  let last = 0;
  function refreshSoon() {
    if (timer) return;
    const wait = Math.max(0, 1000 - (Date.now() - last));
    timer = setTimeout(async () => {
      timer = null;
      last = Date.now();
      await Promise.all([drawTimeline(), root.dataset.cursor ? null : refreshItems()]);
    }, wait);
  }

  drawTimeline();
  if (finished) return; // nothing will move

  window.launchdeckSocket(
    () => "/api/v1/ws",
    (ws) => ws.send(JSON.stringify({ type: "subscribe", channel: "generation:" + jobId })),
    (frame) => {
      if (frame.type !== "event" || frame.kind !== "generation" || !frame.event) return;
      show(frame.event);
      refreshSoon();
    },
    () => finished,
  );
})();
