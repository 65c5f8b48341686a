// Overview: frontends → rules → backends → servers, live; actions (drain, weight, version) for writers.
(function () {
  "use strict";
  var el = hp.el;
  var doc = null;
  var pending = false;

  function text(v) { return v === null || v === undefined || v === "" ? "—" : String(v); }

  function stateBadge(s) {
    return el("span", { class: "state " + s.state, title: s.status ? "HAProxy: " + s.status : "desired: " + s.wanted }, s.state);
  }

  function weightCell(s) {
    if (s.weight === null || s.weight === undefined) return el("td", { class: "weight" }, text(s.target));
    if (s.weight !== s.target)
      return el("td", { class: "weight" }, String(s.weight), el("span", { class: "ramp", title: "ramping to its target" }, " → " + s.target));
    return el("td", { class: "weight" }, String(s.weight));
  }

  function act(promise, what) {
    promise.then(function () { hp.toast(what + ": saved in the registry; HAProxy follows"); })
      .catch(function (e) { hp.toast(what + ": " + e.message, true); });
  }

  function actions(be, s) {
    if (!hp.can("write") || !s.instance || !s.service) return el("td", { class: "actions" });
    var base = "/ui/api/instances/" + encodeURIComponent(s.service) + "/" + encodeURIComponent(s.instance);
    var td = el("td", { class: "actions" });
    function stateButton(label, state, cls) {
      return el("button", {
        type: "button", class: cls || null, "data-action": state, onclick: function () {
          act(hp.post(base + "/state", { state: state }), s.instance + " " + label.toLowerCase());
        },
      }, label);
    }
    if (s.wanted !== "drain") td.appendChild(stateButton("Drain", "drain"));
    if (s.wanted !== "ready") td.appendChild(stateButton("Ready", "ready"));
    if (s.wanted !== "maint") td.appendChild(stateButton("Maint", "maint", "danger"));
    var w = el("input", { type: "number", min: 0, max: 256, value: s.target, "aria-label": "weight", "data-weight": s.instance });
    td.appendChild(document.createTextNode(" "));
    td.appendChild(w);
    td.appendChild(el("button", {
      type: "button", "data-action": "weight", onclick: function () {
        act(hp.post(base + "/weight", { weight: Number(w.value) }), s.instance + " weight " + w.value);
      },
    }, "Set weight"));
    return td;
  }

  function versionControl(be) {
    if (be.kind !== "dynamic") return null;
    var span = el("span", { class: "badge" }, "follows " + text(be.service) + " " + text(be.version));
    if (!hp.can("write")) return span;
    var input = el("input", { type: "text", size: 8, value: be.version || "", "aria-label": "version", "data-version": be.name });
    var btn = el("button", {
      type: "button", "data-action": "version", onclick: function () {
        act(hp.post("/backends/" + encodeURIComponent(be.name), { version: input.value }), be.name + " → version " + input.value);
      },
    }, "Switch version");
    return el("span", null, span, " ", input, btn);
  }

  function searchText(be, s) {
    return [be.name, be.service, be.version, s.name, s.instance, s.address, s.version, s.zone, s.state]
      .filter(Boolean).join(" ").toLowerCase();
  }

  var PAGE = 25; // backends a page
  var page = 0;
  var collapsed = {}; // backend -> true/false, as the operator left it
  var DEFAULT_COLLAPSE = 30; // with more backends than this, healthy ones start collapsed

  function traffic(t) { return t || {}; }

  function timeText(t) {
    if (t.p95 !== null && t.p95 !== undefined) return "p95 " + hp.fmt(t.p95, "ms");
    if (t.rtime !== null && t.rtime !== undefined) return "avg " + hp.fmt(t.rtime, "ms");
    return "—";
  }

  function trafficBadges(be) {
    var t = traffic(be.traffic);
    if (be.traffic === null || be.traffic === undefined) return [];
    var req = t.req || 0, err = t.err || 0;
    var out = [el("span", { class: "badge traffic", "data-req": req, title: "requests a second (last 10 s)" }, hp.fmt(req, "req/s"))];
    if (err > 0) out.push(el("span", { class: "badge warn", "data-err": err, title: "5xx answers and failed connections a second" },
      "5xx " + hp.fmt(err, "/s") + (req > 0 ? " (" + hp.fmt(100 * err / req, "%") + ")" : "")));
    out.push(el("span", { class: "badge traffic", "data-time": t.p95 !== null && t.p95 !== undefined ? t.p95 : t.rtime,
      title: "p95: 95th percentile of the last minute, from the access log; avg: HAProxy's average of the last 1024 requests" }, timeText(t)));
    return out;
  }

  function healthBadge(be) {
    if (be.health === "down") return el("span", { class: "badge bad", "data-health": "down" }, "no server up");
    if (be.health === "degraded") return el("span", { class: "badge warn", "data-health": "degraded" }, be.servers_down + " down");
    return null;
  }

  function instanceLink(s) {
    if (!s.instance || !s.service) return text(s.instance);
    return el("a", { href: "/ui/instance?service=" + encodeURIComponent(s.service) + "&id=" + encodeURIComponent(s.instance) }, s.instance);
  }

  function busy(be) { var t = traffic(be.traffic); return (t.req || 0) + (t.err || 0); }

  function matching(q) {
    var state = document.getElementById("f-state").value;
    var list = doc.backends.filter(function (be) {
      if (state === "problems" && (be.health === "ok" || be.health === "empty")) return false;
      if (state === "busy" && busy(be) === 0) return false;
      if (state === "idle" && busy(be) > 0) return false;
      if (!q) return true;
      var hay = (be.name + " " + (be.service || "") + " " + (be.version || "")).toLowerCase();
      return hay.indexOf(q) >= 0 || be.servers.some(function (s) { return searchText(be, s).indexOf(q) >= 0; });
    });
    var order = document.getElementById("f-sort").value;
    var rank = { down: 0, degraded: 1, ok: 2, empty: 3 };
    list.sort(function (a, b) {
      if (order === "problems") return rank[a.health] - rank[b.health] || busy(b) - busy(a) || a.name.localeCompare(b.name);
      if (order === "busy") return busy(b) - busy(a) || rank[a.health] - rank[b.health] || a.name.localeCompare(b.name);
      return a.name.localeCompare(b.name);
    });
    return list;
  }

  function isCollapsed(be) {
    if (be.name in collapsed) return collapsed[be.name];
    return doc.backends.length > DEFAULT_COLLAPSE && be.health === "ok" && busy(be) === 0;
  }

  function renderBackends() {
    var box = document.getElementById("backends");
    var q = document.getElementById("search").value.trim().toLowerCase();
    var list = matching(q);
    var pages = Math.max(1, Math.ceil(list.length / PAGE));
    if (page >= pages) page = pages - 1;
    var frag = document.createDocumentFragment();
    var shownServers = 0, totalServers = 0;
    doc.backends.forEach(function (be) { totalServers += be.servers.length; });
    list.slice(page * PAGE, page * PAGE + PAGE).forEach(function (be) {
      var beMatch = !q || (be.name + " " + (be.service || "") + " " + (be.version || "")).toLowerCase().indexOf(q) >= 0;
      var toggle = el("button", { type: "button", class: "toggle", "aria-label": "collapse or expand", onclick: function () {
        collapsed[be.name] = !isCollapsed(be); render();
      } }, isCollapsed(be) ? "▸" : "▾");
      var head = el("header", null, toggle,
        el("h3", null, be.name),
        el("span", { class: "badge" }, be.kind),
        be.service && be.kind !== "dynamic" ? el("span", { class: "badge" }, "service " + be.service) : null,
        versionControl(be),
        el("span", { class: "badge" }, be.balance),
        el("span", { class: "badge", "data-up": be.servers_up }, be.servers_up + "/" + be.servers.length + " up"),
        healthBadge(be),
        trafficBadges(be),
        be.sessions !== null ? el("span", { class: "badge" }, be.sessions + " sessions") : null,
        be.slots ? el("span", { class: "badge muted" }, be.free_slots + " free of " + be.slots + " slots") : null,
        be.status ? el("span", { class: "badge" }, "HAProxy: " + be.status) : null);
      var tbody = el("tbody");
      be.servers.forEach(function (s) {
        var t = traffic(s.traffic);
        var hidden = !beMatch && searchText(be, s).indexOf(q) < 0;
        if (!hidden) shownServers++;
        tbody.appendChild(el("tr", {
          "data-server": be.name + "/" + s.name, "data-instance": s.instance || "", "data-state": s.state,
          "data-search": searchText(be, s), class: hidden ? "hidden" : null,
        },
          el("td", null, s.name), el("td", null, instanceLink(s)), el("td", null, el("code", null, s.address)),
          el("td", null, stateBadge(s)), el("td", null, text(s.health)), weightCell(s),
          el("td", { class: "num" }, text(s.sessions)),
          el("td", { class: "num", "data-req": t.req === undefined ? "" : t.req }, s.traffic ? hp.fmt(t.req || 0) : "—"),
          el("td", { class: "num" }, s.traffic ? timeText(t) : "—"),
          el("td", null, text(s.version)), el("td", null, text(s.zone)),
          actions(be, s)));
      });
      if (!be.servers.length) tbody.appendChild(el("tr", null, el("td", { colspan: 12, class: "muted" }, "no servers")));
      var table = el("table", { class: "grid" },
        el("thead", null, el("tr", null, ["Server", "Instance", "Address", "State", "Health", "Weight", "Sessions", "Req/s", "Time", "Version", "Zone", ""]
          .map(function (h) { return el("th", null, h); }))), tbody);
      frag.appendChild(el("section", {
        class: "backend health-" + be.health + (isCollapsed(be) ? " collapsed" : ""), "data-backend": be.name,
        "data-health": be.health, "data-search": (be.name + " " + (be.service || "") + " " + (be.version || "")).toLowerCase(),
      }, head, table));
    });
    box.replaceChildren(frag);
    var pager = document.getElementById("pager");
    pager.replaceChildren(
      el("button", { type: "button", disabled: page === 0 || null, onclick: function () { page--; render(); } }, "‹ previous"),
      el("span", { class: "muted" }, " page " + (page + 1) + " of " + pages + " · " + list.length + " of " + doc.backends.length + " backends "),
      el("button", { type: "button", disabled: page >= pages - 1 || null, onclick: function () { page++; render(); } }, "next ›"));
    var sum = document.getElementById("summary");
    var down = doc.backends.filter(function (be) { return be.health === "down"; }).length;
    var degraded = doc.backends.filter(function (be) { return be.health === "degraded"; }).length;
    sum.textContent = (q ? shownServers + " of " : "") + totalServers + " servers in " + doc.backends.length + (doc.backends.length === 1 ? " backend" : " backends") +
      (down ? " · " + down + " with no server up" : "") + (degraded ? " · " + degraded + " with servers down" : "") + " · revision " + doc.revision +
      (doc.live ? "" : " · desired state only (no live HAProxy view)");
  }

  function renderFrontends() {
    var tbody = document.querySelector("#frontends tbody");
    var rows = [];
    doc.frontends.forEach(function (fe) {
      var rules = fe.rules.slice();
      if (fe.default_backend) rules.push({ match: "default", value: "", backend: fe.default_backend });
      if (!rules.length) rules.push({ match: "—", value: "", backend: "" });
      rules.forEach(function (r, i) {
        rows.push(el("tr", { "data-search": (fe.name + " " + r.value + " " + r.backend).toLowerCase() },
          el("td", null, i === 0 ? fe.name : ""), el("td", null, i === 0 ? fe.binds.join(", ") : ""),
          el("td", null, r.match + (r.value ? " " : ""), r.value ? el("code", null, r.value) : null),
          el("td", null, r.backend ? el("a", { href: "#", "data-goto": r.backend }, r.backend) : "")));
      });
    });
    tbody.replaceChildren.apply(tbody, rows);
  }

  function renderWaiting() {
    var w = document.getElementById("waiting");
    var entries = doc.waiting || [];
    w.hidden = !entries.length;
    w.replaceChildren.apply(w, entries.map(function (e) { return el("p", null, e.message); }));
  }

  function renderQuarantine() {
    renderWaiting();
    var q = document.getElementById("quarantine");
    var owners = Object.keys(doc.quarantined || {});
    q.hidden = !owners.length;
    q.replaceChildren(el("strong", null, "Held back (haproxy -c rejected their lines): "),
      el("ul", null, owners.map(function (o) { return el("li", null, el("code", null, o), " — " + doc.quarantined[o]); })));
    var h = document.getElementById("held");
    var held = Object.keys(doc.held || {});
    h.hidden = !held.length;
    h.replaceChildren(el("strong", null, "Held (HAProxy refused their runtime change; change the record to try again): "),
      el("ul", null, held.map(function (o) { return el("li", null, el("code", null, o), " — " + doc.held[o]); })));
  }

  function applySearch() {
    var q = document.getElementById("search").value.trim().toLowerCase();
    document.querySelectorAll("#frontends tbody tr").forEach(function (tr) {
      tr.classList.toggle("hidden", !!q && tr.dataset.search.indexOf(q) < 0);
    });
  }

  // a live update never replaces the table under the operator's hands: not while a value is being typed, nor
  // between pressing a button and its click
  var holding = false;
  document.addEventListener("pointerdown", function (ev) {
    if (ev.target.closest && ev.target.closest("#backends")) { holding = true; setTimeout(release, 2000); }
  }, true);
  document.addEventListener("click", function () { setTimeout(release, 0); });
  function release() { if (holding) { holding = false; if (pending && doc) render(); } }

  function render() {
    var focused = document.activeElement;
    var typing = focused && focused.closest && focused.closest("#backends") && focused.tagName === "INPUT";
    if (typing || holding) { pending = true; return; }
    pending = false;
    renderQuarantine();
    renderFrontends();
    renderBackends();
    applySearch();
  }

  document.addEventListener("focusout", function () { if (pending && doc) setTimeout(function () { if (pending) render(); }, 0); });
  document.addEventListener("click", function (ev) {
    var a = ev.target.closest && ev.target.closest("a[data-goto]");
    if (!a) return;
    ev.preventDefault();
    var sec = document.querySelector('section.backend[data-backend="' + CSS.escape(a.dataset.goto) + '"]');
    if (sec) sec.scrollIntoView({ behavior: "smooth" });
  });

  document.addEventListener("DOMContentLoaded", function () {
    document.getElementById("search").addEventListener("input", function () { page = 0; if (doc) render(); });
    ["f-state", "f-sort"].forEach(function (id) {
      document.getElementById(id).addEventListener("change", function () { page = 0; if (doc) render(); });
    });
    document.getElementById("collapse-all").addEventListener("click", function () {
      doc.backends.forEach(function (be) { collapsed[be.name] = true; }); render();
    });
    document.getElementById("expand-all").addEventListener("click", function () {
      doc.backends.forEach(function (be) { collapsed[be.name] = false; }); render();
    });
    hp.whoami().then(function () {
      return hp.get("/ui/api/overview");
    }).then(function (d) {
      doc = d; render();
      hp.stream("/ui/api/stream/overview", { overview: function (d) { if (!d.error) { doc = d; render(); } } });
    }).catch(function (e) { hp.toast(e.message, true); });
  });
})();
