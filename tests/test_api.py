"""The hub's HTTP API over HTTPS: pairing, tokens, bad input."""

import ssl

import httpx
import pytest

from tests.hubproc import HubProcess


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    h = HubProcess.create(tmp_path_factory.mktemp("api")).start()
    yield h
    h.stop()


@pytest.fixture(scope="module")
def client(hub):
    with httpx.Client(base_url=hub.https, verify=ssl.create_default_context(cafile=str(hub.cert_path))) as c:
        yield c


def admin(hub):
    return {"Authorization": f"Bearer {hub.admin_secret}"}


def new_code(client, hub):
    r = client.post("/api/admin/pairing-codes", headers=admin(hub))
    assert r.status_code == 201
    return r.json()["code"]


def test_pairing_gives_a_token_once(client, hub):
    code = new_code(client, hub)
    r = client.post("/api/pair", json={"code": code.lower(), "name": "Front door"})
    assert r.status_code == 201
    token = r.json()["token"]
    me = client.get("/api/camera", headers={"Authorization": f"Bearer {token}"})
    assert me.json() == {"camera_id": r.json()["camera_id"], "name": "Front door"}
    again = client.post("/api/pair", json={"code": code, "name": "Thief"})
    assert again.status_code == 403 and "pingwatch pair" in again.json()["hint"]


def test_admin_calls_need_the_secret(client):
    r = client.post("/api/admin/pairing-codes", headers={"Authorization": "Bearer wrong"})
    assert r.status_code == 401 and "admin secret" in r.json()["error"]


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer nope"}, {"Authorization": "Basic x"}])
def test_unknown_tokens_get_401_before_any_media(client, headers):
    r = client.post("/api/camera/offer", json={"type": "offer", "sdp": "v=0"}, headers=headers)
    assert r.status_code == 401
    assert "pair" in r.json()["hint"]


def test_oversized_and_malformed_bodies(client, hub):
    code = new_code(client, hub)
    token = client.post("/api/pair", json={"code": code, "name": "x"}).json()["token"]
    auth = {"Authorization": f"Bearer {token}"}
    big = client.post("/api/camera/offer", content=b"{" + b" " * 200_000 + b"}", headers=auth)
    assert big.status_code == 413 and "too large" in big.json()["error"]
    bad = client.post("/api/camera/offer", content=b"{not json", headers=auth)
    assert bad.status_code == 400 and "JSON" in bad.json()["error"]
    arr = client.post("/api/pair", json=[1, 2])
    assert arr.status_code == 400
    # and the hub keeps serving
    assert client.get("/api/health").json()["status"] == "ok"


def test_revoked_camera_is_refused(client, hub):
    code = new_code(client, hub)
    paired = client.post("/api/pair", json={"code": code, "name": "Old phone"}).json()
    r = client.post(f"/api/admin/cameras/{paired['camera_id']}/revoke", headers=admin(hub))
    assert r.json() == {"camera_id": paired["camera_id"], "revoked": True}
    me = client.get("/api/camera", headers={"Authorization": f"Bearer {paired['token']}"})
    assert me.status_code == 401
    cams = client.get("/api/admin/cameras", headers=admin(hub)).json()["cameras"]
    assert paired["camera_id"] not in [c["id"] for c in cams]


def test_phone_page_is_served(client):
    r = client.get("/cam/")
    assert r.status_code == 200 and "<html" in r.text.lower()
    ui = client.get("/")
    assert ui.status_code == 200 and "/ui/static/app.js" in ui.text


def test_certificate_download_for_phones(client, hub):
    r = client.get("/hub.crt")
    assert r.status_code == 200 and r.headers["content-type"] == "application/x-x509-ca-cert"
    assert r.content == hub.cert_path.read_bytes()
