"""Signing in: the password check never stalls the office, and guessing is throttled.

- the hash check runs with no write lock and no database connection held, so
  a flood of wrong passwords from 8 addresses leaves joins fast (real waitress);
- wrong passwords are throttled per address and account (429 ``rate_limited``
  with ``Retry-After``, waits growing 1, 2, 4 s … up to a cap), a throttled
  attempt costs no hash check, another address still signs in the same
  account, a right password clears that address's failures for the account;
- an unknown user costs what a wrong password costs;
- new passwords are hashed before the write transaction, with the configured
  method, and stored hashes of any method keep verifying.
"""

from __future__ import annotations

import dataclasses
import http.client
import json
import statistics
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from werkzeug.security import generate_password_hash

from jonot_local.app import create_app
from jonot_local.domain import users
from jonot_local.domain.errors import ValidationError
from jonot_local.signin import FailureBackoff, HashSlots, SignInBusy, SignInGuard

from .support import ADMIN, CHEAP_HASH, STAFF, FakeClock, LiveServer

TOKEN = "/api/v1/auth/token"


def attempt(client: Any, password: str, address: str = "127.0.0.2",
            username: str = ADMIN[0], headers: dict[str, str] | None = None) -> Any:
    return client.post(TOKEN, json={"username": username, "password": password},
                       environ_base={"REMOTE_ADDR": address}, headers=headers or {})


def guard_of(app: Any) -> SignInGuard:
    return app.extensions["jonot"].signin


def with_clock(app: Any, clock: FakeClock, **settings: Any) -> SignInGuard:
    rt = app.extensions["jonot"]
    rt.signin = SignInGuard(rt.store, dataclasses.replace(rt.settings, **settings), clock=clock)
    return rt.signin


# -- the budgets, alone ------------------------------------------------------------------------

def test_waits_begin_after_the_free_failures_and_double_up_to_the_cap():
    clock = FakeClock()
    backoff = FailureBackoff(free=3, max_delay_s=10, forget_s=1e9, clock=clock)
    for _ in range(2):
        backoff.failed("k")
        assert backoff.retry_after("k") == 0
    waits = []
    for _ in range(6):
        backoff.failed("k")
        waits.append(backoff.retry_after("k"))
        clock.now += waits[-1]
        assert backoff.retry_after("k") == 0
    assert waits == [1, 2, 4, 8, 10, 10]
    assert backoff.retry_after("other") == 0


def test_failures_are_forgotten_over_time_and_cleared_at_once():
    clock = FakeClock()
    backoff = FailureBackoff(free=2, max_delay_s=60, forget_s=10, clock=clock)
    for _ in range(4):
        backoff.failed("k")
    assert backoff.failures("k") == 4
    clock.now += 25
    assert backoff.failures("k") == pytest.approx(1.5)
    backoff.failed("k")  # 2.5 failures, counted as 3: one past the two free ones
    assert backoff.retry_after("k") == 2
    backoff.clear("k")
    assert backoff.failures("k") == 0 and backoff.retry_after("k") == 0


def test_hash_slots_refuse_at_once_when_the_queue_is_full():
    slots = HashSlots(slots=1, queue=1, wait_s=5)
    inside, release = threading.Event(), threading.Event()

    def hold() -> None:
        with slots.slot():
            inside.set()
            release.wait(5)

    holder = threading.Thread(target=hold)
    holder.start()
    inside.wait(5)
    def wait_in_queue() -> None:
        with slots.slot():
            pass

    waiter = threading.Thread(target=wait_in_queue)
    waiter.start()
    time.sleep(0.05)
    started = time.monotonic()
    with pytest.raises(SignInBusy) as caught, slots.slot():
        pass
    assert time.monotonic() - started < 0.5 and caught.value.retry_after >= 1
    release.set()
    holder.join(5)
    waiter.join(5)


