// A listing paged, sorted and filtered by the server, with RabbitMQ's query parameters
// (page, page_size, name, use_regex, sort, sort_reverse) and its paged answer
// ({items, page, page_count, filtered_count, total_count, ...}). The browser only ever holds
// one page, so a broker with 100,000 queues costs the same as one with ten.

import { get, enc, query, ApiError } from './api.js';
import { h, fill, note, num, table } from './dom.js';

const SIZES = [20, 50, 100, 500];

/**
 * `resource` is 'queues', 'exchanges', 'connections' or 'channels'; `columns` as for table()
 * (with `sort` set to the API field to sort by). Returns {el, refresh}.
 */
export function pagedList({ resource, columns, key, perVhost = true, empty, defaultSort = '' }) {
  const saved = JSON.parse(sessionStorage.getItem(`lagomorph.list.${key}`) || '{}');
  const state = {
    page: 1, page_size: 100, name: '', use_regex: false, sort: defaultSort, sort_reverse: false, vhost: '',
    ...saved,
  };
  const save = () => sessionStorage.setItem(`lagomorph.list.${key}`, JSON.stringify(state));
  const filter = h('input', { type: 'search', name: 'filter', placeholder: 'Filter by name', value: state.name, 'aria-label': 'Filter by name' });
  const regex = h('input', { type: 'checkbox', name: 'use_regex', checked: state.use_regex });
  const size = h('select', { name: 'page_size', 'aria-label': 'Page size' },
    SIZES.map((n) => h('option', { value: n, selected: n === state.page_size }, `${n} per page`)));
  const vhostSel = h('select', { name: 'vhost', 'aria-label': 'Virtual host' }, h('option', { value: '' }, 'All vhosts'));
  const summary = h('span', { class: 'summary' });
  const prev = h('button', { type: 'button', class: 'prev' }, '‹ Prev');
  const next = h('button', { type: 'button', class: 'next' }, 'Next ›');
  const pageInfo = h('span', { class: 'page-info' });
  const body = h('div', { class: 'list-body' });
  const status = h('div', { class: 'list-status' });
  const el = h('div', { class: 'paged', 'data-list': key },
    h('div', { class: 'controls' }, filter, h('label', { class: 'check' }, regex, ' Regex'),
      perVhost ? vhostSel : null, size, prev, pageInfo, next, summary),
    status, body);

  let current = null;
  let timer = 0;
  let seq = 0;
  const refresh = async () => {
    const mine = ++seq;
    const base = perVhost && state.vhost ? `/api/${resource}/${enc(state.vhost)}` : `/api/${resource}`;
    const q = {
      page: state.page, page_size: state.page_size, name: state.name,
      use_regex: state.name && state.use_regex ? 'true' : '', sort: state.sort,
      sort_reverse: state.sort && state.sort_reverse ? 'true' : '',
    };
    let data;
    try {
      data = await get(base + query(q));
    } catch (e) {
      if (mine !== seq) return;
      if (e instanceof ApiError && e.error === 'page_out_of_range' && state.page > 1) {
        state.page = 1;
        save();
        return refresh();
      }
      fill(status, note('error', e.message));
      throw e;
    }
    if (mine !== seq) return;
    fill(status);
    current = data;
    const from = data.item_count ? (data.page - 1) * data.page_size + 1 : 0;
    const to = data.item_count ? from + data.item_count - 1 : 0;
    fill(summary, `${num(from)}–${num(to)} of ${num(data.filtered_count)}`
      + (data.filtered_count !== data.total_count ? ` (filtered from ${num(data.total_count)})` : ''));
    fill(pageInfo, `page ${num(data.page)} of ${num(Math.max(1, data.page_count))}`);
    prev.disabled = data.page <= 1;
    next.disabled = data.page >= data.page_count;
    fill(body, table(columns, data.items, {
      sort: state.sort, reverse: state.sort_reverse, empty,
      onSort: (field) => {
        if (state.sort === field) state.sort_reverse = !state.sort_reverse;
        else { state.sort = field; state.sort_reverse = false; }
        state.page = 1;
        save();
        refresh().catch(() => {});
      },
    }));
  };
  const changed = () => { state.page = 1; save(); refresh().catch(() => {}); };
  filter.addEventListener('input', () => {
    clearTimeout(timer);
    timer = setTimeout(() => { state.name = filter.value; changed(); }, 300);
  });
  regex.addEventListener('change', () => { state.use_regex = regex.checked; changed(); });
  size.addEventListener('change', () => { state.page_size = Number(size.value); changed(); });
  vhostSel.addEventListener('change', () => { state.vhost = vhostSel.value; changed(); });
  prev.addEventListener('click', () => { if (state.page > 1) { state.page -= 1; save(); refresh().catch(() => {}); } });
  next.addEventListener('click', () => {
    if (current && state.page < current.page_count) { state.page += 1; save(); refresh().catch(() => {}); }
  });
  if (perVhost) {
    get('/api/vhosts?columns=name').then((vhosts) => {
      for (const v of vhosts) vhostSel.appendChild(h('option', { value: v.name, selected: v.name === state.vhost }, v.name));
    }).catch((e) => fill(status, note('error', e.message)));
  }
  return { el, refresh };
}
