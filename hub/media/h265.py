"""H.265 (HEVC) counterpart of ``hub.media.h264``: keyframes, parameter sets and picture size, never decoding.

Most current IP cameras send H.265, and MP4 carries it as is (sample entry ``hvc1``), so the hub treats it like
H.264: Annex B access units in the ring buffer, every keyframe self-contained. Differences that matter here
(ITU-T H.265):

* the NAL header is two bytes and the type is bits 1..6 of the first (7.3.1.2);
* a keyframe is an IRAP picture, NAL types 16..23 (BLA, IDR, CRA): decoding can start there;
* three parameter sets precede it, VPS (32), SPS (33) and PPS (34), in that order, each parsed against the one
  before; MP4 keeps them out of band in the ``hvcC`` box (ISO 14496-15 8.3.3).

Like the H.264 helpers, the hot path (``is_keyframe``, ``ParameterSetCache.fix``) stops at the first slice NAL.
"""

from __future__ import annotations

from dataclasses import dataclass

from hub.media.h264 import START_CODE, H264Error, _BitReader, join_annexb, nal_spans, unescape_rbsp

VPS, SPS, PPS, AUD = 32, 33, 34, 35
_IRAP = range(16, 24)
_VCL_END = 32  # types 0..31 are VCL (slice segments)
_PARAM_SETS = (VPS, SPS, PPS)


class H265Error(H264Error):
    """An H.265 bitstream that cannot be parsed (a ``H264Error`` so callers catch one bitstream error)."""


def nal_type(nal: bytes) -> int:
    return (nal[0] >> 1) & 0x3F


def is_keyframe(data: bytes) -> bool:
    """True when the access unit is an IRAP picture. Stops at the first slice NAL (all slices of a picture agree)."""
    for s, _ in nal_spans(data):
        t = (data[s] >> 1) & 0x3F
        if t < _VCL_END:
            return t in _IRAP
    return False


# --- hvcC ------------------------------------------------------------------------------------------------------


def parse_hvcc(extradata: bytes) -> tuple[int, list[bytes]]:
    """(NAL length size, parameter set NAL units in VPS, SPS, PPS order) from an ``hvcC`` payload.

    Layout (ISO 14496-15 8.3.3.1.2): 21 bytes of profile/format fields, a byte whose low two bits are
    lengthSizeMinusOne, the number of arrays, then per array a type byte, a 16-bit count and 16-bit-length NALs.
    """
    if len(extradata) < 23 or extradata[0] != 1:
        raise H265Error("H.265 extradata is not hvcC")
    length_size = (extradata[21] & 3) + 1
    narrays = extradata[22]
    pos = 23
    found: dict[int, list[bytes]] = {}
    for _ in range(narrays):
        if pos + 3 > len(extradata):
            raise H265Error("hvcC truncated")
        kind = extradata[pos] & 0x3F
        count = int.from_bytes(extradata[pos + 1 : pos + 3], "big")
        pos += 3
        for _ in range(count):
            size = int.from_bytes(extradata[pos : pos + 2], "big")
            nal = extradata[pos + 2 : pos + 2 + size]
            if len(nal) != size:
                raise H265Error("hvcC truncated")
            found.setdefault(kind, []).append(nal)
            pos += 2 + size
    return length_size, [n for kind in _PARAM_SETS for n in found.get(kind, [])]


# --- SPS -------------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SpsInfo:
    profile_idc: int
    level_idc: int
    chroma_format_idc: int
    width: int  # after the conformance window: what a decoder outputs
    height: int


