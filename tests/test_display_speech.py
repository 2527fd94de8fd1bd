"""Displays configured in admin (queues, language), and announcements the server speaks.

The speech tests run the real espeak-ng (installed by ``tests/browser/ensure_chromium.sh``
when missing) and read the WAV it made.
"""

from __future__ import annotations

import io
import json
import re
import shutil
import subprocess
import wave
from pathlib import Path

import pytest

from jonot_local.domain import devices, queues, tickets
from jonot_local.speech import SpeechService, spoken_code, ssml
from tests.support import build_app

ENSURE = Path(__file__).resolve().parent / "browser" / "ensure_chromium.sh"


@pytest.fixture(scope="session")
def espeak() -> str:
    if shutil.which("espeak-ng") is None:
        subprocess.run(["sh", str(ENSURE)], check=True)
    found = shutil.which("espeak-ng")
    assert found, "espeak-ng could not be installed"
    return found


def _config(html: str) -> dict:
    found = re.search(r'<script type="application/json" id="jonot-config">(.*?)</script>',
                      html, re.S)
    assert found
    return json.loads(found.group(1))


def _register_display(client, admin_headers, options=None) -> dict:
    r = client.post("/api/v1/devices", headers=admin_headers,
                    json={"kind": "display", "name": "Lab TV"})
    assert r.status_code == 201, r.json
    device = r.json
    if options is not None:
        r = client.patch(f"/api/v1/devices/{device['id']}", headers=admin_headers,
                         json={"options": options})
        assert r.status_code == 200, r.json
        device = r.json
    return device


def _call(store, queue_id, desk_id):
    with store.write() as tx:
        made = tickets.join(tx, queue_id, source="kiosk")
        tickets.call_next(tx, desk_id)
    return made


# -- a display device's options ---------------------------------------------------------------

def test_display_device_options_default_and_change(client, admin_headers, office):
    device = _register_display(client, admin_headers)
    assert device["options"] == {"queue_ids": None, "language": None}
    device = _register_display(client, admin_headers,
                               {"queue_ids": [office["lab"].id], "language": "FI"})
    assert device["options"] == {"queue_ids": [office["lab"].id], "language": "fi"}
    r = client.patch(f"/api/v1/devices/{device['id']}", headers=admin_headers,
                     json={"options": {"language": None}})
    assert r.status_code == 200 and r.json["options"]["language"] is None


def test_display_device_refuses_kiosk_options_and_unknown_queues(client, admin_headers):
    device = _register_display(client, admin_headers)
    r = client.patch(f"/api/v1/devices/{device['id']}", headers=admin_headers,
                     json={"options": {"return_s": 10}})
    assert r.status_code == 422
    assert "unknown option(s) for a display: return_s" in r.json["message"]
    r = client.patch(f"/api/v1/devices/{device['id']}", headers=admin_headers,
                     json={"options": {"queue_ids": ["01NOSUCHQUEUE"]}})
    assert r.status_code == 422 and "no queue with id 01NOSUCHQUEUE" in r.json["message"]
    desk_pc = client.post("/api/v1/devices", headers=admin_headers,
                          json={"kind": "desk", "name": "Desk PC"}).json
    r = client.patch(f"/api/v1/devices/{desk_pc['id']}", headers=admin_headers,
                     json={"options": {"language": "fi"}})
    assert r.status_code == 422 and "only kiosks and displays" in r.json["message"]


def test_display_page_honours_the_device_queues_and_language(client, admin_headers, office,
                                                             store):
    _call(store, office["a"].id, office["room1"].id)
    device = _register_display(client, admin_headers,
                               {"queue_ids": [office["lab"].id], "language": "fi"})
    r = client.get(f"/display/{device['id']}", headers={"Accept-Language": "en"})
    assert r.status_code == 200
    html = r.get_data(as_text=True)
    assert 'lang="fi"' in html and "Nyt vuorossa" in html
    assert "Laboratory" in html and "General" not in html and "A001" not in html
    config = _config(html)
    assert config["lang"] == "fi"
    assert config["stream"] == f"/api/v1/events?display={device['id']}"
    state = client.get(f"/api/v1/displays/{device['id']}/state").json
    assert [q["name"] for q in state["queues"]] == ["Laboratory"]


def test_a_revoked_display_device_is_gone(client, admin_headers):
    device = _register_display(client, admin_headers)
    client.post(f"/api/v1/devices/{device['id']}/revoke", headers=admin_headers)
    assert client.get(f"/display/{device['id']}").status_code == 404
    r = client.get(f"/api/v1/events?display={device['id']}")
    assert r.status_code == 404 and r.json["code"] == "not_found"


def test_display_made_in_admin_has_a_language(client, admin_headers, office):
    r = client.post("/api/v1/displays", headers=admin_headers,
                    json={"name": "Aula", "language": "fi", "queue_ids": [office["a"].id]})
    assert r.status_code == 201 and r.json["language"] == "fi"
    html = client.get(f"/display/{r.json['id']}").get_data(as_text=True)
    assert 'lang="fi"' in html
    r = client.post("/api/v1/displays", headers=admin_headers, json={"name": "X", "language": 7})
    assert r.status_code == 422


