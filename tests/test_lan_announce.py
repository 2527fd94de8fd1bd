"""serve announces itself by zeroconf: a stock browser in another process sees it, and
the server serves whatever happens to multicast."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from jonot_local.lan.announce import Announcer, _host_label, _instance_name
from jonot_local.lan.discover import browse
from jonot_local.lan.interfaces import announced_addresses

from .lan_support import AnnouncingServer, BrowserProcess, unique
from .support import LiveServer

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("mdns")]

FIGURES = Path(__file__).parent / "artifacts" / "lan_figures.json"


def _record(**figures: float) -> None:
    FIGURES.parent.mkdir(exist_ok=True)
    old = json.loads(FIGURES.read_text()) if FIGURES.exists() else {}
    FIGURES.write_text(json.dumps({**old, **figures}, indent=1))


def test_a_browser_in_another_process_sees_service_txt_and_host_name(tmp_path):
    name, host = unique("Clinic"), unique("jonot")
    with BrowserProcess() as browser:
        server = AnnouncingServer(tmp_path / "d", name, host).start()
        try:
            serving = time.monotonic()
            discovery = server.wait_discovery("announcing")
            announced = time.monotonic()
            assert discovery == {"state": "announcing", "reason": None, "name": name,
                                 "host_name": f"{host}.local", "addresses": ["127.0.0.1"]}
            seen = browser.wait_for(lambda e: e["event"] == "added"
                                    and e["name"].startswith(name), 15)
            health = server.health()
            assert seen["port"] == server.port
            assert seen["txt"] == {"path": "/", "version": health["version"],
                                   "location": health["location_id"], "name": name}
            assert seen["addresses"] == ["127.0.0.1"]
            assert seen["server"] == f"{host}.local."
            # The host name alone, asked over mDNS, gives the announced address.
            assert seen["host_addresses"] == ["127.0.0.1"]
            # ... and it serves there: what a TV's browser opening http://jonot.local:PORT does.
            assert requests.get(f"http://{seen['host_addresses'][0]}:{seen['port']}"
                                "/api/v1/health", timeout=5).ok
        finally:
            stopping = time.monotonic()
            server.stop()
        gone = browser.wait_for(lambda e: e["event"] == "removed"
                                and e["name"].startswith(name), 10)
    _record(announced_after_serving_s=round(announced - serving, 3),
            announced_after_process_start_s=round(announced - server.started_at, 3),
            browser_saw_it_after_serving_s=round(seen["seen"] - serving, 3),
            removed_after_sigterm_s=round(gone["t"] - stopping, 3))


def test_a_taken_host_name_gets_a_suffix_and_a_log_line(tmp_path):
    host = unique("jonot")
    first = AnnouncingServer(tmp_path / "a", unique("Clinic"), host).start()
    second = AnnouncingServer(tmp_path / "b", unique("Clinic"), host)
    try:
        assert first.wait_discovery("announcing")["host_name"] == f"{host}.local"
        second.start()
        assert second.wait_discovery("announcing")["host_name"] == f"{host}-2.local"
        assert any(f"{host}.local is taken" in line and f"{host}-2.local" in line
                   for line in second.stderr_lines), second.stderr_lines
    finally:
        second.stop()
        first.stop()


def test_no_zeroconf_says_so_in_health(tmp_path):
    server = LiveServer(tmp_path / "d").start()  # LiveServer passes --no-zeroconf
    try:
        discovery = requests.get(server.url + "/api/v1/health", timeout=5).json()["discovery"]
        assert discovery["state"] == "off" and "--no-zeroconf" in discovery["reason"]
    finally:
        server.stop()


def test_an_address_that_is_not_this_machines_leaves_the_server_serving(tmp_path):
    # 198.51.100.7 (TEST-NET-2) is on no interface: zeroconf cannot join the group there.
    server = AnnouncingServer(tmp_path / "d", unique("Clinic"), unique("jonot"),
                              env={"JONOT_MDNS_INTERFACES": "198.51.100.7"})
    t0 = time.monotonic()
    server.start()
    ready = time.monotonic() - t0
    try:
        discovery = server.wait_discovery("failed")
        assert discovery["state"] == "failed"
        assert "198.51.100.7" in discovery["reason"] and discovery["addresses"] == []
        assert requests.get(server.url + "/api/v1/queues", timeout=5).ok
        time.sleep(0.3)
        lines = [line for line in server.stderr_lines if "not announced on the LAN" in line]
        assert len(lines) == 1, server.stderr_lines
        assert "the server serves anyway" in lines[0]
    finally:
        server.stop()
    _record(start_with_broken_multicast_s=round(ready, 3))


INSIDE_NETNS = r"""
import json, socket, subprocess, sys, time, urllib.request
subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
# Another responder holding UDP 5353 without sharing it (no SO_REUSEADDR / SO_REUSEPORT).
taken = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
taken.bind(("0.0.0.0", 5353))
t0 = time.monotonic()
server = subprocess.Popen([sys.executable, "-m", "jonot_local", "serve", "--host",
    "127.0.0.1", "--port", "18080", "--data-dir", sys.argv[1]],
    stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    env={**__import__("os").environ, "JONOT_MDNS_INTERFACES": "127.0.0.1"})
