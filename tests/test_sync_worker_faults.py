"""The office's sync worker through the chaos proxy (``tests/chaos_proxy.py``) to a fake cloud:
each kind of fault in turn, and the worker recovers from every one (fast)."""

from __future__ import annotations

import pytest
from jonot_local.sync import outbox
from jonot_local.sync.worker import CloudClient, CloudError, SyncWorker

from jonot_local.domain import tickets

from .chaos_proxy import FAULTS, ChaosProxy
from .sync_fake_cloud import TOKEN, FakeCloud
from .test_sync_office import entries, office_app, office_tickets, setup


@pytest.fixture
def chain():
    cloud = FakeCloud().start()
    proxy = ChaosProxy(int(cloud.url.rsplit(":", 1)[1]), rate=0.0, seed=1).start()
    yield cloud, proxy
    proxy.stop()
    cloud.stop()


def test_an_answer_cut_mid_body_is_a_retryable_cloud_error(tmp_path, chain):
    cloud, proxy = chain
    app = office_app(tmp_path, proxy.url)
    rt = app.extensions["jonot"]
    q, _ = setup(rt.store)
    outbox.install(rt.store)
    with rt.store.write() as tx:
        tickets.join(tx, q.id)
    worker = SyncWorker(rt.store, rt.settings, CloudClient(proxy.url, TOKEN, 5.0))
    proxy.force("cut_response")
    with pytest.raises(CloudError, match="broke off"):
        worker.push_once()  # applied by the cloud, the answer cut
    with rt.store.read() as tx:
        assert "broke off" in tx.one("SELECT last_error FROM sync_state")[0]
    answer = worker.push_once()  # again: a duplicate for the cloud
    assert answer["acked_seq"] == len(entries(rt.store))
    assert cloud.tickets() == office_tickets(rt.store)


@pytest.mark.parametrize("fault", FAULTS)
def test_the_running_worker_recovers_from_each_fault(tmp_path, chain, fault):
    cloud, proxy = chain
    app = office_app(tmp_path, proxy.url, sync_backoff_min_s=0.02, sync_backoff_max_s=0.1)
    rt = app.extensions["jonot"]
    q, d = setup(rt.store)
    proxy.stall_s = 2.5  # past the 2 s timeout below
    proxy.force(*[fault] * 4)
    worker = SyncWorker(rt.store, rt.settings, CloudClient(proxy.url, TOKEN, 2.0))
    worker.start()
    try:
        for i in range(6):
            with rt.store.write() as tx:
                tickets.join(tx, q.id)
                if i % 2:
                    tickets.call_next(tx, d.id)
        assert cloud.wait_for(lambda: cloud.tickets() == office_tickets(rt.store), timeout=20)
        assert all(t.is_alive() for t in worker._threads)
    finally:
        worker.stop()
    assert proxy.counts[fault] >= 2  # met on the way (the rest maybe after it caught up)
