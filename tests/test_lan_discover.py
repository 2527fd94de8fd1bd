"""Finding the server from a desk PC: choose, remember, retry, follow a move (no window)."""

from __future__ import annotations

import pytest

from jonot_local.lan.discover import Connector, Memory, Server, decide

from .lan_support import AnnouncingServer, unique

pytestmark = pytest.mark.xdist_group("mdns")  # mDNS on loopback: one test at a time

A = Server("Clinic A", "192.0.2.10", 8080, "LOC-A", "1")
B = Server("Clinic B", "192.0.2.20", 8080, "LOC-B", "1")


class FakeLan:
    """What ``browse`` would see and which URLs answer ``probe``."""

    def __init__(self, *servers: Server) -> None:
        self.servers = list(servers)
        self.browses = 0

    def browse(self, timeout: float, interfaces=None, want_location=None) -> list[Server]:
        self.browses += 1
        return list(self.servers)

    def probe(self, url: str):
        for s in self.servers:
            if s.url == url:
                return {"status": "ok", "location_id": s.location, "location_name": s.name}
        return None


def connector(tmp_path, lan: FakeLan, typed: str | None = None) -> Connector:
    return Connector(Memory(tmp_path / "desk.json"), typed, browse=lan.browse, probe=lan.probe)


def test_one_server_is_chosen_and_remembered(tmp_path):
    c = connector(tmp_path, FakeLan(A))
    d = c.find()
    assert (d.state, d.url, d.name) == ("connect", "http://192.0.2.10:8080", "Clinic A")
    assert c.memory.load() == {"url": A.url, "location": "LOC-A", "name": "Clinic A"}


def test_two_servers_ask_the_user_and_the_choice_is_kept(tmp_path):
    lan = FakeLan(A, B)
    c = connector(tmp_path, lan)
    d = c.find()
    assert d.state == "choose" and d.servers == [A, B]
    c.choose(B)
    # A new window on the same PC, later: straight to B.
    again = connector(tmp_path, lan).find()
    assert (again.state, again.url) == ("connect", B.url)


def test_the_remembered_office_is_preferred_among_several():
    assert decide([A, B], {"location": "LOC-B"}).url == B.url
    # The remembered office is away: others are offered, never switched to silently.
    d = decide([A], {"location": "LOC-C", "name": "Clinic C"})
    assert d.state == "retry" and d.servers == [A] and "Clinic C" in d.reason
    assert decide([A], None).url == A.url
    assert decide([], None).state == "retry"


def test_a_gone_server_means_retry_then_it_is_found_again_at_a_new_port(tmp_path):
    lan = FakeLan(A)
    c = connector(tmp_path, lan)
    assert c.find().state == "connect"
    lan.servers = []
    d = c.find()
    assert d.state == "retry" and "not reachable at http://192.0.2.10:8080" in d.reason
    moved = Server("Clinic A", "192.0.2.99", 8081, "LOC-A")  # new DHCP lease, new port
    lan.servers = [moved, B]
    d = c.find()
    assert (d.state, d.url) == ("connect", "http://192.0.2.99:8081")
    assert c.memory.load()["url"] == moved.url


def test_a_remembered_url_that_now_answers_for_another_office_is_not_used(tmp_path):
    lan = FakeLan(A, B)
    c = connector(tmp_path, lan)
    c.memory.save(A.url, "LOC-B", "Clinic B")  # A's address used to be B's
    d = c.find()
    assert (d.state, d.url) == ("connect", B.url)


def test_a_typed_url_is_used_and_remembered(tmp_path):
    lan = FakeLan(A, B)
    c = connector(tmp_path, lan, typed="192.0.2.20:8080/desk")
    d = c.find()
    assert (d.state, d.url) == ("connect", B.url) and lan.browses == 0
    assert c.memory.load()["location"] == "LOC-B"
    nowhere = connector(tmp_path / "other", FakeLan(), typed="http://192.0.2.55:8080")
    d = nowhere.find()
    assert d.state == "retry" and "192.0.2.55" in d.reason


def test_a_broken_memory_file_is_forgotten(tmp_path):
    (tmp_path / "desk.json").write_text("{not json")
    assert connector(tmp_path, FakeLan(A)).find().url == A.url


@pytest.mark.slow
def test_real_servers_are_found_by_location_and_followed_to_a_new_port(tmp_path):
    """Two announcing servers in other processes; the desk logic browses for real."""
    a = AnnouncingServer(tmp_path / "a", unique("Clinic A"), unique("jonot")).start()
    b = AnnouncingServer(tmp_path / "b", unique("Clinic B"), unique("jonot")).start()
    try:
        a.wait_discovery("announcing")
        b.wait_discovery("announcing")
        loc_a, loc_b = a.health()["location_id"], b.health()["location_id"]
        c = Connector(Memory(tmp_path / "desk.json"), interfaces=["127.0.0.1"],
                      browse_timeout=4.0)
        d = c.find()
        assert d.state == "choose", d  # (other tests' servers may be announced too)
        ours = {s.location: s for s in d.servers if s.location in (loc_a, loc_b)}
        assert set(ours) == {loc_a, loc_b}
        assert ours[loc_b].url == b.url and ours[loc_b].name == b.health()["location_name"]
        c.choose(ours[loc_b])
        assert (c.find().state, c.find().url) == ("connect", b.url)

        b.stop()
        d = c.find()
        assert d.state == "retry" and loc_a in {s.location for s in d.servers}
        # b comes back on another port (the same data: the same location id).
        b2 = AnnouncingServer(tmp_path / "b", unique("Clinic B"), unique("jonot")).start()
        try:
            assert b2.port != b.port
            b2.wait_discovery("announcing")
            d = c.find()
            assert (d.state, d.url, d.location) == ("connect", b2.url, loc_b)
        finally:
            b2.stop()
    finally:
        a.stop()
        b.stop()
