"""Test helpers for the cloud: a real ``cloud serve`` process, a PostgreSQL cluster, an office.

``FakeOffice`` speaks the sync protocol (``jonot_local.sync.protocol``) as an
office's worker would: numbered entries with their hashes, pushes, long polls.
"""

from __future__ import annotations

import contextlib
import glob
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import requests
from jonot_local.sync import protocol

from jonot_local.ids import new_ulid


class CloudProcess:
    """``jonot-local cloud serve`` started for real on loopback."""

    def __init__(self, data_dir: Path, database_url: str = "",
                 env: dict[str, str] | None = None, port: int = 0) -> None:
        self.data_dir = Path(data_dir)
        self.port = port
        self.database_url = database_url
        self.env = {**os.environ, "PYTHONUNBUFFERED": "1", "JONOT_HASH_MISS_PER_MIN": "1000",
                    **(env or {})}
        self.proc: subprocess.Popen[str] | None = None
        self.url = ""

    def start(self, timeout: float = 30.0) -> CloudProcess:
        cmd = [sys.executable, "-m", "jonot_local", "cloud", "serve", "--host", "127.0.0.1",
               "--port", str(self.port), "--data-dir", str(self.data_dir)]
        if self.database_url:
            cmd += ["--database-url", self.database_url]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True, env=self.env)
        assert self.proc.stdout is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if not line:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"cloud exited: {self.proc.stderr.read()}")
                continue
            m = re.search(r"http://127\.0\.0\.1:(\d+)/api/v1/health", line)
            if m:
                self.url = f"http://127.0.0.1:{m.group(1)}"
                break
        else:
            raise RuntimeError("the cloud did not start in time")
        while time.monotonic() < deadline:
            with contextlib.suppress(requests.RequestException):
                if requests.get(self.url + "/api/v1/health", timeout=2).status_code == 200:
                    return self
            time.sleep(0.1)
        raise RuntimeError("the cloud did not answer in time")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        if self.proc:
            for stream in (self.proc.stdout, self.proc.stderr):
                if stream:
                    stream.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _pg_bin(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return candidates[-1] if candidates else None


def ensure_postgres_installed() -> str | None:
    """Path of initdb, installing Debian's postgresql when missing (as root); else ``None``."""
    if _pg_bin("initdb") is None and os.geteuid() == 0 and shutil.which("apt-get"):
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "install", "-y", "-q", "postgresql"], env=env,
                       capture_output=True, timeout=600, check=False)
        if _pg_bin("initdb") is None:
            subprocess.run(["apt-get", "update", "-q"], env=env, capture_output=True,
                           timeout=600, check=False)
            subprocess.run(["apt-get", "install", "-y", "-q", "postgresql"], env=env,
                           capture_output=True, timeout=900, check=False)
    return _pg_bin("initdb")


