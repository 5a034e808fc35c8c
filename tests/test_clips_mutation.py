"""hub/clips.py behaviours that tests/test_clips.py leaves unpinned (found by scripts/bench mutation).

Fast and in-process like tests/test_clips.py, which runs with these against every mutant of hub/clips.py: the
Opus and AAC header arithmetic against their specifications (RFC 6716, ISO 14496-3), the hidden names a clip is
written under, and what a writer does with a silence, late audio and a slow frame rate, read back with PyAV.
"""

from __future__ import annotations

import dataclasses
import errno
import itertools
import logging
import os
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from hub.clips import (
    ClipError,
    ClipWriter,
    aac_config_channels,
    final_path_for,
    is_disk_full,
    opus_head,
    opus_packet_samples,
    part_path_for,
    probe_clip,
    recover_folder,
    recover_partial,
    tmp_path_for,
    write_snapshot,
)
from hub.media.frames import AUDIO_TIME_BASE, VIDEO_TIME_BASE, EncodedFrame
from hub.recovery import recover
from hub.store import Store
from tests.test_clips import encode_opus
from tests.test_recorder import _tmpfs, encode

# -- Opus: a packet's duration from its TOC byte (RFC 6716 3.1) ------------------------------------------------------

# per configuration 0..31: SILK NB, MB, WB at 10/20/40/60 ms; hybrid SWB, FB at 10/20 ms; CELT NB, WB, SWB, FB at
# 2.5/5/10/20 ms; in 48 kHz samples
_MS = [10, 20, 40, 60] * 3 + [10, 20] * 2 + [2.5, 5, 10, 20] * 4


@pytest.mark.parametrize("config", range(32))
def test_an_opus_packet_lasts_what_its_toc_says(config: int) -> None:
    one = round(_MS[config] * 48)
    toc = config << 3
    assert opus_packet_samples(bytes([toc | 0, 0xAA])) == one  # code 0: one frame
    assert opus_packet_samples(bytes([toc | 0x04])) == one  # the stereo flag changes nothing
    assert opus_packet_samples(bytes([toc | 1, 0xAA])) == 2 * one  # code 1: two frames of equal size
    assert opus_packet_samples(bytes([toc | 2, 0x01, 0xAA])) == 2 * one  # code 2: two frames
    assert opus_packet_samples(bytes([toc | 3, 0x83, 0xAA])) == 3 * one  # code 3: the count in the next byte
    assert opus_packet_samples(bytes([toc | 3, 0x40 | 0x05])) == 5 * one  # its top bits are flags, not count


def test_a_malformed_opus_packet_lasts_nothing() -> None:
    assert opus_packet_samples(b"") == 0
    assert opus_packet_samples(bytes([3])) == 0  # code 3 without its frame count


# -- AAC: the channel count in an AudioSpecificConfig (ISO 14496-3 1.6.2.1) -------------------------------------------


