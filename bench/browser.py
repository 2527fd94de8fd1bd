"""Headless Chromium for the page benchmarks: launch, the marks pages write, memory.

Playwright (Python) drives Debian's ``/usr/bin/chromium``. The pages get small
init scripts that timestamp what a person would see: a ``MutationObserver``
writes ``performance.timeOrigin + performance.now()`` (the machine's wall
clock in ms, as Python's ``time.time()`` is) when a called code enters the
display's board or the ticket page's "your turn" box appears, and the next
animation frame after it (the first frame that can show it).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-background-networking", "--disable-gpu",
        "--disable-component-update", "--disable-sync", "--no-first-run",
        "--autoplay-policy=no-user-gesture-required"]

# window.__jonotWatch(code): from now on, stamp when ``code`` is in #board's text
DISPLAY_MARKS = """
(function () {
  var want = null;
  window.__jonotSeen = null; window.__jonotFrame = null;
  function now() { return performance.timeOrigin + performance.now(); }
  function check() {
    if (!want || window.__jonotSeen) return;
    var board = document.getElementById("board");
    if (board && board.textContent.indexOf(want) >= 0) {
      window.__jonotSeen = now();
      requestAnimationFrame(function () { window.__jonotFrame = now(); });
    }
  }
  window.__jonotWatch = function (code) {
    want = code; window.__jonotSeen = null; window.__jonotFrame = null; check();
  };
  new MutationObserver(check).observe(document, {childList: true, subtree: true,
                                                  characterData: true});
})();
"""

# the ticket page: stamp when #called stops being hidden ("It's your turn")
TICKET_MARKS = """
(function () {
  window.__jonotTurn = null; window.__jonotTurnFrame = null;
  function now() { return performance.timeOrigin + performance.now(); }
  function check() {
    var el = document.getElementById("called");
    if (window.__jonotTurn || !el || el.hidden) return;
    window.__jonotTurn = now();
    requestAnimationFrame(function () { window.__jonotTurnFrame = now(); });
  }
  new MutationObserver(check).observe(document, {attributes: true, childList: true,
                                                  subtree: true, attributeFilter: ["hidden"]});
})();
"""

# the largest contentful paint, as the page reports it
LCP = """
try {
  new PerformanceObserver(function (list) {
    var e = list.getEntries(); window.__jonotLcp = e[e.length - 1].startTime;
  }).observe({type: "largest-contentful-paint", buffered: true});
} catch (e) { /* an old engine */ }
"""

LOAD_FIGURES = """
() => {
  const nav = performance.getEntriesByType("navigation")[0];
  const res = performance.getEntriesByType("resource");
  const paint = {};
  for (const p of performance.getEntriesByType("paint")) paint[p.name] = p.startTime;
  return {
    document_bytes: nav.transferSize,
    bytes: nav.transferSize + res.reduce((sum, r) => sum + r.transferSize, 0),
    decoded_bytes: nav.decodedBodySize + res.reduce((sum, r) => sum + r.decodedBodySize, 0),
    requests: 1 + res.length,
    ttfb_ms: nav.responseStart,
    fcp_ms: paint["first-contentful-paint"] ?? null,
    lcp_ms: window.__jonotLcp ?? null,
    dom_content_loaded_ms: nav.domContentLoadedEventEnd,
    load_ms: nav.loadEventEnd,
  };
}
"""


def available() -> str | None:
    """Why the browser benches cannot run here, or ``None`` when they can."""
    if not Path(CHROMIUM).exists():
        return f"{CHROMIUM} is missing (apt-get install -y chromium)"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "playwright is not installed (pip install playwright)"
    return None


@contextmanager
def chromium() -> Iterator[Any]:
    """A headless Chromium (Playwright's ``Browser``), closed afterwards."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        try:
            yield browser
        finally:
            browser.close()


def new_context(browser: Any, origin: str, *, width: int = 1920, height: int = 1080,
                sound: bool = False, mobile: bool = False) -> Any:
    """A fresh context (empty cache, no cookies) that refuses anything off ``origin``."""
    context = browser.new_context(viewport={"width": width, "height": height},
                                  is_mobile=mobile, has_touch=mobile, locale="en-US")
    if sound:
        context.add_init_script("localStorage.setItem('jonot.sound', 'on')")

    def guard(route: Any) -> None:
        url = route.request.url
        if url.startswith(origin) or url.startswith("data:"):
            route.continue_()
        else:
            route.abort()

    context.route("**/*", guard)
    return context


def js_memory(page: Any) -> dict[str, Any]:
    """The page's JS heap after a full garbage collection, and its DOM counters (CDP)."""
    cdp = page.context.new_cdp_session(page)
    try:
        cdp.send("HeapProfiler.enable")
        cdp.send("HeapProfiler.collectGarbage")
        heap = cdp.send("Runtime.getHeapUsage")
        counters = cdp.send("Memory.getDOMCounters")
    finally:
        cdp.detach()
    return {"heap_used_kib": round(heap["usedSize"] / 1024, 1),
            "heap_total_kib": round(heap["totalSize"] / 1024, 1),
            "dom_nodes": counters["nodes"], "listeners": counters["jsEventListeners"]}


def _descendants(root: int) -> list[int]:
    """Every process below ``root`` (Linux /proc)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry))
    found, todo = [], [root]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def chromium_memory() -> dict[str, Any]:
    """This process's Chromium (started through Playwright's driver): how many processes,
    and their proportional set size (shared pages split between them)."""
    pss_kib = count = 0
    for pid in _descendants(os.getpid()):
        try:
            if "chromium" not in os.readlink(f"/proc/{pid}/exe"):
                continue
            rollup = Path(f"/proc/{pid}/smaps_rollup").read_text()
        except OSError:
            continue
        for line in rollup.splitlines():
            if line.startswith("Pss:"):
                pss_kib += int(line.split()[1])
                count += 1
                break
    return {"processes": count, "pss_mib": round(pss_kib / 1024, 1)}
