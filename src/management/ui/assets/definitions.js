// Definitions: export (shown and saved to a file) and import (from a file or pasted JSON), for
// the whole broker or one vhost, through GET/POST /api/definitions[/{vhost}].

import { get, post, enc } from './api.js';
import { h, fill, field, form, note, panel, select } from './dom.js';

function path(vhost) {
  return vhost ? `/api/definitions/${enc(vhost)}` : '/api/definitions';
}

function download(name, text) {
  const url = URL.createObjectURL(new Blob([text], { type: 'application/json' }));
  const a = h('a', { href: url, download: name, hidden: true });
  document.body.appendChild(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10000);
}

export function mount(view) {
  const vhosts = [['', 'All vhosts']];
  const exportVh = select('vhost', vhosts, '');
  const importVh = select('vhost', vhosts, '');
  const shown = h('textarea', { id: 'exported', rows: 12, readonly: true, 'aria-label': 'Exported definitions' });
  const exportForm = form({ id: 'export' }, [field('Vhost', exportVh),
    h('button', { type: 'submit', class: 'primary' }, 'Export and download')], async () => {
    const defs = await get(path(exportVh.value));
    const text = JSON.stringify(defs, null, 2);
    shown.value = text;
    const stamp = new Date().toISOString().slice(0, 19).replace(/[:T]/g, '-');
    const file = `lagomorph-definitions-${exportVh.value ? exportVh.value.replace(/[^A-Za-z0-9_.-]/g, '_') : 'all'}-${stamp}.json`;
    download(file, text);
    return `Exported ${(defs.queues || []).length} queues, ${(defs.exchanges || []).length} exchanges, ${(defs.bindings || []).length} bindings to ${file}.`;
  });
  const file = h('input', { type: 'file', name: 'file', accept: '.json,application/json', id: 'import-file' });
  const paste = h('textarea', { name: 'json', rows: 6, placeholder: 'or paste definitions JSON here', id: 'import-json' });
  const importForm = form({ id: 'import' }, [field('Vhost', importVh), field('Definitions file', file), field('JSON', paste),
    h('button', { type: 'submit', class: 'primary' }, 'Import')], async () => {
    const text = file.files && file.files[0] ? await file.files[0].text() : paste.value;
    if (!text.trim()) throw new Error('Choose a file or paste JSON first.');
    let body;
    try { body = JSON.parse(text); } catch (e) { throw new Error(`The file is not JSON: ${e.message}`); }
    await post(path(importVh.value), body);
    file.value = '';
    return 'Definitions imported.';
  });
  const status = h('div');
  view.append(h('h1', null, 'Definitions'), status,
    panel('Export definitions', exportForm, shown),
    panel('Import definitions', note('info', 'Importing adds and updates objects; it does not delete what the file lacks.'), importForm));
  get('/api/vhosts?columns=name').then((list) => {
    for (const v of list) {
      exportVh.appendChild(h('option', { value: v.name }, v.name));
      importVh.appendChild(h('option', { value: v.name }, v.name));
    }
  }).catch((e) => fill(status, note('error', e.message)));
  return null;
}
