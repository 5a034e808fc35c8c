// Hubs and their cameras: online and armed state (live through "hub" messages), arm/disarm commands (their
// results arrive as "command" messages), the analysis prompt per camera, and linking a hub by its code.
import { api } from './api.js';
import { clear, fmtAgo, fmtTime, h, toast } from './dom.js';

export class HubsView {
  constructor(root, { onCameras }) {
    this.root = root;
    this.hubs = [];
    this.onCameras = onCameras;
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
        h('div', { class: 'row wrap' },
          h('button', { class: 'small', onclick: () => this.command(hub, 'arm') , disabled: hub.armed === true }, 'Arm'),
          h('button', { class: 'small', onclick: () => this.command(hub, 'disarm', { for_s: 3600 }) }, 'Disarm 1 h'),
          h('button', { class: 'small', onclick: () => this.command(hub, 'disarm'), disabled: hub.armed === false }, 'Disarm'))),
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

  async command(hub, kind, args) {
    try {
      await api(`/api/v1/hubs/${encodeURIComponent(hub.id)}/commands`, { method: 'POST', body: { kind, args: args || {} } });
      toast(`Sent to ${hub.name}: ${kind}${args && args.for_s ? ' for 1 h' : ''}`);
    } catch (err) {
      toast(err.status === 404 ? 'This server does not take hub commands yet' : `Not sent: ${err.message}`, 'error');
    }
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
