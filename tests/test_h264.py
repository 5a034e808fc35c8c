"""Annex B parsing, keyframe flags, SPS resolution and the parameter set cache, on real encoder output."""

from __future__ import annotations

from fractions import Fraction

import av
import numpy as np
import pytest

from hub.media import h264
from hub.media.frames import VIDEO_TIME_BASE, EncodedFrame
from hub.media.h264 import NalType, ParameterSetCache


def encode(
    codec: str,
    w: int,
    h: int,
    n: int = 3,
    gop: int = 2,
    profile: str = "baseline",
    pix_fmt: str = "yuv420p",
    x264_params: str | None = None,
) -> list[tuple[bytes, bool]]:
    """n frames of noise-free gradient through libx264/libvpx; returns (data, encoder's keyframe flag)."""
    ctx = av.CodecContext.create("libx264" if codec == "h264" else "libvpx", "w")
    ctx.width, ctx.height, ctx.pix_fmt = w, h, pix_fmt
    ctx.time_base = Fraction(1, 90000)
    ctx.framerate = 15
    ctx.gop_size = gop
    if codec == "h264":
        opts = {"profile": profile, "preset": "ultrafast", "tune": "zerolatency", "bf": "0"}
        # ultrafast turns off every High tool and x264 then signals Baseline: ask for 8x8 transforms.
        params = [x264_params] if x264_params else []
        if profile != "baseline":
            params.append("8x8dct=1:cabac=1")
        if params:
            opts["x264-params"] = ":".join(params)
        ctx.options = opts
    else:
        ctx.options = {"deadline": "realtime", "cpu-used": "8", "lag-in-frames": "0"}
    yy, xx = np.mgrid[0:h, 0:w]
    out = []
    for i in range(n):
        img = ((xx + 2 * yy + 5 * i) % 256).astype(np.uint8)
        f = av.VideoFrame.from_ndarray(np.stack([img] * 3, -1), format="rgb24").reformat(format=pix_fmt)
        f.pts, f.time_base = i * 6000, ctx.time_base
        out += ctx.encode(f)
    out += ctx.encode(None)
    return [(bytes(p), bool(p.is_keyframe)) for p in out]


# --- Annex B -------------------------------------------------------------------------------------------------------


def test_split_handles_3_and_4_byte_start_codes() -> None:
    data = b"\x00\x00\x00\x01\x67\xaa\xbb" + b"\x00\x00\x01\x68\xcc" + b"\x00\x00\x00\x01\x65\x01\x02\x00\x00"
    assert h264.split_annexb(data) == [b"\x67\xaa\xbb", b"\x68\xcc", b"\x65\x01\x02"]
    assert h264.nal_types(data) == [7, 8, 5]
    assert h264.split_annexb(b"") == []
    assert h264.split_annexb(b"\x00\x00\x00\x10\x65") == []  # AVCC-looking, no start code
    assert h264.join_annexb([b"\x67", b"\x68"]) == b"\x00\x00\x00\x01\x67\x00\x00\x00\x01\x68"


def test_avcc_round_trip() -> None:
    nals = [b"\x67\x42", b"\x68\xce", b"\x65" + bytes(300)]
    avcc = b"".join(len(n).to_bytes(4, "big") + n for n in nals)
    assert h264.avcc_to_annexb(avcc) == h264.join_annexb(nals)
    with pytest.raises(h264.H264Error):
        h264.avcc_to_annexb(avcc[:-1])


def test_real_access_units_mix_start_code_lengths() -> None:
    # libx264 writes 4-byte codes before parameter sets and 3-byte ones before some NALs: both must split.
    key, _ = encode("h264", 320, 240, n=1)[0]
    assert b"\x00\x00\x01\x06" in key or b"\x00\x00\x01\x65" in key
    types = h264.nal_types(key)
    assert types[:2] == [NalType.SPS, NalType.PPS] and NalType.IDR in types


# --- keyframes -------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("codec", ["h264", "vp8"])
def test_keyframe_detection_matches_encoder(codec: str) -> None:
    frames = encode(codec, 160, 120, n=7, gop=3)
    flags = [k for _, k in frames]
    assert flags.count(True) >= 2 and flags.count(False) >= 2
    assert [h264.is_keyframe(codec, d) for d, _ in frames] == flags


def test_is_keyframe_edge_cases() -> None:
    assert not h264.is_keyframe("h264", b"")
    assert not h264.is_keyframe("h264", b"\x00\x00\x00\x01\x41\x9a")  # non-IDR slice
    # AUD + SEI before the IDR slice
    assert h264.is_keyframe("h264", b"\x00\x00\x00\x01\x09\xf0\x00\x00\x01\x06\x05\x00\x00\x01\x65\x88")
    assert not h264.is_keyframe("vp8", b"")
    assert h264.is_keyframe("opus", b"\x78")
    with pytest.raises(ValueError):
        h264.is_keyframe("av1", b"\x00")


