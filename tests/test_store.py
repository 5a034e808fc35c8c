import time

from hub.store import Store


def test_pairing_code_is_single_use_and_expires(tmp_path):
    s = Store(tmp_path / "hub.db")
    code, expires = s.new_pairing_code(ttl_s=60)
    assert expires > time.time()
    p = s.redeem_pairing_code(f" {code[:4]}-{code[4:].lower()} ", "Kitchen")
    assert p is not None and s.camera_for_token(p.token)["name"] == "Kitchen"
    assert s.redeem_pairing_code(code, "again") is None
    old, _ = s.new_pairing_code(ttl_s=-1)
    assert s.redeem_pairing_code(old, "late") is None
    assert s.camera_for_token("not-a-token") is None


def test_tokens_are_stored_hashed_and_revocable(tmp_path):
    s = Store(tmp_path / "hub.db")
    code, _ = s.new_pairing_code()
    p = s.redeem_pairing_code(code, "Door")
    raw = (tmp_path / "hub.db").read_bytes()
    assert p.token.encode() not in raw
    assert s.revoke_camera(p.camera_id) is True
    assert s.camera_for_token(p.token) is None
    assert s.revoke_camera(p.camera_id) is False


def test_events_round_trip_and_filters(tmp_path):
    s = Store(tmp_path / "hub.db")
    s.ensure_static_camera("garage", "Garage", "file")
    a = s.insert_event({"camera_id": "garage", "status": "complete", "start": 100.0, "triggers": ["motion"],
                        "boxes": [[0.1, 0.1, 0.2, 0.3]]})
    b = s.insert_event({"camera_id": "garage", "status": "recording", "start": 200.0, "triggers": ["audio"]})
    assert [e["id"] for e in s.list_events()] == [b, a]
    assert [e["id"] for e in s.list_events(trigger="motion")] == [a]
    assert s.get_event(a)["boxes"] == [[0.1, 0.1, 0.2, 0.3]]
    s.update_event(b, status="complete", end=210.0)
    assert s.get_event(b)["end"] == 210.0
    assert [e["id"] for e in s.iter_events_oldest_first()] == [a, b]
    s.close()
    # WAL mode is persistent in the file
    s2 = Store(tmp_path / "hub.db")
    assert s2.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
