"""Live view: relay a camera's encoded record track to a logged-in browser over WebRTC, never decoding it.

One :class:`LiveRelay` per viewer: an aiortc ``RTCPeerConnection`` that only sends. Its video track hands aiortc
``av.Packet`` objects instead of frames, which aiortc's sender packetizes as they are (``Encoder.pack``): no
decoder and no encoder is ever opened, so a viewer costs a deque append per camera frame and the RTP
packetization (SRTP included) of the bytes the camera already sent.

The relay starts from the newest keyframe in the camera's ring buffer (the GOP in progress, sent at once with
compressed timestamps so the viewer shows the current picture at once instead of replaying the last seconds),
then follows the buffer's listener. Its queue is bounded in frames and bytes; a viewer that falls behind loses
the queue and resumes at the next keyframe (and the camera is asked for one). The camera is also asked for a
keyframe when a viewer joins and when the viewer's browser sends a PLI/FIR.

Audio is not relayed: the live view plays muted, and aiortc's Opus "encoder" opens a libopus context even to
pack pre-encoded packets.

:class:`LiveRelays` owns every relay of the hub: limits, closing a relay when its viewer leaves (connection
failed/closed, never connected, or the page said so), when its camera goes away (revoked, pipeline replaced,
codec changed), when its session logs out, and all of them on shutdown (``close_all``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections import deque
from collections.abc import Mapping
from fractions import Fraction
from typing import TYPE_CHECKING, Any, Protocol

import av
from aiortc import MediaStreamTrack, RTCConfiguration, RTCPeerConnection, RTCRtpSender, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError

from hub.errors import ErrorKind, HubError
from hub.media.frames import EncodedFrame

if TYPE_CHECKING:
    from hub.pipeline import CameraPipeline

log = logging.getLogger(__name__)

VIDEO_TIME_BASE = Fraction(1, 90000)
MAX_SDP_BYTES = 32 * 1024
QUEUE_MAX_FRAMES = 120  # ~4 s at 30 fps: the sender reads as fast as it can send, so this only fills on stalls
QUEUE_MAX_BYTES = 4 * 1024 * 1024
BACKLOG_STEP_S = 0.001  # the buffered GOP goes out at once, 1 ms apart in RTP time
CONNECT_TIMEOUT_S = 20.0  # a viewer that never completes ICE/DTLS is dropped
WATCH_EVERY_S = 1.0
VIEWER_KEYFRAME_EVERY_S = 1.0  # at most this often per relay on PLIs/FIRs from the viewer
CAMERA_KEYFRAME_EVERY_S = 0.5  # at most this often per camera, all relays together
MAX_RELAYS = 16
MAX_RELAYS_PER_CAMERA = 8

_MIME = {"h264": "video/h264", "vp8": "video/vp8"}


class LiveError(HubError):
    """A live view that cannot be opened; ``kind`` says why (CONFLICT: no video yet, UNAVAILABLE: too many
    viewers or shutting down, INVALID / TOO_LARGE / UNSUPPORTED: the viewer's offer)."""


def camera_video_codec(pipeline: CameraPipeline) -> str | None:
    """The codec of the video buffered for the camera (``h264``, ``vp8``, ``hevc``), or None while it has no
    keyframe."""
    buf = pipeline.buffer
    newest = buf.newest_t
    if newest is None or not buf.keyframe_times():
        return None
    for f in buf.frames_since(newest):
        if f.kind == "video":
            return f.codec
    return None


class RelayTrack(MediaStreamTrack):
    """A video track whose ``recv()`` returns the camera's encoded access units as ``av.Packet``."""

    kind = "video"

    def __init__(self, relay: LiveRelay) -> None:
        super().__init__()
        self._relay = relay
        self.packets = 0  # av.Packet objects handed to aiortc
        self.others = 0  # anything else (must stay 0: a frame here would make aiortc encode)

    async def recv(self) -> av.Packet:
        pkt = await self._relay._next_packet()
        if pkt is None:
            self.stop()
            raise MediaStreamError
        self.packets += 1
        return pkt


class LiveRelay:
    def __init__(self, manager: LiveRelays, camera_id: str, pipeline: CameraPipeline, codec: str,
                 session: str) -> None:
        self.id = secrets.token_urlsafe(9)
        self.manager = manager
        self.camera_id = camera_id
        self.pipeline = pipeline
        self.codec = codec
        self.session = session
        self.created = time.monotonic()
        self.connected_at: float | None = None
        self.pc: RTCPeerConnection | None = None
        self.sender: RTCRtpSender | None = None
        self.track = RelayTrack(self)
        self.closed = False
        self.close_reason: str | None = None
        self._queue: deque[tuple[EncodedFrame, int]] = deque()
        self._queue_bytes = 0
        self._waiter: asyncio.Future[None] | None = None
        self._unsubscribe: Any = None
        self._need_key = True
        self._t0: float | None = None
        self._last_pts = -1
        self._last_viewer_kf = 0.0
        # counters
        self.frames_in = 0
        self.frames_sent = 0
        self.keyframes_sent = 0
        self.bytes_sent = 0
        self.dropped = 0  # frames dropped: the queue overflowed, or waiting for a keyframe
        self.overflows = 0
        self.backlog_frames = 0
        self.viewer_keyframe_requests = 0

    # -- signaling -------------------------------------------------------------------------------------

    async def accept(self, sdp: str) -> dict[str, str]:
        self.pc = pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        pc.on("connectionstatechange", self._on_state)
        tr = pc.addTransceiver(self.track, direction="sendonly")
        mime = _MIME[self.codec]
        tr.setCodecPreferences([c for c in RTCRtpSender.getCapabilities("video").codecs
                                if c.mimeType.lower() in (mime, "video/rtx")])
        self.sender = tr.sender
        # A PLI/FIR from the viewer would only set aiortc's force-keyframe flag, which is read by its encoder:
        # with nothing encoded here, pass the request on to the camera instead.
        self.sender._send_keyframe = self._viewer_wants_keyframe  # type: ignore[method-assign]
        try:
            await pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="offer"))
            if tr.mid is None or tr.sender.track is not self.track:
                raise LiveError(ErrorKind.INVALID, "the offer has no video m-line to receive the live view")
            answer = await pc.createAnswer()
            await pc.setLocalDescription(answer)
            if tr.currentDirection not in ("sendonly", "sendrecv"):
                raise LiveError(ErrorKind.INVALID, "the offer's video m-line must receive (recvonly)")
        except LiveError:
            raise
        except Exception as exc:  # noqa: BLE001 - aiortc raises ValueError, OperationError, InvalidStateError...
            msg = str(exc)
            if "send parameters" in msg or "codec" in msg.lower():
                raise LiveError(ErrorKind.UNSUPPORTED, f"the browser cannot receive {self.codec.upper()} video",
                                "the live view falls back to snapshots") from None
            raise LiveError(ErrorKind.INVALID, f"cannot accept offer: {msg or type(exc).__name__}") from None
        if f"{self.codec.upper()}/90000" not in pc.localDescription.sdp.upper():
            raise LiveError(ErrorKind.UNSUPPORTED, f"the browser cannot receive {self.codec.upper()} video",
                            "the live view falls back to snapshots")
        self._start_relaying()
        return {"type": "answer", "sdp": pc.localDescription.sdp}

    def _start_relaying(self) -> None:
        # Backlog and subscription in one event-loop step: every frame exactly once, none missed.
        buf = self.pipeline.buffer
        newest = buf.newest_t
        backlog = [f for f in buf.frames_since(newest) if f.kind == "video"] if newest is not None else []
        start = next((i for i, f in enumerate(backlog) if f.keyframe), len(backlog))
        backlog = backlog[start:]
        now = time.monotonic()
        n = len(backlog)
        for i, f in enumerate(backlog):
            self._push(f, now - (n - 1 - i) * BACKLOG_STEP_S)
        self.backlog_frames = n
        self._unsubscribe = buf.subscribe(self._on_frame)

    # -- frames in ---------------------------------------------------------------------------------------

    def _on_frame(self, frame: EncodedFrame) -> None:
        if frame.kind != "video" or self.closed:
            return
        if frame.codec != self.codec:
            # The camera reconnected with another codec: this connection cannot carry it. The page retries.
            asyncio.get_running_loop().call_soon(self.manager.close_soon, self, "camera changed codec")
            return
        self._push(frame, time.monotonic())

    def _push(self, frame: EncodedFrame, arrival: float) -> None:
        self.frames_in += 1
        if self._need_key and not frame.keyframe:
            self.dropped += 1
            return
        size = len(frame.data)
        if len(self._queue) >= QUEUE_MAX_FRAMES or self._queue_bytes + size > QUEUE_MAX_BYTES:
            # The viewer fell behind: drop what is queued and resume at a keyframe (this one, or the next).
            self.overflows += 1
            self.dropped += len(self._queue)
            self._queue.clear()
            self._queue_bytes = 0
            if not frame.keyframe:
                self._need_key = True
                self.dropped += 1
                self.manager.request_keyframe(self.camera_id)
                return
        if frame.keyframe:
            self._need_key = False
        if self._t0 is None:
            self._t0 = arrival
        pts = max(self._last_pts + 1, round((arrival - self._t0) * 90000))
        self._last_pts = pts
        self._queue.append((frame, pts))
        self._queue_bytes += size
        w = self._waiter
        if w is not None and not w.done():
            w.set_result(None)

    # -- frames out --------------------------------------------------------------------------------------

    async def _next_packet(self) -> av.Packet | None:
        while not self.closed:
            if self._queue:
                frame, pts = self._queue.popleft()
                self._queue_bytes -= len(frame.data)
                pkt = av.Packet(frame.data)
                pkt.pts = pkt.dts = pts
                pkt.time_base = VIDEO_TIME_BASE
                self.frames_sent += 1
                self.bytes_sent += len(frame.data)
                if frame.keyframe:
                    self.keyframes_sent += 1
                return pkt
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        return None

    def _viewer_wants_keyframe(self) -> None:
        now = time.monotonic()
        if now - self._last_viewer_kf >= VIEWER_KEYFRAME_EVERY_S:
            self._last_viewer_kf = now
            self.viewer_keyframe_requests += 1
            self.manager.request_keyframe(self.camera_id)

    # -- lifecycle ---------------------------------------------------------------------------------------

    def _on_state(self) -> None:
        state = self.pc.connectionState if self.pc else "closed"
        if state == "connected" and self.connected_at is None:
            self.connected_at = time.monotonic()
            log.info("live view connected", extra={"camera_id": self.camera_id, "relay": self.id})
        elif state in ("failed", "closed"):
            self.manager.close_soon(self, f"connection {state}")

    @property
    def state(self) -> str:
        return "closed" if self.closed else (self.pc.connectionState if self.pc else "new")

    async def close(self, reason: str = "closed") -> None:
        if self.closed:
            return
        self.closed = True
        self.close_reason = reason
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        self._queue.clear()
        self._queue_bytes = 0
        w = self._waiter
        if w is not None and not w.done():
            w.set_result(None)
        self.manager._forget(self)
        if self.pc is not None:
            with contextlib.suppress(Exception):
                await self.pc.close()
        log.info("live view closed", extra={"camera_id": self.camera_id, "relay": self.id, "reason": reason,
                                            "frames_sent": self.frames_sent, "dropped": self.dropped})

    def encoder_opened(self) -> bool:
        """Whether aiortc opened an encoder context for this sender (it must not: packets are only packed)."""
        enc = getattr(self.sender, "_RTCRtpSender__encoder", None) if self.sender is not None else None
        return getattr(enc, "codec", None) is not None

    async def stats(self) -> dict[str, Any]:
        rtp_packets = rtp_bytes = None
        if self.sender is not None and not self.closed:
            with contextlib.suppress(Exception):
                for s in (await self.sender.getStats()).values():
                    if getattr(s, "type", None) == "outbound-rtp":
                        rtp_packets, rtp_bytes = s.packetsSent, s.bytesSent
        return {
            "id": self.id, "camera_id": self.camera_id, "codec": self.codec, "state": self.state,
            "age_s": round(time.monotonic() - self.created, 1),
            "frames_in": self.frames_in, "frames_sent": self.frames_sent, "keyframes_sent": self.keyframes_sent,
            "bytes_sent": self.bytes_sent, "dropped": self.dropped, "overflows": self.overflows,
            "queued": len(self._queue), "queued_bytes": self._queue_bytes, "backlog_frames": self.backlog_frames,
            "viewer_keyframe_requests": self.viewer_keyframe_requests,
            "rtp_packets_sent": rtp_packets, "rtp_bytes_sent": rtp_bytes,
            "packets_relayed": self.track.packets, "frames_encoded": self.track.others,
            "encoder_opened": self.encoder_opened(),
        }


