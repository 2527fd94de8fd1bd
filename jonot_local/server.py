"""Running the app under waitress, sized for live streams.

Every open Server-Sent Events stream holds one waitress worker thread, so the
thread count is high (``threads``) while database connections stay a small
fixed pool. waitress's default ``select()`` loop cannot watch file
descriptors numbered 1024 or more; ``poll()`` is used instead. No one client
can hold the server: see ``jonot_local.netguard``.
"""

from __future__ import annotations

import logging
import os
import platform
import signal
import sys
import threading
from collections.abc import Callable, Mapping
from typing import Any

from flask import Flask

from .netguard import create_guarded_server
from .settings import Settings, process_environment

DEFAULT_MAX_BODY = 256 * 1024  # when the app sets no MAX_CONTENT_LENGTH

# glibc keeps a cache of freed blocks per thread (tcache). Waitress hands each
# request to the next of its hundreds of threads in turn, so every thread's
# cache fills and none is given back: in a soak that was about 30 MiB of RSS
# over 600 threads, growing for the first half hour. Without the cache each
# block goes back to its arena (the GIL keeps the arenas' locks quiet).
MALLOC_TUNABLE = "glibc.malloc.tcache_count=0"


def malloc_environ(environ: Mapping[str, str], system: str | None = None,
                   libc: str | None = None) -> dict[str, str] | None:
    """The environment to run the server with on glibc, or ``None`` when nothing changes.

    ``GLIBC_TUNABLES`` is read when the process starts, so ``serve`` execs
    itself again with it. A ``tcache_count`` already given is kept as given.
    """
    system = platform.system() if system is None else system
    libc = platform.libc_ver()[0] if libc is None else libc
    current = environ.get("GLIBC_TUNABLES", "")
    if system != "Linux" or libc != "glibc" or "glibc.malloc.tcache_count" in current:
        return None
    return {**environ, "GLIBC_TUNABLES": f"{current}:{MALLOC_TUNABLE}" if current
            else MALLOC_TUNABLE}


def exec_with_malloc_tuned() -> None:
    """Re-execute this process (same pid, same arguments) with ``malloc_environ``.

    Only when the process was started as ``… serve`` (not when ``serve`` is
    invoked from inside another program, such as a test runner).
    """
    env = malloc_environ(process_environment())
    if env is not None and sys.argv[1:2] == ["serve"] and sys.executable and sys.orig_argv:
        sys.stdout.flush()
        sys.stderr.flush()
        os.execve(sys.executable, [sys.executable, *sys.orig_argv[1:]], env)  # noqa: S606


def quiet_logs() -> None:
    """Keep waitress's internal warnings ("Task queue depth is N") out of users' logs."""
    logging.getLogger("waitress.queue").setLevel(logging.ERROR)
    logging.getLogger("waitress").setLevel(logging.ERROR)


def make_server(app: Flask, host: str, port: int) -> Any:
    """A waitress server bound to ``host:port`` (port 0 picks a free one), not yet running.

    Guarded (``jonot_local.netguard``): open connections per client address are
    capped (off behind trusted proxies), request headers must arrive within
    ``header_timeout_s``, and a body over the app's ``MAX_CONTENT_LENGTH`` is
    refused with 413 on its header, before it is read.
    """
    rt = app.extensions.get("jonot") or app.extensions.get("jonot_cloud")  # office or cloud
    found = getattr(rt, "settings", None)
    settings = found if isinstance(found, Settings) else Settings.load(environ={})
    per_address = 0 if settings.trusted_proxies > 0 else settings.connections_per_address
    max_body = app.config.get("MAX_CONTENT_LENGTH") or DEFAULT_MAX_BODY
    quiet_logs()
    if settings.thread_stack_kib:
        # Threads started from here on (waitress starts its workers below) get this stack.
        threading.stack_size(max(256, settings.thread_stack_kib) * 1024)
    return create_guarded_server(
        app,
        connections_per_address=per_address,
        header_timeout_s=settings.header_timeout_s,
        host=host,
        port=port,
        threads=settings.threads,
        connection_limit=settings.connection_limit,
        asyncore_use_poll=True,
        # Keep reading while a request runs, so a live stream's client hanging up is
        # noticed at once (waitress.client_disconnected) and its thread freed.
        channel_request_lookahead=1,
        channel_timeout=120,
        # waitress refuses a body of this size or more: one byte over the app's limit.
        max_request_body_size=int(max_body) + 1,
        ident="jonot-local",
        # Behind trusted proxies, ProxyFix (create_app) reads X-Forwarded-*: keep them.
        clear_untrusted_proxy_headers=settings.trusted_proxies == 0,
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
