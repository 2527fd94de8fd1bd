"""A newcomer's first run: make run / make cli, what serve prints, private files, packaging."""

from __future__ import annotations

import logging
import os
import re
import shutil
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
import tomllib
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from jonot_local.addresses import lan_ipv4_addresses
from jonot_local.app import create_app
from jonot_local.backup import DataDirLock
from jonot_local.db import DB_FILENAME, open_store
from jonot_local.domain import users

from .support import wait_for_health

# `make run` announces the demo office by mDNS: keep it apart from the LAN tests.
pytestmark = pytest.mark.xdist_group("mdns")

ROOT = Path(__file__).resolve().parent.parent
VENV = Path(sys.executable).parent.parent


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def umask_022() -> Iterator[None]:
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


# -- the live database is as private as its backups -----------------------------------

def test_a_new_data_dir_and_its_files_are_private(tmp_path, umask_022):
    data_dir = tmp_path / "data"
    app = create_app({"data_dir": data_dir})
    store = app.extensions["jonot"].store
    try:
        with store.write() as tx:  # a write, so that -wal and -shm exist now
            users.create_user(tx, "nurse", "nurse-password")
        assert _mode(data_dir) == 0o700
        assert _mode(data_dir / "secret_key") == 0o600
        for suffix in ("", "-wal", "-shm"):
            path = Path(str(data_dir / DB_FILENAME) + suffix)
            assert path.exists() and _mode(path) == 0o600, (path, oct(_mode(path)))
    finally:
        store.close()


def test_an_existing_data_dir_open_to_others_is_tightened_and_said(tmp_path, umask_022,
                                                                  caplog):
    data_dir = tmp_path / "data"
    open_store(data_dir).close()
    create_app({"data_dir": data_dir}).extensions["jonot"].store.close()
    data_dir.chmod(0o755)  # as an older version left them
    (data_dir / DB_FILENAME).chmod(0o644)
    (data_dir / "secret_key").chmod(0o644)
    with caplog.at_level(logging.WARNING, logger="jonot_local.db"):
        create_app({"data_dir": data_dir}).extensions["jonot"].store.close()
    assert _mode(data_dir) == 0o700
    assert _mode(data_dir / DB_FILENAME) == 0o600
    assert _mode(data_dir / "secret_key") == 0o600
    said = " ".join(r.getMessage() for r in caplog.records)
    assert str(data_dir) in said and "readable by other users" in said


def test_the_data_dir_is_private_when_serve_makes_it_for_its_lock_first(tmp_path, umask_022):
    data_dir = tmp_path / "new"
    with DataDirLock(data_dir):  # what serve does before it opens the database
        assert _mode(data_dir) == 0o700
        create_app({"data_dir": data_dir}).extensions["jonot"].store.close()
    assert _mode(data_dir) == 0o700
    data_dir.chmod(0o755)  # a data dir an older server made, lock and key but no database
    (data_dir / DB_FILENAME).unlink()
    with DataDirLock(data_dir):
        assert _mode(data_dir) == 0o700


def test_a_shared_folder_given_as_data_dir_is_not_tightened(tmp_path, umask_022):
    shared = tmp_path / "shared"
    shared.mkdir(mode=0o755)
    (shared / "someone-elses.txt").write_text("hello\n")
    open_store(shared).close()
    assert _mode(shared) == 0o755  # not ours alone: left as it was
    assert _mode(shared / DB_FILENAME) == 0o600


# -- what serve prints ---------------------------------------------------------------

