// The kiosk: back to the start screen after a ticket, queue buttons kept fresh, errors shown.
(function () {
  "use strict";
  var config = JSON.parse(document.getElementById("jonot-config").textContent);
  var screen = document.getElementById("screen");
  var banner = document.getElementById("banner");
  var timer = null;

  function startUrl(part) {
    return config.start + (config.start.indexOf("?") < 0 ? "?" : "&") + "part=" + part;
  }

  function showBanner(text) {
    banner.textContent = text;
    banner.hidden = !text;
  }

  /* Each fetch names its own source: htmx keeps one request slot per source and queues
     only the latest, so a queue refresh must not take the place of the way back. */
  function backToStart() {
    clearTimeout(timer);
    timer = null;
    htmx.ajax("GET", startUrl("start"), { source: "#screen", target: "#screen", swap: "innerHTML" })
      .catch(function () { window.location.href = config.start; });
  }

  function armReturn() {
    clearTimeout(timer);
    var shown = screen.querySelector("[data-return]");
    if (!shown) return;
    var seconds = parseInt(shown.getAttribute("data-return"), 10) || config.return_s;
    timer = setTimeout(backToStart, seconds * 1000);
  }

  // A tap on the ticket (or a refusal) screen finishes it; ignored for a moment so the
  // second half of a double tap does not dismiss the ticket it just made.
  var shownAt = 0;
  screen.addEventListener("click", function () {
    if (screen.querySelector("[data-back]") && Date.now() - shownAt > 800) backToStart();
  });

  document.body.addEventListener("htmx:afterSwap", function (evt) {
    if (evt.detail.target !== screen) return;
    showBanner("");
    shownAt = Date.now();
    armReturn();
  });

  // The kiosk's refusal screens come as 4xx: swap them like any answer. A refused CSRF
  // token (the session cookie was lost) is mended by loading the page afresh.
  document.body.addEventListener("htmx:beforeSwap", function (evt) {
    var status = evt.detail.xhr.status;
    if (status === 400) { window.location.reload(); return; }
    if (status >= 400 && status < 500 && evt.detail.target === screen) {
      evt.detail.shouldSwap = true;
      evt.detail.isError = false;
    }
  });

  document.body.addEventListener("htmx:sendError", function () {
    showBanner(config.texts.offline);
  });
  document.body.addEventListener("htmx:responseError", function (evt) {
    if (evt.detail.xhr.status >= 500) showBanner(config.texts.offline);
  });

  // "Done"/Enter on the on-screen keyboard closes it; it must not take a number for
  // whichever queue happens to be first.
  screen.addEventListener("keydown", function (evt) {
    if (evt.key === "Enter" && evt.target.matches && evt.target.matches("input[type=text]")) {
      evt.preventDefault();
      evt.target.blur();
    }
  });

  // Queues opened, closed or renamed in admin show at once (on the start screen).
  function refreshQueues() {
    if (!document.getElementById("queues")) return;
    htmx.ajax("GET", startUrl("queues"), { source: "#queues", target: "#queues", swap: "innerHTML" })
      .catch(function () {});
  }
  if (window.EventSource) {
    var source = new EventSource(config.stream);
    source.addEventListener("queue", refreshQueues);
    source.addEventListener("open", refreshQueues);
  } else {
    setInterval(refreshQueues, 30000);
  }

  armReturn();  // a ticket page loaded without script help still returns
})();
