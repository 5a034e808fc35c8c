"""An IP-camera-like RTSP server on 127.0.0.1 (GStreamer's gst-rtsp-server), for the tests and `scripts/bench rtsp`.

Run by Debian's ``/usr/bin/python3`` (python3-gi, gir1.2-gst-rtsp-server-1.0), not the project's venv: PyGObject
and GStreamer come from the system. Driven by ``tests/harness/rtsp.py``.

Paths (what NVR users configure as a camera's main and sub stream):

* ``/main``: H.264 High profile with B-frames (``--width``x``--height`` @ ``--fps``, a keyframe every
  ``--keyint-s`` seconds) and AAC-LC mono audio (``--audio-rate`` Hz, RTP mpeg4-generic as cameras send it);
* ``/sub``: H.264 baseline, ``--sub-width``x``--sub-height`` @ ``--sub-fps``; no audio unless ``--sub-audio 1``
  (many cameras send their audio on the sub-stream too).

Each SETUP a client sends (one per track it takes) is a line ``SETUP <path>`` on stderr.

Both streams are shared (one encoder per path however many clients), so N hub cameras cost the server one encode.

The scene: a still black picture and a quiet noise (``--noise-dbfs``, RMS) until told otherwise. Commands, one per
line on stdin, each answered with one ``OK ...`` line on stdout:

* ``motion on|off``: a moving ball (videotestsrc pattern=ball) / the still black picture, on both paths;
* ``sound on|off``: a 1 kHz tone at ``--sound-dbfs`` / back to the quiet noise;
* ``quit``.

Prints ``READY rtsp://127.0.0.1:PORT`` once it listens, or ``ERROR ...`` on stderr and exits 2 if it cannot (a
missing plugin, the port taken).
"""

from __future__ import annotations

import argparse
import math
import sys

try:
    import gi

    gi.require_version("Gst", "1.0")
    gi.require_version("GstRtspServer", "1.0")
    from gi.repository import GLib, Gst, GstRtspServer
except (ImportError, ValueError) as exc:  # pragma: no cover - reported to the fixture
    print(f"ERROR python3-gi / gir1.2-gst-rtsp-server-1.0 missing: {exc}", file=sys.stderr, flush=True)
    sys.exit(2)

PLUGINS = ("videotestsrc", "audiotestsrc", "x264enc", "h264parse", "aacparse", "rtph264pay",
           "rtpmp4gpay")


def white_noise_volume(dbfs: float) -> float:
    """audiotestsrc's white noise is uniform in [-volume, volume]: RMS = volume / sqrt(3)."""
    return 10 ** (dbfs / 20) * math.sqrt(3)


def sine_volume(dbfs: float) -> float:
    """The amplitude of a sine with this RMS level in dBFS (a full-scale square wave reads 0 dBFS)."""
    return 10 ** (dbfs / 20) * math.sqrt(2)


