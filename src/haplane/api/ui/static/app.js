// Shared helpers of the haplane pages: who is signed in, JSON calls with the CSRF header, live streams.
(function () {
  "use strict";
  var RANK = { read: 0, write: 1, admin: 2 };
  var hp = (window.hp = { role: null, csrf: null });

  hp.el = function (tag, attrs) {
    var e = document.createElement(tag);
    if (attrs) {
      Object.keys(attrs).forEach(function (k) {
        var v = attrs[k];
        if (v === null || v === undefined || v === false) return;
        if (k === "text") e.textContent = String(v);
        else if (k === "class") e.className = v;
        else if (k.slice(0, 2) === "on") e.addEventListener(k.slice(2), v);
        else e.setAttribute(k, v === true ? "" : String(v));
      });
    }
    for (var i = 2; i < arguments.length; i++) {
      var c = arguments[i];
      if (c === null || c === undefined || c === false) continue;
      if (Array.isArray(c)) c.forEach(function (x) { if (x) e.appendChild(typeof x === "string" ? document.createTextNode(x) : x); });
      else e.appendChild(typeof c === "string" || typeof c === "number" ? document.createTextNode(String(c)) : c);
    }
    return e;
  };

  hp.can = function (role) { return hp.role !== null && RANK[hp.role] >= RANK[role]; };

  hp.toast = function (msg, error) {
    var t = document.getElementById("toast");
    if (!t) return;
    t.textContent = msg;
    t.className = "toast show" + (error ? " error" : "");
    clearTimeout(hp._toast);
    hp._toast = setTimeout(function () { t.className = "toast"; }, 3500);
  };

  function handle(r) {
    if (r.status === 401) { location.href = "/ui/login"; throw new Error("signed out"); }
    return r.json().then(function (body) {
      if (!r.ok) throw new Error((body && body.detail) || ("HTTP " + r.status));
      return body;
    });
  }

  hp.get = function (path) { return fetch(path, { credentials: "same-origin" }).then(handle); };

  hp.post = function (path, body) {
    return fetch(path, {
      method: "POST", credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRF-Token": hp.csrf || "" },
      body: JSON.stringify(body),
    }).then(handle);
  };

  hp.whoami = function () {
    return hp.get("/auth/whoami").then(function (d) {
      hp.role = d.role; hp.csrf = d.csrf;
      document.body.dataset.role = d.role;
      var who = document.getElementById("who");
      if (who) who.textContent = "role: " + d.role + (d.via === "open" ? " (open API)" : "");
      return d;
    });
  };

  // EventSource with a visible connection state; the browser reconnects by itself (sending Last-Event-ID).
  hp.stream = function (path, handlers) {
    var live = document.getElementById("live");
    var es = new EventSource(path);
    es.onopen = function () { if (live) { live.textContent = "● live"; live.className = "live on"; } };
    es.onerror = function () { if (live) { live.textContent = "reconnecting…"; live.className = "live"; } };
    Object.keys(handlers).forEach(function (name) {
      es.addEventListener(name, function (ev) { handlers[name](JSON.parse(ev.data), ev); });
    });
    return es;
  };

  // a number for people: 3 significant figures at most, with its unit
  hp.fmt = function (v, unit) {
    if (v === null || v === undefined || isNaN(v)) return "—";
    var a = Math.abs(v);
    var s = a >= 100 ? String(Math.round(v)) : a >= 10 ? v.toFixed(1) : a >= 1 ? v.toFixed(2) : a === 0 ? "0" : v.toFixed(3);
    return unit ? s + (unit === "%" || unit === "/s" ? "" : " ") + unit : s;
  };

  hp.time = function (t) {
    var d = new Date(t * 1000);
    function p(n, w) { return String(n).padStart(w || 2, "0"); }
    return d.getFullYear() + "-" + p(d.getMonth() + 1) + "-" + p(d.getDate()) + " " + p(d.getHours()) + ":" +
      p(d.getMinutes()) + ":" + p(d.getSeconds()) + "." + p(d.getMilliseconds(), 3);
  };

  document.addEventListener("DOMContentLoaded", function () {
    var page = document.body.dataset.page;
    document.querySelectorAll("nav a[data-nav]").forEach(function (a) {
      if (a.dataset.nav === page) a.className = "active";
    });
  });
})();
