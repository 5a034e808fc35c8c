"""What the web edge may touch, handed over by the composition root (``hub.app``) as one typed object.

Handlers read it with ``web_context(request)``; nothing in ``hub.web`` imports the root or builds components.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from hub.bus import Bus
from hub.cameras import CameraManager
from hub.config import HubConfig
from hub.control import Controller
from hub.datadir import DataDir
from hub.live import LiveRelays
from hub.store import Store
from hub.tls import CertInfo


@dataclass(frozen=True)
class WebContext:
    config: HubConfig
    data: DataDir
    store: Store
    bus: Bus
    cert: CertInfo
    admin_secret: str
    started_at: float
    cameras: CameraManager
    control: Controller
    live: LiveRelays
    urls: Callable[[], dict[str, str]]  # base, camera page and UI URLs as phones reach them
    closing: Callable[[], bool]  # the hub is shutting down
    cloud_status: Callable[[], dict[str, Any]]  # linked or not, uploads waiting (hub.upload.uploader)


WEB_CONTEXT_KEY: web.AppKey[WebContext] = web.AppKey("web_context", WebContext)


def web_context(request: web.Request) -> WebContext:
    return request.app[WEB_CONTEXT_KEY]
