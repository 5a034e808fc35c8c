"""Per-camera ring buffer of encoded frames: the pre-roll every clip starts from.

Frames are kept encoded (never decoded on the hub) and the video is indexed by keyframes, because a clip can
only start on one. Two bounds hold after every push:

* time: at least ``window_s`` of video behind the newest frame is kept, evicting whole GOPs from the front so
  the oldest stored video frame is always a keyframe;
* bytes: the total never exceeds ``max_bytes`` (a camera that stops sending keyframes, or a bitrate spike,
  must not grow the hub's memory), again evicting whole GOPs.

Audio is stored alongside and trimmed to start no earlier than the oldest video frame, since a clip's audio is
cut at its first keyframe anyway.

A camera that sent nothing at all for more than ``max_gap_s`` (an RTSP server restarting, a phone losing its
network) is a discontinuity: the buffer is cut there, so a clip's pre-roll never reaches back across the silence
(issue 14: pre-roll went to the last keyframe before a 10 s outage and showed it frozen for 16 s). Video after the
cut waits for a keyframe, as after a loss: P-frames of a new connection decode against nothing we hold.

``push`` runs once per frame on the event loop (~65 calls/s per camera with Opus at 20 ms), so it does O(1)
amortised work, touches only deque ends and keeps no per-frame objects of its own apart from a tuple per
keyframe: the memory per frame is the ``EncodedFrame`` the source already made plus a deque slot.
"""

from __future__ import annotations

import bisect
import heapq
import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from itertools import islice
from operator import attrgetter

from hub.media.frames import EncodedFrame

log = logging.getLogger(__name__)

Listener = Callable[[EncodedFrame], None]

# 15 s at 2.5 Mbps is ~4.7 MB; keyframes, bitrate spikes and the extra GOP that time-eviction keeps need
# headroom, while the per-camera budget (~12 MB with everything else) caps it.
DEFAULT_MAX_BYTES = 8 * 1024 * 1024
# No frame of any track for longer than this is an outage, not jitter: a live camera sends audio every 20 ms and
# video at >= 5 fps, while a jitter buffer that stalled releases its burst within a second or two.
MAX_GAP_S = 3.0

_by_t = attrgetter("t")


@dataclass(frozen=True, slots=True)
class BufferStats:
    frames: int
    video_frames: int
    audio_frames: int
    bytes: int
    keyframes: int
    span_s: float  # newest minus oldest stored frame, any track
    dropped_broken: int  # video frames dropped after mark_broken() until a keyframe came
    dropped_no_keyframe: int  # video frames dropped because the buffer held no keyframe to hang them on
    evicted: int  # frames removed by the time or byte bound, or by a cut
    cuts: int = 0  # discontinuities (silences longer than max_gap_s) that emptied the buffer


