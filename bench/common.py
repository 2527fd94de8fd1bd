"""Shared pieces of the benchmarks: a real server in a subprocess, load clients, tables.

Nothing here is imported by the product. The load client is ``wrk`` when it is
installed (a C client that leaves the two cores to the server), otherwise 16
Python threads with keep-alive ``http.client`` connections in this process.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from jonot_local.db import open_store
from jonot_local.domain import queues, users

ADMIN = ("bench-admin", "bench-admin-password")
READY_RE = re.compile(r"http://127\.0\.0\.1:(\d+)/")


# -- figures and tables ----------------------------------------------------------------------

def percentile(values: Sequence[float], pct: float) -> float:
    """The ``pct`` percentile (nearest rank) of ``values``; 0.0 for none."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = min(len(ordered) - 1, max(0, math.ceil(pct / 100.0 * len(ordered)) - 1))
    return ordered[rank]


def latency_summary(seconds: Sequence[float]) -> dict[str, float]:
    """p50, p99 and max of latencies given in seconds, as milliseconds."""
    return {"p50_ms": round(percentile(seconds, 50) * 1000, 2),
            "p99_ms": round(percentile(seconds, 99) * 1000, 2),
            "max_ms": round(max(seconds, default=0.0) * 1000, 2)}


def print_table(title: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    """Print rows under a title as an aligned plain-text table."""
    cells = [[_cell(v) for v in row] for row in rows]
    widths = [max(len(c), *(len(r[i]) for r in cells)) if cells else len(c)
              for i, c in enumerate(columns)]
    print(f"\n{title}")
    print("  " + "  ".join(c.ljust(w) for c, w in zip(columns, widths)))
    print("  " + "  ".join("-" * w for w in widths))
    for row in cells:
        print("  " + "  ".join(v.rjust(w) if _numeric(v) else v.ljust(w)
                               for v, w in zip(row, widths)))
    sys.stdout.flush()


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:,.2f}" if abs(value) < 100 else f"{value:,.0f}"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return "" if value is None else str(value)


def _numeric(text: str) -> bool:
    return bool(re.fullmatch(r"[-+]?[\d,]+(\.\d+)?", text))


def note(text: str) -> None:
    """A progress line, so a long run shows what it is doing."""
    print(f"  .. {text}", flush=True)


# -- temporary data --------------------------------------------------------------------------

