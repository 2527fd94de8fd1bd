"""The cloud's receiver (``sync/cloud/receiver.py``) under duplicates, late replays, gaps and
reorders, in process against a real SQLite cloud store.

A late copy of a push already applied (delayed or duplicated on the way, arriving after
later pushes) is a duplicate, never a fork. A hypothesis state machine then sends an
office's outbox the way a faulty network delivers it and checks, after every step, that
the cloud holds exactly what the entries up to its cursor say, each entry once.
"""

from __future__ import annotations

import random
import tempfile
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule
from jonot_local.sync.cloud.offices import add_office
from jonot_local.sync.cloud.receiver import apply_push, check_push
from jonot_local.sync.cloud.store import CloudStore, open_cloud_store

from jonot_local.ids import new_ulid

from .cloud_support import FakeOffice

_STORE: CloudStore | None = None


def cloud_store() -> CloudStore:
    """One SQLite cloud store for the module (each test registers its own office)."""
    global _STORE
    if _STORE is None:
        _STORE = open_cloud_store(Path(tempfile.mkdtemp(prefix="jonot-receiver-")))
    return _STORE


def new_office() -> FakeOffice:
    office_id, token = add_office(cloud_store(), "Clinic")
    return FakeOffice("http://127.0.0.1:9", token, office_id)


def push(office: FakeOffice, entries: list[dict[str, Any]], head_seq: int) -> dict[str, Any]:
    body = check_push({"install_id": office.install_id, "epoch_id": office.epoch_id,
                       "head_seq": head_seq, "entries": entries, "applied_cmd_through": 0,
                       "office_time": "2026-12-01T12:00:00Z"})
    return apply_push(cloud_store(), office.office_id, body).as_json()


def cloud_tickets(office: FakeOffice) -> dict[str, tuple[int, str]]:
    with cloud_store().read() as tx:
        return {r["ticket_id"]: (int(r["version"]), r["state"]) for r in tx.all(
            "SELECT ticket_id, version, state FROM ticket WHERE office_id = ?",
            (office.office_id,))}


def epochs(office: FakeOffice) -> list[tuple[str, str]]:
    with cloud_store().read() as tx:
        return [(r["epoch_id"], r["status"]) for r in tx.all(
            "SELECT epoch_id, status FROM office_epoch WHERE office_id = ?",
            (office.office_id,))]


def test_a_late_copy_of_an_applied_push_is_a_duplicate_not_a_fork():
    office = new_office()
    queue_id = new_ulid()
    first = [office.ticket(queue_id, n)[1] for n in range(1, 4)]
    assert push(office, first, 3)["acked_seq"] == 3
    later = [office.ticket(queue_id, n)[1] for n in range(4, 6)]
    assert push(office, later, 5)["acked_seq"] == 5
    # the first push again, long after: its head (3) is behind the cursor (5)
    late = push(office, first, 3)
    assert (late["action"], late["acked_seq"], late["applied"], late["duplicates"]) == (
        "ok", 5, 0, 3)
    late = push(office, [], 0)  # a heartbeat from before anything was applied
    assert (late["action"], late["acked_seq"]) == ("ok", 5)
    assert epochs(office) == [(office.epoch_id, "live")]
    more = office.ticket(queue_id, 6)[1]
    assert push(office, [more], 6)["acked_seq"] == 6
    assert len(cloud_tickets(office)) == 6


def test_a_replay_with_other_content_under_an_applied_seq_is_still_a_fork():
    office = new_office()
    queue_id = new_ulid()
    entries = [office.ticket(queue_id, n)[1] for n in range(1, 4)]
    assert push(office, entries, 3)["acked_seq"] == 3
    changed = {**entries[1]["payload"], "number": 9}
    other = office.entry("ticket", entries[1]["entity_id"], 1, changed, seq=2)
    assert push(office, [other], 2)["action"] == "rotate"
    assert epochs(office) == [(office.epoch_id, "forked")]


