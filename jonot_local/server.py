"""Running the app under waitress, sized for live streams.

Every open Server-Sent Events stream holds one waitress worker thread, so the
thread count is high (``threads``) while database connections stay a small
fixed pool. waitress's default ``select()`` loop cannot watch file
descriptors numbered 1024 or more; ``poll()`` is used instead.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable
from typing import Any

from flask import Flask
from waitress.server import create_server

from .runtime import Runtime


def quiet_logs() -> None:
    """Keep waitress's internal warnings ("Task queue depth is N") out of users' logs."""
    logging.getLogger("waitress.queue").setLevel(logging.ERROR)
    logging.getLogger("waitress").setLevel(logging.ERROR)


def make_server(app: Flask, host: str, port: int) -> Any:
    """A waitress server bound to ``host:port`` (port 0 picks a free one), not yet running."""
    settings = app.extensions["jonot"].settings if isinstance(
        app.extensions.get("jonot"), Runtime) else None
    threads = settings.threads if settings else 64
    connection_limit = settings.connection_limit if settings else 200
    quiet_logs()
    return create_server(
        app,
        host=host,
        port=port,
        threads=threads,
        connection_limit=connection_limit,
        asyncore_use_poll=True,
        # Keep reading while a request runs, so a live stream's client hanging up is
        # noticed at once (waitress.client_disconnected) and its thread freed.
        channel_request_lookahead=1,
        channel_timeout=120,
        ident="jonot-local",
        clear_untrusted_proxy_headers=True,
    )


def run_until_signal(server: Any, on_stop: Callable[[], None] | None = None) -> None:
    """Serve until SIGINT/SIGTERM, then close the listening socket and run ``on_stop``."""
    stopping = threading.Event()

    def _stop(signum: int, frame: Any) -> None:
        stopping.set()
        server.close()
        # waitress's loop runs while any connection is open, and a live stream never
        # goes idle: close them all so the process stops now, not at channel_timeout.
        for channel in list(getattr(server, "active_channels", {}).values()):
            channel.handle_close()

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _stop)
        signal.signal(signal.SIGINT, _stop)
    try:
        server.run()
    except (OSError, ValueError):
        if not stopping.is_set():
            raise
    finally:
        if on_stop is not None:
            on_stop()