# -- throttling over the API (test client, REMOTE_ADDR per client) ---------------------------------

def test_one_address_is_refused_with_429_after_five_wrong_passwords(client):
    for _ in range(5):
        assert attempt(client, "wrong-password").status_code == 401
    r = attempt(client, "wrong-password")
    assert r.status_code == 429 and r.mimetype == "application/problem+json"
    assert r.json["code"] == "rate_limited"
    assert int(r.headers["Retry-After"]) >= 1
    # The right password waits too: the address must slow down, whoever it is.
    assert attempt(client, ADMIN[1]).status_code == 429


def test_the_wait_grows_with_each_failure_and_stays_capped(app, client):
    clock = FakeClock()
    with_clock(app, clock, signin_forget_s=1e6)  # nothing forgotten while the waits pass
    for _ in range(5):
        assert attempt(client, "wrong-password").status_code == 401
    waits = []
    for _ in range(8):
        r = attempt(client, "wrong-password")
        assert r.status_code == 429
        waits.append(int(r.headers["Retry-After"]))
        clock.now += waits[-1]
        assert attempt(client, "wrong-password").status_code == 401  # the wait is over
    assert waits == [1, 2, 4, 8, 16, 32, 60, 60]


def test_another_address_signs_in_the_same_account_while_one_is_throttled(client):
    for _ in range(6):
        attempt(client, "wrong-password", "127.0.0.2")
    assert attempt(client, "wrong-password", "127.0.0.2").status_code == 429
    r = attempt(client, ADMIN[1], "127.0.0.3")
    assert r.status_code == 201 and r.json["user"]["username"] == ADMIN[0]
    assert attempt(client, ADMIN[1], "127.0.0.2").status_code == 429


def test_a_right_password_clears_that_addresss_failures_for_the_account(client):
    for _ in range(4):
        assert attempt(client, "wrong-password").status_code == 401
    assert attempt(client, ADMIN[1]).status_code == 201
    for _ in range(5):  # a fresh budget of five
        assert attempt(client, "wrong-password").status_code == 401
    assert attempt(client, "wrong-password").status_code == 429


def test_one_address_trying_many_accounts_is_throttled_too(client):
    statuses = [attempt(client, "wrong-password", username=f"user{i}").status_code
                for i in range(21)]
    assert statuses[:20] == [401] * 20 and statuses[20] == 429
    assert attempt(client, ADMIN[1], "127.0.0.9").status_code == 201


def test_a_throttled_attempt_costs_no_hash_check(app, client, monkeypatch):
    calls = []
    real = users.check_password_hash
    monkeypatch.setattr(users, "check_password_hash",
                        lambda stored, pw: calls.append(1) or real(stored, pw))
    for _ in range(5):
        attempt(client, "wrong-password")
    assert len(calls) == 5
    for _ in range(30):
        assert attempt(client, "wrong-password").status_code == 429
    assert len(calls) == 5 and guard_of(app).checks == 5


def test_a_refused_sign_in_is_answered_after_the_pause_and_a_checked_one_is_not(app, client):
    """A client repeating refused attempts as fast as they are answered is slowed by the
    pause (which sleeps without the GIL); a wrong or right password checked is not."""
    pauses: list[float] = []
    rt = app.extensions["jonot"]
    rt.signin = SignInGuard(rt.store, dataclasses.replace(rt.settings,
                                                          signin_refusal_pause_s=0.25),
                            sleep=pauses.append)
    for _ in range(5):
        assert attempt(client, "wrong-password").status_code == 401
    assert pauses == []
    for _ in range(3):
        assert attempt(client, "wrong-password").status_code == 429
    assert pauses == [0.25, 0.25, 0.25]
    assert attempt(client, ADMIN[1], "127.0.0.3").status_code == 201  # another address
    assert pauses == [0.25, 0.25, 0.25]