def parse_sps(nal: bytes) -> SpsInfo:
    """Parse an SPS NAL unit (2-byte header included, no start code) as far as the picture size (7.3.2.2.1)."""
    if len(nal) < 3 or nal_type(nal) != SPS:
        raise H265Error("not an H.265 SPS NAL unit")
    r = _BitReader(unescape_rbsp(nal[2:]))
    try:
        r.u(4)  # sps_video_parameter_set_id
        max_sub_layers_minus1 = r.u(3)
        r.u(1)  # sps_temporal_id_nesting_flag
        # profile_tier_level(1, max_sub_layers_minus1), 7.3.3
        r.u(2)  # general_profile_space
        r.u(1)  # general_tier_flag
        profile_idc = r.u(5)
        r.u(32)  # general_profile_compatibility_flags
        r.u(48)  # progressive/interlaced/non-packed/frame-only flags and 44 constraint/reserved bits
        level_idc = r.u(8)
        sub_profile = []
        sub_level = []
        for _ in range(max_sub_layers_minus1):
            sub_profile.append(r.u(1))
            sub_level.append(r.u(1))
        if max_sub_layers_minus1 > 0:
            for _ in range(max_sub_layers_minus1, 8):
                r.u(2)  # reserved_zero_2bits
        for p, lv in zip(sub_profile, sub_level, strict=True):
            if p:
                r.u(88)
            if lv:
                r.u(8)
        r.ue()  # sps_seq_parameter_set_id
        chroma_format_idc = r.ue()
        if chroma_format_idc > 3:
            raise H265Error(f"bad chroma_format_idc {chroma_format_idc}")
        separate_colour_plane = r.u(1) if chroma_format_idc == 3 else 0
        width = r.ue()
        height = r.ue()
        if r.u(1):  # conformance_window_flag: offsets in chroma sample units (7.4.3.2.1)
            left, right, top, bottom = r.ue(), r.ue(), r.ue(), r.ue()
            if chroma_format_idc == 0 or separate_colour_plane:
                sub_w = sub_h = 1
            else:
                sub_w = 1 if chroma_format_idc == 3 else 2
                sub_h = 2 if chroma_format_idc == 1 else 1
            width -= sub_w * (left + right)
            height -= sub_h * (top + bottom)
    except H264Error as e:
        raise H265Error(f"H.265 SPS: {e}") from e
    if width <= 0 or height <= 0:
        raise H265Error("H.265 SPS gives no picture size")
    return SpsInfo(profile_idc=profile_idc, level_idc=level_idc, chroma_format_idc=chroma_format_idc,
                   width=width, height=height)


def find_sps(data: bytes) -> bytes | None:
    """The first SPS NAL of an access unit, if any (parameter sets precede the first slice)."""
    for s, e in nal_spans(data):
        t = (data[s] >> 1) & 0x3F
        if t == SPS:
            return data[s:e]
        if t < _VCL_END:
            return None
    return None


def frame_resolution(data: bytes) -> tuple[int, int] | None:
    sps = find_sps(data)
    if sps is None:
        return None
    info = parse_sps(sps)
    return info.width, info.height


# --- parameter set cache ---------------------------------------------------------------------------------------


class ParameterSetCache:
    """Latest VPS/SPS/PPS of one H.265 stream; puts them in front of every IRAP that arrives without them.

    Same role as ``h264.ParameterSetCache``: a clip may start at any keyframe and the MP4 muxer builds ``hvcC``
    from the first packet's in-band parameter sets, so every stored keyframe must carry all three.
    """

    __slots__ = ("repaired", "sets", "sps_info")

    def __init__(self) -> None:
        self.sets: dict[int, bytes] = {}
        self.sps_info: SpsInfo | None = None
        self.repaired = 0

    @property
    def complete(self) -> bool:
        return len(self.sets) == 3

    @property
    def resolution(self) -> tuple[int, int] | None:
        return None if self.sps_info is None else (self.sps_info.width, self.sps_info.height)

    def fix(self, data: bytes) -> bytes:
        """Observe an access unit; return it with the cached parameter sets in front if it is an IRAP lacking any.

        Cost: one ``bytes.find`` per NAL up to the first slice.
        """
        present: set[int] = set()
        irap = False
        first_vcl = len(data)
        for s, e in nal_spans(data):
            t = (data[s] >> 1) & 0x3F
            if t in _PARAM_SETS:
                present.add(t)
                nal = data[s:e]
                if t == SPS and nal != self.sets.get(SPS):
                    try:  # parse before caching: a corrupt SPS must not replace a good one
                        self.sps_info = parse_sps(nal)
                    except H264Error:
                        continue
                self.sets[t] = nal
            elif t < _VCL_END:
                irap = t in _IRAP
                first_vcl = s
                break
        if not irap or len(present) == 3 or not self.complete:
            return data
        # Rebuild the prefix: VPS, SPS, PPS (each parsed against the one before it), then what the AU had
        # before its first slice apart from parameter sets (AUD first if there was one, SEI), then the slices.
        head = data[:first_vcl]
        others = [n for n in (data[s:e] for s, e in nal_spans(head)) if nal_type(n) not in _PARAM_SETS]
        aud = [n for n in others if nal_type(n) == AUD]
        rest = [n for n in others if nal_type(n) != AUD]
        self.repaired += 1
        return join_annexb(aud + [self.sets[k] for k in _PARAM_SETS] + rest) + START_CODE + data[first_vcl:]
