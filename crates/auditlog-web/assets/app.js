// auditlog website: users table (edit, save, delete, add) and each user's history.
//
// The web server reverse-proxies the primary API on the same origin, so every URL here
// is relative. The page acts as user 1 (the demo admin), like the prototype did.

const JSONAPI = 'application/vnd.api+json';
const ACTOR_ID = 1;
/** Events arrive asynchronously after a mutation; refresh the history again after these delays (ms). */
const HISTORY_FOLLOW_UPS = [500, 1500];

const state = {
  token: null,
  tokenPromise: null,
  /** @type {Map<string, object>} user id -> JSON:API resource as last loaded */
  users: new Map(),
  /** @type {Map<string, HTMLTableRowElement>} */
  rows: new Map(),
  /** The user whose history is open: {id, name} or null. */
  subject: null,
  /** Bumped on every history reload so that late answers of an older load are dropped. */
  historyGeneration: 0,
  followUpTimers: [],
};

const $ = (sel, root = document) => root.querySelector(sel);

// ---------------------------------------------------------------------------
// HTTP

class ApiError extends Error {
  constructor(message, status) {
    super(message);
    this.status = status;
  }
}

async function fetchToken() {
  if (!state.tokenPromise) {
    state.tokenPromise = (async () => {
      let res;
      try {
        res = await fetch(`/tokens/${ACTOR_ID}`, { cache: 'no-store' });
      } catch {
        throw new ApiError('Cannot reach the server. Is auditlog running?', 0);
      }
      if (!res.ok) throw new ApiError(await errorMessage(res, 'Could not get an access token'), res.status);
      let token = (await res.text()).trim();
      // Tolerate a JSON-quoted string.
      if (token.startsWith('"') && token.endsWith('"')) token = token.slice(1, -1);
      state.token = token;
      return token;
    })().finally(() => { state.tokenPromise = null; });
  }
  return state.tokenPromise;
}

/** Reads a JSON:API error document (or anything else) into one readable sentence. */
async function errorMessage(res, fallback) {
  let text = '';
  try { text = await res.text(); } catch { /* ignore */ }
  try {
    const doc = JSON.parse(text);
    if (Array.isArray(doc.errors) && doc.errors.length) {
      return doc.errors.map((e) => e.detail || e.title || `Error ${e.status || res.status}`).join('; ');
    }
  } catch { /* not JSON */ }
  const reason = res.statusText ? ` ${res.statusText}` : '';
  return `${fallback} (HTTP ${res.status}${reason})`;
}

/** Keeps same-origin: a `links.next` given as an absolute URL is reduced to its path. */
function sameOrigin(url) {
  try {
    const u = new URL(url, window.location.href);
    return u.pathname + u.search;
  } catch {
    return url;
  }
}

/**
 * Calls the API with the bearer token; on a 401 fetches a new token once and retries.
 * Returns the parsed JSON body, or null for an empty body (204).
 */
async function api(method, url, body) {
  if (!state.token) await fetchToken();
  const send = async () => {
    const headers = { Accept: JSONAPI, Authorization: `Bearer ${state.token}` };
    const init = { method, headers, cache: 'no-store' };
    if (body !== undefined) {
      headers['Content-Type'] = JSONAPI;
      init.body = JSON.stringify(body);
    }
    try {
      return await fetch(url, init);
    } catch {
      throw new ApiError('Cannot reach the server. Is auditlog running?', 0);
    }
  };
  let res = await send();
  if (res.status === 401) {
    await fetchToken();
    res = await send();
  }
  if (!res.ok) throw new ApiError(await errorMessage(res, `${method} ${url} failed`), res.status);
  if (res.status === 204) return null;
  const text = await res.text();
  return text ? JSON.parse(text) : null;
}

// ---------------------------------------------------------------------------
// Notices

let statusTimer = 0;

function showError(err) {
  const box = $('[data-testid="error"]');
  box.replaceChildren();
  const msg = document.createElement('span');
  msg.className = 'error-text';
  msg.textContent = err instanceof Error ? err.message : String(err);
  const close = document.createElement('button');
  close.type = 'button';
  close.className = 'error-close';
  close.setAttribute('aria-label', 'Dismiss error');
  close.addEventListener('click', clearError);
  box.append(msg, close);
  if (!(err instanceof ApiError)) console.error(err);
}

