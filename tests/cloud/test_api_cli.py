"""`pingwatch-cloud migrate | accounts create | run` and the Alembic migrations on both engines."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from typer.testing import CliRunner

from cloud.api.db import migrate
from cloud.api.db.engine import make_engine
from cloud.api.db.schema import accounts, metadata
from cloud.cli import app
from tests.harness.ports import free_port, wait_until

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(params=["sqlite", "postgres"])
def fresh_db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'fresh.db'}"
    return request.getfixturevalue("postgres").create_database(f"fresh_{uuid.uuid4().hex[:10]}")


def test_migrations_build_exactly_the_schema_and_go_back(fresh_db_url: str):
    engine = make_engine(fresh_db_url)
    try:
        assert migrate.current_revision(engine) is None
        assert migrate.upgrade(engine) == (None, migrate.head_revision())
        with engine.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), metadata)
        assert diff == []  # the migrations and cloud/api/db/schema.py describe the same tables
        migrate.downgrade(engine, "base")
        assert set(sa.inspect(engine).get_table_names()) <= {"alembic_version"}
        migrate.upgrade(engine)
        assert migrate.is_current(engine)
    finally:
        engine.dispose()


def _cli(args: list[str], db_url: str, input: str | None = None, **env: str):
    runner = CliRunner()
    return runner.invoke(app, args, input=input, env={"PINGWATCH_CLOUD_DATABASE__URL": db_url,
                                                      "PINGWATCH_CLOUD_AUTH__ARGON2_MEMORY_KIB": "64",
                                                      "PINGWATCH_CLOUD_AUTH__ARGON2_TIME_COST": "1", **env})


def test_cli_migrate_and_create_accounts(fresh_db_url: str):
    r = _cli(["accounts", "create", "--email", "a@example.com", "--password", "long enough pw"], fresh_db_url)
    assert r.exit_code == 2 and "pingwatch-cloud migrate" in r.output  # no schema yet: says what to run
    r = _cli(["migrate", "--json"], fresh_db_url)
    assert r.exit_code == 0, r.output
    out = json.loads(r.output)
    assert out["from"] is None and out["to"] == migrate.head_revision() and out["changed"] is True
    assert json.loads(_cli(["migrate", "--json"], fresh_db_url).output)["changed"] is False

    r = _cli(["accounts", "create", "--email", "Owner@Example.com", "--plan", "paid", "--json"], fresh_db_url,
             input="long enough pw\nlong enough pw\n")  # prompted twice, hidden
    assert r.exit_code == 0, r.output
    created = json.loads(r.output.strip().splitlines()[-1])
    assert created["email"] == "owner@example.com" and created["plan"] == "paid"
    r = _cli(["accounts", "create", "--email", "owner@example.com", "--password", "another long pw"], fresh_db_url)
    assert r.exit_code == 1 and "exists already" in r.output
    r = _cli(["accounts", "create", "--email", "x@example.com", "--password", "short"], fresh_db_url)
    assert r.exit_code == 2 and "too short" in r.output
    r = _cli(["accounts", "create", "--email", "not-an-email", "--password", "long enough pw"], fresh_db_url)
    assert r.exit_code == 2
    r = _cli(["accounts", "create", "--email", "y@example.com", "--password", "long enough pw", "--plan", "gold"],
             fresh_db_url)
    assert r.exit_code == 2 and "unknown plan" in r.output
    engine = make_engine(fresh_db_url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(sa.select(accounts.c.email, accounts.c.plan)).all()
    finally:
        engine.dispose()
    assert [(r.email, r.plan) for r in rows] == [("owner@example.com", "paid")]


def test_cli_config_errors_exit_2(tmp_path: Path):
    bad = tmp_path / "cloud.yaml"
    bad.write_text("server:\n  prot: 1\n")
    r = CliRunner().invoke(app, ["migrate", "--config", str(bad)])
    assert r.exit_code == 2 and "line 2" in r.output and "unknown key 'server.prot'" in r.output


def test_run_serves_until_sigterm(tmp_path: Path, azurite):
    """`python -m cloud.api --migrate` on a fresh SQLite: serves, answers health, stops cleanly on SIGTERM."""
    port = free_port()
    env = {**os.environ,
           "PINGWATCH_CLOUD_DATABASE__URL": f"sqlite:///{tmp_path / 'run.db'}",
           "PINGWATCH_CLOUD_STORAGE__CONNECTION_STRING": azurite.connection_string,
           "PINGWATCH_CLOUD_STORAGE__QUEUE": f"run-{uuid.uuid4().hex[:8]}",
           "PINGWATCH_CLOUD_SERVER__PORT": str(port)}
    proc = subprocess.Popen([sys.executable, "-m", "cloud.api", "--migrate"], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        def healthy() -> bool:
            try:
                return httpx.get(f"http://127.0.0.1:{port}/api/health", timeout=1).status_code == 200
            except httpx.HTTPError:
                return False

        wait_until(healthy, timeout=30, what="the cloud API's health", proc=proc)
        doc = httpx.get(f"http://127.0.0.1:{port}/api/openapi.json").json()
        assert doc["info"]["title"] == "ping-watch cloud API"
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, out
    assert f"http://127.0.0.1:{port}" in out
