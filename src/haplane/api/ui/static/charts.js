// Charts of the haplane pages, drawn with uPlot (vendored from npm in static/vendor/uplot; no CDN, no build):
// a time axis in local time, a unit on the value axis, a tooltip under the cursor with every series' value.
(function () {
  "use strict";
  var hp = window.hp;
  var COLORS = ["#2456c9", "#1f9d55", "#d98e04", "#7b4fc9", "#0f8b8d", "#c94f9b", "#6b7385", "#8a5a00"];

  var fmt = hp.fmt;

  // a tooltip under the cursor: the time and each visible series' value, with its unit
  function tooltipPlugin(unit) {
    var tip;
    return {
      hooks: {
        init: function (u) {
          tip = document.createElement("div");
          tip.className = "u-tooltip";
          tip.style.display = "none";
          u.over.appendChild(tip);
          u.over.addEventListener("mouseleave", function () { tip.style.display = "none"; });
        },
        setCursor: function (u) {
          var i = u.cursor.idx;
          if (i === null || i === undefined) { tip.style.display = "none"; return; }
          var rows = [hp.time(u.data[0][i]).slice(11, 19)];
          for (var s = 1; s < u.series.length; s++) {
            if (!u.series[s].show) continue;
            rows.push(u.series[s].label + ": " + fmt(u.data[s][i], unit));
          }
          tip.textContent = "";
          rows.forEach(function (r, k) { var d = document.createElement("div"); if (k === 0) d.className = "t"; d.textContent = r; tip.appendChild(d); });
          tip.style.display = "block";
          var left = u.cursor.left, w = u.over.clientWidth;
          tip.style.left = (left > w / 2 ? left - tip.offsetWidth - 10 : left + 10) + "px";
          tip.style.top = Math.max(0, u.cursor.top - 10) + "px";
        },
      },
    };
  }

  // hp.chart(box, {title, unit, lines: [{label, color, width, points: [[t, v], ...]}], window: seconds})
  // draws (or redraws) a chart in box; box.dataset says what is drawn (for tests and for people with devtools).
  hp.chart = function (box, spec) {
    var lines = spec.lines.filter(function (l) { return l.points.length; });
    var tables = lines.map(function (l) { return [l.points.map(function (p) { return p[0]; }), l.points.map(function (p) { return p[1]; })]; });
    var data = tables.length ? uPlot.join(tables) : [[], []];
    if (!tables.length) lines = [{ label: spec.title, color: "#151b28", points: [] }];
    var now = Date.now() / 1000;
    var xmax = Math.max(now, data[0].length ? data[0][data[0].length - 1] : now);
    var xmin = xmax - (spec.window || 300);
    var key = lines.map(function (l) { return l.label; }).join("|") + "#" + box.clientWidth;
    var u = box._u;
    if (u && box._key === key) {
      u.setData(data, false);
      u.setScale("x", { min: xmin, max: xmax });
    } else {
      if (u) u.destroy();
      box.replaceChildren();
      var width = Math.max(240, box.clientWidth || 300);
      u = new uPlot({
        width: width, height: spec.height || 150,
        legend: { show: true, live: false },
        cursor: { drag: { x: false, y: false }, points: { size: 6 } },
        scales: { x: { time: true, min: xmin, max: xmax }, y: { range: function (self, min, max) { return [0, max > 0 ? max * 1.15 : 1]; } } },
        axes: [
          { stroke: "#6b7385", grid: { stroke: "#edf0f4" }, ticks: { stroke: "#dde1e8" }, space: 70 },
          { stroke: "#6b7385", grid: { stroke: "#edf0f4" }, ticks: { stroke: "#dde1e8" }, size: 56, label: spec.unit, labelSize: 14, labelGap: 2,
            values: function (self, ticks) { return ticks.map(function (t) { return fmt(t); }); } },
        ],
        series: [{ value: function (self, t) { return t === null ? "—" : hp.time(t).slice(11, 19); } }].concat(lines.map(function (l, i) {
          return { label: l.label, stroke: l.color || COLORS[i % COLORS.length], width: l.width || 1.5, points: { show: false },
                   value: function (self, v) { return fmt(v, spec.unit); } };
        })),
        plugins: [tooltipPlugin(spec.unit)],
      }, data, box);
      box._u = u;
      box._key = key;
      u.setScale("x", { min: xmin, max: xmax });
    }
    var first = lines[0];
    var last = first && first.points.length ? first.points[first.points.length - 1][1] : 0;
    box.dataset.points = String(data[0].length);
    box.dataset.last = String(last);
    box.dataset.series = lines.map(function (l) { return l.label; }).join("|");
    return u;
  };

  hp.COLORS = COLORS;
})();
