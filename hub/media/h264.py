"""Just enough bitstream parsing to handle encoded video without decoding it.

The hub never decodes the record track (see docs/architecture.md), yet it must know which frames are keyframes
(a clip may only start on one), what resolution the camera really sends (browsers silently drop to 320x180 when
bandwidth is short), and it must make sure every IDR carries its SPS/PPS (the MP4 muxer builds the ``avcC``
box from the first packet's in-band parameter sets). Everything here works on Annex B H.264 access units (as
aiortc hands them over: start code + NAL unit, repeated) and on VP8 frames.

Hot-path functions (``is_keyframe``, ``ParameterSetCache.fix``) only look at NAL headers up to the first slice;
they never walk the slice data byte by byte in Python: ``bytes.find`` does the scanning in C.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass
from enum import IntEnum

from hub.media.frames import EncodedFrame

START_CODE = b"\x00\x00\x00\x01"
_SC3 = b"\x00\x00\x01"


class H264Error(ValueError):
    """A bitstream that cannot be parsed (truncated or not H.264/VP8)."""


class NalType(IntEnum):
    """H.264 NAL unit types that matter to the hub (ITU-T H.264 table 7-1)."""

    SLICE = 1  # non-IDR picture slice
    SLICE_DPA = 2
    SLICE_DPB = 3
    SLICE_DPC = 4
    IDR = 5
    SEI = 6
    SPS = 7
    PPS = 8
    AUD = 9
    END_SEQUENCE = 10
    END_STREAM = 11
    FILLER = 12


_VCL = frozenset(range(1, 6))  # slice NALs: every slice of one picture has the same IDR-ness


# --- Annex B ---------------------------------------------------------------------------------------------------


def nal_spans(data: bytes) -> Iterator[tuple[int, int]]:
    """Yield ``(start, end)`` of each NAL unit payload (header byte included, start code excluded).

    Handles 3- and 4-byte start codes alike: a 4-byte code is a 3-byte one preceded by a zero byte, and the zero
    bytes before a start code (``trailing_zero_8bits`` or the 4-byte code's leading zero) are trimmed from the
    previous NAL. A NAL never legitimately ends in 0x00 (RBSP stop bit; cabac_zero_words end in 0x03), so
    trimming is lossless. Data without any start code (e.g. AVCC length-prefixed) yields nothing.
    """
    find = data.find
    i = find(_SC3)
    while i >= 0:
        start = i + 3
        j = find(_SC3, start)
        end = len(data) if j < 0 else j
        while end > start and data[end - 1] == 0:
            end -= 1
        if end > start:
            yield start, end
        i = j


def split_annexb(data: bytes) -> list[bytes]:
    """The NAL units of an Annex B buffer, without start codes."""
    return [data[s:e] for s, e in nal_spans(data)]


def join_annexb(nals: list[bytes]) -> bytes:
    """Annex B with 4-byte start codes (what aiortc produces and what every demuxer accepts)."""
    return b"".join(START_CODE + n for n in nals)


def avcc_to_annexb(data: bytes, length_size: int = 4) -> bytes:
    """Convert length-prefixed NAL units (MP4 sample data) back to Annex B with 4-byte start codes."""
    out: list[bytes] = []
    pos = 0
    n = len(data)
    while pos < n:
        if pos + length_size > n:
            raise H264Error("truncated AVCC length prefix")
        size = int.from_bytes(data[pos : pos + length_size], "big")
        pos += length_size
        if size == 0 or pos + size > n:
            raise H264Error(f"bad AVCC NAL size {size} at offset {pos - length_size}")
        out.append(data[pos : pos + size])
        pos += size
    return join_annexb(out)


def nal_type(nal: bytes) -> int:
    return nal[0] & 0x1F


def nal_types(data: bytes) -> list[int]:
    """Types of all NAL units in an access unit (walks the whole AU: not for the hot path)."""
    return [data[s] & 0x1F for s, _ in nal_spans(data)]


def h264_is_keyframe(data: bytes) -> bool:
    """True when the access unit holds an IDR slice. Stops at the first slice NAL (they all agree)."""
    for s, _ in nal_spans(data):
        t = data[s] & 0x1F
        if t in _VCL:
            return t == NalType.IDR
    return False


def vp8_is_keyframe(data: bytes) -> bool:
    # RFC 6386 9.1: bit 0 of the frame tag is "show_frame inverted key flag": 0 means key frame.
    return len(data) > 0 and data[0] & 1 == 0


def is_keyframe(codec: str, data: bytes) -> bool:
    """Keyframe flag of one encoded frame. Opus packets are always independently decodable."""
    if codec == "h264":
        return h264_is_keyframe(data)
    if codec == "vp8":
        return vp8_is_keyframe(data)
    if codec == "hevc":
        from hub.media import h265  # h265 builds on this module: imported on use

        return h265.is_keyframe(data)
    if codec == "opus":
        return True
    raise ValueError(f"unknown codec {codec!r}")


# --- SPS -------------------------------------------------------------------------------------------------------


def unescape_rbsp(nal: bytes) -> bytes:
    """Remove emulation prevention bytes (00 00 03 -> 00 00) so fields can be read bit by bit."""
    if b"\x00\x00\x03" not in nal:
        return nal
    out = bytearray()
    zeros = 0
    for b in nal:
        if zeros >= 2 and b == 3:
            zeros = 0
            continue
        out.append(b)
        zeros = zeros + 1 if b == 0 else 0
    return bytes(out)


class _BitReader:
    """MSB-first bit reader over a small RBSP (an SPS is a few dozen bytes: an int is simplest and fast)."""

    __slots__ = ("_nbits", "_pos", "_value")

    def __init__(self, data: bytes) -> None:
        self._value = int.from_bytes(data, "big")
        self._nbits = len(data) * 8
        self._pos = 0

    def u(self, n: int) -> int:
        if n == 0:
            return 0
        if self._pos + n > self._nbits:
            raise H264Error("SPS truncated")
        self._pos += n
        return (self._value >> (self._nbits - self._pos)) & ((1 << n) - 1)

    def ue(self) -> int:
        zeros = 0
        while self.u(1) == 0:
            zeros += 1
            if zeros > 31:
                raise H264Error("exp-Golomb code too long")
        return (1 << zeros) - 1 + self.u(zeros)

    def se(self) -> int:
        k = self.ue()
        return (k + 1) // 2 if k & 1 else -(k // 2)


# Profiles whose SPS carries chroma_format_idc, bit depths and scaling matrices (H.264 7.3.2.1.1).
_HIGH_PROFILES = frozenset({100, 110, 122, 244, 44, 83, 86, 118, 128, 138, 139, 134, 135})


@dataclass(frozen=True, slots=True)
class SpsInfo:
    profile_idc: int
    constraint_flags: int
    level_idc: int
    sps_id: int
    chroma_format_idc: int
    bit_depth_luma: int
    width: int  # after cropping: what a decoder outputs
    height: int

    @property
    def codec_string(self) -> str:
        """RFC 6381 codec string, e.g. ``avc1.42c01f`` (for MSE / the web UI)."""
        return f"avc1.{self.profile_idc:02x}{self.constraint_flags:02x}{self.level_idc:02x}"


def _skip_scaling_list(r: _BitReader, size: int) -> None:
    last = 8
    nxt = 8
    for _ in range(size):
        if nxt != 0:
            nxt = (last + r.se() + 256) % 256
        last = last if nxt == 0 else nxt


def parse_sps(nal: bytes) -> SpsInfo:
    """Parse an SPS NAL unit (header byte included, no start code) far enough to get the picture size."""
    if not nal or nal[0] & 0x1F != NalType.SPS:
        raise H264Error("not an SPS NAL unit")
    r = _BitReader(unescape_rbsp(nal[1:]))
    profile_idc = r.u(8)
    constraint_flags = r.u(8)
    level_idc = r.u(8)
    sps_id = r.ue()
    chroma_format_idc = 1  # 4:2:0 is implied for baseline/main/extended
    separate_colour_plane = 0
    bit_depth_luma = 8
    if profile_idc in _HIGH_PROFILES:
        chroma_format_idc = r.ue()
        if chroma_format_idc > 3:
            raise H264Error(f"bad chroma_format_idc {chroma_format_idc}")
        if chroma_format_idc == 3:
            separate_colour_plane = r.u(1)
        bit_depth_luma = r.ue() + 8
        r.ue()  # bit_depth_chroma_minus8
        r.u(1)  # qpprime_y_zero_transform_bypass_flag
        if r.u(1):  # seq_scaling_matrix_present_flag
            for i in range(8 if chroma_format_idc != 3 else 12):
                if r.u(1):
                    _skip_scaling_list(r, 16 if i < 6 else 64)
    r.ue()  # log2_max_frame_num_minus4
    poc_type = r.ue()
    if poc_type == 0:
        r.ue()  # log2_max_pic_order_cnt_lsb_minus4
    elif poc_type == 1:
        r.u(1)  # delta_pic_order_always_zero_flag
        r.se()  # offset_for_non_ref_pic
        r.se()  # offset_for_top_to_bottom_field
        for _ in range(r.ue()):
            r.se()
    elif poc_type != 2:
        raise H264Error(f"bad pic_order_cnt_type {poc_type}")
    r.ue()  # max_num_ref_frames
    r.u(1)  # gaps_in_frame_num_value_allowed_flag
    width_mbs = r.ue() + 1
    height_map_units = r.ue() + 1
    frame_mbs_only = r.u(1)
    if not frame_mbs_only:
        r.u(1)  # mb_adaptive_frame_field_flag
    r.u(1)  # direct_8x8_inference_flag
    width = width_mbs * 16
    height = (2 - frame_mbs_only) * height_map_units * 16
    if r.u(1):  # frame_cropping_flag: offsets are in chroma sample units (7.4.2.1.1)
        left, right, top, bottom = r.ue(), r.ue(), r.ue(), r.ue()
        chroma_array_type = 0 if separate_colour_plane else chroma_format_idc
        if chroma_array_type == 0:
            crop_x, crop_y = 1, 2 - frame_mbs_only
        else:
            sub_w = 1 if chroma_format_idc == 3 else 2
            sub_h = 2 if chroma_format_idc == 1 else 1
            crop_x, crop_y = sub_w, sub_h * (2 - frame_mbs_only)
        width -= crop_x * (left + right)
        height -= crop_y * (top + bottom)
        if width <= 0 or height <= 0:
            raise H264Error("SPS cropping exceeds the picture")
    return SpsInfo(
        profile_idc=profile_idc,
        constraint_flags=constraint_flags,
        level_idc=level_idc,
        sps_id=sps_id,
        chroma_format_idc=chroma_format_idc,
        bit_depth_luma=bit_depth_luma,
        width=width,
        height=height,
    )


def find_sps(data: bytes) -> bytes | None:
    """The first SPS NAL in an access unit, if any (parameter sets precede the first slice)."""
    for s, e in nal_spans(data):
        t = data[s] & 0x1F
        if t == NalType.SPS:
            return data[s:e]
        if t in _VCL:
            return None
    return None


# --- VP8 -------------------------------------------------------------------------------------------------------


def vp8_keyframe_size(data: bytes) -> tuple[int, int] | None:
    """Width/height from a VP8 keyframe header (RFC 6386 9.1), None for inter frames or junk.

    Layout: 3-byte frame tag, start code 9d 01 2a, then 16-bit little-endian width and height whose top two
    bits are a scaling hint the decoder output ignores.
    """
    if len(data) < 10 or data[0] & 1 or data[3:6] != b"\x9d\x01\x2a":
        return None
    w = int.from_bytes(data[6:8], "little") & 0x3FFF
    h = int.from_bytes(data[8:10], "little") & 0x3FFF
    if w == 0 or h == 0:
        return None
    return w, h


def frame_resolution(codec: str, data: bytes) -> tuple[int, int] | None:
    """Resolution carried in a keyframe's own headers, or None when the frame does not say."""
    if codec == "h264":
        sps = find_sps(data)
        if sps is None:
            return None
        info = parse_sps(sps)
        return info.width, info.height
    if codec == "vp8":
        return vp8_keyframe_size(data)
    if codec == "hevc":
        from hub.media import h265

        return h265.frame_resolution(data)
    return None


# --- parameter set cache ---------------------------------------------------------------------------------------


class ParameterSetCache:
    """Remembers the latest SPS/PPS of one H.264 stream and repairs IDRs that arrive without them.

    Browsers repeat SPS/PPS before each IDR, but not every encoder does (and some RTSP cameras send them only
    out of band or once). A clip starts at an arbitrary IDR, and the MP4 muxer needs the parameter sets in that
    first packet, so every IDR stored in the ring buffer must be self-contained. Use one cache per stream:

        frame = cache.fix_frame(frame)   # before RingBuffer.push
    """

    __slots__ = ("pps", "repaired", "sps", "sps_info")

    def __init__(self) -> None:
        self.sps: bytes | None = None
        self.pps: bytes | None = None
        self.sps_info: SpsInfo | None = None
        self.repaired = 0  # IDRs that needed the cached parameter sets

    @property
    def resolution(self) -> tuple[int, int] | None:
        return None if self.sps_info is None else (self.sps_info.width, self.sps_info.height)

    def fix(self, data: bytes) -> bytes:
        """Observe an access unit; return it with cached SPS/PPS inserted if it is an IDR lacking them.

        Cost: one ``bytes.find`` per NAL up to the first slice, so typically one or three per frame.
        """
        sps_span: tuple[int, int] | None = None
        pps_span: tuple[int, int] | None = None
        idr = False
        for s, e in nal_spans(data):
            t = data[s] & 0x1F
            if t == NalType.SPS:
                sps_span = (s, e)
            elif t == NalType.PPS:
                pps_span = (s, e)
            elif t in _VCL:
                idr = t == NalType.IDR
                break
        if sps_span is not None:
            sps = data[sps_span[0] : sps_span[1]]
            if sps != self.sps:
                # Parse before caching: a corrupt SPS must not replace a good one.
                try:
                    self.sps_info = parse_sps(sps)
                    self.sps = sps
                except H264Error:
                    pass
        if pps_span is not None:
            self.pps = data[pps_span[0] : pps_span[1]]
        if not idr or (sps_span is not None and pps_span is not None):
            return data
        if sps_span is None:
            if self.sps is None or (pps_span is None and self.pps is None):
                return data  # nothing to repair with yet; the clip writer will reject it clearly
            prefix = START_CODE + self.sps
            if pps_span is None:
                prefix += START_CODE + self.pps  # type: ignore[operator]
            self.repaired += 1
            return prefix + data
        # SPS present but PPS missing: the PPS must follow its SPS (FFmpeg parses a PPS against its SPS).
        if self.pps is None:
            return data
        self.repaired += 1
        cut = sps_span[1]
        return data[:cut] + START_CODE + self.pps + data[cut:]

    def fix_frame(self, frame: EncodedFrame) -> EncodedFrame:
        """``fix`` for an ``EncodedFrame``; returns the same object when nothing changed."""
        if frame.codec != "h264":
            return frame
        data = self.fix(frame.data)
        if data is frame.data:
            return frame
        return dataclasses.replace(frame, data=data)