class NetworkOfAnOffice(RuleBasedStateMachine):
    """An office's outbox delivered by a network that duplicates, delays, reorders and loses.

    The office writes ticket snapshots (new tickets and later versions) to its outbox
    and pushes from its cursor; the network also delivers copies of pushes sent
    earlier (late, in any order), pushes that start past the cursor (a gap: the
    ones before were lost), and answers that never reach the office (its cursor stays).
    """

    def __init__(self) -> None:
        super().__init__()
        self.office = new_office()
        self.queue_id = new_ulid()
        self.outbox: list[dict[str, Any]] = []
        self.latest: dict[str, tuple[int, str]] = {}  # per ticket, at each seq, in order
        self.sent: list[tuple[list[dict[str, Any]], int]] = []
        self.office_acked = 0
        self.cloud_acked = 0

    @initialize()
    def start(self) -> None:
        self.write_new(2)

    @rule(n=st.integers(1, 4))
    def write_new(self, n: int) -> None:
        for _ in range(n):
            number = len(self.latest) + 1
            tid, entry = self.office.ticket(self.queue_id, number)
            self.outbox.append(entry)
            self.latest[tid] = (1, "WAITING")

    @rule(pick=st.randoms(use_true_random=False),
          state=st.sampled_from(["CALLED", "COMPLETED", "SKIPPED", "CANCELED"]))
    def write_change(self, pick: random.Random, state: str) -> None:
        tid = pick.choice(sorted(self.latest))
        version = self.latest[tid][0] + 1
        number = int(next(e for e in self.outbox if e["entity_id"] == tid)["payload"]["number"])
        _, entry = self.office.ticket(self.queue_id, number, state=state, version=version,
                                      ticket_id=tid)
        self.outbox.append(entry)
        self.latest[tid] = (version, state)

    def _send(self, entries: list[dict[str, Any]], head: int) -> dict[str, Any]:
        self.sent.append((entries, head))
        answer = push(self.office, entries, head)
        assert answer["action"] == "ok", answer
        assert answer["acked_seq"] >= self.cloud_acked  # the cursor never goes back
        self.cloud_acked = answer["acked_seq"]
        return answer

    @rule(size=st.integers(1, 6), answer_lost=st.booleans())
    def push_from_the_cursor(self, size: int, answer_lost: bool) -> None:
        batch = self.outbox[self.office_acked:self.office_acked + size]
        answer = self._send(batch, len(self.outbox))
        if not answer_lost:
            self.office_acked = answer["acked_seq"]

    @rule(skip=st.integers(1, 3), size=st.integers(1, 4))
    def push_past_a_gap(self, skip: int, size: int) -> None:
        start = self.cloud_acked + skip
        before = self.cloud_acked
        answer = self._send(self.outbox[start:start + size], len(self.outbox))
        if start < len(self.outbox):
            assert answer["acked_seq"] == before  # nothing after a gap is taken

    @rule(pick=st.randoms(use_true_random=False))
    def late_copy_of_an_earlier_push(self, pick: random.Random) -> None:
        if self.sent:
            entries, head = pick.choice(self.sent)
            self._send(entries, head)

    @invariant()
    def cloud_holds_the_entries_up_to_its_cursor(self) -> None:
        expected: dict[str, tuple[int, str]] = {}
        for entry in self.outbox[:self.cloud_acked]:
            p = entry["payload"]
            expected[entry["entity_id"]] = (entry["version"], p["state"])
        assert cloud_tickets(self.office) == expected
        with cloud_store().read() as tx:
            row = tx.one("SELECT COUNT(*) AS n, MAX(seq) AS top FROM applied_entry "
                         "WHERE office_id = ?", (self.office.office_id,))
        assert int(row["n"]) == self.cloud_acked == int(row["top"] or 0)
        assert epochs(self.office) == ([(self.office.epoch_id, "live")] if self.sent else [])


NetworkOfAnOffice.TestCase.settings = settings(
    max_examples=40, stateful_step_count=25, deadline=None,
    suppress_health_check=[HealthCheck.too_slow])
test_receiver_under_a_faulty_network = NetworkOfAnOffice.TestCase
