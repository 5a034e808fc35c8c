"""The hub's aiohttp application: error middleware, the API and phone page, the web UI. Built by the root."""

from __future__ import annotations

from aiohttp import web

from hub.web.api import setup_routes
from hub.web.context import WEB_CONTEXT_KEY, WebContext
from hub.web.errors import json_errors
from hub.web.ui import setup_ui


def build_web_app(ctx: WebContext) -> web.Application:
    app = web.Application(client_max_size=ctx.config.server.max_body_bytes, middlewares=[json_errors])
    app[WEB_CONTEXT_KEY] = ctx
    setup_routes(app)
    setup_ui(app)  # the web UI owns "/"
    return app