# -- the words ---------------------------------------------------------------------------------

@pytest.mark.parametrize(("code", "spoken"), [("A042", "A 42"), ("A007", "A 7"),
                                              ("AB1042", "A B 1042"), ("L100", "L 100"),
                                              ("A000", "A 0")])
def test_codes_are_read_as_numbers(code, spoken):
    assert spoken_code(code) == spoken


def test_ssml_reads_the_letters_as_letters_and_escapes_the_rest():
    assert ssml("A042", "\x00, Room <3>", "\x00") == (
        '<speak><say-as interpret-as="characters">A</say-as> 42, Room &lt;3&gt;</speak>')


# -- GET /display/speech/<code>.wav -------------------------------------------------------------

def _duration_s(audio: bytes) -> float:
    with wave.open(io.BytesIO(audio)) as w:
        assert w.getnchannels() == 1 and w.getsampwidth() == 2
        return w.getnframes() / w.getframerate()


def test_speech_of_a_call_is_a_wav_in_the_asked_language(espeak, client, office, store):
    made = _call(store, office["a"].id, office["room1"].id)
    rt = client.application.extensions["jonot"]
    assert rt.speech.program == espeak
    r = client.get(f"/display/speech/{made.code}.wav?lang=fi")
    assert r.status_code == 200 and r.mimetype == "audio/wav"
    fi = r.get_data()
    assert fi[:4] == b"RIFF" and fi[8:12] == b"WAVE"
    assert 0.8 < _duration_s(fi) < 10
    en = client.get(f"/display/speech/{made.code}.wav?lang=en").get_data()
    assert en[:4] == b"RIFF" and en != fi and _duration_s(en) > 0.8
    again = client.get(f"/display/speech/{made.code}.wav?lang=fi").get_data()
    assert again == fi and rt.speech.cached >= 1 and rt.speech.made == 2


def test_speech_only_for_recent_calls(espeak, client, office, store):
    with store.write() as tx:
        waiting = tickets.join(tx, office["a"].id, source="kiosk")
    r = client.get(f"/display/speech/{waiting.code}.wav")
    assert r.status_code == 404 and r.mimetype == "application/problem+json"
    assert "has not been called" in r.json["message"]
    r = client.get("/display/speech/hello%20world.wav")
    assert r.status_code == 404 and r.json["code"] == "not_found"


def test_speech_has_a_budget_per_client(espeak, tmp_path):
    app = build_app(tmp_path / "data", speech_per_min=3)
    rt = app.extensions["jonot"]
    try:
        with rt.store.write() as tx:
            q = queues.create_queue(tx, name="General", prefix="A")
            desk = queues.create_desk(tx, name="Room 3", queue_ids=[q.id])
        made = _call(rt.store, q.id, desk.id)
        client = app.test_client()
        codes = [client.get(f"/display/speech/{made.code}.wav").status_code for _ in range(4)]
        assert codes == [200, 200, 200, 429]
        r = client.get(f"/display/speech/{made.code}.wav")
        assert r.json["code"] == "rate_limited" and int(r.headers["Retry-After"]) >= 1
        other = client.get(f"/display/speech/{made.code}.wav",
                           environ_base={"REMOTE_ADDR": "192.0.2.9"})
        assert other.status_code == 200
    finally:
        rt.hub.close()
        rt.store.close()


def test_without_espeak_the_answer_says_what_to_install(tmp_path):
    app = build_app(tmp_path / "data", espeak=str(tmp_path / "no-such-espeak-ng"))
    rt = app.extensions["jonot"]
    try:
        with rt.store.write() as tx:
            q = queues.create_queue(tx, name="General", prefix="A")
            desk = queues.create_desk(tx, name="Room 3", queue_ids=[q.id])
        made = _call(rt.store, q.id, desk.id)
        client = app.test_client()
        r = client.get(f"/display/speech/{made.code}.wav")
        assert r.status_code == 503 and r.json["code"] == "speech_unavailable"
        assert "apt-get install espeak-ng" in r.json["message"]
        assert _config(client.get("/display").get_data(as_text=True))["speech"] is None
    finally:
        rt.hub.close()
        rt.store.close()


def test_a_hung_espeak_is_stopped_in_time(tmp_path):
    slow = tmp_path / "espeak-ng"
    slow.write_text("#!/bin/sh\nsleep 30\n")
    slow.chmod(0o755)
    service = SpeechService(str(slow), timeout_s=0.5)
    from jonot_local.speech import SpeechFailed

    with pytest.raises(SpeechFailed, match="longer than 0.5 s"):
        service.wav(ssml("A042", "{code}"), "en")


def test_display_page_points_at_the_speech_of_its_language(espeak, client, office, store):
    with store.write() as tx:
        display = queues.create_display(tx, name="Aula", language="fi")
    config = _config(client.get(f"/display/{display['id']}").get_data(as_text=True))
    assert config["speech"] == "/display/speech/__CODE__.wav?lang=fi"
    with store.read() as tx:
        assert devices.list_devices(tx) == []
