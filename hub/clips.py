"""Clips and snapshots from encoded frames: remux only, video is never re-encoded.

A clip is the pre-roll from the ring buffer followed by live frames (the post-roll), written as they come:

* MP4 (H.264 or H.265 + Opus or AAC) or WebM (VP8 + Opus), chosen by the destination's suffix. H.265 is written
  with the sample entry ``hvc1`` (what Apple players require) by the final remux. AAC (what most IP cameras send)
  is stored as it came, with the source's AudioSpecificConfig and a time base of its sample rate; WebM cannot
  carry AAC, so a VP8 camera's AAC is left out of its clips (logged once per clip).
* While recording, the data goes to ``.<name>.part`` next to the destination. For MP4 that is a fragmented MP4
  (one fragment per GOP, flushed to the OS as each completes), so a SIGKILL or a crash leaves a file that is
  playable up to the last complete fragment; ``recover_partial`` turns it into a clip at start-up. WebM is
  written cluster by cluster, which gives the same property.
* ``close()`` finishes the file: the fragmented MP4 is remuxed into a normal faststart MP4 (``moov`` first:
  plays progressively everywhere, Telegram included), WebM is simply renamed. The final name only ever holds a
  complete file, so the row in the database can be committed after ``close()`` returns.

Timestamps: each track's own decode-time deltas (``dts``, or ``pts`` where they are the same) drive its clip
timestamps (they are the encoder's clock, free of arrival jitter); the tracks are aligned once, at the clip start,
with the camera clock ``t`` they share. Video with B-frames keeps each frame's composition offset (pts - dts), so
it is written in decode order and shown in presentation order, with the source's durations; the first keyframe is
shown at 0 (its dts is negative: the MP4 muxer turns that into an edit list). A silence
of the whole camera longer than ``MAX_GAP_S`` (an outage during the post-roll) is taken out of the clip: what
follows it is placed right after what preceded it, on both tracks alike, so the clip holds no frozen stretch
where the camera sent nothing and picture and sound stay together.
"""

from __future__ import annotations

import errno
import logging
import os
import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any, Literal

import av
import av.error
import numpy as np

from hub.buffer import MAX_GAP_S
from hub.datadir import PRIVATE_FILE, create_private
from hub.media import h264
from hub.media.frames import AUDIO_TIME_BASE, VIDEO_TIME_BASE, EncodedFrame

log = logging.getLogger(__name__)

ClipFormat = Literal["mp4", "webm"]

# suffix -> (container format for PyAV, video codecs it carries). `mp4` rejects VP8 and `webm` rejects H.264/H.265.
_FORMATS: dict[str, tuple[ClipFormat, tuple[str, ...]]] = {
    ".mp4": ("mp4", ("h264", "hevc")),
    ".webm": ("webm", ("vp8",)),
}
# Sample entry for H.265 in MP4: `hvc1` (FFmpeg's default is `hev1`, which Safari and QuickTime do not play).
_HEVC_TAG = "hvc1"

# One fragment per keyframe, base-relative offsets (the form MSE and every modern demuxer expect), and the moov
# written with the first fragment. Not `empty_moov`: with an empty moov written before any sample, FFmpeg cannot
# record a track's start offset (edit list), so it starts every track at 0 and stretches the first sample
# instead; audio that began 200 ms after the video would then play 200 ms early in the clip. `delay_moov` costs
# nothing for crash safety: either way nothing is playable before the first fragment completes.
_FRAG_MOVFLAGS = "frag_keyframe+delay_moov+default_base_moof"

_VIDEO_TB = VIDEO_TIME_BASE
_AUDIO_TB = AUDIO_TIME_BASE
# If a track's pts delta and its camera-clock delta disagree by more than this, the pts jumped (the source
# restarted); trust the camera clock for that step. Generous on purpose: a stalled jitter buffer releasing a
# burst legitimately makes arrival times disagree with pts by a second or two.
_MAX_CLOCK_DISAGREEMENT_S = 5.0
# A pts counter of 32 bits (RTP) wraps after ~13 h at 90 kHz: deltas below this are wraps, not rewinds.
_WRAP = 1 << 32
# Across a silence taken out of a clip (MAX_GAP_S), the first frame after it follows the last one before it by
# about one video frame interval; bounded so a slow or unknown frame rate never leaves a visible hold.
_GAP_STEP_MAX_S = 0.1
# Wait at most this long (camera clock) after the first keyframe for the first audio packet before the file is
# opened without knowing the Opus channel count; the streams of a container are fixed once its header is out.
_AUDIO_WAIT_S = 1.0
# What the MP4 track header is set up from before the source's AudioSpecificConfig replaces the encoder's: the
# MPEG-4 sampling frequency table (ISO 14496-3 table 1.18) and FFmpeg layouts by channel count.
_AAC_RATES = frozenset((96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000, 7350))
_AAC_LAYOUTS = {1: "mono", 2: "stereo", 3: "3.0", 4: "4.0", 5: "5.0", 6: "5.1", 7: "6.1", 8: "7.1"}


