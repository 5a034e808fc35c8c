"""`pingwatch cloud link | unlink | status`: the hub's link to a ping-watch cloud account.

Linking writes `cloud.json` (0600) into the data folder; the running hub's uploader reads it at its next pass,
so neither linking nor unlinking needs a restart.
"""

from __future__ import annotations

import asyncio
import json
import socket
import time
from typing import Annotated, Any

import typer

from hub.cli.common import ConfigOpt, JsonOpt, err, fail, get_config, open_store, out
from hub.config import HubConfig

cloud_app = typer.Typer(help="Link the hub to a cloud account; see what is waiting to upload.", no_args_is_help=True)

UrlOpt = Annotated[str | None, typer.Option("--url", help="The cloud API (default: cloud.api_url in the config).")]


def _api_url(cfg: HubConfig, url: str | None) -> str:
    chosen = url or cfg.cloud.api_url
    if not chosen:
        fail("no cloud API given: pass --url https://... or set cloud.api_url in the config", 2)
    if not chosen.startswith(("https://", "http://127.0.0.1", "http://localhost", "http://[::1]")):
        fail(f"{chosen}: the cloud API must be https:// (plain http only on this machine, for testing)", 2)
    return chosen.rstrip("/")


@cloud_app.command("link")
def cloud_link(url: UrlOpt = None, name: Annotated[str | None, typer.Option(
        "--name", help="A name for this hub in the account (default: the host name).")] = None,
               config: ConfigOpt = None, as_json: JsonOpt = False) -> None:
    """Show a one-time code to enter in the cloud account, wait until it is entered, then save the link."""
    from hub.datadir import DataDir, DataDirError
    from hub.upload.cloud_api import CloudApi, CloudError
    from hub.upload.link import CloudLink, save_link

    cfg = get_config(config)
    base = _api_url(cfg, url)
    try:
        data = DataDir(cfg.storage.data_dir).ensure()
    except DataDirError as exc:
        fail(str(exc), 2)

    async def run() -> CloudLink:
        api = CloudApi(base)
        try:
            start = await api.start_link(name or socket.gethostname())
            code, expires = start["code"], start["expires_at"]
            if as_json:
                print(json.dumps({"status": "pending", "code": code, "expires_at": expires}), flush=True)
            else:
                from hub.cli.hub_run import qr_text

                out.print(f"In your ping-watch cloud account choose [bold]Link a hub[/] and enter [bold]{code}[/]"
                          f" (valid until {expires}), or scan:")
                print(qr_text(f"{base}/?link={code}"))
            deadline = time.monotonic() + 15 * 60
            interval = float(start.get("poll_interval_s") or 2.0)
            with out.status("waiting for the code to be entered…", spinner="dots") if not as_json else _Null():
                while time.monotonic() < deadline:
                    status = await api.poll_link(start["poll_token"])
                    if status.get("status") == "linked":
                        return CloudLink(api_url=base, hub_id=str(status["hub_id"]),
                                         hub_token=str(status["hub_token"]), hub_name=str(status.get("hub_name") or ""))
                    await asyncio.sleep(interval)  # polling the cloud: the code is entered elsewhere
            fail("the code expired before it was entered; run 'pingwatch cloud link' again")
        except CloudError as exc:
            fail(f"{exc.message}" + (f" ({exc.hint})" if exc.hint else ""))
        finally:
            await api.close()

    link = asyncio.run(run())
    save_link(data.root, link)
    if as_json:
        print(json.dumps({"status": "linked", "hub_id": link.hub_id, "hub_name": link.hub_name, "api_url": base}))
    else:
        out.print(f"linked as [bold]{link.hub_name or link.hub_id}[/] ({link.hub_id}); finished events now upload "
                  f"to {base}")


@cloud_app.command("unlink")
def cloud_unlink(config: ConfigOpt = None, as_json: JsonOpt = False) -> None:
    """Forget the link on this hub (uploads stop at once). Unlink it in the account too to revoke its token."""
    from hub.upload.link import load_link, remove_link

    cfg = get_config(config)
    link = load_link(cfg.storage.data_dir)
    removed = remove_link(cfg.storage.data_dir)
    if as_json:
        print(json.dumps({"unlinked": removed, "hub_id": link.hub_id if link else None}))
    elif removed:
        out.print("unlinked: nothing more is uploaded. In the cloud account, unlink the hub "
                  f"{link.hub_id if link else ''} too, so its token stops working.")
    else:
        err.print("this hub was not linked")


@cloud_app.command("status")
def cloud_status(config: ConfigOpt = None, as_json: JsonOpt = False) -> None:
    """The link, whether the cloud answers (plan, credits), the uploads waiting on this hub, and the hub channel
    (event starts waiting to be reported, when the cloud last took the hub's state, command results waiting)."""
    from hub.upload import commands, starts
    from hub.upload.cloud_api import CloudApi, CloudError
    from hub.upload.hub_state import SENT_AT_KEY
    from hub.upload.link import load_link
    from hub.upload.outbox import TABLE

    cfg = get_config(config)
    link = load_link(cfg.storage.data_dir)
    with open_store(cfg, missing_ok=True) as store:
        tables = store.db.table_names() if store is not None else []

        def count(table: str) -> dict[str, int]:
            if store is None or table not in tables:
                return {}
            return dict(store.db.execute(f"SELECT state, COUNT(*) FROM {table} GROUP BY state").fetchall())

        counts = count(TABLE)
        channel: dict[str, Any] = {"report_starts": cfg.cloud.report_starts, "remote_control": cfg.cloud.remote_control,
                                   "starts": count(starts.TABLE), "command_results": count(commands.TABLE),
                                   "state_reported_at": None}
        if store is not None:
            row = store.db.execute("SELECT value FROM meta WHERE key = ?", [SENT_AT_KEY]).fetchone()
            channel["state_reported_at"] = float(row[0]) if row else None
    info: dict[str, Any] = {"linked": link is not None, "enabled": cfg.cloud.enabled, "outbox": counts,
                            "api_url": link.api_url if link else None, "hub_id": link.hub_id if link else None,
                            "channel": channel}
    if link is not None:
        async def ask() -> dict[str, Any]:
            api = CloudApi(link.api_url, link.hub_token, timeout_s=10)
            try:
                return await api.whoami()
            finally:
                await api.close()

        try:
            me = asyncio.run(ask())
            info |= {"reachable": True, "plan": me.get("plan"), "credits": me.get("credits")}
        except CloudError as exc:
            info |= {"reachable": False, "error": exc.message}
    if as_json:
        print(json.dumps(info, default=str))
        return
    if link is None:
        out.print("not linked: run 'pingwatch cloud link --url https://…' to upload events to a cloud account")
    else:
        out.print(f"linked to {link.api_url} as {link.hub_name or link.hub_id}")
        if info.get("reachable"):
            c = info.get("credits") or {}
            out.print(f"cloud reachable; credits this month: {c.get('used', '?')} used, {c.get('left', '?')} left")
        else:
            out.print(f"[yellow]cloud not reachable:[/] {info.get('error')}")
    waiting = sum(counts.get(s, 0) for s in ("pending", "uploading", "finalizing"))
    out.print(f"uploads waiting: {waiting}; done: {counts.get('done', 0)}; refused: {counts.get('refused', 0)}")
    sc, rc = channel["starts"], channel["command_results"]
    at = channel["state_reported_at"]
    out.print(f"event starts waiting: {sc.get('pending', 0)}; reported: {sc.get('sent', 0)}; "
              f"command results waiting: {rc.get('pending', 0)}; state last reported: "
              + (time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(at)) if at else "never"))


class _Null:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None