class RingBuffer:
    """Encoded frames of one camera (record video + audio), keyframe-indexed, time- and byte-bounded."""

    def __init__(self, window_s: float = 15.0, max_bytes: int = DEFAULT_MAX_BYTES, max_gap_s: float = MAX_GAP_S
                 ) -> None:
        if window_s <= 0:
            raise ValueError("window_s must be positive")
        if max_bytes <= 0:
            raise ValueError("max_bytes must be positive")
        if max_gap_s <= 0:
            raise ValueError("max_gap_s must be positive")
        self.window_s = float(window_s)
        self.max_bytes = int(max_bytes)
        self.max_gap_s = float(max_gap_s)
        self._video: deque[EncodedFrame] = deque()
        self._audio: deque[EncodedFrame] = deque()
        # (sequence number, t) of every stored keyframe. Sequence numbers are global push counters for video,
        # so the position of a keyframe in _video is seq - _vbase without shifting anything on eviction.
        self._keys: deque[tuple[int, float]] = deque()
        self._vbase = 0  # sequence number of _video[0]
        self._vnext = 0  # sequence number the next stored video frame gets
        self._bytes = 0
        self._newest_t = float("-inf")
        self._broken = False
        self._listeners: tuple[Listener, ...] = ()  # immutable: push iterates it without copying
        self._subscriptions: list[tuple[object, Listener]] = []  # (token, callback), one per subscribe()
        self._dropped_broken = 0
        self._dropped_no_keyframe = 0
        self._evicted = 0
        self._cuts = 0

    # --- writing --------------------------------------------------------------------------------------------

    def push(self, frame: EncodedFrame) -> bool:
        """Store one frame; returns False when a video frame was dropped (broken or no keyframe yet).

        Listeners see exactly the frames that were accepted, so a clip's post-roll never gets the undecodable
        frames between a loss and the next keyframe either.
        """
        t = frame.t
        if t - self._newest_t > self.max_gap_s and (self._video or self._audio):
            # The camera was silent: nothing before this may become pre-roll (see the module docstring).
            self._cuts += 1
            self.clear()
        size = len(frame.data)
        if frame.kind == "video":
            if frame.keyframe:
                self._broken = False
                self._keys.append((self._vnext, t))
            elif self._broken:
                self._dropped_broken += 1
                return False
            elif not self._video:
                # Nothing to decode this against (start-up, or everything was evicted): wait for a keyframe.
                self._dropped_no_keyframe += 1
                return False
            self._video.append(frame)
            self._vnext += 1
        else:
            self._audio.append(frame)
        self._bytes += size
        if t > self._newest_t:
            self._newest_t = t
        self._evict()
        for listener in self._listeners:
            try:
                listener(frame)
            except Exception:
                # One failing consumer (say a clip writer on a full disk) must not stop ingest, nor log 65
                # tracebacks a second: drop it. The consumer learns through its own error handling.
                log.exception("buffer listener %r failed; unsubscribed", listener)
                self._drop_failed(listener)
        return True

    def mark_broken(self) -> None:
        """Video data was lost: drop video until the next keyframe (frames already stored stay valid)."""
        self._broken = True

    @property
    def broken(self) -> bool:
        return self._broken

    def clear(self) -> None:
        """Forget everything (e.g. the camera's stream changed codec or resolution)."""
        self._evicted += len(self._video) + len(self._audio)
        self._vbase = self._vnext
        self._video.clear()
        self._audio.clear()
        self._keys.clear()
        self._bytes = 0

    # --- eviction -------------------------------------------------------------------------------------------

    def _drop_gop(self) -> None:
        """Remove the oldest GOP (the first keyframe up to, not including, the second one, or all video)."""
        keys = self._keys
        keys.popleft()
        stop = keys[0][0] if keys else self._vnext
        video = self._video
        n = stop - self._vbase
        freed = 0
        for _ in range(n):
            freed += len(video.popleft().data)
        self._vbase = stop
        self._bytes -= freed
        self._evicted += n

    def _evict(self) -> None:
        horizon = self._newest_t - self.window_s
        keys = self._keys
        # Time: a GOP can go once the next keyframe is itself at or before the horizon, because the buffer then
        # still starts on a keyframe that covers the whole window.
        while len(keys) >= 2 and keys[1][1] <= horizon:
            self._drop_gop()
        # A single GOP whose newest frame is already out of the window is stale (video stalled while audio
        # kept coming): a clip from it would show a frozen picture, and it would pin old audio in memory.
        if len(keys) == 1 and self._video[-1].t < horizon:
            self._drop_gop()
        # Bytes: whole GOPs first, then (no video left) audio from the front.
        while self._bytes > self.max_bytes:
            if keys:
                self._drop_gop()
            elif self._audio:
                self._bytes -= len(self._audio.popleft().data)
                self._evicted += 1
            else:
                break
        # Audio never reaches further back than the video (clips cut it at their first keyframe anyway).
        cutoff = self._video[0].t if self._video else horizon
        audio = self._audio
        while audio and audio[0].t < cutoff:
            self._bytes -= len(audio.popleft().data)
            self._evicted += 1

    # --- reading --------------------------------------------------------------------------------------------

    def frames_since(self, t: float) -> list[EncodedFrame]:
        """Video from the last keyframe at or before ``t`` (the oldest one if ``t`` predates the buffer), plus
        audio from that keyframe's time on, merged in ``t`` order.

        Without stored video, returns the audio from ``t`` on. Call it and ``subscribe`` in the same event-loop
        step (no await in between) and the clip gets every frame exactly once.
        """
        audio = self._audio
        if self._keys:
            i = bisect.bisect_right(self._keys, t, key=lambda k: k[1])
            seq, key_t = self._keys[i - 1] if i > 0 else self._keys[0]
            video = list(islice(self._video, seq - self._vbase, None))
            a0 = bisect.bisect_left(audio, key_t, key=_by_t)
        else:
            video = []
            a0 = bisect.bisect_left(audio, t, key=_by_t)
        audio_part = list(islice(audio, a0, None))
        if not audio_part:
            return video
        if not video:
            return audio_part
        return list(heapq.merge(video, audio_part, key=_by_t))

    def keyframe_times(self) -> list[float]:
        return [k[1] for k in self._keys]

    @property
    def newest_t(self) -> float | None:
        return None if self._newest_t == float("-inf") else self._newest_t

    @property
    def oldest_t(self) -> float | None:
        firsts = [d[0].t for d in (self._video, self._audio) if d]
        return min(firsts) if firsts else None

    def __len__(self) -> int:
        return len(self._video) + len(self._audio)

    def stats(self) -> BufferStats:
        oldest = self.oldest_t
        newest = max((d[-1].t for d in (self._video, self._audio) if d), default=None)
        return BufferStats(
            frames=len(self._video) + len(self._audio),
            video_frames=len(self._video),
            audio_frames=len(self._audio),
            bytes=self._bytes,
            keyframes=len(self._keys),
            span_s=0.0 if oldest is None or newest is None else newest - oldest,
            dropped_broken=self._dropped_broken,
            dropped_no_keyframe=self._dropped_no_keyframe,
            evicted=self._evicted,
            cuts=self._cuts,
        )

    # --- listeners ------------------------------------------------------------------------------------------

    def subscribe(self, callback: Listener) -> Callable[[], None]:
        """Call ``callback`` with every frame accepted from now on; returns the unsubscribe function.

        Each call is its own subscription, even for the same callback object; its unsubscribe removes that one
        subscription, once (calling it again does nothing)."""
        token = object()
        self._subscriptions.append((token, callback))
        self._listeners = (*self._listeners, callback)

        def unsubscribe() -> None:
            self._remove_subscription(token)

        return unsubscribe

    def _drop_failed(self, callback: Listener) -> None:
        for t, cb in self._subscriptions:
            if cb is callback:
                self._remove_subscription(t)
                return

    def _remove_subscription(self, token: object) -> None:
        for i, (t, _) in enumerate(self._subscriptions):
            if t is token:
                del self._subscriptions[i]
                # push() iterates an immutable tuple without copying: rebuild it from what is left
                self._listeners = tuple(cb for _, cb in self._subscriptions)
                return
