// Live charts per backend (busiest first): requests and errors a second, response time, sessions; the last
// 5, 15 or 60 minutes; per instance lines named by instance, never by HAProxy's slot.
(function () {
  "use strict";
  var el = hp.el;
  var PAGE = 12; // backends drawn per page
  var series = {}; // "proxy/name" -> [[t, req, err, rtime, scur], ...] of the proxies on this page
  var order = []; // [{proxy, kind, busy}] of this page, busiest first (the API ranks every proxy)
  var shown = {}; // proxy -> true for those on this page
  var pages = 1, total = 0;
  var names = {}; // "backend/slot" -> [service, instance]
  var windowSec = 300;
  var page = 0;
  var dirty = false;

  function add(key, point) {
    var s = series[key] || (series[key] = []);
    if (s.length && s[s.length - 1][0] >= point[0]) return;
    s.push(point);
    var now = point[0];
    while (s.length && s[0][0] < now - windowSec) s.shift();
  }



  function col(points, idx) { return points.map(function (p) { return [p[0], p[idx]]; }); }



  function draw() {
    dirty = false;
    var box = document.getElementById("charts");
    var perInstance = document.getElementById("servers").checked;
    var now = Date.now() / 1000;
    var keep = {};
    order.forEach(function (o) {
      var proxy = o.proxy, kind = o.kind;
      var total = series[proxy + "/" + (kind === "backend" ? "BACKEND" : "FRONTEND")] || [];
      var card = box.querySelector('section.chart-card[data-proxy="' + CSS.escape(proxy) + '"]');
      if (!card) {
        card = el("section", { class: "chart-card", "data-proxy": proxy },
          el("h3", null, proxy, " ", el("span", { class: "badge" }, kind), " ", el("span", { class: "badge muted figures" })),
          el("div", { class: "chart-row" },
            el("div", null, el("div", { class: "chart-title" }, "Requests and errors"), el("div", { class: "chart", "data-metric": "req" })),
            el("div", null, el("div", { class: "chart-title" }, "Response time (HAProxy's average)"), el("div", { class: "chart", "data-metric": "rtime" })),
            el("div", null, el("div", { class: "chart-title" }, "Sessions"), el("div", { class: "chart", "data-metric": "scur" }))));
      }
      keep[proxy] = card;
      var label = kind === "backend" ? "all servers" : "frontend";
      var req = [{ label: label + " req/s", color: "#151b28", width: 2, points: col(total, 1) },
                 { label: "errors", color: "#d64545", width: 1.5, points: col(total, 2) }];
      var rtime = [{ label: label, color: "#151b28", width: 2, points: col(total, 3) }];
      var scur = [{ label: label, color: "#151b28", width: 2, points: col(total, 4) }];
      if (perInstance && kind === "backend") {
        var k = 0;
        Object.keys(series).filter(function (key) { return key.lastIndexOf(proxy + "/", 0) === 0 && key !== proxy + "/BACKEND"; }).sort().forEach(function (key) {
          var named = names[key];
          if (!named) return; // a slot nobody holds now
          var pts = series[key], color = hp.COLORS[k++ % hp.COLORS.length];
          req.push({ label: named[1], color: color, points: col(pts, 1) });
          rtime.push({ label: named[1], color: color, points: col(pts, 3) });
          scur.push({ label: named[1], color: color, points: col(pts, 4) });
        });
      }
      var lastReq = total.length ? total[total.length - 1] : null;
      card.querySelector(".figures").textContent = lastReq ? hp.fmt(lastReq[1], "req/s") + " · " + hp.fmt(lastReq[3], "ms") : "no data";
      hp.chart(card.querySelector('.chart[data-metric="req"]'), { title: "requests", unit: "req/s", lines: req, window: windowSec });
      hp.chart(card.querySelector('.chart[data-metric="rtime"]'), { title: "response time", unit: "ms", lines: rtime, window: windowSec });
      hp.chart(card.querySelector('.chart[data-metric="scur"]'), { title: "sessions", unit: "sessions", lines: scur, window: windowSec });
    });
    box.querySelectorAll("section.chart-card").forEach(function (card) { if (!keep[card.dataset.proxy]) card.remove(); });
    order.forEach(function (o) { box.appendChild(keep[o.proxy]); }); // busiest first
    var pager = document.getElementById("pager");
    pager.replaceChildren(
      el("button", { type: "button", disabled: page === 0 || null, onclick: function () { page--; fetchWindow(); } }, "‹ busier"),
      el("span", { class: "muted" }, " page " + (page + 1) + " of " + pages + " · " + total + (total === 1 ? " chart " : " charts ")),
      el("button", { type: "button", disabled: page >= pages - 1 || null, onclick: function () { page++; fetchWindow(); } }, "quieter ›"));
    document.getElementById("window").textContent = "last " + windowSec / 60 + " min · updated " + hp.time(now).slice(11, 19);
  }

  function load(hist) {
    Object.keys(hist).forEach(function (k) { hist[k].forEach(function (p) { add(k, p); }); });
  }

  function fetchWindow() {
    var q = encodeURIComponent(document.getElementById("search").value.trim());
    var idle = document.getElementById("idle").checked ? 1 : 0;
    return hp.get("/ui/api/stats?window=" + windowSec + "&page=" + page + "&per_page=" + PAGE + "&q=" + q + "&idle=" + idle).then(function (d) {
      if (!d.live) { document.getElementById("nolive").hidden = false; return d; }
      series = {};
      names = d.names || {};
      order = d.order || [];
      page = d.page || 0; pages = d.pages || 1; total = d.total || 0;
      shown = {};
      order.forEach(function (o) { shown[o.proxy] = true; });
      load(d.series);
      draw();
      return d;
    });
  }

  function setWindow(sec) {
    windowSec = sec;
    document.querySelectorAll("#windows button").forEach(function (b) { b.classList.toggle("active", Number(b.dataset.window) === sec); });
    fetchWindow();
  }

  document.addEventListener("DOMContentLoaded", function () {
    document.getElementById("search").addEventListener("input", function () { page = 0; fetchWindow(); });
    document.getElementById("servers").addEventListener("change", function () { document.getElementById("charts").replaceChildren(); draw(); });
    document.getElementById("idle").addEventListener("change", function () { page = 0; fetchWindow(); });
    document.querySelectorAll("#windows button").forEach(function (b) {
      b.addEventListener("click", function () { setWindow(Number(b.dataset.window)); });
    });
    window.addEventListener("resize", function () { document.getElementById("charts").replaceChildren(); draw(); });
    hp.whoami().then(fetchWindow).then(function (d) {
      if (!d || !d.live) return;
      setInterval(function () { if (dirty) draw(); }, 1000);
      // the order (busiest first) and the longer windows' coarse points are fetched again every 10 s; five
      // minutes also follow the live stream in between
      setInterval(fetchWindow, 10000);
      hp.stream("/ui/api/stream/stats", {
        history: function () {},
        tick: function (m) {
          if (windowSec !== 300) return;
          Object.keys(m.points).forEach(function (k) { if (shown[k.slice(0, k.lastIndexOf("/"))]) add(k, m.points[k]); });
          dirty = true;
        },
      });
    }).catch(function (e) { hp.toast(e.message, true); });
  });
})();
