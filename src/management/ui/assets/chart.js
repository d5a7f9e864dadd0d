// Small SVG line charts written for this UI, and the in-browser history they draw from.
// The API gives rates now; the browser keeps what it saw (ten minutes) so charts show the
// last minutes. History lives in memory per page key and survives navigating between pages.

import { s, h, rate } from './dom.js';

const WINDOW_MS = 10 * 60 * 1000;
const MINUTES_KEY = 'lagomorph.chart-minutes';

/** The chart window the user picked (1, 5 or 10 minutes; 5 at first). */
export function chartMinutes() {
  const m = Number(localStorage.getItem(MINUTES_KEY));
  return [1, 5, 10].includes(m) ? m : 5;
}

/** A <select> for the chart window; `onChange` redraws. */
export function minutesControl(onChange) {
  const sel = h('select', { name: 'chart-minutes', 'aria-label': 'Chart window' },
    [1, 5, 10].map((m) => h('option', { value: m, selected: m === chartMinutes() }, `last ${m} min`)));
  sel.addEventListener('change', () => {
    localStorage.setItem(MINUTES_KEY, sel.value);
    onChange();
  });
  return h('label', { class: 'chart-window' }, 'Charts: ', sel);
}
const MAX_POINTS = 1200;
const histories = new Map();

/** The history under `key` ('overview', 'queue:/:q1'...): {t, v: {series: value}} samples. */
export function history(key) {
  let hist = histories.get(key);
  if (!hist) {
    hist = [];
    histories.set(key, hist);
  }
  return hist;
}

/** Adds a sample of `values` (series → number, or null when unknown) at time `t`. */
export function record(key, values, t = Date.now()) {
  const hist = history(key);
  hist.push({ t, v: values });
  while (hist.length > MAX_POINTS || (hist.length && hist[0].t < t - WINDOW_MS)) hist.shift();
}

function niceMax(m) {
  if (!(m > 0)) return 1;
  const p = 10 ** Math.floor(Math.log10(m));
  for (const f of [1, 2, 2.5, 5, 10]) if (f * p >= m) return f * p;
  return 10 * p;
}

function short(n) {
  if (n >= 1e6) return `${+(n / 1e6).toFixed(1)}M`;
  if (n >= 1e3) return `${+(n / 1e3).toFixed(1)}k`;
  return `${+n.toFixed(2)}`;
}

/**
 * A line chart of `series` ([{key, label}]) over the samples of history `key`, for the last
 * `minutes`. Series whose values are all null are listed as "not reported". `unit` is '/s' for
 * rates or '' for counts.
 */
export function lineChart(key, series, { minutes = chartMinutes(), unit = '/s', title = '' } = {}) {
  const W = 600;
  const H = 180;
  const L = 48;
  const R = 8;
  const T = 8;
  const B = 22;
  const hist = history(key);
  const now = hist.length ? Math.max(Date.now(), hist[hist.length - 1].t) : Date.now();
  const from = now - minutes * 60 * 1000;
  const points = hist.filter((p) => p.t >= from);
  let max = 0;
  for (const p of points) {
    for (const ser of series) {
      const v = p.v[ser.key];
      if (typeof v === 'number' && v > max) max = v;
    }
  }
  max = niceMax(max);
  const x = (t) => L + ((t - from) / (now - from)) * (W - L - R);
  const y = (v) => T + (1 - v / max) * (H - T - B);
  const grid = [];
  for (let i = 0; i <= 4; i += 1) {
    const v = (max * i) / 4;
    grid.push(s('line', { x1: L, x2: W - R, y1: y(v), y2: y(v), class: 'grid' }));
    grid.push(s('text', { x: L - 4, y: y(v) + 4, class: 'axis', 'text-anchor': 'end' }, short(v)));
  }
  for (let m = 0; m <= minutes; m += Math.max(1, Math.floor(minutes / 5))) {
    const t = now - m * 60 * 1000;
    grid.push(s('text', { x: x(t), y: H - 6, class: 'axis', 'text-anchor': m === 0 ? 'end' : 'middle' },
      m === 0 ? 'now' : `-${m}m`));
  }
  const lines = series.map((ser, i) => {
    const pts = points
      .filter((p) => typeof p.v[ser.key] === 'number')
      .map((p) => `${x(p.t).toFixed(1)},${y(p.v[ser.key]).toFixed(1)}`);
    return s('polyline', { points: pts.join(' '), class: `line c${i}`, 'data-series': ser.key });
  });
  const svg = s('svg', {
    viewBox: `0 0 ${W} ${H}`, class: 'chart', role: 'img', 'aria-label': title || 'chart',
    preserveAspectRatio: 'none',
  }, grid, lines);
  const last = hist.length ? hist[hist.length - 1].v : {};
  const legend = h('ul', { class: 'legend' }, series.map((ser, i) => {
    const v = last[ser.key];
    const known = points.some((p) => typeof p.v[ser.key] === 'number');
    return h('li', { class: known ? '' : 'muted', 'data-series': ser.key },
      h('span', { class: `swatch c${i}` }), `${ser.label} `,
      h('strong', { class: 'value' }, typeof v === 'number' ? (unit === '/s' ? rate(v) : short(v)) : known ? '–' : 'not reported'));
  }));
  return h('figure', { class: 'chart-box', 'data-chart': key }, title ? h('figcaption', null, title) : null, svg, legend);
}
