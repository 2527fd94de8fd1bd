"""The zeroconf announcer: ``_jonot._tcp.local.`` and a stable ``jonot.local`` host name.

One named daemon thread does all the network work, so ``serve`` never waits on
it: it opens a python-zeroconf responder on the announced addresses, claims a
host name (``jonot``, else ``jonot-2``, … when another responder answers for
it), registers the service, then every ``poll_s`` seconds looks at the
machine's addresses and the office's name and announces again when they
changed. When multicast cannot be used (no route, port 5353 held by another
responder that does not share it, an address that is not this machine's) the
server goes on serving; the reason is logged once and shown by ``status()``.
"""

from __future__ import annotations

import ipaddress
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from . import SERVICE_TYPE

log = logging.getLogger("jonot_local.lan")

# How long a query for our host name may go unanswered before the name is ours. A
# responder answers a record it multicast in the last second only after a second
# query (python-zeroconf keeps RFC 6762's rate limit), so this is longer than one.
HOST_NAME_WAIT_S = 1.5
MAX_HOST_NAME_TRIES = 9


class DiscoveryOff:
    """What health says when nothing is announced by this process."""

    def __init__(self, reason: str) -> None:
        self.reason = reason

    def status(self) -> dict[str, Any]:
        return {"state": "off", "reason": self.reason, "name": None, "host_name": None,
                "addresses": []}


class Announcer:
    """Announces one server by zeroconf from its own thread; a ``services`` entry.

    ``describe()`` returns ``(location_id, location_name)`` and ``addresses()`` the
    addresses to announce on; both are called again every ``poll_s`` seconds.
    """

    name = "zeroconf"

    def __init__(self, *, port: int, version: str, describe: Callable[[], tuple[str, str]],
                 addresses: Callable[[], list[str]], host_name: str = "jonot",
                 poll_s: float = 30.0) -> None:
        self.port = port
        self.version = version
        self._describe = describe
        self._addresses = addresses
        self.base_host_name = _host_label(host_name)
        self.poll_s = poll_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._zc: Any = None
        self._info: Any = None
        self._announced: tuple[Any, ...] | None = None  # what is on the network now
        self._status: dict[str, Any] = {"state": "off", "reason": "starting", "name": None,
                                        "host_name": None, "addresses": []}
        self._last_reason: str | None = None
        self.announced_at: float | None = None  # monotonic time of the last announcement

    # -- the service -------------------------------------------------------------------
    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="zeroconf-announcer",
                                        daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Withdraw the announcement (goodbye packets) and end the thread."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
        self._set(state="off", reason="the server stopped", name=None, host_name=None,
                  addresses=[])

    def status(self) -> dict[str, Any]:
        """``state`` (off, announcing, failed), ``reason``, ``name``, ``host_name``,
        ``addresses``."""
        with self._lock:
            return dict(self._status, addresses=list(self._status["addresses"]))

    # -- the thread ----------------------------------------------------------------------
    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                self._step()
                self._stop.wait(self.poll_s)
        finally:
            self._withdraw()

    def _step(self) -> None:
        try:
            location_id, location_name = self._describe()
            addresses = self._addresses()
        except Exception as exc:  # the database closing at shutdown, say
            self._failed(f"cannot read the office's name or addresses: {exc}")
            return
        wanted = (location_id, location_name, tuple(addresses))
        if wanted == self._announced:
            return
        self._withdraw()
        if not addresses:
            self._failed("this machine has no LAN address yet; announcing as soon as it has one")
            return
        try:
            self._announce(location_id, location_name, addresses)
        except OSError as exc:
            self._withdraw()
            self._failed(f"multicast is not available on {', '.join(addresses)} ({_why(exc)})")
            return
        except Exception as exc:
            self._withdraw()
            self._failed(f"announcing on {', '.join(addresses)} failed: {_why(exc)}")
            return
        self._announced = wanted

    def _announce(self, location_id: str, location_name: str, addresses: list[str]) -> None:
        from zeroconf import IPVersion, ServiceInfo, Zeroconf

        versions = {ipaddress.ip_address(a).version for a in addresses}
        ip_version = IPVersion.All if versions == {4, 6} else (
            IPVersion.V6Only if versions == {6} else IPVersion.V4Only)
        self._zc = Zeroconf(interfaces=addresses, ip_version=ip_version)
        host_name = self._claim_host_name(self._zc)
        instance = _instance_name(location_name)
        self._info = ServiceInfo(
            SERVICE_TYPE, f"{instance}.{SERVICE_TYPE}", port=self.port,
            parsed_addresses=addresses, server=f"{host_name}.local.",
            properties={"path": "/", "version": self.version, "location": location_id,
                        "name": location_name})
        self._zc.register_service(self._info, allow_name_change=True)
        name = self._info.name.removesuffix("." + SERVICE_TYPE)
        self.announced_at = time.monotonic()
        self._set(state="announcing", reason=None, name=name, host_name=f"{host_name}.local",
                  addresses=list(addresses))
        self._last_reason = None
        log.info("announced %r on the LAN as http://%s.local:%s/ (%s)", name, host_name,
                 self.port, ", ".join(addresses))

    def _claim_host_name(self, zc: Any) -> str:
        """The base host name, or the first ``base-N`` no other responder answers for."""
        from zeroconf import AddressResolver, DNSQuestionType

        for n in range(1, MAX_HOST_NAME_TRIES + 1):
            candidate = self.base_host_name if n == 1 else f"{self.base_host_name}-{n}"
            resolver = AddressResolver(f"{candidate}.local.")
            if not resolver.request(zc, int(HOST_NAME_WAIT_S * 1000),
                                    question_type=DNSQuestionType.QM):
                if n > 1:
                    log.warning("mDNS host name %s.local is taken by another responder; "
                                "announcing as %s.local", self.base_host_name, candidate)
                return candidate
            if self._stop.is_set():
                break
        raise RuntimeError(f"every host name from {self.base_host_name}.local to "
                           f"{self.base_host_name}-{MAX_HOST_NAME_TRIES}.local is taken")

    def _withdraw(self) -> None:
        zc, self._zc, info, self._info = self._zc, None, self._info, None
        self._announced = None
        if zc is None:
            return
        try:
            if info is not None:
                zc.unregister_service(info)
        except Exception:
            log.debug("unregistering the service failed", exc_info=True)
        finally:
            zc.close()

    def _failed(self, reason: str) -> None:
        self._set(state="failed", reason=reason, name=None, host_name=None, addresses=[])
        if reason != self._last_reason:
            log.warning("not announced on the LAN: %s; the server serves anyway", reason)
            self._last_reason = reason

    def _set(self, **status: Any) -> None:
        with self._lock:
            self._status = status


