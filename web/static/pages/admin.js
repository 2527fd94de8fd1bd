/* The admin pages: a refused form comes back 4xx with the X-Admin-Form header and is
   swapped like any answer (the form keeps what was typed, the banner says why); any other
   failed request shows the server's banner fragment. After a swap, focus goes to the
   notice or the refused form's message, so keyboard and screen-reader users hear it. */
(function () {
  "use strict";
  var cfg = JSON.parse(document.getElementById("jonot-config").textContent);
  var T = cfg.texts;

  function $(id) { return document.getElementById(id); }
  function banner(html) {
    var b = $("banner");
    if (html) { b.innerHTML = html; b.hidden = false; } else { b.hidden = true; b.innerHTML = ""; }
  }

  document.body.addEventListener("htmx:beforeSwap", function (ev) {
    var xhr = ev.detail.xhr;
    if (xhr.status >= 400 && xhr.getResponseHeader("X-Admin-Form")) {
      ev.detail.shouldSwap = true;
      ev.detail.isError = false;
    }
  });
  document.body.addEventListener("htmx:responseError", function (ev) {
    banner(ev.detail.xhr.responseText || T.failed);
    $("banner").focus();
  });
  document.body.addEventListener("htmx:sendError", function () { banner(T.failed); });
  document.body.addEventListener("htmx:afterSwap", function (ev) {
    if (ev.detail.target.id !== "section") return;
    var el = document.querySelector("#section [data-focus]");
    if (el) el.focus();
  });
  document.addEventListener("click", function (ev) {
    var btn = ev.target.closest && ev.target.closest("[data-copy]");
    if (!btn) return;
    var input = document.querySelector(btn.getAttribute("data-copy"));
    input.focus();
    input.select();
    var done = function () { btn.textContent = T.copied; };
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(input.value).then(done, function () {});
    } else {
      try { if (document.execCommand("copy")) done(); } catch (e) { /* selected: Ctrl+C */ }
    }
  });
  /* Fields that only one kind of device uses are hidden for the others. */
  function kindFields() {
    var kind = document.getElementById("new-device-kind"), i;
    if (!kind) return;
    var only = document.querySelectorAll("[data-kind-only]");
    for (i = 0; i < only.length; i++) only[i].hidden = only[i].getAttribute("data-kind-only") !== kind.value;
  }
  document.addEventListener("change", function (ev) {
    if (ev.target.id === "new-device-kind") kindFields();
  });
  document.body.addEventListener("htmx:afterSettle", kindFields);
  kindFields();
  $("banner").setAttribute("tabindex", "-1");
})();
