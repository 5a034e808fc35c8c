"""Start the real hub as a separate process (the way users and systemd run it) for end-to-end tests."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from tests.harness.ports import free_port

REPO = Path(__file__).resolve().parent.parent


@dataclass
class HubProcess:
    root: Path
    config_path: Path
    https_port: int
    http_port: int
    extra_config: dict[str, Any] = field(default_factory=dict)
    proc: subprocess.Popen[str] | None = None
    lines: list[str] = field(default_factory=list)
    _cond: threading.Condition = field(default_factory=threading.Condition)

    @classmethod
    def create(cls, root: Path, **extra: Any) -> HubProcess:
        root.mkdir(parents=True, exist_ok=True)
        cfg = {
            "server": {"host": "127.0.0.1", "https_port": free_port(), "http_port": free_port(),
                       "public_host": "127.0.0.1"},
            "storage": {"data_dir": str(root / "data")},
            "log": {"format": "json", "level": "info"},
        }
        for section, values in extra.items():
            if isinstance(values, dict):
                cfg.setdefault(section, {}).update(values)
            else:
                cfg[section] = values
        path = root / "hub.yaml"
        path.write_text(yaml.safe_dump(cfg))
        return cls(root, path, cfg["server"]["https_port"], cfg["server"]["http_port"], extra)

    @property
    def https(self) -> str:
        return f"https://127.0.0.1:{self.https_port}"

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    @property
    def cert_path(self) -> Path:
        return self.data_dir / "tls" / "cert.pem"

    @property
    def admin_secret(self) -> str:
        return json.loads((self.data_dir / "secrets.json").read_text())["admin_secret"]

    @property
    def spki(self) -> str:
        from hub.tls import cert_info

        return cert_info(self.cert_path).spki_sha256_b64

    def start(self, timeout: float = 30.0, args: tuple[str, ...] = (), env: dict[str, str] | None = None) -> HubProcess:
        self.lines = []
        env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
        env.pop("PINGWATCH_CONFIG", None)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "hub", "--config", str(self.config_path), "--no-pair", *args],
            cwd=self.root, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )
        threading.Thread(target=self._pump, daemon=True).start()
        self.wait_for_log("hub started", timeout)
        return self

    def _pump(self) -> None:
        assert self.proc and self.proc.stdout
        for line in self.proc.stdout:
            with self._cond:
                self.lines.append(line.rstrip("\n"))
                self._cond.notify_all()
        with self._cond:
            self._cond.notify_all()

    def logs(self) -> list[dict[str, Any]]:
        out = []
        for line in list(self.lines):
            try:
                out.append(json.loads(line))
            except ValueError:
                continue
        return out

    def wait_for_log(self, text: str, timeout: float = 30.0, start: int = 0) -> str:
        """Block until a line containing ``text`` appears (the hub logs each state change)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for line in self.lines[start:]:
                    if text in line:
                        return line
                if self.proc and self.proc.poll() is not None and not any(text in ln for ln in self.lines):
                    raise RuntimeError(f"hub exited with {self.proc.returncode} before '{text}':\n"
                                       + "\n".join(self.lines[-30:]))
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(
                        f"no '{text}' in the hub's log after {timeout}s:\n" + "\n".join(self.lines[-30:]))
                self._cond.wait(left)

    def stop(self, timeout: float = 30.0) -> int:
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else 0
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
