"""Background services of a running server, started and stopped from one place.

Each service is a named daemon thread (or an object with ``start``/``stop``)
that stops cleanly: a stop event, then a join with a timeout. The event hub
needs no thread but is closed here so live streams end at shutdown.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Protocol

from flask import Flask

from .runtime import Runtime

log = logging.getLogger("jonot_local.services")


class Service(Protocol):
    name: str

    def start(self) -> None: ...

    def stop(self, timeout: float = 5.0) -> None: ...


class PeriodicThread:
    """Runs ``fn`` every ``interval`` seconds in a named daemon thread until stopped."""

    def __init__(self, name: str, interval: float, fn: Callable[[], object]) -> None:
        self.name = name
        self.interval = interval
        self._fn = fn
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self._fn()
            except Exception:
                log.exception("%s failed; will try again in %s s", self.name, self.interval)

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)


class Services:
    """The background services of one app; ``start`` and ``stop`` them together."""

    def __init__(self, app: Flask) -> None:
        self.app = app
        self.runtime: Runtime = app.extensions["jonot"]
        self._services: list[Service] = []
        self._started = False

    def add(self, service: Service) -> None:
        """Register a service; it starts with the others (or now, if already started)."""
        self._services.append(service)
        if self._started:
            service.start()

    def start(self) -> None:
        """Start every registered service."""
        for service in self._services:
            log.debug("starting %s", service.name)
            service.start()
        self._started = True

    def stop(self, timeout: float = 5.0) -> None:
        """Stop services in reverse order, end live streams, close the database."""
        for service in reversed(self._services):
            try:
                service.stop(timeout)
            except Exception:
                log.exception("stopping %s failed", service.name)
        self._started = False
        self.runtime.hub.close()
        self.runtime.store.close()
