// auditlog website, one page with hash routes:
//   #/users (default)          users table (edit, save, delete, add) and each user's history
//   #/events?…filters…         event explorer: filters, results, load more, export, activity chart
//   #/event/:id                one event
//   #/objects/:type/:id        an object's timeline, "state at this point" and compare
//   #/actors/:type/:id         what an actor did, with its activity chart
//   #/live?…filters…           live feed from the server-sent event stream
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
 * fetch() with the bearer token; on a 401 fetches a new token once and retries.
 * Returns the Response whatever its status; an aborted request rethrows the AbortError.
 */
async function authFetch(url, init = {}) {
  if (!state.token) await fetchToken();
  const send = async () => {
    const headers = { ...(init.headers || {}), Authorization: `Bearer ${state.token}` };
    try {
      return await fetch(url, { cache: 'no-store', ...init, headers });
    } catch (err) {
      if (err && err.name === 'AbortError') throw err;
      throw new ApiError('Cannot reach the server. Is auditlog running?', 0);
    }
  };
  let res = await send();
  if (res.status === 401) {
    await fetchToken();
    res = await send();
  }
  return res;
}

/**
 * Calls the API with the bearer token (see authFetch).
 * Returns the parsed JSON body, or null for an empty body (204).
 */
async function api(method, url, body, { signal } = {}) {
  const headers = { Accept: JSONAPI };
  const init = { method, headers, signal };
  if (body !== undefined) {
    headers['Content-Type'] = JSONAPI;
    init.body = JSON.stringify(body);
  }
  const res = await authFetch(url, init);
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
  const tl = $('#history-timeline');
  tl.href = objectHref('users', id);
  tl.setAttribute('aria-label', `Timeline of ${label}`);
  const act = $('#history-activity');
  act.href = actorHref('users', id);
  act.setAttribute('aria-label', `Activity of ${label}`);
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

/** An actor links to its activity page, a target to its timeline. */
function objectNode(type, id, cls) {
  const { base, name } = describeObject(type, id);
  const known = type !== undefined && type !== null && id !== undefined && id !== null;
  const href = !known ? null : cls === 'actor' ? actorHref(type, id) : objectHref(type, id);
  const label = cls === 'actor' ? `Activity of ${name ? `${base} (${name})` : base}` : `Timeline of ${name ? `${base} (${name})` : base}`;
  return el(href ? 'a' : 'span', { class: `obj ${cls}`, href, title: label },
    el('span', { class: 'obj-ref', text: base }),
    name ? el('span', { class: 'obj-name', text: ` ${name}` }) : null);
}

const seg = (v) => encodeURIComponent(String(v));
const objectHref = (type, id) => `#/objects/${seg(type)}/${seg(id)}`;
const actorHref = (type, id) => `#/actors/${seg(type)}/${seg(id)}`;

function formatValue(v) {
  if (v === null || v === undefined) return 'empty';
  if (typeof v === 'string') return v === '' ? '“”' : v;
  if (typeof v === 'boolean') return v ? 'yes' : 'no';
  return JSON.stringify(v);
}

const ACTION_LABELS = { viewed: 'viewed', created: 'created', changed: 'changed', deleted: 'deleted' };

/** `changes` ({field: {prev, next}}) as a before/after list, or null when there are none. */
function renderDiff(changes) {
  const entries = changes && typeof changes === 'object' ? Object.entries(changes) : [];
  if (!entries.length) return null;
  const rows = entries.map(([field, ch]) => {
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
  return el('dl', { class: 'diff' }, ...rows);
}

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

  const diff = renderDiff(a.changes);
  if (diff) item.append(diff);

  const extra = [];
  if (a.eventName) extra.push(el('span', { class: 'ev-meta', text: a.eventName }));
  if (a.source) extra.push(el('span', { class: 'ev-meta', text: `via ${a.source}` }));
  if (extra.length) item.append(el('div', { class: 'ev-foot' }, ...extra));
  return item;
}

// ---------------------------------------------------------------------------
// Filters: the same filter set in the hash (#/events?actorType=users&action=changed,deleted…),
// in the forms, and in API queries (filter[actorType]=users&filter[action]=changed,deleted…).

const ACTIONS = ['viewed', 'created', 'changed', 'deleted'];
const FILTER_KEYS = ['actorType', 'actorId', 'targetType', 'targetId', 'action', 'eventName', 'since', 'until'];
const PAGE_SIZES = [10, 25, 50, 100];
const DEFAULT_PAGE_SIZE = 50;

/** Filters read from hash parameters; unknown or malformed values are dropped. */
function filtersFromParams(params) {
  const f = {};
  for (const key of ['actorType', 'actorId', 'targetType', 'targetId', 'eventName']) {
    const v = (params.get(key) || '').trim();
    if (v) f[key] = v;
  }
  const actions = (params.get('action') || '').split(',').filter((a) => ACTIONS.includes(a));
  if (actions.length) f.action = actions;
  for (const key of ['since', 'until']) {
    const v = Number(params.get(key));
    if (params.get(key) && Number.isFinite(v)) f[key] = v;
  }
  f.sort = params.get('sort') === 'timestamp' ? 'timestamp' : '-timestamp';
  const size = Number(params.get('size'));
  f.size = Number.isInteger(size) && size > 0 && size <= 500 ? size : DEFAULT_PAGE_SIZE;
  return f;
}

/** Hash parameters for filters (defaults left out so that links stay short). */
function paramsFromFilters(f) {
  const p = new URLSearchParams();
  for (const key of FILTER_KEYS) {
    const v = f[key];
    if (v === undefined || v === null || v === '' || (Array.isArray(v) && !v.length)) continue;
    p.set(key, Array.isArray(v) ? v.join(',') : String(v));
  }
  if (f.sort === 'timestamp') p.set('sort', 'timestamp');
  if (f.size && f.size !== DEFAULT_PAGE_SIZE) p.set('size', String(f.size));
  return p;
}

function eventsHref(f) {
  const q = paramsFromFilters({ sort: '-timestamp', size: DEFAULT_PAGE_SIZE, ...f }).toString();
  return q ? `#/events?${q}` : '#/events';
}

/** The API's query string for filters: `filter[…]` keys, plus any `extra` pairs (sort, page[size], …). */
function apiQuery(f, extra = {}) {
  const parts = [];
  const add = (k, v) => parts.push(`${k}=${encodeURIComponent(v)}`);
  for (const key of FILTER_KEYS) {
    const v = f[key];
    if (v === undefined || v === null || v === '' || (Array.isArray(v) && !v.length)) continue;
    add(`filter[${key}]`, Array.isArray(v) ? v.join(',') : String(v));
  }
  for (const [k, v] of Object.entries(extra)) if (v !== undefined && v !== null) add(k, v);
  return parts.join('&');
}

function pad(n, w = 2) { return String(n).padStart(w, '0'); }

/** ms → the value of a datetime-local input (local time, seconds precision). */
function toLocalInput(ms) {
  const d = new Date(ms);
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

/** A datetime-local value (local time) → ms, or undefined. */
function fromLocalInput(v) {
  if (!v) return undefined;
  const ms = new Date(v).getTime();
  return Number.isFinite(ms) ? ms : undefined;
}

/** Fills a filter form (explorer or live) from filters. */
function fillFilterForm(form, f) {
  for (const key of ['actorType', 'actorId', 'targetType', 'targetId', 'eventName']) {
    if (form.elements[key]) form.elements[key].value = f[key] || '';
  }
  for (const box of form.querySelectorAll('input[name="action"]')) box.checked = (f.action || []).includes(box.value);
  if (form.elements.since) form.elements.since.value = f.since !== undefined ? toLocalInput(f.since) : '';
  if (form.elements.until) form.elements.until.value = f.until !== undefined ? toLocalInput(f.until) : '';
  if (form.elements.sort) form.elements.sort.value = f.sort || '-timestamp';
  if (form.elements.size) {
    const sel = form.elements.size;
    if (![...sel.options].some((o) => Number(o.value) === f.size)) sel.append(el('option', { text: String(f.size) }));
    sel.value = String(f.size || DEFAULT_PAGE_SIZE);
  }
}

/** Reads a filter form; an id without a type means a user. Returns null (after saying why) when invalid. */
function readFilterForm(form) {
  const f = {};
  for (const key of ['actorType', 'actorId', 'targetType', 'targetId', 'eventName']) {
    const input = form.elements[key];
    if (!input) continue;
    input.value = input.value.trim();
    if (input.value) f[key] = input.value;
  }
  for (const side of ['actor', 'target']) {
    if (f[`${side}Id`] && !f[`${side}Type`]) {
      f[`${side}Type`] = 'users';
      form.elements[`${side}Type`].value = 'users';
    }
  }
  if (f.eventName) f.eventName = f.eventName.split(',').map((s) => s.trim()).filter(Boolean).join(',');
  const actions = [...form.querySelectorAll('input[name="action"]:checked')].map((b) => b.value);
  if (actions.length) f.action = actions;
  if (form.elements.since) {
    const since = fromLocalInput(form.elements.since.value);
    const until = fromLocalInput(form.elements.until.value);
    if (since !== undefined) f.since = since;
    if (until !== undefined) f.until = until;
    if (since !== undefined && until !== undefined && since > until) {
      showError(new Error('“Since” is after “Until”.'));
      form.elements.since.focus();
      return null;
    }
  }
  f.sort = form.elements.sort?.value === 'timestamp' ? 'timestamp' : '-timestamp';
  f.size = Number(form.elements.size?.value) || DEFAULT_PAGE_SIZE;
  return f;
}

function describeFilters(f) {
  const bits = [];
  if (f.actorType) bits.push(`by ${f.actorType}${f.actorId ? ` ${f.actorId}` : ''}`);
  if (f.targetType) bits.push(`on ${f.targetType}${f.targetId ? ` ${f.targetId}` : ''}`);
  if (f.action) bits.push(f.action.join('/'));
  if (f.eventName) bits.push(`named ${f.eventName}`);
  if (f.since !== undefined) bits.push(`since ${timeFormat.format(new Date(f.since))}`);
  if (f.until !== undefined) bits.push(`until ${timeFormat.format(new Date(f.until))}`);
  return bits.join(', ');
}

// ---------------------------------------------------------------------------
// Result rows (explorer and actor page)

function timeNode(ms, withRel = true) {
  if (!Number.isFinite(ms)) return el('span', { class: 'ev-time', text: 'unknown time' });
  const d = new Date(ms);
  const rel = withRel ? relativeTime(ms) : null;
  return el('span', { class: 'time-cell' },
    el('time', { datetime: d.toISOString(), title: d.toISOString() }, timeFormat.format(d)),
    rel ? el('span', { class: 'ev-rel', text: rel }) : null);
}

function changeSummary(changes) {
  const entries = changes && typeof changes === 'object' ? Object.entries(changes) : [];
  if (!entries.length) return el('span', { class: 'muted', text: '—' });
  const shown = entries.slice(0, 3).map(([field, ch]) => {
    const hasPrev = ch && ch.prev !== null && ch.prev !== undefined;
    const hasNext = ch && ch.next !== null && ch.next !== undefined;
    return el('li', { class: 'sum-row', 'data-testid': 'change', 'data-field': field },
      el('span', { class: 'diff-field', text: field }),
      hasPrev ? el('del', { class: 'diff-prev', title: 'previous value', text: formatValue(ch.prev) }) : null,
      hasPrev && hasNext ? el('span', { class: 'diff-arrow', 'aria-hidden': 'true', text: '→' }) : null,
      hasNext ? el('ins', { class: 'diff-next', title: 'new value', text: formatValue(ch.next) }) : null);
  });
  if (entries.length > 3) shown.push(el('li', { class: 'sum-more', text: `+${entries.length - 3} more` }));
  return el('ul', { class: 'change-summary' }, ...shown);
}

function renderResultRow(resource) {
  const a = resource.attributes || {};
  const action = String(a.action || 'unknown');
  const id = String(a.id ?? resource.id ?? '');
  const ts = Number(a.timestamp);
  const time = timeNode(ts);
  const timeLink = id ? el('a', { class: 'time-link', href: `#/event/${seg(id)}`, title: 'Open this event' }, time) : time;
  return el('tr', {
    'data-testid': 'result-row', 'data-action': action, 'data-event-id': id,
    'data-actor': `${a.actorType}/${a.actorId}`, 'data-target': `${a.targetType}/${a.targetId}`,
  },
  el('td', { class: 'col-time', 'data-label': 'Time' }, timeLink),
  el('td', { class: 'col-action', 'data-label': 'Action' },
    el('span', { class: `badge badge-${ACTION_LABELS[action] ? action : 'other'}`, 'data-testid': 'event-action', text: action }),
    a.eventName ? el('span', { class: 'ev-meta ev-name', text: a.eventName }) : null),
  el('td', { class: 'col-who', 'data-label': 'Actor → target' },
    el('span', { class: 'ev-who' },
      objectNode(a.actorType, a.actorId, 'actor'),
      el('span', { class: 'arrow', 'aria-hidden': 'true', text: '→' }),
      el('span', { class: 'visually-hidden', text: ` ${action} ` }),
      objectNode(a.targetType, a.targetId, 'target'))),
  el('td', { class: 'col-changes', 'data-label': 'Changes' }, changeSummary(a.changes)));
}

/**
 * A paged list of events in a table body: first page (with count) and "Load more" via links.next.
 * `gen()` tells whether the load is still wanted (the page may have moved on meanwhile).
 */
function pagedTable({ body, more, count, emptyText, countLabel }) {
  const pager = { next: null, token: 0, total: null, shown: 0 };
  const setCount = () => {
    if (!count) return;
    const t = pager.total;
    count.dataset.total = t === null ? '' : String(t);
    count.textContent = t === null ? (pager.shown ? `(${pager.shown}+)` : '') : countLabel(t, pager.shown);
  };
  const render = (doc, append) => {
    const list = Array.isArray(doc?.data) ? doc.data : [];
    const rows = list.map(renderResultRow);
    if (append) body.append(...rows); else body.replaceChildren(...rows);
    pager.shown = body.querySelectorAll('[data-testid="result-row"]').length;
    if (!pager.shown) body.replaceChildren(el('tr', { class: 'placeholder-row' }, el('td', { colspan: '4', text: emptyText })));
    const next = doc?.links?.next;
    pager.next = next ? sameOrigin(next) : null;
    more.hidden = !pager.next;
    if (typeof doc?.meta?.total === 'number') pager.total = doc.meta.total;
    setCount();
  };
  pager.load = async (url) => {
    const token = ++pager.token;
    pager.total = null;
    body.closest('table').setAttribute('aria-busy', 'true');
    if (!body.children.length) body.append(el('tr', { class: 'placeholder-row' }, el('td', { colspan: '4', text: 'Loading events…' })));
    try {
      const doc = await api('GET', url);
      if (token !== pager.token) return;
      render(doc, false);
    } catch (err) {
      if (token !== pager.token) return;
      body.replaceChildren(el('tr', { class: 'placeholder-row events-failed' }, el('td', { colspan: '4', text: `Could not load events: ${err.message}` })));
      more.hidden = true;
      if (count) count.textContent = '';
      showError(err);
    } finally {
      if (token === pager.token) body.closest('table').setAttribute('aria-busy', 'false');
    }
  };
  more.addEventListener('click', async () => {
    if (!pager.next) return;
    const token = pager.token;
    more.disabled = true;
    more.textContent = 'Loading…';
    try {
      const doc = await api('GET', pager.next);
      if (token === pager.token) render(doc, true);
    } catch (err) {
      showError(err);
    } finally {
      more.disabled = false;
      more.textContent = 'Load more';
    }
  });
  return pager;
}

const countEvents = (n) => `${n.toLocaleString()} event${n === 1 ? '' : 's'}`;

// ---------------------------------------------------------------------------
// Activity chart: SVG bars per time bucket, stacked by action, drawn here.

const MINUTE = 60_000;
const HOUR = 60 * MINUTE;
const DAY = 24 * HOUR;
const NICE_BUCKETS = [MINUTE, 2 * MINUTE, 5 * MINUTE, 10 * MINUTE, 15 * MINUTE, 30 * MINUTE, HOUR, 2 * HOUR, 3 * HOUR,
  6 * HOUR, 12 * HOUR, DAY, 2 * DAY, 7 * DAY, 14 * DAY, 30 * DAY, 91 * DAY, 365 * DAY];
const SVG_NS = 'http://www.w3.org/2000/svg';
let svgIds = 0;

function svg(tag, attrs = {}, ...children) {
  const node = document.createElementNS(SVG_NS, tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'text') node.textContent = v; else node.setAttribute(k, String(v));
  }
  node.append(...children.filter(Boolean));
  return node;
}

function bucketLabel(ms) {
  if (ms % DAY === 0) return `${ms / DAY} day${ms === DAY ? '' : 's'}`;
  if (ms % HOUR === 0) return `${ms / HOUR} hour${ms === HOUR ? '' : 's'}`;
  return `${ms / MINUTE} minute${ms === MINUTE ? '' : 's'}`;
}

const hmFormat = new Intl.DateTimeFormat(undefined, { hour: '2-digit', minute: '2-digit' });
const dayFormat = new Intl.DateTimeFormat(undefined, { month: 'short', day: 'numeric' });
const dayHmFormat = new Intl.DateTimeFormat(undefined, { month: 'short', day: 'numeric', hour: '2-digit', minute: '2-digit' });

/**
 * A chart in `box` (a <figure>) of the activity matching `filters`. Without a `since`, the range
 * starts at the oldest matching event; the bucket is a round size giving at most ~60 bars.
 * `onPick(start, end)`, if given, is called when a bar is chosen (to zoom in).
 */
function activityChart(box, { onPick } = {}) {
  const chart = { data: null, token: 0, width: 0 };
  const observer = new ResizeObserver(() => {
    const w = box.clientWidth;
    if (chart.data && Math.abs(w - chart.width) > 24) draw();
  });
  observer.observe(box);

  function draw() {
    const { buckets, bucket, start, end, label } = chart.data;
    chart.width = box.clientWidth;
    const W = Math.max(280, chart.width);
    const H = W < 500 ? 170 : 200;
    const m = { top: 10, right: 10, bottom: 26, left: 38 };
    const n = Math.max(1, Math.round((end - start) / bucket));
    const byStart = new Map(buckets.map((b) => [b.start, b]));
    const max = Math.max(1, ...buckets.map((b) => b.count));
    const step = niceStep(max / 4);
    const top = Math.ceil(max / step) * step;
    const iw = W - m.left - m.right;
    const ih = H - m.top - m.bottom;
    const slot = iw / n;
    const barW = Math.max(1, Math.min(40, slot * 0.78));
    const y = (v) => m.top + ih - (v / top) * ih;

    const total = buckets.reduce((s, b) => s + b.count, 0);
    const busiest = buckets.reduce((best, b) => (!best || b.count > best.count ? b : best), null);
    const titleId = `chart-title-${++svgIds}`;
    const descId = `chart-desc-${svgIds}`;
    const fmt = end - start > DAY ? dayHmFormat : hmFormat;
    const summary = total
      ? `${countEvents(total)} from ${dayHmFormat.format(start)} to ${dayHmFormat.format(end)} in ${bucketLabel(bucket)} buckets; `
        + `busiest at ${dayHmFormat.format(busiest.start)} with ${busiest.count}. `
        + ACTIONS.map((a) => [a, buckets.reduce((s, b) => s + (b.byAction?.[a] || 0), 0)]).filter(([, c]) => c).map(([a, c]) => `${c} ${a}`).join(', ')
      : `No events from ${dayHmFormat.format(start)} to ${dayHmFormat.format(end)}.`;

    const root = svg('svg', {
      class: 'chart', width: W, height: H, viewBox: `0 0 ${W} ${H}`, role: 'img',
      'aria-labelledby': `${titleId} ${descId}`, 'data-testid': 'activity-chart', 'data-total': total,
    },
    svg('title', { id: titleId, text: `Activity over time${label ? ` ${label}` : ''}` }),
    svg('desc', { id: descId, text: summary }));

    const grid = svg('g', { class: 'chart-grid', 'aria-hidden': 'true' });
    for (let v = 0; v <= top; v += step) {
      grid.append(svg('line', { x1: m.left, x2: W - m.right, y1: y(v), y2: y(v) }),
        svg('text', { x: m.left - 6, y: y(v) + 4, 'text-anchor': 'end', text: v.toLocaleString() }));
    }
    root.append(grid);

    // x labels: at most one per ~90 px, on bucket boundaries.
    const every = Math.max(1, Math.ceil(90 / slot));
    const axis = svg('g', { class: 'chart-axis', 'aria-hidden': 'true' },
      svg('line', { x1: m.left, x2: W - m.right, y1: m.top + ih + 0.5, y2: m.top + ih + 0.5 }));
    for (let i = 0; i < n; i += every) {
      const t = start + i * bucket;
      const x = m.left + i * slot;
      if (x > W - m.right - 30) break;
      axis.append(svg('line', { x1: x, x2: x, y1: m.top + ih, y2: m.top + ih + 4 }),
        svg('text', { x, y: H - 8, 'text-anchor': i === 0 ? 'start' : 'middle', text: bucket >= DAY ? dayFormat.format(t) : fmt.format(t) }));
    }
    root.append(axis);

    const bars = svg('g', { class: 'chart-bars' });
    for (let i = 0; i < n; i++) {
      const t = start + i * bucket;
      const b = byStart.get(t);
      if (!b || !b.count) continue;
      const x = m.left + i * slot + (slot - barW) / 2;
      const parts = ACTIONS.map((a) => [a, b.byAction?.[a] || 0]);
      const known = parts.reduce((s, [, c]) => s + c, 0);
      if (b.count > known) parts.push(['other', b.count - known]);
      const detail = parts.filter(([, c]) => c).map(([a, c]) => `${c} ${a}`).join(', ');
      const g = svg('g', { class: 'chart-bucket', 'data-start': t },
        svg('title', { text: `${fmt.format(t)} – ${fmt.format(t + bucket)}: ${countEvents(b.count)} (${detail})` }));
      let acc = 0;
      for (const [a, c] of parts) {
        if (!c) continue;
        const y0 = y(acc);
        const y1 = y(acc + c);
        g.append(svg('rect', {
          class: `bar bar-${a}`, 'data-testid': 'chart-bar', 'data-action': a, 'data-count': c,
          x: x.toFixed(1), y: y1.toFixed(1), width: barW.toFixed(1), height: Math.max(1, y0 - y1).toFixed(1),
        }));
        acc += c;
      }
      // A transparent full-height hit area makes thin bars easy to point at.
      if (onPick) g.prepend(svg('rect', { class: 'bar-hit', x: m.left + i * slot, y: m.top, width: slot, height: ih }));
      bars.append(g);
    }
    root.append(bars);
    if (onPick) {
      bars.addEventListener('click', (ev) => {
        const g = ev.target.closest('.chart-bucket');
        if (g) onPick(Number(g.dataset.start), Number(g.dataset.start) + bucket - 1);
      });
    }

    const legend = el('ul', { class: 'legend', 'aria-hidden': 'true' },
      ...ACTIONS.map((a) => el('li', {}, el('span', { class: `swatch swatch-${a}` }), a)));
    const caption = el('figcaption', { class: 'chart-caption' },
      el('span', { class: 'chart-title', text: 'Activity' }),
      el('span', { class: 'chart-sub', text: `${countEvents(total)} · ${bucketLabel(bucket)} per bar${onPick ? ' · click a bar to zoom in' : ''}` }),
      legend);
    box.replaceChildren(caption, root);
    box.classList.remove('is-loading');
  }

  chart.load = async (filters, label = '') => {
    const token = ++chart.token;
    box.classList.add('is-loading');
    if (!box.children.length) box.append(el('p', { class: 'chart-empty', text: 'Loading activity…' }));
    try {
      const end = filters.until ?? Date.now();
      let start = filters.since;
      if (start === undefined) {
        const doc = await api('GET', `/api/data-events?${apiQuery(filters, { sort: 'timestamp', 'page[size]': 1 })}`);
        const first = Number(doc?.data?.[0]?.attributes?.timestamp);
        start = Number.isFinite(first) ? first : end - HOUR;
      }
      const maxBars = Math.max(20, Math.min(60, Math.floor(box.clientWidth / 14)));
      const span = Math.max(1, end - start);
      let bucket = NICE_BUCKETS.find((b) => span / b <= maxBars) || Math.ceil(span / maxBars / DAY) * DAY;
      let alignedStart = Math.floor(start / bucket) * bucket;
      const alignedEnd = Math.ceil((end + 1) / bucket) * bucket;
      // A short history still gets a readable axis: show at least 24 bars, ending now.
      if (filters.since === undefined && (alignedEnd - alignedStart) / bucket < 24) alignedStart = alignedEnd - 24 * bucket;
      if ((alignedEnd - alignedStart) / bucket > 1000) bucket = Math.ceil((alignedEnd - alignedStart) / 1000 / MINUTE) * MINUTE;
      const q = apiQuery({ ...filters, since: alignedStart, until: alignedEnd - 1 }, { bucket });
      const doc = await api('GET', `/api/data-events/activity?${q}`);
      if (token !== chart.token) return;
      const got = Number(doc?.meta?.bucket) || bucket;
      const buckets = (Array.isArray(doc?.data) ? doc.data : []).map((r) => ({
        start: Number(r.attributes?.start ?? r.id), count: Number(r.attributes?.count) || 0, byAction: r.attributes?.byAction || {},
      }));
      chart.data = { buckets, bucket: got, start: alignedStart, end: alignedEnd, label };
      draw();
    } catch (err) {
      if (token !== chart.token) return;
      box.classList.remove('is-loading');
      box.replaceChildren(el('p', { class: 'chart-empty events-failed', text: `The activity chart could not be loaded: ${err.message}` }));
    }
  };
  return chart;
}

/** A round step (1, 2, 5 × 10^k) near `raw`, at least 1. */
function niceStep(raw) {
  if (raw <= 1) return 1;
  const p = 10 ** Math.floor(Math.log10(raw));
  const f = raw / p;
  return (f <= 1 ? 1 : f <= 2 ? 2 : f <= 5 ? 5 : 10) * p;
}

// ---------------------------------------------------------------------------
// Event explorer

const explorer = { filters: null, pager: null, chart: null };

function openExplorer(params) {
  const f = filtersFromParams(params);
  explorer.filters = f;
  fillFilterForm($('#filter-form'), f);
  const label = describeFilters(f);
  $('#filter-summary').textContent = label ? `· ${label}` : '· all events';
  explorer.pager.load(`/api/data-events?${apiQuery(f, { sort: f.sort, 'page[size]': f.size, count: 'true' })}`);
  explorer.chart.load(f, label ? `(${label})` : '');
}

async function exportEvents(format, button) {
  const f = explorer.filters || filtersFromParams(new URLSearchParams());
  const original = button.textContent;
  button.disabled = true;
  button.textContent = 'Exporting…';
  clearError();
  try {
    const accept = format === 'csv' ? 'text/csv' : 'application/x-ndjson';
    const res = await authFetch(`/api/data-events?${apiQuery(f, { sort: f.sort, format })}`, { headers: { Accept: accept } });
    if (!res.ok) throw new ApiError(await errorMessage(res, 'The export failed'), res.status);
    const blob = await res.blob();
    const disposition = res.headers.get('content-disposition') || '';
    const named = /filename\*?=(?:UTF-8'')?"?([^";]+)"?/i.exec(disposition);
    const stamp = toLocalInput(Date.now()).replace(/[:T]/g, '-');
    const name = named ? decodeURIComponent(named[1]) : `auditlog-events-${stamp}.${format}`;
    const href = URL.createObjectURL(blob);
    const a = el('a', { href, download: name, hidden: true });
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(href), 30_000);
    showStatus(`Exported ${name} (${formatBytes(blob.size)}).`);
  } catch (err) {
    showError(err);
  } finally {
    button.disabled = false;
    button.textContent = original;
  }
}

