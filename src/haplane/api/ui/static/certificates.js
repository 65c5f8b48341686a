// Certificates: what HAProxy serves for which hosts, who issued it, how many days are left (14 or fewer: a
// warning), where it came from (the API, ACME, a watched directory); and the last ACME order of each.
(function () {
  "use strict";
  var el = hp.el;
  var WARN_DAYS = 14;

  function when(ts) { return ts ? new Date(ts * 1000).toISOString().replace("T", " ").slice(0, 16) + "Z" : ""; }

  function render(certs, orders) {
    var body = document.querySelector("#certificates tbody");
    body.textContent = "";
    certs.forEach(function (c) {
      var left = c.days_left;
      var cls = left <= 0 ? "bad" : left <= WARN_DAYS ? "warn" : null;
      body.appendChild(el("tr", { class: cls, "data-name": c.name },
        el("td", { text: c.name }), el("td", { text: c.hosts.join(", ") }), el("td", { text: c.issuer }),
        el("td", { class: "num", text: left <= 0 ? "expired" : String(left) }), el("td", { text: when(c.not_after) }),
        el("td", { text: c.source }), el("td", { class: "mono", text: c.serial })));
    });
    document.getElementById("count").textContent = certs.length + " certificate" + (certs.length === 1 ? "" : "s");
    var ob = document.querySelector("#orders tbody");
    ob.textContent = "";
    if (!orders.length) ob.appendChild(el("tr", null, el("td", { colspan: 7, class: "muted", text: "no ACME order yet" })));
    orders.forEach(function (o) {
      ob.appendChild(el("tr", { class: o.result === "failed" ? "bad" : null },
        el("td", { text: o.name }), el("td", { text: o.hosts.join(", ") }), el("td", { text: o.result }),
        el("td", { text: when(o.at) }), el("td", { class: "num", text: String(o.failures) }),
        el("td", { text: o.result === "failed" ? when(o.next_attempt) : "" }), el("td", { text: o.error || "" })));
    });
  }

  function load() {
    return Promise.all([hp.get("/certificates"), hp.get("/acme/orders")]).then(function (r) { render(r[0], r[1]); });
  }

  hp.whoami().then(load).catch(function (e) { hp.toast(String(e), true); });
  setInterval(function () { load().catch(function () {}); }, 10000);
})();