def _why(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__


def _instance_name(location_name: str) -> str:
    """A DNS-SD instance label from the office's name: no dots, at most 63 bytes."""
    name = " ".join(location_name.replace(".", " ").split()) or "Jonot Local"
    while len(name.encode()) > 63:
        name = name[:-1]
    return name.rstrip()


def _host_label(host_name: str) -> str:
    """``jonot`` from ``jonot``, ``jonot.local`` or ``Jonot.local.``."""
    label = host_name.strip().rstrip(".").lower().removesuffix(".local")
    return label or "jonot"


def announcer_for(app: Any, host: str, port: int) -> Announcer:
    """The announcer of ``app`` served on ``host:port``, also set as its runtime's discovery."""
    from .. import __version__
    from ..domain.location import get_location
    from .interfaces import announced_addresses

    rt = app.extensions["jonot"]
    settings = rt.settings

    def describe() -> tuple[str, str]:
        with rt.store.read() as tx:
            location = get_location(tx)
        return str(location["id"]), str(location["name"])

    announcer = Announcer(
        port=int(port), version=__version__, describe=describe,
        addresses=lambda: announced_addresses(host, settings.mdns_interfaces),
        host_name=settings.mdns_hostname, poll_s=settings.mdns_poll_s)
    rt.discovery = announcer
    return announcer


def discovery_status(discovery: Any) -> dict[str, Any]:
    """Health's ``discovery`` object for a runtime's announcer (or ``None``)."""
    if discovery is None:
        return DiscoveryOff("not announced by this process (not started by serve)").status()
    return discovery.status()
