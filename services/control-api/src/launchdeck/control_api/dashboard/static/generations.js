// A project's generation jobs: the cost-per-day chart (bars), from the series the server put
// in the chart's `data-series` (the API's /generations/costs).
"use strict";

(function () {
  const box = document.querySelector('[data-testid="cost-chart"]');
  if (!box || !window.uPlot) return;
  const series = JSON.parse(box.dataset.series);
  const xs = series.days.map((d) => Date.parse(d + "T00:00:00Z") / 1000);
  window.launchdeckChart(
    box,
    (c) => ({
      // Half a day either side, so the first and last bars are drawn whole.
      scales: { x: { time: true, range: (u, min, max) => [min - 43200, max + 43200] } },
      axes: [
        window.launchdeckAxis(c),
        window.launchdeckAxis(c, { label: "USD", size: 60, values: (u, v) => v.map((n) => "$" + n) }),
        window.launchdeckAxis(c, { scale: "items", side: 1, label: "items", size: 50, grid: { show: false } }),
      ],
      series: [
        { label: "Day", value: (u, v) => (v == null ? "—" : new Date(v * 1000).toISOString().slice(0, 10)) },
        { label: "Cost", stroke: c.accent, fill: c.accent, value: (u, v) => (v == null ? "—" : "$" + v),
          paths: uPlot.paths.bars({ size: [0.7, 40] }), points: { show: false } },
        { label: "Items", stroke: c.ok, scale: "items", width: 2, points: { show: false } },
      ],
    }),
    [xs, series.cost, series.items],
  );
})();
