// angzarr bus console: refreshes the live figures and lag charts every 2 s
// from <base>/api/live, without reloading the page. No framework.
(function () {
  "use strict";
  var base = document.body.getAttribute("data-base") || "";
  var status = document.getElementById("live-status");
  function refresh() {
    fetch(base + "/api/live", { credentials: "same-origin", cache: "no-store" })
      .then(function (r) { if (!r.ok) { throw new Error(r.status); } return r.json(); })
      .then(function (data) {
        var values = data.values || {};
        document.querySelectorAll("[data-live]").forEach(function (el) {
          var v = values[el.getAttribute("data-live")];
          if (v !== undefined && el.textContent !== v) { el.textContent = v; }
        });
        var charts = data.charts || {};
        document.querySelectorAll("svg[data-chart]").forEach(function (svg) {
          var points = charts[svg.getAttribute("data-chart")];
          var line = svg.querySelector("polyline");
          if (points !== undefined && line) { line.setAttribute("points", points); }
        });
        if (status) {
          status.textContent = "live · " + new Date().toLocaleTimeString();
          status.classList.remove("stale");
          status.setAttribute("data-updates", String(Number(status.getAttribute("data-updates") || 0) + 1));
        }
      })
      .catch(function () { if (status) { status.textContent = "not updating"; status.classList.add("stale"); } });
  }
  if (document.querySelector("[data-live], svg[data-chart]")) {
    refresh();
    setInterval(refresh, 2000);
  }
})();
