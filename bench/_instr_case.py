"""The program ``bench/instructions.py`` runs under callgrind: one office, requests in process.

``python -m bench._instr_case DATA_DIR CASE N``: sets up an office in ``DATA_DIR``
(four queues, one desk serving them, the bench's admin), builds the real app and the bare
yardstick (``bench/bare_app.py``), signs in once, warms every case up with
``WARMUP`` requests, then answers ``N`` requests of ``CASE`` (``join``,
``jonot_404``, ``bare``, ``bare_404``) by calling the WSGI apps with the environ
a server would pass (no test client, no server). ``N = 0`` is the baseline run:
everything but the measured requests. Each answer's status is checked, so a
count is never that of an error path.
"""

from __future__ import annotations

import io
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .bare_app import create_bare_app
from .common import ADMIN, seed_office

# The account's hash is checked once, at sign-in; a cheap method keeps scrypt's
# millions of instructions out of the baseline that every count subtracts.
CHEAP_HASH = "pbkdf2:sha256:1000"

WARMUP = 20
CASES = ("join", "jonot_404", "bare", "bare_404")
EXPECTED = {"join": "201", "jonot_404": "404", "bare": "201", "bare_404": "404"}


def environ(path: str, token: str | None = None) -> dict[str, Any]:
    """What waitress hands the app for ``POST path`` with an empty JSON object."""
    body = b"{}"
    env: dict[str, Any] = {
        "REQUEST_METHOD": "POST", "PATH_INFO": path, "SCRIPT_NAME": "", "QUERY_STRING": "",
        "SERVER_NAME": "127.0.0.1", "SERVER_PORT": "8080", "SERVER_PROTOCOL": "HTTP/1.1",
        "HTTP_HOST": "127.0.0.1:8080", "CONTENT_TYPE": "application/json",
        "CONTENT_LENGTH": str(len(body)), "REMOTE_ADDR": "127.0.0.1",
        "wsgi.url_scheme": "http", "wsgi.input": io.BytesIO(body), "wsgi.errors": sys.stderr,
        "wsgi.multithread": True, "wsgi.multiprocess": False, "wsgi.run_once": False,
        "wsgi.version": (1, 0)}
    if token:
        env["HTTP_AUTHORIZATION"] = "Bearer " + token
    return env


def call(app: Any, path: str, token: str | None = None) -> str:
    """One request through ``app``; its status code, the body read and closed."""
    statuses: list[str] = []
    out = app(environ(path, token), lambda status, headers, exc=None: statuses.append(status))
    try:
        b"".join(out)
    finally:
        if hasattr(out, "close"):
            out.close()
    return statuses[0].split()[0]


def cases(data_dir: Path) -> dict[str, Callable[[int], str]]:
    """Each case as a function of the request's index, on a freshly seeded office."""
    from jonot_local.app import create_app

    office = seed_office(data_dir / "office", n_queues=4, password_hash_method=CHEAP_HASH)
    app = create_app({"data_dir": str(data_dir / "office"), "password_hash_method": CHEAP_HASH})
    bare = create_bare_app(data_dir / "bare.sqlite3")
    signed = app.test_client().post("/api/v1/auth/token",
                                    json={"username": ADMIN[0], "password": ADMIN[1]})
    token = signed.get_json()["token"]
    paths = [f"/api/v1/queues/{q}/tickets" for q in office["queues"]]
    return {
        "join": lambda i: call(app.wsgi_app, paths[i % len(paths)], token),
        "jonot_404": lambda i: call(app.wsgi_app, "/api/v1/no-such-path", token),
        "bare": lambda i: call(bare.wsgi_app, "/tickets"),
        "bare_404": lambda i: call(bare.wsgi_app, "/no-such-path"),
    }


def main(argv: list[str]) -> int:
    data_dir, case, n = Path(argv[0]), argv[1], int(argv[2])
    if case not in CASES:
        print(f"unknown case {case!r}: one of {', '.join(CASES)}", file=sys.stderr)
        return 2
    data_dir.mkdir(parents=True, exist_ok=True)
    run = cases(data_dir)
    for name, fn in run.items():
        for i in range(WARMUP):
            if fn(i) != EXPECTED[name]:
                raise RuntimeError(f"{name}: unexpected status in warm-up")
    fn = run[case]
    for i in range(n):
        if fn(i) != EXPECTED[case]:
            raise RuntimeError(f"{case}: unexpected status")
    print(f"{case}: {n} requests answered", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