function clearError() {
  $('[data-testid="error"]').replaceChildren();
}

function showStatus(text) {
  const box = $('[data-testid="status"]');
  box.textContent = text;
  clearTimeout(statusTimer);
  statusTimer = setTimeout(() => { box.textContent = ''; }, 4000);
}

// ---------------------------------------------------------------------------
// Users table

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'class') node.className = v;
    else if (k === 'text') node.textContent = v;
    else if (k in node && typeof v !== 'string') node[k] = v;
    else node.setAttribute(k, v === true ? '' : v);
  }
  node.append(...children.filter((c) => c !== null && c !== undefined));
  return node;
}

function userName(id) {
  const u = state.users.get(String(id));
  return u ? u.attributes.name : null;
}

function asBool(v) {
  return v === true || v === 1 || v === '1' || v === 'true';
}

async function loadUsers() {
  const doc = await api('GET', '/api/users');
  const list = Array.isArray(doc?.data) ? doc.data : [];
  list.sort((a, b) => compareIds(a.id, b.id));
  state.users = new Map(list.map((u) => [String(u.id), u]));
  renderUsers(list);
  const who = state.users.get(String(ACTOR_ID));
  $('[data-testid="whoami"]').textContent = who
    ? `Acting as ${who.attributes.name} (${who.attributes.role || 'user'})`
    : `Acting as users ${ACTOR_ID}`;
}

function compareIds(a, b) {
  const na = Number(a), nb = Number(b);
  if (Number.isFinite(na) && Number.isFinite(nb)) return na - nb;
  return String(a).localeCompare(String(b));
}

function renderUsers(list) {
  const body = $('#users-body');
  $('[data-testid="user-count"]').textContent = `(${list.length})`;
  const seen = new Set();
  let prev = null;
  for (const user of list) {
    const id = String(user.id);
    seen.add(id);
    let row = state.rows.get(id);
    if (!row) {
      row = buildRow(id);
      state.rows.set(id, row);
    }
    fillRow(row, user);
    // Keep the DOM order equal to the list order without moving rows needlessly (keeps focus).
    const want = prev ? prev.nextElementSibling : body.firstElementChild;
    if (want !== row) body.insertBefore(row, want);
    prev = row;
  }
  for (const [id, row] of state.rows) {
    if (!seen.has(id)) {
      row.remove();
      state.rows.delete(id);
    }
  }
  body.querySelectorAll('.placeholder-row').forEach((r) => r.remove());
  if (list.length === 0) {
    body.append(el('tr', { class: 'placeholder-row' }, el('td', { colspan: '6', text: 'No users yet. Add one above.' })));
  }
  markSelected();
}

function buildRow(id) {
  const name = el('input', { type: 'text', class: 'cell-input', 'data-testid': 'name-input', 'data-field': 'name', autocomplete: 'off' });
  const email = el('input', { type: 'email', class: 'cell-input', 'data-testid': 'email-input', 'data-field': 'email', autocomplete: 'off' });
  const tos = el('input', { type: 'checkbox', 'data-testid': 'tos-input', 'data-field': 'agreedTos' });
  const save = el('button', { type: 'button', class: 'btn btn-primary btn-sm', 'data-testid': 'save', text: 'Save' });
  const del = el('button', { type: 'button', class: 'btn btn-danger btn-sm', 'data-testid': 'delete', text: 'Delete' });
  const hist = el('button', { type: 'button', class: 'btn btn-ghost btn-sm', 'data-testid': 'history', text: 'History', 'aria-pressed': 'false' });
  const role = el('span', { class: 'role-badge', 'data-testid': 'role' });

  const row = el('tr', { 'data-testid': `user-row-${id}`, 'data-id': id },
    el('td', { class: 'col-id', 'data-label': 'ID' }, el('span', { class: 'id-chip', text: id })),
    el('td', { 'data-label': 'Name' }, name),
    el('td', { 'data-label': 'Email' }, email),
    el('td', { class: 'col-tos', 'data-label': 'Agreed TOS' }, tos),
    el('td', { class: 'col-role', 'data-label': 'Role' }, role),
    el('td', { class: 'col-actions' }, el('div', { class: 'row-actions' }, save, hist, del)),
  );

  const onEdit = () => updateDirty(row);
  name.addEventListener('input', onEdit);
  email.addEventListener('input', onEdit);
  tos.addEventListener('change', onEdit);
  for (const input of [name, email]) {
    input.addEventListener('keydown', (ev) => {
      if (ev.key === 'Enter') { ev.preventDefault(); saveRow(row); }
      if (ev.key === 'Escape') { resetRow(row); }
    });
  }
  save.addEventListener('click', () => saveRow(row));
  del.addEventListener('click', () => deleteRow(row));
  hist.addEventListener('click', () => openHistory(id));
  row.addEventListener('click', (ev) => {
    if (ev.target.closest('input, button, label, a')) return;
    openHistory(id);
  });
  return row;
}

