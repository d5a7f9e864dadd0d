// One queue: counts and rate charts, consumers (which one is active under single active
// consumer), bindings, arguments and effective policy; get messages with RabbitMQ's ack modes,
// browse without taking, publish, purge and delete.

import { get, post, del, enc, ApiError } from './api.js';
import { h, fill, field, form, kv, args, link, note, num, bytes, panel, load, select, table, confirmButton, parseArgs } from './dom.js';
import { lineChart, minutesControl, record } from './chart.js';
import { publishForm } from './publish.js';
import { features } from './queues.js';
import { xname } from './exchanges.js';

const RATES = [
  { key: 'publish', label: 'Published' },
  { key: 'deliver_get', label: 'Delivered / got' },
  { key: 'ack', label: 'Acked' },
  { key: 'redeliver', label: 'Redelivered' },
];
const COUNTS = [
  { key: 'messages_ready', label: 'Ready' },
  { key: 'messages_unacknowledged', label: 'Unacked' },
  { key: 'messages', label: 'Total' },
];

const ACK_MODES = [
  ['ack_requeue_true', 'Nack message requeue true'],
  ['reject_requeue_true', 'Reject requeue true'],
  ['ack_requeue_false', 'Ack message requeue false'],
  ['reject_requeue_false', 'Reject requeue false'],
];

/** One got or browsed message: its fields, properties, headers and payload, all as text. */
export function messageView(m, i) {
  const p = { ...(m.properties || {}) };
  const headers = p.headers;
  delete p.headers;
  return h('div', { class: 'message', 'data-index': i },
    h('h3', null, `Message ${i + 1}`),
    kv([
      ['Exchange', xname(m.exchange)],
      ['Routing key', m.routing_key],
      ['Redelivered', String(Boolean(m.redelivered))],
      m.message_count !== undefined ? ['Messages left in queue', num(m.message_count)] : null,
      ['Properties', args(p)],
      ['Headers', args(headers)],
      ['Payload', h('span', null, `${num(m.payload_bytes)} bytes, encoding: ${m.payload_encoding}`)],
    ]),
    h('pre', { class: 'payload' }, m.payload));
}

function consumers(q) {
  const list = q.consumer_details;
  if (!Array.isArray(list)) return note('info', 'The API does not list this queue\'s consumers yet.');
  const sac = q.single_active_consumer_tag;
  return table([
    { label: 'Consumer tag', cell: (c) => c.consumer_tag },
    { label: 'Channel', cell: (c) => (c.channel_details ? c.channel_details.name : '') },
    { label: 'Ack required', cell: (c) => (c.ack_required ? 'yes' : 'no') },
    { label: 'Exclusive', cell: (c) => (c.exclusive ? 'yes' : 'no') },
    { label: 'Prefetch', cell: (c) => num(c.prefetch_count), class: 'num' },
    { label: 'Active', cell: (c) => {
      const active = c.active !== false;
      const single = sac !== undefined && sac !== null && c.consumer_tag === sac;
      return `${active ? 'yes' : 'no'}${single ? ' (single active)' : ''}${c.activity_status && c.activity_status !== 'up' ? ` – ${c.activity_status}` : ''}`;
    } },
    { label: 'Arguments', cell: (c) => args(c.arguments) },
  ], list, { empty: 'No consumers.' });
}

function policyView(q) {
  const def = q.effective_policy_definition;
  return kv([
    ['Policy', q.policy || 'none'],
    ['Operator policy', q.operator_policy || 'none'],
    ['Effective definition', def && Object.keys(def).length ? args(def) : h('span', { class: 'muted' }, 'none')],
  ]);
}

function details(q) {
  return kv([
    ['Vhost', q.vhost], ['Type', q.type], ['State', q.state], ['Features', features(q) || 'none'],
    ['Consumers', num(q.consumers)], ['Ready', num(q.messages_ready)], ['Unacked', num(q.messages_unacknowledged)],
    ['Total', num(q.messages)], ['Message bytes', bytes(q.message_bytes)], ['Memory', bytes(q.memory)],
    q.owner_pid_details ? ['Exclusive owner', q.owner_pid_details.name] : null,
  ]);
}

function getForm(base, out) {
  const mode = select('ackmode', ACK_MODES, 'ack_requeue_true');
  const encoding = select('encoding', [['auto', 'Automatic string/base64'], ['base64', 'Base64']], 'auto');
  const count = h('input', { name: 'count', type: 'number', min: 1, value: 1 });
  const truncate = h('input', { name: 'truncate', type: 'number', min: 1, value: 50000 });
  return form({ id: 'get-messages' }, [field('Ack mode', mode), field('Encoding', encoding), field('Messages', count),
    field('Truncate payload at (bytes)', truncate),
    h('button', { type: 'submit', class: 'primary' }, 'Get messages')], async () => {
    const msgs = await post(`${base}/get`, {
      count: Number(count.value), ackmode: mode.value, encoding: encoding.value, truncate: Number(truncate.value),
    });
    fill(out, msgs.length ? msgs.map(messageView) : note('info', 'Queue is empty.'));
    return `${msgs.length} message${msgs.length === 1 ? '' : 's'} taken (${mode.options[mode.selectedIndex].text}).`;
  });
}

