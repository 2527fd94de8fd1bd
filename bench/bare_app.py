"""The yardstick for joins/s: a bare Flask + waitress + SQLite insert endpoint.

``POST /tickets`` inserts one row and commits with ``journal_mode=WAL`` and
``synchronous=FULL`` (the same durability as Jonot Local), one connection per
waitress thread, and answers 201 with a small JSON body. Nothing else: no
counter, no validation, no position. Run it as
``python -m bench.bare_app --port 0 --data-dir DIR``; it prints its URL when ready.
"""

from __future__ import annotations

import argparse
import sqlite3
import threading
import time
from pathlib import Path

from flask import Flask, jsonify, request
from waitress.server import create_server

THREADS = 8


def create_bare_app(db_path: Path) -> Flask:
    """The app: ``GET /health`` and ``POST /tickets``."""
    app = Flask("bare")
    local = threading.local()
    with sqlite3.connect(db_path) as conn:
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("CREATE TABLE IF NOT EXISTS tickets (id INTEGER PRIMARY KEY, "
                     "body TEXT NOT NULL, created_at REAL NOT NULL)")

    def db() -> sqlite3.Connection:
        if not hasattr(local, "conn"):
            conn = sqlite3.connect(db_path, isolation_level=None, timeout=10)
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = FULL")
            local.conn = conn
        return local.conn

    @app.get("/health")
    def health():  # type: ignore[no-untyped-def]
        return jsonify({"status": "ok"})

    @app.post("/tickets")
    def insert():  # type: ignore[no-untyped-def]
        body = request.get_json(silent=True) or {}
        conn = db()
        conn.execute("BEGIN IMMEDIATE")
        cur = conn.execute("INSERT INTO tickets (body, created_at) VALUES (?, ?)",
                           (str(body), time.time()))
        conn.execute("COMMIT")
        return jsonify({"id": cur.lastrowid}), 201

    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--data-dir", type=Path, required=True)
    args = parser.parse_args()
    args.data_dir.mkdir(parents=True, exist_ok=True)
    app = create_bare_app(args.data_dir / "bare.sqlite3")
    server = create_server(app, host="127.0.0.1", port=args.port, threads=THREADS,
                           asyncore_use_poll=True)
    print(f"bare app on http://127.0.0.1:{server.effective_port}/health", flush=True)
    server.run()


if __name__ == "__main__":
    main()
