"""Finding the office server from a desk PC: browse, choose, remember, reconnect.

Plain code with no window, so that it is tested on its own: ``browse`` lists the
servers announced as ``_jonot._tcp``, ``decide`` says what to do with them,
``Memory`` keeps the choice in the user's config dir, and ``Connector`` puts
them together for one attempt at a time (the desk window calls it again and
again while the server is unreachable). A server is remembered by its URL and
its location id, so that it is found again when it comes back at a new address.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import SERVICE_TYPE

PROBE_TIMEOUT_S = 2.0


@dataclass(frozen=True)
class Server:
    """One announced office server."""

    name: str
    address: str
    port: int
    location: str
    version: str = ""
    path: str = "/"

    @property
    def url(self) -> str:
        host = f"[{self.address}]" if ":" in self.address else self.address
        return f"http://{host}:{self.port}"


@dataclass
class Decision:
    """What to do next: ``connect`` to ``url``, let the user ``choose``, or ``retry``."""

    state: str
    url: str | None = None
    location: str | None = None
    name: str | None = None
    servers: list[Server] = field(default_factory=list)
    reason: str = ""


def browse(timeout: float = 2.0, interfaces: Sequence[str] | None = None,
           want_location: str | None = None) -> list[Server]:
    """The servers announced on the LAN within ``timeout`` seconds, by name.

    Every server seen in that time is resolved (a second at most each), even when
    that takes longer. Returns early once a server of ``want_location`` is seen. ``interfaces``: the
    addresses to browse from (default: every interface). Empty when multicast
    cannot be used.
    """
    from zeroconf import InterfaceChoice, ServiceBrowser, ServiceStateChange, Zeroconf

    try:
        zc = Zeroconf(interfaces=list(interfaces) if interfaces else InterfaceChoice.All)
    except OSError:
        return []
    found: dict[str, Server] = {}
    try:
        names: set[str] = set()

        def on_change(zeroconf: Any, service_type: str, name: str,
                      state_change: ServiceStateChange) -> None:
            if state_change is ServiceStateChange.Removed:
                names.discard(name)
            else:
                names.add(name)

        browser = ServiceBrowser(zc, SERVICE_TYPE, handlers=[on_change])
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for name in list(names - set(found)):
                server = _resolve(zc, name)
                if server is not None:
                    found[name] = server
            if want_location and any(s.location == want_location for s in found.values()):
                break
            time.sleep(0.05)
        browser.cancel()
        if not want_location:
            for name in list(names - set(found)):  # seen in time, not yet resolved
                server = _resolve(zc, name)
                if server is not None:
                    found[name] = server
        for name in list(found):
            if name not in names:
                del found[name]  # said goodbye meanwhile
    finally:
        zc.close()
    return sorted(found.values(), key=lambda s: (s.name.lower(), s.url))


def _resolve(zc: Any, name: str) -> Server | None:
    info = zc.get_service_info(SERVICE_TYPE, name, 1000)
    if info is None or not info.port:
        return None
    props = {k.decode(): (v or b"").decode() for k, v in info.properties.items()}
    addresses = info.parsed_scoped_addresses()
    if not addresses:
        return None
    # IPv4 first: a browser typing it needs no brackets, and every LAN has it.
    addresses.sort(key=lambda a: ":" in a)
    return Server(name=props.get("name") or name.removesuffix("." + SERVICE_TYPE),
                  address=addresses[0], port=info.port, location=props.get("location", ""),
                  version=props.get("version", ""), path=props.get("path", "/"))


def decide(servers: Sequence[Server], remembered: dict[str, Any] | None) -> Decision:
    """Connect to the remembered office when it is announced; with none remembered, to
    the only server there is, or let the user choose among several. Otherwise retry
    (the remembered office is not announced: the others are offered, never taken)."""
    remembered = remembered or {}
    location = remembered.get("location")
    if location:
        for server in servers:
            if server.location == location:
                return _connect(server)
        return Decision("retry", servers=list(servers),
                        reason=f"{remembered.get('name') or 'the office'} is not announced "
                               "on this network")
    if len(servers) == 1:
        return _connect(servers[0])
    if servers:
        return Decision("choose", servers=list(servers),
                        reason=f"{len(servers)} offices announce a server on this network")
    return Decision("retry", reason="no Jonot Local server found on this network")


def _connect(server: Server) -> Decision:
    return Decision("connect", url=server.url, location=server.location, name=server.name)


def probe(url: str, timeout: float = PROBE_TIMEOUT_S) -> dict[str, Any] | None:
    """The server's ``/api/v1/health`` at ``url``, or ``None`` when it does not answer."""
    try:
        with urllib.request.urlopen(url.rstrip("/") + "/api/v1/health",  # noqa: S310
                                    timeout=timeout) as response:
            body = json.loads(response.read(64 * 1024))
    except (OSError, ValueError, urllib.error.URLError):
        return None
    return body if isinstance(body, dict) and body.get("status") == "ok" else None


