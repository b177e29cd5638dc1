// The function page's live parts: uPlot charts fed by series.json, log following,
// and refreshing the plots and the history after a Test invoke. Everything else
// is plain HTML (readable without JavaScript).
(function () {
  "use strict";
  var holder = document.querySelector(".plots");
  if (!holder) return;
  var source = holder.dataset.series;
  var range = holder.dataset.range || "1h";
  // The charts by id, for the browser tests too (window.emberPlots["plot-calls"].data).
  var plots = (window.emberPlots = {});
  var COLORS = { invocations: "#2b6cb0", errors: "#c53030", throttles: "#b7791f",
                 p50: "#2f855a", p99: "#805ad5", concurrency: "#2c7a7b" };

  function line(label, color) {
    return { label: label, stroke: color, width: 1.5, spanGaps: false };
  }

  var charts = {
    "plot-calls": { columns: [1, 2, 3], series: [
      line("Invocations", COLORS.invocations), line("Errors", COLORS.errors),
      line("Throttles", COLORS.throttles)] },
    "plot-duration": { columns: [4, 5], series: [
      line("p50 ms", COLORS.p50), line("p99 ms", COLORS.p99)] },
    "plot-concurrency": { columns: [6], series: [line("Concurrent", COLORS.concurrency)] },
  };

  function draw(data) {
    Object.keys(charts).forEach(function (id) {
      var chart = charts[id];
      var columns = [data[0]].concat(chart.columns.map(function (i) { return data[i]; }));
      if (plots[id]) { plots[id].setData(columns); return; }
      var element = document.getElementById(id);
      var options = {
        width: Math.max(280, element.clientWidth || 420), height: 180,
        series: [{}].concat(chart.series),
        axes: [{}, { size: 50 }],
        scales: { x: { time: true } },
      };
      plots[id] = new uPlot(options, columns, element);
    });
  }

  function load() {
    return fetch(source + "?range=" + range, { credentials: "same-origin" })
      .then(function (response) { return response.json(); })
      .then(function (body) { draw(body.data); });
  }

  document.querySelectorAll("[data-range]").forEach(function (link) {
    if (link === holder) return;
    link.addEventListener("click", function (event) {
      event.preventDefault();
      range = link.dataset.range;
      load();
    });
  });

  // Follow: polling stops while unchecked; new lines keep the view at the bottom.
  var follow = document.getElementById("follow");
  var lines = document.getElementById("log-lines");
  document.body.addEventListener("htmx:beforeRequest", function (event) {
    if (event.target.classList.contains("poll") && follow && !follow.checked) event.preventDefault();
  });
  document.body.addEventListener("htmx:afterSwap", function (event) {
    if (lines && follow && follow.checked) lines.scrollTop = lines.scrollHeight;
    if (event.target.id === "test-result" || event.detail.target.id === "test-result") {
      load();
      htmx.ajax("GET", location.pathname, { target: "#history", select: "#history", swap: "outerHTML" });
    }
  });

  if (lines) lines.scrollTop = lines.scrollHeight;
  load();
  setInterval(load, 15000);
})();