health = None
while time.monotonic() - t0 < 20:
    try:
        health = json.load(urllib.request.urlopen("http://127.0.0.1:18080/api/v1/health",
                                                  timeout=2))
        if health["discovery"]["state"] != "off":
            break
    except OSError:
        time.sleep(0.05)
ready = time.monotonic() - t0
server.terminate()
_, err = server.communicate(timeout=10)
print(json.dumps({"health": health, "ready_s": ready, "stderr": err}))
"""


@pytest.mark.skipif(not (hasattr(os, "geteuid") and os.geteuid() == 0 and shutil.which("unshare")
                         and shutil.which("ip")),
                    reason="needs root, unshare and ip to hold port 5353 in a network namespace")
def test_port_5353_held_by_another_responder_leaves_the_server_serving(tmp_path):
    # In a network namespace of its own, so no other test's mDNS is disturbed.
    out = subprocess.run(["unshare", "-n", sys.executable, "-c", INSIDE_NETNS,
                          str(tmp_path / "d")], capture_output=True, text=True, timeout=60,
                         env={**os.environ, "PYTHONUNBUFFERED": "1"})
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    discovery = result["health"]["discovery"]
    assert discovery["state"] == "failed", result
    assert "multicast is not available on 127.0.0.1" in discovery["reason"]
    assert "in use" in discovery["reason"].lower(), discovery["reason"]
    assert result["stderr"].count("not announced on the LAN") == 1, result["stderr"]
    _record(start_with_5353_taken_s=round(result["ready_s"], 3))


def test_the_announcement_follows_the_machines_addresses():
    addresses: list[str] = []
    office, loc = unique("Moves"), unique("L")
    announcer = Announcer(port=18181, version="0", describe=lambda: (loc, office),
                          addresses=lambda: list(addresses), host_name=unique("jonot"),
                          poll_s=0.2)
    announcer.start()
    try:
        deadline = time.monotonic() + 5
        while announcer.status()["state"] != "failed" and time.monotonic() < deadline:
            time.sleep(0.02)
        assert "no LAN address" in announcer.status()["reason"]
        addresses.append("127.0.0.1")  # the Wi-Fi came back
        deadline = time.monotonic() + 10
        while announcer.status()["state"] != "announcing" and time.monotonic() < deadline:
            time.sleep(0.02)
        assert announcer.status()["addresses"] == ["127.0.0.1"]
        found = browse(3.0, ["127.0.0.1"], want_location=loc)
        assert [(s.location, s.port) for s in found if s.location == loc] == \
            [(loc, 18181)]
    finally:
        announcer.stop()
    assert announcer.status()["state"] == "off"
    assert not [s for s in browse(1.5, ["127.0.0.1"]) if s.location == loc]


def test_which_addresses_are_announced():
    assert announced_addresses("127.0.0.1") == ["127.0.0.1"]
    assert announced_addresses("192.0.2.9") == ["192.0.2.9"]
    assert announced_addresses("0.0.0.0", "10.0.0.5, 10.0.0.6") == ["10.0.0.5", "10.0.0.6"]
    every = announced_addresses("0.0.0.0")
    assert "127.0.0.1" not in every and all(":" not in a for a in every)
    assert set(every) <= set(announced_addresses("::"))
    assert _host_label("Jonot.local.") == "jonot" and _host_label(" ") == "jonot"
    assert _instance_name("Dr. Virtanen's clinic") == "Dr Virtanen's clinic"
    assert len(_instance_name("ä" * 80).encode()) <= 63


AVAHI = r"""
set -e
mount -t tmpfs none /run  # this mount namespace's own /run: its own system bus and avahi
mkdir -p /run/dbus /run/avahi-daemon
ip link set lo up
# avahi skips loopback: a veth pair gives it a multicast interface of its own.
ip link add j0 type veth peer name j1
ip link set j1 up
ip addr add 10.99.0.1/24 dev j0
ip link set j0 multicast on up
dbus-daemon --system --fork
avahi-daemon --no-drop-root --no-chroot -D
sleep 1
JONOT_LOCATION_NAME="Avahi Clinic" JONOT_MDNS_INTERFACES=10.99.0.1 JONOT_MDNS_HOSTNAME=jonot-av \
  "$PYTHON" -m jonot_local serve --host 10.99.0.1 --port 18090 --data-dir "$DATA" \
  >/dev/null 2>&1 &
