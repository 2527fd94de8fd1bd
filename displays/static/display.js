/* The TV display's live part: follows the public stream, renders the same JSON the
   server rendered the first paint from, and announces each call (chime, then speech).
   Plain ES5 so old TV browsers run it. Everything it keeps is bounded; it holds one
   clock interval and at most one timer per purpose, so it can run for days. */
(function () {
  "use strict";
  var cfg = JSON.parse(document.getElementById("jonot-config").textContent);
  var T = cfg.texts;
  var LOG_MAX = 20, PENDING_MAX = 10, CALLS_MAX = 12;
  var calls = [];      // newest first: {code, queue_id, desk_id, desk_name, called_at}
  var queueOrder = [], queues = {};
  var pending = [], hero = null, heroTimer = null;
  var log = [], speakQueue = [], speaking = false;
  var soundOn = false, lastId = null, es = null, retryTimer = null, seenState = false;
  var audio = new Audio(cfg.chime), voiceAudio = null;
  audio.preload = "auto";
  window.__jonotAnnouncements = log;

  function $(id) { return document.getElementById(id); }
  function esc(s) {
    return String(s == null ? "" : s).replace(/[&<>"']/g, function (c) {
      return { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c];
    });
  }

  /* -- rendering ------------------------------------------------------------------ */
  function renderHero(fresh) {
    var el = $("hero");
    if (!hero) {
      el.className = "hero empty";
      el.innerHTML = '<span class="none">' + esc(T.no_calls) + "</span>";
      return;
    }
    var q = queues[hero.queue_id];
    el.className = "hero" + (fresh ? " fresh" : "");
    el.innerHTML = '<span class="code">' + esc(hero.code) + '</span><span class="desk">' +
      esc(hero.desk_name) + '</span><span class="from">' + esc(q ? q.name : "") + "</span>";
    el.setAttribute("data-code", hero.code);
  }
  function renderRecent() {
    var html = "", shown = 0, heroCode = hero ? hero.code : null;
    for (var i = 0; i < calls.length && shown < cfg.recent; i++) {
      if (calls[i].code === heroCode) continue;  // a code is listed once: large, or here
      html += '<li><span class="code">' + esc(calls[i].code) + '</span><span class="desk">' +
        esc(calls[i].desk_name) + "</span></li>";
      shown++;
    }
    $("recent").innerHTML = html;
  }
  function renderQueues() {
    var html = "";
    for (var i = 0; i < queueOrder.length; i++) {
      var q = queues[queueOrder[i]];
      if (!q) continue;
      var count = q.open ? (q.waiting === 1 ? T.waiting_one : T.waiting_other)
        .replace("{n}", q.waiting) : T.closed;
      html += '<li class="queue' + (q.open ? "" : " closed") + '" style="--qc: ' +
        esc(q.colour) + '"><span class="name">' + esc(q.name) + '</span><span class="count">' +
        esc(count) + "</span></li>";
    }
    $("queues").innerHTML = html;
  }
  function setQueues(list) {
    queueOrder = []; queues = {};
    for (var i = 0; i < list.length; i++) { queueOrder.push(list[i].id); queues[list[i].id] = list[i]; }
  }
  function updateQueue(q) {
    if (!queues[q.id]) queueOrder.push(q.id);
    queues[q.id] = q;
  }

  /* -- calls: the newest stays large for at least dwell_ms, later ones wait their turn */
  function showNext() {
    if (heroTimer) return;
    var next = pending.shift();
    if (!next) return;
    hero = next;
    renderHero(true); renderRecent();
    heroTimer = setTimeout(function () {
      heroTimer = null;
      $("hero").className = "hero";
      showNext();
    }, cfg.dwell_ms);
  }
  function addCall(call) {
    for (var i = calls.length - 1; i >= 0; i--) if (calls[i].code === call.code) calls.splice(i, 1);
    calls.unshift(call);
    if (calls.length > CALLS_MAX) calls.length = CALLS_MAX;
    pending.push(call);
    if (pending.length > PENDING_MAX) pending.shift();
    renderRecent();
    showNext();
    announce(call);
  }

  /* -- announcements: queued, never cut off; chime, then speech --------------------- */
  function spokenCode(code) {
    var m = /^(\D*)(\d+)$/.exec(code || "");
    if (!m) return code;
    var letters = m[1] ? m[1].split("").join(" ") + " " : "";
    return letters + String(parseInt(m[2], 10));  // "A042" -> "A 42": never "zero four two"
  }
  function phrase(call) {
    var code = spokenCode(call.code);
    return call.desk_name ? T.say.replace("{code}", code).replace("{desk}", call.desk_name)
      : T.say_no_desk.replace("{code}", code);
  }
  function announce(call) {
    var entry = { code: call.code, desk: call.desk_name || "", text: phrase(call),
                  recall: !!call.recall, state: "queued" };
    log.push(entry);
    if (log.length > LOG_MAX) log.shift();
    speakQueue.push(entry);
    if (speakQueue.length > PENDING_MAX) speakQueue.shift().state = "dropped";
    nextAnnouncement();
  }
  function nextAnnouncement() {
    if (speaking) return;
    var entry = speakQueue.shift();
    if (!entry) return;
    speaking = true;
    entry.state = "playing";
    chime(function () {
      speak(entry, function (how) {
        entry.state = how;
        setTimeout(function () { speaking = false; nextAnnouncement(); }, 500);
      });
    });
  }
  function once(fn, ms) {  // fn called exactly once: by the caller, or after ms at the latest
    var done = false, timer = setTimeout(call, ms);
    function call(arg) { if (done) return; done = true; clearTimeout(timer); fn(arg); }
    return call;
  }
  function chime(next) {
    if (!soundOn) { next(); return; }
    var done = once(next, 4000);
    audio.onended = function () { done(); };
    try {
      audio.currentTime = 0;
      var p = audio.play();
      if (p && p.catch) p.catch(function () { soundBlocked(); done(); });
    } catch (e) { done(); }
  }
  function voiceFor(lang) {
    var voices = window.speechSynthesis ? window.speechSynthesis.getVoices() : [];
    for (var i = 0; i < voices.length; i++) {
      if (voices[i].lang && voices[i].lang.toLowerCase().indexOf(lang) === 0) return voices[i];
    }
    return null;
  }
  /* Speech: the browser's own voice for the display's language when it has one; else
     audio the office server makes (espeak-ng, no internet either); else the chime alone. */
  function speak(entry, next) {
    if (!soundOn) { next("muted"); return; }
    var voice = voiceFor(cfg.lang);
    if (!voice) { serverSpeech(entry, next); return; }
    var done = once(function () { next("spoken"); }, 15000);
    var u = new window.SpeechSynthesisUtterance(entry.text);
    u.voice = voice; u.lang = voice.lang; u.rate = 0.9;
    u.onend = u.onerror = function () { done(); };
    window.speechSynthesis.speak(u);
  }
  function serverSpeech(entry, next) {
    if (!cfg.speech) { next("chime"); return; }  // the server has no speech engine
    var done = once(next, 15000);
    if (!voiceAudio) voiceAudio = new Audio();   // one element, reused for every call
    voiceAudio.onended = function () { done("server"); };
    voiceAudio.onerror = function () { done("chime"); };  // 404/503/429: the chime was it
    voiceAudio.src = cfg.speech.replace("__CODE__", encodeURIComponent(entry.code));
    try {
      var p = voiceAudio.play();
      if (p && p.catch) p.catch(function () { done("chime"); });
    } catch (e) { done("chime"); }
  }
  function soundBlocked() {
    soundOn = false;
    $("sound").hidden = false;
  }
  function enableSound() {
    soundOn = true;
    try { window.localStorage.setItem("jonot.sound", "on"); } catch (e) { /* private mode */ }
    $("sound").hidden = true;
    audio.currentTime = 0;
    var p = audio.play();
    if (p && p.catch) p.catch(soundBlocked);
  }
  function initSound() {
    $("sound").onclick = enableSound;
    var wanted = false;
    try { wanted = window.localStorage.getItem("jonot.sound") === "on"; } catch (e) { /* none */ }
    if (!wanted) { $("sound").hidden = false; return; }
    // Probe whether the browser lets this page play sound by itself: silent but not
    // muted (muted playback is always allowed, so it would prove nothing).
    audio.volume = 0;
    var p = audio.play();
    function ok() { audio.pause(); audio.volume = 1; soundOn = true; }
    if (p && p.then) p.then(ok, function () { audio.volume = 1; soundBlocked(); });
    else ok();
  }

  /* -- the stream ---------------------------------------------------------------- */
  function onState(data) {
    var newest = calls.length ? calls[0].called_at : null;
    setQueues(data.queues || []);
    var fresh = [];
    if (seenState && newest) {  // a reconnect that started over: announce what was missed
      for (var i = (data.recent_calls || []).length - 1; i >= 0; i--) {
        if (data.recent_calls[i].called_at > newest) fresh.push(data.recent_calls[i]);
      }
    }
    calls = (data.recent_calls || []).slice(0, CALLS_MAX);
    if (!seenState || !hero) hero = calls[0] || null;
    seenState = true;
    renderQueues();
    if (!heroTimer) renderHero(false);
    renderRecent();
    for (var j = 0; j < fresh.length; j++) addCall(fresh[j]);
  }
  function onTicket(data) {
    var touched = data.queues || [];
    for (var i = 0; i < touched.length; i++) updateQueue(touched[i]);
    renderQueues();
    if (data.action === "called" || data.action === "recalled") {
      addCall({ code: data.code, queue_id: data.queue_id, desk_id: data.desk_id,
                desk_name: data.desk_name, called_at: data.at, recall: data.action === "recalled" });
    }
  }
  function onQueue(data) { if (data.queue) { updateQueue(data.queue); renderQueues(); } }
  function onDesk(data) {
    var d = data.desk;
    if (!d) return;
    for (var i = 0; i < calls.length; i++) if (calls[i].desk_id === d.id) calls[i].desk_name = d.name;
    renderRecent();
  }
  var handlers = { state: onState, ticket: onTicket, queue: onQueue, desk: onDesk };
  function handle(name, raw, id) {
    if (id) lastId = id;
    var fn = handlers[name];
    if (!fn) return;
    try { fn(JSON.parse(raw)); } catch (e) { if (window.console) console.error(e); }
  }
  function setConnected(ok) {
    $("conn").hidden = ok;
    document.documentElement.setAttribute("data-stream", ok ? "live" : "down");
  }
  function withParams(extra) {
    return cfg.stream + (cfg.stream.indexOf("?") < 0 ? "?" : "&") + extra;
  }
  function connect() {
    retryTimer = null;
    if (!window.EventSource) { poll(); return; }
    es = new window.EventSource(lastId ? withParams("last_event_id=" + encodeURIComponent(lastId))
      : cfg.stream);
    for (var name in handlers) {
      (function (n) { es.addEventListener(n, function (ev) { handle(n, ev.data, ev.lastEventId); }); })(name);
    }
    es.onopen = function () { setConnected(true); };
    es.onerror = function () {
      setConnected(false);
      if (es.readyState === 2) {  // the browser gave up (e.g. a 503): start again ourselves
        es.close(); es = null;
        if (!retryTimer) retryTimer = setTimeout(connect, 5000);
      }
    };
  }
  function parseFrames(text) {
    var blocks = text.split(/\r?\n\r?\n/);
    for (var i = 0; i < blocks.length; i++) {
      var lines = blocks[i].split(/\r?\n/), name = "message", data = [], id = null;
      for (var j = 0; j < lines.length; j++) {
        var line = lines[j], at = line.indexOf(":");
        if (at <= 0) continue;
        var field = line.slice(0, at), value = line.slice(at + 1).replace(/^ /, "");
        if (field === "event") name = value;
        else if (field === "data") data.push(value);
        else if (field === "id") id = value;
      }
      if (data.length) handle(name, data.join("\n"), id);
    }
  }
  function poll() {  // for browsers without EventSource: long-poll the same stream
    var x = new XMLHttpRequest();
    x.open("GET", withParams("poll=1" + (lastId ? "&last_event_id=" + encodeURIComponent(lastId) : "")));
    x.onload = function () {
      var ok = x.status === 200;
      if (ok) parseFrames(x.responseText);
      setConnected(ok);
      setTimeout(poll, ok ? 250 : 5000);
    };
    x.onerror = function () { setConnected(false); setTimeout(poll, 5000); };
    x.send();
  }

  /* -- clock --------------------------------------------------------------------- */
  function tick() {
    var now = new Date(), text;
    try {
      text = now.toLocaleTimeString(cfg.lang, { hour: "numeric", minute: "2-digit" });
    } catch (e) {
      text = ("0" + now.getHours()).slice(-2) + ":" + ("0" + now.getMinutes()).slice(-2);
    }
    var el = $("clock");
    if (el.textContent !== text) el.textContent = text;
  }

  setQueues(cfg.state.queues || []);
  calls = (cfg.state.recent_calls || []).slice(0, CALLS_MAX);
  hero = calls[0] || null;
  tick();
  setInterval(tick, 1000);
  initSound();
  connect();
})();
