"""Benchmark of the hub's RTSP cameras against an NVR-style baseline: CPU % of a core and memory per camera.

Usage: scripts/bench rtsp [--cameras 1,4] [--seconds 30] [--warmup 8] [--width 640 --height 360] [--json]
                          [--threads] [--py-spy PREFIX]

One real RTSP server (gst-rtsp-server, tests/harness/rtsp.py) serves an IP camera: main stream H.264 High with
B-frames (``--width``x``--height`` @ 15 fps, keyframe every 2 s) + AAC mono 16 kHz, sub-stream 320x180 @ 5 fps,
a moving ball and a quiet noise. Both streams are shared, so N clients cost the server one encode.

For each N in --cameras, in the same run and the same measurement window:

* the hub: ONE real hub process (``python -m hub``, temp config and data dir, 127.0.0.1) with N RTSP cameras,
  each with the main stream and ``detect_source`` = the sub-stream, sound trigger on (it decodes the AAC), hub
  disarmed (no clip writing: ingest is what is measured; the triggers still run);
* the baseline, per camera: ``ffmpeg -c copy`` recording the main stream (video + audio) into 10 s MP4 segments,
  and ``ffmpeg`` decoding the sub-stream at 5 fps to raw frames (what an NVR such as Frigate runs per camera).

CPU: utime+stime from /proc/<pid>/stat over ``--seconds`` (hub: all its threads; baseline: the sum of its 2N
ffmpeg processes), as % of one core, per camera. Memory: VmRSS at the end of the window (hub: one process;
baseline: the sum of its processes), per camera. The hub's per-camera rates (video packets, detect frames, audio
chunks) are read from its status API to show every camera was fully served.

``--threads`` adds the hub's CPU per thread over the same window (utime+stime from /proc/<pid>/task/*/stat, named
through ``py-spy dump``: the event loop, the main-stream reader, the sub-stream reader), with the system part,
minor page faults and wake-ups (voluntary context switches) of each; ``--py-spy PREFIX`` records the window's
stacks (the profiler costs the hub CPU).

Needs Debian's ffmpeg (``apt-get install ffmpeg``) for the baseline, and python3-gi with gst-rtsp-server
(``scripts/install-test-deps``) for the server. Prints a markdown table; ``--json`` also prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import ssl
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.harness.ports import ServiceStartError  # noqa: E402
from tests.harness.rtsp import RtspServer, start_rtsp_server  # noqa: E402
from tests.hubproc import HubProcess  # noqa: E402

CLK_TCK = os.sysconf("SC_CLK_TCK")
TARGET_CPU_PCT = 2.0  # issue 14: per RTSP camera


def ticks(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0
    return int(fields[11]) + int(fields[12])  # utime, stime


def rss_mb(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return 0.0


def thread_ticks(pid: int) -> dict[int, tuple[int, int, int, int]]:
    """(utime, stime, minor page faults, voluntary context switches) of each thread of ``pid`` by tid: the
    switches are how often the thread went to sleep, i.e. its wake-ups."""
    out: dict[int, tuple[int, int, int, int]] = {}
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return out
    for tid in tids:
        try:
            with open(f"/proc/{pid}/task/{tid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            with open(f"/proc/{pid}/task/{tid}/status") as f:
                switches = next((int(line.split()[1]) for line in f if line.startswith("voluntary_ctxt_switches")),
                                0)
        except OSError:
            continue
        out[int(tid)] = (int(fields[11]), int(fields[12]), int(fields[7]), switches)
    return out


def thread_names(pid: int) -> dict[int, str]:
    """Python thread names by tid, from ``py-spy dump`` (Python 3.11 does not name its OS threads); threads
    without Python code (FFmpeg's, OpenSSL's) are left out."""
    spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    try:
        dump = subprocess.run([spy, "dump", "--pid", str(pid)], capture_output=True, text=True, timeout=20).stdout
    except (OSError, subprocess.SubprocessError):
        return {}
    names: dict[int, str] = {}
    for line in dump.splitlines():
        m = re.match(r'Thread (\d+) \([^)]*\): "(.*)"', line)
        if m:
            names[int(m.group(1))] = m.group(2)
    return names


def machine_busy() -> tuple[int, int]:
    with open("/proc/stat") as f:
        parts = [int(x) for x in f.readline().split()[1:]]
    return sum(parts[:8]), parts[3] + parts[4]


def log(msg: str) -> None:
    print(f"[bench rtsp] {msg}", file=sys.stderr, flush=True)


def baseline_cmds(ffmpeg: str, server: RtspServer, out: Path) -> list[list[str]]:
    """One camera's NVR-style processes: a -c copy segment recorder of the main stream, a 5 fps sub decoder."""
    common = [ffmpeg, "-hide_banner", "-loglevel", "error", "-nostdin", "-rtsp_transport", "tcp"]
    out.mkdir(parents=True, exist_ok=True)
    record = [*common, "-i", server.main_url, "-c", "copy", "-f", "segment", "-segment_time", "10",
              "-reset_timestamps", "1", "-segment_format", "mp4", str(out / "seg%05d.mp4")]
    detect = [*common, "-i", server.sub_url, "-an", "-vf", "fps=5", "-pix_fmt", "yuv420p", "-f", "rawvideo",
              "-y", "/dev/null"]
    return [record, detect]


