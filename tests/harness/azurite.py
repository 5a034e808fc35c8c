"""A real Azurite (Azure Storage emulator: blob, queue, table) on 127.0.0.1:<free ports>, data in a temp dir.

Installed by `scripts/install-test-deps` into `.tools/azurite` (npm, pinned). Started with `--skipApiVersionCheck`
(the Python SDKs may be newer than the emulator) and `--loose`, telemetry off (closed network).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from .ports import HOST, INSTALL_HINT, ServiceStartError, free_ports, port_is_open, stop_process, wait_until

REPO_ROOT = Path(__file__).resolve().parents[2]
ACCOUNT_NAME = "devstoreaccount1"
# The emulator's well-known account key (public, documented by Microsoft; not a secret).
ACCOUNT_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="


def find_azurite() -> str:
    candidates = [
        os.environ.get("PINGWATCH_AZURITE"),
        str(REPO_ROOT / ".tools" / "azurite" / "node_modules" / ".bin" / "azurite"),
        shutil.which("azurite"),
    ]
    for c in candidates:
        if c and os.access(c, os.X_OK):
            if not shutil.which("node"):
                raise ServiceStartError(f"azurite: Node.js (`node`) is not on PATH; {INSTALL_HINT}")
            return c
    raise ServiceStartError(f"azurite: not found in .tools/azurite (npm package azurite); {INSTALL_HINT}")


@dataclass
class Azurite:
    host: str
    blob_port: int
    queue_port: int
    table_port: int
    workdir: Path
    log_path: Path
    account_name: str = ACCOUNT_NAME
    account_key: str = ACCOUNT_KEY
    startup_s: float = 0.0
    proc: subprocess.Popen | None = field(default=None, repr=False)

    @property
    def blob_url(self) -> str:
        return f"http://{self.host}:{self.blob_port}/{self.account_name}"

    @property
    def queue_url(self) -> str:
        return f"http://{self.host}:{self.queue_port}/{self.account_name}"

    @property
    def table_url(self) -> str:
        return f"http://{self.host}:{self.table_port}/{self.account_name}"

    @property
    def connection_string(self) -> str:
        return (
            f"DefaultEndpointsProtocol=http;AccountName={self.account_name};AccountKey={self.account_key};"
            f"BlobEndpoint={self.blob_url};QueueEndpoint={self.queue_url};TableEndpoint={self.table_url};"
        )

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc)
            self.proc = None
        shutil.rmtree(self.workdir, ignore_errors=True)


def start_azurite(timeout: float = 30.0) -> Azurite:
    exe = find_azurite()
    t0 = time.monotonic()
    workdir = Path(tempfile.mkdtemp(prefix="pingwatch-azurite-"))
    data = workdir / "data"
    data.mkdir()
    log_path = workdir / "azurite.log"
    blob_port, queue_port, table_port = free_ports(3)
    args = [
        exe,
        "--blobHost", HOST, "--blobPort", str(blob_port),
        "--queueHost", HOST, "--queuePort", str(queue_port),
        "--tableHost", HOST, "--tablePort", str(table_port),
        "--location", str(data),
        "--skipApiVersionCheck",
        "--loose",
        "--disableTelemetry",
        "--silent",
    ]
    log = open(log_path, "wb")
    try:
        proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=workdir)
    finally:
        log.close()
    az = Azurite(
        host=HOST, blob_port=blob_port, queue_port=queue_port, table_port=table_port,
        workdir=workdir, log_path=log_path, proc=proc,
    )
    try:
        wait_until(
            lambda: all(port_is_open(HOST, p) for p in (blob_port, queue_port, table_port)),
            timeout=timeout,
            what=f"azurite on {HOST}:{blob_port}/{queue_port}/{table_port}",
            proc=proc,
            log=log_path,
        )
    except BaseException:
        az.stop()
        raise
    az.startup_s = time.monotonic() - t0
    return az