function formatBytes(n) {
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KB`;
  return `${(n / 1024 / 1024).toFixed(1)} MB`;
}

// ---------------------------------------------------------------------------
// Object timeline

const timeline = { type: null, id: null, token: 0, next: null, events: [] };

function objectLabel(type, id) {
  const { base, name } = describeObject(type, id);
  return name ? `${base} · ${name}` : base;
}

async function openObject(type, id, params) {
  const token = ++timeline.token;
  const order = params.get('order') === '-timestamp' ? '-timestamp' : 'timestamp';
  Object.assign(timeline, { type, id, order, next: null, events: [] });
  $('#object-order').value = order;
  $('#object-heading').textContent = objectLabel(type, id);
  $('#object-explore').href = eventsHref({ targetType: type, targetId: id });
  $('#compare-result').hidden = true;
  const list = $('#timeline');
  list.replaceChildren(el('li', { class: 'events-empty', text: 'Loading the timeline…' }));
  list.setAttribute('aria-busy', 'true');
  const sub = $('#object-sub');
  sub.textContent = '';
  const base = `/api/${seg(type)}/${seg(id)}`;
  api('GET', `${base}/state?at=${Date.now()}`).then((doc) => {
    if (token !== timeline.token) return;
    const s = doc?.data?.attributes || {};
    const fields = Object.keys(s.fields || {}).length;
    sub.replaceChildren(
      el('span', { class: `exists exists-${s.exists ? 'yes' : 'no'}`, text: s.exists ? 'Exists now' : 'Does not exist now' }),
      ` · ${fields} field${fields === 1 ? '' : 's'}`,
      s.lastChangedAt ? ` · last changed ${relativeTime(s.lastChangedAt) || timeFormat.format(new Date(s.lastChangedAt))}` : '',
    );
  }).catch(() => { /* the timeline below reports errors */ });
  await loadTimelinePage(`/api/data-events?${apiQuery({ targetType: type, targetId: id }, { sort: order, 'page[size]': 100, count: 'true' })}`, token, false);
}

async function loadTimelinePage(url, token, append) {
  const list = $('#timeline');
  const more = $('#timeline-more');
  let doc;
  try {
    doc = await api('GET', url);
  } catch (err) {
    if (token !== timeline.token) return;
    list.replaceChildren(el('li', { class: 'events-empty events-failed', text: `Could not load the timeline: ${err.message}` }));
    list.setAttribute('aria-busy', 'false');
    showError(err);
    return;
  }
  if (token !== timeline.token) return;
  const events = Array.isArray(doc?.data) ? doc.data : [];
  timeline.events = append ? timeline.events.concat(events) : events;
  const items = events.map(renderTimelineEvent);
  if (append) list.append(...items); else list.replaceChildren(...items);
  if (!timeline.events.length) list.append(el('li', { class: 'events-empty', text: 'Nothing has been recorded about this object.' }));
  list.setAttribute('aria-busy', 'false');
  if (typeof doc?.meta?.total === 'number') {
    const sub = $('#object-sub');
    sub.dataset.total = String(doc.meta.total);
    $('#object-heading').dataset.total = String(doc.meta.total);
    sub.append(el('span', { class: 'muted', text: ` · ${countEvents(doc.meta.total)} recorded` }));
  }
  timeline.next = doc?.links?.next ? sameOrigin(doc.links.next) : null;
  more.hidden = !timeline.next;
  fillCompareChoices();
}

function renderTimelineEvent(resource) {
  const item = renderEvent(resource);
  item.dataset.testid = 'timeline-event';
  item.classList.add('tl-event');
  const a = resource.attributes || {};
  const ts = Number(a.timestamp);
  const id = String(a.id ?? resource.id ?? '');
  const panelId = `state-${id || Math.random().toString(36).slice(2)}`;
  const when = Number.isFinite(ts) ? timeFormat.format(new Date(ts)) : 'this point';
  const button = el('button', {
    type: 'button', class: 'btn btn-ghost btn-sm', 'data-testid': 'state-button',
    'aria-expanded': 'false', 'aria-controls': panelId, text: 'State at this point',
    'aria-label': `State of the object at ${when}`,
  });
  const panel = el('div', { class: 'state-panel', id: panelId, 'data-testid': 'state-panel', hidden: true });
  button.addEventListener('click', () => toggleState(button, panel, ts, a.changes));
  const link = id ? el('a', { class: 'ev-link', href: `#/event/${seg(id)}`, text: 'Event details' }) : null;
  if (a.action === 'viewed') {
    // A view changes nothing: no state button, just the link, on the same line as the rest.
    if (link) item.querySelector('.ev-who')?.append(link);
    return item;
  }
  item.append(el('div', { class: 'tl-actions' }, button, link), panel);
  return item;
}

