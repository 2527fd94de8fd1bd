/* The desk's live part: follows the public stream of the desk's queues and, on a change,
   has htmx fetch the server-rendered waiting list (and the current panel when the change
   is this desk's), so the screen has one source of truth, the server. Keeps the timers
   running, shows failed requests in the banner, and presses the shortcut keys. */
(function () {
  "use strict";
  var cfg = JSON.parse(document.getElementById("jonot-config").textContent);
  var T = cfg.texts;
  var es = null, retry = null, pending = null, wantCurrent = false, pollTimer = null;

  function $(id) { return document.getElementById(id); }

  /* -- refreshing the fragments ------------------------------------------------------ */
  function refresh(current) {
    wantCurrent = wantCurrent || current;
    if (pending) return;
    pending = setTimeout(function () {
      pending = null;
      var both = wantCurrent;
      wantCurrent = false;
      /* Each panel is its own source: htmx keeps one request slot per source element
         and, while one is out, queues only the latest, so with a shared source a list
         refresh would drop the current panel's. */
      if (both && !editing($("current"))) {
        window.htmx.ajax("GET", cfg.current, { source: "#current", target: "#current", swap: "innerHTML" });
      }
      window.htmx.ajax("GET", cfg.waiting, { source: "#waiting", target: "#waiting", swap: "innerHTML" });
    }, 120);
  }
  function editing(el) {  // never pull a form from under the hands of someone typing in it
    var a = document.activeElement;
    return a && el.contains(a) && /^(INPUT|TEXTAREA|SELECT)$/.test(a.tagName);
  }
  function shownCodes() {
    var out = {}, els = $("current").querySelectorAll("[data-code]");
    for (var i = 0; i < els.length; i++) out[els[i].getAttribute("data-code")] = true;
    return out;
  }
  function onTicket(data) {
    var mine = data.desk_id === cfg.desk_id || shownCodes()[data.code];
    refresh(!!mine);
  }

  /* -- the stream ---------------------------------------------------------------------- */
  function setConnected(ok) {
    $("conn").hidden = ok;
    document.documentElement.setAttribute("data-stream", ok ? "live" : "down");
  }
  function connect() {
    retry = null;
    if (!window.EventSource) { poll(); return; }
    var seen = false;
    es = new window.EventSource(cfg.stream);
    es.addEventListener("state", function () {
      if (seen) refresh(true);  // a reconnect: whatever was missed is fetched again
      seen = true;
      setConnected(true);
    });
    es.addEventListener("ticket", function (ev) {
      try { onTicket(JSON.parse(ev.data)); } catch (e) { refresh(true); }
    });
    es.addEventListener("queue", function () { refresh(false); });
    es.addEventListener("desk", function () { refresh(false); });
    es.onopen = function () { setConnected(true); };
    es.onerror = function () {
      setConnected(false);
      seen = true;
      if (es.readyState === 2) {  // the browser gave up (e.g. a 503): start again ourselves
        es.close(); es = null;
        if (!retry) retry = setTimeout(connect, 5000);
      }
    };
  }
  function poll() {  // no EventSource: fetch the fragments every few seconds
    refresh(true);
    pollTimer = setTimeout(poll, 5000);
  }

  /* -- timers ------------------------------------------------------------------------ */
  function since(el) { return Date.parse(el.getAttribute("data-since")); }
  function pad(n) { return (n < 10 ? "0" : "") + n; }
  function clock(ms) {
    var s = Math.max(0, Math.floor(ms / 1000)), h = Math.floor(s / 3600), m = Math.floor(s % 3600 / 60);
    return h ? h + ":" + pad(m) + ":" + pad(s % 60) : m + ":" + pad(s % 60);
  }
  function words(ms) {
    var m = Math.max(0, Math.floor(ms / 60000));
    if (m < 1) return T.under_min;
    if (m < 60) return T.min.replace("{m}", m);
    return T.h_min.replace("{h}", Math.floor(m / 60)).replace("{m}", pad(m % 60));
  }
  function tick() {
    var now = Date.now(), i, els = document.querySelectorAll(".timer[data-since]");
    for (i = 0; i < els.length; i++) els[i].textContent = clock(now - since(els[i]));
    els = document.querySelectorAll(".wait[data-since]");
    for (i = 0; i < els.length; i++) {
      var text = words(now - since(els[i]));
      if (els[i].textContent !== text) els[i].textContent = text;
    }
  }

  /* -- results and errors --------------------------------------------------------------- */
  function banner(html) {
    var b = $("banner");
    if (html) { b.innerHTML = html; b.hidden = false; } else { b.hidden = true; b.innerHTML = ""; }
  }
  document.body.addEventListener("htmx:responseError", function (ev) {
    var xhr = ev.detail.xhr;
    banner(xhr.responseText || T.failed);
    refresh(true);  // never a stale list after a refusal
  });
  document.body.addEventListener("htmx:sendError", function () { banner(T.failed); });
  document.body.addEventListener("htmx:afterRequest", function (ev) {
    var cfgReq = ev.detail.requestConfig;
    if (ev.detail.successful && cfgReq && cfgReq.verb === "post") banner("");
  });
  document.body.addEventListener("desk-stale", function () { refresh(true); });
  document.body.addEventListener("htmx:afterSwap", tick);
  document.addEventListener("click", function (ev) {
    var close = ev.target.closest && ev.target.closest("[data-close-editor]");
    if (close) { ev.preventDefault(); $("editor").innerHTML = ""; }
  });

  /* -- keyboard shortcuts --------------------------------------------------------------- */
  document.addEventListener("keydown", function (ev) {
    if (ev.ctrlKey || ev.altKey || ev.metaKey || ev.repeat) return;
    var t = ev.target;
    if (t && (/^(INPUT|TEXTAREA|SELECT)$/.test(t.tagName) || t.isContentEditable)) return;
    var key = (ev.key || "").toLowerCase();
    if (key.length !== 1) return;
    var el = document.querySelector('#current [data-key="' + key + '"]');
    if (!el || el.disabled) return;
    ev.preventDefault();
    if (el.tagName === "SELECT") el.focus(); else el.click();
  });

  /* A button pressed in the instant between a swap and htmx taking over the new
     fragment would post the plain form and reload the whole page: hand it to htmx. */
  document.addEventListener("submit", function (ev) {
    var form = ev.target;
    if (!window.htmx || !form.getAttribute || !form.getAttribute("hx-post")) return;
    if (form["htmx-internal-data"] && form["htmx-internal-data"].initHash) return;
    ev.preventDefault();
    window.htmx.process(form);
    window.htmx.trigger(form, "submit");
  }, true);

  tick();
  setInterval(tick, 1000);
  connect();
})();
