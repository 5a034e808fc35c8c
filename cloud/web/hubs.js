// Hubs and their cameras: online and armed state (live through "hub" messages), arm/disarm commands, the analysis
// prompt per camera, and linking a hub by its code.
//
// A command is a round trip through the hub, which polls the cloud: the pressed button says "Sent…" at once, and
// the hub's answer arrives later as a "command" live message (or, when the hub never fetched it in time, as the
// cloud's "hub offline" answer). What each hub's last command from this page came to stays under its buttons.
import { api } from './api.js';
import { clear, fmtAgo, fmtTime, h, toast } from './dom.js';

const COMMANDS = {
  arm: { kind: 'arm', args: {}, label: 'Arm' },
  'disarm-1h': { kind: 'disarm', args: { for_s: 3600 }, label: 'Disarm 1 h' },
  disarm: { kind: 'disarm', args: {}, label: 'Disarm' },
};
const OFFLINE = 'The hub is offline; nothing changed';

function sentence(text) {
  return text ? text.charAt(0).toUpperCase() + text.slice(1) : text;
}

export class HubsView {
  constructor(root, { onCameras }) {
    this.root = root;
    this.hubs = [];
    this.onCameras = onCameras;
    this.sent = new Map();  // hub id -> {key, id, state: sending|sent|done|failed|expired, text}
    this.early = new Map();  // command id -> its live message, when it beat the POST's answer
    this.list = h('div', { class: 'hub-list' });
    this.root.append(h('div', { class: 'row spread' }, h('h2', {}, 'Hubs')), this.list, this.linkForm());
  }

  async load() {
    const data = await api('/api/v1/hubs');
    this.hubs = data.hubs || [];
    this.render();
    this.onCameras(this.cameras());
  }

  cameras() {
    return this.hubs.flatMap((hub) => (hub.cameras || []).filter((c) => !c.removed).map((c) => ({ ...c, hubName: hub.name })));
  }

  render() {
    if (!this.hubs.length) {
      clear(this.list, h('p', { class: 'muted' }, 'No hub linked yet. Run `pingwatch cloud link` on the hub and enter its code below.'));
      return;
    }
    clear(this.list, this.hubs.map((hub) => this.hubCard(hub)));
  }

  hubCard(hub) {
    const cams = (hub.cameras || []).filter((c) => !c.removed);
    const armed = hub.armed === true ? ['Armed', 'ok'] : hub.armed === false ? ['Disarmed', 'warn'] : ['State unknown', 'off'];
    const online = hub.online === undefined ? null : hub.online;
    const until = hub.armed === false && hub.disarmed_until ? h('span', { class: 'muted small' }, `until ${fmtTime(hub.disarmed_until)}`) : null;
    return h('article', { class: 'hub', dataset: { hubId: hub.id } },
      h('div', { class: 'row spread wrap' },
        h('div', { class: 'hub-title' },
          h('span', { class: `dot ${online === true ? 'on' : online === false ? 'off' : ''}`, title: online ? 'online' : 'offline' }),
          h('h3', {}, hub.name),
          h('span', { class: `pill ${armed[1]} armed-state` }, armed[0]), until),
        h('div', { class: 'row wrap hub-commands' },
          this.commandButton(hub, 'arm', hub.armed === true),
          this.commandButton(hub, 'disarm-1h', false),
          this.commandButton(hub, 'disarm', hub.armed === false))),
      this.commandStatus(hub),
      h('p', { class: 'muted small' }, online === null ? `Last seen ${fmtAgo(hub.last_seen_at)}`
        : `${online ? 'Online' : 'Offline'} · last seen ${fmtAgo(hub.last_seen_at)}`),
      cams.length ? h('ul', { class: 'cams' }, cams.map((c) => this.cameraRow(c))) : h('p', { class: 'muted small' }, 'No cameras yet.'));
  }

