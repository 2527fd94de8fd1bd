"""Helpers of the LAN tests: a server that announces itself, and a browser in another process.

mDNS stays on loopback: servers are told ``JONOT_MDNS_INTERFACES=127.0.0.1``
and the browser uses ``interfaces=["127.0.0.1"]``. Every test names its own
office and host name, so tests running side by side do not see each other's.
"""

from __future__ import annotations

import json
import queue
import re
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from .support import LiveServer, wait_for_health


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


class AnnouncingServer(LiveServer):
    """``jonot-local serve`` on 127.0.0.1 with zeroconf on (LiveServer turns it off)."""

    def __init__(self, data_dir: Path, name: str, host_name: str, port: int = 0,
                 env: dict[str, str] | None = None) -> None:
        super().__init__(data_dir, env={"JONOT_LOCATION_NAME": name,
                                        "JONOT_MDNS_HOSTNAME": host_name,
                                        "JONOT_MDNS_INTERFACES": "127.0.0.1", **(env or {})})
        self.port = port
        self.started_at = 0.0
        self.stderr_lines: list[str] = []

    def start(self, timeout: float = 20.0) -> AnnouncingServer:
        cmd = [sys.executable, "-m", "jonot_local", "serve", "--host", "127.0.0.1",
               "--port", str(self.port), "--data-dir", str(self.data_dir)]
        self.started_at = time.monotonic()
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True, env=self.env)
        threading.Thread(target=self._read_stderr, daemon=True).start()
        deadline = time.monotonic() + timeout
        assert self.proc.stdout is not None
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if not line and self.proc.poll() is not None:
                raise RuntimeError(f"server exited: {''.join(self.stderr_lines)}")
            m = re.search(r"http://127\.0\.0\.1:(\d+)/api/v1/health", line)
            if m:
                self.port = int(m.group(1))
                self.url = f"http://127.0.0.1:{self.port}"
                break
        wait_for_health(self.url, deadline)
        return self

    def _read_stderr(self) -> None:
        assert self.proc is not None and self.proc.stderr is not None
        for line in self.proc.stderr:
            self.stderr_lines.append(line)

    def health(self) -> dict[str, Any]:
        import requests

        return requests.get(self.url + "/api/v1/health", timeout=5).json()

    def wait_discovery(self, state: str, timeout: float = 10.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            discovery = self.health()["discovery"]
            if discovery["state"] == state or time.monotonic() > deadline:
                return discovery
            time.sleep(0.05)


BROWSER = r"""
import json, sys, time
from zeroconf import AddressResolver, ServiceBrowser, ServiceStateChange, Zeroconf

zc = Zeroconf(interfaces=["127.0.0.1"])

def say(**event):
    print(json.dumps({"t": time.monotonic(), **event}), flush=True)

def on_change(zeroconf, service_type, name, state_change):
    if state_change is ServiceStateChange.Removed:
        say(event="removed", name=name)
        return
    if state_change is not ServiceStateChange.Added:
        return
    seen = time.monotonic()
    info = zeroconf.get_service_info(service_type, name, 3000)
    if info is None:
        say(event="unresolved", name=name)
        return
    resolver = AddressResolver(info.server)
    resolved = resolver.request(zeroconf, 3000)
    say(event="added", seen=seen, name=name, port=info.port, server=info.server,
        addresses=info.parsed_addresses(),
        txt={k.decode(): (v or b"").decode() for k, v in info.properties.items()},
        host_addresses=resolver.parsed_addresses() if resolved else [])

ServiceBrowser(zc, "_jonot._tcp.local.", handlers=[on_change])
say(event="ready")
sys.stdin.read()  # until the test closes our stdin
zc.close()
"""


class BrowserProcess:
    """A stock python-zeroconf ServiceBrowser in another process, reporting JSON lines."""

    def __enter__(self) -> BrowserProcess:
        self.proc = subprocess.Popen([sys.executable, "-c", BROWSER], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True)
        self.events: queue.Queue[dict[str, Any]] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()
        self.wait_for(lambda e: e["event"] == "ready", 10)
        return self

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.events.put(json.loads(line))

    def wait_for(self, match: Any, timeout: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError("the browser did not see it in time")
            try:
                event = self.events.get(timeout=left)
            except queue.Empty:
                continue
            if match(event):
                return event

    def __exit__(self, *exc: Any) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
