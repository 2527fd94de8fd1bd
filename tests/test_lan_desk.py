"""The desk window under Xvfb: it discovers the server, shows its /desk page, shows the
retry screen when the server stops and comes back by itself when it returns.

Screenshots go to tests/artifacts/. The window needs Xvfb, imagemagick and the Qt
backend (``pip install "jonot-local[desk]"``); the session fixture installs what is
missing (apt-get as root, pip into this venv) and skips only when that fails.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from .lan_support import AnnouncingServer, unique

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("mdns")]

ARTIFACTS = Path(__file__).parent / "artifacts"
APT_PACKAGES = ["xvfb", "imagemagick", "xdotool", "libxcb-icccm4", "libxcb-keysyms1",
                "libxcb-xinerama0", "libxcb-image0", "libxcb-render-util0", "libxkbcommon-x11-0",
                "libxcb-cursor0"]


def _install_missing() -> str | None:
    """Install Xvfb, imagemagick, xdotool and the Qt extra when missing.

    Returns why that failed, or ``None``.
    """
    if not (shutil.which("Xvfb") and shutil.which("import") and shutil.which("xdotool")):
        if not (shutil.which("apt-get") and hasattr(os, "geteuid") and os.geteuid() == 0):
            return "Xvfb and imagemagick are missing and cannot be installed (not root)"
        r = subprocess.run(["apt-get", "install", "-y", "--no-install-recommends",
                            *APT_PACKAGES], capture_output=True, text=True, timeout=900,
                           env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})
        if r.returncode != 0:
            return f"apt-get install failed: {r.stderr.strip()[-300:]}"
    if importlib.util.find_spec("PyQt6") is None:
        r = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "pywebview[qt]"],
                           capture_output=True, text=True, timeout=900)
        if r.returncode != 0:
            return f'pip install "pywebview[qt]" failed: {r.stderr.strip()[-300:]}'
        importlib.invalidate_caches()
    return None


@pytest.fixture(scope="session")
def display() -> Iterator[str]:
    """A private Xvfb display, e.g. ``:3``."""
    reason = _install_missing()
    if reason:
        pytest.skip(f"the desk window cannot run here: {reason}")
    read, write = os.pipe()
    xvfb = subprocess.Popen(["Xvfb", "-displayfd", str(write), "-screen", "0", "1280x800x24",
                             "-nolisten", "tcp"], pass_fds=(write,),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    os.close(write)
    with os.fdopen(read) as f:
        number = f.readline().strip()
    assert number.isdigit(), "Xvfb did not start"
    yield f":{number}"
    xvfb.terminate()
    xvfb.wait(10)


class DeskWindow:
    """``jonot-local desk`` in its own process; its ``desk: …`` lines collected."""

    def __init__(self, display: str, data_dir: Path, *args: str) -> None:
        env = {**os.environ, "DISPLAY": display, "JONOT_MDNS_INTERFACES": "127.0.0.1",
               "QTWEBENGINE_DISABLE_SANDBOX": "1", "PYTHONUNBUFFERED": "1"}
        self.display = display
        self.lines: list[str] = []
        self.proc = subprocess.Popen([sys.executable, "-m", "jonot_local", "desk",
                                      "--data-dir", str(data_dir), *args],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                     text=True, env=env)
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.append(line.rstrip())

    def wait_line(self, pattern: str, timeout: float = 40.0, after: int = 0) -> int:
        """Index of the first ``desk:`` line from ``after`` on matching ``pattern``."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for i, line in enumerate(self.lines[after:], after):
                if line.startswith("desk: ") and re.search(pattern, line):
                    return i
            if self.proc.poll() is not None:
                break
            time.sleep(0.1)
        raise AssertionError(f"no {pattern!r} from the desk window:\n" + "\n".join(self.lines))

    def screenshot(self, name: str, settle: float = 2.5) -> Path:
        time.sleep(settle)  # let the page paint
        ARTIFACTS.mkdir(exist_ok=True)
        path = ARTIFACTS / name
        subprocess.run(["import", "-display", self.display, "-window", "root", str(path)],
                       check=True, timeout=30)
        colours = subprocess.run(["convert", str(path), "-format", "%k", "info:"],
                                 capture_output=True, text=True, check=True).stdout
        assert int(colours) > 20, f"{name} looks blank ({colours} colours)"
        return path

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


def test_the_window_discovers_shows_desk_retries_and_recovers(display, tmp_path):
    name = unique("Clinic")
    server = AnnouncingServer(tmp_path / "server", name, unique("jonot")).start()
    desk_dir = tmp_path / "desk"
    desk_dir.mkdir()
    window = None
    try:
        server.wait_discovery("announcing")
        location = server.health()["location_id"]
        # Chosen before, at an address it no longer has: found again by its location id.
        (desk_dir / "desk.json").write_text(json.dumps(
            {"url": "http://127.0.0.1:9", "location": location, "name": name}))
        window = DeskWindow(display, desk_dir)
        shown = window.wait_line(re.escape(f"showing {server.url}/desk"))
        window.screenshot("desk_window_desk_page.png")

        server.stop()
        retrying = window.wait_line("server not reachable — retrying", after=shown)
        window.screenshot("desk_window_retry.png", settle=1.5)

        server = AnnouncingServer(tmp_path / "server", name, unique("jonot")).start()
        assert f"{server.url}/desk" not in window.lines[shown]  # a new port
        window.wait_line(re.escape(f"showing {server.url}/desk"), after=retrying)
        window.screenshot("desk_window_back.png")
    finally:
        if window is not None:
            window.close()
        server.stop()
    # The session (cookies, storage) is kept in the data dir, not thrown away.
    assert json.loads((desk_dir / "desk.json").read_text())["url"] == server.url
    assert (desk_dir / "desk-window").is_dir()


def test_the_window_lets_the_user_pick_between_two_servers(display, tmp_path):
    a = AnnouncingServer(tmp_path / "a", unique("0 Clinic North"), unique("jonot")).start()
    b = AnnouncingServer(tmp_path / "b", unique("0 Clinic South"), unique("jonot")).start()
    window = None
    try:
        a.wait_discovery("announcing")
        b.wait_discovery("announcing")
        window = DeskWindow(display, tmp_path / "desk")
        window.wait_line(r"choose one of \d+ servers")
        window.screenshot("desk_window_picker.png")
        # The user picks the second office (names starting "0 " sort first): Tab, Tab, Enter.
        win = subprocess.run(["xdotool", "search", "--sync", "--name", "Jonot Local"],
                             capture_output=True, text=True, timeout=20,
                             env={**os.environ, "DISPLAY": display}).stdout.split()[0]
        subprocess.run(["xdotool", "windowfocus", "--sync", win, "key", "--delay", "150",
                        "Tab", "Tab", "Return"], check=True, timeout=20,
                       env={**os.environ, "DISPLAY": display})
        window.wait_line(re.escape(f"showing {b.url}/desk"), timeout=20)
        remembered = json.loads((tmp_path / "desk" / "desk.json").read_text())
        assert remembered["location"] == b.health()["location_id"]
    finally:
        if window is not None:
            window.close()
        a.stop()
        b.stop()
