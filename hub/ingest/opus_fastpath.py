"""Lean receive path for a phone's Opus audio track (private aiortc API, pinned to aiortc 1.16).

Per 20 ms audio packet aiortc runs its generic receiver: a ``datetime.now()`` for ``getSynchronizationSources``,
an audio ``JitterBuffer`` (16 slots) that holds every packet until four newer ones arrived (80 ms of delay the
sound trigger then had to subtract again), and the decoder-queue hand-off to the tap. With the hub reading the
sender's RFC 6464 levels instead of decoding (``EncodedTap.tap_levels``) this was the costliest packet of a
camera: py-spy on ``scripts/bench ingest`` put 50 audio packets a second above 200 record packets.

:class:`OpusFastPath` replaces ``_handle_rtp_packet`` on the audio receiver with a synchronous handler that, in
aiortc's order: drops packets while the receiver is disabled; refreshes the SSRC's "active" time at most every
250 ms; feeds the RTCP receiver statistics (RR loss/jitter to the sender); hands the sender's level to the tap;
and puts each Opus packet (one packet = one frame, RFC 7587) straight into the tap's decoder-queue hook with
aiortc's own rebased timestamp. Packets are released in sequence order as they come: a gap (a lost packet) is
skipped, since Opus frames are independent, and a late or duplicate packet is dropped (the ring buffer keeps
strictly increasing timestamps). Any other payload type goes to aiortc's own handler.

``DirectSrtp`` (``hub/ingest/srtp_direct.py``) calls :meth:`OpusFastPath.handle_sync` without a coroutine;
aiortc's own receive loop (kill switch, tests) awaits :meth:`OpusFastPath.handle`.
"""

from __future__ import annotations

from typing import Any

from hub.ingest.aiortc_names import RECEIVER_DECODER_THREAD
from hub.ingest.fastpath import LeanReceiverPath
from hub.ingest.srtp_direct import run_now


class OpusFastPath(LeanReceiverPath):
    """See the module docstring. ``tap`` is the audio track's :class:`hub.ingest.tap.EncodedTap`."""

    def __init__(self, receiver: Any, tap: Any) -> None:
        super().__init__(receiver, tap)
        self._opus: dict[int, bool] = {}  # payload type -> is Opus
        self._expected: dict[int, int] = {}  # ssrc -> next sequence number
        self.packets = 0
        self.gaps = 0  # packets never received (skipped)
        self.late = 0  # late or duplicate packets dropped
        tap.set_fast_release()  # no jitter-buffer prefetch delay to subtract from arrival times any more
        self.install()

    def handle_sync(self, packet: Any, arrival_time_ms: int) -> None:
        pt = packet.payload_type
        is_opus = self._opus.get(pt)
        if is_opus is None:
            codec = self._codecs.get(pt)
            is_opus = self._opus[pt] = codec is not None and codec.name.lower() == "opus"
        if not is_opus:
            run_now(self._orig(packet, arrival_time_ms), "audio receiver")
            return
        if not self.receiver._enabled:
            return
        self._account(packet, arrival_time_ms, self._codecs[pt])
        ssrc = packet.ssrc

        seq = packet.sequence_number
        expected = self._expected.get(ssrc)
        if expected is not None and seq != expected:
            ahead = (seq - expected) & 0xFFFF
            if ahead >= 0x8000:
                self.late += 1
                return
            self.gaps += ahead
        self._expected[ssrc] = (seq + 1) & 0xFFFF

        level = packet.extensions.audio_level
        if level is not None:
            self.tap.deliver_level(level[1])
        if not packet.payload or not getattr(self.receiver, RECEIVER_DECODER_THREAD):
            return
        self.packets += 1
        frame = self._JitterFrame(data=packet.payload, timestamp=self._mapper.map(packet.timestamp))
        self._put((self._codecs[pt], frame))


def install_opus_fastpath(receiver: Any, tap: Any) -> OpusFastPath:
    """Shadow the audio receiver's ``_handle_rtp_packet`` with the lean path (tap installed first)."""
    return OpusFastPath(receiver, tap)
