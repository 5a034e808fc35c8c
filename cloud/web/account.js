// The account's side panels: plan and credits with a per-day chart, and Telegram linking with a QR code.
import { api } from './api.js';
import { usageChart } from './chart.js';
import { clear, fmtTime, h, toast } from './dom.js';

export class CreditsView {
  constructor(root) {
    this.root = root;
    this.body = h('div', { class: 'credits-body' }, h('p', { class: 'muted' }, 'Loading…'));
    root.append(h('h2', {}, 'Plan and credits'), this.body);
  }

  async load() {
    let u;
    try {
      u = await api('/api/v1/account/usage', { query: { days: 30 } });
    } catch (err) {
      clear(this.body, h('p', { class: 'error' }, `Credits: ${err.message}`));
      return;
    }
    const pct = u.granted ? Math.min(100, Math.round((u.used / u.granted) * 100)) : 0;
    const meter = h('span');
    meter.style.width = `${pct}%`;  // CSSOM, allowed by the policy (a style attribute would not be)
    clear(this.body,
      h('p', { class: 'plan' }, h('strong', { class: 'plan-name' }, u.plan), ` plan · ${u.monthly_credits} credits a month`),
      h('div', { class: 'meter', role: 'meter', 'aria-valuemin': 0, 'aria-valuemax': u.granted, 'aria-valuenow': u.used }, meter),
      h('p', { class: 'credit-numbers' },
        h('span', { id: 'credits-used' }, `${u.used} used`), ' · ',
        h('span', { id: 'credits-left', class: u.left <= 0 ? 'error' : '' }, `${u.left} left`),
        h('span', { class: 'muted' }, ` in ${u.period} (1 credit = 10 s analysed)`)),
      h('h3', {}, 'Last 30 days'),
      usageChart(u.days));
  }
}

export class TelegramView {
  constructor(root) {
    this.root = root;
    this.out = h('div', { class: 'tg-out' });
    root.append(h('h2', {}, 'Telegram alerts'),
      h('p', { class: 'muted small' }, 'Get a message with a snapshot the moment a camera triggers, then the summary and the clip.'),
      h('button', { id: 'tg-link', onclick: () => this.start() }, 'Link a Telegram chat'), this.out);
  }

  async start() {
    let link;
    try {
      link = await api('/api/v1/telegram/links', { method: 'POST', body: {} });
    } catch (err) {
      if (err.status === 404 || err.status === 405 || err.reason === 'telegram_off') {
        clear(this.out, h('p', { class: 'muted', id: 'tg-none' }, 'Telegram is not set up on this server.'));
      } else if (err.status === 503) {
        clear(this.out, h('p', { class: 'error' }, `Telegram cannot be reached right now: ${err.message}`));
      } else {
        toast(`Telegram: ${err.message}`, 'error');
      }
      return;
    }
    const deep = typeof link.deep_link === 'string' && /^https:\/\/t\.me\/[A-Za-z0-9_]+\?start=[A-Za-z0-9_-]+$/.test(link.deep_link)
      ? link.deep_link : null;
    // The SVG is shown as an image (a data: URL): an <img> never runs scripts or loads anything an SVG names.
    const qr = typeof link.qr_svg === 'string' && link.qr_svg.trim().startsWith('<')
      ? h('img', { class: 'qr', alt: 'QR code that opens the bot', src: `data:image/svg+xml;charset=utf-8,${encodeURIComponent(link.qr_svg)}` })
      : null;
    clear(this.out, h('div', { class: 'tg-grid' },
      qr ? h('div', { class: 'qr-tile' }, qr) : null,
      h('div', {},
        h('p', {}, 'Scan with your phone, or open the link, and press Start in Telegram.'),
        deep ? h('p', {}, h('a', { href: deep, target: '_blank', rel: 'noopener noreferrer', id: 'tg-deep' }, 'Open the bot')) : null,
        h('p', { class: 'muted small' }, `The link works once, until ${fmtTime(link.expires_at)}.`))));
  }
}
