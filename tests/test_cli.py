"""The ``jonot-local`` command line: help, one-line errors, accounts, backup/restore, demo."""

from __future__ import annotations

import contextlib
import json
import platform
import sqlite3
import stat
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click
import pytest
import requests
from click.testing import CliRunner

from jonot_local import cli
from jonot_local.app import create_app
from jonot_local.backup import DataDirLock, database_path
from jonot_local.db import open_store
from jonot_local.demo import DEMO_ADMIN, LOGIN_FILENAME, load_demo
from jonot_local.domain import queues, users
from jonot_local.domain.location import get_location
from jonot_local.settings import Settings

from .support import ADMIN, UNLIMITED_JOINS, LiveServer, setup_office, ticket_rows, token


def run(*args: str, input: str | None = None) -> Any:
    return CliRunner().invoke(cli.main, list(args), input=input)


def _walk(group: click.Group, path: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], Any]]:
    out = []
    for name, command in sorted(group.commands.items()):
        out.append(((*path, name), command))
        if isinstance(command, click.Group):
            out.extend(_walk(command, (*path, name)))
    return out


COMMANDS = _walk(cli.main)
LEAVES = [(p, c) for p, c in COMMANDS if not isinstance(c, click.Group)]


def test_the_tree_has_the_contract_commands():
    paths = {" ".join(p) for p, _ in COMMANDS}
    assert {"serve", "user", "user add", "user list", "user passwd", "backup", "restore",
            "settings"} <= paths


@pytest.mark.parametrize("path, command", COMMANDS, ids=[" ".join(p) for p, _ in COMMANDS])
def test_every_command_has_help(path, command):
    assert (command.help or "").strip(), f"{' '.join(path)} has no help text"
    for param in command.params:
        if isinstance(param, click.Option):
            assert (param.help or "").strip(), f"{' '.join(path)} {param.opts} has no help"
    result = run(*path, "--help")
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith(f"Usage: jonot-local {' '.join(path)}")
    assert command.help.split("\n")[0].strip() in " ".join(result.stdout.split())


@pytest.mark.parametrize("path, command", LEAVES, ids=[" ".join(p) for p, _ in LEAVES])
def test_every_command_takes_data_dir(path, command):
    option = next(p for p in command.params if p.name == "data_dir")
    assert "--data-dir" in option.opts and "JONOT_DATA_DIR" in option.help
    assert option.envvar is None  # the variable is read by Settings alone


def _one_line_error(result: Any) -> str:
    assert result.exit_code == 2, (result.exit_code, result.output)
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("jonot-local: error: ")
    return lines[0]


@pytest.mark.parametrize("path, command", COMMANDS, ids=[" ".join(p) for p, _ in COMMANDS])
def test_an_unknown_option_is_one_line_and_status_2(path, command, tmp_path):
    line = _one_line_error(run(*path, "--no-such-option", "--data-dir", str(tmp_path)))
    assert "--no-such-option" in line


@pytest.mark.parametrize("args, needle", [
    (("serve", "--port", "70000"), "--port"),
    (("serve", "--port", "eighty"), "--port"),
    (("user", "add"), "NAME"),
    (("user", "passwd"), "NAME"),
    (("user", "frobnicate"), "frobnicate"),
    (("restore",), "FILE"),
    (("backup", "a", "b"), "unexpected extra argument"),
    (("settings", "extra"), "unexpected extra argument"),
    (("no-such-command",), "no-such-command"),
])
def test_bad_arguments_are_one_line_and_status_2(args, needle, tmp_path):
    line = _one_line_error(run(*args, "--data-dir", str(tmp_path)))
    assert needle.lower() in line.lower()


def test_a_bad_setting_in_the_environment_is_one_line(tmp_path, monkeypatch):
    monkeypatch.setenv("JONOT_BACKUP_KEEP", "many")
    line = _one_line_error(run("backup", "--data-dir", str(tmp_path)))
    assert "JONOT_BACKUP_KEEP" in line


def test_a_group_without_its_command_shows_help_with_status_2():
    result = run("user")
    assert result.exit_code == 2
    assert "passwd" in result.stderr


