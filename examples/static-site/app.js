// A tiny client-side router: any path without a file of its own is answered by index.html
// (the edge's SPA fallback), and this script shows the matching view.
(function () {
  "use strict";

  function render(path) {
    var isHome = path === "/" || path === "/index.html";
    document.querySelector('[data-view="home"]').hidden = !isHome;
    document.querySelector('[data-view="client"]').hidden = isHome;
    document.getElementById("route-path").textContent = path;
  }

  document.addEventListener("click", function (event) {
    var link = event.target.closest("a[data-client-route]");
    if (!link) return;
    event.preventDefault();
    history.pushState({}, "", link.getAttribute("href"));
    render(location.pathname);
  });

  window.addEventListener("popstate", function () { render(location.pathname); });
  document.getElementById("host").textContent = location.host;
  render(location.pathname);
})();
