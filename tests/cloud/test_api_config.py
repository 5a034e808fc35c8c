"""cloud/config.py: one YAML file with documented defaults, errors that name the field and line, env overrides."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import BaseModel

from cloud.config import CloudConfig, ConfigError, PlanConfig, load_config

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "config" / "cloud.example.yaml"


def _keys(model: type[BaseModel], prefix: str = "") -> set[str]:
    out = set()
    for name, f in model.model_fields.items():
        out.add(prefix + name)
        ann = f.annotation
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            out |= _keys(ann, f"{prefix}{name}.")
    return out


def _flatten(data: Any, prefix: str = "") -> set[str]:
    out = set()
    if isinstance(data, dict):
        for k, v in data.items():
            out.add(prefix + k)
            out |= _flatten(v, f"{prefix}{k}.")
    return out


def test_example_documents_every_key_with_the_defaults():
    documented = _flatten(yaml.safe_load(EXAMPLE.read_text()))
    expected = _keys(CloudConfig) | {f"plans.{p}.{k}" for p in ("free", "paid") for k in PlanConfig.model_fields}
    expected |= {"plans.free", "plans.paid"}
    assert expected <= documented, sorted(expected - documented)
    assert documented <= expected, sorted(documented - expected)
    loaded = load_config(EXAMPLE, environ={})
    defaults = load_config(None, environ={})
    assert loaded.model_dump(exclude={"database"}) == defaults.model_dump(exclude={"database"})
    assert loaded.database.url == f"sqlite:///{(EXAMPLE.parent / 'data-cloud' / 'cloud.db').resolve()}"


def test_defaults_are_local_and_safe():
    cfg = load_config(None, environ={})
    assert cfg.server.host == "127.0.0.1" and cfg.server.trust_forwarded_for is False
    assert cfg.storage.upload_url_ttl_s <= 900 and cfg.storage.credential == "account_key"
    assert set(cfg.plans) == {"free", "paid"} and cfg.default_plan == "free"
    assert cfg.plan("gone-plan") == cfg.plans["free"]


def test_env_overrides(tmp_path: Path):
    path = tmp_path / "cloud.yaml"
    path.write_text("server:\n  port: 9000\n")
    cfg = load_config(path, environ={
        "PINGWATCH_CLOUD_SERVER__PORT": "9100",
        "PINGWATCH_CLOUD_RECONCILER__ENABLED": "false",
        "PINGWATCH_CLOUD_PLANS__FREE__MONTHLY_CREDITS": "5",
        "PINGWATCH_CLOUD_STORAGE__CONNECTION_STRING": "AccountName=a;AccountKey=k==;BlobEndpoint=http://x/a;",
        "PINGWATCH_CLOUD_DATABASE__URL": "postgresql+psycopg://u@db/pw",
        "PINGWATCH_OTHER": "ignored",
    })
    assert cfg.server.port == 9100 and cfg.reconciler.enabled is False
    assert cfg.plans["free"].monthly_credits == 5 and cfg.plans["paid"].monthly_credits == 30000
    assert cfg.storage.connection_string == "AccountName=a;AccountKey=k==;BlobEndpoint=http://x/a;"
    assert cfg.database.url == "postgresql+psycopg://u@db/pw"


@pytest.mark.parametrize("text,env,match", [
    ("server:\n  port: 80\n  prot: 1\n", {}, r"line 3: unknown key 'server.prot'"),
    ("server:\n  port: lots\n", {}, r"line 2: field 'server.port'.*'lots'"),
    ("storage:\n  upload_url_ttl_s: 3600\n", {}, r"line 2: field 'storage.upload_url_ttl_s'"),
    ("plans:\n  free:\n    monthly_credits: -1\n", {}, r"line 3: field 'plans.free.monthly_credits'"),
    ("default_plan: gold\n", {}, r"default_plan 'gold' is not among plans"),
    ("storage:\n  credential: azure_identity\n", {}, r"azure_identity mode needs blob_url and queue_url"),
    ("server: [1, 2\n", {}, r"invalid YAML"),
    ("- a\n- b\n", {}, r"top level must be a mapping"),
    ("log:\n  level: info\n", {"PINGWATCH_CLOUD_LOG__LEVEL__X": "1"}, r"'level' is not a section"),
    ("", {"PINGWATCH_CLOUD_LOG__LEVEL": "loud"}, r"cloud.yaml: field 'log.level'.*'loud'"),
])
def test_errors_name_the_field_and_line(tmp_path: Path, text, env, match):
    path = tmp_path / "cloud.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=match):
        load_config(path, environ=env)


def test_missing_file(tmp_path: Path):
    with pytest.raises(ConfigError, match="no such file"):
        load_config(tmp_path / "nope.yaml", environ={})


def test_relative_sqlite_path_is_relative_to_the_file(tmp_path: Path):
    (tmp_path / "etc").mkdir()
    path = tmp_path / "etc" / "cloud.yaml"
    path.write_text("database:\n  url: sqlite:///state/cloud.db\n")
    assert load_config(path, environ={}).database.url == f"sqlite:///{tmp_path / 'etc' / 'state' / 'cloud.db'}"
    path.write_text("database:\n  url: sqlite:////abs/cloud.db\n")
    assert load_config(path, environ={}).database.url == "sqlite:////abs/cloud.db"
