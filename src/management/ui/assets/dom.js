// Building the page from data without ever parsing data as HTML: every string becomes a text
// node (textContent), attributes are set one by one, and event handlers must be functions.
// No HTML-parsing property or call is used anywhere in the UI, so a queue called `<img src=x onerror=alert(1)>` is text.

const SVG_NS = 'http://www.w3.org/2000/svg';

function append(el, child) {
  if (child === null || child === undefined || child === false) return;
  if (Array.isArray(child)) {
    for (const c of child) append(el, c);
  } else if (child instanceof Node) {
    el.appendChild(child);
  } else {
    el.appendChild(document.createTextNode(String(child)));
  }
}

function setAttrs(el, attrs) {
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith('on')) {
      if (typeof v !== 'function') throw new TypeError(`handler ${k} must be a function`);
      el.addEventListener(k.slice(2), v);
    } else if (k === 'value' && 'value' in el) {
      el.value = String(v);
    } else if (k === 'checked' || k === 'selected') {
      // The attribute (the default state) survives the option being added to its select.
      el.setAttribute(k, '');
      el[k] = true;
    } else if (k === 'disabled') {
      el.disabled = true;
    } else if (k === 'dataset') {
      Object.assign(el.dataset, v);
    } else {
      el.setAttribute(k, v === true ? '' : String(v));
    }
  }
}

/** An HTML element: h('td', {class: 'num'}, 'text', childNode, [more]). */
export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  setAttrs(el, attrs);
  append(el, children);
  return el;
}

/** An SVG element, as h(). */
export function s(tag, attrs, ...children) {
  const el = document.createElementNS(SVG_NS, tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v !== null && v !== undefined) el.setAttribute(k, String(v));
  }
  append(el, children);
  return el;
}