class ClipError(Exception):
    """A clip or snapshot could not be written or read; ``path`` names the file concerned."""

    def __init__(self, path: str | os.PathLike[str], message: str) -> None:
        self.path = Path(path)
        super().__init__(f"{self.path}: {message}")


@dataclass(frozen=True, slots=True)
class ClipInfo:
    path: Path
    size: int
    codec: str
    duration_s: float
    video_frames: int
    audio_frames: int
    width: int
    height: int
    start_t: float | None  # camera clock of the first video frame; None for a recovered file


@dataclass(frozen=True, slots=True)
class SnapshotInfo:
    jpeg_path: Path
    thumb_path: Path
    t: float  # camera clock of the frame shown
    width: int
    height: int


def part_path_for(path: str | os.PathLike[str]) -> Path:
    """Where a clip is written while it records: hidden, same folder (so the final rename is atomic)."""
    p = Path(path)
    return p.with_name(f".{p.name}.part")


def tmp_path_for(path: Path) -> Path:
    return path.with_name(f".{path.name}.tmp")


def final_path_for(part_path: str | os.PathLike[str]) -> Path:
    """Inverse of ``part_path_for`` (``.x.mp4.part`` -> ``x.mp4``); other names just lose ``.part``.

    Raises ClipError for a name that leaves no file name (``..part``): no clip was ever written under it.
    """
    p = Path(part_path)
    name = p.name
    if name.endswith(".part"):
        name = name[: -len(".part")]
    if name.startswith(".") and len(name) > 1:
        name = name[1:]
    if name in ("", ".", ".."):
        raise ClipError(p, "not a clip's temporary name: no final name to give it")
    return p.with_name(name)


def opus_head(channels: int, pre_skip: int = 0, input_rate: int = 48000) -> bytes:
    """The OpusHead (RFC 7845 5.1) that MP4 (dOps) and Matroska (CodecPrivate) need as extradata.

    Pre-skip is 0: WebRTC packets start mid-stream, there is no encoder priming to hide, and a non-zero value
    would shift the audio against the video.
    """
    return b"OpusHead" + struct.pack("<BBHIhB", 1, channels, pre_skip, input_rate, 0, 0)


_OPUS_FRAME_SAMPLES_48K = (
    # TOC config 0..31 (RFC 6716 3.1): SILK NB/MB/WB 10/20/40/60 ms, hybrid 10/20 ms, CELT 2.5/5/10/20 ms.
    [480, 960, 1920, 2880] * 3 + [480, 960] * 2 + [120, 240, 480, 960] * 4
)


def opus_packet_samples(packet: bytes) -> int:
    """Duration of one Opus packet in 48 kHz samples, from its TOC byte (0 if malformed)."""
    if not packet:
        return 0
    toc = packet[0]
    per_frame = _OPUS_FRAME_SAMPLES_48K[toc >> 3]
    code = toc & 3
    if code == 0:
        return per_frame
    if code in (1, 2):
        return 2 * per_frame
    if len(packet) < 2:
        return 0
    return (packet[1] & 0x3F) * per_frame


def aac_config_channels(asc: bytes) -> int:
    """Channel count from an AAC AudioSpecificConfig (ISO 14496-3 1.6.2.1); 0 if it does not say (a PCE)."""
    bits = int.from_bytes(asc[:6].ljust(6, b"\0"), "big")
    pos = 48 - 5
    if (bits >> pos) & 0x1F == 31:  # audioObjectType escape: 6 more bits
        pos -= 6
    pos -= 4
    if (bits >> pos) & 0xF == 15:  # samplingFrequencyIndex escape: an explicit 24-bit rate
        pos -= 24
    pos -= 4
    config = (bits >> pos) & 0xF if pos >= 0 else 0
    return {7: 8, 11: 7, 12: 8}.get(config, config)


def _opus_channels(packet: bytes) -> int:
    # TOC bit 2 is the stereo flag. Chrome signals opus/48000/2 but sends mono unless asked for stereo.
    return 2 if packet and packet[0] & 0x04 else 1


