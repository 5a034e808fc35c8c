"""The worker process: configuration → model, database, storage → the queue consumer, stopped by SIGTERM/SIGINT.

The model is loaded before anything connects, so a model that does not load stops the process at once with the
reason (a worker that takes messages it cannot analyse would only fill the poison queue).
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Callable

from cloud.api.app import Services
from cloud.config import CloudConfig
from cloud.worker.analysis import AnalysisConfig, detector_for
from cloud.worker.consumer import Consumer
from cloud.worker.model import Detector
from cloud.worker.vlm import VlmClient, VlmConfig

log = logging.getLogger(__name__)


def analysis_config(config: CloudConfig) -> AnalysisConfig:
    w = config.worker
    return AnalysisConfig(model_path=w.model_path, batch_size=w.batch_size, min_confidence=w.min_confidence,
                          timezone=w.timezone)


def load_detector(config: CloudConfig) -> tuple[AnalysisConfig, Detector]:
    """Raises ModelError (reason ``model_unavailable``) when the model is missing or does not load."""
    base = analysis_config(config)
    return base, detector_for(base)


def vlm_client(config: CloudConfig) -> VlmClient | None:
    v = config.worker.vlm
    if not v.enabled or not v.base_url or not v.model:
        return None
    return VlmClient(VlmConfig(base_url=v.base_url, model=v.model, api_key=v.api_key or "",
                               api_key_header=v.api_key_header, api_version=v.api_version, timeout_s=v.timeout_s,
                               max_calls=v.max_calls, max_frames=v.max_frames, min_score=v.min_score))


async def serve(config: CloudConfig, base: AnalysisConfig, detector: Detector,
                ready: Callable[[Consumer], None] | None = None) -> None:
    """Run until SIGTERM or SIGINT; raises SchemaOutOfDate when the database is not migrated."""
    services = Services.build(config)
    vlm = vlm_client(config)
    try:
        await services.start()
        consumer = Consumer(services.worker, services.ctx.blobs, services.ctx.queue, config.worker, base, detector,
                            vlm)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, consumer.stop)
        if ready is not None:
            ready(consumer)
        await consumer.run()
        log.info("worker stopped")
    finally:
        if vlm is not None:
            await vlm.close()
        await services.close()