  cameraRow(cam) {
    const on = cam.online;
    const editor = h('form', { class: 'prompt-form', hidden: true, onsubmit: (e) => { e.preventDefault(); this.savePrompt(cam, editor); } },
      h('label', { for: `prompt-${cam.id}` }, 'What should the analysis watch for on this camera?'),
      h('textarea', { id: `prompt-${cam.id}`, name: 'prompt', rows: 2, maxlength: 2000,
        placeholder: 'e.g. alert me if a person comes to the door at night' }),
      h('div', { class: 'row spread' },
        h('label', { class: 'check' }, h('input', { type: 'checkbox', name: 'enabled', checked: true }), 'Enabled'),
        h('button', { type: 'submit', class: 'small primary' }, 'Save prompt')));
    editor.elements.prompt.value = cam.prompt ? cam.prompt.prompt : '';
    editor.elements.enabled.checked = cam.prompt ? cam.prompt.enabled : true;
    return h('li', { class: 'cam', dataset: { cameraId: cam.id } },
      h('div', { class: 'row spread' },
        h('span', { class: 'row' },
          h('span', { class: `dot ${on === true ? 'on' : on === false ? 'off' : ''}` }),
          h('span', { class: 'cam-name' }, cam.name),
          on === true ? h('span', { class: 'pill ok small-pill' }, 'online') : on === false ? h('span', { class: 'pill off small-pill' }, 'offline') : null),
        h('button', { class: 'small ghost', onclick: () => { editor.hidden = !editor.hidden; } },
          cam.prompt ? 'Edit prompt' : 'Add prompt')),
      cam.prompt ? h('p', { class: 'prompt-text muted small' }, `“${cam.prompt.prompt}”${cam.prompt.enabled ? '' : ' (off)'}`) : null,
      editor);
  }

  async savePrompt(cam, form) {
    const prompt = form.elements.prompt.value.trim();
    if (!prompt) { toast('Write a prompt first', 'error'); return; }
    try {
      cam.prompt = await api(`/api/v1/cameras/${encodeURIComponent(cam.id)}/prompt`, {
        method: 'PUT', body: { prompt, enabled: form.elements.enabled.checked } });
      toast(`Prompt saved for ${cam.name}`);
      this.render();
    } catch (err) { toast(`Prompt not saved: ${err.message}`, 'error'); }
  }

  commandButton(hub, key, off) {
    const sent = this.sent.get(hub.id);
    const busy = sent && sent.key === key && (sent.state === 'sending' || sent.state === 'sent');
    return h('button', { class: `small${busy ? ' busy' : ''}`, dataset: { cmd: key }, disabled: off || busy,
      'aria-busy': busy ? 'true' : null, onclick: () => this.command(hub, key) }, busy ? 'Sent…' : COMMANDS[key].label);
  }

  commandStatus(hub) {
    const sent = this.sent.get(hub.id);
    if (!sent) return null;
    return h('p', { class: 'cmd-status small', role: 'status', dataset: { state: sent.state, commandId: sent.id || '' } },
      sent.text);
  }

  async command(hub, key) {
    const { kind, args, label } = COMMANDS[key];
    const mine = { key, id: null, state: 'sending', text: `${label}: sent…` };
    this.sent.set(hub.id, mine);
    this.showCommand(hub.id);
    let r;
    try {
      r = await api(`/api/v1/hubs/${encodeURIComponent(hub.id)}/commands`, { method: 'POST', body: { kind, args } });
    } catch (err) {
      if (this.sent.get(hub.id) === mine) {
        this.settleText(hub.id, mine, 'failed', err.status === 409 ? `${label} not sent: ${sentence(err.message)}`
          : `${label} not sent: ${err.message}`);
      }
      return;
    }
    if (this.sent.get(hub.id) !== mine) return;  // another button pressed since: that one is shown
    mine.id = r.id;
    mine.state = 'sent';
    const early = this.early.get(r.id);
    this.early.delete(r.id);
    if (early || r.state === 'done' || r.state === 'expired') await this.settle(hub.id, mine, early);
    else this.showCommand(hub.id);
  }

  // The answer to a command this page sent: the command's own state says whether the hub answered or it expired.
  async settle(hubId, mine, msg) {
    const label = COMMANDS[mine.key].label;
    let state = null;
    let ok = msg ? msg.ok : null;
    let message = msg ? msg.message : null;
    try {
      const s = await api(`/api/v1/hubs/${encodeURIComponent(hubId)}/commands/${encodeURIComponent(mine.id)}`);
      ({ state, ok, message } = s);
    } catch { /* the live message alone still says ok or not */ }
    if (this.sent.get(hubId) !== mine) return;
    if (state === 'pending' || state === 'delivered') return;  // not answered yet after all
    if (state === 'expired') this.settleText(hubId, mine, 'expired', message && !/offline/i.test(message) ? sentence(message) : OFFLINE);
    else if (ok) this.settleText(hubId, mine, 'done', `${label}: done${message ? ` – ${message}` : ''}`);
    else this.settleText(hubId, mine, 'failed', `${label} failed${message ? `: ${message}` : ''}`);
  }