function rowInputs(row) {
  return {
    name: $('[data-testid="name-input"]', row),
    email: $('[data-testid="email-input"]', row),
    agreedTos: $('[data-testid="tos-input"]', row),
  };
}

/** Fills a row from the server's values, keeping any edits the person has not saved yet. */
function fillRow(row, user) {
  const a = user.attributes || {};
  const orig = { name: a.name ?? '', email: a.email ?? '', agreedTos: asBool(a.agreedTos) };
  const before = row._orig;
  row._orig = orig;
  const inputs = rowInputs(row);
  const label = orig.name || `user ${user.id}`;
  for (const key of ['name', 'email']) {
    const input = inputs[key];
    if (!before || input.value === before[key]) input.value = orig[key];
  }
  if (!before || inputs.agreedTos.checked === before.agreedTos) inputs.agreedTos.checked = orig.agreedTos;
  inputs.name.setAttribute('aria-label', `Name of user ${user.id}`);
  inputs.email.setAttribute('aria-label', `Email of user ${user.id}`);
  inputs.agreedTos.setAttribute('aria-label', `${label} agreed to the terms of service`);
  $('[data-testid="save"]', row).setAttribute('aria-label', `Save ${label}`);
  $('[data-testid="delete"]', row).setAttribute('aria-label', `Delete ${label}`);
  $('[data-testid="history"]', row).setAttribute('aria-label', `History of ${label}`);
  const role = a.role || 'user';
  const badge = $('[data-testid="role"]', row);
  badge.textContent = role;
  badge.dataset.role = role;
  updateDirty(row);
}

function changedFields(row) {
  const inputs = rowInputs(row);
  const orig = row._orig;
  const changes = {};
  if (inputs.name.value.trim() !== orig.name) changes.name = inputs.name.value.trim();
  if (inputs.email.value.trim() !== orig.email) changes.email = inputs.email.value.trim();
  if (inputs.agreedTos.checked !== orig.agreedTos) changes.agreedTos = inputs.agreedTos.checked;
  return changes;
}

function updateDirty(row) {
  const dirty = Object.keys(changedFields(row)).length > 0;
  row.classList.toggle('dirty', dirty);
  row.dataset.dirty = dirty ? 'true' : 'false';
  $('[data-testid="save"]', row).disabled = !dirty || row.dataset.busy === 'true';
}

function resetRow(row) {
  const inputs = rowInputs(row);
  inputs.name.value = row._orig.name;
  inputs.email.value = row._orig.email;
  inputs.agreedTos.checked = row._orig.agreedTos;
  updateDirty(row);
}

function setBusy(row, busy) {
  row.dataset.busy = busy ? 'true' : 'false';
  row.setAttribute('aria-busy', busy ? 'true' : 'false');
  $('[data-testid="delete"]', row).disabled = busy;
  updateDirty(row);
}

