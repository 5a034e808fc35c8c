"""The hub channel: what a linked hub tells the cloud besides its clips, and what it takes from it.

Three senders, each its own task so none waits behind another (nor behind the uploader's clips):
``StartReporter`` (an event's start with its snapshot: the first stage of the cloud's Telegram alert),
``StateReporter`` (armed, disarmed until, cameras online: on change and as a heartbeat) and ``CommandRunner``
(arm / disarm / snapshot asked by the account, acted on through the hub's control surface, results posted back).

Each reads the link (``cloud.json``) at every pass, as the uploader does, so linking or unlinking needs no
restart; ``LinkedClient`` keeps one HTTP client per link and replaces it when the link changes.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any, Protocol

from hub.store import Store
from hub.upload.cloud_api import CloudApi
from hub.upload.link import CloudLink

log = logging.getLogger(__name__)

UNLINKED_RECHECK_S = 30.0  # how often an idle sender looks for a (new) link: linking needs no restart


class Sender(Protocol):
    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    def status(self) -> dict[str, Any]: ...


ApiFactory = Callable[[CloudLink], CloudApi]


def default_api(link: CloudLink) -> CloudApi:
    return CloudApi(link.api_url, link.hub_token)


class LinkedClient:
    """One ``CloudApi`` for the current link; a new one when the link changes (the old one is closed)."""

    def __init__(self, load_link: Callable[[], CloudLink | None], factory: ApiFactory | None = None) -> None:
        self._load_link = load_link
        self._factory = factory or default_api
        self._api: CloudApi | None = None
        self._link: CloudLink | None = None
        self._closing: set[asyncio.Future[None]] = set()

    def current(self) -> CloudApi | None:
        """The client for the link saved now, or None when the hub is not linked."""
        link = self._load_link()
        if link != self._link:
            if self._api is not None:  # relinked or unlinked: close the old client without waiting for it
                task = asyncio.ensure_future(self._api.close())
                self._closing.add(task)  # asyncio holds tasks weakly: keep it until it is done
                task.add_done_callback(self._closing.discard)
            self._api, self._link = (self._factory(link) if link is not None else None), link
        return self._api

    @property
    def link(self) -> CloudLink | None:
        return self._link

    async def close(self) -> None:
        if self._api is not None:
            await self._api.close()
        self._api = self._link = None
        await asyncio.gather(*self._closing, return_exceptions=True)


class CameraMirror:
    """The cloud must know a camera before it accepts a start or a state naming it: the hub's cameras are
    mirrored (PUT /hub/cameras, idempotent) when they changed since the last mirror through this client."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self._synced: tuple[CloudApi, tuple[tuple[str, str], ...]] | None = None

    def forget(self) -> None:
        self._synced = None

    async def sync(self, api: CloudApi, *, force: bool = False) -> None:
        cams = tuple(sorted((c["id"], c["name"]) for c in self._store.list_cameras()))
        if force or self._synced != (api, cams):
            await api.put_cameras([{"id": cid, "name": name} for cid, name in cams])
            self._synced = (api, cams)


class CloudChannel:
    """The three senders as one lifecycle stage and one status."""

    def __init__(self, starts: Sender, state: Sender, commands: Sender) -> None:
        self.starts, self.state, self.commands = starts, state, commands

    async def start(self) -> None:
        started: list[Sender] = []
        try:
            for sender in (self.starts, self.state, self.commands):
                await sender.start()
                started.append(sender)
        except BaseException:
            for sender in reversed(started):
                await sender.stop()
            raise

    async def stop(self) -> None:
        for sender in (self.commands, self.state, self.starts):
            try:
                await sender.stop()
            except Exception:
                log.exception("a cloud channel sender failed to stop")

    def status(self) -> dict[str, Any]:
        return {"starts": self.starts.status(), "state": self.state.status(), "commands": self.commands.status()}