@contextlib.contextmanager
def temp_dir(prefix: str) -> Iterator[Path]:
    """A fresh directory, removed afterwards whatever happens (databases can be large)."""
    path = Path(tempfile.mkdtemp(prefix=f"jonot-bench-{prefix}-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def seed_office(data_dir: Path, n_queues: int = 1, n_desks: int = 1,
                password_hash_method: str | None = None) -> dict[str, Any]:
    """Migrate a data dir and add an admin account, queues A, B, … and desks serving all.

    ``password_hash_method``: how the admin's password is hashed (the server's
    default, scrypt, when ``None``). Returns ``{"queues": [ids], "desks": [ids],
    "admin_id": id}``.
    """
    store = open_store(data_dir)
    if password_hash_method:
        store.password_hash_method = password_hash_method
    try:
        with store.write() as tx:
            admin = users.create_user(tx, ADMIN[0], ADMIN[1], role="admin")
            qids = [queues.create_queue(tx, name=f"Queue {chr(65 + i)}", prefix=chr(65 + i)).id
                    for i in range(n_queues)]
            dids = [queues.create_desk(tx, name=f"Desk {i + 1}", queue_ids=qids).id
                    for i in range(n_desks)]
    finally:
        store.close()
    return {"queues": qids, "desks": dids, "admin_id": admin["id"]}


# -- servers ---------------------------------------------------------------------------------

class ServerProcess:
    """A server started as a subprocess on 127.0.0.1 that prints its URL when ready.

    Output goes to a log file (never an unread pipe, which would block a busy server).
    """

    def __init__(self, cmd: list[str], log_path: Path, env: dict[str, str] | None = None,
                 health_path: str = "/api/v1/health") -> None:
        self.cmd = cmd
        self.log_path = log_path
        self.env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
        self.health_path = health_path
        self.proc: subprocess.Popen[bytes] | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30.0) -> ServerProcess:
        """Start the process and wait until its health URL answers 200."""
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(self.cmd, stdout=log, stderr=subprocess.STDOUT,
                                         env=self.env)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited early:\n{self.log_path.read_text()[-2000:]}")
            match = READY_RE.search(self.log_path.read_text(errors="replace"))
            if match:
                self.port = int(match.group(1))
                break
            time.sleep(0.05)
        else:
            self.stop()
            raise RuntimeError("server did not print its URL in time")
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError, http.client.HTTPException):
                status, _ = HttpClient(self.url).request("GET", self.health_path)
                if status == 200:
                    return self
            time.sleep(0.05)
        self.stop()
        raise RuntimeError("server did not answer in time")

    def cpu_seconds(self) -> float:
        """User + system CPU time the server process has used so far (Linux)."""
        if self.proc is None:
            return 0.0
        try:
            fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return 0.0
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def context_switches(self) -> int:
        """Voluntary + involuntary context switches of all the server's threads so far
        (Linux; threads that have ended are not counted)."""
        if self.proc is None:
            return 0
        total = 0
        task_dir = Path(f"/proc/{self.proc.pid}/task")
        try:
            tasks = list(task_dir.iterdir())
        except OSError:
            return 0
        for task in tasks:
            with contextlib.suppress(OSError):
                for line in (task / "status").read_text().splitlines():
                    if "ctxt_switches:" in line:  # voluntary_… and nonvoluntary_…
                        total += int(line.split()[1])
        return total

    def stop(self) -> None:
        """SIGTERM, then SIGKILL if it does not stop within 10 s."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)

    def __enter__(self) -> ServerProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def jonot_server(data_dir: Path, env: dict[str, str] | None = None) -> ServerProcess:
    """``python -m jonot_local serve`` on a free loopback port, as an office would run it."""
    cmd = [sys.executable, "-m", "jonot_local", "serve", "--host", "127.0.0.1", "--port", "0",
           "--no-zeroconf", "--data-dir", str(data_dir)]
    return ServerProcess(cmd, data_dir.parent / f"{data_dir.name}-server.log", env=env)


# -- HTTP ------------------------------------------------------------------------------------

class HttpClient:
    """One keep-alive HTTP/1.1 connection; reconnects once if the server closed it."""

    def __init__(self, base_url: str, headers: dict[str, str] | None = None,
                 timeout: float = 30.0, source: str | None = None) -> None:
        host, _, port = base_url.removeprefix("http://").partition(":")
        self.host, self.port, self.timeout = host, int(port or 80), timeout
        self.source = (source, 0) if source else None
        self.headers = dict(headers or {})
        self.conn: http.client.HTTPConnection | None = None

    def request(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        """Send a request (``body`` as JSON); returns the status and the decoded JSON (or None)."""
        payload = None if body is None else json.dumps(body).encode()
        headers = {**self.headers, "Accept": "application/json"}
        if payload is not None:
            headers["Content-Type"] = "application/json"
        for attempt in (1, 2):
            if self.conn is None:
                self.conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout,
                                                       source_address=self.source)
            try:
                self.conn.request(method, path, body=payload, headers=headers)
                resp = self.conn.getresponse()
                raw = resp.read()
            except (ConnectionError, http.client.RemoteDisconnected, http.client.BadStatusLine):
                self.close()
                if attempt == 2:
                    raise
                continue
            if resp.getheader("Connection", "").lower() == "close":
                self.close()
            data = json.loads(raw) if raw and raw[:1] in (b"{", b"[") else None
            return resp.status, data
        raise AssertionError("unreachable")

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None


def bearer_headers(base_url: str, who: tuple[str, str] = ADMIN) -> dict[str, str]:
    """Authorization headers for an account, from ``POST /api/v1/auth/token``."""
    status, data = HttpClient(base_url).request(
        "POST", "/api/v1/auth/token", {"username": who[0], "password": who[1]})
    if status != 201:
        raise RuntimeError(f"could not get a token: {status} {data}")
    return {"Authorization": f"Bearer {data['token']}"}


# -- load clients ----------------------------------------------------------------------------

WRK_LUA = """
local paths = {%(paths)s}
local body = %(body)s
local n = 0
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
%(headers)s
request = function()
  n = n + 1
  return wrk.format("POST", paths[(n %% #paths) + 1], nil, body)
end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {"requests": %%d, "duration_us": %%d, "status_errors": %%d, ' ..
    '"socket_errors": %%d, "timeouts": %%d, "p50_us": %%d, "p99_us": %%d, "max_us": %%d}\\n',
    summary.requests, summary.duration, e.status, e.connect + e.read + e.write,
    e.timeout, latency:percentile(50), latency:percentile(99), latency.max))
end
"""


def wrk_path() -> str | None:
    """The ``wrk`` executable, or ``None`` (install it with ``apt-get install -y wrk``)."""
    return shutil.which("wrk")


def _lua_string(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def load_wrk(base_url: str, paths: Sequence[str], body: dict[str, Any], duration: float,
             connections: int = 16, work_dir: Path | None = None,
             headers: dict[str, str] | None = None) -> dict[str, Any]:
    """POST ``body`` round-robin to ``paths`` with wrk (2 threads) for ``duration`` seconds."""
    exe = wrk_path()
    if exe is None:
        raise RuntimeError("wrk is not installed")
    script = WRK_LUA % {"paths": ", ".join(_lua_string(p) for p in paths),
                        "body": _lua_string(json.dumps(body)),
                        "headers": "\n".join(f"wrk.headers[{_lua_string(k)}] = {_lua_string(v)}"
                                             for k, v in (headers or {}).items())}
    with tempfile.NamedTemporaryFile("w", suffix=".lua", dir=work_dir, delete=False) as f:
        f.write(script)
    try:
        out = subprocess.run(
            [exe, "-t2", f"-c{connections}", f"-d{max(1, round(duration))}s", "--timeout", "10s",
             "-s", f.name, base_url + paths[0]],
            capture_output=True, text=True, timeout=duration + 60, check=True).stdout
    finally:
        os.unlink(f.name)
    match = re.search(r"BENCH_JSON (\{.*\})", out)
    if not match:
        raise RuntimeError(f"unexpected wrk output:\n{out}")
    raw = json.loads(match.group(1))
    seconds = raw["duration_us"] / 1e6
    errors = raw["status_errors"] + raw["socket_errors"] + raw["timeouts"]
    ok = raw["requests"] - raw["status_errors"]
    return {"client": "wrk", "requests": raw["requests"], "ok": ok, "errors": errors,
            "seconds": round(seconds, 2), "per_s": round(ok / seconds, 1),
            "p50_ms": round(raw["p50_us"] / 1000, 2), "p99_ms": round(raw["p99_us"] / 1000, 2),
            "max_ms": round(raw["max_us"] / 1000, 2)}


def load_python(base_url: str, paths: Sequence[str], body: dict[str, Any], duration: float,
                connections: int = 16, headers: dict[str, str] | None = None,
                sources: Sequence[str] = ()) -> dict[str, Any]:
    """Like ``load_wrk`` with ``connections`` Python threads, one keep-alive connection each.

    ``sources``: local addresses the connections are bound to, round-robin (many clients).
    """
    latencies: list[list[float]] = [[] for _ in range(connections)]
    errors = [0] * connections
    start = threading.Event()
    deadline = [0.0]

    def worker(k: int) -> None:
        client = HttpClient(base_url, headers=headers, timeout=10,
                            source=sources[k % len(sources)] if sources else None)
        start.wait()
        n = k
        while time.perf_counter() < deadline[0]:
            path = paths[n % len(paths)]
            n += 1
            t0 = time.perf_counter()
            try:
                status, _ = client.request("POST", path, body)
            except (OSError, http.client.HTTPException):
                errors[k] += 1
                client.close()
                continue
            latencies[k].append(time.perf_counter() - t0)
            if not 200 <= status < 300:
                errors[k] += 1
        client.close()

    threads = [threading.Thread(target=worker, args=(k,), daemon=True)
               for k in range(connections)]
    for t in threads:
        t.start()
    began = time.perf_counter()
    deadline[0] = began + duration
    start.set()
    for t in threads:
        t.join(duration + 30)
    seconds = time.perf_counter() - began
    flat = [x for chunk in latencies for x in chunk]
    ok = len(flat) - sum(errors)
    return {"client": f"python x{connections}", "requests": len(flat), "ok": ok,
            "errors": sum(errors), "seconds": round(seconds, 2),
            "per_s": round(ok / seconds, 1), **latency_summary(flat)}


def post_load(base_url: str, paths: Sequence[str], body: dict[str, Any], duration: float,
              client: str = "auto", connections: int = 16,
              work_dir: Path | None = None,
              headers: dict[str, str] | None = None) -> dict[str, Any]:
    """Run the chosen load client (``auto``: wrk if installed, else Python threads)."""
    if client == "wrk" or (client == "auto" and wrk_path()):
        return load_wrk(base_url, paths, body, duration, connections, work_dir, headers)
    return load_python(base_url, paths, body, duration, connections, headers)


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    """Run ``fn`` and return (seconds it took, its result)."""
    t0 = time.perf_counter()
    result = fn()
    return time.perf_counter() - t0, result


# -- the machine -------------------------------------------------------------------------------

def cpu_busy_share(seconds: float = 1.0) -> float | None:
    """Share of all cores busy (any process) over ``seconds``, from /proc/stat; Linux only."""

    def sample() -> tuple[int, int]:
        values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        idle = values[3] + values[4]  # idle + iowait
        return sum(values[:8]) - idle, sum(values[:8])

    try:
        busy0, total0 = sample()
        time.sleep(seconds)
        busy1, total1 = sample()
    except (OSError, ValueError, IndexError):
        return None
    return round((busy1 - busy0) / max(1, total1 - total0), 2)


def raw_commits_per_s(path: Path, mode: str = "FULL", count: int = 200) -> float:
    """Commits per second of a one-row insert at ``path``: the store's pragmas, ``mode`` sync."""
    from jonot_local.db import connect

    conn = connect(path)
    try:
        conn.execute(f"PRAGMA synchronous = {mode}")
        conn.execute("CREATE TABLE IF NOT EXISTS t (id INTEGER PRIMARY KEY, body TEXT)")
        began = time.perf_counter()
        for _ in range(count):
            conn.execute("BEGIN IMMEDIATE")
            conn.execute("INSERT INTO t (body) VALUES ('x')")
            conn.execute("COMMIT")
        return round(count / (time.perf_counter() - began), 1)
    finally:
        conn.close()


def fsync_commits_per_s(work_dir: Path, count: int = 200) -> float:
    """Commits per second of a one-row insert with WAL + synchronous=FULL in ``work_dir``."""
    return raw_commits_per_s(work_dir / "fsync-probe.sqlite3", "FULL", count)