async function saveRow(row) {
  const id = row.dataset.id;
  const changes = changedFields(row);
  if (Object.keys(changes).length === 0) return;
  if ('name' in changes && !changes.name) return showError(new Error('Name cannot be empty.'));
  if ('email' in changes && !rowInputs(row).email.checkValidity()) {
    return showError(new Error(`“${changes.email}” is not a valid email address.`));
  }
  clearError();
  setBusy(row, true);
  try {
    const doc = await api('PATCH', `/api/users/${encodeURIComponent(id)}`, {
      data: { type: 'users', id, attributes: changes },
    });
    if (doc?.data) {
      state.users.set(id, doc.data);
      row._orig = null; // take the server's values as they are
      fillRow(row, doc.data);
    }
    showStatus(`Saved ${doc?.data?.attributes?.name || `user ${id}`}.`);
    afterMutation(id);
  } catch (err) {
    showError(err);
  } finally {
    setBusy(row, false);
  }
}

async function deleteRow(row) {
  const id = row.dataset.id;
  const name = row._orig?.name || `user ${id}`;
  if (!window.confirm(`Delete ${name}? Its history is kept.`)) return;
  clearError();
  setBusy(row, true);
  try {
    await api('DELETE', `/api/users/${encodeURIComponent(id)}`);
    showStatus(`Deleted ${name}.`);
    afterMutation(id);
  } catch (err) {
    showError(err);
  } finally {
    setBusy(row, false);
  }
}

async function addUser(ev) {
  ev.preventDefault();
  const form = ev.currentTarget;
  const name = $('[data-testid="new-user-name"]', form);
  const email = $('[data-testid="new-user-email"]', form);
  const tos = $('[data-testid="new-user-tos"]', form);
  for (const input of [name, email]) input.value = input.value.trim();
  if (!form.checkValidity()) {
    form.reportValidity();
    return;
  }
  clearError();
  const button = $('[data-testid="add-user"]', form);
  button.disabled = true;
  try {
    const doc = await api('POST', '/api/users', {
      data: { type: 'users', attributes: { name: name.value, email: email.value, agreedTos: tos.checked } },
    });
    form.reset();
    const created = doc?.data;
    showStatus(`Added ${created?.attributes?.name || name.value}.`);
    await afterMutation(created ? String(created.id) : null);
    const row = created && state.rows.get(String(created.id));
    if (row) {
      row.classList.add('flash');
      setTimeout(() => row.classList.remove('flash'), 1600);
    }
    name.focus();
  } catch (err) {
    showError(err);
  } finally {
    button.disabled = false;
  }
}

/** After Save/Add/Delete: reload the table and the open history (now, and again shortly). */
async function afterMutation() {
  const usersDone = loadUsers().catch(showError);
  if (state.subject) {
    const subjectName = userName(state.subject.id);
    if (subjectName) state.subject.name = subjectName;
    refreshHistorySoon();
  }
  await usersDone;
  if (state.subject) {
    const n = userName(state.subject.id);
    if (n && n !== state.subject.name) {
      state.subject.name = n;
      renderSubject();
    }
  }
}

// ---------------------------------------------------------------------------
// History panel

function markSelected() {
  for (const [id, row] of state.rows) {
    const on = state.subject?.id === id;
    row.classList.toggle('selected', on);
    $('[data-testid="history"]', row).setAttribute('aria-pressed', on ? 'true' : 'false');
  }
}

function renderSubject() {
  const { id, name } = state.subject;
  const label = name || `user ${id}`;
  $('[data-testid="history-title"]').textContent = `History of ${label}`;
  document.querySelectorAll('#history-panel .subject-name').forEach((n) => { n.textContent = label; });
}

function openHistory(id) {
  const panel = $('#history-panel');
  const alreadyOpen = state.subject?.id === id && !panel.hidden;
  state.subject = { id, name: userName(id) };
  renderSubject();
  panel.hidden = false;
  markSelected();
  if (!alreadyOpen) {
    $('#events-on').replaceChildren();
    $('#events-by').replaceChildren();
  }
  loadHistory();
  panel.scrollIntoView({ behavior: matchMedia('(prefers-reduced-motion: reduce)').matches ? 'auto' : 'smooth', block: 'start' });
}

