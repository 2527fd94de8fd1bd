"""The desk window: the server's ``/desk`` page in a pywebview window.

The window shows one of four things: "looking for the server", the desk page,
a picker when several offices announce a server, and "server not reachable —
retrying". A background thread drives it with ``discover.Connector`` and
reports each change on stderr (``desk: showing …``, ``desk: retrying …``,
``desk: choose …``). Cookies and storage are kept in the user's data dir
(``private_mode=False``), so a staff member stays signed in across restarts.
"""

from __future__ import annotations

import html
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from .discover import Connector, Decision, Memory, Server

ALIVE_EVERY_S = 2.0
RETRY_EVERY_S = 3.0
REBROWSE_EVERY_S = 5.0
TITLE = "Jonot Local — desk"


class DeskApi:
    """What the window's own pages may call (``window.pywebview.api``)."""

    def __init__(self) -> None:
        self._wake = threading.Event()
        self._servers: list[Server] = []
        self._picked: Server | None = None
        self._typed: str | None = None
        self._lock = threading.Lock()

    def choose(self, index: int) -> None:
        with self._lock:
            if 0 <= int(index) < len(self._servers):
                self._picked = self._servers[int(index)]
        self._wake.set()

    def use_url(self, url: str) -> None:
        if isinstance(url, str) and url.strip():
            with self._lock:
                self._typed = url.strip()
            self._wake.set()

    def _take(self) -> tuple[Server | None, str | None]:
        with self._lock:
            picked, typed, self._picked, self._typed = self._picked, self._typed, None, None
        return picked, typed


class DeskController:
    """Drives one window from its own thread until the window closes."""

    def __init__(self, window: Any, connector: Connector, api: DeskApi) -> None:
        self.window = window
        self.connector = connector
        self.api = api
        self.closed = threading.Event()
        self._shown: tuple[str, str] | None = None

    def run(self) -> None:
        while not self.closed.is_set():
            self._apply_user_input()
            decision = self.connector.find()
            if decision.state == "connect" and decision.url:
                self._show_page(decision)
                while not self.closed.is_set() and self.connector.alive(decision.url):
                    if self._wait(ALIVE_EVERY_S):
                        break  # the user typed another server
            elif decision.state == "choose":
                self._show("choose", picker_html(decision.servers, decision.reason))
                self.api._servers = list(decision.servers)
                say(f"choose one of {len(decision.servers)} servers")
                self._wait(REBROWSE_EVERY_S)
            else:
                self.api._servers = list(decision.servers)
                self._show("retry", retry_html(decision.reason, decision.servers))
                say(f"server not reachable — retrying ({decision.reason})")
                self._wait(RETRY_EVERY_S)

    def _wait(self, seconds: float) -> bool:
        """Sleep up to ``seconds``; True when the user chose or typed meanwhile."""
        woke = self.api._wake.wait(seconds)
        self.api._wake.clear()
        return woke

    def _apply_user_input(self) -> None:
        picked, typed = self.api._take()
        if picked is not None:
            self.connector.choose(picked)
        if typed:
            self.connector.use_url(typed)

    def _show_page(self, decision: Decision) -> None:
        url = f"{decision.url}/desk"
        if self._shown != ("page", url):
            self.window.load_url(url)
            self._shown = ("page", url)
            say(f"showing {url} ({decision.name})")

    def _show(self, kind: str, page: str) -> None:
        if self._shown != (kind, page):
            self.window.load_html(page)
            self._shown = (kind, page)


def say(message: str) -> None:
    print(f"desk: {message}", file=sys.stderr, flush=True)


