"""Benchmark of the hub's WebRTC ingest: CPU, memory, loss and what actually arrives, per 720p phone camera.

Usage: scripts/bench ingest [--cameras 1,2,4] [--seconds 20] [--warmup 16] [--modes tap,aiortc,naive] [--json]

For each N in --cameras and each mode, ONE real hub process (``python -m hub``, temp config and data dir, bound
to 127.0.0.1) receives N headless Chromium fake cameras (one browser, one context per camera, each paired with
its own code) playing a generated 1280x720 @15 fps Y4M (smooth texture with mild fixed noise and a moving
object; pure noise makes OpenH264 fall to ~1 fps) and a WAV. Modes:

* ``tap``:   the product path: the record track is tapped, never decoded (``ingest.decode_record: false``);
* ``aiortc``: the same, but every packet on aiortc's own receive path (``PINGWATCH_INGEST_FASTPATH=0``: no
             direct SRTP dispatch, no socket poller, no lean handlers), to show what those save;
* ``naive``: aiortc's default path: the record track is also decoded and the frames discarded
             (``ingest.decode_record: true``, benchmarks only).

Warm-up: every page reports ``streaming``, record frames arrive at the hub at 1280x720 (up to 30 s for the
sender's bandwidth ramp) and the 15 s ring buffer has filled (``--warmup`` s after the first frames at least).
Then over ``--seconds``:

* hub CPU: utime+stime of the hub pid from /proc/<pid>/stat (all its threads), % of one core, also split into
  the main (event loop) thread and the other threads (aiortc's decoder threads);
* hub memory: at the end of the window minus the same hub before any camera connected, as VmRSS (all resident
  pages), as private memory (RssAnon: ring buffers, heap, thread stacks; the per-camera target) and as code paged
  in (RssFile: the first camera touches OpenCV's and libavcodec's code, ~28 MB shared with every other process
  using them and paid once, not per camera); the marginal slopes across N are printed too;
* arrival: resolution (from the SPS), fps and bitrate of the record track measured at the hub from its
  per-track counters (``GET /api/admin/cameras`` -> ``ingest.tracks.record``), not from the page;
* loss: record frames the page sent (``framesSent`` of the record sender's outbound-rtp, read through an init
  script that keeps the page's RTCPeerConnection) minus record frames that reached the hub's tap, plus the ring
  buffer's dropped counters and the tap's broken count over the window.

Chromium runs on the same machine but only the hub pid is measured; the machine's total busy % is printed so a
saturated run is visible. Prints a markdown table; ``--json`` also prints one JSON line (last line of stdout).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import ssl
import sys
import tempfile
import time
import wave
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.harness.chromium import BASE_ARGS  # noqa: E402
from tests.hubproc import HubProcess  # noqa: E402

W, H, FPS = 1280, 720, 15
PREROLL_S = 15.0
TARGET_FPS = 13.0
TARGET_CPU_PCT = 4.0
TARGET_MB = 12.0
TARGET_RATIO = 3.0
CLK_TCK = os.sysconf("SC_CLK_TCK")

CHROMIUM_ARGS = [
    *BASE_ARGS,
    # N cameras share one browser: keep every page's timers and encoders at full speed.
    "--disable-background-timer-throttling",
    "--disable-renderer-backgrounding",
    "--disable-backgrounding-occluded-windows",
]

# Keeps every RTCPeerConnection the page makes, so the benchmark can read the record sender's own counters.
INIT_SCRIPT = """
(() => {
  const Orig = window.RTCPeerConnection;
  if (!Orig || window.__benchPcs) return;
  window.__benchPcs = [];
  window.RTCPeerConnection = class extends Orig {
    constructor(...args) { super(...args); window.__benchPcs.push(this); }
  };
})();
"""

SENDER_STATS_JS = """
async (mid) => {
  const pcs = (window.__benchPcs || []).filter((p) => p.connectionState === 'connected');
  const pc = pcs[pcs.length - 1];
  if (!pc) return null;
  const tr = pc.getTransceivers().find((t) => t.mid === mid);
  if (!tr) return null;
  const rep = await tr.sender.getStats();
  let out = null;
  rep.forEach((s) => {
    if (s.type === 'outbound-rtp' && s.kind === 'video') {
      if (!out || (s.framesSent || 0) > out.frames_sent) {
        out = {frames_sent: s.framesSent || 0, frames_encoded: s.framesEncoded || 0, bytes_sent: s.bytesSent || 0,
               width: s.frameWidth || null, height: s.frameHeight || null, fps: s.framesPerSecond || null,
               limitation: s.qualityLimitationReason || null, encoder: s.encoderImplementation || null};
      }
    }
  });
  if (out) out.at = Date.now() / 1000;
  return out;
}
"""


# ------------------------------------------------------------------------------------------------------------
# Generated media
# ------------------------------------------------------------------------------------------------------------


def write_scene(path: Path, seconds: float = 4.0) -> Path:
    """1280x720 @15 fps Y4M: a smooth textured background with mild fixed noise, a textured disc moving on a
    closed path (the loop point is seamless) and slowly shifting chroma."""
    n = round(seconds * FPS)
    rng = np.random.default_rng(11)
    yy, xx = np.mgrid[0:H, 0:W].astype(np.float32)
    bg = 105 + 35 * np.sin(xx / 41.0) * np.cos(yy / 29.0) + 25 * (xx / W) + rng.normal(0, 2.5, (H, W))
    cy, cx = np.mgrid[0 : H // 2, 0 : W // 2].astype(np.float32)
    r = 70
    dy, dx = np.mgrid[-r:r, -r:r].astype(np.float32)
    disc = (dx * dx + dy * dy) < r * r
    disc_tex = 200 + 40 * np.sin(dx / 6.0) * np.sin(dy / 6.0)
    with open(path, "wb") as f:
        f.write(f"YUV4MPEG2 W{W} H{H} F{FPS}:1 Ip A1:1 C420jpeg XYSCSS=420JPEG\n".encode("ascii"))
        for i in range(n):
            a = 2 * np.pi * i / n
            x0 = int(W / 2 + (W / 2 - 2 * r - 20) * np.cos(a)) - r
            y0 = int(H / 2 + (H / 2 - 2 * r - 20) * np.sin(2 * a) / 1.2) - r
            y = bg.copy()
            win = y[y0 : y0 + 2 * r, x0 : x0 + 2 * r]
            win[disc] = disc_tex[disc]
            u = 128 + 18 * np.sin(cx / 60.0 + a)
            v = 128 + 18 * np.cos(cy / 50.0 - a)
            f.write(b"FRAME\n")
            f.write(np.clip(y, 0, 255).astype(np.uint8).tobytes())
            f.write(np.clip(u, 0, 255).astype(np.uint8).tobytes())
            f.write(np.clip(v, 0, 255).astype(np.uint8).tobytes())
    return path


def write_sound(path: Path, seconds: float = 4.0, rate: int = 48000) -> Path:
    t = np.arange(int(seconds * rate)) / rate
    rng = np.random.default_rng(3)
    s = 0.15 * np.sin(2 * np.pi * 330 * t) * (0.6 + 0.4 * np.sin(2 * np.pi * 0.5 * t)) + rng.normal(0, 0.01, t.size)
    pcm = np.clip(np.rint(s * 32767), -32768, 32767).astype("<i2")
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm.tobytes())
    return path


# ------------------------------------------------------------------------------------------------------------
# /proc
# ------------------------------------------------------------------------------------------------------------


def _ticks(stat_path: str) -> int | None:
    try:
        with open(stat_path) as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of stat)


def cpu_sample(pid: int) -> dict[str, Any]:
    threads: dict[int, int] = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        t = _ticks(f"/proc/{pid}/task/{tid}/stat")
        if t is not None:
            threads[int(tid)] = t
    with open("/proc/stat") as f:
        parts = [int(x) for x in f.readline().split()[1:]]
    idle = parts[3] + parts[4]
    return {"wall": time.monotonic(), "proc": _ticks(f"/proc/{pid}/stat") or 0, "threads": threads,
            "sys_total": sum(parts[:8]), "sys_idle": idle}


def cpu_delta(a: dict[str, Any], b: dict[str, Any], pid: int) -> dict[str, float]:
    wall = b["wall"] - a["wall"]
    pct = lambda ticks: 100.0 * ticks / CLK_TCK / wall  # noqa: E731
    main = b["threads"].get(pid, 0) - a["threads"].get(pid, 0)
    total = b["proc"] - a["proc"]
    sys_total = b["sys_total"] - a["sys_total"]
    sys_busy = 100.0 * (1 - (b["sys_idle"] - a["sys_idle"]) / sys_total) if sys_total else 0.0
    return {"cpu_pct": pct(total), "main_pct": pct(main), "other_pct": pct(total - main), "wall_s": wall,
            "machine_busy_pct": sys_busy}


def rss_mb(pid: int, field: str = "VmRSS") -> float:
    """VmRSS (all resident pages), RssAnon (the process's own memory: heap, buffers, thread stacks) or RssFile
    (pages of mapped files: shared library code paged in on first use, shared with other processes)."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024.0
    return float("nan")


# ------------------------------------------------------------------------------------------------------------
# One run: N cameras, one mode, one hub
# ------------------------------------------------------------------------------------------------------------


class Run:
    def __init__(self, root: Path, n: int, mode: str, args: argparse.Namespace, video: Path, audio: Path) -> None:
        self.root, self.n, self.mode, self.args, self.video, self.audio = root, n, mode, args, video, audio
        self.hub: HubProcess | None = None
        self.browser: Any = None
        self.pages: list[Any] = []
        self.camera_ids: list[str] = []

    def log(self, msg: str) -> None:
        print(f"[{self.mode} x{self.n}] {msg}", file=sys.stderr, flush=True)

    async def api(self, client: Any, method: str, path: str) -> Any:
        assert self.hub is not None
        r = await client.request(method, f"{self.hub.https}{path}",
                                 headers={"Authorization": f"Bearer {self.hub.admin_secret}"})
        r.raise_for_status()
        return r.json()

    async def cameras(self, client: Any) -> dict[str, dict[str, Any]]:
        cams = (await self.api(client, "GET", "/api/admin/cameras"))["cameras"]
        return {c["id"]: c for c in cams}

    async def page_stats(self, cams: dict[str, dict[str, Any]]) -> list[dict[str, Any] | None]:
        async def one(page: Any, cid: str) -> Any:
            rec = ((cams.get(cid) or {}).get("ingest") or {}).get("tracks", {}).get("record") or {}
            mid = rec.get("mid")
            if mid is None:
                return None
            try:
                return await page.evaluate(SENDER_STATS_JS, mid)
            except Exception:  # noqa: BLE001 - a crashed page shows up as missing stats
                return None

        return await asyncio.gather(*(one(p, cid) for p, cid in zip(self.pages, self.camera_ids, strict=False)))

    async def execute(self, pw: Any) -> dict[str, Any]:
        import httpx

        args = self.args
        self.hub = hub = HubProcess.create(
            self.root, ingest={"decode_record": self.mode == "naive"}, log={"format": "json", "level": "info"}
        ).start(env={"PINGWATCH_INGEST_FASTPATH": "0"} if self.mode == "aiortc" else None)
        pid = hub.proc.pid  # type: ignore[union-attr]
        ctx = ssl.create_default_context(cafile=str(hub.cert_path))
        async with httpx.AsyncClient(verify=ctx, timeout=10) as client:
            if not args.record:
                # Ingest is what is measured: the moving test scene would otherwise keep an event (clip writing,
                # snapshots) open for the whole window. Disarmed, the triggers still run on every camera.
                r = await client.post(f"{hub.https}/api/ui/arm", json={"armed": False},
                                      headers={"Authorization": f"Bearer {hub.admin_secret}"})
                r.raise_for_status()
            await asyncio.sleep(2.0)
            idle_a = cpu_sample(pid)
            await asyncio.sleep(3.0)
            idle_b = cpu_sample(pid)
            base_rss = rss_mb(pid)
            base_anon = rss_mb(pid, "RssAnon")
            base_file = rss_mb(pid, "RssFile")
            idle_cpu = cpu_delta(idle_a, idle_b, pid)["cpu_pct"]
            self.log(f"hub pid {pid}: idle {idle_cpu:.1f} % CPU, {base_rss:.1f} MB RSS")

            self.browser = await pw.chromium.launch(
                executable_path=shutil.which("chromium"), headless=True,
                args=[*CHROMIUM_ARGS, f"--use-file-for-fake-video-capture={self.video}",
                      f"--use-file-for-fake-audio-capture={self.audio}",
                      f"--ignore-certificate-errors-spki-list={hub.spki}"],
            )
            for _ in range(self.n):
                code = (await self.api(client, "POST", "/api/admin/pairing-codes"))["code"]
                bctx = await self.browser.new_context()
                await bctx.add_init_script(INIT_SCRIPT)
                page = await bctx.new_page()
                await page.goto(f"{hub.https}/cam/#code={code}")
                self.pages.append(page)
            t_start = time.monotonic()
            for page in self.pages:
                await page.wait_for_function("window.pingwatch && window.pingwatch.state === 'streaming'",
                                             timeout=60_000)
                self.camera_ids.append(await page.evaluate("window.pingwatch.cameraId"))
            self.log(f"{self.n} page(s) streaming after {time.monotonic() - t_start:.1f} s")

            # Record frames at the hub, at the full resolution (the sender ramps up under the pinned REMB).
            deadline = time.monotonic() + 30
            t_first = None
            while True:
                cams = await self.cameras(client)
                recs = [((cams.get(cid) or {}).get("ingest") or {}).get("tracks", {}).get("record") or {}
                        for cid in self.camera_ids]
                if t_first is None and all(r.get("frames", 0) > 0 for r in recs):
                    t_first = time.monotonic()
                if t_first is not None and all((r.get("width"), r.get("height")) == (W, H) for r in recs):
                    break
                if time.monotonic() > deadline:
                    self.log("warning: not every camera reached 1280x720 at the hub within 30 s: "
                             + ", ".join(f"{r.get('width')}x{r.get('height')}" for r in recs))
                    t_first = t_first or time.monotonic()
                    break
                await asyncio.sleep(0.5)
            self.log(f"record frames at 1280x720 after {time.monotonic() - t_start:.1f} s; warming up")

            # Warm-up: the ring buffers fill (15 s of pre-roll) and the senders settle.
            deadline = time.monotonic() + args.warmup + 30
            while True:
                cams = await self.cameras(client)
                spans = [(((cams.get(cid) or {}).get("stats") or {}).get("buffer") or {}).get("span_s", 0.0)
                         for cid in self.camera_ids]
                if time.monotonic() - t_first >= args.warmup and min(spans) >= PREROLL_S - 1.0:
                    break
                if time.monotonic() > deadline:
                    self.log(f"warning: buffers not full after warm-up: spans {spans}")
                    break
                await asyncio.sleep(1.0)

            # --- window -------------------------------------------------------------------------------
            cams0 = await self.cameras(client)
            pages0 = await self.page_stats(cams0)
            cpu0 = cpu_sample(pid)
            rss_samples = []
            end = time.monotonic() + args.seconds
            while time.monotonic() < end:
                await asyncio.sleep(min(1.0, max(0.0, end - time.monotonic())))
                rss_samples.append(rss_mb(pid))
            cpu1 = cpu_sample(pid)
            rss_end = rss_mb(pid)
            anon_end = rss_mb(pid, "RssAnon")
            file_end = rss_mb(pid, "RssFile")
            pages1 = await self.page_stats(cams0)
            cams1 = await self.cameras(client)
            cpu = cpu_delta(cpu0, cpu1, pid)
            window = cpu["wall_s"]

            per_cam = []
            for cid, p0, p1 in zip(self.camera_ids, pages0, pages1, strict=False):
                c0, c1 = cams0.get(cid) or {}, cams1.get(cid) or {}
                r0 = ((c0.get("ingest") or {}).get("tracks") or {}).get("record") or {}
                r1 = ((c1.get("ingest") or {}).get("tracks") or {}).get("record") or {}
                d1 = ((c1.get("ingest") or {}).get("tracks") or {}).get("detect") or {}
                d0 = ((c0.get("ingest") or {}).get("tracks") or {}).get("detect") or {}
                b0 = (c0.get("stats") or {}).get("buffer") or {}
                b1 = (c1.get("stats") or {}).get("buffer") or {}
                frames = r1.get("frames", 0) - r0.get("frames", 0)
                if not r0 or not r1 or frames < 0 or (r1.get("last_frame_t") or 0) < (r0.get("last_frame_t") or 0):
                    # The page reconnected during the window (a new peer restarts the counters): no deltas.
                    per_cam.append({"camera_id": cid, "reconnected": True})
                    continue
                nbytes = r1.get("bytes", 0) - r0.get("bytes", 0)
                t_span = (r1.get("last_frame_t") or 0) - (r0.get("last_frame_t") or 0)
                sent = (p1 or {}).get("frames_sent", 0) - (p0 or {}).get("frames_sent", 0) if p0 and p1 else None
                encoded = (p1["frames_encoded"] - p0["frames_encoded"]) if p0 and p1 else None
                page_span = (p1["at"] - p0["at"]) if p0 and p1 else None
                # The page and the hub are read a few ms apart: scale the page's count to the hub's span.
                sent_scaled = sent * t_span / page_span if sent is not None and page_span and t_span > 0 else sent
                per_cam.append({
                    "camera_id": cid,
                    "width": r1.get("width"), "height": r1.get("height"), "codec": r1.get("codec"),
                    "frames": frames,
                    "fps": frames / t_span if t_span > 0 else 0.0,
                    "bitrate_kbps": nbytes * 8 / t_span / 1000 if t_span > 0 else 0.0,
                    "keyframes": r1.get("keyframes", 0) - r0.get("keyframes", 0),
                    "max_keyframe_gap_s": r1.get("max_keyframe_gap_s"),
                    "broken": r1.get("broken", 0) - r0.get("broken", 0),
                    "rtp_packets": (r1.get("rtp_packets") or 0) - (r0.get("rtp_packets") or 0),
                    "rtp_lost": (r1.get("rtp_lost") or 0) - (r0.get("rtp_lost") or 0),
                    "decoded": r1.get("decoded_delivered", 0) - r0.get("decoded_delivered", 0),
                    "detect_fps": ((d1.get("frames", 0) - d0.get("frames", 0)) / window) if d1 else None,
                    "page_frames_sent": sent,
                    "page_frames_encoded": encoded,
                    "page_width": (p1 or {}).get("width"), "page_height": (p1 or {}).get("height"),
                    "page_limitation": (p1 or {}).get("limitation"),
                    "lost_frames": None if sent_scaled is None else max(0, round(sent_scaled - frames)),
                    "buffer_bytes": b1.get("bytes"), "buffer_span_s": b1.get("span_s"),
                    "buffer_dropped": (b1.get("dropped_broken", 0) + b1.get("dropped_no_keyframe", 0)
                                       - b0.get("dropped_broken", 0) - b0.get("dropped_no_keyframe", 0)),
                })
            self.log(f"window {window:.1f} s: hub {cpu['cpu_pct']:.1f} % CPU, RSS {rss_end:.1f} MB "
                     f"(base {base_rss:.1f}), machine {cpu['machine_busy_pct']:.0f} % busy")

        reconnected = sum(1 for c in per_cam if c.get("reconnected"))
        if reconnected:
            self.log(f"warning: {reconnected} camera(s) reconnected during the window; left out of the stream numbers")
        per_cam_all, per_cam = per_cam, [c for c in per_cam if not c.get("reconnected")] or [
            {"width": None, "height": None, "fps": 0.0, "bitrate_kbps": 0.0, "frames": 0, "page_frames_sent": None,
             "lost_frames": None, "buffer_bytes": 0, "buffer_span_s": 0, "buffer_dropped": 0, "broken": 0,
             "rtp_packets": 0, "rtp_lost": 0, "page_limitation": None}]
        fps = [c["fps"] for c in per_cam]
        sent = [c["page_frames_sent"] for c in per_cam if c["page_frames_sent"] is not None]
        lost = [c["lost_frames"] for c in per_cam if c["lost_frames"] is not None]
        return {
            "mode": self.mode,
            "cameras": self.n,
            "reconnected": reconnected,
            "window_s": round(window, 2),
            "hub_cpu_pct": round(cpu["cpu_pct"], 2),
            "hub_cpu_pct_per_camera": round(cpu["cpu_pct"] / self.n, 2),
            "hub_main_thread_pct": round(cpu["main_pct"], 2),
            "hub_other_threads_pct": round(cpu["other_pct"], 2),
            "hub_idle_cpu_pct": round(idle_cpu, 2),
            "machine_busy_pct": round(cpu["machine_busy_pct"], 1),
            "rss_base_mb": round(base_rss, 1),
            "rss_end_mb": round(rss_end, 1),
            "rss_max_mb": round(max([*rss_samples, rss_end]), 1),
            "rss_per_camera_mb": round((rss_end - base_rss) / self.n, 2),
            "anon_base_mb": round(base_anon, 1),
            "anon_end_mb": round(anon_end, 1),
            "anon_per_camera_mb": round((anon_end - base_anon) / self.n, 2),
            "file_paged_in_mb": round(file_end - base_file, 1),
            "buffer_mb_per_camera": round(sum(c["buffer_bytes"] or 0 for c in per_cam) / len(per_cam) / 2**20, 2),
            "buffer_span_s_min": round(min(c["buffer_span_s"] or 0 for c in per_cam), 2),
            "arrival_resolutions": sorted({f"{c['width']}x{c['height']}" for c in per_cam}),
            "arrival_fps_min": round(min(fps), 2),
            "arrival_fps_mean": round(sum(fps) / len(fps), 2),
            "arrival_kbps_mean": round(sum(c["bitrate_kbps"] for c in per_cam) / len(per_cam), 1),
            "frames_received": sum(c["frames"] for c in per_cam),
            "frames_sent": sum(sent) if sent else None,
            "frames_lost": sum(lost) if lost else None,
            "buffer_dropped": sum(c["buffer_dropped"] for c in per_cam),
            "broken": sum(c["broken"] for c in per_cam),
            "rtp_packets": sum(c["rtp_packets"] for c in per_cam),
            "rtp_lost": sum(c["rtp_lost"] for c in per_cam),
            "page_limitations": sorted({str(c["page_limitation"]) for c in per_cam}),
            "per_camera": [{k: (round(v, 2) if isinstance(v, float) else v) for k, v in c.items()}
                           for c in per_cam_all],
        }

    async def close(self) -> None:
        for page in self.pages:
            try:
                await page.context.close()
            except Exception:  # noqa: BLE001
                pass
        if self.browser is not None:
            try:
                await self.browser.close()
            except Exception:  # noqa: BLE001
                pass
        if self.hub is not None:
            try:
                await asyncio.to_thread(self.hub.stop, 20)
            except Exception:  # noqa: BLE001
                self.hub.kill()


# ------------------------------------------------------------------------------------------------------------
# Report
# ------------------------------------------------------------------------------------------------------------


def slope(points: list[tuple[int, float]]) -> float | None:
    if len(points) < 2:
        return None
    xs = np.array([p[0] for p in points], dtype=float)
    ys = np.array([p[1] for p in points], dtype=float)
    return float(np.polyfit(xs, ys, 1)[0])


def summarise(runs: list[dict[str, Any]]) -> dict[str, Any]:
    by = {(r["mode"], r["cameras"]): r for r in runs}
    out: dict[str, Any] = {"cpu_ratio_naive_over_tap": {}, "marginal": {}}
    for (mode, n), r in by.items():
        if mode == "tap" and ("naive", n) in by and r["hub_cpu_pct"] > 0:
            out["cpu_ratio_naive_over_tap"][n] = round(by[("naive", n)]["hub_cpu_pct"] / r["hub_cpu_pct"], 2)
    for mode in sorted({r["mode"] for r in runs}):
        rs = sorted((r for r in runs if r["mode"] == mode), key=lambda r: r["cameras"])
        cpu = slope([(r["cameras"], r["hub_cpu_pct"]) for r in rs])
        mem = slope([(r["cameras"], r["rss_end_mb"]) for r in rs])
        anon = slope([(r["cameras"], r["anon_end_mb"]) for r in rs])
        out["marginal"][mode] = {"cpu_pct_per_camera": None if cpu is None else round(cpu, 2),
                                 "rss_mb_per_camera": None if mem is None else round(mem, 2),
                                 "anon_mb_per_camera": None if anon is None else round(anon, 2)}
    tap = [r for r in runs if r["mode"] == "tap"]
    if tap:
        out["targets"] = {
            "arrival_720p_at_13fps": all(r["arrival_resolutions"] == [f"{W}x{H}"] and r["arrival_fps_min"] >= TARGET_FPS
                                         for r in tap),
            "cpu_le_4pct_per_camera": all(r["hub_cpu_pct_per_camera"] <= TARGET_CPU_PCT for r in tap),
            # The camera's own memory (RssAnon: buffers, heap, stacks). Shared library code that the first
            # camera pages in (OpenCV, libavcodec: RssFile) is reported next to it, not counted per camera.
            "mem_le_12mb_per_camera": all(r["anon_per_camera_mb"] <= TARGET_MB for r in tap),
            "naive_ge_3x_cpu": (all(v >= TARGET_RATIO for v in out["cpu_ratio_naive_over_tap"].values())
                                if out["cpu_ratio_naive_over_tap"] else None),
        }
    return out


def table(runs: list[dict[str, Any]], summary: dict[str, Any]) -> str:
    head = ("| mode | cams | hub CPU % (1 core) | per cam | main / other threads | RSS base → end MB | per cam MB "
            "| private MB/cam | code paged in MB | buffer MB/cam (span s) | arrival res | fps min/mean | kbps/cam "
            "| frames sent → recv | RTP lost | buf drop "
            "| machine busy % |")
    lines = [head, "|" + "|".join("---" for _ in range(head.count("|") - 1)) + "|"]
    for r in runs:
        sent = "?" if r["frames_sent"] is None else str(r["frames_sent"])
        lines.append(
            f"| {r['mode']} | {r['cameras']} | {r['hub_cpu_pct']:.1f} | {r['hub_cpu_pct_per_camera']:.1f} "
            f"| {r['hub_main_thread_pct']:.1f} / {r['hub_other_threads_pct']:.1f} "
            f"| {r['rss_base_mb']:.0f} → {r['rss_end_mb']:.0f} | {r['rss_per_camera_mb']:.1f} "
            f"| {r['anon_per_camera_mb']:.1f} | {r['file_paged_in_mb']:.1f} "
            f"| {r['buffer_mb_per_camera']:.1f} ({r['buffer_span_s_min']:.1f}) | {', '.join(r['arrival_resolutions'])} "
            f"| {r['arrival_fps_min']:.1f} / {r['arrival_fps_mean']:.1f} | {r['arrival_kbps_mean']:.0f} "
            f"| {sent} → {r['frames_received']} | {r.get('rtp_lost', 0)}/{r.get('rtp_packets', 0)} "
            f"| {r['buffer_dropped']} | {r['machine_busy_pct']:.0f}"
            + (f" ({r['reconnected']} reconnected)" if r.get("reconnected") else "") + " |"
        )
    out = "\n".join(lines)
    extra = []
    if summary["cpu_ratio_naive_over_tap"]:
        extra.append("CPU naive / tap: " + ", ".join(f"{n} cam: {v:.2f}x"
                                                      for n, v in sorted(summary["cpu_ratio_naive_over_tap"].items())))
    for mode, m in summary["marginal"].items():
        if m["cpu_pct_per_camera"] is not None:
            extra.append(f"marginal ({mode}, slope over N): {m['cpu_pct_per_camera']:.2f} % CPU, "
                         f"{m['rss_mb_per_camera']:.2f} MB RSS and {m['anon_mb_per_camera']:.2f} MB private memory "
                         "per added camera")
    if "targets" in summary:
        extra.append("targets (tap): " + ", ".join(f"{k}={'PASS' if v else ('n/a' if v is None else 'MISS')}"
                                                    for k, v in summary["targets"].items()))
    return out + "\n\n" + "\n".join(extra)


# ------------------------------------------------------------------------------------------------------------


async def main_async(args: argparse.Namespace) -> int:
    from playwright.async_api import async_playwright

    if not shutil.which("chromium"):
        print("error: the `chromium` binary is not installed (apt-get install chromium)", file=sys.stderr)
        return 2
    from hub.config import IngestConfig

    if "naive" in args.modes and "decode_record" not in IngestConfig.model_fields:
        print("error: hub/config.py IngestConfig has no `decode_record` field; the naive mode needs it "
              "(or run with --modes tap)", file=sys.stderr)
        return 2
    tmp = Path(tempfile.mkdtemp(prefix="pingwatch-bench-ingest-"))
    runs: list[dict[str, Any]] = []
    try:
        print(f"[bench] generating {W}x{H}@{FPS} scene in {tmp}", file=sys.stderr, flush=True)
        video = write_scene(tmp / "scene.y4m")
        audio = write_sound(tmp / "scene.wav")
        async with async_playwright() as pw:
            for n in args.cameras:
                for mode in args.modes:
                    run = Run(tmp / f"{mode}-{n}", n, mode, args, video, audio)
                    try:
                        runs.append(await run.execute(pw))
                    except Exception as exc:  # noqa: BLE001 - report the others
                        run.log(f"FAILED: {type(exc).__name__}: {exc}")
                        if run.hub is not None:
                            print("\n".join(run.hub.lines[-20:]), file=sys.stderr)
                        runs.append({"mode": mode, "cameras": n, "error": f"{type(exc).__name__}: {exc}"})
                    finally:
                        await run.close()
    finally:
        if args.keep:
            print(f"[bench] kept {tmp}", file=sys.stderr)
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    ok = [r for r in runs if "error" not in r]
    summary = summarise(ok)
    print(f"## ingest: {W}x{H}@{FPS} H.264 record + 320x180@5 detect + Opus per camera; window {args.seconds:g} s, "
          f"warm-up >= {args.warmup:g} s; hub pid only ({os.cpu_count()} CPUs)\n")
    print(table(ok, summary))
    for r in runs:
        if "error" in r:
            print(f"\nrun {r['mode']} x{r['cameras']} failed: {r['error']}")
    if args.json:
        print(json.dumps({"bench": "ingest", "cpus": os.cpu_count(), "seconds": args.seconds, "warmup": args.warmup,
                          "runs": runs, "summary": summary}, default=str))
    return 1 if len(ok) < len(runs) else 0


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="scripts/bench ingest", description=__doc__.split("\n\n")[0])
    p.add_argument("--cameras", default="1,2,4", help="comma-separated camera counts (default 1,2,4)")
    p.add_argument("--seconds", type=float, default=20.0, help="measurement window (default 20)")
    p.add_argument("--warmup", type=float, default=16.0,
                   help="minimum seconds of record frames before the window; the 15 s buffer must be full (default 16)")
    p.add_argument("--modes", default="tap,naive",
                   help="tap (the product path), aiortc (tap on aiortc's own per-packet path: "
                        "PINGWATCH_INGEST_FASTPATH=0), naive (record decoded); default tap,naive")
    p.add_argument("--json", action="store_true", help="also print one JSON line with every number")
    p.add_argument("--keep", action="store_true", help="keep the temp dir (hub logs, data, generated media)")
    p.add_argument("--record", action="store_true",
                   help="leave the hub armed: the moving scene then records events (clip writing is included)")
    args = p.parse_args(argv)
    try:
        args.cameras = [int(x) for x in args.cameras.split(",") if x.strip()]
    except ValueError:
        p.error("--cameras takes comma-separated integers, e.g. 1,2,4")
    if not args.cameras or min(args.cameras) < 1:
        p.error("--cameras needs at least one count >= 1")
    args.modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    if not args.modes or any(m not in ("tap", "aiortc", "naive") for m in args.modes):
        p.error("--modes takes tap, aiortc and/or naive")
    if args.seconds <= 0:
        p.error("--seconds must be positive")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)

    def on_term(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt  # unwinds through the finally blocks: browsers closed, hubs stopped

    signal.signal(signal.SIGTERM, on_term)
    try:
        return asyncio.run(main_async(args))
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
