"""Micro-benchmark of the hub's per-packet RTP receive path for one 720p15 H.264 record track, no browser.

Usage: scripts/bench rtp [--seconds 10] [--kbps 5000] [--runs 5] [--modes aiortc,fast] [--profile] [--json]
                        [--udp [--udp-modes aiortc,fast,fast+batch] [--udp-reps 3] [--uvloop]]

Packets: ``--seconds`` of a 1280x720 @15 fps moving pattern encoded by libx264 (baseline, zerolatency, a
keyframe every 2 s like the hub's PLIs) at ``--kbps``, packetized by aiortc's own H.264 packetizer (FU-A +
STAP-A, 1200-byte packets as Chrome sends) into RTP packets carrying Chrome's header extensions (mid,
abs-send-time, transport-wide sequence number) and SRTP-protected (AES-CM-128/HMAC-SHA1-80, like a browser).

Replay, per packet, exactly what aiortc does after the datagram arrives: ``Session.unprotect`` ->
``RtpPacket.parse`` (with the extension map) -> ``await receiver._handle_rtp_packet(packet, arrival_ms)`` on a
real ``RTCRtpReceiver`` (REMB estimator off, as ``CameraPeer`` does) with the hub's ``EncodedTap`` (role
``record``) installed, and in mode ``fast`` also ``hub.ingest.fastpath`` as ``CameraPeer`` applies it. The tap's
frames go to a sink that only counts them. Not included: the UDP socket / aioice / asyncio datagram hand-off
(identical in both modes) and RTCP.

Reports CPU time per packet (process_time, best of ``--runs`` fresh receivers) and the implied % of one core
per camera at the stream's packet rate. ``--profile`` prints a cProfile of one run per mode.

``--udp`` also replays the datagrams in real time (frame bursts at 15 fps from a sender process) over loopback
UDP into an asyncio datagram endpoint that behaves like aioice's (STUN parse attempt, queue, three coroutine
levels like aiortc's DTLS/ICE receive), and reports the event-loop thread's CPU per packet, median over
``--udp-reps`` interleaved repetitions. Mode ``fast+batch`` adds ``batch_datagram_reads`` on the socket, as
``CameraPeer`` does on its ICE sockets. This is the number closest to the hub's real per-packet cost.
"""

from __future__ import annotations

import argparse
import asyncio
import fractions
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

W, H, FPS = 1280, 720, 15
PT, RTX_PT, SSRC, RTX_SSRC = 102, 103, 0x1234ABCD, 0x5678EF01
EXT_IDS = {"mid": 4, "abs_send_time": 2, "transport_sequence_number": 3}