async function toggleState(button, panel, at, changes) {
  const open = button.getAttribute('aria-expanded') === 'true';
  if (open) {
    button.setAttribute('aria-expanded', 'false');
    panel.hidden = true;
    return;
  }
  button.setAttribute('aria-expanded', 'true');
  panel.hidden = false;
  panel.replaceChildren(el('p', { class: 'muted', text: 'Rebuilding the state…' }));
  try {
    const doc = await api('GET', `/api/${seg(timeline.type)}/${seg(timeline.id)}/state?at=${at}`);
    const s = doc?.data?.attributes || {};
    const fields = Object.entries(s.fields || {});
    const here = new Set(Object.keys(changes || {}));
    const d = new Date(Number(s.at ?? at));
    panel.replaceChildren(...[
      el('p', { class: 'state-head' },
        el('strong', { text: 'State at ' }),
        el('time', { datetime: d.toISOString() }, timeFormat.format(d)),
        el('span', { class: `exists exists-${s.exists ? 'yes' : 'no'}`, 'data-testid': 'state-exists', text: s.exists ? 'exists' : 'does not exist' })),
      fields.length
        ? el('dl', { class: 'state-fields' }, ...fields.map(([k, v]) => el('div', {
          class: `state-field${here.has(k) ? ' changed-here' : ''}`, 'data-testid': 'state-field', 'data-field': k,
        }, el('dt', { text: k }), el('dd', { text: formatValue(v) }),
        here.has(k) ? el('span', { class: 'visually-hidden', text: ' (changed by this event)' }) : null)))
        : el('p', { class: 'muted', text: 'No fields.' }),
      el('p', { class: 'state-foot', text: `Rebuilt from ${Number(s.events) || 0} event${Number(s.events) === 1 ? '' : 's'}`
        + (here.size ? '; highlighted fields changed at this point.' : '.') }),
    ].filter(Boolean));
  } catch (err) {
    panel.replaceChildren(el('p', { class: 'events-failed', text: `Could not rebuild the state: ${err.message}` }));
  }
}

