"""What every camera source (WebRTC, RTSP, file) delivers to, and nothing more."""

from __future__ import annotations

from typing import Any, Protocol

from hub.media.frames import AudioChunk, AudioLevel, DetectFrame, EncodedFrame


class CameraSink(Protocol):
    def on_frame(self, frame: EncodedFrame) -> None:
        """An encoded record-track video frame or audio packet, in arrival order per track."""

    def on_detect(self, frame: DetectFrame) -> None:
        """A decoded detect-track frame (the sink may drop it if it is busy)."""

    def on_audio(self, chunk: AudioChunk) -> None:
        """Decoded audio for the level trigger."""

    def on_audio_level(self, level: AudioLevel) -> None:
        """The sender's level of one audio packet (RFC 6464); while these arrive, on_audio does not."""

    def on_broken(self) -> None:
        """Video data was lost: nothing before the next keyframe can be used."""

    def on_status(self, status: dict[str, Any]) -> None:
        """Device status from the camera (battery, charging, visibility, measured fps/bitrate)."""

    def on_stream_info(self, info: dict[str, Any]) -> None:
        """Codec and resolution of the record track, once known or when it changes."""
