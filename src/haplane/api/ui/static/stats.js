// Live stats: request rate, errors and response time per backend and server, from HAProxy's show stat,
// streamed over SSE and drawn as SVG charts (no library).
(function () {
  "use strict";
  var el = hp.el;
  var NS = "http://www.w3.org/2000/svg";
  var WINDOW = 180; // seconds shown
  var W = 300, H = 90;
  var COLORS = ["#2456c9", "#1f9d55", "#d98e04", "#d64545", "#7b4fc9", "#0f8b8d", "#c94f9b", "#6b7385"];
  var METRICS = [["req", 1, "requests/s"], ["err", 2, "errors/s"], ["rtime", 3, "response ms"]];
  var series = {}; // "proxy/name" -> [[t, req, err, rtime, scur], ...]
  var labels = {}; // "backend/slot" -> instance id
  var now = 0;
  var dirty = false;

  function svg(tag, attrs) {
    var e = document.createElementNS(NS, tag);
    Object.keys(attrs || {}).forEach(function (k) { e.setAttribute(k, attrs[k]); });
    return e;
  }

  function add(key, point) {
    var s = series[key] || (series[key] = []);
    if (s.length && s[s.length - 1][0] >= point[0]) return;
    s.push(point);
    now = Math.max(now, point[0]);
    while (s.length && s[0][0] < now - WINDOW) s.shift();
  }

  function active(points) {
    return points.some(function (p) { return p[1] > 0 || p[2] > 0 || p[4] > 0; });
  }

  function fmt(v) { return v >= 100 ? Math.round(v) : Math.round(v * 10) / 10; }

  function chart(proxy, metric, lines) {
    var idx = metric[1];
    var max = 0;
    lines.forEach(function (l) { l.points.forEach(function (p) { if (p[idx] > max) max = p[idx]; }); });
    var top = max > 0 ? max * 1.15 : 1;
    var box = svg("svg", { viewBox: "0 0 " + W + " " + H, preserveAspectRatio: "none", "data-proxy": proxy, "data-metric": metric[0] });
    for (var g = 1; g < 4; g++) box.appendChild(svg("line", { x1: 0, x2: W, y1: H * g / 4, y2: H * g / 4, stroke: "#edf0f4", "stroke-width": 1 }));
    // the x axis spans the data there is, up to WINDOW seconds: a fresh page fills its charts at once
    var oldest = now;
    lines.forEach(function (l) { if (l.points.length && l.points[0][0] < oldest) oldest = l.points[0][0]; });
    var t0 = Math.max(now - WINDOW, oldest), span = Math.max(now - t0, 10);
    lines.forEach(function (l) {
      var pts = l.points.map(function (p) {
        var x = ((p[0] - t0) / span) * W;
        var y = H - (p[idx] / top) * (H - 4) - 2;
        return x.toFixed(1) + "," + y.toFixed(1);
      });
      var last = l.points.length ? l.points[l.points.length - 1][idx] : 0;
      box.appendChild(svg("polyline", {
        points: pts.join(" "), fill: "none", stroke: l.color, "stroke-width": l.total ? 2 : 1.2,
        "data-series": l.key, "data-last": last, "data-count": pts.length, "vector-effect": "non-scaling-stroke",
      }));
    });
    var total = lines.filter(function (l) { return l.total; })[0];
    var lastTotal = total && total.points.length ? total.points[total.points.length - 1][idx] : 0;
    return el("div", { class: "chart" },
      el("div", { class: "title" }, el("span", null, metric[2] + ": " + fmt(lastTotal)), el("span", null, "max " + fmt(max))), box);
  }

  function draw() {
    dirty = false;
    var box = document.getElementById("charts");
    var perServer = document.getElementById("servers").checked;
    var q = document.getElementById("search").value.trim().toLowerCase();
    var proxies = {};
    Object.keys(series).forEach(function (key) {
      var i = key.lastIndexOf("/");
      var proxy = key.slice(0, i), name = key.slice(i + 1);
      (proxies[proxy] = proxies[proxy] || []).push(name);
    });
    var frag = document.createDocumentFragment();
    Object.keys(proxies).sort().forEach(function (proxy) {
      if (q && proxy.toLowerCase().indexOf(q) < 0) return;
      var names = proxies[proxy];
      var totalName = names.indexOf("BACKEND") >= 0 ? "BACKEND" : names.indexOf("FRONTEND") >= 0 ? "FRONTEND" : null;
      if (!totalName) return;
      var lines = [{ key: proxy + "/" + totalName, points: series[proxy + "/" + totalName], color: "#151b28", total: true, label: totalName === "BACKEND" ? "backend" : "frontend" }];
      if (perServer) {
        var c = 0;
        names.filter(function (n) { return n !== "BACKEND" && n !== "FRONTEND"; }).sort().forEach(function (n) {
          var pts = series[proxy + "/" + n];
          if (!active(pts)) return; // free slots and idle servers stay out of the way
          var inst = labels[proxy + "/" + n];
          lines.push({ key: proxy + "/" + n, points: pts, color: COLORS[c++ % COLORS.length], total: false, label: n + (inst ? " (" + inst + ")" : "") });
        });
      }
      var card = el("section", { class: "chart-card", "data-proxy": proxy },
        el("h3", null, proxy, " ", el("span", { class: "badge" }, totalName === "BACKEND" ? "backend" : "frontend")),
        el("div", { class: "chart-row" }, METRICS.map(function (m) { return chart(proxy, m, lines); })),
        el("div", { class: "legend" }, lines.map(function (l) {
          var sw = svg("svg", { width: 12, height: 4 }); sw.appendChild(svg("rect", { width: 12, height: 4, fill: l.color }));
          return el("span", null, sw, " " + l.label);
        })));
      frag.appendChild(card);
    });
    box.replaceChildren(frag);
    document.getElementById("window").textContent = "last " + WINDOW + " s · updated " + (now ? hp.time(now).slice(11, 19) : "—");
  }

  function refreshLabels() {
    hp.get("/ui/api/overview").then(function (d) {
      labels = {};
      d.backends.forEach(function (be) { be.servers.forEach(function (s) { if (s.instance) labels[be.name + "/" + s.name] = s.instance; }); });
    }).catch(function () {});
  }

  function load(hist) {
    Object.keys(hist).forEach(function (k) { hist[k].forEach(function (p) { add(k, p); }); });
  }

  document.addEventListener("DOMContentLoaded", function () {
    document.getElementById("search").addEventListener("input", draw);
    document.getElementById("servers").addEventListener("change", draw);
    hp.whoami().then(function () { refreshLabels(); return hp.get("/ui/api/stats"); }).then(function (d) {
      if (!d.live) { document.getElementById("nolive").hidden = false; return; }
      load(d.series);
      draw();
      setInterval(refreshLabels, 5000);
      setInterval(function () { if (dirty) draw(); }, 1000);
      hp.stream("/ui/api/stream/stats", {
        history: function (m) { load(m.series); dirty = true; },
        tick: function (m) { Object.keys(m.points).forEach(function (k) { add(k, m.points[k]); }); dirty = true; },
      });
    }).catch(function (e) { hp.toast(e.message, true); });
  });
})();