function fillCompareChoices() {
  const points = timeline.events
    .map((r) => r.attributes || {})
    .filter((a) => a.action !== 'viewed' && Number.isFinite(Number(a.timestamp)))
    .sort((x, y) => Number(x.timestamp) - Number(y.timestamp));
  const opts = (sel) => {
    const old = sel.value;
    sel.replaceChildren(...points.map((a) => el('option', {
      value: String(a.timestamp), text: `${timeFormat.format(new Date(Number(a.timestamp)))} · ${a.action}`,
    })), el('option', { value: 'now', text: 'Now' }));
    if ([...sel.options].some((o) => o.value === old)) sel.value = old;
    return sel;
  };
  const from = opts($('#compare-from'));
  const to = opts($('#compare-to'));
  if (!from.dataset.touched && points.length) from.value = String(points[0].timestamp);
  if (!to.dataset.touched) to.value = 'now';
  $('#compare-form').hidden = points.length === 0;
}

async function compare(ev) {
  ev.preventDefault();
  const out = $('#compare-result');
  const pick = (v) => (v === 'now' ? Date.now() : Number(v));
  let from = pick($('#compare-from').value);
  let to = pick($('#compare-to').value);
  if (from > to) [from, to] = [to, from];
  out.hidden = false;
  out.replaceChildren(el('p', { class: 'muted', text: 'Comparing…' }));
  try {
    const doc = await api('GET', `/api/${seg(timeline.type)}/${seg(timeline.id)}/diff?from=${from}&to=${to}`);
    const a = doc?.data?.attributes || {};
    const ex = a.existedAt || {};
    const diff = renderDiff(a.changes);
    const existence = ex.from === ex.to ? null
      : el('p', { class: 'compare-exists', text: ex.to ? 'The object was created in between.' : 'The object was deleted in between.' });
    out.replaceChildren(...[
      el('p', { class: 'compare-head' }, el('strong', { text: 'From ' }), timeFormat.format(new Date(from)),
        el('strong', { text: ' to ' }), timeFormat.format(new Date(to))),
      existence,
      diff || el('p', { class: 'muted', 'data-testid': 'compare-same', text: 'No field differs between these two points.' }),
    ].filter(Boolean));
  } catch (err) {
    out.replaceChildren(el('p', { class: 'events-failed', text: `Could not compare: ${err.message}` }));
  }
}

