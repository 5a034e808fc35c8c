"""CameraPeer against an in-process aiortc client (127.0.0.1 only) sending H.264 / VP8 video and Opus audio."""

from __future__ import annotations

import asyncio
import fractions
import json
import threading
import time

import av
import numpy as np
import pytest
from aiortc import (
    RTCConfiguration,
    RTCPeerConnection,
    RTCRtpSender,
    RTCSessionDescription,
    VideoStreamTrack,
    rtcrtpreceiver,
)
from aiortc.mediastreams import AUDIO_PTIME, MediaStreamTrack

from hub.ingest.aiortc_names import RECEIVER_DECODER_THREAD
from hub.ingest.fastpath import DatagramPoller
from hub.ingest.webrtc import CameraPeer, SignalingError, apply_bitrate_floor, assign_roles, parse_offer_mlines
from hub.media.h264 import split_annexb
from hub.web.errors import STATUS_OF_KIND
from tests.sinks import RecordingSink


class PatternTrack(VideoStreamTrack):
    """A moving gradient so the encoder has real work and inter frames."""

    def __init__(self, width: int, height: int) -> None:
        super().__init__()
        self.width, self.height = width, height
        self.n = 0

    async def recv(self):
        pts, time_base = await self.next_timestamp()
        self.n += 1
        x = (np.arange(self.width, dtype=np.uint16) + self.n * 4) % 256
        y = np.arange(self.height, dtype=np.uint16)[:, None]
        img = np.empty((self.height, self.width, 3), np.uint8)
        img[..., 0] = (x[None, :] + y) % 256
        img[..., 1] = (y * 2) % 256
        img[..., 2] = 128
        frame = av.VideoFrame.from_ndarray(img, format="rgb24")
        frame.pts, frame.time_base = pts, time_base
        return frame


class ToneTrack(MediaStreamTrack):
    kind = "audio"

    def __init__(self) -> None:
        super().__init__()
        self._start: float | None = None
        self._ts = 0

    async def recv(self):
        rate = 48000
        samples = int(AUDIO_PTIME * rate)
        if self._start is None:
            self._start = time.time()
        else:
            self._ts += samples
            wait = self._start + self._ts / rate - time.time()
            if wait > 0:
                await asyncio.sleep(wait)
        t = (self._ts + np.arange(samples)) / rate
        tone = (np.sin(2 * np.pi * 440 * t) * 8000).astype(np.int16)
        frame = av.AudioFrame.from_ndarray(tone.reshape(1, -1), format="s16", layout="mono")
        frame.pts = self._ts
        frame.sample_rate = rate
        frame.time_base = fractions.Fraction(1, rate)
        return frame


def _prefer(transceiver, mime: str) -> None:
    caps = RTCRtpSender.getCapabilities("video").codecs
    transceiver.setCodecPreferences([c for c in caps if c.mimeType.lower() == mime] +
                                    [c for c in caps if c.mimeType.lower() == "video/rtx"])


async def _client(mime: str, *, audio: bool = True, record=(320, 240), detect=(160, 120)):
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    rec = pc.addTransceiver(PatternTrack(*record), direction="sendonly")
    det = pc.addTransceiver(PatternTrack(*detect), direction="sendonly")
    _prefer(rec, mime)
    _prefer(det, mime)
    if audio:
        pc.addTransceiver(ToneTrack(), direction="sendonly")
    channel = pc.createDataChannel("status")
    await pc.setLocalDescription(await pc.createOffer())
    return pc, rec, channel


def _ice_transports(peer: CameraPeer) -> list:
    """The hub side's asyncio UDP transports (aioice protocols of every ICE connection)."""
    out = []
    for tr in peer.pc.getTransceivers():
        conn = tr.receiver.transport.transport._connection
        out += [p.transport for p in conn._protocols if p.transport not in out]
    return out


