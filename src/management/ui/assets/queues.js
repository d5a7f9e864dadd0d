// Queues: the list paged, sorted and filtered on the server (RabbitMQ's parameters), with
// per-queue counts and rates, and a declare form.

import { get, put, enc } from './api.js';
import { h, field, form, link, num, rate, panel, load, parseArgs, select } from './dom.js';
import { pagedList } from './list.js';

/** D, AD, Excl and argument names, as RabbitMQ's list shows features. */
export function features(q) {
  const f = [];
  if (q.durable) f.push('D');
  if (q.auto_delete) f.push('AD');
  if (q.exclusive) f.push('Excl');
  for (const k of Object.keys(q.arguments || {})) f.push(k.replace(/^x-/, ''));
  return f.join(' ');
}

const stat = (q, k) => rate(q.message_stats && q.message_stats[`${k}_details`]);

export const COLUMNS = [
  { label: 'Vhost', cell: (q) => q.vhost, sort: 'vhost' },
  { label: 'Name', cell: (q) => link(q.name, 'queues', q.vhost, q.name), sort: 'name', class: 'qname' },
  { label: 'Type', cell: (q) => q.type, sort: 'type' },
  { label: 'Features', cell: features },
  { label: 'Policy', cell: (q) => q.policy || '', sort: 'policy' },
  { label: 'State', cell: (q) => q.state, sort: 'state' },
  { label: 'Consumers', cell: (q) => num(q.consumers), class: 'num', sort: 'consumers' },
  { label: 'Ready', cell: (q) => num(q.messages_ready), class: 'num', sort: 'messages_ready' },
  { label: 'Unacked', cell: (q) => num(q.messages_unacknowledged), class: 'num', sort: 'messages_unacknowledged' },
  { label: 'Total', cell: (q) => num(q.messages), class: 'num', sort: 'messages' },
  { label: 'Incoming', cell: (q) => stat(q, 'publish'), class: 'num', sort: 'message_stats.publish_details.rate' },
  { label: 'Deliver / get', cell: (q) => stat(q, 'deliver_get'), class: 'num', sort: 'message_stats.deliver_get_details.rate' },
  { label: 'Ack', cell: (q) => stat(q, 'ack'), class: 'num', sort: 'message_stats.ack_details.rate' },
];

function declareForm(names, refresh) {
  const vh = select('vhost', names, names.includes('/') ? '/' : names[0]);
  const name = h('input', { name: 'name', required: true });
  const durable = select('durable', [['true', 'Durable'], ['false', 'Transient']], 'true');
  const auto = select('auto_delete', [['false', 'No'], ['true', 'Yes']], 'false');
  const argsIn = h('textarea', { name: 'arguments', rows: 2, placeholder: 'x-max-length=1000\nx-message-ttl=60000' });
  return form({ id: 'add-queue' }, [field('Vhost', vh), field('Name', name), field('Durability', durable),
    field('Auto delete', auto), field('Arguments', argsIn, 'name=value per line; numbers and true/false are typed'),
    h('button', { type: 'submit', class: 'primary' }, 'Add queue')], async () => {
    await put(`/api/queues/${enc(vh.value)}/${enc(name.value)}`, {
      durable: durable.value === 'true', auto_delete: auto.value === 'true', arguments: parseArgs(argsIn.value),
    });
    refresh().catch(() => {});
    return `Queue "${name.value}" declared.`;
  });
}

export function mount(view) {
  const list = pagedList({ resource: 'queues', key: 'queues', columns: COLUMNS, empty: 'No queues.' });
  const add = h('div');
  view.append(h('h1', null, 'Queues'), panel('All queues', list.el), panel('Add a new queue', add));
  load(add, async () => {
    const v = await get('/api/vhosts?columns=name');
    return declareForm(v.map((x) => x.name), list.refresh);
  });
  return { refresh: list.refresh };
}