HEALTH="import urllib.request; urllib.request.urlopen('http://10.99.0.1:18090/api/v1/health')"
for i in $(seq 100); do
  if "$PYTHON" -c "$HEALTH" 2>/dev/null; then break; fi
  sleep 0.1
done
sleep 4
echo "--browse"; timeout 10 avahi-browse -rtp _jonot._tcp || true
echo "--resolve"; timeout 10 avahi-resolve -4 -n jonot-av.local || true
"""


@pytest.mark.skipif(not (hasattr(os, "geteuid") and os.geteuid() == 0
                         and all(shutil.which(t) for t in ("unshare", "ip", "avahi-daemon",
                                                           "avahi-browse", "avahi-resolve",
                                                           "dbus-daemon"))),
                    reason="needs root, unshare, ip, dbus-daemon and avahi (avahi-daemon, "
                           "avahi-utils) to run a private avahi in a network namespace")
def test_avahi_browses_the_service_and_resolves_the_host_name(tmp_path):
    # Network, mount and PID namespaces of its own: every daemon ends with the script.
    out = subprocess.run(["unshare", "-n", "-m", "-p", "-f", "--propagation", "private",
                          "sh", "-c", AVAHI], capture_output=True, text=True, timeout=90,
                         env={**os.environ, "PYTHON": sys.executable,
                              "DATA": str(tmp_path / "d")})
    assert out.returncode == 0, out.stderr
    browse_out = out.stdout.split("--resolve")[0]
    resolved = [line for line in browse_out.splitlines() if line.startswith("=;")]
    assert resolved, out.stdout + out.stderr
    fields = resolved[0].split(";")
    assert fields[3] == r"Avahi\032Clinic" and fields[4] == "_jonot._tcp"
    assert fields[6:9] == ["jonot-av.local", "10.99.0.1", "18090"]
    assert '"path=/"' in fields[9] and '"name=Avahi Clinic"' in fields[9]
    assert "jonot-av.local\t10.99.0.1" in out.stdout.split("--resolve")[1]