function closeHistory() {
  const id = state.subject?.id;
  state.subject = null;
  state.historyGeneration++;
  for (const t of state.followUpTimers) clearTimeout(t);
  state.followUpTimers = [];
  $('#history-panel').hidden = true;
  markSelected();
  const row = id && state.rows.get(id);
  if (row) $('[data-testid="history"]', row).focus();
}

function refreshHistorySoon() {
  for (const t of state.followUpTimers) clearTimeout(t);
  loadHistory();
  state.followUpTimers = HISTORY_FOLLOW_UPS.map((ms) => setTimeout(loadHistory, ms));
}

/** Loads the first page of both lists; older in-flight loads are ignored when they land. */
async function loadHistory() {
  if (!state.subject) return;
  const gen = ++state.historyGeneration;
  const id = encodeURIComponent(state.subject.id);
  const panel = $('#history-panel');
  panel.setAttribute('aria-busy', 'true');
  await Promise.all([
    loadEventList(`/events/on/users/${id}`, $('#events-on'), $('#more-on'), gen, false, 'Nothing has been done to this user yet.'),
    loadEventList(`/events/by/users/${id}`, $('#events-by'), $('#more-by'), gen, false, 'This user has done nothing yet.'),
  ]);
  if (gen === state.historyGeneration) panel.setAttribute('aria-busy', 'false');
}

async function loadEventList(url, list, more, gen, append, emptyText) {
  let doc;
  try {
    doc = await api('GET', url);
  } catch (err) {
    if (gen !== state.historyGeneration) return;
    list.replaceChildren(el('li', { class: 'events-empty events-failed', text: `Could not load events: ${err.message}` }));
    more.hidden = true;
    showError(err);
    return;
  }
  if (gen !== state.historyGeneration) return;
  const events = Array.isArray(doc?.data) ? doc.data : [];
  const items = events.map(renderEvent);
  if (append) {
    list.querySelectorAll('.events-empty').forEach((n) => n.remove());
    list.append(...items);
  } else {
    list.replaceChildren(...items);
  }
  if (!list.children.length) list.append(el('li', { class: 'events-empty', text: emptyText }));
  const next = doc?.links?.next;
  more.hidden = !next;
  more.dataset.next = next ? sameOrigin(next) : '';
}

async function loadMore(list, more) {
  const next = more.dataset.next;
  if (!next) return;
  more.disabled = true;
  more.textContent = 'Loading…';
  try {
    await loadEventList(next, list, more, state.historyGeneration, true, '');
  } finally {
    more.disabled = false;
    more.textContent = 'Load more';
  }
}

const timeFormat = new Intl.DateTimeFormat(undefined, {
  year: 'numeric', month: 'short', day: 'numeric', hour: '2-digit', minute: '2-digit', second: '2-digit',
});
const relFormat = new Intl.RelativeTimeFormat(undefined, { numeric: 'auto' });

function relativeTime(ms) {
  const diff = (ms - Date.now()) / 1000;
  const abs = Math.abs(diff);
  if (abs < 45) return 'just now';
  if (abs < 3600) return relFormat.format(Math.round(diff / 60), 'minute');
  if (abs < 86400) return relFormat.format(Math.round(diff / 3600), 'hour');
  if (abs < 86400 * 30) return relFormat.format(Math.round(diff / 86400), 'day');
  return null;
}

function describeObject(type, id) {
  const base = `${type} ${id}`;
  if (type === 'users') {
    const n = userName(id) || (state.subject && String(id) === state.subject.id ? state.subject.name : null);
    if (n) return { base, name: n };
  }
  return { base, name: null };
}

function objectNode(type, id, cls) {
  const { base, name } = describeObject(type, id);
  return el('span', { class: `obj ${cls}`, title: name ? `${base} (${name})` : base },
    el('span', { class: 'obj-ref', text: base }),
    name ? el('span', { class: 'obj-name', text: ` ${name}` }) : null);
}

function formatValue(v) {
  if (v === null || v === undefined) return 'empty';
  if (typeof v === 'string') return v === '' ? '“”' : v;
  if (typeof v === 'boolean') return v ? 'yes' : 'no';
  return JSON.stringify(v);
}

const ACTION_LABELS = { viewed: 'viewed', created: 'created', changed: 'changed', deleted: 'deleted' };