// ---------------------------------------------------------------------------
// Actor activity

const actorPage = { pager: null, chart: null };

function openActor(type, id) {
  const label = objectLabel(type, id);
  $('#actor-heading').textContent = `Activity of ${label}`;
  $('#actor-explore').href = eventsHref({ actorType: type, actorId: id });
  const own = $('#actor-object');
  own.href = objectHref(type, id);
  own.setAttribute('aria-label', `Timeline of ${label}`);
  const f = { actorType: type, actorId: id };
  actorPage.pager.load(`/api/data-events?${apiQuery(f, { sort: '-timestamp', 'page[size]': 50, count: 'true' })}`);
  actorPage.chart.load(f, `of ${label}`);
}

// ---------------------------------------------------------------------------
// One event

async function openEvent(id) {
  const box = $('#event-detail');
  $('#event-heading').textContent = `Event ${id}`;
  box.replaceChildren(el('p', { class: 'muted', text: 'Loading…' }));
  try {
    const doc = await api('GET', `/api/data-events/${seg(id)}`);
    const r = doc?.data;
    if (!r) throw new Error('The server answered without the event.');
    const a = r.attributes || {};
    const ts = Number(a.timestamp);
    const card = renderEvent(r);
    card.dataset.testid = 'event-card';
    const meta = [
      ['ID', a.id ?? r.id], ['Action', a.action], ['Time', Number.isFinite(ts) ? `${new Date(ts).toISOString()} (${ts})` : null],
      ['Actor', `${a.actorType} ${a.actorId}`], ['Target', `${a.targetType} ${a.targetId}`],
      ['Event name', a.eventName], ['Source', a.source], ['Request ID', a.requestId],
    ].filter(([, v]) => v !== undefined && v !== null && v !== '');
    box.replaceChildren(...[
      el('ol', { class: 'events' }, card),
      el('dl', { class: 'meta-list' }, ...meta.map(([k, v]) => el('div', {}, el('dt', { text: k }), el('dd', { text: String(v) })))),
      el('p', { class: 'link-row' },
        el('a', { class: 'btn btn-ghost', href: objectHref(a.targetType, a.targetId), text: `Timeline of ${a.targetType} ${a.targetId}` }),
        el('a', { class: 'btn btn-ghost', href: actorHref(a.actorType, a.actorId), text: `Activity of ${a.actorType} ${a.actorId}` }),
        Number.isFinite(ts) ? el('a', { class: 'btn btn-ghost', href: eventsHref({ actorType: a.actorType, actorId: String(a.actorId), since: ts - 60_000, until: ts + 60_000 }), text: 'Same actor, ±1 minute' }) : null),
    ].filter(Boolean));
  } catch (err) {
    box.replaceChildren(el('p', { class: 'events-failed', text: `Could not load event ${id}: ${err.message}` }));
  }
}