def test_many_addresses_spend_the_accounts_budget_but_not_for_known_addresses_or_desks(
        tmp_path):
    app = create_app({"data_dir": tmp_path / "d", "password_hash_method": CHEAP_HASH,
                      "signin_account_free_failures": 6})
    client = app.test_client()
    with app.extensions["jonot"].store.write() as tx:
        users.create_user(tx, STAFF[0], STAFF[1])
        users.create_user(tx, ADMIN[0], ADMIN[1], role="admin")
    assert attempt(client, STAFF[1], "127.0.0.50", STAFF[0]).status_code == 201  # her desk
    for i in range(6):
        assert attempt(client, "wrong-password", f"127.0.1.{i}", STAFF[0]).status_code == 401
    # A new address must wait, the address she signed in from before does not.
    assert attempt(client, STAFF[1], "127.0.2.1", STAFF[0]).status_code == 429
    assert attempt(client, STAFF[1], "127.0.0.50", STAFF[0]).status_code == 201
    # Nor does a registered desk PC, wherever it is.
    admin = attempt(client, ADMIN[1], "127.0.0.60").json["token"]
    r = client.post("/api/v1/devices", json={"kind": "desk", "name": "Room 9"},
                    headers={"Authorization": f"Bearer {admin}"})
    assert r.status_code == 201, r.json
    desk = {"X-Jonot-Device": r.json["token"]}
    assert attempt(client, STAFF[1], "127.0.2.2", STAFF[0], headers=desk).status_code == 201
    app.extensions["jonot"].store.close()


def test_too_many_sign_ins_waiting_answers_429_at_once(app, client):
    guard = guard_of(app)
    guard.slots = HashSlots(slots=1, queue=0)
    with guard.slots.slot():  # a check in progress elsewhere
        started = time.monotonic()
        r = attempt(client, ADMIN[1], "127.0.0.7")
    assert time.monotonic() - started < 1
    assert r.status_code == 429 and r.json["code"] == "rate_limited"
    assert r.headers["Retry-After"] == "1"
    assert attempt(client, ADMIN[1], "127.0.0.7").status_code == 201


# -- timing and where the hash work happens ------------------------------------------------------

def test_unknown_user_and_wrong_password_take_about_the_same_time(tmp_path):
    method = "pbkdf2:sha256:50000"  # slow enough that the hash, not noise, is measured
    app = create_app({"data_dir": tmp_path / "d", "password_hash_method": method,
                      "signin_free_failures": 1000, "signin_address_free_failures": 1000})
    client = app.test_client()
    with app.extensions["jonot"].store.write() as tx:
        users.create_user(tx, ADMIN[0], ADMIN[1], role="admin")

    def took(username: str) -> float:
        t0 = time.perf_counter()
        r = attempt(client, "wrong-password", username=username)
        assert r.status_code == 401
        return time.perf_counter() - t0

    wrong, unknown = [], []
    for _ in range(5):
        wrong.append(took(ADMIN[0]))
        unknown.append(took("nobody-here"))
    ratio = statistics.median(unknown) / statistics.median(wrong)
    assert 0.6 < ratio < 1.6, (wrong, unknown)
    assert statistics.median(wrong) > 0.005  # the hash was really computed
    app.extensions["jonot"].store.close()


def test_the_hash_check_holds_no_write_lock_and_no_connection(app, client, monkeypatch):
    store = app.extensions["jonot"].store
    seen = []
    real = users.check_password_hash

    def spy(stored: str, password: str) -> bool:
        seen.append((store._write_lock.locked(), store._created - store._pool.qsize()))
        return real(stored, password)

    monkeypatch.setattr(users, "check_password_hash", spy)
    assert attempt(client, ADMIN[1]).status_code == 201
    assert attempt(client, "wrong-password").status_code == 401
    assert attempt(client, "wrong-password", username="ghost").status_code == 401
    assert seen == [(False, 0)] * 3


