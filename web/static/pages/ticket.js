/* The ticket page's live part: follows the holder's stream and renders its JSON; the
   "your turn" screen with the chime, vibration and the tab title; cancel with a
   confirmation (a POST to the public JSON API, whose credential is the hash). */
(function () {
  "use strict";
  var cfg = JSON.parse(document.getElementById("jonot-config").textContent);
  var T = cfg.texts;
  var view = cfg.view, es = null, lastId = null, audio = null, ended = false;
  var baseTitle = document.title;

  function $(id) { return document.getElementById(id); }
  function text(id, value) { var el = $(id); if (el.textContent !== value) el.textContent = value; }
  function live(state) { return state === "WAITING" || state === "CALLED"; }

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
    text("code", next.code);
    var st = $("state");
    st.className = "state state-" + next.state.toLowerCase();
    text("state", T.states[next.state] || next.state);
    $("facts").hidden = !live(next.state);
    $("ended").hidden = live(next.state);
    text("ended-text", T.ended[next.state] || "");
    $("cancel").hidden = next.state !== "WAITING";
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
      if (fresh) alertHolder();
    } else {
      document.title = baseTitle;
    }
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
    if (ended || !live(view.state)) return;
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
      if (live(view.state)) setTimeout(poll, 4000);
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
        if (x.status === 200 || x.status === 409) {
          if (x.status === 200) { render(JSON.parse(x.responseText)); finish(); }
          $("cancel-confirm").hidden = true; $("cancel-ask").hidden = false;
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
})();
