// The account's plan and credits with a per-day chart (Telegram is in telegram.js).
import { api } from './api.js';
import { usageChart } from './chart.js';
import { clear, h } from './dom.js';

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
