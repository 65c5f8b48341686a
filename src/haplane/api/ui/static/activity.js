// Activity: every change with its time, reason, result and effect (runtime commands, or a reload with its
// config diff and haproxy -c's verdict); filterable by service, kind and result; live.
(function () {
  "use strict";
  var el = hp.el;
  var KINDS = ["server-add", "server-remove", "server-update", "weight-ramp", "server-drain", "server-state",
    "map-update", "reload", "reload-failed", "reload-held", "check-failed", "quarantine", "release", "restart"];
  var records = [];
  var lastSeq = 0;
  var services = {};

  function serviceOf(r) {
    var s = r.subject;
    var prefixes = ["service:", "backend:", "frontend:"];
    for (var i = 0; i < prefixes.length; i++) if (s.indexOf(prefixes[i]) === 0) return s.slice(prefixes[i].length);
    return s.split("/")[0];
  }

  function diffBlock(diff) {
    var pre = el("pre", { class: "diff" });
    diff.split("\n").forEach(function (line) {
      var cls = line[0] === "+" && line.slice(0, 3) !== "+++" ? "add" : line[0] === "-" && line.slice(0, 3) !== "---" ? "del" : line.slice(0, 2) === "@@" ? "hunk" : null;
      pre.appendChild(el("span", { class: cls }, line + "\n"));
    });
    return pre;
  }

  function effect(r) {
    var d = r.detail || {};
    var out = [];
    if (d.command) {
      out.push(el("code", { class: "command" }, d.command));
      if (d.answer) out.push(el("div", { class: "result failed" }, "HAProxy: " + d.answer));
    }
    if (r.kind === "reload" || r.kind === "reload-failed") {
      var verdict = d.check ? "haproxy -c: " + d.check : r.kind === "reload-failed" ? "reload failed" : "";
      if (d.error) out.push(el("div", { class: "result failed" }, d.error));
      if (d.diff) {
        var n = d.diff.split("\n").filter(function (l) { return (l[0] === "+" || l[0] === "-") && l.slice(0, 3) !== "+++" && l.slice(0, 3) !== "---"; }).length;
        out.push(el("details", { class: "reload" }, el("summary", null, "config diff (" + n + " lines changed)" + (verdict ? " · " + verdict : "")), diffBlock(d.diff)));
      } else if (verdict) out.push(el("span", null, verdict));
      if (d.timings_ms) out.push(el("div", { class: "muted" }, Object.keys(d.timings_ms).map(function (k) { return k + " " + d.timings_ms[k] + " ms"; }).join(" · ")));
    }
    if (d.messages && d.messages.length) {
      out.push(el("details", null, el("summary", null, "haproxy -c: " + d.messages.length + " message(s)"),
        el("pre", { class: "diff" }, d.messages.join("\n"))));
    }
    if (!out.length && d.instance) out.push(el("span", { class: "muted" }, "instance " + d.instance + (d.address ? " at " + d.address : "")));
    return out;
  }

  function row(r) {
    return el("tr", { "data-seq": r.seq, "data-kind": r.kind, "data-service": serviceOf(r), "data-result": r.result },
      el("td", { class: "time" }, hp.time(r.time)), el("td", null, el("span", { class: "badge" }, r.kind)),
      el("td", null, el("code", null, r.subject)), el("td", null, r.reason),
      el("td", null, el("span", { class: "result " + r.result }, r.result)), el("td", { class: "effect" }, effect(r)));
  }

  function matches(tr) {
    var svc = document.getElementById("f-service").value.trim();
    var kind = document.getElementById("f-kind").value;
    var result = document.getElementById("f-result").value;
    return (!svc || tr.dataset.service === svc) && (!kind || tr.dataset.kind === kind) && (!result || tr.dataset.result === result);
  }

  function applyFilters() {
    var shown = 0;
    var rows = document.querySelectorAll("#activity tbody tr");
    rows.forEach(function (tr) { var ok = matches(tr); tr.classList.toggle("hidden", !ok); if (ok) shown++; });
    document.getElementById("count").textContent = shown + " of " + rows.length + " changes";
  }

  function add(r, prepend) {
    if (r.seq <= lastSeq && prepend) return;
    lastSeq = Math.max(lastSeq, r.seq);
    records.push(r);
    var svc = serviceOf(r);
    if (!services[svc]) {
      services[svc] = true;
      document.getElementById("services").appendChild(el("option", { value: svc }));
    }
    var tr = row(r);
    tr.classList.toggle("hidden", !matches(tr));
    var tbody = document.querySelector("#activity tbody");
    if (prepend) tbody.insertBefore(tr, tbody.firstChild); else tbody.appendChild(tr);
  }

  document.addEventListener("DOMContentLoaded", function () {
    var kind = document.getElementById("f-kind");
    KINDS.forEach(function (k) { kind.appendChild(el("option", { value: k }, k)); });
    var params = new URLSearchParams(location.search);
    ["service", "kind", "result"].forEach(function (k) { if (params.get(k)) document.getElementById("f-" + k).value = params.get(k); });
    ["f-service", "f-kind", "f-result"].forEach(function (id) {
      document.getElementById(id).addEventListener("input", applyFilters);
    });
    hp.whoami().then(function () { return hp.get("/ui/api/activity?limit=1000"); }).then(function (d) {
      if (!d.agent) {
        document.querySelector("#activity tbody").appendChild(el("tr", null, el("td", { colspan: 6, class: "muted" },
          "No agent runs in this process (haplane serve): each agent's activity is on its own node — haplane events " +
          "--state-dir there, or the UI of haplane up.")));
        document.getElementById("live").textContent = "";
        return;
      }
      d.records.slice().reverse().forEach(function (r) { add(r, false); });
      lastSeq = d.records.length ? d.records[d.records.length - 1].seq : 0;
      applyFilters();
      hp.stream("/ui/api/stream/activity?since=" + lastSeq, {
        activity: function (r) { add(r, true); applyFilters(); },
      });
    }).catch(function (e) { hp.toast(e.message, true); });
  });
})();