def _asc(object_type: int, freq_index: int, channels: int, explicit_rate: int | None = None) -> bytes:
    bits = ""
    bits += f"{object_type:05b}" if object_type < 31 else "11111" + f"{object_type - 32:06b}"
    bits += f"{freq_index:04b}"
    if freq_index == 15:
        assert explicit_rate is not None
        bits += f"{explicit_rate:024b}"
    bits += f"{channels:04b}"
    bits += "0" * (-len(bits) % 8)
    return int(bits, 2).to_bytes(len(bits) // 8, "big")


def test_the_aac_channel_count_is_read_from_the_audio_specific_config() -> None:
    assert _asc(2, 4, 2) == bytes([0x12, 0x10])  # AAC-LC 44.1 kHz stereo, as cameras send it
    assert aac_config_channels(bytes([0x12, 0x10])) == 2
    assert aac_config_channels(_asc(2, 3, 1)) == 1
    for config, channels in [(3, 3), (4, 4), (5, 5), (6, 6), (7, 8), (11, 7), (12, 8), (14, 14)]:
        assert aac_config_channels(_asc(2, 3, config)) == channels, config
    assert aac_config_channels(_asc(2, 3, 0)) == 0  # a program config element says it: unknown here
    assert aac_config_channels(_asc(5, 6, 2)) == 2  # HE-AAC
    assert aac_config_channels(_asc(42, 3, 1)) == 1  # object type past 30: escaped in 6 more bits
    assert aac_config_channels(_asc(2, 15, 2, explicit_rate=44_000)) == 2  # an explicit 24-bit rate
    assert aac_config_channels(_asc(42, 15, 6, explicit_rate=11_025)) == 6  # both escapes
    assert aac_config_channels(b"\x12") == 0  # too short to say
    # only the first six bytes hold the fields: an extension after them (SBR/PS signalling) changes nothing
    assert aac_config_channels(_asc(2, 3, 2).ljust(6, b"\0") + b"\x56\xe5\x00") == 2


# -- the names a clip is written under -----------------------------------------------------------------------------


def test_a_clip_is_written_under_a_hidden_name_in_its_own_folder_and_back() -> None:
    clip = Path("/clips/cam/2024-05-01/ev-1.mp4")
    assert part_path_for(clip) == Path("/clips/cam/2024-05-01/.ev-1.mp4.part")
    assert tmp_path_for(clip) == Path("/clips/cam/2024-05-01/.ev-1.mp4.tmp")
    assert final_path_for(part_path_for(clip)) == clip
    assert final_path_for("/x/.ev-2.webm.part") == Path("/x/ev-2.webm")
    assert final_path_for("/x/ev-3.mp4.part") == Path("/x/ev-3.mp4")  # not hidden: only loses .part
    assert final_path_for("/x/.ev-4.mp4") == Path("/x/ev-4.mp4")
    assert final_path_for("/x/.a.part") == Path("/x/a")  # a one-letter name
    assert final_path_for("/x/a") == Path("/x/a")


# -- the writer ---------------------------------------------------------------------------------------------------


def _video_times(path: Path) -> list[float]:
    with av.open(str(path)) as c:
        return sorted(float(p.pts * p.time_base) for p in c.demux(video=0) if p.size and p.pts is not None)


def test_a_silence_at_a_slow_frame_rate_holds_the_picture_a_tenth_of_a_second_at_most(tmp_path: Path) -> None:
    silent_from = 6  # the camera was silent for 20 s after frame 5; its pts kept counting
    frames = [f if i < silent_from else dataclasses.replace(f, t=f.t + 20.0)
              for i, f in enumerate(encode(12, gop=4, fps=2))]  # one frame every 0.5 s
    out = tmp_path / "slow.mp4"
    with ClipWriter(out, audio=False) as w:
        w.write_many(frames)
    times = _video_times(out)
    steps = [round(b - a, 3) for a, b in itertools.pairwise(times)]
    assert steps[:silent_from - 1] == [0.5] * (silent_from - 1)
    assert steps[silent_from - 1] == 0.1  # across the silence: one step, bounded
    assert steps[silent_from:] == [0.5] * (len(steps) - silent_from)


def test_a_silence_at_a_fast_frame_rate_holds_the_picture_one_frame(tmp_path: Path) -> None:
    """At 25 fps the step across a silence is the stream's own frame interval, 40 ms, not the 100 ms bound."""
    frames = [f if i < 10 else dataclasses.replace(f, t=f.t + 20.0) for i, f in enumerate(encode(20, gop=5, fps=25))]
    out = tmp_path / "fast.mp4"
    with ClipWriter(out, audio=False) as w:
        w.write_many(frames)
    steps = [round(b - a, 3) for a, b in itertools.pairwise(_video_times(out))]
    assert steps == [0.04] * 19


def test_a_silence_right_after_the_first_frame_holds_it_a_tenth_of_a_second(tmp_path: Path) -> None:
    """No frame interval is known yet across a silence after the very first frame: the bound is the step."""
    frames = [f if i < 1 else dataclasses.replace(f, t=f.t + 20.0) for i, f in enumerate(encode(10, gop=5, fps=25))]
    out = tmp_path / "first.mp4"
    with ClipWriter(out, audio=False) as w:
        w.write_many(frames)
    steps = [round(b - a, 3) for a, b in itertools.pairwise(_video_times(out))]
    assert steps == [0.1] + [0.04] * 8


def _opus_from(t0: float, seconds: float) -> list[EncodedFrame]:
    return [EncodedFrame("audio", "opus", data, i * 960, AUDIO_TIME_BASE, t0 + i * 0.02)
            for i, data in enumerate(encode_opus(seconds))]


def test_sound_that_starts_within_a_second_of_the_picture_is_in_the_clip(tmp_path: Path) -> None:
    video = encode(40)  # 4 s at 10 fps
    late = _opus_from(video[0].t + 0.85, 2.0)
    out = tmp_path / "a.mp4"
    with ClipWriter(out) as w:
        w.write_many(sorted(video + late, key=lambda f: f.t))
    with av.open(str(out)) as c:
        assert [s.type for s in c.streams] == ["video", "audio"]
        assert c.streams.audio[0].codec_context.sample_rate == 48000
        first = next(p for p in c.demux(audio=0) if p.size and p.pts is not None)
        assert float(first.pts * first.time_base) == pytest.approx(0.85, abs=0.025)  # in its place


def test_mono_opus_is_stored_as_mono_and_stereo_as_stereo(tmp_path: Path) -> None:
    """The OpusHead's channel count comes from the first packet's TOC stereo flag (Chrome sends mono by default)."""
    video = encode(20)
    mono = _opus_from(video[0].t, 1.5)
    stereo_ctx = av.CodecContext.create("libopus", "w")
    stereo_ctx.sample_rate, stereo_ctx.layout, stereo_ctx.format = 48000, "stereo", "s16"
    packets = []
    for i in range(75):
        f = av.AudioFrame.from_ndarray(np.zeros((1, 1920), np.int16), format="s16", layout="stereo")
        f.sample_rate, f.pts = 48000, i * 960
        packets += stereo_ctx.encode(f)
    stereo = [EncodedFrame("audio", "opus", bytes(p), i * 960, AUDIO_TIME_BASE, video[0].t + i * 0.02)
              for i, p in enumerate(packets)]
    for name, sound, channels in (("mono.mp4", mono, 1), ("stereo.mp4", stereo, 2)):
        with ClipWriter(tmp_path / name) as w:
            w.write_many(sorted(video + sound, key=lambda f: f.t))
        with av.open(str(tmp_path / name)) as c:
            assert c.streams.audio[0].codec_context.channels == channels, name
            # our OpusHead (pre-skip 0), not the one a libopus encoder makes for itself (pre-skip 312)
            assert bytes(c.streams.audio[0].codec_context.extradata) == opus_head(channels), name


def test_sound_that_starts_long_after_the_picture_is_left_out_not_waited_for(tmp_path: Path) -> None:
    """The file's streams are fixed when it opens: it waits a second of video for the first sound, no longer
    (the frames it holds meanwhile are in memory)."""
    video = encode(40)
    late = _opus_from(video[0].t + 1.05, 2.0)  # a full second of video came first
    out = tmp_path / "b.mp4"
    with ClipWriter(out) as w:
        w.write_many(sorted(video + late, key=lambda f: f.t))
        assert w.skipped == len(late)  # every late packet counted as skipped
    with av.open(str(out)) as c:
        assert [s.type for s in c.streams] == ["video"]
        assert sum(1 for p in c.demux(video=0) if p.size) == 40


def test_the_opus_head_is_rfc_7845s() -> None:
    # magic, version 1, channels, pre-skip 0 (WebRTC packets start mid-stream), input rate 48 kHz, gain 0, family 0
    assert opus_head(1) == b"OpusHead" + bytes([1, 1, 0, 0, 0x80, 0xBB, 0, 0, 0, 0, 0])
    assert opus_head(2, pre_skip=312, input_rate=16000) == b"OpusHead" + bytes([1, 2, 0x38, 1, 0x80, 0x3E, 0, 0,
                                                                                0, 0, 0])


# -- AAC as IP cameras send it ---------------------------------------------------------------------------------------

_MPEG4_RATES = (96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000, 7350)


def _aac(rate: int, t0: float, seconds: float, as_rate: int | None = None) -> list[EncodedFrame]:
    """AAC-LC mono packets encoded at ``rate``, stamped as a camera at ``as_rate`` (default: the same) sends them."""
    ctx = av.CodecContext.create("aac", "w")
    ctx.sample_rate, ctx.layout, ctx.format = rate, "mono", "fltp"
    ctx.open()
    packets = []
    for i in range(int(seconds * rate / 1024) + 1):
        f = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
        f.sample_rate, f.pts = rate, i * 1024
        packets += ctx.encode(f)
    packets += ctx.encode(None)
    stamp = as_rate or rate
    config = bytes(ctx.extradata)
    return [EncodedFrame("audio", "aac", bytes(p), int(p.pts), Fraction(1, stamp), t0 + int(p.pts) / stamp,
                         config=config) for p in packets if p.pts is not None and p.pts >= 0]


def _clip_with(tmp_path: Path, audio: list[EncodedFrame], name: str) -> Path:
    video = encode(15)
    out = tmp_path / name
    with ClipWriter(out) as w:
        w.write_many(sorted(video + [a for a in audio if a.t >= video[0].t], key=lambda f: f.t))
    return out


def test_aac_at_every_mpeg4_rate_keeps_its_sound(tmp_path: Path) -> None:
    for rate in _MPEG4_RATES:
        out = _clip_with(tmp_path, _aac(rate, encode(1)[0].t, 1.5), f"aac{rate}.mp4")
        with av.open(str(out)) as c:
            assert [s.type for s in c.streams] == ["video", "audio"], rate
            a = c.streams.audio[0]
            assert (a.codec_context.name, a.codec_context.sample_rate) == ("aac", rate)
            assert sum(1 for p in c.demux(audio=0) if p.size) > 0


def test_aac_at_a_rate_mpeg4_has_no_index_for_is_left_out(tmp_path: Path) -> None:
    out = _clip_with(tmp_path, _aac(48000, encode(1)[0].t, 1.5, as_rate=50000), "aac50k.mp4")
    with av.open(str(out)) as c:
        assert [s.type for s in c.streams] == ["video"]


def test_aac_without_its_config_gives_a_clip_without_sound(tmp_path: Path) -> None:
    bare = [dataclasses.replace(f, config=None) for f in _aac(48000, encode(1)[0].t, 1.5)]
    out = _clip_with(tmp_path, bare, "bare.mp4")
    with av.open(str(out)) as c:
        assert [s.type for s in c.streams] == ["video"]


# -- more of the writer ----------------------------------------------------------------------------------------------


def test_a_silence_before_the_file_opens_is_taken_out_too(tmp_path: Path) -> None:
    """The file opens once a second of video (or the first sound) is in: a silence before that is cut the same."""
    frames = [f if i < 3 else dataclasses.replace(f, t=f.t + 20.0) for i, f in enumerate(encode(20))]
    out = tmp_path / "early.mp4"
    with ClipWriter(out) as w:  # sound expected: nothing is written to the file before a second of video
        w.write_many(frames)
    steps = [round(b - a, 3) for a, b in itertools.pairwise(_video_times(out))]
    assert steps == [0.1] * 19


def test_frames_in_another_time_base_keep_their_timing(tmp_path: Path) -> None:
    """A file camera's packets come in their stream's time base (here milliseconds), not the clip's 90 kHz."""
    jitter = [0.0, 0.03, -0.02, 0.04, 0.0, -0.03, 0.02, 0.0] * 3  # arrival times only: the pts is what counts
    frames = [dataclasses.replace(f, pts=f.pts // 90, time_base=Fraction(1, 1000), t=f.t + jitter[i])
              for i, f in enumerate(encode(20))]
    out = tmp_path / "ms.mp4"
    with ClipWriter(out, audio=False) as w:
        w.write_many(frames)
    assert [round(t, 3) for t in _video_times(out)] == [round(i / 10, 3) for i in range(20)]


def test_b_frames_are_written_in_decode_order_and_shown_in_presentation_order(tmp_path: Path) -> None:
    ctx = av.CodecContext.create("libx264", "w")
    ctx.width, ctx.height, ctx.pix_fmt = 160, 96, "yuv420p"
    ctx.time_base = Fraction(1, 10)
    ctx.options = {"preset": "ultrafast", "bf": "2", "g": "10", "keyint_min": "10", "sc_threshold": "0"}
    packets = []
    for i in range(20):
        vf = av.VideoFrame.from_ndarray(np.full((96, 160), 16 + 10 * i, np.uint8), format="gray").reformat(
            format="yuv420p")
        vf.pts = i
        packets += ctx.encode(vf)
    packets += ctx.encode(None)
    t0 = 1_700_000_000.0
    frames = [EncodedFrame("video", "h264", bytes(p), int(p.pts) * 9000, VIDEO_TIME_BASE, t0 + int(p.dts) / 10,
                           keyframe=bool(p.is_keyframe), dts=int(p.dts) * 9000) for p in packets]
    assert any(f.dts != f.pts for f in frames)  # there are B-frames
    out = tmp_path / "b.mp4"
    with ClipWriter(out, audio=False) as w:
        w.write_many(frames)
    with av.open(str(out)) as c:
        got = [(float(p.pts * p.time_base), float(p.dts * p.time_base)) for p in c.demux(video=0) if p.size]
    with av.open(str(out)) as c:
        shown = [int(fr.to_ndarray(format="gray").mean() + 5 - 16) // 10 for fr in c.decode(video=0)]
    with av.open(str(out)) as c:  # to the tick (90 kHz): not one frame shown a tick early or late
        ticks = [(p.pts * p.time_base * 90000, (p.pts - p.dts) * p.time_base * 90000)
                 for p in c.demux(video=0) if p.size]
    first_pts = frames[0].pts / 90000
    assert [round(p, 3) for p, _ in got] == [round(f.pts / 90000 - first_pts, 3) for f in frames]  # shown from 0
    assert [round(p - d, 3) for p, d in got] == [round((f.pts - f.dts) / 90000, 3) for f in frames]  # offsets kept
    assert ticks == [(f.pts - frames[0].pts, f.pts - f.dts) for f in frames]
    assert shown == list(range(20))  # every picture once, in order


def test_a_stale_part_from_a_crash_is_replaced(tmp_path: Path) -> None:
    out = tmp_path / "again.mp4"
    part_path_for(out).write_bytes(b"left by a crash")
    with ClipWriter(out, audio=False) as w:
        w.write_many(encode(20))
    assert _video_times(out)[-1] == pytest.approx(1.9) and not part_path_for(out).exists()


def test_a_stale_part_that_is_a_link_is_replaced_not_written_through(tmp_path: Path) -> None:
    """Whatever lies at the part's name (a link planted in the clips folder) is removed, never followed."""
    outside = tmp_path / "outside.txt"
    outside.write_bytes(b"not the hub's")
    folder = tmp_path / "clips"
    folder.mkdir()
    out = folder / "linked.mp4"
    part_path_for(out).symlink_to(outside)
    with ClipWriter(out, audio=False) as w:
        w.write_many(encode(20))
    assert outside.read_bytes() == b"not the hub's"
    assert _video_times(out)[-1] == pytest.approx(1.9)


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A real 32 kB filesystem (tmpfs; needs root, as tests/test_recorder.py's full disks do)."""
    yield from _tmpfs(tmp_path / "disk", "size=32k")


def test_a_disk_full_as_the_file_opens_leaves_no_part_behind(small_disk: Path) -> None:
    """The held first second is muxed when the file opens: the disk fills there, the clip fails and is gone."""
    out = small_disk / "full.mp4"
    w = ClipWriter(out)  # sound expected: the first second is held, then written at once
    with pytest.raises(ClipError, match="No space left"):
        for f in encode(20, gop=5, noisy=True):
            w.write(f)
    assert list(small_disk.iterdir()) == []
    with pytest.raises(ClipError):
        w.write(encode(1)[0])  # a failed clip takes nothing more


@pytest.fixture
def half_disk(tmp_path: Path) -> Iterator[Path]:
    """A real 320 kB filesystem: room for a ~200 kB clip while it records, not for its final copy as well."""
    yield from _tmpfs(tmp_path / "disk", "size=320k")


def test_a_final_copy_the_disk_cannot_hold_keeps_the_part_and_leaves_no_half_copy(half_disk: Path) -> None:
    """close() remuxes the fragmented part into the final MP4, a second copy: when the disk fills during it, the
    complete part stays (the only copy, for recover_partial) and the half-written copy goes (it holds the room)."""
    out = half_disk / "big.mp4"
    w = ClipWriter(out, audio=False)
    w.write_many(encode(20, gop=5, noisy=True))
    with pytest.raises(ClipError) as failed:
        w.close()
    assert is_disk_full(failed.value)
    assert sorted(p.name for p in half_disk.iterdir()) == [part_path_for(out).name]


def test_without_b_frames_decode_and_presentation_times_are_the_same(tmp_path: Path) -> None:
    """WebRTC H.264 has no B-frames: the clip starts at 0 with dts = pts (no edit list for players to honour)."""
    out = tmp_path / "plain.mp4"
    with ClipWriter(out, audio=False) as w:
        w.write_many(encode(20))
    with av.open(str(out)) as c:
        stamps = [(p.dts, p.pts) for p in c.demux(video=0) if p.size]
    assert stamps[0] == (0, 0) and all(d == p for d, p in stamps)


def test_the_duration_so_far_counts_the_frame_still_pending(tmp_path: Path) -> None:
    frames = encode(20)
    with ClipWriter(tmp_path / "d.mp4", audio=False) as w:
        assert (w.duration_s, w.video_frames) == (0.0, 0)
        w.write_many(frames[:15])
        assert w.video_frames == 15
        assert w.duration_s == pytest.approx(1.5)  # 14 intervals written, the 15th frame at its expected length


def test_writing_a_clip_leaves_no_file_open(tmp_path: Path) -> None:
    def open_files() -> int:
        return len(os.listdir("/proc/self/fd"))

    frames = encode(20)
    before = open_files()
    for i in range(3):
        with ClipWriter(tmp_path / f"c{i}.mp4", audio=False) as w:
            w.write_many(frames)
    assert open_files() == before


def test_a_pts_wrap_keeps_the_encoders_clock_not_the_arrival_jitter(tmp_path: Path) -> None:
    """The 32-bit pts wraps mid-clip while frames arrive with network jitter: the clip follows the pts across the
    wrap as everywhere else (arrival times are only the fallback for a pts that jumped)."""
    jitter = [0.0, 0.03, -0.02, 0.04, 0.0, -0.03, 0.02, 0.0] * 3
    base = (1 << 32) - 6 * 9000
    frames = [dataclasses.replace(f, pts=(base + f.pts) % (1 << 32), t=f.t + jitter[i])
              for i, f in enumerate(encode(20))]
    out = tmp_path / "wrap.mp4"
    with ClipWriter(out, audio=False) as w:
        w.write_many(frames)
    assert [round(t, 3) for t in _video_times(out)] == [round(i / 10, 3) for i in range(20)]


def test_what_comes_before_the_first_keyframe_is_skipped_and_counted(tmp_path: Path) -> None:
    video = encode(30)[5:]  # the buffer starts mid-GOP: five P-frames before the keyframe at 1 s
    t_key = video[5].t
    sound = _opus_from(video[0].t, 2.5)  # from 0.5 s; one packet exactly at the keyframe's time
    assert any(f.t == t_key for f in sound)
    out = tmp_path / "mid.mp4"
    with ClipWriter(out) as w:
        w.write_many(sorted(video + sound, key=lambda f: (f.t, f.kind != "video")))
        before = sum(1 for f in sound if f.t < t_key)
        assert w.skipped == 5 + before
    with av.open(str(out)) as c:
        kept = [p for p in c.demux(audio=0) if p.size]
    assert len(kept) == len(sound) - before  # the packet at the keyframe's time is the clip's first sound


def test_a_vp8_cameras_aac_is_left_out_of_its_webm_clip(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    from tests.test_clips import encode_video

    vp8 = [EncodedFrame("video", "vp8", data, pts, VIDEO_TIME_BASE, 1_700_000_000.0 + pts / 90000, key)
           for data, pts, key in encode_video("vp8", n=30)]
    sound = _aac(48000, vp8[0].t, 1.5)
    out = tmp_path / "v.webm"
    with caplog.at_level(logging.INFO, logger="hub.clips"), ClipWriter(out) as w:
        w.write_many(sorted(vp8 + sound, key=lambda f: f.t))
        assert w.skipped == len(sound)
    assert sum("AAC audio cannot go into a WebM clip" in r.getMessage() for r in caplog.records) == 1  # once a clip
    with av.open(str(out)) as c:
        assert [s.type for s in c.streams] == ["video"] and sum(1 for p in c.demux(video=0) if p.size) == 30


def _hevc(n: int) -> list[EncodedFrame]:
    ctx = av.CodecContext.create("libx265", "w")
    ctx.width, ctx.height, ctx.pix_fmt = 160, 96, "yuv420p"
    ctx.time_base = Fraction(1, 10)
    ctx.options = {"x265-params": "log-level=none:keyint=10:min-keyint=10:bframes=0:annexb=1:repeat-headers=1"}
    packets = []
    for i in range(n):
        vf = av.VideoFrame.from_ndarray(np.full((96, 160), 20 + 5 * i, np.uint8), format="gray").reformat(
            format="yuv420p")
        vf.pts = i
        packets += ctx.encode(vf)
    packets += ctx.encode(None)
    return [EncodedFrame("video", "hevc", bytes(p), int(p.pts) * 9000, VIDEO_TIME_BASE,
                         1_700_000_000.0 + int(p.pts) / 10, keyframe=bool(p.is_keyframe)) for p in packets]


def test_an_mp4_clip_takes_h265_but_not_a_codec_change_mid_clip(tmp_path: Path) -> None:
    frames = _hevc(20)
    out = tmp_path / "h.mp4"
    with ClipWriter(out, audio=False) as w:
        w.write_many(frames)
    with av.open(str(out)) as c:
        v = c.streams.video[0]
        assert v.codec_context.name == "hevc" and v.codec_tag == "hvc1"
        assert sum(1 for p in c.demux(video=0) if p.size) == 20
    w = ClipWriter(tmp_path / "mixed.mp4", audio=False)
    w.write_many(frames[:12])
    with pytest.raises(ClipError, match="h264 video cannot go into"):
        w.write(encode(1)[0])
    w.abort()


# -- recovery and probing ------------------------------------------------------------------------------------------


def _abandoned_part(tmp_path: Path, name: str = "crash.mp4", n: int = 35) -> Path:
    """The ``.part`` of a clip as a crash leaves it: what was on disk while it was still recording (the whole
    GOPs written so far), copied then; the writer itself is then given up."""
    video = encode(n)
    w = ClipWriter(tmp_path / name)
    w.write_many(sorted(video + _opus_from(video[0].t, n / 10), key=lambda f: f.t))
    part = part_path_for(tmp_path / name)
    on_disk = part.read_bytes()
    w.abort()
    part.write_bytes(on_disk)
    return part


def test_a_recovered_clip_reports_what_it_holds(tmp_path: Path) -> None:
    part = _abandoned_part(tmp_path)
    info = recover_partial(part)
    assert info is not None and info.path == tmp_path / "crash.mp4" and not part.exists()
    probed = probe_clip(info.path)
    assert (info.video_frames, info.audio_frames) == (probed.video_frames, probed.audio_frames)
    assert info.video_frames == 30 and info.audio_frames > 100  # three whole GOPs, and their sound
    assert not list(tmp_path.glob(".*.tmp"))


def test_a_clip_renamed_just_before_a_crash_is_kept_as_it_is(tmp_path: Path) -> None:
    out = tmp_path / "done.mp4"
    with ClipWriter(out, audio=False) as w:
        w.write_many(encode(20))
    part = part_path_for(out)
    part.write_bytes(b"the .part the crash left next to it")
    info = recover_partial(part)
    assert info is not None and info.path == out and info.video_frames == 20 and not part.exists()


def test_recovering_what_is_not_there_or_holds_no_frame_leaves_nothing_behind(tmp_path: Path) -> None:
    assert recover_partial(tmp_path / ".gone.mp4.part") is None
    part = _abandoned_part(tmp_path, "short.mp4")
    part.write_bytes(part.read_bytes()[:2000])  # the header and no whole frame
    assert recover_partial(part) is None
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_a_part_cut_inside_a_fragment_keeps_the_frames_before_the_cut(tmp_path: Path) -> None:
    """A crash mid-write leaves a half-written fragment: its last sample reads back damaged. Recovery keeps the
    whole GOPs before it (and the frames of the cut one that made it), never gives the clip up for it."""
    part = _abandoned_part(tmp_path)
    data = part.read_bytes()
    part.write_bytes(data[:len(data) // 2])
    info = recover_partial(part)
    assert info is not None and info.video_frames >= 10, info
    assert probe_clip(info.path).video_frames == info.video_frames


def test_a_part_cut_before_its_first_whole_frame_leaves_no_temporary_file(tmp_path: Path) -> None:
    part = _abandoned_part(tmp_path)
    data = part.read_bytes()
    part.write_bytes(data[:data.find(b"moof") + 200])  # the header and part of the first fragment's index
    assert recover_partial(part) is None
    assert list(tmp_path.iterdir()) == []  # neither the part nor the half-made copy


def test_the_start_up_sweep_drops_stale_temporary_files(tmp_path: Path) -> None:
    (tmp_path / ".ev-9.mp4.tmp").write_bytes(b"half a remux")
    _abandoned_part(tmp_path, "ev-8.mp4")
    infos = recover_folder(tmp_path)
    assert [i.path.name for i in infos] == ["ev-8.mp4"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ev-8.mp4"]


def test_odd_names_in_the_clips_folder_are_skipped_with_a_log_line_not_a_crash_at_start(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Start-up recovery must go on past whatever else lies in the clips folder: a file named ``..part`` (no
    final name to give it), folders named like a part or a temp file. Each is left where it is, and said so."""
    folder = tmp_path / "clips" / "cam" / "2026-12-01"
    folder.mkdir(parents=True)
    (folder / "..part").write_bytes(b"not ours")
    (folder / ".odd.mp4.part").mkdir()
    (folder / ".odd.mp4.tmp").mkdir()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (folder / ".link.mp4.part").symlink_to(_abandoned_part(elsewhere, "not-here.mp4"))  # a link is not ours
    _abandoned_part(folder, "ev-7.mp4")
    store = Store(tmp_path / "hub.db")
    try:
        with caplog.at_level(logging.WARNING, logger="hub.clips"):
            recover(store, tmp_path / "clips")
    finally:
        store.close()
    assert sorted(p.name for p in folder.iterdir()) == ["..part", ".link.mp4.part", ".odd.mp4.part",
                                                        ".odd.mp4.tmp", "ev-7.mp4"]
    assert probe_clip(folder / "ev-7.mp4").video_frames == 30
    assert sorted(p.name for p in elsewhere.iterdir()) == [".not-here.mp4.part"]  # untouched through the link
    skipped = [r.getMessage() for r in caplog.records if "skipping" in r.getMessage()]
    assert len(skipped) == 4 and any("..part" in m for m in skipped), skipped
    with pytest.raises(ClipError):
        final_path_for(folder / "..part")


def test_a_full_disk_is_told_by_errno_message_or_cause() -> None:
    assert is_disk_full(OSError(errno.ENOSPC, "No space left on device"))
    assert is_disk_full(OSError(errno.EDQUOT, "Disk quota exceeded"))
    assert is_disk_full(ClipError("x.mp4", "[Errno 28] No space left on device"))
    assert is_disk_full(Exception("database or disk is full"))
    wrapped = ClipError("x.mp4", "muxing failed")
    wrapped.__cause__ = OSError(errno.ENOSPC, "full")
    assert is_disk_full(wrapped)
    assert not is_disk_full(OSError(errno.EACCES, "Permission denied"))
    assert not is_disk_full(ClipError("x.mp4", "vp8 video cannot go into a mp4 clip"))


def test_probing_a_clip_counts_its_frames_and_duration(tmp_path: Path) -> None:
    out = tmp_path / "p.mp4"
    with ClipWriter(out, audio=False) as w:
        w.write_many(encode(20))
    info = probe_clip(out)
    assert (info.video_frames, info.audio_frames, info.codec) == (20, 0, "h264")
    assert info.duration_s == pytest.approx(2.0)


# -- snapshots -----------------------------------------------------------------------------------------------------


def test_a_snapshot_shows_the_last_frame_or_one_deep_in_a_long_gop(tmp_path: Path) -> None:
    import cv2

    frames = encode(40, gop=40)  # one keyframe: the frame is decoded from 0 up to it

    def grey(at: int) -> float:
        info = write_snapshot(frames, frames[at].t + 0.01, tmp_path / "s.jpg", tmp_path / "t.jpg")
        assert info.t == frames[at].t
        return float(cv2.imread(str(info.jpeg_path), cv2.IMREAD_GRAYSCALE).mean())

    for at in (35, 39):
        assert abs(grey(at) - (16 + (at * 7) % 220)) < 3, at


def test_a_part_without_video_recovers_to_nothing(tmp_path: Path) -> None:
    part = tmp_path / ".sound.mp4.part"
    with av.open(str(part), "w", format="mp4") as out:
        s = out.add_stream("aac", rate=48000, layout="mono")
        for i in range(5):
            f = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
            f.sample_rate, f.pts = 48000, i * 1024
            for p in s.encode(f):
                out.mux(p)
    assert recover_partial(part) is None
    assert list(tmp_path.iterdir()) == []
