"""A first walk through the API with the Flask test client."""


def test_join_call_complete(client, admin_headers, office):
    a, room1 = office["a"], office["room1"]
    r = client.post(f"/api/v1/queues/{a.id}/tickets", json={"name": "Maija"})
    assert r.status_code == 201
    ticket = r.json
    assert ticket["code"] == "A001" and ticket["position"] == 1 and len(ticket["hash"]) == 22
    assert "name" not in ticket  # anonymous callers do not get personal fields echoed
    r = client.post(f"/api/v1/desks/{room1.id}/call-next", headers=admin_headers)
    assert r.status_code == 200 and r.json["state"] == "CALLED"
    r = client.get(f"/api/v1/tickets/by-hash/{ticket['hash']}")
    assert r.json["desk_name"] == "Room 1"
    r = client.post(f"/api/v1/tickets/{ticket['id']}/complete", headers=admin_headers)
    assert r.json["state"] == "COMPLETED"
    r = client.post(f"/api/v1/tickets/{ticket['id']}/complete", headers=admin_headers)
    assert r.status_code == 409 and r.json["code"] == "invalid_transition"
    assert r.mimetype == "application/problem+json"