async def _wait_for(cond, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        await asyncio.sleep(0.05)
    return cond()


@pytest.fixture
def decode_log(monkeypatch):
    """Which decoder threads actually decoded something (aiortc looks get_decoder up at call time)."""
    calls: list[tuple[int, str]] = []
    real = rtcrtpreceiver.get_decoder

    def spy(codec):
        decoder = real(codec)
        inner = decoder.decode

        def decode(frame):
            calls.append((threading.get_ident(), codec.name))
            return inner(frame)

        decoder.decode = decode
        return decoder

    monkeypatch.setattr(rtcrtpreceiver, "get_decoder", spy)
    return calls


async def test_h264_record_detect_audio_status(decode_log) -> None:
    sink = RecordingSink()
    states: list[str] = []
    peer = CameraPeer("cam1", sink, {"keyframe_interval_s": 2.0, "bitrate_kbps": 2500}, on_state=states.append)
    client, rec_tr, channel = await _client("video/h264")
    try:
        answer = await peer.accept(
            {"type": "offer", "sdp": client.localDescription.sdp, "roles": {}}
        )
        assert answer["type"] == "answer"
        assert "b=AS:2500" in answer["sdp"] and "x-google-min-bitrate=1250" in answer["sdp"]
        await client.setRemoteDescription(RTCSessionDescription(**answer))

        assert await _wait_for(lambda: channel.readyState == "open", 10)
        channel.send(json.dumps({"battery": 0.5, "charging": True, "visible": True}))

        t0 = time.time()
        assert await _wait_for(lambda: len(sink.video()) > 0, 10), "no record frames"
        await asyncio.sleep(max(0.0, 5.5 - (time.time() - t0)))

        video = sink.video()
        assert len(video) > 60
        assert all(f.codec == "h264" for f in video)
        assert all(f.data.startswith(b"\x00\x00\x00\x01") or f.data.startswith(b"\x00\x00\x01") for f in video)
        pts = [f.pts for f in video]
        assert pts == sorted(pts) and pts[0] < 90000  # rebased to ~0, 90 kHz
        keys = [f for f in video if f.keyframe]
        assert video[0].keyframe
        # every keyframe is self-contained (SPS + PPS + IDR)
        for k in keys:
            types = {n[0] & 0x1F for n in split_annexb(k.data)}
            assert {5, 7, 8} <= types
        # PLI works: x264's natural GOP here is ~8 s, so keyframes every <= 2.5 s come from the hub's requests
        kts = [k.t for k in keys]
        assert len(kts) >= 3, kts
        gaps = np.diff(kts)
        assert gaps.max() <= 2.5, gaps
        assert video[-1].t - kts[-1] <= 2.5
        assert peer.plis_sent >= 2

        # record track never decoded; detect and audio were
        rec = peer.tracks["record"]
        assert rec.tap.stats.forwarded == 0
        rec_thread = getattr(rec.receiver, RECEIVER_DECODER_THREAD)
        assert rec_thread is not None
        assert rec_thread.ident not in {ident for ident, _ in decode_log}
        assert any(name == "H264" for _, name in decode_log)
        assert peer.tracks["audio"].tap.decoded > 50  # Opus is decoded inline by the tap, not by aiortc

        # detect frames: numpy luma of the detect size
        assert len(sink.detect) >= 20
        d = sink.detect[-1]
        assert d.y.dtype == np.uint8 and d.y.shape == (120, 160)
        assert abs(d.t - time.time()) < 2

        # audio: encoded opus packets and decoded mono chunks
        aframes = [f for f in sink.frames if f.kind == "audio"]
        assert len(aframes) > 50 and all(f.codec == "opus" for f in aframes)
        assert len(sink.audio) > 50
        chunk = sink.audio[-1]
        assert chunk.samples.dtype == np.float32 and chunk.samples.ndim == 1 and chunk.sample_rate == 48000
        assert 0.05 < float(np.sqrt(np.mean(chunk.samples**2))) < 0.5  # the 440 Hz tone at ~-15 dBFS

        assert sink.info and sink.info[-1] == {"codec": "h264", "width": 320, "height": 240}
        assert video[-1].width == 320 and video[-1].height == 240
        assert sink.status == [{"battery": 0.5, "charging": True, "visible": True}]
        assert "connected" in states
        assert sink.broken == 0

        # REMB pinned: aiortc's sender applies it to its encoder
        assert peer.rembs_sent >= 3
        encoder = rec_tr.sender._RTCRtpSender__encoder
        assert encoder.target_bitrate == 2_500_000

        stats = peer.stats()
        r = stats["tracks"]["record"]
        assert r["codec"] == "h264" and r["keyframes"] >= 3 and r["fps"] > 15 and r["bitrate_kbps"] > 0
        assert r["last_keyframe_gap_s"] is not None and r["last_keyframe_gap_s"] <= 2.5

        # Media went straight from the socket to the receivers (hub/ingest/srtp_direct.py), never suspending,
        # and the streaming sockets left the selector for the shared poller (hub/ingest/fastpath.py).
        direct = stats["srtp_direct"]
        assert direct["rtp"] > 300 and direct["rtcp"] > 0, direct
        assert direct["suspended"] == 0 and direct["dropped"] == 0, direct
        assert direct["lean"] > direct["rtp"] // 2, direct  # record and audio packets skip aiortc's generic parse
        transports = _ice_transports(peer)
        selector_fds = asyncio.get_running_loop()._selector.get_map()
        streaming = [t for t in transports if t._sock_fd not in selector_fds]
        assert streaming, "no ICE socket moved to the poller"
        poller = DatagramPoller.for_loop(asyncio.get_running_loop(), peer.config.read_interval_ms / 1000)
        assert len(poller) >= 1 and poller.ticks > 40
    finally:
        await client.close()
        await peer.close()

    # close() cleans up: decoder threads gone, tasks done
    assert peer.pc.connectionState == "closed"
    for entry in peer.tracks.values():
        assert getattr(entry.receiver, RECEIVER_DECODER_THREAD) is None
        assert entry.task is None or entry.task.done()
    assert "closed" in states
    await peer.close()  # idempotent


async def test_vp8_and_loss_signal() -> None:
    sink = RecordingSink()
    peer = CameraPeer("cam2", sink, None)
    client, _, _ = await _client("video/vp8", audio=False)
    try:
        answer = await peer.accept({"type": "offer", "sdp": client.localDescription.sdp})
        await client.setRemoteDescription(RTCSessionDescription(**answer))
        assert await _wait_for(lambda: len(sink.video()) > 30 and len(sink.detect) > 5, 10)
        video = sink.video()
        assert all(f.codec == "vp8" for f in video)
        assert video[0].keyframe and not all(f.keyframe for f in video)
        assert sink.info[-1] == {"codec": "vp8", "width": 320, "height": 240}
        assert sink.detect[-1].y.shape == (120, 160)
        assert "audio" not in peer.tracks

        # Loss: a jump in sequence numbers makes aiortc's jitter buffer drop data and ask for a PLI.
        jb = peer.tracks["record"].tap._jb
        from aiortc.rtp import RtpPacket

        before = sink.broken
        origin = jb._origin
        packet = RtpPacket(payload_type=96, sequence_number=(origin + 20000) % 65536, timestamp=1)
        packet._data = b""
        jb.add(packet)
        assert sink.broken == before + 1
        assert peer.tracks["record"].tap.broken
    finally:
        await client.close()
        await peer.close()


async def test_roles_from_offer_swap_record_and_detect() -> None:
    sink = RecordingSink()
    peer = CameraPeer("cam3", sink, {"keyframe_interval_s": 1.0})
    client, _, _ = await _client("video/h264", audio=False, record=(320, 240), detect=(160, 120))
    try:
        mids = [t.mid for t in client.getTransceivers()]
        offer = {"type": "offer", "sdp": client.localDescription.sdp, "roles": {mids[0]: "detect", mids[1]: "record"}}
        answer = await peer.accept(offer)
        await client.setRemoteDescription(RTCSessionDescription(**answer))
        assert await _wait_for(lambda: any(i.get("width") for i in sink.info) and sink.detect, 10)
        assert sink.info[-1]["width"] == 160
        assert sink.detect[-1].y.shape == (240, 320)
    finally:
        await client.close()
        await peer.close()


async def test_malformed_and_video_less_offers() -> None:
    for bad in (
        {"type": "offer", "sdp": "hello"},
        {"type": "offer", "sdp": ""},
        {"type": "offer"},
        {"type": "answer", "sdp": "v=0\r\n"},
        {"type": "offer", "sdp": "v=0\r\nthis is not sdp\r\n"},
        "not a dict",
    ):
        peer = CameraPeer("x", RecordingSink())
        with pytest.raises(SignalingError) as ei:
            await peer.accept(bad)  # type: ignore[arg-type]
        assert STATUS_OF_KIND[ei.value.kind] == 400

    # audio + data channel only: no video
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    pc.addTransceiver(ToneTrack(), direction="sendonly")
    pc.createDataChannel("status")
    await pc.setLocalDescription(await pc.createOffer())
    peer = CameraPeer("x", RecordingSink())
    with pytest.raises(SignalingError) as ei:
        await peer.accept({"type": "offer", "sdp": pc.localDescription.sdp})
    assert STATUS_OF_KIND[ei.value.kind] == 400 and "video" in ei.value.message
    await pc.close()

    # a truncated real offer (aiortc's parser chokes) is a 400, not a 500
    client, _, _ = await _client("video/h264", audio=False)
    sdp = client.localDescription.sdp
    broken = sdp.replace("a=ice-ufrag:", "a=ice-ufragX:")
    peer = CameraPeer("x", RecordingSink())
    with pytest.raises(SignalingError) as ei:
        await peer.accept({"type": "offer", "sdp": broken})
    assert STATUS_OF_KIND[ei.value.kind] == 400
    await peer.close()
    await client.close()

    with pytest.raises(SignalingError):
        await CameraPeer("x", RecordingSink()).accept({"type": "offer", "sdp": sdp, "roles": {"0": "bogus"}})


CHROME_LIKE_OFFER = (
    "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\na=group:BUNDLE 0 1 2 3\r\n"
    "m=video 9 UDP/TLS/RTP/SAVPF 96 97 102\r\nc=IN IP4 0.0.0.0\r\na=mid:0\r\na=sendonly\r\na=rtcp-mux\r\n"
    "a=rtpmap:96 VP8/90000\r\na=rtpmap:102 H264/90000\r\n"
    "a=fmtp:102 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f\r\n"
    "m=video 9 UDP/TLS/RTP/SAVPF 96\r\nc=IN IP4 0.0.0.0\r\na=mid:1\r\na=sendonly\r\na=rtcp-mux\r\n"
    "m=audio 9 UDP/TLS/RTP/SAVPF 111\r\nc=IN IP4 0.0.0.0\r\na=mid:2\r\na=sendonly\r\na=rtcp-mux\r\n"
    "m=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\nc=IN IP4 0.0.0.0\r\na=mid:3\r\n"
)


def test_sdp_helpers() -> None:
    mlines = parse_offer_mlines(CHROME_LIKE_OFFER)
    assert [(m.kind, m.mid, m.sends) for m in mlines] == [
        ("video", "0", True), ("video", "1", True), ("audio", "2", True), ("application", "3", True)
    ]
    assert assign_roles(mlines, None) == {0: "record", 1: "detect", 2: "audio"}
    assert assign_roles(mlines, {"1": "record"}) == {1: "record", 0: "detect", 2: "audio"}
    with pytest.raises(SignalingError):
        assign_roles(mlines, {"2": "record"})

    answer = CHROME_LIKE_OFFER.replace("a=sendonly", "a=recvonly")
    out = apply_bitrate_floor(answer, 2500, 1000, 2500)
    sections = out.split("m=")
    v0 = sections[1]
    assert "c=IN IP4 0.0.0.0\r\nb=AS:2500\r\n" in v0
    assert "profile-level-id=42e01f;x-google-min-bitrate=1000;x-google-start-bitrate=2500" in v0
    assert "a=rtpmap:96 VP8/90000\r\na=fmtp:96 x-google-min-bitrate=1000" in v0
    assert "b=AS" not in sections[3] and "x-google" not in sections[3]
    assert out.endswith("\r\n")


def _chrome_offer() -> str:
    """A Chrome-120-shaped offer: BUNDLE, rtcp-mux, rtx/red/ulpfec, many H.264 profiles, a data channel."""
    ice = "a=ice-ufrag:Abcd\r\na=ice-pwd:0123456789abcdefghijklmn\r\na=ice-options:trickle\r\n"
    fp = "a=fingerprint:sha-256 " + ":".join(["AB"] * 32) + "\r\na=setup:actpass\r\n"
    cand = "a=candidate:1 1 udp 2122260223 127.0.0.1 50000 typ host generation 0 network-id 1\r\n"

    def video(mid: str, ssrc: int) -> str:
        return (
            "m=video 50000 UDP/TLS/RTP/SAVPF 96 97 102 103 104 105 106 107 108 109 127 125 39 40 45 46 98 99 100 101 112 113 116 117 118\r\n"
            "c=IN IP4 127.0.0.1\r\na=rtcp:9 IN IP4 0.0.0.0\r\n" + cand + ice + fp + f"a=mid:{mid}\r\n"
            "a=extmap:1 urn:ietf:params:rtp-hdrext:toffset\r\n"
            "a=extmap:2 http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time\r\n"
            "a=extmap:3 urn:3gpp:video-orientation\r\n"
            "a=extmap:4 http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01\r\n"
            "a=extmap:9 urn:ietf:params:rtp-hdrext:sdes:mid\r\n"
            "a=sendonly\r\na=msid:stream track" + mid + "\r\na=rtcp-mux\r\na=rtcp-rsize\r\n"
            "a=rtpmap:96 VP8/90000\r\na=rtcp-fb:96 goog-remb\r\na=rtcp-fb:96 transport-cc\r\na=rtcp-fb:96 ccm fir\r\n"
            "a=rtcp-fb:96 nack\r\na=rtcp-fb:96 nack pli\r\na=rtpmap:97 rtx/90000\r\na=fmtp:97 apt=96\r\n"
            "a=rtpmap:102 H264/90000\r\na=rtcp-fb:102 goog-remb\r\na=rtcp-fb:102 transport-cc\r\n"
            "a=rtcp-fb:102 ccm fir\r\na=rtcp-fb:102 nack\r\na=rtcp-fb:102 nack pli\r\n"
            "a=fmtp:102 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42001f\r\n"
            "a=rtpmap:103 rtx/90000\r\na=fmtp:103 apt=102\r\n"
            "a=rtpmap:104 H264/90000\r\na=rtcp-fb:104 nack\r\na=rtcp-fb:104 nack pli\r\n"
            "a=fmtp:104 level-asymmetry-allowed=1;packetization-mode=0;profile-level-id=42001f\r\n"
            "a=rtpmap:105 rtx/90000\r\na=fmtp:105 apt=104\r\n"
            "a=rtpmap:106 H264/90000\r\na=rtcp-fb:106 nack\r\na=rtcp-fb:106 nack pli\r\n"
            "a=fmtp:106 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f\r\n"
            "a=rtpmap:107 rtx/90000\r\na=fmtp:107 apt=106\r\n"
            "a=rtpmap:108 H264/90000\r\na=fmtp:108 level-asymmetry-allowed=1;packetization-mode=0;profile-level-id=42e01f\r\n"
            "a=rtpmap:109 rtx/90000\r\na=fmtp:109 apt=108\r\n"
            "a=rtpmap:127 H264/90000\r\na=fmtp:127 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=4d001f\r\n"
            "a=rtpmap:125 rtx/90000\r\na=fmtp:125 apt=127\r\n"
            "a=rtpmap:39 H264/90000\r\na=fmtp:39 level-asymmetry-allowed=1;packetization-mode=0;profile-level-id=4d001f\r\n"
            "a=rtpmap:40 rtx/90000\r\na=fmtp:40 apt=39\r\n"
            "a=rtpmap:45 AV1/90000\r\na=fmtp:45 level-idx=5;profile=0;tier=0\r\n"
            "a=rtpmap:46 rtx/90000\r\na=fmtp:46 apt=45\r\n"
            "a=rtpmap:98 VP9/90000\r\na=fmtp:98 profile-id=0\r\na=rtpmap:99 rtx/90000\r\na=fmtp:99 apt=98\r\n"
            "a=rtpmap:100 VP9/90000\r\na=fmtp:100 profile-id=2\r\na=rtpmap:101 rtx/90000\r\na=fmtp:101 apt=100\r\n"
            "a=rtpmap:112 H264/90000\r\na=fmtp:112 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=64001f\r\n"
            "a=rtpmap:113 rtx/90000\r\na=fmtp:113 apt=112\r\n"
            "a=rtpmap:116 red/90000\r\na=rtpmap:117 rtx/90000\r\na=fmtp:117 apt=116\r\na=rtpmap:118 ulpfec/90000\r\n"
            f"a=ssrc-group:FID {ssrc} {ssrc + 1}\r\na=ssrc:{ssrc} cname:abc\r\na=ssrc:{ssrc} msid:stream track{mid}\r\n"
            f"a=ssrc:{ssrc + 1} cname:abc\r\na=ssrc:{ssrc + 1} msid:stream track{mid}\r\n"
        )

    return (
        "v=0\r\no=- 4611731400430051336 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n"
        "a=group:BUNDLE 0 1 2 3\r\na=extmap-allow-mixed\r\na=msid-semantic: WMS stream\r\n"
        + video("0", 1000)
        + video("1", 2000)
        + "m=audio 50000 UDP/TLS/RTP/SAVPF 111 63 9 0 8 13 110 126\r\nc=IN IP4 127.0.0.1\r\n"
        "a=rtcp:9 IN IP4 0.0.0.0\r\n" + cand + ice + fp + "a=mid:2\r\n"
        "a=extmap:14 urn:ietf:params:rtp-hdrext:ssrc-audio-level\r\na=extmap:9 urn:ietf:params:rtp-hdrext:sdes:mid\r\n"
        "a=sendonly\r\na=msid:stream audio0\r\na=rtcp-mux\r\n"
        "a=rtpmap:111 opus/48000/2\r\na=rtcp-fb:111 transport-cc\r\na=fmtp:111 minptime=10;useinbandfec=1\r\n"
        "a=rtpmap:63 red/48000/2\r\na=fmtp:63 111/111\r\na=rtpmap:9 G722/8000\r\na=rtpmap:0 PCMU/8000\r\n"
        "a=rtpmap:8 PCMA/8000\r\na=rtpmap:13 CN/8000\r\na=rtpmap:110 telephone-event/48000\r\n"
        "a=rtpmap:126 telephone-event/8000\r\na=ssrc:3000 cname:abc\r\na=ssrc:3000 msid:stream audio0\r\n"
        "m=application 50000 UDP/DTLS/SCTP webrtc-datachannel\r\nc=IN IP4 127.0.0.1\r\n" + cand + ice + fp
        + "a=mid:3\r\na=sctp-port:5000\r\na=max-message-size:262144\r\n"
    )


async def test_chrome_shaped_offer_is_answered() -> None:
    peer = CameraPeer("chrome", RecordingSink(), {"bitrate_kbps": 3000})
    try:
        answer = await peer.accept({"type": "offer", "sdp": _chrome_offer(), "roles": {"0": "record", "1": "detect", "2": "audio"}})
        sdp = answer["sdp"]
        sections = sdp.split("\r\nm=")
        assert [s.split(" ", 1)[0] for s in sections[1:]] == ["video", "video", "audio", "application"]
        assert "a=group:BUNDLE 0 1 2 3" in sdp
        for v in sections[1:3]:
            first_pt = v.split("\r\n", 1)[0].split()[3]
            assert f"a=rtpmap:{first_pt} H264/90000" in v  # H.264 preferred over the offer's VP8-first order
            assert "b=AS:3000" in v and "x-google-start-bitrate=3000" in v
            assert "a=recvonly" in v
        assert "opus/48000" in sections[3]
        assert set(peer.tracks) == {"record", "detect", "audio"}
        assert peer.tracks["record"].mid == "0" and peer.tracks["detect"].mid == "1"
    finally:
        await peer.close()


class LevelSink(RecordingSink):
    def __init__(self) -> None:
        super().__init__()
        self.levels: list = []

    def on_audio_level(self, level) -> None:
        self.levels.append(level)


async def test_sender_audio_levels_replace_decoding() -> None:
    """RFC 6464 levels in the RTP headers feed the sound trigger; the Opus packets are stored, never decoded."""
    sink = LevelSink()
    peer = CameraPeer("cam-levels", sink, None)
    client, _, _ = await _client("video/h264")
    try:
        answer = await peer.accept({"type": "offer", "sdp": client.localDescription.sdp})
        assert "ssrc-audio-level" in answer["sdp"]
        await client.setRemoteDescription(RTCSessionDescription(**answer))
        assert await _wait_for(lambda: len(sink.levels) > 60, 10), "no audio levels"
        # ToneTrack: a sine of amplitude 8000/32767 has an RMS of -15.2 dBFS
        steady = [lv.dbfs for lv in sink.levels[10:]]
        assert all(abs(v - -15.2) <= 1.5 for v in steady), steady[:20]
        audio_tap = peer.tracks["audio"].tap
        assert audio_tap.levels >= len(sink.levels) and audio_tap.decoded == 0 and sink.audio == []
        stored = [f for f in sink.frames if f.kind == "audio"]
        assert len(stored) > 50 and all(f.codec == "opus" for f in stored)  # still recorded into clips
    finally:
        await client.close()
        await peer.close()


async def test_peer_that_never_connects_is_closed() -> None:
    """An offer whose candidates lead nowhere and that never sends end-of-candidates used to stay "connecting"
    for ever, holding its sockets (issue 10, item 2): the peer closes itself after connect_timeout_s."""
    states: list[str] = []
    peer = CameraPeer("ghost", RecordingSink(), {"connect_timeout_s": 1.0}, on_state=states.append)
    try:
        await peer.accept({"type": "offer", "sdp": _chrome_offer()})
        transports = _ice_transports(peer)
        assert transports and not any(t.is_closing() for t in transports)
        assert await _wait_for(lambda: peer.state == "closed", 20.0), peer.state
        assert peer.timed_out and states[-1] == "closed"
        assert all(t.is_closing() for t in transports)  # its UDP sockets are freed
    finally:
        await peer.close()
