"""The PyInstaller bundle (installer/windows/jonot-local.spec) builds on Linux and serves."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

REPO = Path(__file__).resolve().parent.parent
SPEC = REPO / "installer" / "windows" / "jonot-local.spec"

pytestmark = pytest.mark.slow


def test_the_bundle_starts_and_answers(tmp_path: Path) -> None:
    pytest.importorskip("PyInstaller", reason="pip install pyinstaller (in the test extra)")
    started = time.monotonic()
    build = subprocess.run(
        [sys.executable, "-m", "PyInstaller", "--noconfirm", "--log-level", "ERROR",
         "--distpath", str(tmp_path / "dist"), "--workpath", str(tmp_path / "build"),
         str(SPEC)], capture_output=True, text=True, timeout=400)
    built_s = time.monotonic() - started
    assert build.returncode == 0, build.stderr[-3000:]
    app_dir = tmp_path / "dist" / "jonot-local"
    binary = app_dir / ("jonot-local.exe" if sys.platform == "win32" else "jonot-local")
    size_mb = sum(f.stat().st_size for f in app_dir.rglob("*") if f.is_file()) / 2**20
    print(f"bundle built in {built_s:.0f} s, {size_mb:.0f} MB")
    assert binary.is_file()

    proc = subprocess.Popen([str(binary), "serve", "--host", "127.0.0.1", "--port", "0",
                             "--no-zeroconf", "--data-dir", str(tmp_path / "data")],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        url = None
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and url is None:
            line = proc.stdout.readline()
            if not line and proc.poll() is not None:
                pytest.fail(f"bundle exited: {proc.stderr.read() if proc.stderr else ''}")
            m = re.search(r"(http://127\.0\.0\.1:\d+)/api/v1/health", line)
            if m:
                url = m.group(1)
        assert url, "the bundle did not print its URL"
        health = requests.get(url + "/api/v1/health", timeout=10).json()
        assert health["status"] == "ok" and health["printer"]["running"] is True
        # A packaged template: the friendly 404 page for a browser.
        page = requests.get(url + "/no-such-page", headers={"Accept": "text/html"}, timeout=10)
        assert page.status_code == 404 and "<html" in page.text.lower()
        # Every vendored static asset the package has is served from the bundle.
        static = REPO / "web" / "static"
        for asset in [p for p in static.rglob("*") if p.is_file() and p.name != ".keep"][:5]:
            rel = asset.relative_to(static).as_posix()
            r = requests.get(f"{url}/static/{rel}", timeout=10)
            assert r.status_code == 200 and r.content == asset.read_bytes(), rel
        assert requests.get(url + "/api/v1/openapi.json", timeout=10).ok
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
    assert proc.returncode == 0 or proc.returncode == -15