@pytest.mark.parametrize("args, needle", [
    (["user", "add"], "Missing argument 'NAME'"),
    (["restore", "NOT-A-DATABASE"], "not an SQLite database"),
])
def test_a_real_process_prints_one_line_and_exits_2(tmp_path, args, needle):
    (tmp_path / "NOT-A-DATABASE").write_text("plain text\n" * 100)
    proc = subprocess.run([sys.executable, "-m", "jonot_local", *args,
                           "--data-dir", str(tmp_path / "data")],
                          capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert proc.returncode == 2, proc
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("jonot-local: error: ")
    assert needle in proc.stderr
    assert proc.stdout == ""


# -- settings ----------------------------------------------------------------------------

def test_settings_lists_every_setting(tmp_path):
    env_names = [env for env, _, _ in Settings.describe()]
    assert "JONOT_BACKUP_INTERVAL_S" in env_names and "JONOT_DATA_DIR" in env_names
    for args in (["serve", "--help-settings"], ["settings", "--data-dir", str(tmp_path)]):
        result = run(*args)
        assert result.exit_code == 0, result.output
        for env, default, help_text in Settings.describe():
            assert f"{env}  (default: {default})" in result.stdout
            assert help_text in result.stdout
    assert f"now: {tmp_path}" in run("settings", "--data-dir", str(tmp_path)).stdout
    assert not (tmp_path / "jonot.sqlite3").exists()  # listing settings opens nothing


# -- accounts ------------------------------------------------------------------------------

def _token_status(data_dir: Path, username: str, password: str) -> int:
    app = create_app({"data_dir": data_dir})
    try:
        r = app.test_client().post("/api/v1/auth/token",
                                   json={"username": username, "password": password})
        return r.status_code
    finally:
        app.extensions["jonot"].store.close()


def test_user_add_list_passwd_round_trip(tmp_path):
    d = str(tmp_path / "data")
    result = run("user", "add", "nurse", "--password", "first-password", "--data-dir", d)
    assert result.exit_code == 0, result.output
    assert "staff nurse" in result.stdout
    assert run("user", "add", "boss", "--password", "boss-password", "--admin",
               "--data-dir", d).exit_code == 0

    listed = json.loads(run("user", "list", "--json", "--data-dir", d).stdout)
    assert [(u["username"], u["role"], u["active"]) for u in listed] == [
        ("boss", "admin", True), ("nurse", "staff", True)]
    assert all("password" not in key for u in listed for key in u)
    table = run("user", "list", "--data-dir", d).stdout.splitlines()
    assert table[0] == f"Accounts in {d}:"  # which data dir: there may be several
    assert table[1].split() == ["USERNAME", "ROLE", "ACTIVE", "CREATED"]
    assert table[3].split()[:3] == ["nurse", "staff", "yes"]

    assert _token_status(tmp_path / "data", "nurse", "first-password") == 201
    result = run("user", "passwd", "nurse", "--password", "second-password", "--data-dir", d)
    assert result.exit_code == 0, result.output
    assert _token_status(tmp_path / "data", "nurse", "first-password") == 401
    assert _token_status(tmp_path / "data", "nurse", "second-password") == 201


def test_user_commands_read_jonot_data_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("JONOT_DATA_DIR", str(tmp_path / "env"))
    assert run("user", "add", "nurse", "--password", "first-password").exit_code == 0
    assert (tmp_path / "env" / "jonot.sqlite3").exists()


@pytest.mark.parametrize("args, needle", [
    (["user", "add", "nurse", "--password", "short"], "at least 8 characters"),
    (["user", "add", "bad name!", "--password", "long-enough"], "username"),
    (["user", "add", "taken", "--password", "long-enough"], "already exists"),
    (["user", "passwd", "nobody", "--password", "long-enough"], "No user called 'nobody'"),
    (["user", "passwd", "taken", "--password", "short"], "at least 8 characters"),
    (["user", "add", "nurse"], "--password is required"),
    (["user", "passwd", "taken"], "--password is required"),
])
def test_account_errors_are_one_line(tmp_path, args, needle):
    d = str(tmp_path / "data")
    assert run("user", "add", "taken", "--password", "long-enough", "--data-dir", d) \
        .exit_code == 0
    line = _one_line_error(run(*args, "--data-dir", d))
    assert needle in line


def test_password_is_asked_for_on_a_terminal(tmp_path, monkeypatch):
    monkeypatch.setattr(cli, "stdin_is_tty", lambda: True)
    d = str(tmp_path / "data")
    result = run("user", "add", "nurse", "--data-dir", d,
                 input="typed-password\ntyped-password\n")
    assert result.exit_code == 0, result.output
    assert "typed-password" not in result.stdout  # hidden input is not echoed
    assert _token_status(tmp_path / "data", "nurse", "typed-password") == 201
    result = run("user", "passwd", "nurse", "--data-dir", d,
                 input="changed-password\nchanged-password\n")
    assert result.exit_code == 0, result.output
    assert _token_status(tmp_path / "data", "nurse", "changed-password") == 201


# -- backup and restore through the command line ---------------------------------------

def _seeded(tmp_path: Path) -> Path:
    data_dir = tmp_path / "data"
    store = open_store(data_dir)
    with store.write() as tx:
        users.create_user(tx, "nurse", "nurse-password")
    store.close()
    return data_dir


def test_backup_command_prints_a_checked_default_path(tmp_path):
    data_dir = _seeded(tmp_path)
    result = run("backup", "--data-dir", str(data_dir))
    assert result.exit_code == 0, result.output
    path = Path(result.stdout.strip())
    assert path.parent == data_dir / "backups"
    assert path.name.startswith("jonot-") and path.suffix == ".sqlite3"
    conn = sqlite3.connect(str(path))
    assert conn.execute("SELECT username FROM users").fetchall() == [("nurse",)]
    conn.close()
    folder = tmp_path / "elsewhere"
    folder.mkdir()
    into_folder = Path(run("backup", str(folder), "--data-dir", str(data_dir)).stdout.strip())
    assert into_folder.parent == folder and into_folder.exists()


def test_backup_without_a_database_is_one_line(tmp_path):
    line = _one_line_error(run("backup", "--data-dir", str(tmp_path / "nothing")))
    assert "no database" in line
    assert not (tmp_path / "nothing" / "jonot.sqlite3").exists()


def test_restore_command_round_trip_and_refusals(tmp_path):
    data_dir = _seeded(tmp_path)
    copy = tmp_path / "copy.sqlite3"
    assert run("backup", str(copy), "--data-dir", str(data_dir)).exit_code == 0
    assert run("user", "add", "later", "--password", "later-password",
               "--data-dir", str(data_dir)).exit_code == 0

    with DataDirLock(data_dir):
        line = _one_line_error(run("restore", str(copy), "--data-dir", str(data_dir)))
    assert "is running" in line and "stop it first" in line

    result = run("restore", str(copy), "--data-dir", str(data_dir))
    assert result.exit_code == 0, result.output
    assert "pre-restore-" in result.stdout
    names = [u["username"] for u in json.loads(
        run("user", "list", "--json", "--data-dir", str(data_dir)).stdout)]
    assert names == ["nurse"]


# -- against a real server ------------------------------------------------------------------

def _join_until(url: str, queue_id: str, stop: threading.Event, acked: list[dict[str, Any]],
                errors: list[str]) -> None:
    session = requests.Session()
    while not stop.is_set():
        r = session.post(f"{url}/api/v1/queues/{queue_id}/tickets", json={}, timeout=10)
        if r.status_code == 201:
            acked.append(r.json())
        else:
            errors.append(f"{r.status_code} {r.text[:200]}")


@pytest.mark.slow
def test_backup_while_serving_then_restore_gives_the_same_tickets(live_server, tmp_path):
    url, data_dir = live_server.url, live_server.data_dir
    office = setup_office(url, token(url, ADMIN))
    queue_id = office["queues"][0]["id"]
    stop, acked, errors = threading.Event(), [], []
    writers = [threading.Thread(target=_join_until, args=(url, queue_id, stop, acked, errors))
               for _ in range(2)]
    for w in writers:
        w.start()
    try:
        while len(acked) < 30:
            threading.Event().wait(0.01)
        before = len(acked)
        copy = tmp_path / "during-load.sqlite3"
        proc = subprocess.run([sys.executable, "-m", "jonot_local", "backup", str(copy),
                               "--data-dir", str(data_dir)],
                              capture_output=True, text=True, timeout=60)
        after = len(acked)
        while len(acked) < after + 20:  # the server keeps writing after the backup
            threading.Event().wait(0.01)
    finally:
        stop.set()
        for w in writers:
            w.join(30)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == str(copy)
    assert errors == []
    backed_up = ticket_rows(copy)
    numbers = [row[1] for row in backed_up]
    assert numbers == list(range(1, len(numbers) + 1))  # a consistent snapshot, no holes
    assert before <= len(numbers) <= after + 2  # + requests in flight at the snapshot
    acked_by_number = {t["number"]: t for t in acked}
    for row in backed_up:
        if row[1] in acked_by_number:
            assert row[3] == acked_by_number[row[1]]["hash"]

    # A running server holds the data dir: restore is refused and changes nothing.
    proc = subprocess.run([sys.executable, "-m", "jonot_local", "restore", str(copy),
                           "--data-dir", str(data_dir)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "is running" in proc.stderr
    assert requests.get(f"{url}/api/v1/health", timeout=10).ok
    live_total = len(ticket_rows(database_path(data_dir)))
    assert live_total >= len(acked) > len(backed_up)

    live_server.stop()
    result = run("restore", str(copy), "--data-dir", str(data_dir))
    assert result.exit_code == 0, result.output
    assert ticket_rows(database_path(data_dir)) == backed_up
    for suffix in ("-wal", "-shm"):
        assert not Path(str(database_path(data_dir)) + suffix).exists()

    again = LiveServer(data_dir, env=UNLIMITED_JOINS).start()
    try:
        some = backed_up[len(backed_up) // 2]
        r = requests.get(f"{again.url}/api/v1/tickets/by-hash/{some[3]}", timeout=10)
        assert r.status_code == 200 and r.json()["code"] == some[2]
        r = requests.post(f"{again.url}/api/v1/queues/{queue_id}/tickets", json={}, timeout=10)
        # Numbers issued after the backup were printed or shown: never reused.
        assert r.status_code == 201 and r.json()["number"] == live_total + 1
    finally:
        again.stop()
    conn = sqlite3.connect(str(database_path(data_dir)))
    assert conn.execute("SELECT value FROM settings WHERE key = 'restored_at'").fetchone()
    conn.close()


@pytest.mark.slow
def test_a_second_server_on_the_same_data_dir_is_refused(live_server):
    proc = subprocess.run([sys.executable, "-m", "jonot_local", "serve", "--host", "127.0.0.1",
                           "--port", "0", "--no-zeroconf", "--data-dir",
                           str(live_server.data_dir)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "is running" in proc.stderr
    # Reading the accounts needs no lock and writes nothing: fine while serving.
    listed = run("user", "list", "--json", "--data-dir", str(live_server.data_dir))
    assert listed.exit_code == 0, listed.output
    assert sorted(u["username"] for u in json.loads(listed.stdout)) == ["admin", "staff"]
    live_server.kill9()  # the kernel drops the lock with the process
    with DataDirLock(live_server.data_dir):
        pass


# -- demo -------------------------------------------------------------------------------

def _office_snapshot(store: Any) -> dict[str, Any]:
    with store.read() as tx:
        qs = queues.list_queues(tx)
        prefix_of = {q.id: q.prefix for q in qs}
        return {
            "queues": [(q.name, q.prefix, q.colour) for q in qs],
            "desks": [(d.name, [prefix_of[i] for i in d.queue_ids])
                      for d in queues.list_desks(tx)],
            "displays": [(d["name"], d["queue_ids"]) for d in queues.list_displays(tx)],
            "users": [(u["username"], u["role"]) for u in users.list_users(tx)],
            "location": get_location(tx)["name"],
        }


def test_demo_fills_an_empty_database_once(tmp_path):
    store = open_store(tmp_path / "data")
    try:
        login = load_demo(store)
        assert login is not None and login[0] == DEMO_ADMIN and len(login[1]) >= 12
        first = _office_snapshot(store)
        assert first == {
            "queues": [("General practice", "A", "#1f6feb"), ("Laboratory", "L", "#8250df"),
                       ("Pharmacy", "P", "#1a7f37")],
            "desks": [("Lab", ["L"]), ("Pharmacy counter", ["P"]), ("Room 1", ["A"]),
                      ("Room 2", ["A", "L"])],
            "displays": [("Waiting room TV", [])],
            "users": [("admin", "admin")],
            "location": "Demo Clinic",
        }
        login_file = tmp_path / "data" / LOGIN_FILENAME
        assert stat.S_IMODE(login_file.stat().st_mode) == 0o600
        assert login[1] in login_file.read_text()
        with store.read() as tx:
            assert users.authenticate(tx, *login)["role"] == "admin"

        assert load_demo(store) == login  # idempotent: same login, nothing added
        assert _office_snapshot(store) == first
    finally:
        store.close()


def test_demo_leaves_an_office_with_queues_alone(store, office):
    before = _office_snapshot(store)
    assert load_demo(store) is None
    assert _office_snapshot(store) == before
    assert not (store.path.parent / LOGIN_FILENAME).exists()


def test_demo_keeps_an_existing_admin_and_hides_a_stale_login(tmp_path):
    store = open_store(tmp_path / "data")
    try:
        with store.write() as tx:
            users.create_user(tx, "admin", "chosen-by-it-person", role="admin")
        assert load_demo(store) is None  # the demo never replaces someone's admin
        assert len(_office_snapshot(store)["queues"]) == 3
        with store.read() as tx:
            users.authenticate(tx, "admin", "chosen-by-it-person")
    finally:
        store.close()

    store = open_store(tmp_path / "other")
    try:
        login = load_demo(store)
        assert login is not None
        with store.write() as tx:
            users.set_password(tx, "admin", "changed-afterwards")
        assert load_demo(store) is None  # the saved password no longer works: not shown
    finally:
        store.close()


@pytest.mark.slow
def test_serve_demo_prints_a_working_login_on_every_start(tmp_path):
    data_dir = tmp_path / "demo"
    logins = []
    for _ in range(2):
        server = LiveServer(data_dir, args=["--demo"]).start()
        try:
            assert server.proc is not None and server.proc.stdout is not None
            line = server.proc.stdout.readline()
            assert line.strip().startswith("Demo login: ")
            username, password = line.split(": ", 1)[1].strip().split(" / ")
            logins.append((username, password))
            r = requests.get(f"{server.url}/api/v1/queues", timeout=10)
            assert [q["prefix"] for q in r.json()["items"]] == ["A", "L", "P"]
            assert token(server.url, (username, password))
        finally:
            server.stop()
    assert logins[0] == logins[1]


# -- installer ---------------------------------------------------------------------------

def test_the_systemd_unit_runs_a_command_this_cli_accepts():
    unit = (Path(__file__).resolve().parent.parent / "installer" / "jonot-local.service")
    lines = [line.strip() for line in unit.read_text().splitlines()]
    service = dict(line.split("=", 1) for line in lines
                   if "=" in line and not line.startswith("#"))
    assert "Environment=JONOT_DATA_DIR=/var/lib/jonot-local" in lines
    assert service["User"] == "jonot-local" and service["StateDirectory"] == "jonot-local"
    program, *args = service["ExecStart"].split()
    assert program.endswith("/jonot-local") and args[0] == "serve"
    ctx = cli.serve.make_context("serve", args[1:])  # raises on an unknown option
    settings = Settings.load({"host": ctx.params["host"], "port": ctx.params["port"]},
                             environ={})
    assert settings.port == 8080 and settings.host == "0.0.0.0"


def test_the_password_prompt_does_not_hold_the_database(tmp_path, monkeypatch):
    data_dir = _seeded(tmp_path)
    monkeypatch.setattr(cli, "stdin_is_tty", lambda: True)

    def prompt(*args: Any, **kwargs: Any) -> str:
        # While a person types, the server must still be able to write.
        conn = sqlite3.connect(str(database_path(data_dir)), timeout=0)
        conn.execute("BEGIN IMMEDIATE")
        conn.rollback()
        conn.close()
        return "typed-password"

    monkeypatch.setattr(click, "prompt", prompt)
    for args in (["user", "add", "nurse2"], ["user", "passwd", "nurse"]):
        result = run(*args, "--data-dir", str(data_dir))
        assert result.exit_code == 0, result.output


# -- the file system refuses: one line, status 2, never a traceback ----------------------

def _process(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "jonot_local", *args], capture_output=True,
                          text=True, timeout=60, env=env)


def _one_error_line(proc: subprocess.CompletedProcess[str], *needles: str) -> str:
    assert proc.returncode == 2, proc
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("jonot-local: error: "), proc.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


@contextlib.contextmanager
def _immutable(*paths: Path) -> Iterator[None]:
    """Make paths read-only even for root (``chattr +i``); skip where that is not allowed."""
    done: list[Path] = []
    try:
        for path in paths:
            if subprocess.run(["chattr", "+i", str(path)], capture_output=True).returncode:
                pytest.skip("chattr +i is not available here")
            done.append(path)
        yield
    finally:
        for path in done:
            subprocess.run(["chattr", "-i", str(path)], check=True)


def _os_error_cases(tmp_path: Path) -> dict[str, tuple[list[str], str]]:
    data = str(_seeded(tmp_path))
    (tmp_path / "a-file").write_text("not a folder\n")
    return {
        "backup under a regular file": (
            ["backup", str(tmp_path / "a-file" / "copy.sqlite3"), "--data-dir", data],
            "cannot write the backup"),
        "backup into /proc": (["backup", "/proc/jonot-copy.sqlite3", "--data-dir", data],
                              "cannot write the backup"),
        "user list on /proc/self": (["user", "list", "--data-dir", "/proc/self"],
                                    "no database in /proc/self"),
        "user add on /proc/self": (["user", "add", "nurse", "--password", "long-enough",
                                    "--data-dir", "/proc/self"], "/proc/self"),
        "user passwd on /proc/self": (["user", "passwd", "nurse", "--password", "long-enough",
                                       "--data-dir", "/proc/self"], "/proc/self"),
        "backup on /proc/self": (["backup", "--data-dir", "/proc/self"], "no database"),
        "restore on /proc/self": (["restore", str(tmp_path / "a-file"),
                                   "--data-dir", "/proc/self"], "/proc/self"),
        "serve on /proc/self": (["serve", "--host", "127.0.0.1", "--port", "0", "--no-zeroconf",
                                 "--data-dir", "/proc/self"], "/proc/self"),
    }


@pytest.mark.parametrize("case", [
    "backup under a regular file", "backup into /proc", "user list on /proc/self",
    "user add on /proc/self", "user passwd on /proc/self", "backup on /proc/self",
    "restore on /proc/self", "serve on /proc/self"])
def test_file_system_refusals_are_one_line(tmp_path, case):
    args, needle = _os_error_cases(tmp_path)[case]
    _one_error_line(_process(*args), needle)


def test_backup_when_the_default_backups_dir_cannot_be_made(tmp_path):
    data_dir = _seeded(tmp_path)
    (data_dir / "backups").write_text("a file where the folder should be\n")
    _one_error_line(_process("backup", "--data-dir", str(data_dir)),
                    "cannot write the backup", str(data_dir / "backups"))


def test_commands_on_a_read_only_data_dir(tmp_path):
    data_dir = _seeded(tmp_path)
    db = database_path(data_dir)
    before = db.read_bytes()
    with _immutable(db, data_dir):
        # Reading needs no write: user list works, and settings.
        proc = _process("user", "list", "--data-dir", str(data_dir))
        assert proc.returncode == 0, proc.stderr
        assert "nurse" in proc.stdout and proc.stderr == ""
        assert _process("settings", "--data-dir", str(data_dir)).returncode == 0
        # Writing cannot: one line each.
        _one_error_line(_process("user", "add", "other", "--password", "long-enough",
                                 "--data-dir", str(data_dir)), str(data_dir))
        _one_error_line(_process("backup", "--data-dir", str(data_dir)),
                        "cannot write the backup")
    assert db.read_bytes() == before
    assert [p.name for p in data_dir.iterdir()] == ["jonot.sqlite3"]  # nothing beside it


def test_read_only_commands_never_create_a_database(tmp_path):
    missing = tmp_path / "never-set-up"
    for args in (["user", "list"], ["user", "list", "--json"]):
        result = run(*args, "--data-dir", str(missing))
        line = _one_line_error(result)
        assert f"no database in {missing}" in line
    assert run("settings", "--data-dir", str(missing)).exit_code == 0
    assert not missing.exists()


def test_user_list_never_migrates_or_writes(tmp_path):
    data_dir = _seeded(tmp_path)
    db = database_path(data_dir)
    conn = sqlite3.connect(str(db))
    conn.execute("DELETE FROM _sqlite_migrations WHERE name = '0002_devices'")
    conn.commit()
    conn.close()
    before = db.read_bytes()
    line = _one_line_error(run("user", "list", "--data-dir", str(data_dir)))
    assert "needs an upgrade" in line and str(data_dir) in line
    assert db.read_bytes() == before  # (a reader may leave an empty -wal, as SQLite does)
    assert not Path(str(db) + "-wal").exists() or Path(str(db) + "-wal").stat().st_size == 0


def test_an_empty_office_says_how_to_make_the_first_admin(tmp_path):
    d = tmp_path / "data"
    open_store(d).close()
    result = run("user", "list", "--data-dir", str(d))
    assert result.exit_code == 0
    assert f"No accounts in {d} yet" in result.stdout
    assert f"jonot-local user add NAME --admin --data-dir {d}" in result.stdout


# -- restoring another office's backup -----------------------------------------------------

def _location_id(data_dir: Path) -> str:
    conn = sqlite3.connect(str(database_path(data_dir)))
    try:
        return str(conn.execute("SELECT id FROM location").fetchone()[0])
    finally:
        conn.close()


def test_restore_of_another_locations_backup_needs_other_location(tmp_path):
    ours = _seeded(tmp_path)
    theirs = tmp_path / "theirs"
    assert run("user", "add", "their-admin", "--password", "long-enough", "--admin",
               "--data-dir", str(theirs)).exit_code == 0
    copy = tmp_path / "their-backup.sqlite3"
    assert run("backup", str(copy), "--data-dir", str(theirs)).exit_code == 0
    our_id, their_id = _location_id(ours), _location_id(theirs)
    assert our_id != their_id
    before = database_path(ours).read_bytes()

    line = _one_line_error(run("restore", str(copy), "--data-dir", str(ours)))
    assert our_id in line and their_id in line and "--other-location" in line
    assert database_path(ours).read_bytes() == before  # untouched
    assert not (ours / "backups").exists()
    assert [u["username"] for u in json.loads(
        run("user", "list", "--json", "--data-dir", str(ours)).stdout)] == ["nurse"]

    result = run("restore", str(copy), "--other-location", "--data-dir", str(ours))
    assert result.exit_code == 0, result.output
    assert _location_id(ours) == their_id
    assert [u["username"] for u in json.loads(
        run("user", "list", "--json", "--data-dir", str(ours)).stdout)] == ["their-admin"]


def test_serve_runs_without_glibc_per_thread_malloc_caches(tmp_path):
    from jonot_local.server import MALLOC_TUNABLE, malloc_environ

    assert malloc_environ({"A": "1"}, "Linux", "glibc") == {"A": "1",
                                                            "GLIBC_TUNABLES": MALLOC_TUNABLE}
    assert malloc_environ({"GLIBC_TUNABLES": "glibc.malloc.arena_max=2"}, "Linux", "glibc") == {
        "GLIBC_TUNABLES": f"glibc.malloc.arena_max=2:{MALLOC_TUNABLE}"}
    assert malloc_environ({"GLIBC_TUNABLES": "glibc.malloc.tcache_count=7"}, "Linux",
                          "glibc") is None  # the operator's own choice stays
    assert malloc_environ({}, "Linux", "") is None  # musl
    assert malloc_environ({}, "Windows", "") is None


@pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc",
                    reason="glibc only")
def test_a_served_office_runs_with_the_malloc_tunable(live_server):
    assert live_server.proc is not None
    environ = Path(f"/proc/{live_server.proc.pid}/environ").read_bytes().split(b"\0")
    tunables = [e for e in environ if e.startswith(b"GLIBC_TUNABLES=")]
    assert tunables and b"glibc.malloc.tcache_count=0" in tunables[0]
    r = requests.get(f"{live_server.url}/api/v1/health", timeout=10)
    assert r.status_code == 200
