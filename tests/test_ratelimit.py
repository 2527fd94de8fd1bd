"""Look-ups by ticket hash: per-client budgets against guessing, and a response-time floor."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from jonot_local.api.ratelimit import HashLookupLimits, TokenBuckets
from jonot_local.app import create_app
from jonot_local.domain import queues, tickets

from .support import FakeClock

# -- token buckets --------------------------------------------------------------------------

def test_a_bucket_holds_a_minutes_budget_then_refuses_with_the_wait():
    clock = FakeClock()
    buckets = TokenBuckets(6, clock=clock)  # one token every 10 s
    assert [buckets.take("a") for _ in range(6)] == [0] * 6
    assert buckets.take("a") == 10
    assert buckets.retry_after("a") == 10
    clock.advance(4)
    assert buckets.take("a") == 6
    clock.advance(6)
    assert buckets.retry_after("a") == 0
    assert buckets.take("a") == 0
    assert buckets.take("a") == 10


def test_buckets_refill_at_their_rate_up_to_their_size():
    clock = FakeClock()
    buckets = TokenBuckets(60, clock=clock)  # one a second
    for _ in range(60):
        buckets.take("a")
    clock.advance(30)
    assert sum(buckets.take("a") == 0 for _ in range(40)) == 30
    clock.advance(3600)  # a long pause refills to the size, not beyond
    assert sum(buckets.take("a") == 0 for _ in range(100)) == 60


def test_keys_are_independent():
    clock = FakeClock()
    buckets = TokenBuckets(2, clock=clock)
    buckets.take("a"), buckets.take("a")
    assert buckets.take("a") > 0
    assert buckets.take("b") == 0


def test_retry_after_does_not_draw():
    buckets = TokenBuckets(1, clock=FakeClock())
    for _ in range(5):
        assert buckets.retry_after("a") == 0
    assert buckets.take("a") == 0
    assert buckets.retry_after("a") == 60


def test_memory_is_bounded_by_forgetting_the_least_recent_keys():
    clock = FakeClock()
    buckets = TokenBuckets(1, max_keys=3, clock=clock)
    for key in "abc":
        buckets.take(key)
    buckets.take("d")  # evicts "a", the least recently used
    assert len(buckets._buckets) == 3
    assert buckets.take("a") == 0  # forgotten: a fresh bucket
    assert buckets.take("d") > 0


def test_spent_misses_refuse_every_look_up_until_they_refill():
    clock = FakeClock()
    limits = HashLookupLimits(600, 3, clock=clock)
    for _ in range(3):
        assert limits.admit("x") == 0
        limits.missed("x")
    assert limits.admit("x") == 20  # 3 a minute: one every 20 s
    assert limits.admit("y") == 0
    clock.advance(20)
    assert limits.admit("x") == 0


def test_hits_draw_only_from_the_generous_budget():
    limits = HashLookupLimits(5, 1, clock=FakeClock())
    assert [limits.admit("x") for _ in range(5)] == [0] * 5
    assert limits.admit("x") > 0


# -- over HTTP ----------------------------------------------------------------------------------

def make_app(tmp_path: Path, **settings: Any) -> Any:
    app = create_app({"data_dir": tmp_path / "data", "hash_lookup_floor_ms": 0, **settings})
    store = app.extensions["jonot"].store
    with store.write() as tx:
        queue = queues.create_queue(tx, name="General", prefix="A")
        app.extensions["test_hashes"] = [
            tickets.join(tx, queue.id, source="kiosk").hash for _ in range(2)]
    return app


@pytest.fixture
def limited(tmp_path: Path) -> Any:
    app = make_app(tmp_path)
    yield app
    app.extensions["jonot"].store.close()


def unknown(i: int) -> str:
    return f"unknownhash{i:011d}"


def client_at(app: Any, address: str) -> Any:
    client = app.test_client()
    client.environ_base["REMOTE_ADDR"] = address
    return client


def test_too_many_unknown_hashes_get_429_then_even_valid_ones(limited):
    budget = limited.extensions["jonot"].settings.hash_miss_per_min
    valid = limited.extensions["test_hashes"][0]
    guesser = client_at(limited, "192.0.2.10")
    for i in range(budget):
        r = guesser.get(f"/api/v1/tickets/by-hash/{unknown(i)}")
        assert r.status_code == 404 and r.json["code"] == "not_found"
    r = guesser.get(f"/api/v1/tickets/by-hash/{unknown(budget)}")
    assert r.status_code == 429
    assert r.mimetype == "application/problem+json" and r.json["code"] == "rate_limited"
    assert int(r.headers["Retry-After"]) >= 1
    for path in (f"/api/v1/tickets/by-hash/{valid}", f"/api/v1/tickets/by-hash/{valid}/cancel",
                 f"/api/v1/tickets/by-hash/{valid}/events"):
        r = guesser.open(path, method="POST" if path.endswith("cancel") else "GET")
        assert r.status_code == 429, path
        assert "Retry-After" in r.headers
    neighbour = client_at(limited, "192.0.2.11")
    assert neighbour.get(f"/api/v1/tickets/by-hash/{valid}").status_code == 200
    assert neighbour.get(f"/api/v1/tickets/by-hash/{unknown(0)}").status_code == 404


def test_failed_cancels_count_as_guesses(limited):
    budget = limited.extensions["jonot"].settings.hash_miss_per_min
    guesser = client_at(limited, "192.0.2.20")
    codes = [guesser.post(f"/api/v1/tickets/by-hash/{unknown(i)}/cancel").status_code
             for i in range(budget + 1)]
    assert codes == [404] * budget + [429]


def test_malformed_hashes_count_as_guesses(limited):
    budget = limited.extensions["jonot"].settings.hash_miss_per_min
    guesser = client_at(limited, "192.0.2.21")
    codes = [guesser.get(f"/api/v1/tickets/by-hash/x{i}").status_code for i in range(budget + 1)]
    assert codes == [404] * budget + [429]


def test_a_holder_polling_their_ticket_is_never_throttled(limited):
    valid = limited.extensions["test_hashes"][1]
    holder = client_at(limited, "192.0.2.30")
    codes = {holder.get(f"/api/v1/tickets/by-hash/{valid}").status_code for _ in range(100)}
    assert codes == {200}


def test_without_trusted_proxies_forwarded_for_is_ignored(limited):
    budget = limited.extensions["jonot"].settings.hash_miss_per_min
    guesser = client_at(limited, "192.0.2.40")
    codes = [guesser.get(f"/api/v1/tickets/by-hash/{unknown(i)}",
                         headers={"X-Forwarded-For": f"198.51.100.{i}"}).status_code
             for i in range(budget + 1)]
    assert codes[-1] == 429


def test_behind_a_trusted_proxy_the_forwarded_address_is_the_key(tmp_path):
    app = make_app(tmp_path, trusted_proxies=1, hash_miss_per_min=5)
    proxy = client_at(app, "10.0.0.1")
    valid = app.extensions["test_hashes"][0]

    def get(hash_: str, phone: str) -> int:
        return proxy.get(f"/api/v1/tickets/by-hash/{hash_}",
                         headers={"X-Forwarded-For": phone}).status_code

    assert [get(unknown(i), "203.0.113.5") for i in range(6)] == [404] * 5 + [429]
    assert get(valid, "203.0.113.5") == 429
    # Another phone behind the same proxy keeps its own budget.
    assert get(valid, "203.0.113.6") == 200
    assert [get(unknown(i), "203.0.113.6") for i in range(5)] == [404] * 5
    app.extensions["jonot"].store.close()


def test_a_hit_and_a_miss_both_take_at_least_the_floor(tmp_path):
    app = make_app(tmp_path, hash_lookup_floor_ms=30)
    client = client_at(app, "192.0.2.50")
    valid = app.extensions["test_hashes"][0]
    durations: dict[str, list[float]] = {"hit": [], "miss": [], "malformed": []}
    for i in range(5):
        for kind, path in (("hit", valid), ("miss", unknown(i)), ("malformed", "short")):
            started = time.perf_counter()
            r = client.get(f"/api/v1/tickets/by-hash/{path}")
            durations[kind].append(time.perf_counter() - started)
            assert r.status_code == (200 if kind == "hit" else 404)
    for kind, values in durations.items():
        assert min(values) >= 0.030, (kind, values)
    started = time.perf_counter()
    r = client.post(f"/api/v1/tickets/by-hash/{valid}/cancel")
    assert r.status_code == 200 and time.perf_counter() - started >= 0.030
    app.extensions["jonot"].store.close()