function renderEvent(resource) {
  const a = resource.attributes || {};
  const action = String(a.action || 'unknown');
  const ts = Number(a.timestamp);
  const date = Number.isFinite(ts) ? new Date(ts) : null;

  const time = date
    ? el('time', { datetime: date.toISOString(), title: date.toISOString(), class: 'ev-time' },
      timeFormat.format(date))
    : el('span', { class: 'ev-time', text: 'unknown time' });
  const rel = date ? relativeTime(ts) : null;

  const head = el('div', { class: 'ev-head' },
    el('span', { class: `badge badge-${ACTION_LABELS[action] ? action : 'other'}`, 'data-testid': 'event-action', text: action }),
    el('span', { class: 'ev-when' }, time, rel ? el('span', { class: 'ev-rel', text: ` · ${rel}` }) : null),
  );
  const who = el('div', { class: 'ev-who', 'data-testid': 'event-who' },
    objectNode(a.actorType, a.actorId, 'actor'),
    el('span', { class: 'arrow', 'aria-hidden': 'true', text: '→' }),
    el('span', { class: 'visually-hidden', text: ' acted on ' }),
    objectNode(a.targetType, a.targetId, 'target'));

  const item = el('li', { class: 'event', 'data-testid': 'event', 'data-action': action, 'data-event-id': String(a.id || resource.id || '') }, head, who);

  const changes = a.changes && typeof a.changes === 'object' ? Object.entries(a.changes) : [];
  if (changes.length) {
    const rows = changes.map(([field, ch]) => {
      const hasPrev = ch && ch.prev !== null && ch.prev !== undefined;
      const hasNext = ch && ch.next !== null && ch.next !== undefined;
      return el('div', { class: 'diff-row', 'data-testid': 'diff', 'data-field': field },
        el('dt', { class: 'diff-field', text: field }),
        el('dd', { class: 'diff-values' },
          hasPrev ? el('del', { class: 'diff-prev', 'data-testid': 'diff-prev', title: 'previous value', text: formatValue(ch.prev) }) : null,
          hasPrev && hasNext ? el('span', { class: 'diff-arrow', 'aria-hidden': 'true', text: '→' }) : null,
          hasNext ? el('ins', { class: 'diff-next', 'data-testid': 'diff-next', title: 'new value', text: formatValue(ch.next) }) : null,
          !hasPrev && !hasNext ? el('span', { class: 'diff-none', text: 'empty' }) : null));
    });
    item.append(el('dl', { class: 'diff' }, ...rows));
  }

  const extra = [];
  if (a.eventName) extra.push(el('span', { class: 'ev-meta', text: a.eventName }));
  if (a.source) extra.push(el('span', { class: 'ev-meta', text: `via ${a.source}` }));
  if (extra.length) item.append(el('div', { class: 'ev-foot' }, ...extra));
  return item;
}

// ---------------------------------------------------------------------------
// Start

function start() {
  $('#add-form').addEventListener('submit', addUser);
  $('#refresh-users').addEventListener('click', () => { clearError(); loadUsers().catch(showError); });
  $('#refresh-history').addEventListener('click', () => { clearError(); loadHistory(); });
  $('#close-history').addEventListener('click', closeHistory);
  $('#show-viewed').addEventListener('change', (ev) => {
    $('#history-panel').classList.toggle('hide-viewed', !ev.currentTarget.checked);
  });
  $('#more-on').addEventListener('click', (ev) => loadMore($('#events-on'), ev.currentTarget));
  $('#more-by').addEventListener('click', (ev) => loadMore($('#events-by'), ev.currentTarget));
  document.addEventListener('keydown', (ev) => {
    if (ev.key === 'Escape' && state.subject && $('#history-panel').contains(document.activeElement)) closeHistory();
  });
  loadUsers().catch((err) => {
    $('#users-body').replaceChildren(el('tr', { class: 'placeholder-row' }, el('td', { colspan: '6', text: 'Users could not be loaded.' })));
    $('[data-testid="whoami"]').textContent = 'Not connected';
    showError(err);
  });
}

start();
