"""`pingwatch-cloud`: run the cloud API, migrate its database, create accounts, run the inference worker,
analyse a local clip.

Exit codes: 0 ok, 1 the thing asked for failed, 2 bad usage or configuration.
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Any

import typer

from cloud.config import CloudConfig, ConfigError, load_config
from cloud.worker.analyse_cli import analyse
from pingwatch_common.logredact import RedactBotToken

app = typer.Typer(help="ping-watch cloud API.", no_args_is_help=True, add_completion=False,
                  pretty_exceptions_enable=False)
accounts_app = typer.Typer(help="Manage accounts.", no_args_is_help=True)
app.add_typer(accounts_app, name="accounts")
app.command("analyse")(analyse)

DEFAULT_CONFIG = Path("config/cloud.yaml")
ConfigOpt = typer.Option(None, "--config", "-c", envvar="PINGWATCH_CLOUD_CONFIG",
                         help="Config file (default: config/cloud.yaml if it exists, else built-in defaults).")
JsonOpt = typer.Option(False, "--json", help="Print JSON for scripts.")


def _fail(message: str, code: int = 1) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def _config(path: Path | None) -> CloudConfig:
    if path is None and DEFAULT_CONFIG.exists():
        path = DEFAULT_CONFIG
    try:
        return load_config(path)
    except ConfigError as exc:
        _fail(str(exc), 2)
        raise  # unreachable


def _print(result: dict[str, Any], as_json: bool, text: str) -> None:
    typer.echo(json.dumps(result) if as_json else text)


def _logging(cfg: CloudConfig) -> None:
    logging.basicConfig(level=cfg.log.level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for handler in logging.getLogger().handlers:
        handler.addFilter(RedactBotToken())
    if cfg.log.level != "debug":
        # The storage SDK logs every HTTP request at INFO, APScheduler every job run, httpx every request (the
        # Telegram bot's among them): noise at info level.
        for noisy in ("azure", "apscheduler", "httpx"):
            logging.getLogger(noisy).setLevel(logging.WARNING)


def _redact(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


@app.command()
def run(
    config: Path | None = ConfigOpt,
    host: str | None = typer.Option(None, help="Override server.host."),
    port: int | None = typer.Option(None, help="Override server.port."),
    migrate: bool = typer.Option(False, "--migrate", help="Apply pending migrations first."),
) -> None:
    """Run the API (Ctrl-C or SIGTERM stops it cleanly)."""
    from aiohttp import web

    from cloud.api.app import SchemaOutOfDate, serve

    cfg = _config(config)
    if host:
        cfg.server.host = host
    if port:
        cfg.server.port = port
    if migrate:
        cfg.database.migrate_on_start = True
    _logging(cfg)
    url = cfg.server.public_url or f"http://{cfg.server.host}:{cfg.server.port}"

    def announce(_: str) -> None:
        typer.echo(f"ping-watch cloud API on {url}  (database {_redact(cfg.database.url)}; "
                   f"OpenAPI {url}/api/openapi.json)")

    try:
        web.run_app(serve(cfg), host=cfg.server.host, port=cfg.server.port, print=announce,
                    access_log=logging.getLogger("cloud.api.access"))
    except SchemaOutOfDate as exc:
        _fail(str(exc), 2)
    except OSError as exc:
        _fail(f"cannot listen on {cfg.server.host}:{cfg.server.port}: {exc.strerror}", 1)


@app.command()
def worker(
    config: Path | None = ConfigOpt,
    model: str | None = typer.Option(None, help="Override worker.model_path (an Ultralytics YOLO ONNX export)."),
    concurrency: int | None = typer.Option(None, min=1, max=32, help="Override worker.concurrency."),
) -> None:
    """Run the inference worker: analyse queued events until SIGTERM (run N of them for N times the work)."""
    import asyncio

    from cloud.api.app import SchemaOutOfDate
    from cloud.worker.consumer import Consumer
    from cloud.worker.errors import ModelError
    from cloud.worker.service import load_detector, serve

    cfg = _config(config)
    if model is not None:
        cfg.worker.model_path = model
    if concurrency is not None:
        cfg.worker.concurrency = concurrency
    _logging(cfg)
    try:
        base, detector = load_detector(cfg)
    except ModelError as exc:
        _fail(f"{exc.message}" + (f" ({exc.hint})" if exc.hint else ""), 2)
        return

    def ready(c: Consumer) -> None:
        typer.echo(f"ping-watch worker on queue {c.queue.name}: model {detector.path.name} on {detector.provider}, "
                   f"{cfg.worker.concurrency} job(s) at once (database {_redact(cfg.database.url)})")

    try:
        asyncio.run(serve(cfg, base, detector, ready))
    except SchemaOutOfDate as exc:
        _fail(str(exc), 2)


@app.command("migrate")
def migrate_cmd(config: Path | None = ConfigOpt, as_json: bool = JsonOpt) -> None:
    """Create or upgrade the database schema (Alembic migrations)."""
    from sqlalchemy.exc import SQLAlchemyError

    from cloud.api.db import migrate
    from cloud.api.db.engine import make_engine

    cfg = _config(config)
    engine = make_engine(cfg.database.url)
    try:
        before, after = migrate.upgrade(engine)
    except SQLAlchemyError as exc:
        detail = exc.args[0] if exc.args else ""
        _fail(f"migration failed on {_redact(cfg.database.url)}: {exc.__class__.__name__}: {detail}")
        return
    finally:
        engine.dispose()
    result = {"database": _redact(cfg.database.url), "from": before, "to": after, "changed": before != after}
    _print(result, as_json, f"database {result['database']}: " +
           (f"migrated {before or '(empty)'} -> {after}" if before != after else f"already at {after}"))


@app.command()
def notify(config: Path | None = ConfigOpt) -> None:
    """Run the Telegram notifier: alerts for every account's linked chats, commands and buttons (one per
    deployment; SIGTERM or Ctrl-C stops it between sends, and it resumes where it stopped)."""
    import asyncio
    import signal

    from cloud.api.db import migrate
    from cloud.api.db.engine import make_engine

    cfg = _config(config)
    if not cfg.telegram.enabled:
        _fail("telegram.enabled is false: set it and telegram.bot_token (PINGWATCH_CLOUD_TELEGRAM__BOT_TOKEN)", 2)
    _logging(cfg)
    engine = make_engine(cfg.database.url)
    try:
        if not migrate.is_current(engine):
            _fail("the database schema is not current; run `pingwatch-cloud migrate` first", 2)
    finally:
        engine.dispose()

    async def serve() -> None:
        from cloud.notify import Notifier

        notifier = Notifier.from_config(cfg)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await notifier.start()
        typer.echo(f"ping-watch Telegram notifier ({cfg.telegram.mode}; database {_redact(cfg.database.url)})")
        try:
            await stop.wait()
        finally:
            await notifier.stop()
            await notifier.ctx.blobs.close()
            await notifier.ctx.queue.close()
            await asyncio.to_thread(notifier.ctx.db.close)

    asyncio.run(serve())


@accounts_app.command("create")
def accounts_create(
    email: str = typer.Option(..., help="Log-in e-mail."),
    password: str = typer.Option(..., prompt=True, hide_input=True, confirmation_prompt=True,
                                 envvar="PINGWATCH_CLOUD_PASSWORD", help="Prompted when not given."),
    plan: str | None = typer.Option(None, help="Plan name (default: the config's default_plan)."),
    config: Path | None = ConfigOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Create an account (the first one, or any later)."""
    from sqlalchemy.exc import SQLAlchemyError

    from cloud.api import errors
    from cloud.api.context import Context
    from cloud.api.db import migrate
    from cloud.api.db.engine import Database
    from cloud.api.security import Passwords
    from cloud.api.services.accounts import Accounts

    cfg = _config(config)
    db = Database(cfg.database.url, 1)
    try:
        if not migrate.is_current(db.engine):
            _fail("the database schema is not current; run `pingwatch-cloud migrate` first", 2)
        # Storage is not needed to create an account; the context gets none.
        ctx = Context(config=cfg, db=db, blobs=None, queue=None,  # type: ignore[arg-type]
                      passwords=Passwords(cfg.auth.argon2_time_cost, cfg.auth.argon2_memory_kib))
        from cloud.api.models import LoginRequest

        try:
            LoginRequest(email=email, password=password)  # the same e-mail rules as log-in
        except ValueError:
            _fail(f"'{email}' is not a valid e-mail address", 2)
        account_id = Accounts(ctx).create_sync(email, password, plan)
    except errors.DomainError as exc:
        _fail(exc.error + (f" ({exc.hint})" if exc.hint else ""), 1 if isinstance(exc, errors.Conflict) else 2)
        return
    except SQLAlchemyError as exc:
        _fail(f"database error: {exc.__class__.__name__}")
        return
    finally:
        db.close()
    result = {"id": account_id, "email": email.strip().lower(), "plan": plan or cfg.default_plan}
    _print(result, as_json, f"account {result['email']} created (id {account_id}, plan {result['plan']})")


def main(argv: list[str] | None = None) -> None:
    app(args=argv if argv is not None else sys.argv[1:])


if __name__ == "__main__":
    main()
