"""`pingwatch`: set up, run and operate the hub.

Commands that make the running hub act (pairing, revoking, arming, deleting an event) talk to its API on
127.0.0.1 with the admin secret (`common.api_call`); read-only commands open the data folder's database
(`common.open_store`), so they work while the hub is stopped too.
Every listing has ``--json``; exit codes: 0 ok, 1 the thing asked for failed, 2 bad usage or configuration.

One module per command group: setup (init, config validate, doctor), hub_run (hub run, pair), cameras, events,
arming (arm, disarm, status), replay, cloud (link, unlink, status), telegram (link, unlink, status). Heavy imports
(av, aiortc, cv2, hub.app) stay inside the commands that
need them, so `pingwatch --help` stays fast.
"""

from __future__ import annotations

import sys

import typer

from hub.cli.arming import arm, disarm, status
from hub.cli.cameras import cameras_app
from hub.cli.cloud import cloud_app
from hub.cli.events import events_app
from hub.cli.hub_run import hub_app, pair
from hub.cli.replay import replay
from hub.cli.setup import config_app, doctor, init
from hub.cli.telegram import telegram_app
from hub.datadir import private_umask

# Plain (click) help: typer's rich help shows a "<bool>" type for every flag (typer 0.29), as if it took a value.
app = typer.Typer(help="ping-watch: old phones become cameras for your home hub.", no_args_is_help=True,
                  add_completion=False, pretty_exceptions_enable=False, rich_markup_mode=None)

# Registration order is the order `pingwatch --help` lists them in.
app.command()(init)
app.command()(doctor)
app.command()(pair)
app.command()(replay)
app.command()(arm)
app.command()(disarm)
app.command()(status)
app.add_typer(hub_app, name="hub")
app.add_typer(config_app, name="config")
app.add_typer(cameras_app, name="cameras")
app.add_typer(events_app, name="events")
app.add_typer(cloud_app, name="cloud")
app.add_typer(telegram_app, name="telegram")


def main() -> None:
    # Whatever the caller's umask (022 under most shells and systemd), what the hub writes is its user's alone:
    # the config (credentials), the database, clips and snapshots (hub/datadir.py).
    private_umask()
    app()


def module_main() -> None:
    """`python -m hub [--config FILE]`: the same as `pingwatch hub run`."""
    private_umask()
    sys.argv[1:1] = ["hub", "run"]
    app()
