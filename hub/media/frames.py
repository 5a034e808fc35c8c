"""The unit that flows from ingest to the ring buffer, the clip writer and the triggers.

Every source (WebRTC tap, RTSP, file) produces ``EncodedFrame`` for the record and audio tracks and
``DetectFrame`` for the low-resolution detect track. Nothing downstream knows which source it was.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from typing import Literal

import numpy as np

VideoCodec = Literal["h264", "hevc", "vp8"]
AudioCodec = Literal["opus", "aac"]
Codec = Literal["h264", "hevc", "vp8", "opus", "aac"]

VIDEO_TIME_BASE = Fraction(1, 90000)
AUDIO_TIME_BASE = Fraction(1, 48000)


@dataclass(slots=True)
class EncodedFrame:
    """One encoded access unit (video) or packet (audio), never decoded on the hub's hot path.

    ``t`` is the camera clock in seconds shared by every track of one camera (for live sources the hub's
    wall clock at arrival, for files the stream time); triggers and the buffer speak in ``t``.
    ``pts`` is in ``time_base`` units of the track itself and is what the clip muxer uses. ``dts`` (same units) is
    set only where it differs from ``pts``: video with B-frames (H.264 High, H.265), whose frames arrive in decode
    order and are shown in ``pts`` order. None means dts == pts (WebRTC video, VP8, audio).
    ``config`` is the codec's out-of-band setup where the packets cannot be read without it: AAC's
    AudioSpecificConfig (from the source's extradata), which the MP4 muxer writes into the track header. AAC
    ``pts`` count samples (``time_base`` 1/sample rate).
    """

    kind: Literal["video", "audio"]
    codec: Codec
    data: bytes
    pts: int
    time_base: Fraction
    t: float
    keyframe: bool = False
    width: int | None = None
    height: int | None = None
    dts: int | None = None
    config: bytes | None = None

    @property
    def size(self) -> int:
        return len(self.data)


@dataclass(slots=True)
class DetectFrame:
    """A decoded low-resolution luma plane offered to the motion trigger."""

    y: np.ndarray  # uint8, shape (height, width)
    t: float


@dataclass(slots=True)
class AudioChunk:
    """Decoded mono PCM for the audio trigger, float32 in [-1, 1]."""

    samples: np.ndarray
    sample_rate: int
    t: float


@dataclass(slots=True)
class AudioLevel:
    """The sender's own level of one audio packet (RFC 6464 ssrc-audio-level), in dBFS (RMS, -127..0).

    Browsers put it in every Opus packet's RTP header, so the hub can run the sound trigger without decoding.
    """

    dbfs: float
    t: float
    duration_ms: float = 20.0