// ---------------------------------------------------------------------------
// Live: server-sent events read from fetch() (EventSource cannot send the bearer token).

const LIVE_MAX_ITEMS = 200;
const live = { controller: null, lastId: null, paused: false, pending: [], count: 0, filters: {} };

function setLiveStatus(stateName, text) {
  const box = $('[data-testid="live-status"]');
  box.dataset.state = stateName;
  box.textContent = text;
  document.querySelector('.nav a[data-view="live"]')?.classList.toggle('is-live', stateName === 'connected');
}

const sleep = (ms, signal) => new Promise((resolve) => {
  const t = setTimeout(resolve, ms);
  signal?.addEventListener('abort', () => { clearTimeout(t); resolve(); }, { once: true });
});

function startLive(filters) {
  stopLive();
  live.filters = filters;
  live.lastId = null;
  const ctrl = new AbortController();
  live.controller = ctrl;
  liveLoop(ctrl.signal);
}

function stopLive() {
  if (live.controller) live.controller.abort();
  live.controller = null;
  setLiveStatus('idle', 'Not connected');
}

async function liveLoop(signal) {
  let delay = 1000;
  while (!signal.aborted) {
    setLiveStatus(live.lastId ? 'reconnecting' : 'connecting', live.lastId ? 'Reconnecting…' : 'Connecting…');
    let problem = null;
    try {
      const headers = { Accept: 'text/event-stream' };
      if (live.lastId) headers['Last-Event-ID'] = live.lastId;
      const res = await authFetch(`/api/data-events/stream?${apiQuery(live.filters)}`, { headers, signal });
      if (!res.ok) throw new ApiError(await errorMessage(res, 'The live stream was refused'), res.status);
      if (!res.body) throw new Error('This browser cannot read streamed responses.');
      setLiveStatus('connected', 'Connected');
      delay = 1000;
      await readSse(res.body, signal, (msg) => {
        if (msg.retry) delay = msg.retry;
        if (msg.event !== 'data-event' && msg.event !== 'message') return;
        try {
          const doc = JSON.parse(msg.data);
          onLiveEvent(doc?.data && doc.data.attributes ? doc.data : doc);
        } catch { /* a malformed message is skipped */ }
      });
      problem = 'The stream ended';
    } catch (err) {
      if (signal.aborted) return;
      problem = err.message || String(err);
    }
    if (signal.aborted) return;
    setLiveStatus('reconnecting', `Reconnecting in ${Math.round(delay / 1000)} s…`);
    $('[data-testid="live-status"]').title = problem;
    await sleep(delay, signal);
    delay = Math.min(delay * 2, 15_000);
  }
}

