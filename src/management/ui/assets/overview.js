// Overview: message-rate and queued-message charts (history kept in the browser), totals, and
// the node's health (memory, disk, file descriptors, alarms, uptime, version, listeners).

import { get } from './api.js';
import { h, fill, kv, note, num, bytes, duration, panel, load } from './dom.js';
import { lineChart, minutesControl, record } from './chart.js';

/** The message-rate series: RabbitMQ's message_stats fields. */
export const RATE_SERIES = [
  { key: 'publish', label: 'Published' },
  { key: 'deliver_get', label: 'Delivered' },
  { key: 'ack', label: 'Acked' },
  { key: 'confirm', label: 'Confirmed' },
  { key: 'return_unroutable', label: 'Returned' },
  { key: 'dead_lettered', label: 'Dead-lettered' },
];

const COUNT_SERIES = [
  { key: 'messages_ready', label: 'Ready' },
  { key: 'messages_unacknowledged', label: 'Unacked' },
  { key: 'messages', label: 'Total' },
];

/** The current rate of each series from a message_stats object (null when not reported). */
export function rates(stats, series = RATE_SERIES) {
  const out = {};
  for (const { key } of series) {
    const d = stats && stats[`${key}_details`];
    out[key] = d && typeof d.rate === 'number' ? d.rate : null;
  }
  return out;
}

function totals(ov) {
  const o = ov.object_totals || {};
  const q = ov.queue_totals || {};
  const cell = (label, value, id) => h('div', { class: 'stat', 'data-stat': id }, h('span', { class: 'stat-value' }, num(value)), h('span', { class: 'stat-label' }, label));
  return h('div', { class: 'stats' },
    cell('Queues', o.queues, 'queues'), cell('Connections', o.connections, 'connections'),
    cell('Channels', o.channels, 'channels'), cell('Consumers', o.consumers, 'consumers'),
    cell('Exchanges', o.exchanges, 'exchanges'), cell('Ready', q.messages_ready, 'ready'),
    cell('Unacked', q.messages_unacknowledged, 'unacked'), cell('Total messages', q.messages, 'messages'));
}

function alarm(on) {
  return on ? h('span', { class: 'bad' }, 'ALARM') : h('span', { class: 'good' }, 'ok');
}

function of(used, limit, fmt) {
  return limit ? `${fmt(used)} of ${fmt(limit)}` : fmt(used);
}

function node(ov, n, health) {
  const listeners = ov.listeners || [];
  return h('div', { class: 'cols' },
    kv([
      ['Node', n.name],
      ['Version', `${ov.product_name || ''} ${ov.product_version || ''} (RabbitMQ API ${ov.rabbitmq_version || '?'})`],
      ['Uptime', duration(n.uptime)],
      ['Memory', of(n.mem_used, n.mem_limit, bytes)],
      ['Disk free', typeof n.disk_free === 'number' ? of(n.disk_free, 0, bytes) + (n.disk_free_limit ? ` (limit ${bytes(n.disk_free_limit)})` : '') : 'not reported'],
      ['File descriptors', typeof n.fd_total === 'number' ? of(n.fd_used, n.fd_total, num) : num(n.fd_used)],
      ['Memory alarm', alarm(n.mem_alarm)],
      ['Disk alarm', alarm(n.disk_free_alarm)],
      ['Health check', health],
    ]),
    h('div', null, h('h3', null, 'Listeners'), listeners.length
      ? h('table', { class: 'list' }, h('thead', null, h('tr', null, h('th', null, 'Protocol'), h('th', null, 'Address'), h('th', null, 'Port'))),
        h('tbody', null, listeners.map((l) => h('tr', null, h('td', null, l.protocol), h('td', null, l.ip_address), h('td', null, String(l.port))))))
      : note('info', 'The API lists no listeners yet.')));
}

export function mount(view, ctx) {
  const charts = h('div', { class: 'charts' });
  const totalsEl = h('div');
  const nodeEl = h('div');
  const draw = () => fill(charts,
    lineChart('overview', RATE_SERIES, { title: 'Messages per second' }),
    lineChart('overview', COUNT_SERIES, { title: 'Queued messages', unit: '' }));
  view.append(
    h('h1', null, 'Overview'),
    panel('Message rates', minutesControl(draw), charts),
    panel('Totals', totalsEl),
    panel('Node', nodeEl),
  );
  if (!ctx.me.perm.seesNode) fill(nodeEl, note('info', 'Node details are shown to users tagged monitoring or administrator.'));
  const refresh = async () => {
    let ov;
    const ok = await load(totalsEl, async () => {
      ov = await get('/api/overview');
      return totals(ov);
    });
    if (ok) {
      record('overview', { ...rates(ov.message_stats), ...counts(ov.queue_totals) });
    }
    draw();
    if (ok && ctx.me.perm.seesNode) {
      await load(nodeEl, async () => {
        const [nodes, health] = await Promise.all([
          get('/api/nodes'),
          get('/api/health/checks/alarms').then(() => h('span', { class: 'good' }, 'ok'), (e) => h('span', { class: 'bad' }, e.message)),
        ]);
        return nodes.length ? node(ov, nodes[0], health) : note('info', 'No node reported.');
      });
    }
    if (!ok) throw new Error('overview failed');
  };
  return { refresh };
}

function counts(q) {
  const out = {};
  for (const { key } of COUNT_SERIES) out[key] = q && typeof q[key] === 'number' ? q[key] : null;
  return out;
}