class PostgresCluster:
    """A throw-away PostgreSQL cluster on loopback, in a temp dir, run as a non-root user."""

    def __init__(self, fsync: bool = False) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="jonot-pg-"))
        self.port = free_port()
        self.user = "postgres"
        self.fsync = fsync  # off for tests (fast); on for benchmarks (what a server does)
        self.url = ""

    def _run(self, *args: str) -> subprocess.CompletedProcess[str]:
        cmd = list(args)
        if os.geteuid() == 0:
            cmd = ["runuser", "-u", self.user, "--", *cmd]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)

    def start(self) -> str:
        initdb, pg_ctl = _pg_bin("initdb"), _pg_bin("pg_ctl")
        assert initdb and pg_ctl
        if os.geteuid() == 0:
            import pwd

            try:
                pw = pwd.getpwnam(self.user)
            except KeyError:
                subprocess.run(["useradd", "--system", "--no-create-home", self.user],
                               check=True, capture_output=True)
                pw = pwd.getpwnam(self.user)
            os.chown(self.dir, pw.pw_uid, pw.pw_gid)
        data = str(self.dir / "data")
        done = self._run(initdb, "-D", data, "-U", "postgres", "--auth=trust", "-E", "UTF8",
                         "--no-sync")
        if done.returncode != 0:
            raise RuntimeError(f"initdb failed: {done.stderr.strip()}")
        opts = (f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 "
                f"-c fsync={'on' if self.fsync else 'off'} -c max_connections=200")
        done = self._run(pg_ctl, "-D", data, "-o", opts, "-l", str(self.dir / "log"), "-w",
                         "-t", "60", "start")
        if done.returncode != 0:
            raise RuntimeError(f"pg_ctl start failed: {done.stderr.strip()} "
                               f"{(self.dir / 'log').read_text(errors='replace')[-2000:]}")
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"
        return self.url

    def create_database(self, name: str) -> str:
        """A new empty database in this cluster; its URL."""
        import psycopg

        with psycopg.connect(self.url, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url.rsplit("/", 1)[0] + "/" + name

    def stop(self) -> None:
        pg_ctl = _pg_bin("pg_ctl")
        if pg_ctl:
            self._run(pg_ctl, "-D", str(self.dir / "data"), "-m", "immediate", "-w", "stop")
        shutil.rmtree(self.dir, ignore_errors=True)


class FakeOffice:
    """An office's sync worker reduced to the protocol, for driving the cloud in tests."""

    def __init__(self, base: str, token: str, office_id: str) -> None:
        self.base, self.token, self.office_id = base, token, office_id
        self.install_id = new_ulid()
        self.epoch_id = new_ulid()
        self.seq = 0
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"Bearer {token}"

    def entry(self, entity: str, entity_id: str, version: int,
              payload: dict[str, Any], seq: int | None = None) -> dict[str, Any]:
        if seq is None:
            self.seq += 1
            seq = self.seq
        return {"seq": seq, "entity": entity, "entity_id": entity_id, "version": version,
                "payload": payload,
                "entry_hash": protocol.entry_hash(entity, entity_id, version, payload)}

    def push_raw(self, entries: list[dict[str, Any]], head_seq: int | None = None,
                 **extra: Any) -> requests.Response:
        body = {"install_id": self.install_id, "epoch_id": self.epoch_id,
                "head_seq": self.seq if head_seq is None else head_seq,
                "entries": entries, "applied_cmd_through": 0,
                "office_time": "2026-12-01T12:00:00Z", **extra}
        return self.session.post(self.base + protocol.PREFIX + "/push", json=body, timeout=30)

    def push(self, entries: list[dict[str, Any]], **kw: Any) -> dict[str, Any]:
        resp = self.push_raw(entries, **kw)
        assert resp.status_code == 200, resp.text
        return resp.json()

    def actions(self, after: int = 0, wait: float = 0) -> list[dict[str, Any]]:
        resp = self.session.get(self.base + protocol.PREFIX + "/actions",
                                params={"after": after, "wait": wait}, timeout=wait + 30)
        assert resp.status_code == 200, resp.text
        return resp.json()["actions"]

    # -- entities as an office would describe them --------------------------------------

    def queue(self, name: str = "General", prefix: str = "A", open_: bool = True,
              version: int = 1, queue_id: str | None = None) -> tuple[str, dict[str, Any]]:
        queue_id = queue_id or new_ulid()
        payload = {"id": queue_id, "name": name, "prefix": prefix, "open": open_,
                   "service_time_s": 120.0}
        return queue_id, self.entry("queue", queue_id, version, payload)

    def ticket(self, queue_id: str, number: int, state: str = "WAITING", version: int = 1,
               ticket_id: str | None = None, ticket_hash: str | None = None,
               **fields: Any) -> tuple[str, dict[str, Any]]:
        ticket_id = ticket_id or new_ulid()
        payload: dict[str, Any] = {
            "id": ticket_id, "queue_id": queue_id, "number": number,
            "code": f"A{number:03d}", "state": state, "source": "kiosk",
            "priority": "normal", "order_key": float(number), "desk_id": None,
            "recall_count": 0, "created_at": "2026-12-01T08:00:00.000000Z",
            "called_at": None, "updated_at": "2026-12-01T08:00:00.000000Z",
            "version": version, **fields}
        if ticket_hash is not None:
            payload["hash_digest"] = protocol.hash_digest(ticket_hash)
        return ticket_id, self.entry("ticket", ticket_id, version, payload)

    def result(self, action: dict[str, Any], result: str, reason: str | None = None,
               ticket_id: str | None = None) -> dict[str, Any]:
        payload = {"cmd_seq": action["cmd_seq"], "command_id": action["command_id"],
                   "result": result, "reason": reason, "ticket_id": ticket_id}
        return self.entry("command", action["command_id"], 1, payload)
