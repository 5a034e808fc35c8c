// Credits used per day as a small bar chart in plain SVG (no library). Each bar has a <title> for its numbers.
import { svg } from './dom.js';

export function usageChart(days) {
  const w = 300, hgt = 80, pad = 14;
  const max = Math.max(1, ...days.map((d) => d.used));
  const step = w / Math.max(1, days.length);
  const bar = Math.max(2, step - 2);
  const chart = svg('svg', { viewBox: `0 0 ${w} ${hgt + pad}`, class: 'chart', role: 'img',
    'aria-label': 'Credits used per day' });
  chart.append(svg('line', { x1: 0, x2: w, y1: hgt + 0.5, y2: hgt + 0.5, class: 'axis' }));
  days.forEach((d, i) => {
    const bh = d.used > 0 ? Math.max(2, (d.used / max) * (hgt - 4)) : 0;
    const g = svg('g', { class: 'day', 'data-day': d.day });
    g.append(svg('rect', { x: i * step + 1, y: hgt - bh, width: bar, height: bh, rx: 1.5, class: 'bar' }));
    g.append(svg('rect', { x: i * step, y: 0, width: step, height: hgt, class: 'hit' }));
    g.append(svg('title', {}, `${d.day}: ${d.used} credit${d.used === 1 ? '' : 's'}`
      + (d.refunded ? ` (${d.charged} charged, ${d.refunded} refunded)` : '')));
    chart.append(g);
  });
  if (days.length) {
    chart.append(svg('text', { x: 0, y: hgt + pad - 2, class: 'tick' }, days[0].day.slice(5)));
    chart.append(svg('text', { x: w, y: hgt + pad - 2, class: 'tick end' }, days[days.length - 1].day.slice(5)));
  }
  chart.append(svg('text', { x: 2, y: 10, class: 'tick' }, `max ${max}`));
  return chart;
}
