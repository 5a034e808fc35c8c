"""Free ports on 127.0.0.1 and bounded readiness polling for the real services the tests start."""

from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

HOST = "127.0.0.1"
INSTALL_HINT = "run `scripts/install-test-deps` (as root) to install it"

T = TypeVar("T")


class ServiceStartError(RuntimeError):
    """A real service the tests need could not be started. The message says what is missing and what to run."""


def free_port(host: str = HOST) -> int:
    """A TCP port that is free on ``host`` right now (the kernel picks it; the socket is closed before returning)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((host, 0))
        return s.getsockname()[1]


def free_ports(n: int, host: str = HOST) -> list[int]:
    """``n`` distinct free ports (all held open together while picking, so they cannot repeat)."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind((host, 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def port_is_open(host: str, port: int, timeout: float = 0.2) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def tail(path: Path | None, n: int = 30) -> str:
    """The last ``n`` lines of a log file, for error messages."""
    if path is None:
        return ""
    try:
        lines = Path(path).read_text(errors="replace").splitlines()
    except OSError:
        return ""
    return "\n".join(lines[-n:])


def wait_until(
    check: Callable[[], T | None],
    *,
    timeout: float,
    what: str,
    interval: float = 0.02,
    proc: subprocess.Popen | None = None,
    log: Path | None = None,
) -> T:
    """Poll ``check`` until it returns a truthy value, within ``timeout`` seconds.

    The interval grows from ``interval`` to 0.25 s. If ``proc`` exits meanwhile, fail at once with its exit code and
    the tail of ``log`` rather than waiting out the deadline.
    """
    deadline = time.monotonic() + timeout
    delay = interval
    while True:
        result = check()
        if result:
            return result
        if proc is not None and proc.poll() is not None:
            raise ServiceStartError(
                f"{what}: the process exited with code {proc.returncode} before it was ready.\n{tail(log)}"
            )
        if time.monotonic() >= deadline:
            raise ServiceStartError(f"{what}: not ready after {timeout:.0f} s.\n{tail(log)}")
        time.sleep(delay)  # a poll interval under a deadline, not synchronisation by sleeping
        delay = min(delay * 1.5, 0.25)


def wait_for_port(
    host: str,
    port: int,
    *,
    timeout: float = 20.0,
    what: str | None = None,
    proc: subprocess.Popen | None = None,
    log: Path | None = None,
) -> None:
    """Wait until something accepts TCP connections on ``host:port`` (bounded by ``timeout``)."""
    wait_until(
        lambda: port_is_open(host, port),
        timeout=timeout,
        what=what or f"port {host}:{port}",
        proc=proc,
        log=log,
    )


def stop_process(proc: subprocess.Popen, timeout: float = 10.0) -> None:
    """SIGTERM, then SIGKILL after ``timeout`` s; reaps the process."""
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=timeout)
