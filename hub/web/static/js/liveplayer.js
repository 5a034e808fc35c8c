// WebRTC live player: the hub relays the camera's encoded video as it is (no re-encoding); the page only receives.
// start() resolves once the first frame is shown and rejects (ApiError or Error) when WebRTC cannot play;
// onFail(reason) reports a later failure (the connection broke). close() ends it and tells the hub.
import { api } from './api.js';

const ICE_WAIT_MS = 3000;
const FIRST_FRAME_MS = 10000;
const STALL_MS = 4000;  // no new frame for this long (page visible): the hub or the camera is gone

function iceGathered(pc) {
  return new Promise((resolve) => {
    if (pc.iceGatheringState === 'complete') { resolve(); return; }
    const done = () => { if (pc.iceGatheringState === 'complete') { clearTimeout(timer); resolve(); } };
    const timer = setTimeout(resolve, ICE_WAIT_MS);  // non-trickle: send what was gathered by then
    pc.addEventListener('icegatheringstatechange', done);
  });
}

export class LivePlayer {
  constructor(cameraId, video, { onFail } = {}) {
    this.url = `/api/ui/cameras/${encodeURIComponent(cameraId)}/live`;
    this.video = video;
    this.onFail = onFail || (() => {});
    this.pc = null;
    this.relayId = null;
    this.codec = null;
  }

  async start() {
    this.close();
    if (typeof RTCPeerConnection === 'undefined') throw new Error('this browser has no WebRTC');
    const pc = new RTCPeerConnection({ iceServers: [], bundlePolicy: 'max-bundle' });
    this.pc = pc;
    const video = this.video;
    pc.addTransceiver('video', { direction: 'recvonly' });
    pc.addEventListener('track', (e) => {
      video.srcObject = e.streams && e.streams[0] ? e.streams[0] : new MediaStream([e.track]);
      video.play().catch(() => { /* autoplay refused: the muted attribute normally prevents it */ });
    });
    pc.addEventListener('connectionstatechange', () => {
      if (this.pc === pc && (pc.connectionState === 'failed' || pc.connectionState === 'closed')) {
        this.close();
        this.onFail(`connection ${pc.connectionState}`);
      }
    });
    await pc.setLocalDescription(await pc.createOffer());
    await iceGathered(pc);
    if (this.pc !== pc) throw new Error('closed');
    const answer = await api(this.url, { method: 'POST', body: { type: 'offer', sdp: pc.localDescription.sdp } });
    if (this.pc !== pc) { this.forget(answer.relay_id); throw new Error('closed'); }
    this.relayId = answer.relay_id;
    this.codec = answer.codec;
    await pc.setRemoteDescription({ type: 'answer', sdp: answer.sdp });
    await this.firstFrame(pc);
    this.watchFrames(pc);
  }

  // A hub that stops, or a network that drops, may take ICE 15-30 s to notice: watch the frames instead.
  watchFrames(pc) {
    const video = this.video;
    if (typeof video.requestVideoFrameCallback !== 'function') return;
    let last = performance.now();
    const onFrame = () => { last = performance.now(); if (this.pc === pc) video.requestVideoFrameCallback(onFrame); };
    video.requestVideoFrameCallback(onFrame);
    const timer = setInterval(() => {
      if (this.pc !== pc) { clearInterval(timer); return; }
      if (document.hidden) { last = performance.now(); return; }  // hidden pages present no frames
      if (performance.now() - last > STALL_MS) {
        clearInterval(timer);
        this.close();
        this.onFail('the video stalled');
      }
    }, 1000);
  }

  firstFrame(pc) {
    const video = this.video;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => { cleanup(); reject(new Error('no live video arrived')); }, FIRST_FRAME_MS);
      const check = () => {
        if (this.pc !== pc) { cleanup(); reject(new Error('closed')); }
        else if (video.readyState >= 2 && video.videoWidth > 0) { cleanup(); resolve(); }
      };
      const events = ['loadeddata', 'playing', 'resize', 'emptied'];
      const cleanup = () => { clearTimeout(timer); events.forEach((e) => video.removeEventListener(e, check)); };
      events.forEach((e) => video.addEventListener(e, check));
      check();
    });
  }

  forget(relayId) {
    if (relayId) api(`${this.url}/${encodeURIComponent(relayId)}`, { method: 'DELETE' }).catch(() => {});
  }

  close() {
    const pc = this.pc;
    this.pc = null;
    if (pc) pc.close();
    this.forget(this.relayId);
    this.relayId = null;
    if (this.video.srcObject) this.video.srcObject = null;
  }
}