class Run:
    def __init__(self, root: Path, n: int, server: RtspServer, ffmpeg: str, args: argparse.Namespace) -> None:
        self.root, self.n, self.server, self.ffmpeg, self.args = root, n, server, ffmpeg, args
        self.hub: HubProcess | None = None
        self.procs: list[subprocess.Popen[bytes]] = []

    def api(self, client: Any, method: str, path: str, **kw: Any) -> Any:
        assert self.hub is not None
        r = client.request(method, f"{self.hub.https}{path}",
                           headers={"Authorization": f"Bearer {self.hub.admin_secret}"}, **kw)
        r.raise_for_status()
        return r.json()

    def cams(self, client: Any) -> dict[str, dict[str, Any]]:
        return {c["id"]: c for c in self.api(client, "GET", "/api/admin/cameras")["cameras"]}

    def execute(self) -> dict[str, Any]:
        import httpx

        args, n = self.args, self.n
        cameras = [{"id": f"cam{i}", "source": self.server.main_url, "detect_source": self.server.sub_url}
                   for i in range(n)]
        self.hub = hub = HubProcess.create(self.root / "hub", cameras=cameras,
                                           log={"format": "json", "level": "info"}).start()
        hub_pid = hub.proc.pid  # type: ignore[union-attr]
        ctx = ssl.create_default_context(cafile=str(hub.cert_path))
        with httpx.Client(verify=ctx, timeout=10) as client:
            self.api(client, "POST", "/api/ui/arm", json={"armed": False})
            deadline = time.monotonic() + 60
            while n:  # every camera: video, detect frames and decoded audio arriving
                cams = self.cams(client)
                stats = [(cams.get(f"cam{i}") or {}).get("stats") or {} for i in range(n)]
                if all(s.get("detect_frames", 0) > 0 and s.get("audio_chunks", 0) > 0 for s in stats):
                    break
                if time.monotonic() > deadline:
                    raise RuntimeError(f"cameras not all streaming after 60 s: {stats}")
                time.sleep(0.5)  # poll under a deadline
            for i in range(n):
                for cmd in baseline_cmds(self.ffmpeg, self.server, self.root / f"nvr{i}"):
                    self.procs.append(subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stderr=subprocess.PIPE))
            time.sleep(args.warmup)  # the hub's 15 s buffer filling, ffmpeg connected: part of the warm-up
            dead = [p for p in self.procs if p.poll() is not None]
            if dead:
                err = dead[0].stderr.read().decode(errors="replace") if dead[0].stderr else ""
                raise RuntimeError(f"baseline ffmpeg exited with {dead[0].returncode}: {err[-500:]}")

            names = thread_names(hub_pid) if args.threads else {}
            before = self.cams(client)
            t0 = time.monotonic()
            hub0 = ticks(hub_pid)
            threads0 = thread_ticks(hub_pid) if args.threads else {}
            base0 = sum(ticks(p.pid) for p in self.procs)
            sys0 = machine_busy()
            spy = None
            if args.py_spy:  # a profile of the window (costs the hub some CPU: not for the totals)
                spy_bin = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
                spy = subprocess.Popen([spy_bin, "record", "--native", "--rate", "200", "--threads", "--format",
                                        "raw", "-d", str(round(args.seconds)), "-o", f"{args.py_spy}.n{n}",
                                        "--pid", str(hub_pid)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            time.sleep(args.seconds)  # the measurement window
            hub1 = ticks(hub_pid)
            threads1 = thread_ticks(hub_pid) if args.threads else {}
            base1 = sum(ticks(p.pid) for p in self.procs)
            sys1 = machine_busy()
            wall = time.monotonic() - t0
            after = self.cams(client)
            hub_rss = rss_mb(hub_pid)
            base_rss = sum(rss_mb(p.pid) for p in self.procs)

        def rate(key: str, part: str = "stats") -> float:
            """The slowest camera's rate of a counter over the window."""
            vals = []
            for i in range(n):
                a, b = ((c[f"cam{i}"].get(part) or {}) for c in (before, after))
                if part == "ingest":
                    a, b = a.get("video") or {}, b.get("video") or {}
                vals.append((b.get(key, 0) - a.get(key, 0)) / wall)
            return min(vals)

        def pct(t: int) -> float:
            return 100.0 * t / CLK_TCK / wall

        per = max(n, 1)  # 0 cameras: the hub's own idle cost, in the per-camera columns as is

        if spy is not None:  # it stops by itself after the window (-d)
            try:
                spy.wait(60)
            except subprocess.TimeoutExpired:
                spy.kill()
                spy.wait()
        total, idle = sys1[0] - sys0[0], sys1[1] - sys0[1]
        # Each thread's share of the hub's CPU (user + system), busiest first (named where it runs Python code),
        # with its system part, minor page faults and wake-ups per second: where the kernel's share comes from.
        per_thread = []
        for tid, (u1, s1, f1, w1) in threads1.items():
            u0, s0, f0, w0 = threads0.get(tid, (0, 0, 0, 0))
            per_thread.append((names.get(tid, "MainThread" if tid == hub_pid else "native"), tid,
                               pct(u1 - u0 + s1 - s0), pct(s1 - s0), (f1 - f0) / wall, (w1 - w0) / wall))
        per_thread.sort(key=lambda r: -r[2])
        segments = len(list(self.root.glob("nvr*/seg*.mp4")))
        return {
            "cameras": n, "wall_s": round(wall, 1),
            "hub_cpu_pct": round(pct(hub1 - hub0), 2), "hub_cpu_per_cam": round(pct(hub1 - hub0) / per, 2),
            "nvr_cpu_pct": round(pct(base1 - base0), 2), "nvr_cpu_per_cam": round(pct(base1 - base0) / per, 2),
            "hub_rss_mb": round(hub_rss, 1), "nvr_rss_mb": round(base_rss, 1),
            "hub_rss_per_cam": round(hub_rss / per, 1), "nvr_rss_per_cam": round(base_rss / per, 1),
            "video_fps_min": round(rate("frames", "ingest"), 2) if n else 0.0,
            "detect_fps_min": round(rate("detect_frames"), 2) if n else 0.0,
            "audio_chunks_s_min": round(rate("audio_chunks"), 1) if n else 0.0,
            "nvr_segments": segments,
            "hub_threads": [f"{name} {tid}: {p:.2f} (sys {sp:.2f}, {fl:.0f} faults/s, {wk:.0f} wake-ups/s)"
                            for name, tid, p, sp, fl, wk in per_thread if p > 0],
            "load_avg": round(os.getloadavg()[0], 2),
            "machine_busy_pct": round(100.0 * (1 - idle / total), 1) if total else None,
        }

    def close(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.send_signal(signal.SIGINT)  # ffmpeg finishes its segment
        for p in self.procs:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        if self.hub is not None:
            self.hub.stop()


def marginal(runs: list[dict[str, Any]]) -> dict[str, float] | None:
    """CPU % and RSS MB each further camera adds (between the smallest and the largest count): what a camera
    costs without the hub's own fixed share, which the 1-camera row carries whole."""
    if len(runs) < 2:
        return None
    lo, hi = min(runs, key=lambda r: r["cameras"]), max(runs, key=lambda r: r["cameras"])
    d = hi["cameras"] - lo["cameras"]
    if d <= 0:
        return None
    return {key: round((hi[key] - lo[key]) / d, 2) for key in ("hub_cpu_pct", "nvr_cpu_pct", "hub_rss_mb",
                                                               "nvr_rss_mb")}


def table(runs: list[dict[str, Any]]) -> str:
    rows = ["| cameras | hub CPU % / camera | NVR baseline CPU % / camera | hub RSS MB (total) | "
            "NVR RSS MB (total) | video fps (min) | detect fps (min) | audio chunks/s (min) | machine busy % | "
            "load (1 min) |",
            "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in runs:
        rows.append(f"| {r['cameras']} | {r['hub_cpu_per_cam']:.2f} | {r['nvr_cpu_per_cam']:.2f} | "
                    f"{r['hub_rss_mb']:.0f} | {r['nvr_rss_mb']:.0f} | {r['video_fps_min']:.1f} | "
                    f"{r['detect_fps_min']:.1f} | "
                    f"{r['audio_chunks_s_min']:.1f} | {r['machine_busy_pct']} | {r['load_avg']} |")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="scripts/bench rtsp", description=__doc__.split("\n\n")[0])
    p.add_argument("--cameras", default="1,4",
                   help="comma-separated camera counts (default 1,4; 0 measures the hub without cameras)")
    p.add_argument("--seconds", type=float, default=30.0, help="measurement window (default 30)")
    p.add_argument("--warmup", type=float, default=8.0, help="seconds after every stream runs (default 8)")
    p.add_argument("--width", type=int, default=640, help="main stream (default 640x360: the server's encode "
                   "shares the machine; the hub's cost is per packet, it never decodes the main stream)")
    p.add_argument("--height", type=int, default=360)
    p.add_argument("--sub-audio", action="store_true", help="the sub-stream carries the AAC track too, as many "
                   "cameras' do (the hub takes its video alone; the baseline's ffmpeg sets up both)")
    p.add_argument("--json", action="store_true", help="also print one JSON line with every number")
    p.add_argument("--keep", action="store_true", help="keep the temp dir (hub logs, segments)")
    p.add_argument("--threads", action="store_true", help="also the hub's CPU per thread (Python names from "
                   "py-spy dump), as %% of a core")
    p.add_argument("--py-spy", metavar="PREFIX", help="record the window with py-spy (--native, 200 Hz, raw "
                   "collapsed stacks to PREFIX.n<cameras>); the profiler costs the hub CPU, so not for the totals")
    args = p.parse_args(sys.argv[1:] if argv is None else argv)
    try:
        counts = [int(x) for x in args.cameras.split(",") if x.strip()]
    except ValueError:
        p.error("--cameras takes comma-separated integers, e.g. 1,4")
    if not counts or min(counts) < 0 or args.seconds <= 0:
        p.error("--cameras needs counts >= 0 (0: the hub alone) and --seconds must be positive")
    ffmpeg = shutil.which("ffmpeg")
    if not ffmpeg:
        print("error: the baseline needs the ffmpeg command (apt-get install ffmpeg)", file=sys.stderr)
        return 2

    def on_term(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt  # unwinds through the finally blocks: server, hub and ffmpeg stopped

    signal.signal(signal.SIGTERM, on_term)
    tmp = Path(tempfile.mkdtemp(prefix="pingwatch-bench-rtsp-"))
    runs: list[dict[str, Any]] = []
    server: RtspServer | None = None
    try:
        server = start_rtsp_server(motion=True, width=args.width, height=args.height, fps=15, keyint_s=2,
                                   bitrate=1000, sub_audio=int(args.sub_audio))
        log(f"RTSP server on {server.main_url} (sub {server.sub_url})")
        for n in counts:
            run = Run(tmp / f"n{n}", n, server, ffmpeg, args)
            try:
                runs.append(run.execute())
                log(f"{n} camera(s): {runs[-1]}")
            except Exception as exc:  # noqa: BLE001 - report the others
                log(f"{n} camera(s) FAILED: {type(exc).__name__}: {exc}")
                if run.hub is not None:
                    print("\n".join(run.hub.lines[-20:]), file=sys.stderr)
                runs.append({"cameras": n, "error": f"{type(exc).__name__}: {exc}"})
            finally:
                run.close()
    except ServiceStartError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    finally:
        if server is not None:
            server.stop()
        if args.keep:
            log(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    ok = [r for r in runs if "error" not in r]
    sub_audio = " + AAC" if args.sub_audio else ""
    print(f"## rtsp: main {args.width}x{args.height}@15 H.264 High (B-frames) + AAC 16 kHz, sub 320x180@5{sub_audio}; "
          f"window {args.seconds:g} s; {os.cpu_count()} CPUs; target <= {TARGET_CPU_PCT:g} % of a core per camera\n")
    print(table(ok))
    for r in ok:
        if r.get("hub_threads"):
            print(f"\nhub threads, {r['cameras']} camera(s), % of a core: " + "; ".join(r["hub_threads"]))
    m = marginal(ok)
    if m:
        print(f"\neach further camera: hub {m['hub_cpu_pct']:.2f} % CPU, {m['hub_rss_mb']:.1f} MB; "
              f"NVR baseline {m['nvr_cpu_pct']:.2f} % CPU, {m['nvr_rss_mb']:.1f} MB")
    for r in runs:
        if "error" in r:
            print(f"\nrun x{r['cameras']} failed: {r['error']}")
    if args.json:
        print(json.dumps({"bench": "rtsp", "cpus": os.cpu_count(), "seconds": args.seconds,
                          "width": args.width, "height": args.height, "runs": runs, "marginal": m}))
    return 1 if len(ok) < len(runs) else 0


if __name__ == "__main__":
    sys.exit(main())