/** Replaces the children of `el`. */
export function fill(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

/** A link to a page of this UI; the path parts are percent-encoded. */
export function link(text, ...parts) {
  return h('a', { href: route(...parts) }, text);
}

/** `#/queues/%2F/name` from ('queues', '/', 'name'). */
export function route(...parts) {
  return '#/' + parts.map((p) => encodeURIComponent(p)).join('/');
}

/** A table: columns are {label, cell: row => node|text, class?, sort?}. */
export function table(columns, rows, opts = {}) {
  const head = h('tr', null, columns.map((c) => {
    const th = h('th', { class: c.class, title: c.title }, c.label);
    if (c.sort && opts.onSort) {
      th.classList.add('sortable');
      if (opts.sort === c.sort) th.classList.add(opts.reverse ? 'sorted-desc' : 'sorted-asc');
      th.addEventListener('click', () => opts.onSort(c.sort));
      th.tabIndex = 0;
    }
    return th;
  }));
  const body = rows.length
    ? rows.map((r) => h('tr', null, columns.map((c) => h('td', { class: c.class }, c.cell(r)))))
    : h('tr', null, h('td', { colspan: columns.length, class: 'empty' }, opts.empty || 'Nothing here.'));
  return h('table', { class: 'list' }, h('thead', null, head), h('tbody', null, body));
}

/** A two-column key/value table; values may be nodes. */
export function kv(pairs) {
  return h('table', { class: 'kv' }, h('tbody', null,
    pairs.filter((p) => p).map(([k, v]) => h('tr', null, h('th', null, k), h('td', null, v)))));
}

/** A labelled form field. */
export function field(label, input, hint) {
  return h('label', { class: 'field' }, h('span', null, label), input, hint ? h('small', null, hint) : null);
}

/** A <select> from [value, label] pairs (or plain strings). */
export function select(name, options, value) {
  return h('select', { name }, options.map((o) => {
    const [v, l] = Array.isArray(o) ? o : [o, o];
    return h('option', { value: v, selected: v === value }, l);
  }));
}

let holds = 0;
let generation = 0;

/**
 * Holds periodic refreshes while the user is in the middle of something that a redraw would
 * wipe (an armed delete button, a half-typed close reason). Returns the release function.
 */
export function hold() {
  holds += 1;
  const mine = generation;
  let released = false;
  return () => {
    if (!released && mine === generation) holds -= 1;
    released = true;
  };
}

/** Drops every hold (a new page was mounted: what held them is gone). */
export function releaseAll() {
  generation += 1;
  holds = 0;
}

/** Whether something holds refreshes. */
export function held() {
  return holds > 0;
}

/** A button that asks again before acting: first click arms it, second click runs `action`. */
export function confirmButton(label, question, action, attrs = {}) {
  const btn = h('button', { type: 'button', class: 'danger', ...attrs }, label);
  let armed = false;
  let timer = 0;
  let release = () => {};
  const disarm = () => {
    clearTimeout(timer);
    armed = false;
    btn.textContent = label;
    btn.classList.remove('armed');
    release();
  };
  btn.addEventListener('click', async () => {
    if (!armed) {
      armed = true;
      release = hold();
      btn.textContent = question;
      btn.classList.add('armed');
      timer = setTimeout(disarm, 5000);
      return;
    }
    disarm();
    btn.disabled = true;
    try { await action(); } finally { btn.disabled = false; }
  });
  return btn;
}

/** A message line: kind is 'error', 'ok' or 'info'. */
export function note(kind, text) {
  return h('p', { class: `note ${kind}`, role: kind === 'error' ? 'alert' : 'status' }, text);
}

const NF = new Intl.NumberFormat('en-US');

/** 12,345 */
export function num(n) {
  return typeof n === 'number' && Number.isFinite(n) ? NF.format(n) : '–';
}

/** 1.2/s from a `*_details` object or a number. */
export function rate(d) {
  const r = typeof d === 'number' ? d : d && typeof d.rate === 'number' ? d.rate : null;
  if (r === null) return '–';
  const a = Math.abs(r);
  return `${a >= 100 ? r.toFixed(0) : a >= 10 ? r.toFixed(1) : r.toFixed(2)}/s`;
}

/** 1.5 MiB */
export function bytes(n) {
  if (typeof n !== 'number' || !Number.isFinite(n)) return '–';
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  let v = n;
  while (Math.abs(v) >= 1024 && i < units.length - 1) { v /= 1024; i += 1; }
  return `${i === 0 ? v : v.toFixed(1)} ${units[i]}`;
}

/** 3d 4h 5m from milliseconds. */
export function duration(ms) {
  if (typeof ms !== 'number' || !Number.isFinite(ms)) return '–';
  let s = Math.floor(ms / 1000);
  const d = Math.floor(s / 86400); s -= d * 86400;
  const hh = Math.floor(s / 3600); s -= hh * 3600;
  const m = Math.floor(s / 60); s -= m * 60;
  if (d) return `${d}d ${hh}h`;
  if (hh) return `${hh}h ${m}m`;
  if (m) return `${m}m ${s}s`;
  return `${s}s`;
}

/** A field table (arguments, headers) as a key/value table, values as JSON text. */
export function args(obj) {
  const keys = Object.keys(obj || {});
  if (!keys.length) return h('span', { class: 'muted' }, 'none');
  return kv(keys.sort().map((k) => [k, typeof obj[k] === 'string' ? obj[k] : JSON.stringify(obj[k])]));
}

/** Reads `key=value` lines (values parsed as JSON when they can be) into an object. */
export function parseArgs(text) {
  const out = {};
  for (const raw of String(text || '').split('\n')) {
    const line = raw.trim();
    if (!line) continue;
    const i = line.indexOf('=');
    if (i <= 0) throw new Error(`"${line}" is not key=value`);
    const k = line.slice(0, i).trim();
    const v = line.slice(i + 1).trim();
    let parsed = v;
    if (/^(-?\d+(\.\d+)?|true|false|null|\{.*\}|\[.*\]|\".*\")$/.test(v)) {
      try { parsed = JSON.parse(v); } catch { parsed = v; }
    }
    out[k] = parsed;
  }
  return out;
}

/** A titled section of a page. */
export function panel(title, ...children) {
  return h('section', { class: 'panel' }, h('h2', null, title), ...children);
}

/**
 * Runs `fn` (which returns nodes) and puts its result into `el`; an error is shown in words
 * instead. Resolves to true when it worked.
 */
export async function load(el, fn) {
  try {
    fill(el, await fn());
    return true;
  } catch (e) {
    fill(el, note('error', e && e.message ? e.message : String(e)));
    return false;
  }
}

/**
 * A form whose submit runs `action` (which may return a message) and shows the outcome in
 * words under it. The submit button is disabled while it runs.
 */
export function form(attrs, children, action) {
  const status = h('div', { class: 'form-status', 'aria-live': 'polite' });
  const el = h('form', { class: 'inline-form', ...attrs }, children, status);
  el.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const btn = el.querySelector('button[type=submit]');
    if (btn) btn.disabled = true;
    fill(status);
    try {
      const msg = await action(new FormData(el), el);
      if (msg) fill(status, note('ok', msg));
    } catch (e) {
      fill(status, note('error', e && e.message ? e.message : String(e)));
    } finally {
      if (btn) btn.disabled = false;
    }
  });
  return el;
}