# --- SPS -------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "w,h,profile,pix_fmt,params",
    [
        (320, 240, "baseline", "yuv420p", None),
        (640, 360, "baseline", "yuv420p", None),  # 360 = 22.5 MBs: bottom crop
        (1280, 720, "baseline", "yuv420p", None),
        (1920, 1080, "high", "yuv420p", None),  # 1088 coded, cropped; high profile chroma fields
        (638, 358, "high", "yuv420p", "cqm=jvt"),  # crop both ways (x264 puts the matrices in the PPS)
        (322, 242, "high444", "yuv444p", None),  # chroma_format_idc 3: crop unit is 1 luma sample
        (176, 144, "high422", "yuv422p", None),  # chroma_format_idc 2
    ],
)
def test_sps_resolution(w: int, h: int, profile: str, pix_fmt: str, params: str | None) -> None:
    key, flag = encode("h264", w, h, n=1, profile=profile, pix_fmt=pix_fmt, x264_params=params)[0]
    assert flag
    sps = h264.find_sps(key)
    assert sps is not None
    info = h264.parse_sps(sps)
    assert (info.width, info.height) == (w, h)
    assert h264.frame_resolution("h264", key) == (w, h)
    if profile == "baseline":
        assert info.profile_idc == 66 and info.codec_string.startswith("avc1.42")
    else:
        assert info.profile_idc >= 100
    assert info.chroma_format_idc == {"yuv420p": 1, "yuv422p": 2, "yuv444p": 3}[pix_fmt]


@pytest.mark.parametrize("w,h", [(160, 120), (1280, 720), (642, 362)])
def test_vp8_keyframe_size(w: int, h: int) -> None:
    frames = encode("vp8", w, h, n=2, gop=10)
    assert h264.vp8_keyframe_size(frames[0][0]) == (w, h)
    assert h264.frame_resolution("vp8", frames[0][0]) == (w, h)
    assert h264.vp8_keyframe_size(frames[1][0]) is None  # inter frame
    assert h264.vp8_keyframe_size(b"\x00\x00\x00junk_junk") is None


def test_bit_reader_exp_golomb() -> None:
    # ue: 1 -> 0, 010 -> 1, 011 -> 2, 00100 -> 3; se of codeNum 1,2,3,4 -> 1,-1,2,-2
    r = h264._BitReader(bytes([0b10100110, 0b01000000]))
    assert [r.ue(), r.ue(), r.ue(), r.ue()] == [0, 1, 2, 3]
    r = h264._BitReader(bytes([0b01001100, 0b10000101]))
    assert [r.se(), r.se(), r.se(), r.se()] == [1, -1, 2, -2]
    with pytest.raises(h264.H264Error):
        h264._BitReader(b"\x00").ue()


class _BitWriter:
    def __init__(self) -> None:
        self.bits: list[int] = []

    def u(self, n: int, v: int) -> None:
        self.bits += [(v >> (n - 1 - i)) & 1 for i in range(n)]

    def ue(self, v: int) -> None:
        k = (v + 1).bit_length()
        self.u(k - 1, 0)
        self.u(k, v + 1)

    def se(self, v: int) -> None:
        self.ue(2 * v - 1 if v > 0 else -2 * v)

    def rbsp(self) -> bytes:
        bits = [*self.bits, 1]  # rbsp_stop_one_bit
        bits += [0] * (-len(bits) % 8)
        return bytes(int("".join(map(str, bits[i : i + 8])), 2) for i in range(0, len(bits), 8))


def _escape(rbsp: bytes) -> bytes:
    out, zeros = bytearray(), 0
    for b in rbsp:
        if zeros >= 2 and b <= 3:
            out.append(3)
            zeros = 0
        out.append(b)
        zeros = zeros + 1 if b == 0 else 0
    return bytes(out)


