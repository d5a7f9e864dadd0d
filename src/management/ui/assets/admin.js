// Admin: users (tags, password), vhosts, permissions, topic permissions, policies, operator
// policies and limits, on RabbitMQ's API paths. Administrators see every section,
// policymakers the policies. Where this broker's API lacks a path, the section says so in the
// API's own words.

import { get, put, del, enc, query, ApiError } from './api.js';
import { h, fill, field, form, note, num, panel, select, table, confirmButton } from './dom.js';

const TAGS = ['administrator', 'monitoring', 'policymaker', 'management', 'impersonator'];

function explain(e) {
  if (e instanceof ApiError && e.status === 404) {
    return note('error', `${e.message}. This broker's API does not have this path yet.`);
  }
  return note('error', e.message);
}

/** A section that lists `path` with `columns` and offers `formEl`; refreshes on each tick. */
function section(title, path, columns, formEl, id) {
  const list = h('div', { class: 'admin-list' });
  const el = panel(title, list, formEl);
  el.id = id;
  const refresh = async () => {
    try {
      const rows = await get(path);
      fill(list, table(columns, Array.isArray(rows) ? rows : rows.items || [], { empty: 'None.' }));
    } catch (e) {
      fill(list, explain(e));
    }
  };
  return { el, refresh };
}

function deleter(path, refresh) {
  return confirmButton('Delete', 'Really delete?', async () => {
    try { await del(path); } catch (e) { window.dispatchEvent(new CustomEvent('lagomorph:admin-error', { detail: e.message })); }
    await refresh();
  }, { class: 'danger small' });
}

function users(refresh) {
  const name = h('input', { name: 'username', required: true, autocomplete: 'off' });
  const pass = h('input', { name: 'password', type: 'password', autocomplete: 'new-password' });
  const tags = h('input', { name: 'tags', placeholder: 'comma separated' });
  const quick = h('span', { class: 'tag-buttons' }, TAGS.map((t) => {
    const b = h('button', { type: 'button', class: 'small' }, t);
    b.addEventListener('click', () => {
      const cur = tags.value.split(',').map((x) => x.trim()).filter(Boolean);
      if (!cur.includes(t)) cur.push(t);
      tags.value = cur.join(', ');
    });
    return b;
  }));
  const f = form({ id: 'add-user' }, [field('Username', name), field('Password', pass, 'empty keeps the current one'),
    field('Tags', h('span', null, tags, quick)), h('button', { type: 'submit', class: 'primary' }, 'Add / update user')], async () => {
    const body = { tags: tags.value };
    if (pass.value) body.password = pass.value;
    await put(`/api/users/${enc(name.value)}`, body);
    refresh();
    return `User "${name.value}" saved.`;
  });
  return f;
}

function vhostForm(refresh) {
  const name = h('input', { name: 'vhost', required: true });
  const desc = h('input', { name: 'description' });
  return form({ id: 'add-vhost' }, [field('Name', name), field('Description', desc),
    h('button', { type: 'submit', class: 'primary' }, 'Add vhost')], async () => {
    await put(`/api/vhosts/${enc(name.value)}`, { description: desc.value });
    refresh();
    return `Vhost "${name.value}" added.`;
  });
}

function permForm(refresh) {
  const user = h('input', { name: 'user', required: true });
  const vhost = h('input', { name: 'vhost', required: true, value: '/' });
  const c = h('input', { name: 'configure', value: '.*' });
  const w = h('input', { name: 'write', value: '.*' });
  const r = h('input', { name: 'read', value: '.*' });
  return form({ id: 'set-permission' }, [field('User', user), field('Vhost', vhost), field('Configure regexp', c),
    field('Write regexp', w), field('Read regexp', r), h('button', { type: 'submit', class: 'primary' }, 'Set permission')], async () => {
    await put(`/api/permissions/${enc(vhost.value)}/${enc(user.value)}`, { configure: c.value, write: w.value, read: r.value });
    refresh();
    return `Permission for "${user.value}" in "${vhost.value}" set.`;
  });
}

function topicForm(refresh) {
  const user = h('input', { name: 'user', required: true });
  const vhost = h('input', { name: 'vhost', required: true, value: '/' });
  const x = h('input', { name: 'exchange', value: 'amq.topic' });
  const w = h('input', { name: 'write', value: '.*' });
  const r = h('input', { name: 'read', value: '.*' });
  return form({ id: 'set-topic-permission' }, [field('User', user), field('Vhost', vhost), field('Exchange', x),
    field('Write regexp', w), field('Read regexp', r), h('button', { type: 'submit', class: 'primary' }, 'Set topic permission')], async () => {
    await put(`/api/topic-permissions/${enc(vhost.value)}/${enc(user.value)}`, { exchange: x.value, write: w.value, read: r.value });
    refresh();
    return 'Topic permission set.';
  });
}

function policyForm(kind, refresh) {
  const vhost = h('input', { name: 'vhost', required: true, value: '/' });
  const name = h('input', { name: 'name', required: true });
  const pattern = h('input', { name: 'pattern', required: true, value: '.*' });
  const applyTo = select('apply-to', [['all', 'Exchanges and queues'], ['queues', 'Queues'], ['exchanges', 'Exchanges']], 'queues');
  const priority = h('input', { name: 'priority', type: 'number', value: 0 });
  const def = h('textarea', { name: 'definition', rows: 3, placeholder: '{"max-length": 1000}' });
  return form({ id: `add-${kind}` }, [field('Vhost', vhost), field('Name', name), field('Pattern', pattern),
    field('Apply to', applyTo), field('Priority', priority), field('Definition (JSON)', def),
    h('button', { type: 'submit', class: 'primary' }, 'Add / update policy')], async () => {
    let definition;
    try { definition = JSON.parse(def.value || '{}'); } catch (e) { throw new Error(`Definition is not JSON: ${e.message}`); }
    await put(`/api/${kind}/${enc(vhost.value)}/${enc(name.value)}`, {
      pattern: pattern.value, definition, priority: Number(priority.value), 'apply-to': applyTo.value,
    });
    refresh();
    return `Policy "${name.value}" saved.`;
  });
}

