import os
import shutil
import sqlite3
import stat
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from hub.arming import ArmState
from hub.bus import Bus
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


# -- pairing and cameras ------------------------------------------------------------------------------------


def test_a_wrong_code_pairs_nothing(tmp_path):
    s = Store(tmp_path / "hub.db")
    s.new_pairing_code()
    assert s.redeem_pairing_code("ZZZZ-ZZZZ", "Intruder") is None
    assert s.list_cameras(include_revoked=True) == []


def test_a_pairing_code_lives_ten_minutes_by_default(tmp_path):
    # docs/security.md: "~200 tries in its 10 minutes"; bounded by the clock read before and after the call.
    s = Store(tmp_path / "hub.db")
    before = time.time()
    _, expires = s.new_pairing_code()
    after = time.time()
    assert before + 600 <= expires <= after + 600


def test_pairing_codes_are_eight_characters_that_cannot_be_misread(tmp_path):
    # docs/security.md sizes guessing against 2^40: 8 characters of a 31-letter alphabet without 0/O, 1/I/L.
    s = Store(tmp_path / "hub.db")
    codes = [s.new_pairing_code()[0] for _ in range(20)]
    assert all(len(c) == 8 for c in codes)
    assert not set("".join(codes)) & set("01OIL")
    assert len(set(codes)) == 20


def test_a_new_camera_starts_armed_and_offline_with_a_usable_name(tmp_path):
    s = Store(tmp_path / "hub.db")
    blank = s.redeem_pairing_code(s.new_pairing_code()[0], "   ")
    long = s.redeem_pairing_code(s.new_pairing_code()[0], "  " + "x" * 100)
    cam = s.get_camera(blank.camera_id)
    assert cam["name"] == blank.camera_id  # a blank name shows the id, never an empty row in the UI
    assert (cam["kind"], cam["online"], cam["armed"], cam["revoked_at"]) == ("phone", 0, 1, None)
    assert s.get_camera(long.camera_id)["name"] == "x" * 64  # the phone page's maxlength


def test_pairing_answers_with_the_name_it_stored(tmp_path):
    # The pairing answer and the camera.added message carry Pairing.name: it must be the stored name, or the
    # phone and the UI show a name the hub does not have (blank, padded or longer than 64 characters).
    s = Store(tmp_path / "hub.db")
    for raw in ("   ", "  Porch  ", "y" * 100):
        p = s.redeem_pairing_code(s.new_pairing_code()[0], raw)
        assert p.name == s.get_camera(p.camera_id)["name"]
    assert p.name == "y" * 64


def test_two_cameras_cannot_share_a_token(tmp_path):
    # camera_for_token takes the first row: a second camera with the same token hash must be impossible.
    s = Store(tmp_path / "hub.db")
    a = s.redeem_pairing_code(s.new_pairing_code()[0], "A")
    b = s.redeem_pairing_code(s.new_pairing_code()[0], "B")
    with pytest.raises(sqlite3.IntegrityError):
        s.update_camera(b.camera_id, token_hash=s.get_camera(a.camera_id)["token_hash"])
    assert s.camera_for_token(b.token)["id"] == b.camera_id


def test_config_cameras_are_registered_once_and_keep_their_switch(tmp_path):
    # A restart registers the config file's cameras again: that must not re-arm one the user disarmed.
    s = Store(tmp_path / "hub.db")
    s.ensure_static_camera("garage", "Garage", "file")
    cam = s.get_camera("garage")
    assert (cam["name"], cam["kind"], cam["token_hash"], cam["online"], cam["armed"]) == \
        ("Garage", "file", None, 0, 1)
    s.update_camera("garage", armed=0)
    s.ensure_static_camera("garage", "Garage", "file")
    assert s.get_camera("garage")["armed"] == 0
    assert [c["id"] for c in s.list_cameras()] == ["garage"]


def test_a_revoked_camera_is_offline_and_listed_only_on_request(tmp_path):
    s = Store(tmp_path / "hub.db")
    s.ensure_static_camera("first", "First", "file")
    p = s.redeem_pairing_code(s.new_pairing_code()[0], "Phone")
    s.update_camera(p.camera_id, online=1)
    assert [c["id"] for c in s.list_cameras()] == ["first", p.camera_id]  # in the order they were added
    assert s.revoke_camera(p.camera_id) is True
    assert s.get_camera(p.camera_id)["online"] == 0
    assert [c["id"] for c in s.list_cameras()] == ["first"]
    assert [c["id"] for c in s.list_cameras(include_revoked=True)] == ["first", p.camera_id]
    assert s.revoke_camera("no-such-camera") is False


