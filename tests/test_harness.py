"""Smoke tests of the real-service harness: each fixture's service does real work."""

from __future__ import annotations

import socket
import threading
import uuid
from pathlib import Path

import numpy as np
import pytest
from aiohttp import web

from tests.harness import media
from tests.harness.ports import HOST, free_port, free_ports, pickable_ports, port_is_open


# ---------------------------------------------------------------------------------------------------- media
def test_media_files_are_well_formed(tmp_path):
    frames = media.moving_square_scene(64, 36, fps=5, seconds=1)
    assert len(frames) == 5 and frames[0].shape == (36, 64, 3)
    # The square moves: the first and last frames differ where it was.
    assert not np.array_equal(frames[0], frames[-1])
    y4m = media.write_y4m(tmp_path / "s.y4m", frames, fps=5)
    hdr = media.read_y4m_header(y4m)
    assert (hdr["W"], hdr["H"], hdr["F"], hdr["C"]) == ("64", "36", "5:1", "420jpeg")
    frame_bytes = 64 * 36 * 3 // 2
    header_len = len(y4m.read_bytes().split(b"\n", 1)[0]) + 1
    assert y4m.stat().st_size == header_len + 5 * (len(b"FRAME\n") + frame_bytes)
    # White maps to limited-range luma 235, black to 16.
    y, u, v = media.rgb_to_i420(np.array([[[255, 255, 255], [0, 0, 0]]] * 2, dtype=np.uint8))
    assert y[0].tolist() == [235, 16] and u.tolist() == [[128]] and v.tolist() == [[128]]

    import wave

    wav = media.write_wav(tmp_path / "t.wav", media.sine_wave(440, seconds=0.5), rate=48000)
    with wave.open(str(wav)) as w:
        assert (w.getnchannels(), w.getsampwidth(), w.getframerate(), w.getnframes()) == (1, 2, 48000, 24000)


# ---------------------------------------------------------------------------------------------------- mosquitto
def test_mosquitto_publish_receive(mosquitto):
    import paho.mqtt.client as mqtt

    topic = f"pingwatch/test/{uuid.uuid4().hex}"
    subscribed, received = threading.Event(), threading.Event()
    got: list[tuple[str, bytes]] = []

    def on_connect(client, userdata, flags, reason_code, properties):
        assert not reason_code.is_failure, reason_code
        client.subscribe(topic, qos=1)

    def on_subscribe(client, userdata, mid, reason_codes, properties):
        subscribed.set()

    def on_message(client, userdata, msg):
        got.append((msg.topic, msg.payload))
        received.set()

    sub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"sub-{uuid.uuid4().hex[:8]}")
    sub.on_connect, sub.on_subscribe, sub.on_message = on_connect, on_subscribe, on_message
    pub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"pub-{uuid.uuid4().hex[:8]}")
    sub.connect(mosquitto.host, mosquitto.port)
    sub.loop_start()
    try:
        assert subscribed.wait(10), "no SUBACK from the broker"
        pub.connect(mosquitto.host, mosquitto.port)
        pub.loop_start()
        info = pub.publish(topic, b"hello from ping-watch", qos=1)
        info.wait_for_publish(timeout=10)
        assert info.is_published()
        assert received.wait(10), "message not delivered"
        assert got == [(topic, b"hello from ping-watch")]
    finally:
        for c in (pub, sub):
            c.disconnect()
            c.loop_stop()


# ---------------------------------------------------------------------------------------------------- azurite
def test_azurite_blob_and_queue(azurite):
    from azure.storage.blob import BlobServiceClient
    from azure.storage.queue import QueueClient

    assert azurite.blob_url.endswith("/devstoreaccount1")
    assert "AccountName=devstoreaccount1" in azurite.connection_string

    blobs = BlobServiceClient.from_connection_string(azurite.connection_string)
    container = blobs.create_container(f"c{uuid.uuid4().hex[:12]}")
    payload = bytes(range(256)) * 40
    container.upload_blob("clips/one.bin", payload, overwrite=True)
    assert container.download_blob("clips/one.bin").readall() == payload
    assert [b.name for b in container.list_blobs()] == ["clips/one.bin"]

    queue = QueueClient.from_connection_string(azurite.connection_string, f"q{uuid.uuid4().hex[:12]}")
    queue.create_queue()
    queue.send_message('{"event": "motion"}')
    msgs = list(queue.receive_messages(max_messages=5, visibility_timeout=30))
    assert [m.content for m in msgs] == ['{"event": "motion"}']
    queue.delete_message(msgs[0])
    assert list(queue.receive_messages(max_messages=5)) == []