def test_new_passwords_are_hashed_before_the_write_with_the_configured_method(app, monkeypatch):
    store = app.extensions["jonot"].store
    locked = []
    real = users.generate_password_hash
    monkeypatch.setattr(users, "generate_password_hash",
                        lambda pw, method: locked.append(store._write_lock.locked())
                        or real(pw, method))
    hashed = users.hash_password("a-long-password", CHEAP_HASH)
    with store.write() as tx:
        users.create_user(tx, "nurse", hashed)
        users.set_password(tx, "nurse", hashed)
    assert locked == [False]
    with store.read() as tx:
        row = tx.one("SELECT password_hash FROM users WHERE username = 'nurse'")
    assert row["password_hash"].startswith("pbkdf2:sha256:1000$")
    with pytest.raises(ValidationError):
        users.hash_password("short")


def test_stored_hashes_of_any_method_keep_verifying(app, client):
    store = app.extensions["jonot"].store
    with store.write() as tx:
        for name, method in (("old-scrypt", "scrypt:1024:8:1"),
                             ("old-pbkdf2", "pbkdf2:sha512:2000")):
            tx.execute("UPDATE users SET password_hash = ? WHERE username = ?",
                       (generate_password_hash(name + "-password", method),
                        ADMIN[0] if name == "old-scrypt" else STAFF[0]))
    assert attempt(client, "old-scrypt-password", "127.0.0.2", ADMIN[0]).status_code == 201
    assert attempt(client, "old-pbkdf2-password", "127.0.0.3", STAFF[0]).status_code == 201


def test_the_default_method_is_scrypt_and_a_bad_one_is_refused(tmp_path):
    app = create_app({"data_dir": tmp_path / "a"})
    assert guard_of(app).dummy.startswith("scrypt:")
    app.extensions["jonot"].store.close()
    with pytest.raises(ValueError, match="password hash method"):
        create_app({"data_dir": tmp_path / "b", "password_hash_method": "md5"})


def test_a_password_changed_during_the_check_gets_no_token(app, client, monkeypatch):
    store = app.extensions["jonot"].store
    real = users.check_password_hash

    def change_meanwhile(stored: str, password: str) -> bool:
        assert store._write_lock.acquire(timeout=2), "the check runs inside the write lock"
        store._write_lock.release()
        with store.write() as tx:
            users.set_password(tx, ADMIN[0], users.hash_password("changed-password", CHEAP_HASH))
        return real(stored, password)

    monkeypatch.setattr(users, "check_password_hash", change_meanwhile)
    assert attempt(client, ADMIN[1]).status_code == 401


# -- a real server on loopback, many client addresses ----------------------------------------------

class Client:
    """One keep-alive connection from a chosen loopback source address."""

    def __init__(self, port: int, source: str, timeout: float = 5.0) -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout,
                                               source_address=(source, 0))

    def post(self, path: str, body: Any, headers: dict[str, str] | None = None
             ) -> tuple[int, dict[str, str], Any]:
        self.conn.request("POST", path, body=json.dumps(body),
                          headers={"Content-Type": "application/json", **(headers or {})})
        resp = self.conn.getresponse()
        data = resp.read()
        return resp.status, dict(resp.getheaders()), json.loads(data) if data else None

    def close(self) -> None:
        self.conn.close()


def _strong_accounts(data_dir: Path) -> None:
    """The test accounts with the real default hash (scrypt), as an office has them."""
    app = create_app({"data_dir": data_dir, "password_hash_method": "scrypt"})
    store = app.extensions["jonot"].store
    with store.write() as tx:
        users.create_user(tx, ADMIN[0], ADMIN[1], role="admin")
        users.create_user(tx, STAFF[0], STAFF[1])
    store.close()


