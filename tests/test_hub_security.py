"""The hub under attack (issue 10): each test reproduces what an adversarial review did, on 127.0.0.1.

Leaked peers (item 2), files readable by every local user (4), pairing codes in the log (5), paths from the
database trusted by the CLI and retention (11). Real hub processes, a real CLI, real sockets.
"""

from __future__ import annotations

import asyncio
import json
import os
import ssl
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from hub.store import Store
from tests.hubproc import HubProcess
from tests.test_cli import pw
from tests.test_ingest_webrtc import _chrome_offer

# -- helpers ----------------------------------------------------------------------------------------------------


def udp_sockets(pid: int) -> int:
    """UDP sockets the process holds: its socket fds that /proc/<pid>/net/udp{,6} list (every peer's ICE sockets)."""
    fds = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            fds.add(target[8:-1])
    udp = set()
    for name in ("udp", "udp6"):
        table = Path(f"/proc/{pid}/net/{name}")
        if table.exists():
            udp |= {line.split()[9] for line in table.read_text().splitlines()[1:] if line.strip()}
    return len(fds & udp)


def wait_until(cond, timeout: float = 15.0) -> bool:
    """Poll a condition the hub reaches on its own (sockets close on the next loop turns); True once it holds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.05)
    return cond()


def admin(hub: HubProcess) -> dict[str, str]:
    return {"Authorization": f"Bearer {hub.admin_secret}"}


def pair(hub: HubProcess, name: str = "Porch") -> dict[str, str]:
    ctx = ssl.create_default_context(cafile=str(hub.cert_path))
    with httpx.Client(base_url=hub.https, verify=ctx) as c:
        code = c.post("/api/admin/pairing-codes", headers=admin(hub)).json()["code"]
        return c.post("/api/pair", json={"code": code, "name": name}).json()


OFFER = {"type": "offer", "sdp": _chrome_offer(), "roles": {"0": "record", "1": "detect", "2": "audio"}}


@pytest.fixture
def hub(tmp_path):
    # Peers in these tests never connect (nobody answers ICE): the connect timeout is long, so only closing
    # them on purpose frees their sockets while the test looks.
    h = HubProcess.create(tmp_path / "hub", ingest={"connect_timeout_s": 300}).start()
    yield h
    h.kill()


# -- item 2: one peer per camera, always -----------------------------------------------------------------------


async def test_concurrent_offers_leave_one_peer(hub):
    cam = pair(hub)
    auth = {"Authorization": f"Bearer {cam['token']}"}
    pid = hub.proc.pid
    base = udp_sockets(pid)
    ctx = ssl.create_default_context(cafile=str(hub.cert_path))
    async with httpx.AsyncClient(base_url=hub.https, verify=ctx, timeout=60) as c:
        first = await c.post("/api/camera/offer", json=OFFER, headers=auth)
        assert first.status_code == 200, first.text
        one_peer = udp_sockets(pid) - base
        assert one_peer >= 1
        # The attack: 20 offers at once with one token used to leave ~10 peers (2 -> 22 -> 42 UDP sockets).
        for _ in range(2):
            answers = await asyncio.gather(*[c.post("/api/camera/offer", json=OFFER, headers=auth) for _ in range(20)])
            assert [r.status_code for r in answers] == [200] * 20
            assert wait_until(lambda: udp_sockets(pid) - base == one_peer), (udp_sockets(pid) - base, one_peer)
        cams = (await c.get("/api/admin/cameras", headers=admin(hub))).json()["cameras"]
        assert [x["ingest"] is not None for x in cams if x["id"] == cam["camera_id"]] == [True]


async def test_revoke_while_offers_connect_closes_every_peer(hub):
    cam = pair(hub)
    auth = {"Authorization": f"Bearer {cam['token']}"}
    pid = hub.proc.pid
    base = udp_sockets(pid)
    ctx = ssl.create_default_context(cafile=str(hub.cert_path))
    async with httpx.AsyncClient(base_url=hub.https, verify=ctx, timeout=60) as c:
        offers = [c.post("/api/camera/offer", json=OFFER, headers=auth) for _ in range(12)]
        revoke = c.post(f"/api/admin/cameras/{cam['camera_id']}/revoke", headers=admin(hub))
        results = await asyncio.gather(*offers[:6], revoke, *offers[6:])
        assert results[6].json() == {"camera_id": cam["camera_id"], "revoked": True}
        # every offer was answered or refused, none failed
        assert {r.status_code for r in results[:6] + results[7:]} <= {200, 401, 403}
        # Nothing the revoked camera owned survives: no peer, so no socket (they used to keep streaming status).
        assert wait_until(lambda: udp_sockets(pid) == base), (udp_sockets(pid), base)
        again = await c.post("/api/camera/offer", json=OFFER, headers=auth)
        assert again.status_code in (401, 403)
    assert udp_sockets(pid) == base


# -- item 4: private files whatever the umask ------------------------------------------------------------------


def _mode(p: Path) -> int:
    return stat.S_IMODE(p.stat().st_mode)


def test_data_folder_is_private_whatever_the_umask(tmp_path):
    h = HubProcess.create(tmp_path / "hub")
    # An install from before: a 0755 folder with a 0644 clip and database.
    old_clip = h.data_dir / "clips" / "porch" / "2024-01-01" / "old.mp4"
    old_clip.parent.mkdir(parents=True)
    old_clip.write_bytes(b"clip")
    for d in (h.data_dir, h.data_dir / "clips", old_clip.parent.parent, old_clip.parent):
        d.chmod(0o755)
    old_clip.chmod(0o644)
    old = os.umask(0o022)  # the hub process inherits it, as under a login shell or a unit without UMask=
    try:
        h.start()
    finally:
        os.umask(old)
    try:
        pair(h)  # writes the database (WAL) so -wal/-shm exist
        data = h.data_dir
        for d in (data, data / "clips", data / "tls", old_clip.parent.parent, old_clip.parent):
            assert _mode(d) == 0o700, d
        files = [data / "hub.db", data / "hub.db-wal", data / "hub.db-shm", data / "secrets.json",
                 data / "tls" / "key.pem", old_clip]
        for f in files:
            assert _mode(f) == 0o600, f
    finally:
        h.kill()


def test_init_writes_a_private_config_whatever_the_umask(tmp_path):
    old = os.umask(0o022)
    try:
        info = json.loads(pw("init", "--config", "conf/hub.yaml", "--json", cwd=tmp_path, check=True).stdout)
    finally:
        os.umask(old)
    assert _mode(tmp_path / "conf" / "hub.yaml") == 0o600  # will hold broker and cloud credentials
    data = Path(info["data_dir"])
    assert _mode(data) == 0o700 and _mode(data / "secrets.json") == 0o600


def test_run_hub_script_sets_a_private_umask():
    script = (Path(__file__).resolve().parent.parent / "scripts" / "run-hub").read_text()
    lines = [ln.strip() for ln in script.splitlines()]
    # before `pingwatch init` writes the config
    assert "umask 077" in lines and lines.index("umask 077") < next(
        i for i, ln in enumerate(lines) if "pingwatch init" in ln)


def test_doctor_warns_about_a_readable_data_folder_and_config(tmp_path):
    pw("init", "--config", "hub.yaml", "--json", cwd=tmp_path, check=True)
    (tmp_path / "data").chmod(0o755)
    (tmp_path / "hub.yaml").chmod(0o644)
    report = json.loads(pw("doctor", "-c", "hub.yaml", "--json", cwd=tmp_path).stdout)
    checks = {c["name"]: c for c in report["checks"]}
    assert checks["data privacy"]["ok"] is False and "chmod" in checks["data privacy"]["detail"]
    assert checks["config privacy"]["ok"] is False and "chmod 600" in checks["config privacy"]["detail"]
    assert checks["data privacy"]["required"] is False  # a warning: the hub tightens it at start anyway


# -- item 5: no usable pairing code in the log -----------------------------------------------------------------


def test_no_pairing_code_is_logged_without_a_terminal(tmp_path):
    h = HubProcess.create(tmp_path / "hub")
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("PINGWATCH_CONFIG", None)
    # As systemd runs it: no --no-pair, output to a pipe (the journal).
    h.proc = subprocess.Popen([sys.executable, "-m", "hub", "--config", str(h.config_path)], cwd=h.root, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    threading.Thread(target=h._pump, daemon=True).start()
    try:
        h.wait_for_log("hub started")
        h.wait_for_log("pingwatch pair")  # the banner says how to get a code instead
        text = "\n".join(h.lines)
        assert "pairing code (10 min)" not in text and "#code=" not in text
        store = Store(h.data_dir / "hub.db")
        try:
            assert store.db.execute("SELECT COUNT(*) FROM pairing_codes").fetchone()[0] == 0  # none was made
        finally:
            store.close()
    finally:
        h.kill()


# -- item 11: paths from the database are contained --------------------------------------------------------------


def _tampered_event(data: Path, start: float, path: str) -> str:
    store = Store(data / "hub.db")
    try:
        store.ensure_static_camera("garage", "Garage", "file")
        return store.insert_event({"camera_id": "garage", "status": "complete", "start": start, "end": start + 10,
                                   "triggers": ["motion"], "clip_path": path, "snapshot_path": "../tls/key.pem",
                                   "thumb_path": "../../victim.txt", "clip_size": 10})
    finally:
        store.close()


def test_export_does_not_copy_files_a_tampered_row_names(tmp_path):
    pw("init", "--config", "hub.yaml", "--json", cwd=tmp_path, check=True)
    data = tmp_path / "data"
    key = data / "tls" / "key.pem"
    ev = _tampered_event(data, time.time() - 60, str(key))
    r = pw("events", "export", ev, "--to", str(tmp_path / "out"), "-c", "hub.yaml", "--json", cwd=tmp_path,
           check=True)
    exported = json.loads(r.stdout)["exported"]
    assert exported == [{"id": ev, "files": []}]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [f"{ev}.json"]
    assert "not a file inside" in r.stderr


def test_prune_does_not_unlink_files_a_tampered_row_names(tmp_path):
    pw("init", "--config", "hub.yaml", "--json", cwd=tmp_path, check=True)
    data = tmp_path / "data"
    victim = tmp_path / "victim.txt"
    victim.write_text("not the hub's")
    key = data / "tls" / "key.pem"
    ev = _tampered_event(data, time.time() - 400 * 86400, str(victim))  # past retention: pruned
    r = json.loads(pw("events", "prune", "-c", "hub.yaml", "--json", cwd=tmp_path, check=True).stdout)
    assert [e["id"] for e in r["events"]] == [ev]
    assert victim.read_text() == "not the hub's" and key.exists()
    store = Store(data / "hub.db")
    try:
        assert store.get_event(ev) is None  # the row went; the files it named outside the clips folder stayed
    finally:
        store.close()


def test_retention_deletes_only_contained_files(tmp_path):
    from hub.config import StorageConfig
    from hub.retention import apply_prune, plan_prune

    clips = tmp_path / "data" / "clips"
    own = clips / "garage" / "2024-01-01" / "a.mp4"
    own.parent.mkdir(parents=True)
    own.write_bytes(b"x" * 10)
    victim = tmp_path / "victim.txt"
    victim.write_text("keep")
    store = Store(tmp_path / "data" / "hub.db")
    try:
        store.ensure_static_camera("garage", "Garage", "file")
        old = time.time() - 400 * 86400
        good = store.insert_event({"camera_id": "garage", "status": "complete", "start": old, "end": old + 1,
                                   "triggers": ["motion"], "clip_path": str(own)})
        bad = store.insert_event({"camera_id": "garage", "status": "complete", "start": old + 2, "end": old + 3,
                                  "triggers": ["motion"], "clip_path": str(victim),
                                  "snapshot_path": str(clips / ".." / ".." / "victim.txt")})
        plan = plan_prune(store, StorageConfig(retention_days=30), clips)
        assert [e["id"] for e in plan.events] == [good, bad]
        assert plan.bytes_freed == 10  # the victim's size is not the event's
        assert apply_prune(store, plan) == 2
    finally:
        store.close()
    assert not own.exists() and not (clips / "garage").exists()  # its now-empty folders went too
    assert victim.read_text() == "keep"