_STYLE = """
body { font-family: system-ui, sans-serif; margin: 0; display: flex; min-height: 100vh;
       align-items: center; justify-content: center; background: #f4f5f7; color: #1d232b; }
main { max-width: 40rem; padding: 2rem; background: #fff; border-radius: 12px;
       box-shadow: 0 2px 12px rgba(0,0,0,.12); }
h1 { font-size: 2rem; margin-top: 0; } .reason { color: #5a6270; }
.retry h1 { color: #a3260f; } .spin { font-size: 1.1rem; }
button { font: inherit; padding: .6rem 1rem; margin: .3rem 0; width: 100%; text-align: left;
         border: 1px solid #c7ccd4; border-radius: 8px; background: #fff; cursor: pointer; }
button small { display: block; color: #5a6270; }
form { display: flex; gap: .5rem; margin-top: 1.5rem; }
input { flex: 1; font: inherit; padding: .5rem; }
form button { width: auto; }
"""

_TYPED_URL = """
<form onsubmit="window.pywebview.api.use_url(this.url.value); return false;">
  <input name="url" placeholder="or type the server's address, e.g. http://192.168.1.20:8080"
         aria-label="Server address">
  <button type="submit">Connect</button>
</form>
"""


def _page(body: str, cls: str = "") -> str:
    return (f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>{TITLE}"
            f"</title><style>{_STYLE}</style></head><body class='{cls}'><main>{body}"
            f"{_TYPED_URL}</main></body></html>")


def retry_html(reason: str, others: Sequence[Server] = ()) -> str:
    """The "server not reachable — retrying" screen, offering any other office found."""
    offer = f"<p>Other offices on this network:</p>{_buttons(others)}" if others else ""
    return _page("<h1>Server not reachable — retrying</h1>"
                 f"<p class='reason'>{html.escape(reason)}</p>"
                 "<p class='spin'>Trying again every few seconds. The desk page comes back "
                 f"by itself when the server answers.</p>{offer}", "retry")


def _buttons(servers: Sequence[Server]) -> str:
    return "".join(
        f"<button onclick='window.pywebview.api.choose({i})'>{html.escape(s.name)}"
        f"<small>{html.escape(s.url)}</small></button>" for i, s in enumerate(servers))


def picker_html(servers: Sequence[Server], reason: str = "") -> str:
    """A list of announced servers to choose from: office name and address."""
    buttons = _buttons(servers)
    return _page(f"<h1>Choose your office</h1><p class='reason'>{html.escape(reason)}</p>"
                 f"{buttons}", "choose")


def searching_html() -> str:
    return _page("<h1>Looking for the server…</h1>"
                 "<p class='reason'>Searching this network for Jonot Local.</p>")


def storage_dir() -> Path:
    """Where the window keeps cookies and local storage (the staff session)."""
    import platformdirs

    return Path(platformdirs.user_data_dir("jonot-local", appauthor=False)) / "desk-window"


def _gui() -> Literal["qt"] | None:
    """Qt on Linux when the ``desk`` extra put it there (pywebview tries GTK first);
    elsewhere pywebview's own choice (EdgeChromium on Windows)."""
    if not sys.platform.startswith("linux"):
        return None
    import importlib.util

    return "qt" if importlib.util.find_spec("PyQt6") or importlib.util.find_spec("PySide6") \
        else None


def run_desk(server_url: str | None, interfaces: Sequence[str] | None = None,
             data_dir: Path | None = None) -> None:
    """Open the desk window and drive it until it is closed. Needs pywebview's GUI.

    ``data_dir``: where the chosen server and the session are kept (default: the
    user's config and data dirs).
    """
    import webview

    api = DeskApi()
    memory = Memory(Path(data_dir) / "desk.json" if data_dir else None)
    connector = Connector(memory, server_url, interfaces=interfaces, browse_timeout=3.0)
    window = webview.create_window(TITLE, html=searching_html(), js_api=api,
                                   width=1280, height=800)
    assert window is not None  # create_window returns the window it made
    controller = DeskController(window, connector, api)
    def on_closed() -> None:
        controller.closed.set()
        api._wake.set()

    window.events.closed += on_closed
    storage = Path(data_dir) / "desk-window" if data_dir else storage_dir()
    storage.mkdir(parents=True, exist_ok=True)
    say("starting")
    webview.start(controller.run, private_mode=False, storage_path=str(storage),
                  gui=_gui())
    controller.closed.set()