class Scene:
    """The sources of every prepared media, switched together by the stdin commands."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.motion = False
        self.sound = False
        self.videos: list[Gst.Element] = []
        self.audios: list[Gst.Element] = []

    def add(self, bin_: Gst.Element) -> None:
        for name, into in (("scene", self.videos), ("noise", self.audios)):
            el = bin_.get_by_name(name)
            if el is not None:
                into.append(el)
        self.apply()

    def apply(self) -> None:
        for v in self.videos:
            v.set_property("pattern", "ball" if self.motion else "black")
        for a in self.audios:
            if self.sound:
                a.set_property("wave", "sine")
                a.set_property("volume", sine_volume(self.args.sound_dbfs))
            else:
                a.set_property("wave", "white-noise")
                a.set_property("volume", white_noise_volume(self.args.noise_dbfs))


def launch_main(a: argparse.Namespace) -> str:
    keyint = max(1, round(a.keyint_s * a.fps))
    return (
        f"( videotestsrc name=scene is-live=true pattern=black ! "
        f"video/x-raw,width={a.width},height={a.height},framerate={a.fps}/1 ! "
        # High profile, 2 B-frames (decode order differs from display order, as with many IP cameras)
        f"x264enc speed-preset=superfast bframes=2 b-adapt=false key-int-max={keyint} bitrate={a.bitrate} ! "
        f"video/x-h264,profile=high ! h264parse ! rtph264pay name=pay0 pt=96 config-interval=-1 "
        f"{_audio(a)})"
    )


def _audio(a: argparse.Namespace) -> str:
    """The AAC track, RTP mpeg4-generic as cameras send it."""
    return (
        f"audiotestsrc name=noise is-live=true wave=white-noise samplesperbuffer={a.audio_rate // 50} ! "
        f"audio/x-raw,rate={a.audio_rate},channels=1 ! audioconvert ! {a.aac_encoder} bitrate=32000 ! aacparse ! "
        f"rtpmp4gpay name=pay1 pt=97 "
    )


def launch_sub(a: argparse.Namespace) -> str:
    keyint = max(1, round(a.keyint_s * a.sub_fps))
    return (
        f"( videotestsrc name=scene is-live=true pattern=black ! "
        f"video/x-raw,width={a.sub_width},height={a.sub_height},framerate={a.sub_fps}/1 ! "
        f"x264enc speed-preset=ultrafast tune=zerolatency key-int-max={keyint} bitrate=150 ! "
        f"video/x-h264,profile=baseline ! h264parse ! rtph264pay name=pay0 pt=96 config-interval=-1 "
        + (_audio(a) if a.sub_audio else "")
        + ")"
    )


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--width", type=int, default=640)
    p.add_argument("--height", type=int, default=360)
    p.add_argument("--fps", type=int, default=15)
    p.add_argument("--bitrate", type=int, default=800, help="main stream kbit/s")
    p.add_argument("--keyint-s", type=float, default=2.0)
    p.add_argument("--sub-width", type=int, default=320)
    p.add_argument("--sub-height", type=int, default=180)
    p.add_argument("--sub-fps", type=int, default=5)
    p.add_argument("--audio-rate", type=int, default=16000)
    p.add_argument("--sub-audio", type=int, default=0, help="1: the sub-stream carries the AAC track too")
    p.add_argument("--aac-encoder", default="avenc_aac", help="GStreamer AAC encoder (avenc_aac, voaacenc)")
    p.add_argument("--noise-dbfs", type=float, default=-63.0)
    p.add_argument("--sound-dbfs", type=float, default=-20.0)
    p.add_argument("--motion", action="store_true", help="start with the moving ball")
    args = p.parse_args()

    Gst.init(None)
    missing = [name for name in (*PLUGINS, args.aac_encoder) if Gst.ElementFactory.find(name) is None]
    if missing:
        print(f"ERROR GStreamer elements missing: {', '.join(missing)} "
              "(gstreamer1.0-plugins-{base,good,bad,ugly}, gstreamer1.0-libav)", file=sys.stderr, flush=True)
        return 2

    scene = Scene(args)
    scene.motion = args.motion
    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(str(args.port))
    mounts = server.get_mount_points()
    for path, launch in (("/main", launch_main(args)), ("/sub", launch_sub(args))):
        factory = GstRtspServer.RTSPMediaFactory()
        factory.set_launch(launch)
        factory.set_shared(True)
        factory.connect("media-configure", lambda _f, media: scene.add(media.get_element()))
        mounts.add_factory(path, factory)
    # Each SETUP on stderr (one line per track a client asks for): which tracks a client takes
    def on_client(_server: GstRtspServer.RTSPServer, client: GstRtspServer.RTSPClient) -> None:
        client.connect("setup-request", lambda _c, ctx: print(f"SETUP {ctx.uri.abspath}", file=sys.stderr,
                                                              flush=True))

    server.connect("client-connected", on_client)
    try:
        source_id = server.attach(None)
    except GLib.Error as exc:
        print(f"ERROR cannot listen on 127.0.0.1:{args.port}: {exc.message}", file=sys.stderr, flush=True)
        return 2
    if not source_id:
        print(f"ERROR cannot listen on 127.0.0.1:{args.port} (in use?)", file=sys.stderr, flush=True)
        return 2

    loop = GLib.MainLoop()

    def on_command(channel: GLib.IOChannel, cond: GLib.IOCondition) -> bool:
        if cond & (GLib.IOCondition.HUP | GLib.IOCondition.ERR):
            loop.quit()  # the fixture went away: do not outlive it
            return False
        line = sys.stdin.readline()
        if not line:
            loop.quit()
            return False
        words = line.split()
        if words == ["quit"]:
            loop.quit()
            return False
        if len(words) == 2 and words[0] in ("motion", "sound") and words[1] in ("on", "off"):
            setattr(scene, words[0], words[1] == "on")
            scene.apply()
            print(f"OK {words[0]} {words[1]}", flush=True)
        else:
            print(f"OK ignored {line.strip()!r}", flush=True)
        return True

    GLib.io_add_watch(GLib.IOChannel.unix_new(sys.stdin.fileno()), GLib.PRIORITY_DEFAULT,
                      GLib.IOCondition.IN | GLib.IOCondition.HUP | GLib.IOCondition.ERR, on_command)
    print(f"READY rtsp://127.0.0.1:{server.get_bound_port()}", flush=True)
    loop.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
