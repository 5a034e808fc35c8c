"""The private aiortc names the receive path reaches for, in one place, with the version they were checked on.

The encoded tap (``tap.py``), the lean receive path (``fastpath.py``, ``opus_fastpath.py``), direct SRTP
dispatch (``srtp_direct.py``) and the peer (``webrtc.py``) all import these from here, so no module borrows
another's private names; each module's ``check_*_internals`` verifies the ones it uses against the installed
aiortc and raises ``AiortcInternalsError`` naming what moved.
"""

from __future__ import annotations

TESTED_AIORTC_VERSION = "1.16.0"

RECEIVER_ACTIVE_SSRC = "_RTCRtpReceiver__active_ssrc"
RECEIVER_CODECS = "_RTCRtpReceiver__codecs"
RECEIVER_DECODER_ERROR = "_RTCRtpReceiver__decoder_error"
RECEIVER_DECODER_QUEUE = "_RTCRtpReceiver__decoder_queue"
RECEIVER_DECODER_THREAD = "_RTCRtpReceiver__decoder_thread"
RECEIVER_ESTIMATOR = "_RTCRtpReceiver__remote_bitrate_estimator"
RECEIVER_JITTER_BUFFER = "_RTCRtpReceiver__jitter_buffer"
RECEIVER_NACK_GENERATOR = "_RTCRtpReceiver__nack_generator"
RECEIVER_REMOTE_STREAMS = "_RTCRtpReceiver__remote_streams"
RECEIVER_RTCP_SSRC = "_RTCRtpReceiver__rtcp_ssrc"
RECEIVER_RTX_SSRC = "_RTCRtpReceiver__rtx_ssrc"
RECEIVER_SEND_PLI = "_send_rtcp_pli"
RECEIVER_SEND_RTCP = "_send_rtcp"
RECEIVER_TIMESTAMP_MAPPER = "_RTCRtpReceiver__timestamp_mapper"
TRACK_QUEUE = "_queue"


class AiortcInternalsError(RuntimeError):
    """aiortc's private receiver internals are not what the receive path was written against."""
