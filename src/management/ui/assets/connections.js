// Connections and channels, paged on the server; close a connection with a reason (sent as
// RabbitMQ's X-Reason header, which becomes the connection.close reply text).

import { del, enc } from './api.js';
import { h, fill, hold, note, num, rate, panel } from './dom.js';
import { pagedList } from './list.js';

function closeControl(c, refresh, status) {
  const box = h('span', { class: 'close-conn' });
  const start = h('button', { type: 'button', class: 'danger small' }, 'Close');
  start.addEventListener('click', () => {
    // No redraw of the list while the reason is being typed.
    const release = hold();
    const reason = h('input', { name: 'reason', value: 'Closed via management UI', 'aria-label': 'Reason' });
    const go = h('button', { type: 'button', class: 'danger small' }, 'Close now');
    const cancel = h('button', { type: 'button', class: 'small' }, 'Cancel');
    cancel.addEventListener('click', () => { release(); fill(box, start); });
    go.addEventListener('click', async () => {
      go.disabled = true;
      release();
      try {
        await del(`/api/connections/${enc(c.name)}`, { 'X-Reason': reason.value });
        fill(box, note('ok', 'closed'));
        fill(status, note('ok', `Connection ${c.name} closed: ${reason.value}`));
        refresh().catch(() => {});
      } catch (e) {
        fill(box, note('error', e.message), start);
      }
    });
    fill(box, reason, go, cancel);
    reason.focus();
  });
  box.append(start);
  return box;
}

function peer(c) {
  return c.peer_host !== undefined ? `${c.peer_host}:${c.peer_port}` : '–';
}

function clientName(c) {
  const p = c.client_properties || {};
  const n = [p.product, p.version].filter((x) => typeof x === 'string').join(' ');
  return n || '–';
}

export function mount(view, ctx) {
  const closed = h('div', { class: 'close-status', 'aria-live': 'polite' });
  let connList = null;
  const refreshConns = () => connList.refresh();
  connList = pagedList({
    resource: 'connections',
    key: 'connections',
    empty: 'No connections.',
    columns: [
      { label: 'Name', cell: (c) => c.name, sort: 'name' },
      { label: 'User', cell: (c) => c.user, sort: 'user' },
      { label: 'Vhost', cell: (c) => c.vhost, sort: 'vhost' },
      { label: 'Client', cell: clientName },
      { label: 'Peer', cell: peer },
      { label: 'State', cell: (c) => c.state, sort: 'state' },
      { label: 'Channels', cell: (c) => num(c.channels), class: 'num', sort: 'channels' },
      { label: 'From client', cell: (c) => rate(c.recv_oct_details), class: 'num' },
      { label: 'To client', cell: (c) => rate(c.send_oct_details), class: 'num' },
      { label: '', cell: (c) => closeControl(c, refreshConns, closed) },
    ],
  });
  const chanList = pagedList({
    resource: 'channels',
    key: 'channels',
    empty: 'No channels.',
    columns: [
      { label: 'Channel', cell: (c) => c.name, sort: 'name' },
      { label: 'User', cell: (c) => c.user, sort: 'user' },
      { label: 'Vhost', cell: (c) => c.vhost, sort: 'vhost' },
      { label: 'State', cell: (c) => c.state, sort: 'state' },
      { label: 'Consumers', cell: (c) => num(c.consumer_count), class: 'num', sort: 'consumer_count' },
      { label: 'Prefetch', cell: (c) => num(c.prefetch_count), class: 'num', sort: 'prefetch_count' },
      { label: 'Unacked', cell: (c) => num(c.messages_unacknowledged), class: 'num', sort: 'messages_unacknowledged' },
      { label: 'Publish', cell: (c) => rate(c.message_stats && c.message_stats.publish_details), class: 'num' },
      { label: 'Deliver', cell: (c) => rate(c.message_stats && c.message_stats.deliver_get_details), class: 'num' },
      { label: 'Ack', cell: (c) => rate(c.message_stats && c.message_stats.ack_details), class: 'num' },
    ],
  });
  view.append(h('h1', null, 'Connections and channels'),
    ctx.me.perm.monitoring ? null : note('info', 'You see your own connections only (tag monitoring or administrator to see all).'),
    panel('Connections', closed, connList.el), panel('Channels', chanList.el));
  return { refresh: () => Promise.all([connList.refresh(), chanList.refresh()]) };
}