@pytest.mark.parametrize("frame_mbs_only", [1, 0])
def test_sps_scaling_lists_poc1_and_fields(frame_mbs_only: int) -> None:
    # Hand-made High 4:2:0 SPS exercising what encoders here do not emit: scaling lists (one ending early
    # via nextScale 0), pic_order_cnt_type 1 and field coding (crop unit doubles vertically).
    w = _BitWriter()
    w.u(8, 100), w.u(8, 0), w.u(8, 40), w.ue(0)
    w.ue(1), w.ue(0), w.ue(0), w.u(1, 0)  # chroma 4:2:0, 8 bit, no bypass
    w.u(1, 1)  # seq_scaling_matrix_present_flag
    for i in range(8):
        present = i in (0, 6)
        w.u(1, int(present))
        if present:
            w.se(5), w.se(-3), w.se(-10)  # 8 -> 13 -> 10 -> 0: nextScale 0 ends the explicit list
    w.ue(0)  # log2_max_frame_num_minus4
    w.ue(1)  # pic_order_cnt_type 1
    w.u(1, 0), w.se(-2), w.se(1), w.ue(2), w.se(4), w.se(-4)
    w.ue(4), w.u(1, 0)  # max_num_ref_frames, gaps
    w.ue(1920 // 16 - 1)
    map_units = 1088 // 16 if frame_mbs_only else 1088 // 32
    w.ue(map_units - 1)
    w.u(1, frame_mbs_only)
    if not frame_mbs_only:
        w.u(1, 0)
    w.u(1, 1)  # direct_8x8_inference
    w.u(1, 1)  # frame_cropping_flag
    bottom = 4 if frame_mbs_only else 2  # 8 luma rows either way: unit is 2, or 4 with fields
    w.ue(0), w.ue(0), w.ue(0), w.ue(bottom)
    w.u(1, 0)  # vui_parameters_present_flag
    nal = b"\x67" + _escape(w.rbsp())
    info = h264.parse_sps(nal)
    assert (info.width, info.height, info.profile_idc) == (1920, 1080, 100)


def test_emulation_prevention_removed() -> None:
    assert h264.unescape_rbsp(b"\x67\x00\x00\x03\x01\x00\x00\x03\x00") == b"\x67\x00\x00\x01\x00\x00\x00"
    assert h264.unescape_rbsp(b"\x67\x01\x02") == b"\x67\x01\x02"


def test_parse_sps_rejects_garbage() -> None:
    with pytest.raises(h264.H264Error):
        h264.parse_sps(b"\x68\x00")  # a PPS
    with pytest.raises(h264.H264Error):
        h264.parse_sps(b"\x67\x42\xc0")  # truncated
    with pytest.raises(h264.H264Error):
        h264.frame_resolution("h264", b"\x00\x00\x00\x01\x67\x42")


# --- parameter set cache -------------------------------------------------------------------------------------------


def _strip(au: bytes, types: tuple[int, ...]) -> bytes:
    return h264.join_annexb([n for n in h264.split_annexb(au) if h264.nal_type(n) not in types])


def _decodes(frames: list[bytes]) -> int:
    ctx = av.CodecContext.create("h264", "r")
    n = 0
    for d in frames:
        n += len(ctx.decode(av.Packet(d)))
    return n + len(ctx.decode(None))


def test_parameter_set_cache_repairs_bare_idr() -> None:
    frames = [d for d, _ in encode("h264", 320, 240, n=6, gop=3)]
    assert [h264.is_keyframe("h264", d) for d in frames] == [True, False, False, True, False, False]
    cache = ParameterSetCache()
    cache.fix(frames[0])
    assert cache.resolution == (320, 240)
    bare = _strip(frames[3], (7, 8))
    fixed = cache.fix(bare)
    assert h264.nal_types(fixed)[:2] == [7, 8] and cache.repaired == 1
    # The repaired IDR alone (a clip starting there) decodes.
    assert _decodes([fixed, *frames[4:]]) == 3
    # P frames and complete IDRs pass through untouched (same object: no copy on the hot path).
    assert cache.fix(frames[1]) is frames[1]
    assert cache.fix(frames[3]) is frames[3]


def test_parameter_set_cache_inserts_pps_after_sps() -> None:
    frames = [d for d, _ in encode("h264", 320, 240, n=4, gop=3)]
    cache = ParameterSetCache()
    cache.fix(frames[0])
    fixed = cache.fix(_strip(frames[3], (8,)))
    assert h264.nal_types(fixed)[:2] == [7, 8]
    assert _decodes([fixed]) == 1


def test_parameter_set_cache_without_cache_leaves_frame_and_keeps_good_sps() -> None:
    frames = [d for d, _ in encode("h264", 320, 240, n=1)]
    bare = _strip(frames[0], (7, 8))
    cache = ParameterSetCache()
    assert cache.fix(bare) is bare
    cache.fix(frames[0])
    cache.fix(b"\x00\x00\x00\x01\x67\x42\x00\x00\x00\x01\x41\x9a")  # corrupt SPS must not replace the good one
    assert cache.resolution == (320, 240)


def test_fix_frame() -> None:
    frames = [d for d, _ in encode("h264", 320, 240, n=4, gop=3)]
    cache = ParameterSetCache()
    first = EncodedFrame("video", "h264", frames[0], 0, VIDEO_TIME_BASE, 0.0, True)
    assert cache.fix_frame(first) is first
    bare = EncodedFrame("video", "h264", _strip(frames[3], (7, 8)), 18000, VIDEO_TIME_BASE, 0.2, True)
    fixed = cache.fix_frame(bare)
    assert fixed is not bare and fixed.pts == 18000 and h264.find_sps(fixed.data) is not None
    vp8 = EncodedFrame("video", "vp8", b"\x10\x02\x00", 0, VIDEO_TIME_BASE, 0.0, True)
    assert cache.fix_frame(vp8) is vp8