class LiveCameras(Protocol):
    """What the live view needs of the camera manager: the pipelines to relay, the peers to ask for keyframes,
    and whether the hub is shutting down."""

    @property
    def pipelines(self) -> Mapping[str, CameraPipeline]: ...

    @property
    def peers(self) -> Mapping[str, Any]: ...

    @property
    def closing(self) -> bool: ...


class LiveRelays:
    """Every live-view relay of the hub."""

    def __init__(self, cameras: LiveCameras) -> None:
        self.cameras = cameras
        self.relays: dict[str, LiveRelay] = {}
        self._last_kf: dict[str, float] = {}
        self._watcher: asyncio.Task[None] | None = None
        self._closing: set[asyncio.Task[None]] = set()
        self.closed = False

    # -- opening -----------------------------------------------------------------------------------------

    async def open(self, camera_id: str, offer: dict[str, Any], session: str = "") -> tuple[LiveRelay, dict[str, str]]:
        """Validate the viewer's offer, make the relay and return it with the SDP answer. ``LiveError`` on
        refusal: 409 (the camera has no video yet), 400/413 (bad offer), 415 (codec), 503 (too many viewers)."""
        if self.closed or self.cameras.closing:
            raise LiveError(ErrorKind.UNAVAILABLE, "the hub is shutting down")
        if offer.get("type", "offer") != "offer":
            raise LiveError(ErrorKind.INVALID, f"expected type 'offer', got {offer.get('type')!r}")
        sdp = offer.get("sdp")
        if not isinstance(sdp, str) or not sdp.strip():
            raise LiveError(ErrorKind.INVALID, "offer has no sdp")
        if len(sdp.encode()) > MAX_SDP_BYTES:
            raise LiveError(ErrorKind.TOO_LARGE, "sdp too large")
        pipe = self.cameras.pipelines.get(camera_id)
        codec = camera_video_codec(pipe) if pipe is not None else None
        if pipe is None or codec is None:
            raise LiveError(ErrorKind.CONFLICT, "the camera has sent no video yet",
                            "the live view shows snapshots until it does")
        if codec not in _MIME:
            # H.265 is recorded and snapshotted like H.264, but WebRTC here (aiortc) carries only H.264 and VP8,
            # and browsers decode H.265 over WebRTC only with hardware support: a picture a second instead.
            raise LiveError(ErrorKind.UNSUPPORTED, f"live video is not relayed for {codec.upper()} cameras",
                            "the live view shows a new picture every second; for live video set the camera's "
                            "stream (or its sub-stream) to H.264")
        self._make_room(camera_id, session)
        relay = LiveRelay(self, camera_id, pipe, codec, session)
        self.relays[relay.id] = relay
        try:
            answer = await relay.accept(sdp)
        except BaseException:
            await relay.close("offer refused")
            raise
        if relay.closed:  # the camera went away while the answer was made
            raise LiveError(ErrorKind.CONFLICT, "the camera went away")
        self.request_keyframe(camera_id)
        self._ensure_watcher()
        log.info("live view opened", extra={"camera_id": camera_id, "relay": relay.id, "codec": codec,
                                            "backlog_frames": relay.backlog_frames})
        return relay, answer

    def _make_room(self, camera_id: str, session: str) -> None:
        """Enforce the limits: a session's own oldest relay gives way (a reloaded page leaves its old one
        behind until ICE notices); otherwise refuse."""
        def full() -> bool:
            on_cam = sum(1 for r in self.relays.values() if r.camera_id == camera_id)
            return len(self.relays) >= MAX_RELAYS or on_cam >= MAX_RELAYS_PER_CAMERA
        while full():
            mine = sorted((r for r in self.relays.values() if r.session == session and not r.closed),
                          key=lambda r: r.created)
            if not mine:
                raise LiveError(ErrorKind.UNAVAILABLE, "too many live viewers", "close a live view elsewhere and retry")
            self.close_soon(mine[0], "replaced by a newer viewer")
            self._forget(mine[0])

    # -- keyframes ---------------------------------------------------------------------------------------

    def request_keyframe(self, camera_id: str) -> None:
        """Ask the camera (a phone peer) for a keyframe, at most every CAMERA_KEYFRAME_EVERY_S."""
        now = time.monotonic()
        if now - self._last_kf.get(camera_id, 0.0) < CAMERA_KEYFRAME_EVERY_S:
            return
        peer = self.cameras.peers.get(camera_id)
        if peer is None or not hasattr(peer, "request_keyframe"):
            return  # a file/RTSP camera: its keyframes come when they come
        self._last_kf[camera_id] = now

        async def ask() -> None:
            with contextlib.suppress(Exception):
                await peer.request_keyframe()

        self._spawn(ask())

    # -- closing -----------------------------------------------------------------------------------------

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    def _forget(self, relay: LiveRelay) -> None:
        if self.relays.get(relay.id) is relay:
            del self.relays[relay.id]

    def close_soon(self, relay: LiveRelay, reason: str) -> None:
        if not relay.closed:
            self._spawn(relay.close(reason))

    async def close(self, relay_id: str, session: str | None = None) -> bool:
        relay = self.relays.get(relay_id)
        if relay is None or (session is not None and relay.session != session):
            return False
        await relay.close("viewer left")
        return True

    async def close_camera(self, camera_id: str, reason: str = "camera removed") -> None:
        await asyncio.gather(*(r.close(reason) for r in list(self.relays.values()) if r.camera_id == camera_id))

    async def close_session(self, session: str) -> None:
        await asyncio.gather(*(r.close("logged out") for r in list(self.relays.values()) if r.session == session))

    async def close_all(self) -> None:
        """Close every relay (hub shutdown). Idempotent; no relay can be opened afterwards."""
        self.closed = True
        if self._watcher is not None:
            self._watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._watcher
            self._watcher = None
        await asyncio.gather(*(r.close("hub shutting down") for r in list(self.relays.values())),
                             return_exceptions=True)
        if self._closing:
            await asyncio.gather(*list(self._closing), return_exceptions=True)

    def _ensure_watcher(self) -> None:
        if self._watcher is None or self._watcher.done():
            self._watcher = asyncio.ensure_future(self._watch())

    async def _watch(self) -> None:
        """Closes relays whose camera went away (revoked or its pipeline replaced) or whose viewer never
        connected. Stops when no relay is left (the next open restarts it)."""
        while self.relays:
            await asyncio.sleep(WATCH_EVERY_S)  # periodic check: a camera's absence is not an event here
            now = time.monotonic()
            for relay in list(self.relays.values()):
                pipe = self.cameras.pipelines.get(relay.camera_id)
                if pipe is not relay.pipeline:
                    self.close_soon(relay, "camera removed")
                elif relay.connected_at is None and now - relay.created > CONNECT_TIMEOUT_S:
                    self.close_soon(relay, "viewer never connected")
                elif self.cameras.closing:
                    self.close_soon(relay, "hub shutting down")

    async def stats(self, camera_id: str | None = None) -> list[dict[str, Any]]:
        return [await r.stats() for r in list(self.relays.values()) if camera_id in (None, r.camera_id)]