function browseForm(base, out) {
  const offset = h('input', { name: 'offset', type: 'number', min: 0, value: 0 });
  const count = h('input', { name: 'count', type: 'number', min: 1, value: 10 });
  return form({ id: 'browse-messages' }, [field('From message', offset), field('Messages', count),
    h('button', { type: 'submit' }, 'Browse (leave in queue)')], async () => {
    let msgs;
    try {
      msgs = await post(`${base}/browse`, { offset: Number(offset.value), count: Number(count.value), encoding: 'auto' });
    } catch (e) {
      // A 404 is either a missing queue or a broker without the browse endpoint: ask which.
      if (e instanceof ApiError && e.status === 404 && await get(base).then(() => true, () => false)) {
        throw new Error(`Browsing is not available: this broker has no browse endpoint yet (POST ${base}/browse answered 404 ${e.error}).`);
      }
      throw e;
    }
    const items = Array.isArray(msgs) ? msgs : (msgs && msgs.items) || [];
    fill(out, items.length ? items.map((m, i) => messageView(m, Number(offset.value) + i)) : note('info', 'No messages at this position.'));
    return `${items.length} message${items.length === 1 ? '' : 's'} shown; they stay in the queue.`;
  });
}

function bindingsView(rows, vhost, name, refresh) {
  return table([
    { label: 'From', cell: (b) => (b.source === '' ? '(AMQP default)' : link(b.source, 'exchanges', vhost, b.source)) },
    { label: 'Routing key', cell: (b) => b.routing_key },
    { label: 'Arguments', cell: (b) => args(b.arguments) },
    { label: '', cell: (b) => (b.source === '' ? h('span', { class: 'muted' }, 'implicit') : confirmButton('Unbind', 'Really unbind?', async () => {
      await del(`/api/bindings/${enc(vhost)}/e/${enc(b.source)}/q/${enc(name)}/${enc(b.properties_key)}`);
      await refresh();
    }, { class: 'danger small' })) },
  ], rows, { empty: 'No bindings.' });
}

function bindForm(vhost, name, refresh) {
  const src = h('input', { name: 'source', required: true });
  const rk = h('input', { name: 'routing_key' });
  const argsIn = h('textarea', { name: 'arguments', rows: 2 });
  return form({ class: 'inline-form bind' }, [field('From exchange', src), field('Routing key', rk), field('Arguments', argsIn),
    h('button', { type: 'submit', class: 'primary' }, 'Bind')], async () => {
    await post(`/api/bindings/${enc(vhost)}/e/${enc(src.value)}/q/${enc(name)}`, { routing_key: rk.value, arguments: parseArgs(argsIn.value) });
    refresh().catch(() => {});
    return 'Bound.';
  });
}

export function mount(view, ctx, [vhost, name]) {
  const base = `/api/queues/${enc(vhost)}/${enc(name)}`;
  const histKey = `queue:${vhost}:${name}`;
  const info = h('div');
  const charts = h('div', { class: 'charts' });
  const cons = h('div');
  const binds = h('div');
  const argsEl = h('div');
  const policy = h('div');
  const got = h('div', { class: 'messages', id: 'got-messages' });
  const browsed = h('div', { class: 'messages', id: 'browsed-messages' });
  const actions = h('div', { class: 'actions-status' });
  const draw = () => fill(charts, lineChart(histKey, RATES, { title: 'Message rates' }),
    lineChart(histKey, COUNTS, { title: 'Queued messages', unit: '' }));
  const refresh = async () => {
    let q = null;
    const ok = await load(info, async () => {
      q = await get(base);
      return details(q);
    });
    if (ok) {
      const st = q.message_stats || {};
      const r = {};
      for (const { key } of RATES) r[key] = st[`${key}_details`] ? st[`${key}_details`].rate : null;
      for (const { key } of COUNTS) r[key] = typeof q[key] === 'number' ? q[key] : null;
      record(histKey, r);
      fill(cons, consumers(q));
      fill(argsEl, args(q.arguments));
      fill(policy, policyView(q));
    }
    draw();
    await load(binds, async () => bindingsView(await get(`${base}/bindings`), vhost, name, refresh));
    if (!ok) throw new Error('queue failed');
  };
  const done = (msg) => fill(actions, note('ok', msg));
  const failed = (e) => fill(actions, note('error', e.message));
  view.append(
    h('h1', null, 'Queue ', h('span', { class: 'qname', id: 'queue-name' }, name), h('span', { class: 'muted' }, ` in vhost ${vhost}`)),
    panel('Overview', info, minutesControl(draw), charts),
    panel('Consumers', cons),
    panel('Bindings', binds, bindForm(vhost, name, () => refresh())),
    panel('Arguments', argsEl),
    panel('Policy', policy),
    panel('Publish message', publishForm(vhost, '', name)),
    panel('Get messages', note('info', 'Getting a message takes it from the queue; with a requeue mode it goes back marked redelivered.'), getForm(base, got), got),
    panel('Browse messages', note('info', 'Browsing shows messages without taking them: nothing is redelivered or reordered.'), browseForm(base, browsed), browsed),
    panel('Purge and delete', h('div', { class: 'buttons' },
      confirmButton('Purge messages', 'Really purge?', async () => {
        try { await del(`${base}/contents`); done('Queue purged.'); ctx.refresh(); } catch (e) { failed(e); }
      }, { id: 'purge-queue' }),
      confirmButton('Delete queue', 'Really delete?', async () => {
        try { await del(base); ctx.go('#/queues'); } catch (e) { failed(e); }
      }, { id: 'delete-queue' })), actions),
  );
  return { refresh };
}
