// The shell: login and logout, the navigation each user's tags allow (as RabbitMQ's UI), the
// hash router, and the refresh control. Pages are modules exporting `mount(main, ctx, params)`
// that build their static parts once and return `{refresh}` for the live parts.

import { api, ApiError, clearLogin, loggedIn, setLogin } from './api.js';
import { h, fill, field, note, releaseAll } from './dom.js';
import { CHOICES, Refresher } from './refresh.js';

const PAGES = {
  overview: () => import('./overview.js'),
  connections: () => import('./connections.js'),
  exchanges: () => import('./exchanges.js'),
  exchange: () => import('./exchanges.js'),
  queues: () => import('./queues.js'),
  queue: () => import('./queue.js'),
  admin: () => import('./admin.js'),
  definitions: () => import('./definitions.js'),
};

const main = document.getElementById('main');
const top = document.getElementById('top');
const nav = document.getElementById('nav');
const refresher = new Refresher();
let me = null;
let mounted = 0;

/** What a user with these tags may see and do (RabbitMQ's management tags). */
export function permissionsOf(tags) {
  const has = (t) => tags.includes(t);
  const admin = has('administrator');
  const monitoring = admin || has('monitoring');
  const policymaker = admin || has('policymaker');
  return {
    admin,
    monitoring,
    policymaker,
    // Node figures and every vhost's objects: monitoring and administrator.
    seesNode: monitoring,
    // Admin tab: administrators see all of it, policymakers the policies.
    adminTab: admin || policymaker,
    definitions: admin,
  };
}

function navItems(perm) {
  return [
    ['overview', 'Overview', true],
    ['connections', 'Connections', true],
    ['exchanges', 'Exchanges', true],
    ['queues', 'Queues', true],
    ['admin', 'Admin', perm.adminTab],
    ['definitions', 'Definitions', perm.definitions],
  ].filter(([, , ok]) => ok);
}

function parseHash() {
  const raw = location.hash.replace(/^#\/?/, '');
  const parts = raw ? raw.split('/').map((p) => { try { return decodeURIComponent(p); } catch { return p; } }) : [];
  let page = parts.shift() || 'overview';
  if (page === 'queues' && parts.length >= 2) page = 'queue';
  if (page === 'exchanges' && parts.length >= 2) page = 'exchange';
  return { page, params: parts };
}

function showLogin(message) {
  refresher.start(null);
  me = null;
  top.hidden = true;
  const user = h('input', { name: 'username', autocomplete: 'username', required: true, autofocus: true });
  const pass = h('input', { name: 'password', type: 'password', autocomplete: 'current-password' });
  const status = h('div', { id: 'login-status' }, message ? note('error', message) : null);
  const form = h('form', { id: 'login', class: 'card narrow' },
    h('h1', null, 'Lagomorph'),
    h('p', { class: 'muted' }, 'Log in with a user that has a management tag.'),
    field('Username', user), field('Password', pass),
    h('button', { type: 'submit', class: 'primary' }, 'Log in'), status);
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    setLogin(user.value, pass.value);
    try {
      await start();
    } catch (e) {
      clearLogin();
      const msg = e instanceof ApiError && e.status === 401
        ? 'Login failed: wrong user name or password, or the user has no management tag.'
        : e.message;
      fill(status, note('error', msg));
    }
  });
  fill(main, form);
  user.focus();
}

function logout(message) {
  clearLogin();
  location.hash = '#/';
  showLogin(message);
}

async function start() {
  const who = await api('GET', '/api/whoami');
  me = { name: who.name, tags: who.tags || [] };
  me.perm = permissionsOf(me.tags);
  top.hidden = false;
  fill(document.getElementById('who'), h('span', { class: 'user' }, me.name),
    me.tags.length ? h('span', { class: 'tags' }, ` (${me.tags.join(', ')})`) : null);
  await render();
}

async function render() {
  if (!me) return;
  const { page, params } = parseHash();
  const items = navItems(me.perm);
  fill(nav, items.map(([id, label]) => {
    const active = id === page || (id === 'queues' && page === 'queue') || (id === 'exchanges' && page === 'exchange');
    return h('a', { href: `#/${id}`, class: active ? 'active' : '' }, label);
  }));
  const allowed = items.some(([id]) => id === page) || page === 'queue' || page === 'exchange';
  const load = PAGES[page];
  const token = ++mounted;
  refresher.start(null);
  releaseAll();
  if (!load || !allowed) {
    fill(main, note('error', load ? 'Your user tags do not give access to this page.' : `No page "${page}".`));
    return;
  }
  fill(main, h('p', { class: 'muted' }, 'Loading…'));
  const mod = await load();
  if (token !== mounted) return;
  const view = h('div', { class: 'page', id: `page-${page}` });
  fill(main, view);
  const ctx = { me, refresh: () => refresher.kick(), go: (hash) => { location.hash = hash; } };
  const handle = mod.mount(view, ctx, params, page);
  if (handle && handle.refresh) refresher.start(handle.refresh);
}

function setupControls() {
  const sel = document.getElementById('refresh');
  fill(sel, CHOICES.map(([v, l]) => h('option', { value: v, selected: v === refresher.seconds }, l)));
  sel.addEventListener('change', () => refresher.setSeconds(Number(sel.value)));
  const updated = document.getElementById('updated');
  refresher.onDone((err) => {
    updated.textContent = err ? 'update failed' : `updated ${new Date().toLocaleTimeString()}`;
  });
  document.getElementById('logout').addEventListener('click', () => logout());
  window.addEventListener('lagomorph:logout', () => {
    if (me) logout('You were logged out: the broker no longer accepts this login.');
  });
  window.addEventListener('hashchange', () => { render(); });
}

setupControls();
if (loggedIn()) {
  start().catch((e) => {
    clearLogin();
    showLogin(e.message);
  });
} else {
  showLogin();
}
