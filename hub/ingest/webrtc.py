"""One aiortc peer per phone: track roles, encoded tap, keyframe requests, REMB pin, status channel.

A phone's offer carries up to three media tracks (plus a ``status`` data channel):

* ``record``  (first video m-line unless ``roles`` says otherwise): never decoded; its encoded frames go
  through :class:`hub.ingest.tap.EncodedTap` to ``sink.on_frame``. A PLI is sent whenever no keyframe arrived
  for ``keyframe_interval_s`` so the ring buffer always has a recent keyframe to start a clip on.
* ``detect``  (second video m-line): decoded by aiortc; the newest luma plane goes to ``sink.on_detect``
  (older frames still queued are dropped, the queue never grows).
* ``audio``   (first audio m-line): Opus packets tapped to ``sink.on_frame`` *and* decoded inline in the tap
  (libopus, mono float32) to ``sink.on_audio``; aiortc's own audio decoder thread stays idle.
* anything else is blackholed (never forwarded to a decoder, so no queue grows).

Which m-line is which: the page's explicit ``roles`` ({mid: role}) win; the defaults above only fill gaps.
Firefox (``bundlePolicy: 'max-bundle'``) offers every m-section after the first with port 0 and
``a=bundle-only``: such a section sends (on the BUNDLE transport); only port 0 without bundle-only is disabled.

The ``status`` data channel goes both ways: the page sends its status (battery, visibility, ...) to
``sink.on_status``; every ``RECEIVED_INTERVAL_S`` the hub answers with what it actually receives per role
(``{"type": "received", "tracks": {"record"|"detect"|"audio": {"mid", "per_s", "total", ...}}, "ignored":
[mids]}``), so the phone shows the hub's view instead of what its own encoder claims to send.

``PeerConfig.decode_record`` (benchmarks only: ``scripts/bench ingest`` measures the tap against it) restores
aiortc's default receive path throughout: the record track's frames are still tapped but also decoded (and the
decoded frames read and discarded), audio goes through aiortc's own decoder thread, and neither the fast path nor
the RFC 6464 levels are used.

Per-packet cost (kill switch ``PINGWATCH_INGEST_FASTPATH=0``; docs/architecture.md, "The receive path per
packet"): the ICE sockets read every queued datagram per wake-up and, once media flows, are drained by one shared
timer (``hub/ingest/fastpath.py``); SRTP datagrams go straight to the receivers (``hub/ingest/srtp_direct.py``);
the record track's H.264 packets are assembled into frames without aiortc's jitter buffer, and the audio track's
Opus packets go straight to the tap (``hub/ingest/opus_fastpath.py``).

Bandwidth: aiortc's REMB estimator tells Chrome that only ~100 kbps is available on a busy machine, and Chrome
then sends the "720p" track at 320x180. The estimator is switched off on every video receiver (which also
saves its per-packet CPU) and the hub itself sends a REMB with the configured bitrate every
``remb_interval_s``; the answer also carries ``x-google-min-bitrate``/``x-google-start-bitrate`` on the video
fmtp and ``b=AS`` so a static scene cannot collapse the estimate.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, fields
from typing import Any

from hub.errors import ErrorKind, HubError
from hub.ingest.aiortc_names import (
    RECEIVER_ESTIMATOR,
    RECEIVER_REMOTE_STREAMS,
    RECEIVER_RTCP_SSRC,
    RECEIVER_RTX_SSRC,
    TRACK_QUEUE,
)
from hub.ingest.sink import CameraSink
from hub.ingest.tap import (
    EncodedTap,
    Role,
    audio_frame_to_mono,
    check_aiortc_internals,
    video_frame_to_luma,
)
from hub.media.frames import AudioChunk, DetectFrame
from pingwatch_common.aio import within

logger = logging.getLogger(__name__)


# Fire-and-forget tasks are held here until they end: the event loop keeps only a weak reference to a task, and
# one nobody references may be garbage-collected before it has run to the end.
_background: set[asyncio.Future[Any]] = set()


def _spawn(aw: Awaitable[Any]) -> None:
    task = asyncio.ensure_future(aw)
    _background.add(task)
    task.add_done_callback(_background.discard)

ROLES = ("record", "detect", "audio")


def fastpath_enabled() -> bool:
    """Kill switch for hub/ingest/fastpath.py (lean record-track packet path + batched ICE socket reads):
    ``PINGWATCH_INGEST_FASTPATH=0`` gives aiortc's own receive path back (benchmark baseline, or if a new
    browser's packetization ever trips the fast path)."""
    return os.environ.get("PINGWATCH_INGEST_FASTPATH", "1") != "0"
MAX_SDP_BYTES = 64 * 1024
MAX_STATUS_BYTES = 16 * 1024
# How often the hub tells the page what it receives (the ``received`` message on the status channel).
RECEIVED_INTERVAL_S = 2.0


