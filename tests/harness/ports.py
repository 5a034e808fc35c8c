"""Free ports on 127.0.0.1 and bounded readiness polling for the real services the tests start."""

from __future__ import annotations

import errno
import random
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


# Ports handed out by this process, never handed out twice: a port picked but not yet bound by the service it
# is for must not go to the next caller.
_handed_out: set[int] = set()
_LOWEST = 10000  # above the well-known and most registered services' ports
_BROWSERS_REFUSE = {10080}  # Chromium's and Firefox's "unsafe port" in the range we pick from
_random = random.SystemRandom()  # not the seeded module-level generator: every process its own sequence


def _ephemeral_range() -> tuple[int, int]:
    """The kernel's ephemeral port range (the ports it gives a connection's local end, and binding port 0)."""
    try:
        low, high = (int(x) for x in Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[:2])
        return low, high
    except (OSError, ValueError):
        return 32768, 60999


def pickable_ports() -> list[range]:
    """Where ``free_ports`` picks: outside the ephemeral range, from _LOWEST up (empty: the kernel picks)."""
    low, high = _ephemeral_range()
    spans = [range(_LOWEST, low), range(high + 1, 65536)]
    return [r for r in spans if len(r) >= 1000]


def free_port(host: str = HOST) -> int:
    """A TCP port that is free on ``host`` right now (see ``free_ports``)."""
    return free_ports(1, host)[0]


def free_ports(n: int, host: str = HOST) -> list[int]:
    """``n`` distinct TCP ports free on ``host`` right now (all held open together while picking).

    Picked outside the kernel's ephemeral range (``pickable_ports``): a port from that range, what binding port 0
    gives, can be taken by any outgoing connection's local end between the pick and the service's bind. That
    happened in CI: a hub process could not listen on its HTTP port. Where there is no room outside it, the kernel
    picks."""
    spans = pickable_ports()
    socks: list[socket.socket] = []
    ports: list[int] = []
    misses = 0
    try:
        while len(ports) < n:
            port = 0
            if spans:
                span = _random.choice(spans)
                port = span[_random.randrange(len(span))]
                if port in _handed_out or port in _BROWSERS_REFUSE:
                    continue
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind((host, port))
            except OSError as exc:
                s.close()
                if port == 0 or exc.errno not in (errno.EADDRINUSE, errno.EACCES):
                    raise  # not "taken": the host is wrong, and no other port will do better
                misses += 1
                if misses > 1000:
                    raise RuntimeError(f"no free port on {host} after {misses} tries") from exc
                continue
            port = s.getsockname()[1]
            if port in _handed_out:  # the kernel's pick, handed out before
                s.close()
                continue
            socks.append(s)
            _handed_out.add(port)
            ports.append(port)
        return ports
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
