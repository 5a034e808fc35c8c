"""The encoded tap reaches into aiortc's private receiver internals: this fails loudly when they move."""

import aiortc
import pytest

from hub.ingest.tap import TESTED_AIORTC_VERSION, AiortcInternalsError, check_aiortc_internals


def test_aiortc_internals_present() -> None:
    check_aiortc_internals()


def test_aiortc_version_is_the_pinned_one() -> None:
    assert aiortc.__version__ == TESTED_AIORTC_VERSION, (
        "aiortc changed version: re-verify hub/ingest/tap.py against its source, then bump TESTED_AIORTC_VERSION"
    )


def test_missing_name_is_reported_by_name() -> None:
    class Broken:
        pass

    with pytest.raises(AiortcInternalsError, match="_RTCRtpReceiver__decoder_queue"):
        check_aiortc_internals(Broken())