function limitForm(kind, refresh) {
  const who = h('input', { name: kind === 'vhost' ? 'vhost' : 'user', required: true, value: kind === 'vhost' ? '/' : '' });
  const names = kind === 'vhost' ? ['max-connections', 'max-queues'] : ['max-connections', 'max-channels'];
  const lim = select('limit', names, names[0]);
  const value = h('input', { name: 'value', type: 'number', value: 100 });
  return form({ id: `set-${kind}-limit` }, [field(kind === 'vhost' ? 'Vhost' : 'User', who), field('Limit', lim), field('Value', value),
    h('button', { type: 'submit', class: 'primary' }, 'Set limit')], async () => {
    await put(`/api/${kind}-limits/${enc(who.value)}/${enc(lim.value)}`, { value: Number(value.value) });
    refresh();
    return 'Limit set.';
  });
}

const json = (v) => (typeof v === 'string' ? v : JSON.stringify(v));

export function mount(view, ctx) {
  const perm = ctx.me.perm;
  const sections = [];
  const again = () => { for (const s of sections) s.refresh(); };
  const status = h('div');
  window.addEventListener('lagomorph:admin-error', (ev) => fill(status, note('error', ev.detail)));
  if (perm.admin) {
    sections.push(section('Users', '/api/users', [
      { label: 'Name', cell: (u) => u.name },
      { label: 'Tags', cell: (u) => (u.tags || []).join(', ') },
      { label: 'Can log in with password', cell: (u) => (u.password_hash ? 'yes' : 'no') },
      { label: '', cell: (u) => deleter(`/api/users/${enc(u.name)}`, again) },
    ], users(again), 'users'));
    sections.push(section('Virtual hosts', '/api/vhosts', [
      { label: 'Name', cell: (v) => v.name },
      { label: 'Ready', cell: (v) => num(v.messages_ready), class: 'num' },
      { label: 'Unacked', cell: (v) => num(v.messages_unacknowledged), class: 'num' },
      { label: 'Total', cell: (v) => num(v.messages), class: 'num' },
      { label: '', cell: (v) => deleter(`/api/vhosts/${enc(v.name)}`, again) },
    ], vhostForm(again), 'vhosts'));
    sections.push(section('Permissions', '/api/permissions', [
      { label: 'User', cell: (p) => p.user }, { label: 'Vhost', cell: (p) => p.vhost },
      { label: 'Configure', cell: (p) => p.configure }, { label: 'Write', cell: (p) => p.write }, { label: 'Read', cell: (p) => p.read },
      { label: '', cell: (p) => deleter(`/api/permissions/${enc(p.vhost)}/${enc(p.user)}`, again) },
    ], permForm(again), 'permissions'));
    sections.push(section('Topic permissions', '/api/topic-permissions', [
      { label: 'User', cell: (p) => p.user }, { label: 'Vhost', cell: (p) => p.vhost }, { label: 'Exchange', cell: (p) => p.exchange },
      { label: 'Write', cell: (p) => p.write }, { label: 'Read', cell: (p) => p.read },
      { label: '', cell: (p) => deleter(`/api/topic-permissions/${enc(p.vhost)}/${enc(p.user)}${query({ exchange: p.exchange })}`, again) },
    ], topicForm(again), 'topic-permissions'));
  }
  const policyColumns = (kind) => [
    { label: 'Vhost', cell: (p) => p.vhost }, { label: 'Name', cell: (p) => p.name }, { label: 'Pattern', cell: (p) => p.pattern },
    { label: 'Apply to', cell: (p) => p['apply-to'] }, { label: 'Definition', cell: (p) => json(p.definition) },
    { label: 'Priority', cell: (p) => num(p.priority), class: 'num' },
    { label: '', cell: (p) => deleter(`/api/${kind}/${enc(p.vhost)}/${enc(p.name)}`, again) },
  ];
  if (perm.policymaker) sections.push(section('Policies', '/api/policies', policyColumns('policies'), policyForm('policies', again), 'policies'));
  if (perm.admin) {
    sections.push(section('Operator policies', '/api/operator-policies', policyColumns('operator-policies'),
      policyForm('operator-policies', again), 'operator-policies'));
    const limits = (key) => (row) => Object.entries(row.value || {}).map(([k, v]) => `${k} = ${json(v)}`).join(', ');
    sections.push(section('Virtual host limits', '/api/vhost-limits', [
      { label: 'Vhost', cell: (l) => l.vhost }, { label: 'Limits', cell: limits('vhost') },
    ], limitForm('vhost', again), 'vhost-limits'));
    sections.push(section('User limits', '/api/user-limits', [
      { label: 'User', cell: (l) => l.user }, { label: 'Limits', cell: limits('user') },
    ], limitForm('user', again), 'user-limits'));
  }
  view.append(h('h1', null, 'Admin'), status, ...sections.map((s) => s.el));
  return { refresh: async () => { await Promise.all(sections.map((s) => s.refresh())); } };
}