  settleText(hubId, mine, state, text) {
    mine.state = state;
    mine.text = text;
    this.showCommand(hubId);
  }

  // Only the hub's buttons and status line: a prompt being edited on the same card stays as it is.
  showCommand(hubId) {
    const hub = this.hubs.find((x) => x.id === hubId);
    const card = this.list.querySelector(`article.hub[data-hub-id="${CSS.escape(hubId)}"]`);
    if (!hub || !card) return;
    const buttons = card.querySelector('.hub-commands');
    clear(buttons, this.commandButton(hub, 'arm', hub.armed === true), this.commandButton(hub, 'disarm-1h', false),
      this.commandButton(hub, 'disarm', hub.armed === false));
    const status = this.commandStatus(hub);
    const old = card.querySelector('.cmd-status');
    if (old && status) old.replaceWith(status);
    else if (status) buttons.parentElement.after(status);
  }

  // After a reconnect that re-read everything: commands still waiting may have been answered meanwhile.
  async recheck() {
    await Promise.all([...this.sent.entries()].filter(([, m]) => m.state === 'sent' && m.id)
      .map(([hubId, m]) => this.settle(hubId, m, null)));
  }

  // A "hub" message: the hub's armed state and its cameras' online state, as it last reported them.
  applyHub(state) {
    const hub = this.hubs.find((x) => x.id === state.id);
    if (!hub) { this.load().catch(() => {}); return; }
    hub.armed = state.armed;
    hub.disarmed_until = state.disarmed_until;
    hub.state_at = state.state_at;
    hub.online = true;  // it just reported
    hub.last_seen_at = state.state_at || hub.last_seen_at;
    for (const c of state.cameras || []) {
      const cam = (hub.cameras || []).find((x) => x.id === c.id);
      if (cam) cam.online = c.online;
    }
    this.render();
  }

  applyCommand(cmd) {
    for (const [hubId, mine] of this.sent) {
      if (mine.id === cmd.id) { this.settle(hubId, mine, cmd); return; }
    }
    const waiting = [...this.sent.values()].some((m) => m.state === 'sending');
    if (waiting) this.early.set(cmd.id, cmd);  // maybe ours, its POST not answered yet
    if (cmd.origin === 'api' && waiting) return;
    const hub = this.hubs.find((x) => x.id === cmd.hub_id);
    const name = hub ? hub.name : 'Hub';
    toast(`${name}: ${cmd.kind} ${cmd.ok ? 'done' : 'failed'}${cmd.message ? ` – ${cmd.message}` : ''}`, cmd.ok ? 'info' : 'error');
  }

  linkForm() {
    const form = h('form', { class: 'link-form', onsubmit: (e) => { e.preventDefault(); this.link(form); } },
      h('h3', {}, 'Link a hub'),
      h('div', { class: 'row wrap' },
        h('input', { name: 'code', placeholder: 'Code shown by the hub', autocomplete: 'off', required: true, maxlength: 32, 'aria-label': 'Link code' }),
        h('input', { name: 'name', placeholder: 'Name, e.g. Home', required: true, maxlength: 100, 'aria-label': 'Hub name' }),
        h('button', { type: 'submit', class: 'primary' }, 'Link')),
      h('p', { class: 'form-error', role: 'alert' }));
    return form;
  }

  async link(form) {
    const err = form.querySelector('.form-error');
    err.textContent = '';
    try {
      const hub = await api('/api/v1/hubs/link', { method: 'POST',
        body: { code: form.elements.code.value.trim(), name: form.elements.name.value.trim() } });
      form.reset();
      toast(`Linked ${hub.name}`);
      await this.load();
    } catch (e) {
      err.textContent = e.status === 404 ? 'Unknown or expired code: check it on the hub' : e.message;
    }
  }
}
