// Charts of the generation pages, drawn with the vendored uPlot (static/vendor/uplot). Sized to
// their box and redrawn when it changes width; colours read from the page's CSS, so dark mode
// follows the system setting like the rest of the page.
"use strict";

window.launchdeckChart = function (box, makeOpts, data) {
  const style = getComputedStyle(document.body);
  const colours = {
    fg: style.color,
    grid: getComputedStyle(document.documentElement).getPropertyValue("--line").trim() || "#888",
    accent: getComputedStyle(document.documentElement).getPropertyValue("--accent").trim() || "#0550ae",
    ok: getComputedStyle(document.documentElement).getPropertyValue("--ok").trim() || "#116329",
    warn: getComputedStyle(document.documentElement).getPropertyValue("--warn").trim() || "#7d4e00",
  };
  const size = () => ({ width: Math.max(240, box.clientWidth), height: box.clientWidth < 500 ? 200 : 260 });
  const chart = new uPlot({ ...size(), ...makeOpts(colours) }, data, box);
  let width = box.clientWidth;
  new ResizeObserver(() => {
    if (box.clientWidth !== width) { width = box.clientWidth; chart.setSize(size()); }
  }).observe(box);
  return chart;
};

// An axis in the page's colours.
window.launchdeckAxis = function (colours, extra) {
  return { stroke: colours.fg, grid: { stroke: colours.grid, width: 1 }, ticks: { stroke: colours.grid }, ...extra };
};