def test_removing_a_camera_reports_whether_it_was_there(tmp_path):
    s = Store(tmp_path / "hub.db")
    s.ensure_static_camera("garage", "Garage", "file")
    assert s.remove_camera("garage") is True
    assert s.get_camera("garage") is None and s.list_cameras(include_revoked=True) == []
    assert s.remove_camera("garage") is False


# -- events -------------------------------------------------------------------------------------------------


def test_an_event_keeps_the_id_it_is_given_or_gets_one(tmp_path):
    s = Store(tmp_path / "hub.db")
    given = s.insert_event({"id": "ev-given", "camera_id": "c", "status": "complete", "start": 1.0})
    made = s.insert_event({"camera_id": "c", "status": "complete", "start": 2.0})
    assert given == "ev-given" and s.get_event("ev-given")["start"] == 1.0
    assert made.startswith("ev-") and made != given and s.get_event(made)["start"] == 2.0


def test_json_fields_given_as_text_are_not_encoded_twice(tmp_path):
    # Rows copied from another store, or fields read back and written again, arrive as JSON text.
    s = Store(tmp_path / "hub.db")
    eid = s.insert_event({"camera_id": "c", "status": "recording", "start": 1.0, "triggers": '["motion"]'})
    assert s.get_event(eid)["triggers"] == ["motion"]
    s.update_event(eid, triggers=["motion", "sound"], labels='["person"]')
    ev = s.get_event(eid)
    assert ev["triggers"] == ["motion", "sound"] and ev["labels"] == ["person"]


def test_listing_events_filters_by_camera_and_a_half_open_time_range(tmp_path):
    s = Store(tmp_path / "hub.db")
    ids = {(cam, start): s.insert_event({"camera_id": cam, "status": "complete", "start": start})
           for cam in ("a", "b") for start in (100.0, 200.0, 300.0)}
    assert [e["id"] for e in s.list_events(camera_id="a")] == [ids["a", 300.0], ids["a", 200.0], ids["a", 100.0]]
    # since is inclusive, until exclusive: consecutive pages neither repeat nor miss an event
    assert [e["id"] for e in s.list_events(camera_id="b", since=200.0)] == [ids["b", 300.0], ids["b", 200.0]]
    assert [e["id"] for e in s.list_events(camera_id="b", until=200.0)] == [ids["b", 100.0]]
    assert [e["id"] for e in s.list_events(since=200.0, until=300.0)] in (
        [ids["a", 200.0], ids["b", 200.0]], [ids["b", 200.0], ids["a", 200.0]])
    assert len(s.list_events(limit=4)) == 4


def test_listing_without_a_limit_gives_the_newest_hundred(tmp_path):
    # The store's own page size, for a caller that gives none (the CLI and API pass theirs).
    s = Store(tmp_path / "hub.db")
    with s.db.conn:
        for i in range(101):
            s.insert_event({"camera_id": "c", "status": "complete", "start": float(i)})
    listed = s.list_events()
    assert [e["start"] for e in listed] == [float(i) for i in range(100, 0, -1)]


def test_a_locked_database_is_waited_for_not_failed_at_once(tmp_path):
    # Retention's planner and the CLI open their own connections: a write that meets their lock must wait for
    # it (SQLite's busy timeout), not fail with "database is locked". SQLite reports the wait it will make.
    # (Python's sqlite3.connect already waits 5 s by default; the store's PRAGMA says so explicitly.)
    s = Store(tmp_path / "hub.db")
    assert s.db.execute("PRAGMA busy_timeout").fetchone()[0] >= 1000


def test_a_new_database_says_it_holds_schema_version_1(tmp_path):
    # Every hub in the field created its hub.db with schema version 1 in the meta table: the first migration
    # finds the old layout by that row. Changing the number without a migration would strand them.
    s = Store(tmp_path / "hub.db")
    s.close()
    with sqlite3.connect(tmp_path / "hub.db") as raw:
        assert raw.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchall() == [("1",)]
    raw.close()


def test_deleting_an_event_returns_its_row_once(tmp_path):
    s = Store(tmp_path / "hub.db")
    eid = s.insert_event({"camera_id": "c", "status": "complete", "start": 1.0, "triggers": ["motion"]})
    gone = s.delete_event(eid)
    assert gone is not None and gone["id"] == eid and gone["triggers"] == ["motion"]
    assert s.get_event(eid) is None and s.list_events() == []
    assert s.delete_event(eid) is None