class Memory:
    """The chosen server (``url``, ``location``, ``name``) in a small JSON file."""

    def __init__(self, path: Path | None = None) -> None:
        if path is None:
            import platformdirs

            path = Path(platformdirs.user_config_dir("jonot-local", appauthor=False)) / "desk.json"
        self.path = path

    def load(self) -> dict[str, Any]:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def save(self, url: str, location: str | None = None, name: str | None = None) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"url": url, "location": location, "name": name}),
                       encoding="utf-8")
        tmp.replace(self.path)


class Connector:
    """Finds the server to show, one attempt per ``find()``; remembers what connects.

    Order: a typed URL (``--server`` or typed in the window), then the remembered
    URL when the same location answers there, then a browse that looks for the
    remembered location first. ``browse`` and ``probe`` are the functions above
    unless a test passes others.
    """

    def __init__(self, memory: Memory, typed_url: str | None = None, *,
                 browse: Callable[..., list[Server]] = browse,
                 probe: Callable[[str], dict[str, Any] | None] = probe,
                 browse_timeout: float = 2.0, interfaces: Sequence[str] | None = None) -> None:
        self.memory = memory
        self.typed_url = _normal_url(typed_url) if typed_url else None
        self._browse = browse
        self._probe = probe
        self.browse_timeout = browse_timeout
        self.interfaces = interfaces

    def find(self) -> Decision:
        remembered = self.memory.load()
        if self.typed_url:
            health = self._probe(self.typed_url)
            if health is not None:
                return self._connected(self.typed_url, health)
            if not remembered.get("location"):
                return Decision("retry", url=self.typed_url,
                                reason=f"server not reachable at {self.typed_url}")
        url = remembered.get("url")
        if url and url != self.typed_url:
            health = self._probe(url)
            if health is not None and (not remembered.get("location")
                                       or health.get("location_id") == remembered["location"]):
                return self._connected(url, health)
        servers = self._browse(timeout=self.browse_timeout, interfaces=self.interfaces,
                               want_location=remembered.get("location"))
        decision = decide(servers, remembered)
        if decision.state == "connect" and decision.url:
            health = self._probe(decision.url)
            if health is None:
                return Decision("retry", url=decision.url,
                                reason=f"{decision.name} was announced at {decision.url} "
                                       "but does not answer")
            return self._connected(decision.url, health)
        if decision.state == "retry" and (self.typed_url or url):
            decision.url = self.typed_url or url
            decision.reason = f"server not reachable at {decision.url}; {decision.reason}"
        return decision

    def choose(self, server: Server) -> None:
        """The user picked ``server``: remember it."""
        self.typed_url = None
        self.memory.save(server.url, server.location, server.name)

    def use_url(self, url: str) -> None:
        """The user typed ``url``: try it first from now on."""
        self.typed_url = _normal_url(url)

    def alive(self, url: str) -> bool:
        """Whether the server at ``url`` still answers."""
        return self._probe(url) is not None

    def _connected(self, url: str, health: dict[str, Any]) -> Decision:
        location = health.get("location_id")
        name = health.get("location_name")
        self.memory.save(url, location, name)
        if self.typed_url == url:
            self.typed_url = None  # remembered now, with its location: followed if it moves
        return Decision("connect", url=url, location=location, name=name)


def _normal_url(url: str) -> str:
    url = url.strip().rstrip("/")
    if "://" not in url:
        url = "http://" + url
    for suffix in ("/desk", "/api/v1/health"):
        url = url.removesuffix(suffix)
    return url
