// Live charts per backend (busiest first): requests and errors a second, response time, sessions; the last
// 5, 15 or 60 minutes; per instance lines named by instance, never by HAProxy's slot.
(function () {
  "use strict";
  var el = hp.el;
  var PAGE = 12; // backends drawn per page
  var series = {}; // "proxy/name" -> [[t, req, err, rtime, scur], ...]
  var names = {}; // "backend/slot" -> [service, instance]
  var windowSec = 300;
  var page = 0;
  var dirty = false;
  var refetch = null;

  function add(key, point) {
    var s = series[key] || (series[key] = []);
    if (s.length && s[s.length - 1][0] >= point[0]) return;
    s.push(point);
    var now = point[0];
    while (s.length && s[0][0] < now - windowSec) s.shift();
  }

  function sum(points, idx, since) {
    var t = 0;
    points.forEach(function (p) { if (p[0] >= since) t += p[idx]; });
    return t;
  }

  function col(points, idx) { return points.map(function (p) { return [p[0], p[idx]]; }); }

  function proxies() {
    var out = {};
    Object.keys(series).forEach(function (key) {
      var i = key.lastIndexOf("/");
      var proxy = key.slice(0, i), name = key.slice(i + 1);
      (out[proxy] = out[proxy] || []).push(name);
    });
    return out;
  }

  function draw() {
    dirty = false;
    var box = document.getElementById("charts");
    var perInstance = document.getElementById("servers").checked;
    var showIdle = document.getElementById("idle").checked;
    var q = document.getElementById("search").value.trim().toLowerCase();
    var now = Date.now() / 1000;
    var all = proxies();
    var cards = [];
    Object.keys(all).forEach(function (proxy) {
      var ns = all[proxy];
      var totalName = ns.indexOf("BACKEND") >= 0 ? "BACKEND" : ns.indexOf("FRONTEND") >= 0 ? "FRONTEND" : null;
      if (!totalName) return;
      if (q && proxy.toLowerCase().indexOf(q) < 0) return;
      var total = series[proxy + "/" + totalName];
      var busy = sum(total, 1, now - 60) + sum(total, 4, now - 60) * 0.01;
      if (!showIdle && busy === 0) return;
      cards.push({ proxy: proxy, kind: totalName === "BACKEND" ? "backend" : "frontend", total: total, names: ns, busy: busy });
    });
    // busiest first (requests and sessions of the last minute)
    cards.sort(function (a, b) {
      if (a.kind !== b.kind) return a.kind === "backend" ? -1 : 1; // backends, then the frontends' totals
      return b.busy - a.busy || a.proxy.localeCompare(b.proxy);
    });
    var pages = Math.max(1, Math.ceil(cards.length / PAGE));
    if (page >= pages) page = pages - 1;
    var shown = cards.slice(page * PAGE, page * PAGE + PAGE);
    var keep = {};
    shown.forEach(function (c) {
      var card = box.querySelector('section.chart-card[data-proxy="' + CSS.escape(c.proxy) + '"]');
      if (!card) {
        card = el("section", { class: "chart-card", "data-proxy": c.proxy },
          el("h3", null, c.proxy, " ", el("span", { class: "badge" }, c.kind), " ", el("span", { class: "badge muted figures" })),
          el("div", { class: "chart-row" },
            el("div", null, el("div", { class: "chart-title" }, "Requests and errors"), el("div", { class: "chart", "data-metric": "req" })),
            el("div", null, el("div", { class: "chart-title" }, "Response time (HAProxy's average)"), el("div", { class: "chart", "data-metric": "rtime" })),
            el("div", null, el("div", { class: "chart-title" }, "Sessions"), el("div", { class: "chart", "data-metric": "scur" }))));
      }
      keep[c.proxy] = card;
      var label = c.kind === "backend" ? "all servers" : "frontend";
      var req = [{ label: label + " req/s", color: "#151b28", width: 2, points: col(c.total, 1) },
                 { label: "errors", color: "#d64545", width: 1.5, points: col(c.total, 2) }];
      var rtime = [{ label: label, color: "#151b28", width: 2, points: col(c.total, 3) }];
      var scur = [{ label: label, color: "#151b28", width: 2, points: col(c.total, 4) }];
      if (perInstance && c.kind === "backend") {
        var k = 0;
        c.names.filter(function (n) { return n !== "BACKEND"; }).sort().forEach(function (n) {
          var key = c.proxy + "/" + n, named = names[key];
          if (!named) return; // a slot nobody holds now
          var pts = series[key], color = hp.COLORS[k++ % hp.COLORS.length];
          req.push({ label: named[1], color: color, points: col(pts, 1) });
          rtime.push({ label: named[1], color: color, points: col(pts, 3) });
          scur.push({ label: named[1], color: color, points: col(pts, 4) });
        });
      }
      var lastReq = c.total.length ? c.total[c.total.length - 1] : null;
      card.querySelector(".figures").textContent = lastReq ? hp.fmt(lastReq[1], "req/s") + " · " + hp.fmt(lastReq[3], "ms") : "no data";
      hp.chart(card.querySelector('.chart[data-metric="req"]'), { title: "requests", unit: "req/s", lines: req, window: windowSec });
      hp.chart(card.querySelector('.chart[data-metric="rtime"]'), { title: "response time", unit: "ms", lines: rtime, window: windowSec });
      hp.chart(card.querySelector('.chart[data-metric="scur"]'), { title: "sessions", unit: "sessions", lines: scur, window: windowSec });
    });
    box.querySelectorAll("section.chart-card").forEach(function (card) { if (!keep[card.dataset.proxy]) card.remove(); });
    shown.forEach(function (c) { box.appendChild(keep[c.proxy]); }); // in busy order
    var pager = document.getElementById("pager");
    pager.replaceChildren(
      el("button", { type: "button", disabled: page === 0 || null, onclick: function () { page--; draw(); } }, "‹ busier"),
      el("span", { class: "muted" }, " page " + (page + 1) + " of " + pages + " · " + cards.length + (cards.length === 1 ? " chart " : " charts ")),
      el("button", { type: "button", disabled: page >= pages - 1 || null, onclick: function () { page++; draw(); } }, "quieter ›"));
    document.getElementById("window").textContent = "last " + windowSec / 60 + " min · updated " + hp.time(now).slice(11, 19);
  }

  function load(hist) {
    Object.keys(hist).forEach(function (k) { hist[k].forEach(function (p) { add(k, p); }); });
  }

  function fetchWindow() {
    return hp.get("/ui/api/stats?window=" + windowSec).then(function (d) {
      if (!d.live) { document.getElementById("nolive").hidden = false; return d; }
      series = {};
      names = d.names || {};
      load(d.series);
      draw();
      return d;
    });
  }

  function setWindow(sec) {
    windowSec = sec;
    document.querySelectorAll("#windows button").forEach(function (b) { b.classList.toggle("active", Number(b.dataset.window) === sec); });
    fetchWindow();
    // five minutes follow the live stream; longer windows are coarse (10 s points) and refetched
    clearInterval(refetch);
    if (sec > 300) refetch = setInterval(fetchWindow, 10000);
  }

  document.addEventListener("DOMContentLoaded", function () {
    document.getElementById("search").addEventListener("input", function () { page = 0; draw(); });
    document.getElementById("servers").addEventListener("change", function () { document.getElementById("charts").replaceChildren(); draw(); });
    document.getElementById("idle").addEventListener("change", draw);
    document.querySelectorAll("#windows button").forEach(function (b) {
      b.addEventListener("click", function () { setWindow(Number(b.dataset.window)); });
    });
    window.addEventListener("resize", function () { document.getElementById("charts").replaceChildren(); draw(); });
    hp.whoami().then(fetchWindow).then(function (d) {
      if (!d || !d.live) return;
      setInterval(function () { if (dirty) draw(); }, 1000);
      setInterval(function () { hp.get("/ui/api/stats?series=0").then(function (x) { names = x.names || names; }).catch(function () {}); }, 15000);
      hp.stream("/ui/api/stream/stats", {
        history: function () {},
        tick: function (m) { if (windowSec !== 300) return; Object.keys(m.points).forEach(function (k) { add(k, m.points[k]); }); dirty = true; },
      });
    }).catch(function (e) { hp.toast(e.message, true); });
  });
})();