@pytest.mark.slow
def test_a_flood_of_wrong_passwords_does_not_stall_joins(tmp_path):
    data_dir = tmp_path / "live"
    _strong_accounts(data_dir)
    # Budgets lifted: every wrong password really costs a scrypt check here.
    env = {"JONOT_SIGNIN_FREE_FAILURES": "1000000",
           "JONOT_SIGNIN_ADDRESS_FREE_FAILURES": "1000000",
           "JONOT_SIGNIN_ACCOUNT_FREE_FAILURES": "1000000", "JONOT_SIGNIN_HASH_SLOTS": "1"}
    server = LiveServer(data_dir, env=env).start()
    try:
        desk = Client(server.port, "127.0.0.1")
        status, _, body = desk.post(TOKEN, {"username": STAFF[0], "password": STAFF[1]})
        assert status == 201
        staff = {"Authorization": f"Bearer {body['token']}"}
        admin = Client(server.port, "127.0.0.1")
        admin_token = admin.post(TOKEN, {"username": ADMIN[0], "password": ADMIN[1]})[2]["token"]
        status, _, queue = admin.post("/api/v1/queues", {"name": "General", "prefix": "A"},
                                      {"Authorization": f"Bearer {admin_token}"})
        assert status == 201
        join = f"/api/v1/queues/{queue['id']}/tickets"

        def joins(n: int) -> list[float]:
            out = []
            for _ in range(n):
                t0 = time.perf_counter()
                assert desk.post(join, {}, staff)[0] == 201
                out.append(time.perf_counter() - t0)
            return out

        joins(5)
        idle = joins(40)
        stop = threading.Event()
        answers: list[int] = []

        def flood(k: int) -> None:
            c = Client(server.port, f"127.0.0.{2 + k}", timeout=30)
            while not stop.is_set():
                answers.append(c.post(TOKEN, {"username": ADMIN[0],
                                              "password": f"guess-{k}"})[0])
            c.close()

        flooders = [threading.Thread(target=flood, args=(k,)) for k in range(8)]
        for t in flooders:
            t.start()
        try:
            time.sleep(0.5)
            loaded = joins(40)
        finally:
            stop.set()
            for t in flooders:
                t.join(30)
        desk.close()
        admin.close()
    finally:
        server.stop()
    assert answers and set(answers) <= {401, 429}
    assert answers.count(401) >= 3, "the flood did not reach the password check"
    idle_p50, loaded_p50 = statistics.median(idle), statistics.median(loaded)
    loaded_p99 = sorted(loaded)[-1]
    print(f"joins idle p50 {idle_p50 * 1000:.1f} ms, during the flood p50 "
          f"{loaded_p50 * 1000:.1f} ms, max {loaded_p99 * 1000:.1f} ms; flood answers "
          f"{answers.count(401)} x 401, {answers.count(429)} x 429")
    assert loaded_p50 < 10 * idle_p50 + 0.005, (idle_p50, loaded_p50)
    assert loaded_p99 < 0.2, (idle, loaded)


@pytest.mark.slow
def test_a_real_server_throttles_one_address_and_lets_another_sign_in(tmp_path):
    from .support import seed_accounts

    data_dir = tmp_path / "live"
    seed_accounts(data_dir)
    server = LiveServer(data_dir).start()
    try:
        attacker = Client(server.port, "127.0.0.2")
        statuses = [attacker.post(TOKEN, {"username": ADMIN[0], "password": f"guess-{i}"})
                    for i in range(8)]
        assert [s for s, _, _ in statuses[:5]] == [401] * 5
        assert statuses[5][0] == 429 and int(statuses[5][1]["Retry-After"]) >= 1
        assert statuses[5][2]["code"] == "rate_limited"
        nurse = Client(server.port, "127.0.0.3")
        assert nurse.post(TOKEN, {"username": ADMIN[0], "password": ADMIN[1]})[0] == 201
        assert attacker.post(TOKEN, {"username": ADMIN[0], "password": ADMIN[1]})[0] == 429
        attacker.close()
        nurse.close()
    finally:
        server.stop()