def _serve(data_dir: Path, *args: str, env: dict[str, str] | None = None,
           ) -> tuple[subprocess.Popen[str], list[str]]:
    """Start serve and wait for health; return the process and what it printed so far."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "jonot_local", "serve", "--no-zeroconf",
         "--data-dir", str(data_dir), *args],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})})
    lines: list[str] = []

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line.rstrip("\n"))

    threading.Thread(target=read, daemon=True).start()
    deadline = time.monotonic() + 20
    while not any("/api/v1/health" in line for line in lines):
        if proc.poll() is not None or time.monotonic() > deadline:
            raise AssertionError(f"serve did not start: {lines} "
                                 f"{proc.stderr.read() if proc.stderr else ''}")
        time.sleep(0.05)
    port = int(re.search(r":(\d+)/api/v1/health", next(
        line for line in lines if "/api/v1/health" in line)).group(1))
    wait_for_health(f"http://127.0.0.1:{port}", deadline)
    time.sleep(0.3)  # the rest of the banner is printed before serving begins
    return proc, list(lines)


def _stop(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        proc.wait(10)
    for stream in (proc.stdout, proc.stderr):
        if stream:
            stream.close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.slow
def test_serve_says_where_its_data_is_where_the_lan_finds_it_and_how_to_begin(tmp_path):
    data_dir = tmp_path / "fresh"
    port = _free_port()
    proc, lines = _serve(data_dir, env={"JONOT_PORT": str(port), "JONOT_HOST": "0.0.0.0"})
    try:
        assert lines[0] == f"Jonot Local {__import__('jonot_local').__version__}, " \
                           f"data dir {data_dir}"
        assert any(f"http://localhost:{port}/api/v1/health" in line for line in lines)
        addresses = lan_ipv4_addresses()
        text = "\n".join(lines)
        if addresses:
            assert "On the LAN (for kiosks, displays and phones):" in text
            for address in addresses:
                assert f"http://{address}:{port}/" in text
        else:
            assert "On the LAN: none" in text
        assert f"jonot-local user add NAME --admin --data-dir {data_dir}" in text
        assert _mode(data_dir) == 0o700
    finally:
        _stop(proc)


def test_lan_addresses_are_real_non_loopback_ipv4_addresses_of_this_machine():
    for address in lan_ipv4_addresses():
        assert not address.startswith("127.") and address.count(".") == 3
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.bind((address, 0))  # only the machine's own addresses can be bound


@pytest.mark.slow
def test_serve_on_a_given_host_lists_no_lan_addresses_and_hides_the_hint_with_an_admin(
        tmp_path):
    data_dir = tmp_path / "office"
    store = open_store(data_dir)
    with store.write() as tx:
        users.create_user(tx, "boss", "boss-password", role="admin")
    store.close()
    proc, lines = _serve(data_dir, "--host", "127.0.0.1", "--port", "0")
    try:
        text = "\n".join(lines)
        assert "http://127.0.0.1:" in text and "On the LAN" not in text
        assert "user add" not in text
    finally:
        _stop(proc)


# -- make run / make cli ---------------------------------------------------------------

def _make(*args: str) -> list[str]:
    # STAMP= : the test's interpreter is installed already; never reinstall from a test.
    return ["make", "-s", "-C", str(ROOT), f"VENV={VENV}", "STAMP=", *args]


@pytest.fixture
def make_run(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[str], int, Path]]:
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    port, data_dir = _free_port(), tmp_path / "demo"
    proc = subprocess.Popen(_make("run", f"DATA_DIR={data_dir}", "HOST=127.0.0.1",
                                  f"PORT={port}"),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        wait_for_health(f"http://127.0.0.1:{port}", time.monotonic() + 30)
        yield proc, port, data_dir
    finally:
        if proc.poll() is None:
            proc.terminate()  # make passes SIGTERM on; SIGKILL would orphan the server
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
        for pid in _server_pids(data_dir):  # whatever outlived make (old recipes did)
            os.kill(pid, signal.SIGTERM)
        if proc.stdout:
            proc.stdout.close()


def _server_pids(data_dir: Path) -> list[int]:
    """Processes whose command line runs serve on ``data_dir``."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmd = (entry / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if b"serve" in cmd and str(data_dir).encode() in cmd:
                pids.append(int(entry.name))
    return pids


@pytest.mark.slow
def test_make_run_honours_host_and_port_and_stops_when_make_is_killed(make_run):
    proc, port, data_dir = make_run
    r = requests.get(f"http://127.0.0.1:{port}/api/v1/health", timeout=5)
    assert r.ok
    (server,) = _server_pids(data_dir)
    # exec'd: the server is make's own child, not a shell's.
    assert Path(f"/proc/{server}/stat").read_text().rsplit(")", 1)[1].split()[1] == \
        str(proc.pid)

    proc.send_signal(signal.SIGTERM)  # what `kill $!` does to a backgrounded make run
    proc.wait(10)
    deadline = time.monotonic() + 10
    while _server_pids(data_dir) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _server_pids(data_dir) == [], "the server outlived make"
    with pytest.raises(requests.ConnectionError):
        requests.get(f"http://127.0.0.1:{port}/api/v1/health", timeout=5)


@pytest.mark.slow
def test_make_cli_runs_the_command_line_on_the_demos_data(make_run):
    proc, _, data_dir = make_run
    out = subprocess.run(_make("cli", f"DATA_DIR={data_dir}", "ARGS=user list --json"),
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert '"username": "admin"' in out.stdout  # the demo's admin


def test_the_readme_shows_how_to_use_the_demos_data():
    readme = (ROOT / "README.md").read_text()
    assert 'make cli ARGS="user list"' in readme
    assert "JONOT_DATA_DIR=.data .venv/bin/jonot-local user list" in readme
    assert "make run PORT=8081" in readme


# -- packaging ---------------------------------------------------------------------------

def test_pytest_is_a_test_extra_not_a_runtime_dependency():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    names = [re.split(r"[<>=\[ ;]", d)[0].lower() for d in project["dependencies"]]
    assert "pytest" not in names
    assert any(d.startswith("pytest") for d in project["optional-dependencies"]["test"])


@pytest.mark.slow
def test_the_wheel_builds_without_warnings_and_holds_every_asset(tmp_path):
    src = tmp_path / "src"
    files = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"],
                           cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    for name in files:
        if (ROOT / name).is_file():
            (src / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, src / name)
    # Assets in nested folders, as the pages will add them.
    for extra in ("web/templates/kiosk/_probe.html", "web/static/css/probe.css",
                  "displays/sounds/probe.ogg"):
        (src / extra).parent.mkdir(parents=True, exist_ok=True)
        (src / extra).write_text("probe\n")
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-v",
                           "-w", str(tmp_path / "dist"), str(src)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    output = proc.stdout + proc.stderr
    assert "BuildBackendWarning" not in output and "would be ignored" not in output
    (wheel,) = (tmp_path / "dist").glob("jonot_local-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for expected in ("jonot_local/web/templates/error.html",
                     "jonot_local/web/templates/kiosk/_probe.html",
                     "jonot_local/web/static/css/probe.css",
                     "jonot_local/displays/sounds/probe.ogg",
                     "jonot_local/sync/__init__.py", "jonot_local/cli.py"):
        assert expected in names, expected
    assert not any(n.startswith(("web/", "sync/", "displays/", "tests/")) for n in names)
