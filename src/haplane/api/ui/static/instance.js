// One instance: its record, the slots it holds with HAProxy's view, its traffic, and the history of what the
// agent did to it (added, weights ramped or set, drained, maint), newest first.
(function () {
  "use strict";
  var el = hp.el;
  var params = new URLSearchParams(location.search);
  var service = params.get("service") || "", iid = params.get("id") || "";
  var windowSec = 900;

  function text(v) { return v === null || v === undefined || v === "" ? "—" : String(v); }

  function col(points, idx) { return points.map(function (p) { return [p[0], p[idx]]; }); }

  function weights(history, d) {
    // the weight over time, as a step line from each recorded weight (ramps, operator's changes, adds)
    var pts = [];
    history.slice().sort(function (a, b) { return a.time - b.time; }).forEach(function (r) {
      var w = r.detail && r.detail.weight;
      if (r.kind === "server-state" && /drain/.test(r.reason + " " + JSON.stringify(r.detail || {}))) w = 0;
      if (typeof w === "number") {
        if (pts.length) pts.push([r.time - 0.001, pts[pts.length - 1][1]]);
        pts.push([r.time, w]);
      }
    });
    var now = Date.now() / 1000;
    var current = d.servers.length ? d.servers[0].weight : null;
    if (pts.length) pts.push([now, current === null ? pts[pts.length - 1][1] : current]);
    else if (current !== null) pts = [[now - windowSec, current], [now, current]];
    return pts;
  }

  function render(d) {
    var inst = d.instance;
    document.title = "haplane · " + service + "/" + iid;
    document.getElementById("title").textContent = "Instance " + iid + " of " + service;
    var facts = [["address", inst.address + (inst.port ? ":" + inst.port : "")], ["wanted state", inst.state],
      ["weight", inst.weight + (inst.weight_override !== null && inst.weight_override !== undefined ? " (pinned by an operator)" : "")],
      ["version", inst.version], ["zone", inst.zone], ["source", inst.source || "api"], ["revision", inst.revision]];
    document.getElementById("facts").replaceChildren.apply(document.getElementById("facts"), facts.map(function (f) {
      return el("span", { class: "badge" }, f[0] + ": " + text(f[1]));
    }));
    var tbody = document.querySelector("#servers tbody");
    tbody.replaceChildren.apply(tbody, d.servers.length ? d.servers.map(function (s) {
      var t = s.traffic || {};
      return el("tr", { "data-server": s.backend + "/" + s.name, "data-state": s.state },
        el("td", null, el("a", { href: "/ui/#" + s.backend }, s.backend)), el("td", { class: "muted" }, s.name),
        el("td", null, el("code", null, s.address)), el("td", null, el("span", { class: "state " + s.state }, s.state)),
        el("td", null, text(s.health)), el("td", { class: "weight" }, text(s.weight)), el("td", { class: "num" }, text(s.sessions)),
        el("td", { class: "num" }, s.traffic ? hp.fmt(t.req || 0) : "—"),
        el("td", { class: "num" }, t.p95 !== null && t.p95 !== undefined ? "p95 " + hp.fmt(t.p95, "ms") : t.rtime !== undefined && t.rtime !== null ? "avg " + hp.fmt(t.rtime, "ms") : "—"));
    }) : [el("tr", null, el("td", { colspan: 9, class: "muted" }, "not in HAProxy now (no slot holds it)"))]);
    var req = [], rtime = [], k = 0;
    Object.keys(d.series).sort().forEach(function (key) {
      var color = hp.COLORS[k++ % hp.COLORS.length], where = key.split("/")[0];
      req.push({ label: where + " req/s", color: color, width: 2, points: col(d.series[key], 1) });
      req.push({ label: where + " errors", color: "#d64545", points: col(d.series[key], 2) });
      rtime.push({ label: where, color: color, width: 2, points: col(d.series[key], 3) });
    });
    hp.chart(document.getElementById("c-req"), { title: "requests", unit: "req/s", lines: req, window: windowSec });
    hp.chart(document.getElementById("c-rtime"), { title: "response time", unit: "ms", lines: rtime, window: windowSec });
    hp.chart(document.getElementById("c-weight"), { title: "weight", unit: "weight", lines: [{ label: "weight", color: "#7b4fc9", width: 2, points: weights(d.history, d) }], window: windowSec });
    var hist = document.querySelector("#history tbody");
    var rows = d.history.slice().reverse().map(function (r) {
      return el("tr", { "data-kind": r.kind, "data-seq": r.seq },
        el("td", { class: "time" }, hp.time(r.time)), el("td", null, r.kind), el("td", null, el("code", null, r.subject)),
        el("td", null, r.reason), el("td", { class: "result " + r.result }, r.result));
    });
    hist.replaceChildren.apply(hist, rows.length ? rows : [el("tr", null, el("td", { colspan: 5, class: "muted" }, "no change recorded by this process's agent"))]);
  }

  function load() {
    return hp.get("/ui/api/instance/" + encodeURIComponent(service) + "/" + encodeURIComponent(iid) + "?window=" + windowSec)
      .then(function (d) { render(d); var live = document.getElementById("live"); live.textContent = "● live"; live.className = "live on"; })
      .catch(function (e) { hp.toast(e.message, true); });
  }

  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("#windows button").forEach(function (b) {
      b.addEventListener("click", function () {
        windowSec = Number(b.dataset.window);
        document.querySelectorAll("#windows button").forEach(function (x) { x.classList.toggle("active", x === b); });
        load();
      });
    });
    hp.whoami().then(load).then(function () { setInterval(load, 3000); });
  });
})();