class SignalingError(HubError):
    """The offer cannot be accepted; ``kind`` says why (INVALID, TOO_LARGE, CONFLICT)."""


@dataclass
class PeerConfig:
    keyframe_interval_s: float = 2.0
    bitrate_kbps: int = 2500
    min_bitrate_kbps: int | None = None  # default: half of bitrate_kbps
    start_bitrate_kbps: int | None = None  # default: bitrate_kbps
    pin_remb: bool = True
    remb_interval_s: float = 1.0
    prefer_codec: str = "h264"  # "h264" or "vp8": order of the answer's video codecs
    # Once media flows, the camera's sockets are drained on a shared timer this often instead of on every
    # packet (hub.ingest.fastpath.DatagramPoller); 0 reads on every readiness event.
    read_interval_ms: int = 60
    ice_servers: list[str] = field(default_factory=list)  # LAN: none (aiortc would otherwise dial Google STUN)
    # Naive baseline for benchmarks only: also decode the record track (aiortc's default path) and discard the
    # frames. scripts/bench ingest measured 1.4-2.2x the hub CPU of the tap; never enable in production.
    decode_record: bool = False
    # A peer whose offer was answered but that never connects (no candidates, no end-of-candidates, a phone that
    # went away) would stay "connecting" with its sockets open for ever: it is closed after this long.
    connect_timeout_s: float = 30.0

    @classmethod
    def from_any(cls, config: Any) -> PeerConfig:
        """Accept ``None``, a ``PeerConfig``, a mapping, or any object with matching attributes
        (e.g. ``hub.config.IngestConfig``)."""
        if config is None:
            return cls()
        if isinstance(config, cls):
            return config
        values: dict[str, Any] = {}
        for f in fields(cls):
            if isinstance(config, dict):
                if f.name in config:
                    values[f.name] = config[f.name]
            elif hasattr(config, f.name):
                values[f.name] = getattr(config, f.name)
        return cls(**values)

    @property
    def min_kbps(self) -> int:
        return self.min_bitrate_kbps if self.min_bitrate_kbps is not None else max(1, self.bitrate_kbps // 2)

    @property
    def start_kbps(self) -> int:
        return self.start_bitrate_kbps if self.start_bitrate_kbps is not None else self.bitrate_kbps


# ------------------------------------------------------------------------------------------------------------
# SDP helpers (string level: validation before aiortc sees it, answer munging after)
# ------------------------------------------------------------------------------------------------------------

_SDP_LINE = re.compile(r"^[a-z]=.*$")


@dataclass
class _MLine:
    index: int
    kind: str
    port: int
    mid: str | None = None
    direction: str = "sendrecv"
    rtcp_mux: bool = False
    bundle_only: bool = False  # a=bundle-only: port 0 in the offer, media on the BUNDLE transport (RFC 8843)
    bundled: bool = False  # its mid is in the session's a=group:BUNDLE

    @property
    def active(self) -> bool:
        """Not rejected: a real port, or port 0 with ``a=bundle-only`` inside a BUNDLE group. Firefox offers
        every m-section after the first this way under ``bundlePolicy: 'max-bundle'``; only port 0 *without*
        bundle-only means the offerer disabled the section."""
        return self.port != 0 or (self.bundle_only and self.bundled)

    @property
    def sends(self) -> bool:
        """The offerer sends media on it (so we receive)."""
        return self.active and self.direction in ("sendrecv", "sendonly")


def parse_offer_mlines(sdp: str) -> list[_MLine]:
    """Light structural check of an SDP offer; raises ``SignalingError(400)`` when it is not SDP at all."""
    lines = [ln for ln in re.split(r"\r?\n", sdp) if ln]
    if not lines or not lines[0].startswith("v="):
        raise SignalingError(ErrorKind.INVALID, "malformed SDP: must start with v=")
    mlines: list[_MLine] = []
    bundle_mids: set[str] = set()
    for ln in lines:
        if not _SDP_LINE.match(ln):
            raise SignalingError(ErrorKind.INVALID, f"malformed SDP line: {ln[:60]!r}")
        if ln.startswith("m="):
            parts = ln[2:].split()
            if len(parts) < 4:
                raise SignalingError(ErrorKind.INVALID, f"malformed SDP m-line: {ln[:60]!r}")
            try:
                port = int(parts[1].split("/")[0])
            except ValueError:
                raise SignalingError(ErrorKind.INVALID, f"malformed SDP m-line port: {ln[:60]!r}") from None
            mlines.append(_MLine(index=len(mlines), kind=parts[0], port=port))
        elif not mlines:
            if ln.startswith("a=group:BUNDLE"):
                bundle_mids.update(ln[len("a=group:BUNDLE") :].split())
        else:
            m = mlines[-1]
            if ln.startswith("a=mid:"):
                m.mid = ln[6:].strip()
            elif ln in ("a=sendrecv", "a=sendonly", "a=recvonly", "a=inactive"):
                m.direction = ln[2:]
            elif ln == "a=rtcp-mux":
                m.rtcp_mux = True
            elif ln == "a=bundle-only":
                m.bundle_only = True
    if not mlines:
        raise SignalingError(ErrorKind.INVALID, "malformed SDP: no media sections")
    for m in mlines:
        m.bundled = m.mid is not None and m.mid in bundle_mids
    return mlines


def assign_roles(mlines: list[_MLine], roles: dict[str, str] | None) -> dict[int, Role]:
    """Role per audio/video m-line index. Explicit ``roles`` ({mid: role}, from the page, which knows which of
    its tracks is which) are taken as given; the defaults only fill the gaps: first sending video = record,
    second = detect, first sending audio = audio; the rest blackhole."""
    out: dict[int, Role] = {}
    by_mid = {m.mid: m for m in mlines if m.mid is not None}
    taken: set[str] = set()
    for mid, role in (roles or {}).items():
        m = by_mid.get(str(mid))
        if m is None or m.kind not in ("audio", "video"):
            logger.info("offer roles: no audio/video m-line with mid %r, ignored", mid)
            continue
        if role not in ROLES:
            raise SignalingError(ErrorKind.INVALID, f"unknown role {role!r} for mid {mid!r}")
        if (role == "audio") != (m.kind == "audio"):
            raise SignalingError(ErrorKind.INVALID, f"role {role!r} does not fit the {m.kind} m-line {mid!r}")
        if role in taken:
            raise SignalingError(ErrorKind.INVALID, f"role {role!r} given twice")
        if not m.sends:
            # Kept all the same: the page named it, and a role on a section that never sends costs nothing,
            # while a guess that moves the role to another section would mix up record and detect.
            logger.warning("offer roles: m-line %r (%s, port %d) is given role %r but does not send",
                           mid, m.direction, m.port, role)
        out[m.index] = role  # type: ignore[assignment]
        taken.add(role)
    for m in mlines:
        if m.index in out or m.kind not in ("audio", "video"):
            continue
        if not m.sends:
            out[m.index] = "blackhole"
            continue
        wanted = ("record", "detect") if m.kind == "video" else ("audio",)
        role = next((r for r in wanted if r not in taken), "blackhole")
        out[m.index] = role  # type: ignore[assignment]
        if role != "blackhole":
            taken.add(role)
    return out


def apply_bitrate_floor(sdp: str, bitrate_kbps: int, min_kbps: int, start_kbps: int) -> str:
    """Add ``b=AS`` and ``x-google-{min,start,max}-bitrate`` to every video section of an (answer) SDP."""
    eol = "\r\n" if "\r\n" in sdp else "\n"
    lines = sdp.split(eol)
    trailing = lines[-1] == ""
    if trailing:
        lines = lines[:-1]
    params = (
        f"x-google-min-bitrate={min_kbps};x-google-start-bitrate={start_kbps};"
        f"x-google-max-bitrate={max(bitrate_kbps, start_kbps)}"
    )
    out: list[str] = []
    i = 0
    while i < len(lines):
        ln = lines[i]
        if not ln.startswith("m=video"):
            out.append(ln)
            i += 1
            continue
        j = i + 1
        while j < len(lines) and not lines[j].startswith("m="):
            j += 1
        section = [ln] + [x for x in lines[i + 1 : j] if not x.startswith("b=")]
        pts = []
        for x in section:
            mm = re.match(r"a=rtpmap:(\d+) (H264|VP8)/", x, re.I)
            if mm:
                pts.append(mm.group(1))
        fmtp_done: set[str] = set()
        for k, x in enumerate(section):
            mm = re.match(r"a=fmtp:(\d+) (.*)$", x)
            if mm and mm.group(1) in pts:
                section[k] = f"{x};{params}" if mm.group(2) else f"{x}{params}"
                fmtp_done.add(mm.group(1))
        for pt in pts:
            if pt in fmtp_done:
                continue
            k = next(k for k, x in enumerate(section) if x.startswith(f"a=rtpmap:{pt} "))
            section.insert(k + 1, f"a=fmtp:{pt} {params}")
        # b= goes after i= / c= (RFC 4566 order: m, i, c, b, k, a)
        k = 1
        while k < len(section) and section[k][:2] in ("i=", "c="):
            k += 1
        section.insert(k, f"b=AS:{bitrate_kbps}")
        out.extend(section)
        i = j
    return eol.join(out) + (eol if trailing else "")


# ------------------------------------------------------------------------------------------------------------
# The peer
# ------------------------------------------------------------------------------------------------------------


@dataclass
class _Track:
    role: Role
    kind: str
    mid: str | None
    receiver: Any
    track: Any
    tap: EncodedTap
    task: asyncio.Task | None = None
    dropped: int = 0  # decoded detect/audio frames dropped because the reader lagged
    delivered: int = 0
    fastpath: Any = None  # hub.ingest.fastpath.RecordFastPath on the record track (None when decoded)


class CameraPeer:
    """Owns one ``RTCPeerConnection`` for one phone camera.

    ``await accept(offer)`` returns the answer dict; ``await close()`` tears everything down (idempotent).
    ``on_state(state)`` is called with aiortc's ``connectionState`` on every change.
    """

    def __init__(
        self,
        camera_id: str,
        sink: CameraSink,
        config: Any = None,
        on_state: Callable[[str], None] | None = None,
    ) -> None:
        self.camera_id = camera_id
        self.sink = sink
        self.config = PeerConfig.from_any(config)
        self.on_state = on_state
        self.pc: Any = None
        self.state = "new"
        self.tracks: dict[Role | str, _Track] = {}  # record/detect/audio; blackholed ones under "blackhole:<mid>"
        self._tasks: list[asyncio.Task] = []
        self._closed = False
        self._roles: dict[int, Role] = {}
        self._transceiver_roles: dict[int, tuple[Role, str | None]] = {}
        self.plis_sent = 0
        self.batched_sockets = 0  # ICE sockets read in batches (hub.ingest.fastpath.batch_ice_reads)
        self._direct: list[Any] = []  # hub.ingest.srtp_direct.DirectSrtp per DTLS transport (counters)
        self.rembs_sent = 0
        self.status_messages = 0
        self.last_status: dict[str, Any] | None = None
        self._status_channel: Any = None  # the page's ``status`` data channel, for the hub's ``received`` reports
        self.received_reports = 0
        self._received_prev: tuple[float, dict[str, int]] | None = None
        self._last_pli = 0.0
        self._last_remb = 0.0
        self._created = time.time()
        self._created_mono = time.monotonic()
        self._connected_once = asyncio.Event()
        self.timed_out = False  # closed because it never connected (PeerConfig.connect_timeout_s)

    # -- signaling -------------------------------------------------------------------------------------

    async def accept(self, offer: dict[str, Any]) -> dict[str, str]:
        from aiortc import RTCConfiguration, RTCIceServer, RTCPeerConnection, RTCSessionDescription
        from aiortc import sdp as aiortc_sdp

        if self.pc is not None:
            raise SignalingError(ErrorKind.CONFLICT, "this peer already accepted an offer")
        if not isinstance(offer, dict):
            raise SignalingError(ErrorKind.INVALID, "offer must be a JSON object")
        if offer.get("type", "offer") != "offer":
            raise SignalingError(ErrorKind.INVALID, f"expected type 'offer', got {offer.get('type')!r}")
        sdp = offer.get("sdp")
        if not isinstance(sdp, str) or not sdp.strip():
            raise SignalingError(ErrorKind.INVALID, "offer has no sdp")
        if len(sdp.encode()) > MAX_SDP_BYTES:
            raise SignalingError(ErrorKind.TOO_LARGE, "sdp too large")
        roles = offer.get("roles")
        if roles is not None and not (
            isinstance(roles, dict) and all(isinstance(k, str) and isinstance(v, str) for k, v in roles.items())
        ):
            raise SignalingError(ErrorKind.INVALID, "roles must map mid strings to 'record' | 'detect' | 'audio'")

        mlines = parse_offer_mlines(sdp)
        if not any(m.kind == "video" and m.sends for m in mlines):
            raise SignalingError(ErrorKind.INVALID, "offer has no video track")
        for m in mlines:
            if m.kind in ("audio", "video") and m.active and not m.rtcp_mux:
                raise SignalingError(ErrorKind.INVALID, f"m-line {m.mid or m.index}: rtcp-mux is required")
        try:
            aiortc_sdp.SessionDescription.parse(sdp)
        except Exception as exc:  # noqa: BLE001 - aiortc raises anything from ValueError to IndexError
            raise SignalingError(ErrorKind.INVALID, f"malformed SDP: {exc}") from None
        self._roles = assign_roles(mlines, roles)
        if "record" not in self._roles.values():
            raise SignalingError(ErrorKind.INVALID, "offer has no video track to record")

        check_aiortc_internals()
        cfg = self.config
        self.pc = pc = RTCPeerConnection(
            RTCConfiguration(iceServers=[RTCIceServer(urls=u) for u in cfg.ice_servers])
        )
        pc.on("track", self._on_track)
        pc.on("datachannel", self._on_datachannel)
        pc.on("connectionstatechange", self._on_connection_state)

        # One receive-only transceiver per audio/video m-line, in order, so aiortc binds m-line i to the
        # transceiver we prepared for it (and we can set codec preferences before it negotiates).
        from aiortc import RTCRtpReceiver

        for m in mlines:
            if m.kind not in ("audio", "video"):
                continue
            tr = pc.addTransceiver(m.kind, direction="recvonly")
            tr.setCodecPreferences(self._preferred_codecs(RTCRtpReceiver, m.kind))
            self._transceiver_roles[id(tr)] = (self._roles.get(m.index, "blackhole"), m.mid)

        try:
            await pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="offer"))
            answer = await pc.createAnswer()
            await pc.setLocalDescription(answer)
        except SignalingError:
            await self.close()
            raise
        except Exception as exc:  # noqa: BLE001 - aiortc: ValueError, OperationError, InvalidStateError...
            await self.close()
            raise SignalingError(ErrorKind.INVALID, f"cannot accept offer: {exc}") from None
        # Read every queued datagram per event-loop wake-up on the ICE sockets (hub/ingest/fastpath.py).
        from hub.ingest.fastpath import batch_ice_reads

        if fastpath_enabled() and not self.config.decode_record:
            self.batched_sockets, self._direct = batch_ice_reads(pc, poll_interval_s=cfg.read_interval_ms / 1000)
        if "record" not in self.tracks:
            await self.close()
            raise SignalingError(ErrorKind.INVALID, "offer has no video track to record")

        answer_sdp = apply_bitrate_floor(pc.localDescription.sdp, cfg.bitrate_kbps, cfg.min_kbps, cfg.start_kbps)
        self._tasks.append(asyncio.ensure_future(self._maintain()))
        self._tasks.append(asyncio.ensure_future(self._close_unless_connected(cfg.connect_timeout_s)))
        self._tasks.append(asyncio.ensure_future(self._report_received()))
        logger.info(
            "camera %s: accepted offer, roles %s",
            self.camera_id,
            {k: (v.mid, v.receiver.track.kind if v.receiver.track else "?") for k, v in self.tracks.items()},
        )
        return {"type": "answer", "sdp": answer_sdp}

    def _preferred_codecs(self, receiver_cls: Any, kind: str) -> list[Any]:
        caps = receiver_cls.getCapabilities(kind).codecs
        if kind == "audio":
            order = ["audio/opus"]
        elif self.config.prefer_codec.lower() == "vp8":
            order = ["video/vp8", "video/h264"]
        else:
            order = ["video/h264", "video/vp8"]
        out = []
        for mime in order:
            out += [c for c in caps if c.mimeType.lower() == mime]
        out += [c for c in caps if c not in out]  # rtx and anything else, after
        return out

    # -- aiortc events ---------------------------------------------------------------------------------

    def _on_track(self, track: Any) -> None:
        tr = next((t for t in self.pc.getTransceivers() if t.receiver.track is track), None)
        if tr is None:  # pragma: no cover - aiortc always sets receiver._track before emitting
            logger.warning("camera %s: track event without transceiver", self.camera_id)
            return
        role, mid = self._transceiver_roles.get(id(tr), ("blackhole", tr.mid))
        if role != "blackhole" and role in self.tracks:
            role = "blackhole"
        receiver = tr.receiver
        if role == "record":
            tap = EncodedTap(
                receiver,
                "record",
                kind=track.kind,
                on_frame=self.sink.on_frame,
                on_broken=self.sink.on_broken,
                on_stream_info=self.sink.on_stream_info,
                decode=self.config.decode_record,
            )
        elif role == "audio":
            # The naive baseline (decode_record) is aiortc's default path throughout: its own Opus decoder thread.
            tap = EncodedTap(receiver, "audio", kind=track.kind, on_frame=self.sink.on_frame,
                             on_audio=None if self.config.decode_record else self.sink.on_audio)
            on_level = getattr(self.sink, "on_audio_level", None)
            lean = not self.config.decode_record and fastpath_enabled()
            if on_level is not None and not self.config.decode_record:
                tap.tap_levels(on_level, hook=not lean)
            if lean:  # lean per-packet path for Opus (hub/ingest/opus_fastpath.py); it delivers the levels
                from hub.ingest.opus_fastpath import install_opus_fastpath

                install_opus_fastpath(receiver, tap)
        else:
            tap = EncodedTap(receiver, role, kind=track.kind)
        if role == "record" and track.kind == "video" and not self.config.decode_record and fastpath_enabled():
            # Lean per-packet path for the record track's H.264 packets (hub/ingest/fastpath.py).
            from hub.ingest.fastpath import install_record_fastpath

            entry_fastpath = install_record_fastpath(receiver, tap)
        else:
            entry_fastpath = None
        if track.kind == "video" and self.config.pin_remb:
            # Switch aiortc's own REMB estimator off; _maintain() sends the pinned value.
            setattr(receiver, RECEIVER_ESTIMATOR, None)
        entry = _Track(role=role, kind=track.kind, mid=mid or tr.mid, receiver=receiver, track=track, tap=tap)
        entry.fastpath = entry_fastpath
        key = role if role != "blackhole" else f"blackhole:{entry.mid}"
        self.tracks[key] = entry
        if role == "detect":
            entry.task = asyncio.ensure_future(self._read_detect(entry))
        elif role == "audio" and tap.on_audio is None:  # no inline Opus decoder: read aiortc's decoded track
            entry.task = asyncio.ensure_future(self._read_audio(entry))
        elif role == "record" and self.config.decode_record:
            entry.task = asyncio.ensure_future(self._read_discard(entry))
        if entry.task is not None:
            self._tasks.append(entry.task)

    def _on_datachannel(self, channel: Any) -> None:
        label = channel.label
        if label == "status":
            self._status_channel = channel

        @channel.on("message")
        def on_message(message: Any) -> None:
            if label != "status" or self._closed:  # a closed peer writes nothing more for its camera
                return
            if isinstance(message, bytes):
                try:
                    message = message.decode()
                except UnicodeDecodeError:
                    return
            if len(message) > MAX_STATUS_BYTES:
                logger.warning("camera %s: status message too large, ignored", self.camera_id)
                return
            try:
                status = json.loads(message)
            except ValueError:
                logger.warning("camera %s: status message is not JSON", self.camera_id)
                return
            if not isinstance(status, dict):
                return
            self.status_messages += 1
            self.last_status = status
            try:
                self.sink.on_status(status)
            except Exception:
                logger.exception("camera %s: on_status failed", self.camera_id)

    def _on_connection_state(self) -> None:
        if self.pc is None:
            return
        state = self.pc.connectionState
        if state == self.state:
            return
        self.state = state
        if state == "connected":
            self._connected_once.set()
        logger.info("camera %s: connection %s", self.camera_id, state)
        if self.on_state is not None:
            try:
                self.on_state(state)
            except Exception:
                logger.exception("camera %s: on_state failed", self.camera_id)
        if state == "failed" and not self._closed:
            # aiortc has no ICE restart: free everything, the phone reconnects with a fresh offer.
            _spawn(self.close())

    async def _close_unless_connected(self, timeout_s: float) -> None:
        """Close the peer if it has not reached "connected" ``timeout_s`` after the answer (aiortc has no such
        limit: an offer without end-of-candidates leaves ICE checking for ever)."""
        if self.state == "connected":
            return
        try:
            await within(self._connected_once.wait(), timeout_s)
        except TimeoutError:
            if not self._closed:
                logger.info("camera %s: not connected %.0f s after its offer; closed", self.camera_id, timeout_s)
                self.timed_out = True
                _spawn(self.close())  # not awaited here: close() awaits this very task

    # -- what the hub receives, told to the page ----------------------------------------------------------

    def _received_counts(self) -> dict[str, int]:
        """Per role, what reached the hub's consumers: record = encoded frames into the clip buffer, detect =
        decoded frames handed to motion detection, audio = Opus packets tapped (each goes to the clip buffer
        and, as a decoded chunk or the sender's RFC 6464 level, to the sound trigger). Packets on a
        blackholed section count nowhere: that is the point of telling the page."""
        out: dict[str, int] = {}
        for role in ROLES:
            entry = self.tracks.get(role)
            if entry is None:
                continue
            out[role] = entry.delivered + entry.tap.decoded if role == "detect" else entry.tap.stats.frames
        return out

    def received_report(self, now: float | None = None) -> dict[str, Any]:
        """The ``received`` message: per role the frames (audio: packets) per second the hub used since the
        previous report, and the total. A role the hub has no track for is absent: the page sends it, but
        the hub does not use it. ``ignored`` lists the mids of media sections that the hub blackholes."""
        now = time.monotonic() if now is None else now
        counts = self._received_counts()
        prev_t, prev = self._received_prev if self._received_prev is not None else (self._created_mono, {})
        dt = now - prev_t
        self._received_prev = (now, counts)
        tracks: dict[str, dict[str, Any]] = {}
        for role, n in counts.items():
            entry = self.tracks[role]
            rate = (n - prev.get(role, 0)) / dt if dt > 0 else 0.0
            tracks[role] = {"mid": entry.mid, "per_s": round(rate, 1), "total": n}
            if entry.kind == "video":
                tracks[role].update(width=entry.tap.width, height=entry.tap.height, codec=entry.tap.codec)
        ignored = sorted(str(e.mid) for k, e in self.tracks.items() if k.startswith("blackhole:"))
        return {"type": "received", "interval_s": round(dt, 2), "tracks": tracks, "ignored": ignored}

    async def _report_received(self) -> None:
        """Every RECEIVED_INTERVAL_S, send the page what the hub actually receives (hub → page on the page's
        ``status`` channel), so the phone shows the hub's view rather than what its own encoder claims."""
        try:
            while not self._closed:
                await asyncio.sleep(RECEIVED_INTERVAL_S)
                channel = self._status_channel
                if channel is None or getattr(channel, "readyState", None) != "open":
                    continue
                report = self.received_report()
                try:
                    channel.send(json.dumps(report, separators=(",", ":")))
                    self.received_reports += 1
                except Exception:  # a channel closing under us: the next round sees it closed
                    logger.debug("camera %s: received report not sent", self.camera_id, exc_info=True)
        except asyncio.CancelledError:
            pass

    # -- readers ---------------------------------------------------------------------------------------

    @staticmethod
    def _drain_newest(entry: _Track, frame: Any, keep_all_below: int = 0) -> tuple[Any, bool]:
        """Take everything already queued on the track, keep the newest. Returns (frame, ended)."""
        q: asyncio.Queue = getattr(entry.track, TRACK_QUEUE)
        while q.qsize() > keep_all_below:
            nxt = q.get_nowait()
            if nxt is None:
                return frame, True
            entry.dropped += 1
            frame = nxt
        return frame, False

    async def _read_detect(self, entry: _Track) -> None:
        from aiortc.mediastreams import MediaStreamError

        track = entry.track
        while True:
            try:
                frame = await track.recv()
            except MediaStreamError:
                break
            except asyncio.CancelledError:
                raise
            frame, ended = self._drain_newest(entry, frame)
            try:
                entry.tap.width, entry.tap.height = frame.width, frame.height  # decoded size of the detect track
                y = video_frame_to_luma(frame)
                t = entry.tap.arrival_time(frame.pts)
                entry.delivered += 1
                self.sink.on_detect(DetectFrame(y=y, t=t))
            except Exception:
                logger.exception("camera %s: detect frame failed", self.camera_id)
            if ended:
                track.stop()
                break

    async def _read_discard(self, entry: _Track) -> None:
        """Read every decoded frame and drop it (the naive baseline's record track: aiortc's default path)."""
        from aiortc.mediastreams import MediaStreamError

        track = entry.track
        while True:
            try:
                await track.recv()
            except MediaStreamError:
                break
            entry.delivered += 1

    async def _read_audio(self, entry: _Track) -> None:
        from aiortc.mediastreams import MediaStreamError

        track = entry.track
        q: asyncio.Queue = getattr(track, TRACK_QUEUE)
        while True:
            try:
                frame = await track.recv()
            except MediaStreamError:
                break
            # Audio is kept contiguous, but never more than ~1 s of backlog.
            while q.qsize() > 50:
                if q.get_nowait() is None:
                    track.stop()
                    return
                entry.dropped += 1
            try:
                samples = audio_frame_to_mono(frame)
                t = entry.tap.arrival_time(frame.pts)
                entry.delivered += 1
                self.sink.on_audio(AudioChunk(samples=samples, sample_rate=frame.sample_rate, t=t))
            except Exception:
                logger.exception("camera %s: audio frame failed", self.camera_id)

    # -- keyframes and bandwidth -------------------------------------------------------------------------

    @staticmethod
    def _media_ssrc(receiver: Any) -> int | None:
        rtx = getattr(receiver, RECEIVER_RTX_SSRC, {}) or {}
        sources = [s for s in receiver.getSynchronizationSources() if s.source not in rtx]
        if not sources:
            return None
        return max(sources, key=lambda s: s.timestamp).source

    async def request_keyframe(self) -> bool:
        """Send a PLI on the record track now. False when its SSRC is not known yet."""
        rec = self.tracks.get("record")
        if rec is None:
            return False
        ssrc = self._media_ssrc(rec.receiver)
        if ssrc is None:
            return False
        await rec.receiver._send_rtcp_pli(ssrc)
        self.plis_sent += 1
        self._last_pli = time.time()
        return True

    async def _send_remb(self) -> bool:
        from aiortc.rtp import RTCP_PSFB_APP, RtcpPsfbPacket, pack_remb_fci

        rec = self.tracks.get("record")
        if rec is None:
            return False
        ssrcs = []
        for entry in self.tracks.values():
            if entry.kind == "video":
                ssrc = self._media_ssrc(entry.receiver)
                if ssrc is not None:
                    ssrcs.append(ssrc)
        rtcp_ssrc = getattr(rec.receiver, RECEIVER_RTCP_SSRC)
        if not ssrcs or rtcp_ssrc is None:
            return False
        packet = RtcpPsfbPacket(
            fmt=RTCP_PSFB_APP,
            ssrc=rtcp_ssrc,
            media_ssrc=0,
            fci=pack_remb_fci(int(self.config.bitrate_kbps * 1000), ssrcs),
        )
        await rec.receiver._send_rtcp(packet)
        self.rembs_sent += 1
        return True

    async def _maintain(self) -> None:
        """Keyframe requests and the pinned REMB. Sleeps until the next one is due rather than ticking: a
        per-camera 10 Hz tick was a tenth of the hub's wake-ups."""
        cfg = self.config
        interval = cfg.keyframe_interval_s
        # Ask early enough (PLI -> encoder -> network takes ~RTT + one frame) that the gap stays close to the
        # interval; repeat at most every half interval if the keyframe does not come.
        lead = max(interval - 0.2, interval * 0.85)
        retry = max(interval / 2, 0.5)
        try:
            while not self._closed:
                now = time.time()
                deadlines: list[float] = []
                last_kf: float | None = None
                rec = self.tracks.get("record")
                if rec is not None:
                    last_kf = rec.tap.stats.last_keyframe_t
                    if last_kf is None:
                        # Senders start with a keyframe: only ask if none came within 0.5 s of the first frame.
                        first = rec.tap.first_frame_t
                        due_at = None if first is None else first + 0.5
                    else:
                        due_at = last_kf + lead
                    if due_at is not None:
                        due_at = max(due_at, self._last_pli + retry)
                        if now >= due_at:
                            with contextlib.suppress(Exception):
                                await self.request_keyframe()
                            due_at = now + retry
                        # A keyframe that arrives meanwhile moves due_at later: waking then just re-checks.
                        deadlines.append(due_at)
                    if cfg.pin_remb:
                        if now - self._last_remb >= cfg.remb_interval_s:
                            with contextlib.suppress(Exception):
                                if await self._send_remb():
                                    self._last_remb = now
                        deadlines.append(max(self._last_remb + cfg.remb_interval_s, now + 0.1))
                if last_kf is None:
                    # No record track or no keyframe yet: nothing is due, look again shortly.
                    deadlines.append(now + min(interval / 4, 0.5))
                await asyncio.sleep(max(0.02, min(deadlines) - time.time()))
        except asyncio.CancelledError:
            pass

    # -- stats and lifecycle -------------------------------------------------------------------------------

    @staticmethod
    def _rtp_counts(receiver: Any) -> dict[str, int | None]:
        """RTP packets received / lost (from sequence numbers) on the media SSRCs, from aiortc's per-SSRC
        statistics (private, read defensively: None when aiortc moved it)."""
        streams = getattr(receiver, RECEIVER_REMOTE_STREAMS, None)
        if not isinstance(streams, dict):
            return {"rtp_packets": None, "rtp_lost": None}
        rtx = getattr(receiver, RECEIVER_RTX_SSRC, {}) or {}
        received = lost = 0
        try:
            for ssrc, st in list(streams.items()):
                if ssrc in rtx:
                    continue
                received += st.packets_received
                lost += st.packets_lost
        except Exception:  # noqa: BLE001 - stats only
            return {"rtp_packets": None, "rtp_lost": None}
        return {"rtp_packets": received, "rtp_lost": lost}

    def _direct_stats(self) -> dict[str, int] | None:
        """Counters of the direct SRTP dispatch (None when it is off: kill switch or the naive baseline)."""
        if not self._direct:
            return None
        total: dict[str, int] = {}
        for d in self._direct:
            for k, v in d.stats().items():
                total[k] = total.get(k, 0) + v
        return total

    def stats(self) -> dict[str, Any]:
        tracks = {}
        for key, entry in self.tracks.items():
            d = entry.tap.stats.as_dict()
            d.update(
                role=entry.role,
                kind=entry.kind,
                mid=entry.mid,
                codec=entry.tap.codec,
                width=entry.tap.width,
                height=entry.tap.height,
                decoded_delivered=entry.delivered + entry.tap.decoded,
                decoded_dropped=entry.dropped,
                **self._rtp_counts(entry.receiver),
            )
            tracks[key] = d
        return {
            "camera_id": self.camera_id,
            "state": self.state,
            "plis_sent": self.plis_sent,
            "rembs_sent": self.rembs_sent,
            "remb_kbps": self.config.bitrate_kbps if self.config.pin_remb else None,
            "decode_record": self.config.decode_record,
            "status_messages": self.status_messages,
            "received_reports": self.received_reports,
            "srtp_direct": self._direct_stats(),
            "tracks": tracks,
        }

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        current = asyncio.current_task()
        for task in self._tasks:
            if task is not current:
                task.cancel()
        if self.pc is not None:
            with contextlib.suppress(Exception):
                await self.pc.close()
        for task in self._tasks:
            if task is not current:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        self._tasks.clear()
        if self.state != "closed":
            self.state = "closed"
            if self.on_state is not None:
                with contextlib.suppress(Exception):
                    self.on_state("closed")