class _TrackClock:
    """Maps one track's source pts to strictly increasing clip timestamps in ``out_tb``.

    ``t`` is the frame's clip-clock time: the camera clock less the silences taken out of the clip so far, whose
    count is ``cuts``. A step across a cut follows that clock, whatever the pts did over the silence.
    """

    __slots__ = ("_cuts", "_prev_dts", "_prev_t", "last_out", "min_step", "out_tb")

    def __init__(self, out_tb: Fraction, min_step: int) -> None:
        self.out_tb = out_tb
        self.min_step = min_step
        self.last_out: int | None = None
        self._prev_dts = 0
        self._prev_t = 0.0
        self._cuts = 0

    def next(self, frame: EncodedFrame, t: float, cuts: int, first_out: int) -> int:
        """The frame's clip decode timestamp; ``first_out`` for the first frame (negative for B-frame video)."""
        dts = frame.pts if frame.dts is None else frame.dts
        if self.last_out is None:
            out = first_out
        else:
            dt = t - self._prev_t
            if cuts != self._cuts:
                self._cuts = cuts
                d = round(dt / self.out_tb)
            else:
                d = dts - self._prev_dts
                if d < -(_WRAP // 2):
                    d += _WRAP
                if frame.time_base != self.out_tb:
                    d = round(d * frame.time_base / self.out_tb)
                if d < 0 or abs(float(d * self.out_tb) - dt) > _MAX_CLOCK_DISAGREEMENT_S:
                    d = round(dt / self.out_tb)
            # Muxers reject non-increasing DTS; Matroska counts in ms, so "increasing" means by >= 1 ms there.
            out = self.last_out + max(d, self.min_step)
        self.last_out = out
        self._prev_dts = dts
        self._prev_t = t
        return out


class _Track:
    """One output stream with a one-packet look-ahead, so every packet gets its true duration."""

    __slots__ = ("clock", "codec", "end", "frames", "last_duration", "pending", "stream", "tb")

    def __init__(self, stream: Any, tb: Fraction, min_step: int, codec: str = "") -> None:
        self.stream = stream
        self.codec = codec
        self.tb = tb
        self.clock = _TrackClock(tb, min_step)
        self.pending: tuple[bytes, int, bool, int] | None = None  # data, dts, keyframe, pts - dts
        self.frames = 0
        self.last_duration = 0
        self.end = 0  # latest pts + duration of the muxed packets (presentation end)

    def packet(self, data: bytes, dts: int, key: bool, duration: int, cts: int = 0) -> av.Packet:
        p = av.Packet(data)
        p.stream = self.stream
        p.time_base = self.tb
        p.dts = dts
        p.pts = dts + cts  # cts (pts - dts) is 0 without B-frames: WebRTC H.264, VP8, audio
        p.duration = duration
        p.is_keyframe = key
        self.frames += 1
        self.last_duration = duration
        self.end = max(self.end, dts + cts + duration)
        return p


class ClipWriter:
    """Mux ``EncodedFrame``s into an MP4 or WebM clip without decoding them.

    Feed it frames in arrival order (``frames_since`` output, then the buffer's listener): video before the
    first keyframe and audio before that keyframe's time are skipped. H.264 keyframes must carry SPS/PPS (pass
    frames through ``h264.ParameterSetCache`` at ingest).

    Calls must not overlap (no locking inside): ``write`` on the event loop is cheap (~15 us a frame, plus one
    write() syscall per finished GOP), while ``close`` (a remux, tens of ms) belongs in a worker thread once
    the writes have stopped. Any muxing failure aborts the clip (the ``.part`` is deleted) and raises
    ``ClipError``; later calls raise too.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        audio: bool = True,
        durable: bool = True,
    ) -> None:
        self.path = Path(path)
        suffix = self.path.suffix.lower()
        if suffix not in _FORMATS:
            raise ClipError(self.path, f"unsupported clip type {suffix!r} (use .mp4 or .webm)")
        self.format, self._codecs = _FORMATS[suffix]
        self.video_codec = self._codecs[0]  # until the first keyframe says which
        if not self.path.parent.is_dir():
            raise ClipError(self.path, "destination folder does not exist")
        self.part_path = part_path_for(self.path)
        self.audio_enabled = audio
        self.durable = durable
        self.start_t: float | None = None
        self.width = 0
        self.height = 0
        self.skipped = 0  # frames before the first keyframe / its time
        self._container: Any = None
        self._video: _Track | None = None
        self._audio: _Track | None = None
        # frames waiting for the container to open, with their clip-clock time and cut count (see _TrackClock)
        self._held: list[tuple[EncodedFrame, float, int]] = []
        self._newest_t = 0.0  # newest camera-clock time written (held or muxed); set by _start
        self._removed_s = 0.0  # camera-clock seconds of silence taken out of the clip so far
        self._cuts = 0
        self._closed = False
        self._aac_dropped = False
        # Matroska stores ms; keep DTS steps at >= 1 ms there so they survive the rescale.
        webm = self.format == "webm"
        self._vstep = 90 if webm else 1
        self._astep = 48 if webm else 1

    # --- writing ------------------------------------------------------------------------------------------

    def write(self, frame: EncodedFrame) -> None:
        if self._closed:
            raise ClipError(self.path, "write() on a closed or failed clip")
        if frame.kind == "video":
            if frame.codec != self.video_codec and (self.start_t is not None or frame.codec not in self._codecs):
                raise ClipError(self.path, f"{frame.codec} video cannot go into a {self.format} clip")
            if self.start_t is None:
                if not frame.keyframe:
                    self.skipped += 1
                    return
                self._start(frame)
        elif frame.kind == "audio":
            if not self.audio_enabled or self.start_t is None or frame.t < self.start_t:
                self.skipped += 1
                return
            if frame.codec == "aac" and self.format == "webm":
                # WebM has no AAC mapping and audio is never re-encoded: the clip goes without sound.
                if not self._aac_dropped:
                    log.info("%s: AAC audio cannot go into a WebM clip (VP8 camera); the clip has no sound",
                             self.path.name)
                self._aac_dropped = True
                self.skipped += 1
                return
            if frame.codec not in ("opus", "aac"):
                raise ClipError(self.path, f"unsupported audio codec {frame.codec!r}")
        else:
            raise ClipError(self.path, f"unknown frame kind {frame.kind!r}")

        t = frame.t
        if t > self._newest_t:
            if t - self._newest_t > MAX_GAP_S:
                self._cut(t)
            self._newest_t = t
        t -= self._removed_s
        if self._container is None:
            self._held.append((frame, t, self._cuts))
            if (not self.audio_enabled or frame.kind == "audio"
                    or (self.start_t is not None and frame.t - self.start_t >= _AUDIO_WAIT_S)):
                self._open()
            return
        self._mux(frame, t, self._cuts)

    def _cut(self, t: float) -> None:
        """The camera was silent from ``_newest_t`` to ``t``: take that out of the clip (module docstring)."""
        v = self._video
        step = float(v.last_duration * _VIDEO_TB) if v is not None and v.last_duration else _GAP_STEP_MAX_S
        self._removed_s += t - self._newest_t - min(step, _GAP_STEP_MAX_S)
        self._cuts += 1

    def write_many(self, frames: Iterable[EncodedFrame]) -> None:
        for f in frames:
            self.write(f)

    __call__ = write  # so the writer itself can be a RingBuffer listener

    def _start(self, key: EncodedFrame) -> None:
        try:
            res = h264.frame_resolution(key.codec, key.data)
        except h264.H264Error as e:
            raise ClipError(self.path, f"first keyframe is not valid {key.codec}: {e}") from e
        if res is None:
            if key.codec == "h264":
                raise ClipError(
                    self.path, "first H.264 keyframe carries no SPS/PPS (run frames through ParameterSetCache)"
                )
            raise ClipError(self.path, f"first keyframe has no readable {key.codec} header")
        self.width, self.height = res
        self.video_codec = key.codec
        self.start_t = self._newest_t = key.t

    def _open(self) -> None:
        first_audio = next((f for f, _, _ in self._held if f.kind == "audio"), None)
        try:
            self.part_path.unlink(missing_ok=True)
            create_private(self.part_path)  # libav then writes into a 0600 file whatever the umask
            opts = {"flush_packets": "1"}  # hand each finished fragment to the OS: what survives a SIGKILL
            if self.format == "mp4":
                opts["movflags"] = _FRAG_MOVFLAGS
            c = av.open(str(self.part_path), "w", format=self.format, container_options=opts)
        except (OSError, av.error.FFmpegError) as e:
            raise ClipError(self.part_path, f"cannot create: {e}") from e
        self._container = c
        try:
            vs = c.add_mux_stream(self.video_codec, width=self.width, height=self.height, time_base=_VIDEO_TB)
            self._video = _Track(vs, _VIDEO_TB, self._vstep, self.video_codec)
            if first_audio is not None and first_audio.codec == "aac":
                self._audio = self._aac_track(c, first_audio)
            elif first_audio is not None:
                # add_mux_stream cannot carry extradata, and both MP4 and WebM need an OpusHead. A libopus
                # encoder stream can: open it ourselves (start_encoding then leaves it alone) and replace its
                # OpusHead (pre-skip 312) with ours; its codec parameters, extradata included, go to the muxer.
                channels = _opus_channels(first_audio.data)
                s = c.add_stream("libopus", rate=48000, layout="stereo" if channels == 2 else "mono")
                s.time_base = _AUDIO_TB
                s.codec_context.open()
                s.codec_context.extradata = opus_head(channels)
                self._audio = _Track(s, _AUDIO_TB, self._astep, "opus")
            held, self._held = self._held, []
            for f, t, cuts in held:
                self._mux(f, t, cuts)
        except ClipError:
            self.abort()
            raise
        except (av.error.FFmpegError, ValueError) as e:
            self.abort()
            raise ClipError(self.part_path, f"cannot start muxing: {e}") from e

    def _aac_track(self, c: Any, first: EncodedFrame) -> _Track | None:
        """An MP4 track for the camera's AAC packets as they are: its AudioSpecificConfig is the source's.

        As for Opus, add_mux_stream cannot carry extradata: an AAC encoder stream opened here (and never fed)
        gives the muxer its codec parameters, and its own config is replaced by the source's (HE-AAC, other
        rates and channel layouts stay what the camera sent). Without a config the packets cannot be described,
        so the clip goes without sound rather than with a track no player decodes.
        """
        rate = first.time_base.denominator if first.time_base.numerator == 1 else 0
        if not first.config or rate <= 0:
            log.warning("%s: AAC audio without its config or sample rate; the clip has no sound", self.path.name)
            return None
        if rate not in _AAC_RATES:
            log.warning("%s: AAC at %d Hz is not an MPEG-4 rate; the clip has no sound", self.path.name, rate)
            return None
        channels = aac_config_channels(first.config) or 1
        layout = _AAC_LAYOUTS.get(channels, "stereo")  # only the muxer's default; the config says the truth
        s = c.add_stream("aac", rate=rate, layout=layout)
        tb = Fraction(1, rate)
        s.time_base = tb
        s.codec_context.open()
        s.codec_context.extradata = first.config
        return _Track(s, tb, 1, "aac")

    def _mux(self, frame: EncodedFrame, t: float, cuts: int) -> None:
        cts = 0
        if frame.kind == "video":
            track = self._video
            assert track is not None and self.start_t is not None
            if frame.dts is not None:
                cts = frame.pts - frame.dts
                if frame.time_base != track.tb:
                    cts = round(cts * frame.time_base / track.tb)
                cts = max(0, cts)  # a muxer refuses pts < dts
            # the first keyframe is shown at 0, where the audio's clip clock starts too
            first_out = -cts
        else:
            track = self._audio
            if track is None or frame.codec != track.codec:
                # audio began after the file was opened without an audio stream, or changed codec
                self.skipped += 1
                return
            assert self.start_t is not None
            # start_t is the first keyframe's camera clock: no silence can have been taken out before it
            first_out = max(0, round((t - self.start_t) / float(track.tb)))
        dts = track.clock.next(frame, t, cuts, first_out)
        if track.pending is not None:
            data, pdts, key, pcts = track.pending
            self._mux_packet(track.packet(data, pdts, key, dts - pdts, pcts))
        track.pending = (frame.data, dts, frame.keyframe, cts)

    def _mux_packet(self, packet: av.Packet) -> None:
        try:
            self._container.mux(packet)
        except av.error.FFmpegError as e:
            # A muxer in an unknown state cannot be trusted with more data. What already reached the disk (whole
            # fragments, e.g. before the disk filled up) stays in the .part for recover_partial().
            self._closed = True
            c, self._container = self._container, None
            self._held = []
            try:
                c.close()
            except Exception:  # noqa: BLE001 - already failing; the fragments on disk are what counts
                pass
            raise ClipError(self.part_path, f"mux failed: {e}") from e

    # --- finishing ----------------------------------------------------------------------------------------

    @property
    def video_frames(self) -> int:
        v = self._video
        return 0 if v is None else v.frames + (v.pending is not None)

    @property
    def duration_s(self) -> float:
        """Video duration written so far (the pending last frame counted with its expected duration)."""
        v = self._video
        if v is None:
            return 0.0
        end = v.end if v.pending is None else v.pending[1] + v.last_duration
        return float(end * _VIDEO_TB)

    def close(self) -> ClipInfo:
        """Finish the clip and move it to its final name; returns what was written.

        If only the final remux fails (disk full, say), the complete ``.part`` is left in place for
        ``recover_partial`` rather than deleted.
        """
        if self._closed:
            raise ClipError(self.path, "close() called twice")
        if self._container is None:
            if self.start_t is None:
                self._closed = True
                raise ClipError(self.path, "no video keyframe was written")
            self._open()
        try:
            for track, fallback in ((self._video, 6000), (self._audio, 960)):
                if track is not None and track.pending is not None:
                    data, dts, key, cts = track.pending
                    if track is self._audio and track.codec == "aac":
                        dur = track.last_duration or 1024  # an AAC-LC frame is 1024 samples
                    elif track is self._audio:
                        dur = opus_packet_samples(data) or fallback
                    else:
                        dur = track.last_duration or fallback  # last frame: assume the previous interval
                    track.pending = None
                    self._mux_packet(track.packet(data, dts, key, dur, cts))
            self._container.close()
        except ClipError:
            self.abort()
            raise
        except (av.error.FFmpegError, OSError) as e:
            self.abort()
            raise ClipError(self.part_path, f"finishing the file failed: {e}") from e
        self._container = None
        self._closed = True
        if self.format == "mp4":
            _remux(self.part_path, self.path, "mp4", durable=self.durable)
            self.part_path.unlink(missing_ok=True)
        else:
            _finish_in_place(self.part_path, self.path, durable=self.durable)
        assert self._video is not None
        return ClipInfo(
            path=self.path,
            size=self.path.stat().st_size,
            codec=self.video_codec,
            duration_s=float(self._video.end * _VIDEO_TB),
            video_frames=self._video.frames,
            audio_frames=0 if self._audio is None else self._audio.frames,
            width=self.width,
            height=self.height,
            start_t=self.start_t,
        )

    def abort(self) -> None:
        """Give the clip up: close and delete the partial file."""
        self._closed = True
        self._abort_quietly()

    def _abort_quietly(self) -> None:
        c, self._container = self._container, None
        if c is not None:
            try:
                c.close()
            except Exception:  # noqa: BLE001 - already failing; the file goes anyway
                pass
        self._held = []
        self.part_path.unlink(missing_ok=True)
        tmp_path_for(self.path).unlink(missing_ok=True)

    def __enter__(self) -> ClipWriter:
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc_type is not None:
            self.abort()
        elif not self._closed:
            self.close()


# --- remux / recovery ------------------------------------------------------------------------------------------


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _finish_in_place(src: Path, dst: Path, *, durable: bool) -> None:
    try:
        if durable:
            with open(src, "rb+") as f:
                os.fsync(f.fileno())
        os.replace(src, dst)
        if durable:
            _fsync_dir(dst.parent)
    except OSError as e:
        raise ClipError(dst, f"cannot move the finished clip into place: {e}") from e


@dataclass(slots=True)
class _RemuxResult:
    video_frames: int = 0
    audio_frames: int = 0
    duration_s: float = 0.0
    width: int = 0
    height: int = 0
    codec: str = ""


def _remux(src: Path, dst: Path, fmt: ClipFormat, *, durable: bool, salvage: bool = False) -> _RemuxResult:
    """Copy the packets of ``src`` into ``dst`` (written as ``.dst.tmp`` and renamed into place).

    With ``salvage`` the input may be truncated: reading stops at the first error or corrupt packet, and video
    before the first keyframe is dropped.
    """
    tmp = tmp_path_for(dst)
    res = _RemuxResult()
    try:
        inp = av.open(str(src), "r")
    except (av.error.FFmpegError, OSError) as e:
        raise ClipError(src, f"cannot read: {e}") from e
    try:
        vin = inp.streams.video[0] if inp.streams.video else None
        if vin is None:
            raise ClipError(src, "no video stream")
        ain = inp.streams.audio[0] if inp.streams.audio else None
        res.codec = vin.codec_context.name
        res.width, res.height = vin.codec_context.width, vin.codec_context.height
        opts = {"movflags": "+faststart"} if fmt == "mp4" else {}
        create_private(tmp)
        out = av.open(str(tmp), "w", format=fmt, container_options=opts)
        try:
            vout = out.add_stream_from_template(vin)
            if fmt == "mp4" and res.codec == "hevc":
                vout.codec_tag = _HEVC_TAG  # the fragmented .part has FFmpeg's default, hev1
            aout = out.add_stream_from_template(ain) if ain is not None else None
            streams = [vin] if ain is None else [vin, ain]
            seen_key = False
            vend = 0
            packets = inp.demux(streams)
            while True:
                try:
                    p = next(packets)
                except StopIteration:
                    break
                except (av.error.FFmpegError, OSError) as e:
                    if not salvage:
                        raise ClipError(src, f"read failed: {e}") from e
                    break
                if p.size == 0 or p.dts is None:
                    continue  # demuxer flush packets
                if p.is_corrupt:
                    if not salvage:
                        raise ClipError(src, "corrupt packet")
                    break
                if p.stream is vin:
                    if not seen_key:
                        if not p.is_keyframe:
                            continue
                        seen_key = True
                    p.stream = vout
                    res.video_frames += 1
                    # pts may be unset where dts is not (FFmpeg allows it): the dts then stands in.
                    vend = max(vend, (p.pts if p.pts is not None else p.dts) + (p.duration or 0))
                else:
                    if not seen_key or aout is None:
                        continue
                    p.stream = aout
                    res.audio_frames += 1
                out.mux(p)
            if res.video_frames == 0:
                raise ClipError(src, "no complete video keyframe")
            res.duration_s = float(vend * vin.time_base) if vin.time_base else 0.0
        finally:
            out.close()  # writes moov (and, for faststart, moves it to the front)
    except ClipError:
        tmp.unlink(missing_ok=True)
        raise
    except (av.error.FFmpegError, OSError, ValueError) as e:
        tmp.unlink(missing_ok=True)
        raise ClipError(dst, f"remux failed: {e}") from e
    finally:
        inp.close()
    _finish_in_place(tmp, dst, durable=durable)
    return res


def probe_clip(path: str | os.PathLike[str]) -> ClipInfo:
    """Read back what a finished clip holds (counts packets; decodes nothing)."""
    p = Path(path)
    try:
        with av.open(str(p), "r") as c:
            v = c.streams.video[0] if c.streams.video else None
            if v is None:
                raise ClipError(p, "no video stream")
            counts = {"video": 0, "audio": 0}
            end = 0
            for pkt in c.demux():
                if pkt.size == 0:
                    continue
                counts[pkt.stream.type] = counts.get(pkt.stream.type, 0) + 1
                if pkt.stream is v and pkt.pts is not None:
                    end = max(end, pkt.pts + (pkt.duration or 0))
            return ClipInfo(
                path=p,
                size=p.stat().st_size,
                codec=v.codec_context.name,
                duration_s=float(end * v.time_base) if v.time_base else 0.0,
                video_frames=counts["video"],
                audio_frames=counts["audio"],
                width=v.codec_context.width,
                height=v.codec_context.height,
                start_t=None,
            )
    except (av.error.FFmpegError, OSError) as e:
        raise ClipError(p, f"cannot read clip: {e}") from e


def recover_partial(part_path: str | os.PathLike[str], *, durable: bool = True) -> ClipInfo | None:
    """Turn a ``.part`` left by a crash into a clip at its final name, or delete it and return None.

    Keeps every intact packet from the first video keyframe to the first damaged or missing one; a fragment cut
    short by the crash contributes the frames that made it to disk (a decodable prefix of its GOP). A full disk
    raises ClipError and leaves the part where it is: it may be the only copy of a whole clip.
    """
    part = Path(part_path)
    dst = final_path_for(part)
    fmt = _FORMATS.get(dst.suffix.lower(), (None, None))[0]
    keep = False
    try:
        if fmt is None:
            log.warning("recover: %s has no known clip suffix; deleting", part)
            return None
        if dst.exists():
            # Crashed between the rename and the unlink: the final file is complete.
            return probe_clip(dst)
        try:
            r = _remux(part, dst, fmt, durable=durable, salvage=True)
        except ClipError as e:
            if is_disk_full(e):
                # No room for the copy: the part may be a whole clip; it stays for the next try.
                keep = True
                raise
            log.warning("recover: nothing usable in %s (%s); deleting", part, e)
            return None
        return ClipInfo(
            path=dst,
            size=dst.stat().st_size,
            codec=r.codec,
            duration_s=r.duration_s,
            video_frames=r.video_frames,
            audio_frames=r.audio_frames,
            width=r.width,
            height=r.height,
            start_t=None,
        )
    finally:
        if not keep:
            part.unlink(missing_ok=True)


def recover_folder(folder: str | os.PathLike[str]) -> list[ClipInfo]:
    """Start-up sweep of a clips folder: drop stale ``.tmp`` files, recover every ``.part``.

    Whatever else matches those names (a folder, a link, ``..part``) is not the hub's: it is left where it is
    with a log line, and the sweep goes on, so one odd name never stops the hub from starting.
    """
    d = Path(folder)
    for tmp in d.glob(".*.tmp"):
        if _ours(tmp):
            tmp.unlink(missing_ok=True)
    out = []
    for part in sorted(d.glob(".*.part")):
        if not _ours(part):
            continue
        try:
            info = recover_partial(part)
        except ClipError as e:
            log.warning("recover: skipping %s (%s)", part, e)
            continue
        if info is not None:
            out.append(info)
    return out


def _ours(path: Path) -> bool:
    """A plain file (not a link, folder or device): the only kind of temporary file the hub writes."""
    if path.is_symlink() or not path.is_file():
        log.warning("recover: skipping %s: not a plain file, so not one the hub wrote", path)
        return False
    return True


# --- snapshots -------------------------------------------------------------------------------------------------


def is_disk_full(exc: BaseException | None) -> bool:
    """ENOSPC/EDQUOT anywhere in the cause chain, or the message FFmpeg and SQLite give for it."""
    while exc is not None:
        if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        if "No space left on device" in str(exc) or "disk is full" in str(exc):
            return True
        exc = exc.__cause__
    return False


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = tmp_path_for(path)
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, PRIVATE_FILE)  # a snapshot is private like a clip
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), PRIVATE_FILE)
            f.write(data)
        os.replace(tmp, path)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise ClipError(path, f"cannot write: {e}") from e


def write_snapshot(
    frames: Sequence[EncodedFrame],
    at_t: float,
    jpeg_path: str | os.PathLike[str],
    thumb_path: str | os.PathLike[str],
    thumb_width: int = 320,
    quality: int = 85,
) -> SnapshotInfo:
    """JPEG + thumbnail of the video frame shown at ``at_t`` (the last one at or before it).

    Decodes only from the keyframe before that frame up to it: at 15 fps and a 2 s GOP that is at most 30
    frames, a few tens of ms at 720p, instead of the whole clip.
    """
    import cv2  # heavy import, only needed here

    jpeg = Path(jpeg_path)
    thumb = Path(thumb_path)
    video = [f for f in frames if f.kind == "video"]
    if not video:
        raise ClipError(jpeg, "no video frames to take a snapshot from")
    target = 0
    for i, f in enumerate(video):
        if f.t <= at_t:
            target = i
        else:
            break
    start = next((i for i in range(target, -1, -1) if video[i].keyframe), None)
    if start is None:
        # at_t precedes the first keyframe: show the first keyframe rather than failing the alert.
        start = next((i for i, f in enumerate(video) if f.keyframe), None)
        if start is None:
            raise ClipError(jpeg, "no keyframe to decode from")
        target = start
    codec = video[start].codec
    if codec not in ("h264", "hevc", "vp8"):
        raise ClipError(jpeg, f"cannot decode {codec!r} video")
    ctx = av.CodecContext.create(codec, "r")
    picture: av.VideoFrame | None = None
    try:
        for i in range(start, target + 1):
            pkt = av.Packet(video[i].data)
            pkt.pts = i  # identify the target frame in the output, whatever the decoder delay
            for fr in ctx.decode(pkt):
                if fr.pts == target:
                    picture = fr
        if picture is None:
            for fr in ctx.decode(None):
                if fr.pts == target:
                    picture = fr
    except av.error.FFmpegError as e:
        raise ClipError(jpeg, f"cannot decode the {codec} frames: {e}") from e
    if picture is None:
        raise ClipError(jpeg, f"the {codec} frames did not decode to a picture")
    bgr: np.ndarray = picture.to_ndarray(format="bgr24")
    h, w = bgr.shape[:2]
    tw = max(2, min(thumb_width, w))
    th = max(2, round(h * tw / w / 2) * 2)
    small = cv2.resize(bgr, (tw, th), interpolation=cv2.INTER_AREA)
    params = [int(cv2.IMWRITE_JPEG_QUALITY), quality]
    ok1, full_jpg = cv2.imencode(".jpg", bgr, params)
    ok2, thumb_jpg = cv2.imencode(".jpg", small, params)
    if not (ok1 and ok2):
        raise ClipError(jpeg, "JPEG encoding failed")
    _atomic_write(jpeg, full_jpg.tobytes())
    _atomic_write(thumb, thumb_jpg.tobytes())
    return SnapshotInfo(jpeg_path=jpeg, thumb_path=thumb, t=video[target].t, width=w, height=h)
