/* The ticket page's live part: follows the holder's stream and renders its JSON; the
   "your turn" screen with the chime, vibration and the tab title; cancel with a
   confirmation (a POST to the public JSON API, whose credential is the hash).
   On the cloud (cfg.stale_after_s given) also: PENDING until the clinic numbers a
   remote join, a cancel "requested" until the clinic confirms it, refusals in words,
   and how fresh the copy is ("updated N minutes ago", or the clinic gone quiet). */
(function () {
  "use strict";
  var cfg = JSON.parse(document.getElementById("jonot-config").textContent);
  var T = cfg.texts;
  var view = cfg.view, es = null, lastId = null, audio = null, ended = false;

  function $(id) { return document.getElementById(id); }
  function text(id, value) { var el = $(id); if (el.textContent !== value) el.textContent = value; }
  function live(state) { return state === "WAITING" || state === "CALLED"; }
  function following(state) { return live(state) || state === "PENDING"; }
  var skew = cfg.server_now ? Date.now() - Date.parse(cfg.server_now) : 0;

  function aboutMinutes(s) {  // the same rounding as pages/ticket.py about_minutes
    if (s === null || s === undefined) return "";
    if (s < 60) return T.less_than_minute;
    var m = Math.round(s / 60);
    if (m > 15) m = 5 * Math.round(m / 5);
    return (m === 1 ? T.about_one : T.about_other).replace("{n}", m);
  }

  function render(next) {
    var prev = view;
    view = next;
    text("code", next.code || (next.state === "PENDING" ? "\u2026" : "\u2013"));
    $("code").className = next.code ? "code" : "code none";
    var st = $("state");
    st.className = "state state-" + next.state.toLowerCase();
    text("state", T.states[next.state] || next.state);
    $("facts").hidden = !live(next.state);
    $("ended").hidden = live(next.state);
    text("ended-text", next.state === "PENDING" ? T.pending : (T.ended[next.state] || ""));
    var note = next.message ? (T.reasons[next.message] || next.message) : "";
    text("note", note);
    $("note").hidden = !note;
    $("cancel").hidden = next.state !== "WAITING";
    $("cancel-pending").hidden = !next.cancel_pending;
    if (next.cancel_pending) { $("cancel-ask").hidden = true; $("cancel-confirm").hidden = true; }
    else if ($("cancel-confirm").hidden) $("cancel-ask").hidden = false;
    freshness();
    text("position", next.position === 1 ? T.next
      : next.position ? T.position.replace("{n}", next.position) : "");
    text("wait", aboutMinutes(next.estimated_wait_s));
    text("serving", next.now_serving ? T.now_serving.replace("{code}", next.now_serving.code)
      : T.nobody_yet);
    var called = next.state === "CALLED";
    $("called").hidden = !called;
    if (called) {
      text("called-code", next.code);
      text("called-where", next.desk_name ? T.go_to.replace("{desk}", next.desk_name) : "");
      document.title = T.title_called.replace("{code}", next.code);
      var fresh = prev.state !== "CALLED" || (next.recall_count || 0) > (prev.recall_count || 0);
      if (fresh) afterPaint(alertHolder);
    } else {
      document.title = (next.code || T.states[next.state] || "") + " \u2014 " + cfg.clinic;
    }
  }

  function freshness() {  // the same rule as pages/ticket.py freshness
    var el = $("fresh");
    if (!el || cfg.stale_after_s === undefined) return;
    el.hidden = !following(view.state);  // an ended ticket changes no more: freshness is moot
    var msg, stale;
    if (!view.updated_at_office) { stale = true; msg = T.stale_never; }
    else {
      var quiet = (Date.now() - skew - Date.parse(view.updated_at_office)) / 1000;
      var m = Math.max(0, Math.floor(quiet / 60));
      stale = quiet > cfg.stale_after_s;
      if (stale) m = Math.max(1, m);
      if (stale) msg = (m === 1 ? T.stale_one : T.stale_other).replace("{n}", m);
      else if (m < 1) msg = T.updated_now;
      else msg = (m === 1 ? T.updated_one : T.updated_other).replace("{n}", m);
    }
    el.className = stale ? "fresh stale" : "fresh";
    text("fresh", msg);
    text("called-fresh", msg);  // also over "your turn": it may be out of date too
    $("called-fresh").hidden = !stale;
  }
  function refresh() {  // the stream sends changes only: ask how fresh the copy is now and then
    if (ended || !following(view.state)) return;
    var x = new XMLHttpRequest();
    x.open("GET", cfg.stream.replace(/\/events$/, ""));
    x.onload = function () { if (x.status === 200) render(JSON.parse(x.responseText)); };
    x.send();
  }

  // The sound, vibration and flash come just after "your turn" is on the screen: starting
  // the audio and restarting the flash cost a layout and a media pipeline, which would
  // otherwise hold back the first paint. A tab in the background paints nothing (and runs
  // no animation frames): there they come at once.
  function afterPaint(fn) {
    if (document.hidden || !window.requestAnimationFrame) { fn(); return; }
    window.requestAnimationFrame(function () { setTimeout(fn, 0); });
  }

  function alertHolder() {
    var el = $("called");
    el.className = "called";
    void el.offsetWidth;  // restart the flash
    el.className = "called flash";
    try {
      if (!audio) audio = new Audio(cfg.chime);
      audio.currentTime = 0;
      var p = audio.play();
      if (p && p.catch) p.catch(function () { /* the phone blocks sound until a tap */ });
    } catch (e) { /* no audio */ }
    if (navigator.vibrate) { try { navigator.vibrate([400, 200, 400, 200, 400]); } catch (e) { /* */ } }
  }

  function setConnected(ok) {
    $("conn").hidden = ok;
    document.documentElement.setAttribute("data-stream", ok ? "live" : "down");
  }
  function finish() {
    ended = true;
    if (es) { es.close(); es = null; }
    setConnected(true);
  }
  function onTicket(ev) {
    if (ev.lastEventId) lastId = ev.lastEventId;
    try { render(JSON.parse(ev.data)); } catch (e) { if (window.console) console.error(e); }
  }
  function connect() {
    if (ended || !following(view.state)) return;
    if (!window.EventSource) { poll(); return; }
    es = new window.EventSource(cfg.stream);
    es.addEventListener("ticket", onTicket);
    es.addEventListener("end", finish);
    es.onopen = function () { setConnected(true); };
    es.onerror = function () {
      if (ended) return;
      setConnected(false);
      if (es && es.readyState === 2) { es.close(); es = null; setTimeout(connect, 5000); }
    };
  }
  function poll() {  // no EventSource: ask for the view every few seconds
    var x = new XMLHttpRequest();
    x.open("GET", cfg.stream.replace(/\/events$/, ""));
    x.onload = function () {
      if (x.status === 200) { setConnected(true); render(JSON.parse(x.responseText)); }
      else setConnected(false);
      if (following(view.state)) setTimeout(poll, 4000);
    };
    x.onerror = function () { setConnected(false); setTimeout(poll, 8000); };
    x.send();
  }

  function cancelFlow() {
    $("cancel-ask").onclick = function () {
      $("cancel-ask").hidden = true; $("cancel-confirm").hidden = false; $("cancel-no").focus();
    };
    $("cancel-no").onclick = function () {
      $("cancel-confirm").hidden = true; $("cancel-ask").hidden = false; $("cancel-error").hidden = true;
    };
    $("cancel-yes").onclick = function () {
      var btn = $("cancel-yes");
      btn.disabled = true;
      var x = new XMLHttpRequest();
      x.open("POST", cfg.cancel);
      x.setRequestHeader("Content-Type", "application/json");
      x.onload = function () {
        btn.disabled = false;
        if (x.status === 200 || x.status === 202 || x.status === 409) {
          $("cancel-confirm").hidden = true; $("cancel-ask").hidden = false;
          if (x.status === 200) { render(JSON.parse(x.responseText)); finish(); }
          // The cloud answers 202: "requested" until the clinic confirms (its stream says).
          if (x.status === 202) render(JSON.parse(x.responseText));
          return;
        }
        failed();
      };
      x.onerror = failed;
      function failed() {
        btn.disabled = false;
        $("cancel-error").textContent = T.cancel_failed;
        $("cancel-error").hidden = false;
      }
      x.send("{}");
    };
  }

  cancelFlow();
  connect();
  if (cfg.stale_after_s !== undefined) {
    freshness();
    setInterval(freshness, 30000);
    setInterval(refresh, 60000);
  }
})();