/** Reads an SSE body, calling `onMessage({event, data, id, retry})` for each complete message. */
async function readSse(body, signal, onMessage) {
  const reader = body.getReader();
  const decoder = new TextDecoder();
  const abort = () => reader.cancel().catch(() => {});
  signal.addEventListener('abort', abort, { once: true });
  let buf = '';
  let msg = { event: '', data: [], retry: 0 };
  const line = (text) => {
    if (text === '') {
      if (msg.data.length) {
        onMessage({ event: msg.event || 'message', data: msg.data.join('\n'), id: live.lastId, retry: msg.retry });
      }
      msg = { event: '', data: [], retry: 0 };
      return;
    }
    if (text.startsWith(':')) return; // comment / keep-alive
    const colon = text.indexOf(':');
    const field = colon < 0 ? text : text.slice(0, colon);
    let value = colon < 0 ? '' : text.slice(colon + 1);
    if (value.startsWith(' ')) value = value.slice(1);
    if (field === 'event') msg.event = value;
    else if (field === 'data') msg.data.push(value);
    else if (field === 'id' && !value.includes('\0')) live.lastId = value;
    else if (field === 'retry' && /^\d+$/.test(value)) msg.retry = Number(value);
  };
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buf += decoder.decode(value, { stream: true });
      for (;;) {
        const m = /\r\n|\r|\n/.exec(buf);
        if (!m) break;
        // A lone \r at the end may be the first half of \r\n: wait for the next chunk.
        if (m[0] === '\r' && m.index === buf.length - 1) break;
        line(buf.slice(0, m.index));
        buf = buf.slice(m.index + m[0].length);
      }
    }
  } finally {
    signal.removeEventListener('abort', abort);
  }
}

function onLiveEvent(resource) {
  if (!resource || !resource.attributes) return;
  live.count++;
  $('#live-count').textContent = `(${live.count.toLocaleString()} received)`;
  if (live.paused) {
    live.pending.push(resource);
    $('#live-pause').textContent = `Resume (${live.pending.length} new)`;
    return;
  }
  showLiveEvents([resource]);
}

function showLiveEvents(resources) {
  const feed = $('#live-feed');
  for (const r of resources) {
    const item = renderEvent(r);
    item.dataset.testid = 'live-event';
    item.classList.add('live-new');
    const id = String(r.attributes.id ?? r.id ?? '');
    if (id) item.append(el('div', { class: 'tl-actions' }, el('a', { class: 'ev-link', href: `#/event/${seg(id)}`, text: 'Event details' })));
    feed.prepend(item);
    setTimeout(() => item.classList.remove('live-new'), 2000);
  }
  while (feed.children.length > LIVE_MAX_ITEMS) feed.lastElementChild.remove();
  $('#live-empty').hidden = feed.children.length > 0;
}

function openLive(params) {
  const f = filtersFromParams(params);
  delete f.sort;
  delete f.size;
  fillFilterForm($('#live-form'), f);
  const same = live.controller && !live.force && JSON.stringify(f) === JSON.stringify(live.filters);
  live.force = false;
  if (!same) startLive(f);
}

