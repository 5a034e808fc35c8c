"""File and RTSP cameras through PyAV: the same ``CameraSink`` contract as a phone.

* The record stream (H.264 or VP8) is demuxed, never decoded: each packet becomes an ``EncodedFrame``.
  H.264 from MP4/MKV (``avcC``, length-prefixed NAL units) is converted to Annex B by hand from the
  extradata, and every IDR gets the SPS/PPS prepended (MP4 keeps them out of band only), so a clip can start
  on any keyframe.
* A separate decode of the same video packets feeds ``on_detect`` at ``detect_fps``, downscaled to
  ``detect_width`` (grey). For RTSP an optional ``detect_url`` sub-stream is decoded instead.
* Audio: Opus packets pass through as ``EncodedFrame`` *and* are decoded for ``on_audio``; other codecs
  (AAC, ...) are only decoded for the audio trigger (clips from such sources have no audio track).

``realtime=True`` paces a file by its timestamps (the demo camera) and uses the wall clock as ``t``; live
sources (``rtsp://`` etc.) are never paced, ``t`` is arrival time. ``realtime=False`` runs as fast as the sink
takes it with ``t`` = stream time (replays and tests). PyAV blocks, so demuxing runs in a thread; results are
handed to the event loop with ``call_soon_threadsafe`` behind a semaphore, so a fast file cannot outrun the
loop (at most ``MAX_IN_FLIGHT`` items waiting).

Limitation: ``EncodedFrame`` has no DTS, so H.264 with B-frames (pts != dts) cannot be remuxed correctly;
a warning is logged. Phones (WebRTC) and most cameras' baseline/main streams have none.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from hub.ingest.sink import CameraSink
from hub.ingest.tap import TrackStats, audio_frame_to_mono
from hub.media.frames import AUDIO_TIME_BASE, VIDEO_TIME_BASE, AudioChunk, DetectFrame, EncodedFrame
from hub.media.h264 import ParameterSetCache, avcc_to_annexb, h264_is_keyframe, split_annexb, vp8_keyframe_size

logger = logging.getLogger(__name__)

MAX_IN_FLIGHT = 256
LIVE_PREFIXES = ("rtsp://", "rtsps://", "rtmp://", "http://", "https://", "udp://", "tcp://", "srt://")


class FileCameraError(RuntimeError):
    """The source cannot be used (no video, unsupported record codec, cannot open)."""


def _is_live(source: str) -> bool:
    return source.lower().startswith(LIVE_PREFIXES)


def parse_avcc(extradata: bytes) -> tuple[int, list[bytes], list[bytes]]:
    """(NAL length size, SPS list, PPS list) from an ``avcC`` box payload (ISO 14496-15 5.2.4.1)."""
    if len(extradata) < 7 or extradata[0] != 1:
        raise FileCameraError("H.264 extradata is not avcC")
    length_size = (extradata[4] & 3) + 1
    pos = 5
    sps: list[bytes] = []
    pps: list[bytes] = []
    n = extradata[pos] & 0x1F
    pos += 1
    for _ in range(n):
        size = int.from_bytes(extradata[pos : pos + 2], "big")
        sps.append(extradata[pos + 2 : pos + 2 + size])
        pos += 2 + size
    n = extradata[pos]
    pos += 1
    for _ in range(n):
        size = int.from_bytes(extradata[pos : pos + 2], "big")
        pps.append(extradata[pos + 2 : pos + 2 + size])
        pos += 2 + size
    return length_size, sps, pps


class _H264Converter:
    """MP4 (avcC) or Annex B H.264 packets -> Annex B access units with SPS/PPS on every IDR."""

    def __init__(self, extradata: bytes | None) -> None:
        self.cache = ParameterSetCache()
        self.length_size: int | None = None
        seed: list[bytes] = []
        if extradata:
            if extradata[0] == 1:
                self.length_size, sps, pps = parse_avcc(bytes(extradata))
                seed = sps[:1] + pps[:1]
            else:  # Annex B extradata (MPEG-TS, RTSP sprop-parameter-sets)
                seed = [n for n in split_annexb(bytes(extradata)) if n and (n[0] & 0x1F) in (7, 8)]
        if seed:
            # feed the parameter sets through the cache (it parses the SPS for the resolution)
            self.cache.fix(b"".join(b"\x00\x00\x00\x01" + n for n in seed))

    def convert(self, data: bytes) -> tuple[bytes, bool]:
        if self.length_size is not None:
            data = avcc_to_annexb(data, self.length_size)
        data = self.cache.fix(data)
        key = h264_is_keyframe(data) and self.cache.sps is not None and self.cache.pps is not None
        return data, key


class FileCamera:
    """A camera backed by a video file or an RTSP URL.

    ``await run()`` streams until the end of the file (or forever with ``loop=True`` / live sources) or until
    ``await stop()``. Errors opening or reading the source raise :class:`FileCameraError` from ``run()``.
    """

    def __init__(
        self,
        source: str,
        sink: CameraSink,
        realtime: bool = True,
        detect_fps: float = 5,
        detect_width: int = 320,
        *,
        loop: bool = False,
        detect_url: str | None = None,
        options: dict[str, str] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.source = str(source)
        self.sink = sink
        self.realtime = realtime
        self.detect_fps = float(detect_fps)
        self.detect_width = int(detect_width)
        self.loop = loop
        self.detect_url = detect_url
        self.live = _is_live(self.source)
        self.options = dict(options or {})
        if self.live:
            self.options.setdefault("rtsp_transport", "tcp")
            self.options.setdefault("timeout", "5000000")  # µs: a dead camera must not block stop() forever
        self.clock = clock
        self.video_stats = TrackStats()
        self.audio_stats = TrackStats()
        self.detect_delivered = 0
        self.audio_chunks = 0
        self.loops = 0
        self.codec: str | None = None
        self.width: int | None = None
        self.height: int | None = None
        self._stop = threading.Event()
        self._stopped = False  # stop() was called: run() must not start again
        self._slots = threading.Semaphore(MAX_IN_FLIGHT)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._threads: list[threading.Thread] = []
        self._info_sent: tuple | None = None
        self._wall0: float | None = None
        self._warned_bframes = False

    # -- public ----------------------------------------------------------------------------------------

    async def run(self) -> None:
        """Stream until the file ends (never with ``loop=True``; live sources reconnect by themselves) or
        until :meth:`stop`. May be called again after it returned or raised (e.g. by a retry loop)."""
        if any(t.is_alive() for t in self._threads):
            raise RuntimeError("FileCamera.run() is already running")
        if self._stopped:
            return
        self._threads = []
        self._loop = asyncio.get_running_loop()
        self._stop.clear()
        futures = [self._start_thread(self._main_worker, "file-camera")]
        if self.detect_url:
            futures.append(self._start_thread(self._detect_worker, "file-camera-detect"))
        try:
            # the main source decides when the camera ends; the detect sub-stream follows it
            await futures[0]
        finally:
            self._stop.set()
            for f in futures[1:]:
                try:
                    await f
                except Exception:
                    logger.exception("file camera %s: detect stream failed", self.source)
            for t in self._threads:  # they are finishing: reported their result already
                while t.is_alive():  # noqa: ASYNC110 - a thread's end has no awaitable
                    await asyncio.sleep(0.005)

    async def stop(self) -> None:
        self._stopped = True
        self._stop.set()
        for t in self._threads:
            while t.is_alive():  # noqa: ASYNC110 - a thread's end has no awaitable
                await asyncio.sleep(0.02)

    def stats(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "codec": self.codec,
            "width": self.width,
            "height": self.height,
            "loops": self.loops,
            "video": self.video_stats.as_dict(),
            "audio": self.audio_stats.as_dict(),
            "detect_delivered": self.detect_delivered,
            "audio_chunks": self.audio_chunks,
        }

    # -- threading plumbing ----------------------------------------------------------------------------

    def _start_thread(self, target: Callable[[], None], name: str) -> asyncio.Future:
        loop = self._loop
        assert loop is not None
        fut: asyncio.Future = loop.create_future()

        def body() -> None:
            try:
                target()
            except BaseException as exc:  # noqa: BLE001 - handed to run()
                err = exc

                def fail() -> None:
                    if not fut.done():
                        fut.set_exception(err)

                loop.call_soon_threadsafe(fail)
            else:
                def done() -> None:
                    if not fut.done():
                        fut.set_result(None)

                loop.call_soon_threadsafe(done)

        t = threading.Thread(target=body, name=name, daemon=True)
        self._threads.append(t)
        t.start()
        return fut

    def _deliver(self, fn: Callable[[Any], None], item: Any) -> bool:
        """Hand one item to the sink on the event loop; blocks while MAX_IN_FLIGHT are pending."""
        while not self._slots.acquire(timeout=0.2):
            if self._stop.is_set():
                return False
        loop = self._loop
        assert loop is not None

        def call() -> None:
            try:
                fn(item)
            except Exception:
                logger.exception("file camera %s: sink callback failed", self.source)
            finally:
                self._slots.release()

        try:
            loop.call_soon_threadsafe(call)
        except RuntimeError:  # loop closed
            self._stop.set()
            return False
        return True

    def _open(self, url: str) -> Any:
        import av

        try:
            return av.open(url, options=self.options or None, timeout=10 if _is_live(url) else None)
        except (av.FFmpegError, OSError) as exc:
            raise FileCameraError(f"cannot open {url}: {exc}") from exc

    def _sleep_until(self, target_wall: float) -> None:
        delay = target_wall - time.time()
        if delay > 0:
            self._stop.wait(delay)

    # -- workers -----------------------------------------------------------------------------------------

    def _main_worker(self) -> None:
        offset = 0.0  # stream seconds added per loop / reconnect so pts and t keep increasing
        self._wall0 = None
        backoff = 1.0
        while not self._stop.is_set():
            if self.live:
                # A live stream ends or fails when the camera reboots or the network drops: reconnect with
                # backoff until stop(); what was buffered before cannot be continued.
                started = time.time()
                try:
                    end = self._play_once(offset)
                except Exception as exc:  # noqa: BLE001
                    logger.warning("camera source %s failed: %s; reconnecting in %.0f s", self.source, exc, backoff)
                    end = offset
                else:
                    logger.info("camera source %s ended; reconnecting", self.source)
                if self._stop.is_set():
                    break
                self._deliver(lambda _: self.sink.on_broken(), None)
                backoff = 1.0 if time.time() - started > 30 else min(backoff * 2, 30.0)
                ended = time.time()
                self._stop.wait(backoff)
                offset = max(offset, end) + (time.time() - ended)
                continue
            end = self._play_once(offset)
            if not self.loop or self._stop.is_set():
                break
            if end <= offset:  # empty file: do not spin
                raise FileCameraError(f"{self.source}: no packets")
            offset = end
            self.loops += 1

    def _play_once(self, offset: float) -> float:
        """Demux the source once. Returns the stream time (with offset) where this pass ended."""
        import av

        container = self._open(self.source)
        try:
            vstreams = [s for s in container.streams if s.type == "video"]
            if not vstreams:
                raise FileCameraError(f"{self.source}: no video stream")
            video = vstreams[0]
            astreams = [s for s in container.streams if s.type == "audio"]
            audio = astreams[0] if astreams else None

            vname = video.codec_context.name
            if vname not in ("h264", "vp8"):
                raise FileCameraError(
                    f"{self.source}: record codec {vname!r} cannot be stored without re-encoding (h264 or vp8 only)"
                )
            self.codec = vname
            h264 = _H264Converter(video.codec_context.extradata) if vname == "h264" else None

            vdec = None
            if not self.detect_url:
                vdec = av.CodecContext.create(vname, "r")
                if video.codec_context.extradata:
                    vdec.extradata = video.codec_context.extradata
                vdec.thread_type = "AUTO"
            adec = None
            a_is_opus = False
            if audio is not None:
                a_is_opus = audio.codec_context.name == "opus"
                adec = audio.codec_context  # the demuxer's context, set up with the stream's parameters

            starts = [
                float(s.start_time * s.time_base)
                for s in ([video] + ([audio] if audio is not None else []))
                if s.start_time is not None and s.time_base is not None
            ]
            t0: float | None = min(starts) if starts else None  # else: the first packet's time (live streams)
            fps = float(video.average_rate or video.guessed_rate or 30)
            vdur_default = 1.0 / fps if fps > 0 else 1 / 30
            end = offset
            next_detect = offset
            period = 1.0 / self.detect_fps if self.detect_fps > 0 else None

            streams = [video] + ([audio] if audio is not None else [])
            for packet in container.demux(streams):
                if self._stop.is_set():
                    break
                if packet.size == 0 or (packet.pts is None and packet.dts is None):
                    continue
                tb = packet.time_base
                ts = packet.pts if packet.pts is not None else packet.dts
                if t0 is None:
                    t0 = float(ts * tb)
                st = float(ts * tb) - t0 + offset  # stream seconds
                arrival = time.time()
                if self.live:
                    t = arrival
                elif self.realtime:
                    if self._wall0 is None:
                        self._wall0 = arrival - st  # wall clock of stream time 0
                    self._sleep_until(self._wall0 + st)
                    if self._stop.is_set():
                        break
                    t = self._wall0 + st
                else:
                    t = st
                dur = float(packet.duration * tb) if packet.duration else None

                if packet.stream is video:
                    end = max(end, st + (dur or vdur_default))
                    self._on_video_packet(packet, h264, st, t)
                    if vdec is not None and period is not None:
                        try:
                            frames = vdec.decode(packet)
                        except av.FFmpegError as exc:
                            logger.debug("detect decode failed: %s", exc)
                            frames = []
                        for frame in frames:
                            fst = (
                                float(frame.pts * frame.time_base) - t0 + offset
                                if frame.pts is not None and frame.time_base is not None
                                else st
                            )
                            if fst + 1e-6 < next_detect:
                                continue
                            next_detect = next_detect + period if fst - next_detect < period else fst + period
                            ft = t if (self.live or self.realtime) else fst
                            self._emit_detect(frame, ft)
                else:
                    end = max(end, st + (dur or 0.02))
                    if a_is_opus:
                        pts48 = round(st * 48000)
                        data = bytes(packet)
                        self.audio_stats.add(t, len(data), False)
                        frame = EncodedFrame(
                            kind="audio", codec="opus", data=data, pts=pts48, time_base=AUDIO_TIME_BASE, t=t
                        )
                        self._deliver(self.sink.on_frame, frame)
                    if adec is not None:
                        try:
                            aframes = adec.decode(packet)
                        except av.FFmpegError as exc:
                            logger.debug("audio decode failed: %s", exc)
                            aframes = []
                        for af in aframes:
                            samples = audio_frame_to_mono(af)
                            self.audio_chunks += 1
                            self._deliver(self.sink.on_audio,
                                          AudioChunk(samples=samples, sample_rate=af.sample_rate, t=t))
            return end
        finally:
            container.close()

    def _on_video_packet(self, packet: Any, h264: _H264Converter | None, st: float, t: float) -> None:
        data = bytes(packet)
        if h264 is not None:
            data, key = h264.convert(data)
            res = h264.cache.resolution
            if (
                not self._warned_bframes
                and packet.pts is not None
                and packet.dts is not None
                and packet.pts != packet.dts
            ):
                self._warned_bframes = True
                logger.warning(
                    "file camera %s: H.264 with B-frames (pts != dts); clips may play out of order", self.source
                )
        else:
            key = bool(data) and (data[0] & 1) == 0
            res = vp8_keyframe_size(data) if key else None
        if res:
            self.width, self.height = res
        if self.width is None:
            cc = packet.stream.codec_context
            if cc.width and cc.height:
                self.width, self.height = cc.width, cc.height
        info = (self.codec, self.width, self.height)
        if info != self._info_sent and self.width and self.height:
            self._info_sent = info
            self._deliver(self.sink.on_stream_info, {"codec": self.codec, "width": self.width, "height": self.height})
        self.video_stats.add(t, len(data), key)
        frame = EncodedFrame(
            kind="video",
            codec=self.codec,  # type: ignore[arg-type]
            data=data,
            pts=round(st * 90000),
            time_base=VIDEO_TIME_BASE,
            t=t,
            keyframe=key,
            width=self.width,
            height=self.height,
        )
        self._deliver(self.sink.on_frame, frame)

    def _emit_detect(self, frame: Any, t: float) -> None:
        w, h = frame.width, frame.height
        if w > self.detect_width:
            dw = self.detect_width
            dh = max(2, round(h * dw / w / 2) * 2)
            small = frame.reformat(width=dw, height=dh, format="gray", interpolation="AREA")
        else:
            small = frame.reformat(format="gray")
        y = small.to_ndarray()
        self.detect_delivered += 1
        self._deliver(self.sink.on_detect, DetectFrame(y=y, t=t))

    def _detect_worker(self) -> None:
        """Decode the RTSP sub-stream (``detect_url``) for ``on_detect`` only."""
        import av

        assert self.detect_url
        period = 1.0 / self.detect_fps if self.detect_fps > 0 else 0.2
        next_t = 0.0
        while not self._stop.is_set():
            container = self._open(self.detect_url)
            try:
                video = next((s for s in container.streams if s.type == "video"), None)
                if video is None:
                    raise FileCameraError(f"{self.detect_url}: no video stream")
                video.thread_type = "AUTO"
                for packet in container.demux(video):
                    if self._stop.is_set():
                        break
                    try:
                        frames = packet.decode()
                    except av.FFmpegError:
                        continue
                    for frame in frames:
                        now = time.time()
                        if now + 1e-3 < next_t:
                            continue
                        next_t = now + period
                        self._emit_detect(frame, now)
            finally:
                container.close()
            if not self._stop.is_set():
                self._stop.wait(1.0)  # sub-stream dropped: retry
