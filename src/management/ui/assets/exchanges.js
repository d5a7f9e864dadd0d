// Exchanges: the paged list with a declare form, and one exchange's page with its bindings
// both ways (this exchange as source and as destination), bind/unbind, publish and delete.

import { get, put, post, del, enc } from './api.js';
import { h, fill, field, form, kv, args, link, note, panel, load, parseArgs, select, table, confirmButton } from './dom.js';
import { pagedList } from './list.js';
import { publishForm } from './publish.js';

const TYPES = ['direct', 'fanout', 'topic', 'headers'];

/** A name shown for the default exchange, whose real name is empty. */
export function xname(n) {
  return n === '' ? '(AMQP default)' : n;
}

function features(x) {
  const f = [];
  if (x.durable) f.push('D');
  if (x.auto_delete) f.push('AD');
  if (x.internal) f.push('I');
  if (x.arguments && Object.keys(x.arguments).length) f.push('Args');
  return f.join(' ');
}

async function vhostNames() {
  const v = await get('/api/vhosts?columns=name');
  return v.map((x) => x.name);
}

function declareForm(names, refresh) {
  const vh = select('vhost', names, names.includes('/') ? '/' : names[0]);
  const name = h('input', { name: 'name', required: true });
  const type = select('type', TYPES, 'direct');
  const durable = select('durable', [['true', 'Durable'], ['false', 'Transient']], 'true');
  const auto = select('auto_delete', [['false', 'No'], ['true', 'Yes']], 'false');
  const internal = select('internal', [['false', 'No'], ['true', 'Yes']], 'false');
  const argsIn = h('textarea', { name: 'arguments', rows: 2, placeholder: 'alternate-exchange=name' });
  return form({ id: 'add-exchange' }, [field('Vhost', vh), field('Name', name), field('Type', type),
    field('Durability', durable), field('Auto delete', auto), field('Internal', internal),
    field('Arguments', argsIn), h('button', { type: 'submit', class: 'primary' }, 'Add exchange')], async () => {
    await put(`/api/exchanges/${enc(vh.value)}/${enc(name.value)}`, {
      type: type.value, durable: durable.value === 'true', auto_delete: auto.value === 'true',
      internal: internal.value === 'true', arguments: parseArgs(argsIn.value),
    });
    refresh().catch(() => {});
    return `Exchange "${name.value}" declared.`;
  });
}

function mountList(view) {
  const list = pagedList({
    resource: 'exchanges', key: 'exchanges', empty: 'No exchanges.',
    columns: [
      { label: 'Vhost', cell: (x) => x.vhost, sort: 'vhost' },
      { label: 'Name', cell: (x) => link(xname(x.name), 'exchanges', x.vhost, x.name === '' ? 'amq.default' : x.name), sort: 'name' },
      { label: 'Type', cell: (x) => x.type, sort: 'type' },
      { label: 'Features', cell: features },
      { label: 'Policy', cell: (x) => x.policy || '' },
    ],
  });
  const add = h('div');
  view.append(h('h1', null, 'Exchanges'), panel('All exchanges', list.el), panel('Add a new exchange', add));
  load(add, async () => declareForm(await vhostNames(), list.refresh));
  return { refresh: list.refresh };
}

function bindingRows(rows, dirKey, vhost, refresh) {
  return table([
    { label: dirKey === 'source' ? 'From' : 'To', cell: (b) => {
      const n = b[dirKey];
      const isQueue = dirKey === 'destination' && b.destination_type === 'queue';
      return link(dirKey === 'source' ? xname(n) : n, isQueue ? 'queues' : 'exchanges', vhost, n === '' ? 'amq.default' : n);
    } },
    { label: 'Type', cell: (b) => (dirKey === 'source' ? 'exchange' : b.destination_type) },
    { label: 'Routing key', cell: (b) => b.routing_key },
    { label: 'Arguments', cell: (b) => args(b.arguments) },
    { label: '', cell: (b) => (b.source === '' ? h('span', { class: 'muted' }, 'implicit') : confirmButton('Unbind', 'Really unbind?', async () => {
      const kind = b.destination_type === 'queue' ? 'q' : 'e';
      await del(`/api/bindings/${enc(vhost)}/e/${enc(b.source)}/${kind}/${enc(b.destination)}/${enc(b.properties_key)}`);
      await refresh();
    }, { class: 'danger small' })) },
  ], rows, { empty: 'No bindings.' });
}

function bindForm(vhost, source, refresh) {
  const kind = select('destination_type', [['q', 'To queue'], ['e', 'To exchange']], 'q');
  const dest = h('input', { name: 'destination', required: true });
  const rk = h('input', { name: 'routing_key' });
  const argsIn = h('textarea', { name: 'arguments', rows: 2, placeholder: 'x-match=all' });
  return form({ class: 'inline-form bind' }, [field('Destination', kind), field('Name', dest), field('Routing key', rk),
    field('Arguments', argsIn), h('button', { type: 'submit', class: 'primary' }, 'Bind')], async () => {
    await post(`/api/bindings/${enc(vhost)}/e/${enc(source)}/${kind.value}/${enc(dest.value)}`,
      { routing_key: rk.value, arguments: parseArgs(argsIn.value) });
    refresh().catch(() => {});
    return 'Bound.';
  });
}

function mountDetail(view, ctx, [vhost, pathName]) {
  const name = pathName === 'amq.default' ? '' : pathName;
  const base = `/api/exchanges/${enc(vhost)}/${enc(pathName)}`;
  const info = h('div');
  const src = h('div');
  const dst = h('div');
  const refresh = async () => {
    await Promise.all([
      load(info, async () => {
        const x = await get(base);
        return kv([['Vhost', x.vhost], ['Type', x.type], ['Features', features(x) || 'none'],
          ['Policy', x.policy || 'none'], ['Arguments', args(x.arguments)]]);
      }),
      load(src, async () => bindingRows(await get(`${base}/bindings/source`), 'destination', vhost, refresh)),
      load(dst, async () => bindingRows(await get(`${base}/bindings/destination`), 'source', vhost, refresh)),
    ]);
  };
  const builtin = name === '' || name.startsWith('amq.');
  const status = h('div');
  view.append(
    h('h1', null, `Exchange ${xname(name)}`, h('span', { class: 'muted' }, ` in vhost ${vhost}`)),
    panel('Details', info),
    panel('Bindings from this exchange', src, name === '' ? null : bindForm(vhost, name, () => refresh())),
    panel('Bindings to this exchange', dst),
    panel('Publish message', publishForm(vhost, name)),
    builtin ? null : panel('Delete this exchange', confirmButton('Delete', 'Really delete?', async () => {
      try {
        await del(base);
        ctx.go('#/exchanges');
      } catch (e) {
        fill(status, note('error', e.message));
      }
    }, { id: 'delete-exchange' }), status),
  );
  return { refresh };
}

export function mount(view, ctx, params, page) {
  return page === 'exchange' ? mountDetail(view, ctx, params) : mountList(view);
}
