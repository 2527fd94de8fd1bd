"""A small cloud for the office's sync tests: the protocol of ``jonot_local.sync.protocol``,
minimally, served by waitress on loopback in a thread.

It accepts contiguous sequence numbers per (install, epoch), skips duplicates
(same seq, same hash), answers ``rotate`` to a fork, keeps the newest version
of each entity, relays actions and can be told to fail in chosen ways.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections import deque
from datetime import UTC, datetime, timedelta
from typing import Any

from flask import Flask, jsonify, request
from jonot_local.sync.protocol import MAX_BATCH, entry_hash
from waitress.server import create_server

TOKEN = "office-token"


class FakeCloud:
    def __init__(self) -> None:
        self.lock = threading.Condition()
        self.epochs: dict[str, dict[str, Any]] = {}  # epoch_id → {"acked": int, "hashes": {}}
        self.entities: dict[tuple[str, str], dict[str, Any]] = {}  # (entity, id) → entry
        self.actions: list[dict[str, Any]] = []
        self.numbers: dict[str, int] = {}  # queue id → highest ticket number seen
        self.pushes = 0
        self.push_times: list[float] = []
        self.entries_received = 0
        self.applied_cmd_through = 0
        self.faults: deque[Any] = deque()  # per push: int status, "drop" (commit, then 500), …
        self.action_faults: deque[int] = deque()
        self.redeliver_all = False  # ignore ``after``: every action, every poll
        self.clock_offset_s = 0.0
        self.next_answer: dict[str, Any] | None = None  # e.g. {"action": "rotate", ...}
        self.frozen = False
        self.answer_delay_s = 0.0  # after committing a push, before answering it
        self.app = self._make_app()
        self.server: Any = None
        self.url = ""

    # -- what the cloud holds -----------------------------------------------------------

    def acked(self, epoch_id: str | None) -> int:
        with self.lock:
            return int(self.epochs.get(epoch_id or "", {}).get("acked", 0))

    def tickets(self) -> dict[str, dict[str, Any]]:
        with self.lock:
            return {k[1]: dict(v["payload"]) for k, v in self.entities.items()
                    if k[0] == "ticket"}

    def commands(self) -> dict[str, dict[str, Any]]:
        with self.lock:
            return {k[1]: dict(v["payload"]) for k, v in self.entities.items()
                    if k[0] == "command"}

    def add_action(self, kind: str, payload: dict[str, Any], command_id: str) -> dict[str, Any]:
        with self.lock:
            action = {"cmd_seq": len(self.actions) + 1, "command_id": command_id,
                      "kind": kind, "payload": payload,
                      "created_at": datetime.now(UTC).isoformat()}
            self.actions.append(action)
            self.lock.notify_all()
            return action

    def wait_for(self, predicate: Any, timeout: float = 10.0) -> bool:
        deadline = time.monotonic() + timeout
        with self.lock:
            while not predicate():
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self.lock.wait(min(left, 0.05))
            return True

    # -- the protocol ---------------------------------------------------------------------

    def _max_numbers(self) -> dict[str, int]:
        return dict(self.numbers)

    def push(self, body: dict[str, Any]) -> tuple[dict[str, Any], int]:
        with self.lock:
            self.pushes += 1
            self.push_times.append(time.monotonic())
            fault = self.faults.popleft() if self.faults else None
            if isinstance(fault, int):
                return {"title": "fault", "detail": f"told to answer {fault}"}, fault
            now = (datetime.now(UTC) + timedelta(seconds=self.clock_offset_s)).isoformat()
            if self.frozen:
                return {"acked_seq": 0, "action": "frozen", "cloud_time": now,
                        "message": "two installations share this office's token"}, 200
            epoch = self.epochs.setdefault(body["epoch_id"], {"acked": 0, "hashes": {}})
            if self.next_answer is not None:
                answer, self.next_answer = self.next_answer, None
                return {"acked_seq": epoch["acked"], "cloud_time": now,
                        "max_numbers": self._max_numbers(), **answer}, 200
            entries = body["entries"]
            assert len(entries) <= MAX_BATCH
            seqs = [e["seq"] for e in entries]
            assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs), seqs
            for e in entries:
                assert e["entry_hash"] == entry_hash(e["entity"], e["entity_id"], e["version"],
                                                     e["payload"])
                self.entries_received += 1
                if e["seq"] <= epoch["acked"]:
                    if epoch["hashes"].get(e["seq"], e["entry_hash"]) != e["entry_hash"]:
                        return {"acked_seq": epoch["acked"], "action": "rotate",
                                "cloud_time": now, "max_numbers": self._max_numbers(),
                                "message": "this epoch's history forked"}, 200
                    continue
                if e["seq"] != epoch["acked"] + 1:
                    break  # a gap: stop and say how far we are
                key = (e["entity"], e["entity_id"])
                old = self.entities.get(key)
                if old is None or old["epoch"] != body["epoch_id"] \
                        or old["version"] <= e["version"]:
                    self.entities[key] = {"epoch": body["epoch_id"], "version": e["version"],
                                          "payload": e["payload"]}
                    if e["entity"] == "ticket":
                        q, n = e["payload"]["origin_queue_id"], e["payload"]["number"]
                        self.numbers[q] = max(self.numbers.get(q, 0), n)
                epoch["hashes"][e["seq"]] = e["entry_hash"]
                epoch["acked"] = e["seq"]
            self.applied_cmd_through = max(self.applied_cmd_through,
                                           int(body.get("applied_cmd_through", 0)))
            self.lock.notify_all()
            if fault == "drop":  # committed, but the answer is lost
                return {"title": "lost"}, 500
            return {"acked_seq": epoch["acked"], "action": "ok", "cloud_time": now,
                    "max_numbers": self._max_numbers(), "message": ""}, 200

    def get_actions(self, after: int, wait: float) -> tuple[dict[str, Any], int]:
        deadline = time.monotonic() + min(wait, 2.0)
        with self.lock:
            if self.action_faults:
                return {"title": "fault"}, self.action_faults.popleft()
            while True:
                start = 0 if self.redeliver_all else after
                found = [a for a in self.actions if a["cmd_seq"] > start]
                left = deadline - time.monotonic()
                if found or left <= 0:
                    return {"actions": found}, 200
                self.lock.wait(min(left, 0.05))

    def _make_app(self) -> Flask:
        app = Flask("fake_cloud")

        def authorised() -> bool:
            return request.headers.get("Authorization") == f"Bearer {TOKEN}"

        @app.post("/api/v1/sync/push")
        def push() -> Any:
            if not authorised():
                return jsonify({"title": "bad token"}), 401
            body, status = self.push(request.get_json())
            if self.answer_delay_s:
                time.sleep(self.answer_delay_s)
            resp = jsonify(body)
            if status in (429, 503):
                resp.headers["Retry-After"] = "1"
            return resp, status

        @app.get("/api/v1/sync/actions")
        def actions() -> Any:
            if not authorised():
                return jsonify({"title": "bad token"}), 401
            body, status = self.get_actions(int(request.args.get("after", 0)),
                                            float(request.args.get("wait", 0)))
            return jsonify(body), status

        return app

    # -- serving -----------------------------------------------------------------------

    def start(self) -> FakeCloud:
        self.server = create_server(self.app, host="127.0.0.1", port=0, threads=8)
        self.url = f"http://127.0.0.1:{self.server.effective_port}"
        self.thread = threading.Thread(target=self._run, name="fake-cloud", daemon=True)
        self.thread.start()
        return self

    def _run(self) -> None:
        with contextlib.suppress(OSError, ValueError):  # closed under its loop at stop
            self.server.run()

    def stop(self) -> None:
        if self.server is None:
            return
        self.server.task_dispatcher.shutdown(timeout=5)
        for channel in list(self.server.active_channels.values()):
            channel.handle_close()
        self.server.close()
        self.thread.join(5)