# ---------------------------------------------------------------------------------------------------- postgres
def test_postgres_sql_round_trip(postgres):
    import psycopg

    with psycopg.connect(postgres.dsn, connect_timeout=10) as conn:
        assert conn.execute("SELECT current_database(), inet_server_port()").fetchone() == (
            postgres.dbname,
            postgres.port,
        )
        conn.execute("CREATE TABLE events (id serial PRIMARY KEY, camera text NOT NULL, score real)")
        conn.execute("INSERT INTO events (camera, score) VALUES (%s, %s), (%s, %s)", ("door", 0.5, "yard", 0.25))
        rows = conn.execute("SELECT camera, score FROM events ORDER BY id").fetchall()
        assert rows == [("door", 0.5), ("yard", 0.25)]
        conn.rollback()

    other = postgres.create_database(f"t_{uuid.uuid4().hex[:8]}")
    with psycopg.connect(other) as conn:
        assert conn.execute("SELECT count(*) FROM pg_tables WHERE tablename = 'events'").fetchone() == (0,)


# ---------------------------------------------------------------------------------------------------- chromium
CAMERA_PAGE = """<!doctype html>
<html><body>
<video id="v" playsinline muted autoplay></video>
<canvas id="c" width="640" height="360"></canvas>
<script>
window.state = {ready: false, error: null, frames: 0};
async function start() {
  const stream = await navigator.mediaDevices.getUserMedia({video: true, audio: true});
  const v = document.getElementById('v');
  v.srcObject = stream;
  await v.play();
  const tick = () => { window.state.frames++; v.requestVideoFrameCallback(tick); };
  v.requestVideoFrameCallback(tick);
  const ctx = new AudioContext();
  await ctx.resume();
  const analyser = ctx.createAnalyser();
  analyser.fftSize = 4096;
  ctx.createMediaStreamSource(stream).connect(analyser);
  window.peakHz = () => {
    const bins = new Float32Array(analyser.frequencyBinCount);
    analyser.getFloatFrequencyData(bins);
    let best = 0;
    for (let i = 1; i < bins.length; i++) if (bins[i] > bins[best]) best = i;
    return {hz: best * ctx.sampleRate / analyser.fftSize, db: bins[best]};
  };
  window.brightPixels = () => {
    const c = document.getElementById('c').getContext('2d', {willReadFrequently: true});
    c.drawImage(v, 0, 0, 640, 360);
    const d = c.getImageData(0, 0, 640, 360).data;
    let n = 0;
    for (let i = 0; i < d.length; i += 4) if (d[i] > 225 && d[i + 1] > 225 && d[i + 2] > 215) n++;
    return n;
  };
  window.state.audio = stream.getAudioTracks().map(t => ({kind: t.kind, readyState: t.readyState}));
  window.state.ready = true;
}
start().catch(e => { window.state.error = String(e); });
</script></body></html>"""


@pytest.fixture
async def page_server():
    async def index(request):
        return web.Response(text=CAMERA_PAGE, content_type="text/html")

    app = web.Application()
    app.router.add_get("/", index)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    site = web.TCPSite(runner, HOST, port)
    await site.start()
    assert port_is_open(HOST, port)
    try:
        yield f"http://{HOST}:{port}/"
    finally:
        await runner.cleanup()


@pytest.mark.browser
async def test_chromium_fake_camera_sees_frames_and_audio(camera_browser, smoke_scene, page_server):
    browser = await camera_browser(smoke_scene.video, smoke_scene.audio)
    # Same files → the same browser (one per distinct file set).
    assert await camera_browser.launch_camera_browser(smoke_scene.video, smoke_scene.audio) is browser
    context = await browser.new_context()
    try:
        page = await context.new_page()
        await page.goto(page_server)
        await page.wait_for_function("window.state.ready || window.state.error", timeout=15_000)
        state = await page.evaluate("window.state")
        assert state["error"] is None, state["error"]
        size = await page.evaluate(
            "[document.getElementById('v').videoWidth, document.getElementById('v').videoHeight]")
        assert size == [smoke_scene.width, smoke_scene.height]
        assert state["audio"] == [{"kind": "audio", "readyState": "live"}]

        start = await page.evaluate("window.state.frames")
        await page.wait_for_function(f"window.state.frames >= {start + 10}", timeout=10_000)
        # The picture is our scene: the bright square (72x72 px) is there, not Chromium's default green pattern.
        bright = await page.evaluate("window.brightPixels()")
        assert 72 * 72 * 0.6 < bright < 72 * 72 * 1.6, bright
        # The microphone is our 440 Hz tone (bins are 48000/4096 ≈ 11.7 Hz wide).
        await page.wait_for_function("window.peakHz().db > -60", timeout=10_000)
        peak = await page.evaluate("window.peakHz()")
        assert abs(peak["hz"] - 440) < 25, peak
    finally:
        await context.close()


def test_free_ports_are_below_the_ephemeral_range_and_never_handed_out_twice() -> None:
    # A port from the kernel's ephemeral range can become a connection's local end between the pick and the
    # service's bind (a hub could not listen on its HTTP port in CI); one handed out twice goes to two services.
    low, high = (int(x) for x in Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[:2])
    ports = free_ports(50) + [free_port() for _ in range(50)]
    assert len(set(ports)) == len(ports)
    if pickable_ports():  # room outside the range (else the kernel picks: only distinctness holds)
        inside = [p for p in ports if low <= p <= high or p < 10000]
        assert inside == []
    with socket.socket() as s:  # free: bindable now (as the services bind, reusing addresses in TIME_WAIT)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((HOST, ports[-1]))
