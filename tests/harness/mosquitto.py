"""A real Mosquitto broker on 127.0.0.1:<free port>, anonymous, no persistence."""

from __future__ import annotations

import getpass
import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from .ports import HOST, INSTALL_HINT, ServiceStartError, free_port, stop_process, wait_for_port


def find_mosquitto() -> str:
    exe = shutil.which("mosquitto") or ("/usr/sbin/mosquitto" if os.access("/usr/sbin/mosquitto", os.X_OK) else None)
    if not exe:
        raise ServiceStartError(
            f"mosquitto: the `mosquitto` binary is not installed (Debian package mosquitto); {INSTALL_HINT}")
    return exe


@dataclass
class Mosquitto:
    host: str
    port: int
    workdir: Path
    log_path: Path
    startup_s: float = 0.0
    proc: subprocess.Popen | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"mqtt://{self.host}:{self.port}"

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc)
            self.proc = None
        shutil.rmtree(self.workdir, ignore_errors=True)


def start_mosquitto(timeout: float = 15.0) -> Mosquitto:
    exe = find_mosquitto()
    t0 = time.monotonic()
    workdir = Path(tempfile.mkdtemp(prefix="pingwatch-mosquitto-"))
    port = free_port()
    conf = workdir / "mosquitto.conf"
    log_path = workdir / "mosquitto.log"
    lines = [
        f"listener {port} {HOST}",
        "allow_anonymous true",
        "persistence false",
        "log_dest stderr",
        "log_type error",
        "log_type warning",
        "log_type notice",
        "connection_messages true",
    ]
    if os.geteuid() == 0:
        # As root mosquitto would drop to the `mosquitto` user; stay as we are (the files are ours, in a temp dir).
        lines.append(f"user {getpass.getuser()}")
    conf.write_text("\n".join(lines) + "\n")
    log = open(log_path, "wb")
    try:
        proc = subprocess.Popen([exe, "-c", str(conf)], stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    finally:
        log.close()
    broker = Mosquitto(host=HOST, port=port, workdir=workdir, log_path=log_path, proc=proc)
    try:
        wait_for_port(HOST, port, timeout=timeout, what=f"mosquitto on {HOST}:{port}", proc=proc, log=log_path)
    except BaseException:
        broker.stop()
        raise
    broker.startup_s = time.monotonic() - t0
    return broker
