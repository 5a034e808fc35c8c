"""A CameraSink that records everything it is given, for ingest tests."""

from __future__ import annotations


class RecordingSink:
    def __init__(self) -> None:
        self.frames: list = []
        self.detect: list = []
        self.audio: list = []
        self.broken = 0
        self.status: list = []
        self.info: list = []

    def on_frame(self, frame) -> None:
        self.frames.append(frame)

    def on_detect(self, frame) -> None:
        self.detect.append(frame)

    def on_audio(self, chunk) -> None:
        self.audio.append(chunk)

    def on_broken(self) -> None:
        self.broken += 1

    def on_status(self, status) -> None:
        self.status.append(status)

    def on_stream_info(self, info) -> None:
        self.info.append(info)

    def video(self):
        return [f for f in self.frames if f.kind == "video"]

    def audio_frames(self):
        return [f for f in self.frames if f.kind == "audio"]
