"""A real RTSP server on 127.0.0.1:<free port> serving IP-camera-like main and sub streams (gst-rtsp-server).

``tests/harness/rtsp_server.py`` runs under Debian's ``/usr/bin/python3`` (python3-gi with GStreamer); this side
starts, stops and restarts it on the *same* port (a camera rebooting, for reconnect tests) and switches the scene:
``set_motion(True)`` puts a moving ball in both streams, ``set_sound(True)`` a loud tone in the main stream's AAC
audio (otherwise a quiet noise, ``noise_dbfs``). ``start_rtsp_server()`` raises ``ServiceStartError`` with the
server's own words when it cannot start.
"""

from __future__ import annotations

import os
import queue
import subprocess
import threading
from dataclasses import dataclass, field
from pathlib import Path

from .ports import HOST, INSTALL_HINT, ServiceStartError, free_port, stop_process

SYSTEM_PYTHON = "/usr/bin/python3"  # has python3-gi; the project's venv has not
SERVER_SCRIPT = Path(__file__).with_name("rtsp_server.py")
START_TIMEOUT_S = 20.0


@dataclass
class RtspServer:
    port: int
    options: dict[str, str | int | float] = field(default_factory=dict)
    motion: bool = False
    sound: bool = False
    proc: subprocess.Popen[str] | None = None
    starts: int = 0
    _lines: queue.Queue[str] = field(default_factory=queue.Queue)
    _stderr: list[str] = field(default_factory=list)
    _setups: list[str] = field(default_factory=list)  # every run's, oldest first
    _err_pump: threading.Thread | None = None

    @property
    def main_url(self) -> str:
        return f"rtsp://{HOST}:{self.port}/main"

    @property
    def sub_url(self) -> str:
        return f"rtsp://{HOST}:{self.port}/sub"

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self, timeout: float = START_TIMEOUT_S) -> RtspServer:
        """Start (or start again, same port, same scene) and return once it listens."""
        if self.running:
            raise RuntimeError("the RTSP server is already running")
        if not os.path.exists(SYSTEM_PYTHON):
            raise ServiceStartError(f"{SYSTEM_PYTHON} not found (Debian's python3 with python3-gi); {INSTALL_HINT}")
        args = [SYSTEM_PYTHON, str(SERVER_SCRIPT), "--port", str(self.port)]
        for key, value in self.options.items():
            args += [f"--{key.replace('_', '-')}", str(value)]
        if self.motion:
            args.append("--motion")
        self._lines = queue.Queue()
        self._stderr = []
        # The server's stdin is its command channel (and its lifeline: it quits when the pipe closes).
        proc = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True, bufsize=1)
        self.proc = proc
        threading.Thread(target=self._pump, args=(proc,), daemon=True).start()
        self._err_pump = threading.Thread(target=self._pump_err, args=(proc,), daemon=True)
        self._err_pump.start()
        try:
            line = self._read_line(timeout, "start")
        except ServiceStartError:
            stop_process(proc, timeout=5)
            raise
        if not line.startswith("READY "):
            stop_process(proc, timeout=5)
            raise ServiceStartError(f"RTSP server: unexpected first line {line!r}.\n{self.stderr_tail()}")
        self.starts += 1
        if self.sound:
            self._command("sound on")
        return self

    def stop(self) -> None:
        """Stop the server: every client's connection drops (a camera rebooting)."""
        proc, self.proc = self.proc, None
        if proc is None:
            return
        try:
            if proc.poll() is None and proc.stdin is not None:
                proc.stdin.write("quit\n")
                proc.stdin.flush()
        except (BrokenPipeError, OSError):
            pass
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            stop_process(proc, timeout=5)
        if self._err_pump is not None:
            self._err_pump.join(timeout=5)  # every line the server wrote is in (setups()) before the pipe closes
        for stream in (proc.stdin, proc.stdout, proc.stderr):
            if stream is not None:
                try:
                    stream.close()
                except OSError:
                    pass

    def restart(self) -> None:
        self.stop()
        self.start()

    def set_motion(self, on: bool) -> None:
        self.motion = on
        if self.running:
            self._command(f"motion {'on' if on else 'off'}")

    def set_sound(self, on: bool) -> None:
        self.sound = on
        if self.running:
            self._command(f"sound {'on' if on else 'off'}")

    def setups(self) -> list[str]:
        """The paths of the SETUP requests clients sent (one per track taken), oldest first, over every run;
        complete once the server is stopped."""
        return list(self._setups)

    def stderr_tail(self, n: int = 20) -> str:
        return "\n".join(self._stderr[-n:])

    # -- plumbing ------------------------------------------------------------------------------------------

    def _command(self, cmd: str) -> None:
        proc = self.proc
        assert proc is not None and proc.stdin is not None
        proc.stdin.write(cmd + "\n")
        proc.stdin.flush()
        line = self._read_line(10.0, cmd)
        if line != f"OK {cmd}":
            raise RuntimeError(f"RTSP server answered {line!r} to {cmd!r}")

    def _read_line(self, timeout: float, what: str) -> str:
        try:
            line = self._lines.get(timeout=timeout)
        except queue.Empty:
            raise ServiceStartError(
                f"RTSP server on {HOST}:{self.port}: no answer to {what} after {timeout:.0f} s.\n"
                f"{self.stderr_tail()}") from None
        if line == "":  # the process ended
            code = self.proc.poll() if self.proc else None
            raise ServiceStartError(
                f"RTSP server on {HOST}:{self.port} exited (code {code}) at {what}: {self.stderr_tail()}\n"
                f"(needs Debian's python3-gi, gir1.2-gst-rtsp-server-1.0, gstreamer1.0-plugins-{{base,good,bad,ugly}}"
                f" and gstreamer1.0-libav; {INSTALL_HINT})")
        return line

    def _pump(self, proc: subprocess.Popen[str]) -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            self._lines.put(line.rstrip("\n"))
        self._lines.put("")

    def _pump_err(self, proc: subprocess.Popen[str]) -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            line = line.rstrip("\n")
            if line.startswith("SETUP "):  # kept apart: the errors' tail stays the server's own messages
                self._setups.append(line.split(" ", 1)[1])
            else:
                self._stderr.append(line)


def start_rtsp_server(port: int | None = None, *, motion: bool = False,
                      **options: str | int | float) -> RtspServer:
    """A running server on ``port`` (a free one if None). ``options``: rtsp_server.py's flags, e.g.
    ``keyint_s=1``, ``width=1280``, ``height=720``, ``noise_dbfs=-63``."""
    return RtspServer(port or free_port(), dict(options), motion=motion).start()
