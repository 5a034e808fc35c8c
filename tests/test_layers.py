"""Layer rules (pyproject.toml [tool.importlinter]): the composition root is imported by nothing below it, the
media path and camera components never import the web, CLI or MQTT faces, the cloud's services speak no HTTP,
and the hub and cloud stay apart."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _lint_imports(cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    exe = Path(sys.executable).with_name("lint-imports")
    return subprocess.run([str(exe), "--config", str(REPO / "pyproject.toml"), "--no-cache"], cwd=cwd,
                          capture_output=True, text=True, timeout=120, env=env)


def test_the_layer_contracts_hold() -> None:
    r = _lint_imports(REPO)
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-2000:]
    assert "5 kept, 0 broken" in r.stdout, r.stdout[-2000:]


@pytest.mark.parametrize(("module", "line", "edge"), [
    ("hub/pipeline.py", "from hub.app import build_hub", "hub.pipeline -> hub.app"),
    ("cloud/notify/planner.py", "from cloud.api.web.routes import ROUTES", "cloud.notify.planner -> cloud.api.web"),
])
def test_a_module_that_imports_across_a_layer_breaks_a_contract(tmp_path: Path, module: str, line: str,
                                                                edge: str) -> None:
    """The check really looks: a copy of the tree with one forbidden import planted must fail it."""
    for pkg in ("hub", "mqtt", "cloud", "pingwatch_common"):
        subprocess.run(["cp", "-r", str(REPO / pkg), str(tmp_path / pkg)], check=True)
    planted = tmp_path / module
    planted.write_text(planted.read_text() + f"\n{line}  # noqa: E402,F401\n")
    r = _lint_imports(tmp_path, env={"PYTHONPATH": str(tmp_path), "PATH": "/usr/bin:/bin"})  # the copy first
    assert r.returncode != 0, r.stdout[-2000:]
    assert edge in r.stdout, r.stdout[-3000:]