// ---------------------------------------------------------------------------
// Router

const VIEW_TITLES = { users: 'auditlog', events: 'Events · auditlog', object: 'Timeline · auditlog', actor: 'Activity · auditlog', live: 'Live · auditlog', event: 'Event · auditlog' };
const NAV_OF_VIEW = { users: 'users', events: 'events', event: 'events', object: 'events', actor: 'events', live: 'live' };
let currentView = null;

function parseRoute() {
  const hash = location.hash;
  if (hash && !hash.startsWith('#/')) return null; // an in-page anchor, not a route
  const [path, query = ''] = hash.slice(2).split('?');
  const parts = path.split('/').filter(Boolean).map((p) => { try { return decodeURIComponent(p); } catch { return p; } });
  const params = new URLSearchParams(query);
  const [head, a, b] = parts;
  if (!head || head === 'users') return { view: 'users', params };
  if (head === 'events' && !a) return { view: 'events', params };
  if ((head === 'event' || head === 'events') && a) return { view: 'event', id: a, params };
  if (head === 'objects' && a && b) return { view: 'object', type: a, id: b, params };
  if (head === 'actors' && a && b) return { view: 'actor', type: a, id: b, params };
  if (head === 'live') return { view: 'live', params };
  return { view: 'unknown', params };
}

function route() {
  const r = parseRoute();
  if (!r) return;
  if (route.started) clearError();
  let view = r.view;
  if (view === 'unknown') {
    showError(new Error(`There is no page “${location.hash}”.`));
    view = 'users';
  }
  const changed = view !== currentView;
  if (currentView === 'live' && view !== 'live') stopLive();
  currentView = view;
  for (const v of document.querySelectorAll('.view')) v.hidden = v.dataset.view !== view;
  for (const a of document.querySelectorAll('.nav a')) {
    if (a.dataset.view === NAV_OF_VIEW[view]) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
  document.title = VIEW_TITLES[view];
  if (view === 'events') openExplorer(r.params);
  else if (view === 'object') openObject(r.type, r.id, r.params);
  else if (view === 'actor') openActor(r.type, r.id);
  else if (view === 'event') openEvent(r.id);
  else if (view === 'live') openLive(r.params);
  if (changed && route.started) {
    const heading = document.querySelector(`.view[data-view="${view}"] h2`);
    heading?.setAttribute('tabindex', '-1');
    heading?.focus({ preventScroll: true });
    window.scrollTo(0, 0);
  }
  route.started = true;
}

/** Sets the hash; when it is already that, runs the route again (e.g. "Apply" twice refreshes). */
function go(hash) {
  if (location.hash === hash) route(); else location.hash = hash;
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
  $('.skip-link').addEventListener('click', (ev) => {
    ev.preventDefault();
    $('#main').focus();
  });

  // Explorer
  explorer.pager = pagedTable({
    body: $('#results-body'), more: $('#events-more'), count: $('[data-testid="total-count"]'),
    emptyText: 'No events match these filters.',
    countLabel: (t) => `(${countEvents(t)})`,
  });
  explorer.chart = activityChart($('#events-chart'), {
    onPick: (since, until) => go(eventsHref({ ...explorer.filters, since, until })),
  });
  $('#filter-form').addEventListener('submit', (ev) => {
    ev.preventDefault();
    clearError();
    const f = readFilterForm(ev.currentTarget);
    if (f) go(eventsHref(f));
  });
  $('#reset-filters').addEventListener('click', () => go('#/events'));
  // On a phone the filters start folded so that the results are in view.
  if (matchMedia('(max-width: 760px)').matches) $('#filter-details').open = false;
  $('#export-csv').addEventListener('click', (ev) => exportEvents('csv', ev.currentTarget));
  $('#export-ndjson').addEventListener('click', (ev) => exportEvents('ndjson', ev.currentTarget));

  // Object timeline
  $('#object-order').addEventListener('change', (ev) => {
    const order = ev.currentTarget.value;
    go(`${objectHref(timeline.type, timeline.id)}${order === '-timestamp' ? '?order=-timestamp' : ''}`);
  });
  $('#object-viewed').addEventListener('change', (ev) => {
    $('#timeline').classList.toggle('hide-viewed', !ev.currentTarget.checked);
  });
  $('#timeline-more').addEventListener('click', async (ev) => {
    const button = ev.currentTarget;
    if (!timeline.next) return;
    button.disabled = true;
    try { await loadTimelinePage(timeline.next, timeline.token, true); } finally { button.disabled = false; }
  });
  $('#compare-form').addEventListener('submit', compare);
  for (const id of ['#compare-from', '#compare-to']) {
    $(id).addEventListener('change', (ev) => { ev.currentTarget.dataset.touched = 'true'; });
  }

  // Actor page
  actorPage.pager = pagedTable({
    body: $('#actor-body'), more: $('#actor-more'), count: $('#actor-count'),
    emptyText: 'This actor has done nothing yet.',
    countLabel: (t) => `${countEvents(t)} done`,
  });
  actorPage.chart = activityChart($('#actor-chart'));

  // Live
  $('#live-form').addEventListener('submit', (ev) => {
    ev.preventDefault();
    const f = readFilterForm(ev.currentTarget);
    if (!f) return;
    delete f.sort;
    delete f.size;
    const q = paramsFromFilters(f).toString();
    live.force = true; // Apply always reconnects, even with the same filters
    go(q ? `#/live?${q}` : '#/live');
  });
  $('#live-pause').addEventListener('click', (ev) => {
    const button = ev.currentTarget;
    live.paused = !live.paused;
    button.setAttribute('aria-pressed', live.paused ? 'true' : 'false');
    if (!live.paused) {
      showLiveEvents(live.pending);
      live.pending = [];
    }
    button.textContent = live.paused ? 'Resume' : 'Pause';
  });
  $('#live-clear').addEventListener('click', () => {
    $('#live-feed').replaceChildren();
    live.pending = [];
    live.count = 0;
    $('#live-count').textContent = '';
    $('#live-empty').hidden = false;
  });

  const users = loadUsers().catch((err) => {
    $('#users-body').replaceChildren(el('tr', { class: 'placeholder-row' }, el('td', { colspan: '6', text: 'Users could not be loaded.' })));
    $('[data-testid="whoami"]').textContent = 'Not connected';
    showError(err);
  });
  // User names make the other pages friendlier; wait for them briefly, not for ever.
  const first = currentView === null && parseRoute()?.view === 'users'
    ? Promise.resolve() : Promise.race([users, sleep(1500)]);
  first.then(() => {
    window.addEventListener('hashchange', route);
    route();
  });
}

start();
