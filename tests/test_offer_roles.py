"""Which m-line of a phone's offer is record / detect / audio, for offers real browsers make.

``tests/sdp/firefox-esr-153-max-bundle.sdp`` is the offer the camera page (phone_pwa/stream.js ``createPeer``)
made in Debian's Firefox ESR 153 with a fake camera and microphone, captured through WebDriver: under
``bundlePolicy: 'max-bundle'`` Firefox gives every m-section after the first port 0 and ``a=bundle-only``
(RFC 8843), and those sections carry media all the same (on the first section's transport).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from hub.ingest.webrtc import CameraPeer, SignalingError, assign_roles, parse_offer_mlines
from tests.sinks import RecordingSink

# Bytes, not read_text(): universal newlines would turn the SDP's CRLF into LF.
FIREFOX_OFFER = (Path(__file__).parent / "sdp" / "firefox-esr-153-max-bundle.sdp").read_bytes().decode()
PAGE_ROLES = {"0": "record", "1": "detect", "2": "audio"}  # what the page sends with that offer


def loopback_only(sdp: str) -> str:
    """The captured offer with its host candidates moved to 127.0.0.1 (the hub's ICE checks go nowhere else)."""
    out = []
    for ln in sdp.split("\r\n"):
        if ln.startswith("a=candidate:") and (" TCP " in ln or ":" in ln.split()[4]):
            continue  # TCP and IPv6 candidates: dropped
        out.append(re.sub(r"\b192\.0\.2\.2\b", "127.0.0.1", ln))
    return "\r\n".join(out)


def test_firefox_bundle_only_sections_are_sending() -> None:
    mlines = parse_offer_mlines(FIREFOX_OFFER)
    assert [(m.kind, m.mid, m.port == 0, m.bundle_only) for m in mlines] == [
        ("video", "0", False, False),
        ("video", "1", True, True),
        ("audio", "2", True, True),
        ("application", "3", True, True),
    ]
    assert [m.sends for m in mlines[:3]] == [True, True, True]


def test_firefox_offer_gets_record_detect_and_audio() -> None:
    mlines = parse_offer_mlines(FIREFOX_OFFER)
    assert assign_roles(mlines, PAGE_ROLES) == {0: "record", 1: "detect", 2: "audio"}
    assert assign_roles(mlines, None) == {0: "record", 1: "detect", 2: "audio"}  # a page without roles
    assert assign_roles(mlines, {"1": "record", "0": "detect"}) == {1: "record", 0: "detect", 2: "audio"}


def _section(sdp: str, mid: str, edit) -> str:
    head, *sections = sdp.split("\r\nm=")
    for i, sec in enumerate(sections):
        if f"\r\na=mid:{mid}\r\n" in f"\r\n{sec}\r\n":
            sections[i] = edit(sec)
    return "\r\nm=".join([head, *sections])


def test_port_zero_without_bundle_only_is_still_not_sending() -> None:
    # RFC 8843: port 0 *without* a=bundle-only is a disabled section; no default role goes to it.
    disabled = _section(FIREFOX_OFFER, "1", lambda s: s.replace("a=bundle-only\r\n", ""))
    mlines = parse_offer_mlines(disabled)
    assert not mlines[1].sends and mlines[2].sends
    assert assign_roles(mlines, None) == {0: "record", 1: "blackhole", 2: "audio"}
    # bundle-only outside any BUNDLE group cannot be negotiated either
    ungrouped = FIREFOX_OFFER.replace("a=group:BUNDLE 0 1 2 3", "a=group:BUNDLE 0 2 3")
    assert not parse_offer_mlines(ungrouped)[1].sends


def test_explicit_roles_are_kept_even_when_a_section_looks_idle() -> None:
    # The page knows which track is which: its role stays, and no default moves detect onto another section.
    recvonly = _section(FIREFOX_OFFER, "1", lambda s: s.replace("a=sendonly", "a=recvonly"))
    mlines = parse_offer_mlines(recvonly)
    assert assign_roles(mlines, PAGE_ROLES) == {0: "record", 1: "detect", 2: "audio"}
    with pytest.raises(SignalingError):
        assign_roles(mlines, {"0": "record", "1": "record"})


async def test_hub_accepts_the_firefox_offer_with_every_track() -> None:
    """The real offer through CameraPeer.accept: detect and audio get their taps (nothing blackholed)."""
    peer = CameraPeer("firefox", RecordingSink())
    try:
        answer = await peer.accept({"type": "offer", "sdp": loopback_only(FIREFOX_OFFER), "roles": PAGE_ROLES})
        assert answer["type"] == "answer" and "a=group:BUNDLE" in answer["sdp"]
        assert set(peer.tracks) == {"record", "detect", "audio"}, set(peer.tracks)
        assert {k: t.mid for k, t in peer.tracks.items()} == {"record": "0", "detect": "1", "audio": "2"}
        assert peer.tracks["audio"].kind == "audio" and peer.tracks["detect"].kind == "video"
    finally:
        await peer.close()


def firefox_style(sdp: str) -> str:
    """An aiortc offer reshaped the way Firefox's max-bundle offers are: every m-section after the first gets
    port 0, ``a=bundle-only`` and no candidates of its own (its media rides the first section's transport)."""
    head, first, *rest = sdp.split("\r\nm=")
    out = []
    for sec in rest:
        lines = [ln for ln in sec.split("\r\n") if not ln.startswith(("a=candidate:", "a=end-of-candidates"))]
        parts = lines[0].split(" ")
        parts[1] = "0"
        lines[0] = " ".join(parts)
        lines.insert(2, "a=bundle-only")
        out.append("\r\n".join(lines))
    return "\r\nm=".join([head, first, *out])


async def test_hub_tells_the_page_what_it_receives_from_a_bundle_only_offer() -> None:
    """Media on bundle-only sections reaches detect and audio, and the hub's ``received`` reports on the status
    channel say so per role (what the camera page shows instead of its own claim)."""
    import json

    from aiortc import RTCSessionDescription

    from tests.test_ingest_webrtc import _client, _wait_for

    sink = RecordingSink()
    peer = CameraPeer("ffx", sink)
    client, _rec, channel = await _client("video/vp8")
    reports: list[dict] = []
    channel.on("message", lambda m: reports.append(json.loads(m)))
    try:
        offer = firefox_style(client.localDescription.sdp)
        assert offer.count("a=bundle-only") == 3 and offer.count(" 0 UDP/") + offer.count(" 0 DTLS/") == 3
        answer = await peer.accept({"type": "offer", "sdp": offer, "roles": PAGE_ROLES})
        await client.setRemoteDescription(RTCSessionDescription(**answer))

        def all_flowing() -> bool:
            t = reports[-1]["tracks"] if reports else {}
            return all(t.get(role, {}).get("per_s", 0) > 0 for role in ("record", "detect", "audio"))

        assert await _wait_for(all_flowing, 20), reports[-3:]
        last = reports[-1]
        assert last["type"] == "received" and last["ignored"] == [], last
        assert {r: last["tracks"][r]["mid"] for r in ("record", "detect", "audio")} == {
            "record": "0", "detect": "1", "audio": "2"}
        assert (last["tracks"]["detect"]["width"], last["tracks"]["detect"]["height"]) == (160, 120), last
        assert last["tracks"]["detect"]["total"] <= len(sink.detect) and len(sink.audio) > 0
        assert peer.stats()["received_reports"] >= len(reports)
    finally:
        await client.close()
        await peer.close()
