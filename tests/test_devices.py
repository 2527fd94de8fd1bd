"""Registered devices: admin registers, lists and revokes; the credential is recognised."""

from __future__ import annotations

from flask import Flask

from jonot_local.api.clients import current_device


def test_register_list_revoke(client, admin_headers, staff_headers) -> None:
    r = client.post("/api/v1/devices", json={"kind": "kiosk", "name": "Lobby kiosk"},
                    headers=admin_headers)
    assert r.status_code == 201, r.json
    device = r.json
    assert device["kind"] == "kiosk" and device["active"] and len(device["token"]) >= 40
    listed = client.get("/api/v1/devices", headers=admin_headers).json
    assert listed["total"] == 1 and "token" not in listed["items"][0]
    assert client.get("/api/v1/devices", headers=staff_headers).status_code == 403
    assert client.post("/api/v1/devices", json={"kind": "toaster", "name": "x"},
                       headers=admin_headers).status_code == 422
    r = client.post(f"/api/v1/devices/{device['id']}/revoke", headers=admin_headers)
    assert r.status_code == 200 and r.json["active"] is False
    assert client.post("/api/v1/devices/nope/revoke", headers=admin_headers).status_code == 404


def test_current_device_from_header_or_cookie(app: Flask, client, admin_headers) -> None:
    token = client.post("/api/v1/devices", json={"kind": "display", "name": "TV"},
                        headers=admin_headers).json["token"]
    with app.test_request_context(headers={"X-Jonot-Device": token}):
        assert current_device()["kind"] == "display"
    with app.test_request_context(headers={"Cookie": f"jonot_device={token}"}):
        assert current_device()["name"] == "TV"
    with app.test_request_context(headers={"X-Jonot-Device": "forged"}):
        assert current_device() is None
    device_id = client.get("/api/v1/devices", headers=admin_headers).json["items"][0]["id"]
    client.post(f"/api/v1/devices/{device_id}/revoke", headers=admin_headers)
    with app.test_request_context(headers={"X-Jonot-Device": token}):
        assert current_device() is None