def encode_stream(seconds: float, kbps: int, width: int = W, height: int = H, fps: int = FPS,
                  gop_s: float = 2.0) -> list[tuple[int, list[bytes]]]:
    """[(rtp timestamp, [payload, ...]) per frame] from aiortc's libx264 encoder + packetizer."""
    import av
    from aiortc.codecs.h264 import H264Encoder

    enc = H264Encoder()
    enc.target_bitrate = kbps * 1000
    rng = np.random.default_rng(1)
    noise = rng.integers(0, 24, size=(height, width), dtype=np.uint8)
    yy, xx = np.mgrid[0:height, 0:width]
    base = ((xx // 2 + yy // 3) % 256).astype(np.uint8)
    out = []
    n = int(seconds * fps)
    for i in range(n):
        img = np.empty((height, width, 3), np.uint8)
        img[..., 0] = base + np.uint8(i % 256)
        img[..., 1] = noise + base // 2
        img[..., 2] = 128
        x0 = (i * 13) % (width - 160)
        img[200:360, x0:x0 + 160] = 250
        frame = av.VideoFrame.from_ndarray(img, format="rgb24")
        frame.pts, frame.time_base = i * (90000 // fps), fractions.Fraction(1, 90000)
        payloads, ts = enc.encode(frame, force_keyframe=(i % int(gop_s * fps) == 0))
        if payloads:
            out.append((ts, payloads))
    return out


def ext_map() -> Any:
    from aiortc.rtcrtpparameters import (
        RTCRtpHeaderExtensionParameters,
        RTCRtpParameters,
    )
    from aiortc.rtp import HeaderExtensionsMap

    m = HeaderExtensionsMap()
    m.configure(RTCRtpParameters(headerExtensions=[
        RTCRtpHeaderExtensionParameters(id=EXT_IDS["mid"], uri="urn:ietf:params:rtp-hdrext:sdes:mid"),
        RTCRtpHeaderExtensionParameters(id=EXT_IDS["abs_send_time"],
                                        uri="http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time"),
        RTCRtpHeaderExtensionParameters(
            id=EXT_IDS["transport_sequence_number"],
            uri="http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01"),
    ]))
    return m


def make_packets(frames: list[tuple[int, list[bytes]]], seq0: int = 60000, ts0: int = 3_000_000_000) -> list[Any]:
    """RtpPackets (seq wraps through 65535 when there are enough) with Chrome-like header extensions."""
    from aiortc.rtp import RtpPacket

    pkts = []
    seq = seq0
    twcc = 1
    for ts, payloads in frames:
        for j, payload in enumerate(payloads):
            p = RtpPacket(payload_type=PT, marker=int(j == len(payloads) - 1), sequence_number=seq,
                          timestamp=(ts0 + ts) & 0xFFFFFFFF, ssrc=SSRC, payload=payload)
            p.extensions.mid = "1"
            p.extensions.abs_send_time = (ts * 262144 // 90000) & 0xFFFFFF
            p.extensions.transport_sequence_number = twcc
            pkts.append(p)
            seq = (seq + 1) & 0xFFFF
            twcc = (twcc + 1) & 0xFFFF
    return pkts


SRTP_KEY = bytes(range(30))


def srtp_sessions() -> tuple[Any, Any]:
    from pylibsrtp import Policy, Session

    tx = Session(policy=Policy(key=SRTP_KEY, ssrc_type=Policy.SSRC_ANY_OUTBOUND))
    rx = Session(policy=Policy(key=SRTP_KEY, ssrc_type=Policy.SSRC_ANY_INBOUND))
    return tx, rx


class CountingSink:
    def __init__(self) -> None:
        self.frames: list = []
        self.broken = 0

    def on_frame(self, f: Any) -> None:
        self.frames.append(f)

    def on_broken(self) -> None:
        self.broken += 1

    def on_stream_info(self, info: Any) -> None:
        pass


def make_receiver(send_log: list | None = None) -> Any:
    """A real aiortc RTCRtpReceiver, configured for H.264 + RTX as after ``receive()``, without sockets or
    threads (the decoder thread is a placeholder: the record track is never decoded)."""
    from aiortc.rtcrtpparameters import RTCRtpCodecParameters
    from aiortc.rtcrtpreceiver import RTCRtpReceiver

    class _StubTransport:
        state = "new"
        _stats_id = "stub"

    r = RTCRtpReceiver("video", _StubTransport())  # type: ignore[arg-type]
    codecs = r._RTCRtpReceiver__codecs
    codecs[PT] = RTCRtpCodecParameters(mimeType="video/H264", clockRate=90000, payloadType=PT, parameters={
        "level-asymmetry-allowed": "1", "packetization-mode": "1", "profile-level-id": "42e01f"})
    codecs[RTX_PT] = RTCRtpCodecParameters(mimeType="video/rtx", clockRate=90000, payloadType=RTX_PT,
                                           parameters={"apt": PT})
    r._RTCRtpReceiver__rtx_ssrc[RTX_SSRC] = SSRC
    r._RTCRtpReceiver__decoder_thread = object()  # truthy: aiortc puts complete frames on the decoder queue
    r._RTCRtpReceiver__remote_bitrate_estimator = None  # CameraPeer switches it off (pin_remb)
    r._RTCRtpReceiver__rtcp_ssrc = 0x0BADCAFE
    log = send_log if send_log is not None else []

    async def _send_rtcp(packet: Any) -> None:
        log.append(packet)

    r._send_rtcp = _send_rtcp
    return r


def install(receiver: Any, sink: CountingSink, mode: str) -> Any:
    from hub.ingest.tap import EncodedTap

    tap = EncodedTap(receiver, "record", kind="video", on_frame=sink.on_frame, on_broken=sink.on_broken,
                     on_stream_info=sink.on_stream_info)
    if mode == "fast":
        from hub.ingest.fastpath import install_record_fastpath

        install_record_fastpath(receiver, tap)
    return tap


def receive_path(mode: str) -> tuple[Any, Any, Any, Any, CountingSink]:
    """A fresh SRTP session, receiver and sink for one measurement: (ext map, unprotect, parse, receiver, sink)."""
    from aiortc.rtp import RtpPacket

    _, rx = srtp_sessions()
    sink = CountingSink()
    receiver = make_receiver()
    install(receiver, sink, mode)
    return ext_map(), rx.unprotect, RtpPacket.parse, receiver, sink


async def replay(datagrams: list[bytes], mode: str, stage: str = "all") -> tuple[float, CountingSink]:
    """CPU seconds to push every datagram through the receive path (fresh receiver, fresh SRTP session)."""

    emap, unprotect, parse, receiver, sink = receive_path(mode)
    t0 = time.process_time()
    if stage == "srtp":
        for d in datagrams:
            unprotect(d)
    elif stage == "parse":
        for d in datagrams:
            parse(unprotect(d), emap)
    else:
        for d in datagrams:
            packet = parse(unprotect(d), emap)
            await receiver._handle_rtp_packet(packet, arrival_time_ms=0)
    return time.process_time() - t0, sink


def protect_all(packets: list[Any]) -> list[bytes]:
    tx, _ = srtp_sessions()
    emap = ext_map()
    out = []
    for p in packets:
        out.append(tx.protect(p.serialize(emap)))
    return out


_SENDER = r"""
import pickle, socket, sys, time
frames = pickle.load(open(sys.argv[1], "rb"))
port, fps = int(sys.argv[2]), float(sys.argv[3])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 22)
t0 = time.monotonic() + 0.2
for i, frame in enumerate(frames):
    d = t0 + i / fps - time.monotonic()
    if d > 0:
        time.sleep(d)
    for pkt in frame:
        s.sendto(pkt, ("127.0.0.1", port))
s.sendto(b"", ("127.0.0.1", port))
"""


async def udp_replay(frames_dg: list[list[bytes]], mode: str, fps: float,
                     batch: bool = False) -> tuple[float, float, int, CountingSink]:
    """Real time over loopback UDP, as the hub receives it: a sender process paces frame bursts at ``fps``; here
    an asyncio datagram endpoint tries STUN first and queues (as aioice does), a task awaits the queue through
    the same three coroutine levels as aiortc (DTLS ``_recv_next`` -> ICE ``recv`` -> ``recvfrom``), then
    unprotect, parse, receiver + tap. Returns (event-loop thread CPU s, wall s, packets, sink)."""
    import os
    import pickle
    import socket
    import subprocess
    import tempfile

    from aioice import stun

    loop = asyncio.get_running_loop()
    q: asyncio.Queue = asyncio.Queue()

    class Proto(asyncio.DatagramProtocol):
        def datagram_received(self, data: bytes, addr: Any) -> None:
            try:
                stun.parse_message(data)
            except ValueError:
                q.put_nowait((data, 1))

    transport, _ = await loop.create_datagram_endpoint(Proto, local_addr=("127.0.0.1", 0))
    transport.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 22)
    if batch:
        from hub.ingest.fastpath import batch_datagram_reads

        batch_datagram_reads(transport)
        await asyncio.sleep(0)
    port = transport.get_extra_info("sockname")[1]
    emap, unprotect, parse, receiver, sink = receive_path(mode)

    async def recvfrom() -> tuple[bytes, int]:
        return await q.get()

    async def recv() -> bytes:
        data, _ = await recvfrom()
        return data

    with tempfile.NamedTemporaryFile(suffix=".pkl", delete=False) as f:
        pickle.dump(frames_dg, f)
    cmd = [sys.executable, "-c", _SENDER, f.name, str(port), str(fps)]
    proc = subprocess.Popen(cmd)  # noqa: ASYNC220 - started once, before the measured loop
    n = 0
    try:
        data = await recv()
        c0, w0 = time.thread_time(), time.monotonic()
        while data:
            packet = parse(unprotect(data), emap)
            await receiver._handle_rtp_packet(packet, arrival_time_ms=int(time.monotonic() * 1000))
            n += 1
            data = await recv()
        cpu, wall = time.thread_time() - c0, time.monotonic() - w0
    finally:
        proc.wait()
        transport.close()
        os.unlink(f.name)
    return cpu, wall, n, sink


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="scripts/bench rtp", description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--kbps", type=int, default=5000,
                    help="libx264 target; 5000 gives ~1.9 Mbps / ~200 packets/s, what Chrome sends at 720p15")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--modes", default="aiortc,fast")
    ap.add_argument("--profile", action="store_true")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--udp", action="store_true", help="also replay in real time over loopback UDP + asyncio")
    ap.add_argument("--udp-modes", default="aiortc,fast,fast+batch",
                    help="modes of the UDP replay; +batch: hub.ingest.fastpath.batch_datagram_reads on the socket")
    ap.add_argument("--udp-reps", type=int, default=3, help="interleaved repetitions of the UDP replay")
    ap.add_argument("--uvloop", action="store_true", help="run the UDP replay on uvloop (if importable)")
    args = ap.parse_args(argv)

    t = time.time()
    frames = encode_stream(args.seconds, args.kbps)
    packets = make_packets(frames)
    datagrams = protect_all(packets)
    dur = len(frames) / FPS
    rate = len(packets) / dur
    kbps = sum(len(p.payload) for p in packets) * 8 / dur / 1000
    print(f"stream: {len(frames)} frames {W}x{H} @{FPS} fps, {len(packets)} packets ({rate:.0f}/s), "
          f"{kbps:.0f} kbps payload; generated in {time.time() - t:.1f} s")

    results: dict[str, Any] = {"packets": len(packets), "packets_per_s": round(rate, 1), "modes": {}}
    stages = {}
    for stage in ("srtp", "parse"):
        stages[stage] = min(asyncio.run(replay(datagrams, "aiortc", stage))[0] for _ in range(args.runs))
    print(f"  srtp unprotect        {stages['srtp'] / len(packets) * 1e6:6.2f} us/packet")
    print(f"  + RtpPacket.parse     {stages['parse'] / len(packets) * 1e6:6.2f} us/packet")
    ref_frames = None
    for mode in args.modes.split(","):
        best = None
        for _ in range(args.runs):
            cpu, sink = asyncio.run(replay(datagrams, mode))
            best = cpu if best is None else min(best, cpu)
        data = [f.data for f in sink.frames]
        if ref_frames is None:
            ref_frames = data
        same = data == ref_frames
        us = best / len(packets) * 1e6
        handle_us = (best - stages["parse"]) / len(packets) * 1e6
        pct = best / dur * 100
        pct250 = us * 250 / 1e4
        print(f"  mode {mode:7s} all: {us:6.2f} us/packet (receiver+tap {handle_us:6.2f}) -> {pct:5.2f} % of one "
              f"core per camera ({pct250:4.2f} % at 250 packets/s); {len(sink.frames)} frames, broken {sink.broken}, "
              f"frames {'identical' if same else 'DIFFER'} to {args.modes.split(',')[0]}")
        results["modes"][mode] = {"us_per_packet": round(us, 2), "receiver_tap_us_per_packet": round(handle_us, 2),
                                  "cpu_pct_per_camera": round(pct, 2), "frames": len(sink.frames),
                                  "broken": sink.broken, "identical": same}
        if args.profile:
            import cProfile
            import pstats

            pr = cProfile.Profile()
            pr.enable()
            asyncio.run(replay(datagrams, mode))
            pr.disable()
            pstats.Stats(pr).sort_stats("tottime").print_stats(18)
    if args.udp:
        frames_dg = []
        k = 0
        for _, payloads in frames:
            frames_dg.append(datagrams[k:k + len(payloads)])
            k += len(payloads)
        runner = asyncio.run
        if args.uvloop:
            import uvloop

            runner = uvloop.run
        modes = args.udp_modes.split(",")
        per_mode: dict[str, list[float]] = {m: [] for m in modes}
        for rep in range(args.udp_reps):
            for mode_spec in modes:  # interleaved, so drifting machine load hits every mode alike
                batch = mode_spec.endswith("+batch")
                mode = mode_spec.removesuffix("+batch")
                cpu, wall, n, sink = runner(udp_replay(frames_dg, mode, FPS, batch))
                per_mode[mode_spec].append(cpu / max(n, 1) * 1e6)
                print(f"  udp {'uvloop' if args.uvloop else 'asyncio'} {mode_spec:12s} #{rep + 1}: "
                      f"{cpu / wall * 100:5.2f} % of one core ({cpu / max(n, 1) * 1e6:6.2f} us/packet incl. event "
                      f"loop), {n}/{len(packets)} packets, {len(sink.frames)} frames, broken {sink.broken}")
        results["udp"] = {}
        for mode_spec, vals in per_mode.items():
            med = float(np.median(vals))
            results["udp"][mode_spec] = {"median_us_per_packet": round(med, 2),
                                         "cpu_pct_at_250_pps": round(med * 250 / 1e4, 2)}
            print(f"  udp median {mode_spec:12s}: {med:6.2f} us/packet -> {med * 250 / 1e4:4.2f} % of one core at "
                  f"250 packets/s")
    results["stages_us_per_packet"] = {k: round(v / len(packets) * 1e6, 2) for k, v in stages.items()}
    if args.json:
        print(json.dumps(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