def test_events_left_open_are_found_by_status(tmp_path):
    # What start-up recovery looks for after a crash (hub/recovery.py).
    s = Store(tmp_path / "hub.db")
    rec = s.insert_event({"camera_id": "c", "status": "recording", "start": 1.0, "triggers": ["sound"]})
    s.insert_event({"camera_id": "c", "status": "complete", "start": 2.0})
    found = s.events_with_status("recording")
    assert [e["id"] for e in found] == [rec] and found[0]["triggers"] == ["sound"]


def test_a_fresh_database_reads_and_keeps_the_hubs_settings(tmp_path):
    # The arm state lives in the settings table (meta): read on the first request of a new install, then
    # written again and again (each change replaces the one value under its key).
    s = Store(tmp_path / "hub.db")
    arm = ArmState(s, Bus())
    assert arm.is_armed() is True
    arm.set_armed(False)
    assert arm.is_armed() is False
    arm.set_armed(True)
    assert arm.is_armed() is True


# -- the database file --------------------------------------------------------------------------------------


def test_the_database_and_its_wal_files_are_private_whatever_the_umask(tmp_path):
    old = os.umask(0o022)
    try:
        s = Store(tmp_path / "hub.db")
        s.insert_event({"camera_id": "c", "status": "complete", "start": 1.0})  # the -wal and -shm now exist
        names = ["hub.db", "hub.db-wal", "hub.db-shm"]
        assert {n: stat.S_IMODE((tmp_path / n).stat().st_mode) for n in names} == dict.fromkeys(names, 0o600)
        s.close()
        # An install from before files were private: opening the store tightens what is there.
        for n in names[:2]:
            (tmp_path / n).touch()
            (tmp_path / n).chmod(0o644)
        reopened = Store(tmp_path / "hub.db")
        assert [stat.S_IMODE((tmp_path / n).stat().st_mode) for n in names[:2]] == [0o600, 0o600]
        reopened.close()
    finally:
        os.umask(old)


def test_an_in_memory_store_writes_no_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    s = Store(":memory:")  # replays use one
    s.insert_event({"camera_id": "c", "status": "complete", "start": 1.0})
    assert list(tmp_path.iterdir()) == []


def test_reopening_keeps_every_row_and_a_closed_store_is_one_complete_file(tmp_path):
    s = Store(tmp_path / "hub.db")
    s.ensure_static_camera("garage", "Garage", "file")
    eid = s.insert_event({"camera_id": "garage", "status": "complete", "start": 1.0})
    s.close()
    # Closed cleanly, the write-ahead log is folded in: a backup that copies hub.db alone misses nothing.
    backup = tmp_path / "backup"
    backup.mkdir()
    shutil.copy2(tmp_path / "hub.db", backup / "hub.db")
    for folder in (tmp_path, backup):
        again = Store(folder / "hub.db")
        assert again.get_event(eid)["camera_id"] == "garage" and again.get_camera("garage") is not None
        again.close()


def test_the_store_can_be_used_from_a_worker_thread(tmp_path):
    # Start-up recovery runs in asyncio.to_thread on the loop's store (hub/app.py).
    s = Store(tmp_path / "hub.db")
    eid = s.insert_event({"camera_id": "c", "status": "recording", "start": 1.0})
    with ThreadPoolExecutor(1) as pool:
        pool.submit(s.update_event, eid, status="complete").result()
    assert s.get_event(eid)["status"] == "complete"


def test_timeline_reads_go_through_an_index(tmp_path):
    # The module's promise ("every statement here is ... an indexed read") keeps a timeline page quick with a year
    # of events on a Pi: each query the timeline makes is searched (or walked in order) through an index, never a
    # full scan followed by a sort. Checked on SQLite's own plan for the statements the store really ran.
    s = Store(tmp_path / "hub.db")
    for i in range(40):
        s.insert_event({"camera_id": "ab"[i % 2], "status": "complete", "start": float(i)})
    ran: list[str] = []
    s.db.conn.set_trace_callback(ran.append)
    s.list_events(camera_id="a", limit=20)
    s.list_events(since=10.0, until=20.0, limit=20)
    s.list_events(limit=20)
    s.db.conn.set_trace_callback(None)
    plans = [" / ".join(row[3] for row in s.db.execute("EXPLAIN QUERY PLAN " + sql).fetchall())
             for sql in ran if 'from "events"' in sql.lower()]  # sqlite-utils also reads sqlite_master
    assert len(plans) == 3, ran
    assert all("INDEX" in p and "TEMP B-TREE" not in p for p in plans), plans
    assert plans[0].startswith("SEARCH") and plans[1].startswith("SEARCH"), plans  # the filters use the index
