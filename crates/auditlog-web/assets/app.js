// auditlog website, one page with hash routes:
//   #/users (default)          users table (edit, save, delete, add) and each user's history
//   #/events?…filters…         event explorer: filters, results, load more, export, activity chart
//   #/event/:id                one event, and its place in the signed log checked in the browser
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
    ? `Acting as ${who.attributes.name} (${who.attributes.role || 'user'}${who.attributes.tenant && who.attributes.tenant !== 'default' ? ` of ${who.attributes.tenant}` : ''})`
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
  const tenant = el('span', { class: 'tenant-tag', 'data-testid': 'tenant' });

  const row = el('tr', { 'data-testid': `user-row-${id}`, 'data-id': id },
    el('td', { class: 'col-id', 'data-label': 'ID' }, el('span', { class: 'id-chip', text: id })),
    el('td', { 'data-label': 'Name' }, name),
    el('td', { 'data-label': 'Email' }, email),
    el('td', { class: 'col-tos', 'data-label': 'Agreed TOS' }, tos),
    el('td', { class: 'col-role', 'data-label': 'Role' }, role, tenant),
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
  // The tenant, where there are several: the default one goes without saying.
  const tenant = a.tenant && a.tenant !== 'default' ? a.tenant : '';
  const tag = $('[data-testid="tenant"]', row);
  tag.textContent = tenant;
  tag.title = tenant ? `Tenant ${tenant}` : '';
  tag.hidden = !tenant;
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
  // Erasing is for admins and operators; the auditor checks it again.
  const me = state.users.get(String(ACTOR_ID));
  const erase = $('#erase-history');
  erase.hidden = !['admin', 'operator'].includes(me?.attributes?.role);
  erase.setAttribute('aria-label', `Erase the personal data of ${label}`);
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

/**
 * Erases the open user's personal data from the audit log (crypto-shredding), after
 * the person confirmed it: the auditor deletes the user's key, and the log records
 * who did it. The events stay; their personal values read as erased from then on.
 */
async function erasePersonalData(button) {
  if (!state.subject) return;
  const { id } = state.subject;
  const user = state.users.get(String(id));
  const label = user?.attributes?.name || `user ${id}`;
  const tenant = user?.attributes?.tenant;
  const sure = confirm(`Erase the personal data of ${label} (users ${id}) from the audit log?\n\n`
    + 'Its name and email will read as erased in every recorded event, for good. '
    + 'Who did what stays; the erasure itself is recorded.');
  if (!sure) return;
  button.disabled = true;
  clearError();
  try {
    const attributes = { subjectType: 'users', subjectId: String(id) };
    if (tenant) attributes.tenantId = tenant;
    const doc = await api('POST', '/api/erasures', { data: { type: 'erasures', attributes } });
    const existed = doc?.data?.attributes?.keyExisted;
    showStatus(existed ? `Erased the personal data of ${label} from the audit log.`
      : `Nothing personal of ${label} was recorded; the request is recorded all the same.`);
    refreshHistorySoon();
  } catch (err) {
    showError(err);
  } finally {
    button.disabled = false;
  }
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

/** Whether `v` is exactly `{[key]: true}`: how the auditor answers a personal value it cannot show. */
const isMarker = (v, key) => !!v && typeof v === 'object' && !Array.isArray(v)
  && Object.keys(v).length === 1 && v[key] === true;

function formatValue(v) {
  if (v === null || v === undefined) return 'empty';
  // A personal value whose subject's key was deleted (`POST /api/erasures`), or altered.
  if (isMarker(v, 'erased')) return '[erased]';
  if (isMarker(v, 'undecryptable')) return '[undecryptable]';
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

/**
 * The auditor's flag for an event whose own timestamp is far from when the auditor
 * received it (`meta.clockSkewed`): a backdated event, or a producer with a wrong clock.
 * The timestamp is the producer's word; `receivedAt` is the auditor's.
 */
function skewFlag(resource) {
  if (resource?.meta?.clockSkewed !== true) return null;
  const a = resource.attributes || {};
  const ts = Number(a.timestamp);
  const received = Number(a.receivedAt);
  const title = Number.isFinite(received)
    ? `The producer says ${Number.isFinite(ts) ? new Date(ts).toISOString() : 'nothing'}; the auditor received it ${new Date(received).toISOString()}`
    : 'The producer\'s timestamp is far from when the auditor received it';
  return el('span', { class: 'ev-meta ev-skew', 'data-testid': 'clock-skew', title, text: '⚠ timestamp far from receipt' });
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
  const skew = skewFlag(resource);
  if (skew) extra.push(skew);
  if (extra.length) item.append(el('div', { class: 'ev-foot' }, ...extra));
  return item;
}

// ---------------------------------------------------------------------------
// Filters: the same filter set in the hash (#/events?actorType=users&action=changed,deleted…),
// in the forms, and in API queries (filter[actorType]=users&filter[action]=changed,deleted…).

const ACTIONS = ['viewed', 'created', 'changed', 'deleted'];
const FILTER_KEYS = ['tenantId', 'actorType', 'actorId', 'targetType', 'targetId', 'action', 'eventName', 'since', 'until'];
/** The filters that are plain text, as the forms and the hash carry them. */
const TEXT_FILTER_KEYS = ['tenantId', 'actorType', 'actorId', 'targetType', 'targetId', 'eventName'];
const PAGE_SIZES = [10, 25, 50, 100];
const DEFAULT_PAGE_SIZE = 50;

/** Filters read from hash parameters; unknown or malformed values are dropped. */
function filtersFromParams(params) {
  const f = {};
  for (const key of TEXT_FILTER_KEYS) {
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
  for (const key of TEXT_FILTER_KEYS) {
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
  for (const key of TEXT_FILTER_KEYS) {
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
  if (f.tenantId) bits.push(`in tenant ${f.tenantId}`);
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
    'data-tenant': a.tenantId || 'default',
  },
  el('td', { class: 'col-time', 'data-label': 'Time' }, timeLink, skewFlag(resource)),
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
  stopIntegrity();
  const box = $('#event-detail');
  $('#event-heading').textContent = `Event ${id}`;
  box.replaceChildren(el('p', { class: 'muted', text: 'Loading…' }));
  try {
    const doc = await api('GET', `/api/data-events/${seg(id)}`);
    const r = doc?.data;
    if (!r) throw new Error('The server answered without the event.');
    const a = r.attributes || {};
    const ts = Number(a.timestamp);
    const received = Number(a.receivedAt);
    const card = renderEvent(r);
    card.dataset.testid = 'event-card';
    const meta = [
      ['ID', a.id ?? r.id], ['Action', a.action],
      ['Time (producer’s clock)', Number.isFinite(ts) ? `${new Date(ts).toISOString()} (${ts})` : null],
      ['Received (auditor’s clock)', Number.isFinite(received)
        ? `${new Date(received).toISOString()} (${received})${r.meta?.clockSkewed === true ? ' — far from the producer’s time' : ''}`
        : null],
      ['Delivered by', a.ingestedBy], ['Delivered over', a.via],
      ['Actor', `${a.actorType} ${a.actorId}`], ['Target', `${a.targetType} ${a.targetId}`],
      ['Event name', a.eventName], ['Source', a.source], ['Request ID', a.requestId],
    ].filter(([, v]) => v !== undefined && v !== null && v !== '');
    box.replaceChildren(...[
      el('ol', { class: 'events' }, card),
      integrityPanel({ ...a, id: a.id ?? r.id }),
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
// Integrity: is this event in the signed log? Checked here, in the browser, so that
// the answer does not rest on the server's word:
//   1. the log's public key (GET /log/key), pinned in localStorage the first time it is
//      seen, so that a server that later swaps keys (and re-signs a rewritten log) is caught;
//   2. the signed checkpoint (GET /log/checkpoint): a C2SP signed note whose Ed25519
//      signature by that key covers the log's origin, size and Merkle root;
//   3. the event's inclusion proof in the tree of that size: the RFC 9162 audit path
//      from SHA-256(0x00 || leaf) must lead to the signed root;
//   4. the leaf's JSON must be the event the page shows (id, action, actor, target, time…):
//      a valid proof of some other event proves nothing about this one.

const PINNED_KEY_STORAGE = 'auditlog.pinnedLogKey';
/** Waits (ms) between asks while the event is not sealed into a checkpoint yet. */
const SEAL_RETRY_DELAYS = [500, 1000, 1500, 2000, 3000, 4000];
/** Event fields the page shows, each of which must be the leaf's. */
const SHOWN_FIELDS = ['id', 'action', 'timestamp', 'actorType', 'actorId', 'targetType', 'targetId',
  'changes', 'eventName', 'source', 'requestId', 'receivedAt', 'ingestedBy', 'via'];

/**
 * The checks, in the order they run. A failed check is named by its `failure`, and `means`
 * says what that tells the person reading the page.
 */
const CHECKS = [
  { id: 'key', label: 'The log’s key is the one pinned when this browser first saw it',
    failure: 'The log’s key changed since you first loaded this page',
    means: 'A log with a new key can sign a rewritten history. Unless you know the key was replaced, do not trust what this log says.' },
  { id: 'signature', label: 'The checkpoint is signed by that key (Ed25519)',
    failure: 'The checkpoint’s signature is not valid',
    means: 'The log’s key did not sign this checkpoint, so nothing it says about the log can be relied on.' },
  { id: 'proof', label: 'The audit path leads from the leaf to the checkpoint’s root (RFC 9162)',
    failure: 'The proof does not lead to the signed root',
    means: 'The record served for this event is not the one the log’s signed root commits to: the log or the answer was altered.' },
  { id: 'leaf', label: 'The leaf is this event: id, action, actor, target, time and changes (personal values as ciphertext)',
    failure: 'The leaf does not match the event',
    means: 'The log holds another record than the one this page shows: the event was altered after it was logged, or another one was served.' },
];

/** A check that failed: which one (a CHECKS id) and what exactly was wrong (`detail`). */
class IntegrityFailure extends Error {
  constructor(check, detail, failure, means) {
    super(detail);
    const known = CHECKS.find((c) => c.id === check);
    this.check = check;
    this.failure = failure || known.failure;
    this.means = means || known.means;
  }
}

/** Why the check could not be made at all (no WebCrypto, server unreachable…): not a verdict. */
class IntegrityUnavailable extends Error {}

/** The event is not in a signed checkpoint yet (the proof route answered 4xx). */
class NotSealedYet extends Error {}

const integrity = { controller: null };

function stopIntegrity() {
  integrity.controller?.abort();
  integrity.controller = null;
}

// ---- bytes ------------------------------------------------------------------

const utf8 = new TextEncoder();
// Fatal and BOM-keeping: the bytes re-encoded are exactly the bytes that were signed.
const strictUtf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

/** Standard base64 → bytes, or null. */
function fromBase64(text) {
  if (typeof text !== 'string' || !/^[A-Za-z0-9+/]*={0,2}$/.test(text)) return null;
  try {
    return Uint8Array.from(atob(text), (c) => c.charCodeAt(0));
  } catch {
    return null;
  }
}

const toHex = (bytes) => [...bytes].map((b) => b.toString(16).padStart(2, '0')).join('');
const toBase64 = (bytes) => btoa(String.fromCharCode(...bytes));

function concatBytes(...parts) {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

function sameBytes(a, b) {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}

async function sha256(...parts) {
  return new Uint8Array(await crypto.subtle.digest('SHA-256', concatBytes(...parts)));
}

// ---- the log's key (C2SP note verifier key) ---------------------------------

/**
 * Reads `<name>+<hex key hash>+<base64(0x01 || Ed25519 public key)>` and checks that the
 * hash is the first 4 bytes of SHA-256(name || "\n" || 0x01 || key), as signed notes define it.
 */
async function parseVerifierKey(text) {
  const bad = (why) => new IntegrityFailure('key', `The served key ${text} cannot be read: ${why}.`,
    'The log’s key is malformed', 'Without the log’s key nothing about this event can be checked.');
  // Split at the first two '+' only: base64 has '+' of its own (names have none).
  const m = /^([^+]+)\+([^+]*)\+(.*)$/s.exec(text);
  if (!m) throw bad('expected <name>+<key hash>+<key>');
  const [, name, hash, encoded] = m;
  if (/\s/.test(name)) throw bad('the key name has spaces');
  const key = fromBase64(encoded);
  if (!key || key.length !== 33 || key[0] !== 0x01) throw bad('it is not an Ed25519 key');
  const publicKey = key.slice(1);
  const keyHash = await noteKeyHash(name, publicKey);
  if (toHex(keyHash) !== hash) throw bad('its key hash does not match the key');
  return { name, publicKey, keyHash, text };
}

function noteKeyHash(name, publicKey) {
  return sha256(utf8.encode(`${name}\n`), Uint8Array.of(0x01), publicKey).then((d) => d.slice(0, 4));
}

function readPinnedKey() {
  try {
    return localStorage.getItem(PINNED_KEY_STORAGE);
  } catch {
    return null; // storage switched off: every load is a first load
  }
}

function pinKey(text) {
  try {
    localStorage.setItem(PINNED_KEY_STORAGE, text);
    return true;
  } catch {
    return false;
  }
}

/** The served key, checked against the pinned one (pinned now if there is none yet). */
async function loadLogKey(signal) {
  const text = (await fetchText('/log/key', signal)).trim();
  const key = await parseVerifierKey(text);
  const pinned = readPinnedKey();
  if (pinned && pinned !== text) {
    const failure = new IntegrityFailure('key',
      `This browser pinned the key ${pinned} and the log now serves ${text}.`);
    failure.servedKey = text;
    throw failure;
  }
  key.pinnedNow = !pinned && pinKey(text);
  return key;
}

/** The public key as WebCrypto takes it; unavailable (not failed) where Ed25519 is missing. */
async function importEd25519(publicKey) {
  try {
    return await crypto.subtle.importKey('raw', publicKey, { name: 'Ed25519' }, false, ['verify']);
  } catch (err) {
    throw new IntegrityUnavailable(`This browser cannot check Ed25519 signatures (${err.message || err.name}).`);
  }
}

// ---- the checkpoint (C2SP signed note) ---------------------------------------

/**
 * Splits a signed note at its last empty line into the signed text (ending with a newline)
 * and its signature lines `— <name> <base64(4-byte key hash || signature)>`.
 */
function parseSignedNote(note) {
  const bad = (why) => new IntegrityFailure('signature', `The checkpoint is malformed: ${why}.`);
  const split = note.lastIndexOf('\n\n');
  if (split < 0) throw bad('no empty line before the signatures');
  const text = note.slice(0, split + 1);
  const block = note.slice(split + 2);
  if (!block.endsWith('\n')) throw bad('it does not end with a newline');
  const signatures = block.slice(0, -1).split('\n').map((line) => {
    const m = /^\u2014 (\S+) (\S+)$/.exec(line);
    if (!m) throw bad('a signature line is not “— <name> <signature>”');
    return { name: m[1], bytes: fromBase64(m[2]) };
  });
  return { text, signatures };
}

/** Reads `<origin>\n<size>\n<base64 root>\n[extension lines]` (checked after its signature). */
function parseCheckpoint(text) {
  const bad = (why) => new IntegrityFailure('signature', `The signed checkpoint is malformed: ${why}.`);
  const [origin, size, root] = text.slice(0, -1).split('\n');
  if (!origin) throw bad('it has no origin');
  if (!/^(0|[1-9][0-9]*)$/.test(size || '') || !Number.isSafeInteger(Number(size))) throw bad('its second line is not a tree size');
  const rootHash = fromBase64(root || '');
  if (!rootHash || rootHash.length !== 32) throw bad('its third line is not a base64 SHA-256 root');
  return { origin, size: Number(size), root: rootHash, text };
}

/** The checkpoint, if one of its signatures is the log key's over its text; a failure otherwise. */
async function loadCheckpoint(key, cryptoKey, signal) {
  const note = await fetchText('/log/checkpoint', signal);
  const { text, signatures } = parseSignedNote(note);
  const ours = signatures.filter((s) => s.name === key.name);
  if (!ours.length) {
    throw new IntegrityFailure('signature', `The checkpoint carries no signature by ${key.name}.`);
  }
  let valid = false;
  for (const { bytes } of ours) {
    // 4 bytes of key hash, then the 64-byte signature; another key of the same name is not ours.
    if (!bytes || bytes.length !== 68 || !sameBytes(bytes.slice(0, 4), key.keyHash)) continue;
    if (await crypto.subtle.verify('Ed25519', cryptoKey, bytes.slice(4), utf8.encode(text))) valid = true;
  }
  if (!valid) {
    throw new IntegrityFailure('signature', `The signature by ${key.name} does not verify over the checkpoint’s text.`);
  }
  return parseCheckpoint(text);
}

// ---- the inclusion proof (RFC 9162) --------------------------------------------

const leafHash = (leaf) => sha256(Uint8Array.of(0x00), leaf);
const nodeHash = (left, right) => sha256(Uint8Array.of(0x01), left, right);

/**
 * RFC 9162 §2.1.3.2: the root that the audit path `path` gives leaf `index` (hash `hash`)
 * in a tree of `size` leaves, or null when the path cannot belong to such a tree.
 * Plain numbers are exact here: sizes are checked to be safe integers.
 */
async function rootFromInclusionProof(index, size, hash, path) {
  if (index >= size) return null;
  let fn = index;
  let sn = size - 1;
  let r = hash;
  const half = (n) => Math.floor(n / 2);
  for (const p of path) {
    if (sn === 0) return null;
    if (fn % 2 === 1 || fn === sn) {
      r = await nodeHash(p, r);
      // On the tree's right edge a node can have no sibling: climb until it is a right child.
      while (fn % 2 === 0 && fn !== 0) {
        fn = half(fn);
        sn = half(sn);
      }
    } else {
      r = await nodeHash(r, p);
    }
    fn = half(fn);
    sn = half(sn);
  }
  return sn === 0 ? r : null;
}

/** The proof of `eventId` in the tree of `size`; NotSealedYet while the log answers 4xx. */
async function loadInclusionProof(eventId, size, signal) {
  const res = await authFetch(`/api/data-events/${seg(eventId)}/inclusion?treeSize=${size}`,
    { headers: { Accept: JSONAPI }, signal });
  if (res.status >= 400 && res.status < 500 && res.status !== 401 && res.status !== 403) {
    throw new NotSealedYet(await errorMessage(res, 'No proof yet'));
  }
  if (!res.ok) throw new IntegrityUnavailable(await errorMessage(res, 'The inclusion proof could not be loaded'));
  const bad = (why) => new IntegrityFailure('proof', `The inclusion proof is malformed: ${why}.`);
  const a = await res.json().then((doc) => doc?.data?.attributes || {}, (err) => {
    throw err.name === 'AbortError' ? err : bad('it is not JSON');
  });
  if (a.treeSize !== size) throw bad(`it is for a tree of ${a.treeSize} leaves, not the checkpoint’s ${size}`);
  if (!Number.isSafeInteger(a.leafIndex) || a.leafIndex < 0) throw bad('its leaf index is not a number');
  const leaf = fromBase64(a.leaf);
  if (!leaf) throw bad('its leaf is not base64');
  const hashes = Array.isArray(a.hashes) ? a.hashes.map(fromBase64) : [null];
  if (hashes.some((h) => !h || h.length !== 32)) throw bad('a hash is not base64 SHA-256');
  return { index: a.leafIndex, leaf, hashes };
}

/** Fails unless the proof leads from the leaf to the checkpoint's root. */
async function checkInclusion(proof, checkpoint) {
  const root = await rootFromInclusionProof(proof.index, checkpoint.size, await leafHash(proof.leaf), proof.hashes);
  if (!root || !sameBytes(root, checkpoint.root)) {
    throw new IntegrityFailure('proof', root
      ? `Leaf ${proof.index}’s audit path leads to ${toBase64(root)}, the checkpoint signs ${toBase64(checkpoint.root)}.`
      : `An audit path of ${proof.hashes.length} hashes cannot place leaf ${proof.index} in a tree of ${checkpoint.size}.`);
  }
}

// ---- the leaf against the page -----------------------------------------------

/** JSON with object keys sorted, so that equal values compare equal as text. */
function canonicalJson(v) {
  if (v === undefined) return 'undefined';
  if (Array.isArray(v)) return `[${v.map(canonicalJson).join(',')}]`;
  if (v && typeof v === 'object') {
    return `{${Object.keys(v).sort().map((k) => `${JSON.stringify(k)}:${canonicalJson(v[k])}`).join(',')}}`;
  }
  return JSON.stringify(v);
}

/** A personal value as the log stores it: `{"$enc":"v1:…"}`, a ciphertext this page cannot open. */
const isEncrypted = (v) => !!v && typeof v === 'object' && !Array.isArray(v)
  && Object.keys(v).length === 1 && typeof v.$enc === 'string';

/**
 * The leaf's `changes` with each encrypted value replaced by the value shown in its place.
 * The key stays with the auditor (and is deleted on erasure), so for a personal value the
 * page checks that the leaf holds a ciphertext there, not which value it encrypts.
 */
function withShownPersonalValues(leafChanges, shownChanges) {
  if (!leafChanges || typeof leafChanges !== 'object' || !shownChanges || typeof shownChanges !== 'object') {
    return leafChanges;
  }
  const out = {};
  for (const [field, change] of Object.entries(leafChanges)) {
    const shownChange = shownChanges[field];
    if (!change || typeof change !== 'object' || !shownChange || typeof shownChange !== 'object') {
      out[field] = change;
      continue;
    }
    const copy = { ...change };
    for (const side of ['prev', 'next']) {
      if (isEncrypted(change[side]) && side in shownChange) copy[side] = shownChange[side];
    }
    out[field] = copy;
  }
  return out;
}

/** Fails unless the leaf's JSON is the event shown: same id, and every shown field the same. */
function checkLeafIsEvent(leafBytes, shown) {
  let leaf;
  try {
    leaf = JSON.parse(strictUtf8.decode(leafBytes));
  } catch {
    throw new IntegrityFailure('leaf', 'The leaf is not UTF-8 JSON.');
  }
  if (!leaf || typeof leaf !== 'object' || Array.isArray(leaf)) throw new IntegrityFailure('leaf', 'The leaf is not a JSON object.');
  const compared = 'changes' in leaf
    ? { ...leaf, changes: withShownPersonalValues(leaf.changes, shown.changes) }
    : leaf;
  const differ = SHOWN_FIELDS.filter((f) => canonicalJson(compared[f]) !== canonicalJson(shown[f]));
  if (differ.length) {
    const [f] = differ;
    throw new IntegrityFailure('leaf', `The log’s leaf has ${f} ${canonicalJson(compared[f])}, this page shows ${canonicalJson(shown[f])}`
      + (differ.length > 1 ? ` (and ${differ.slice(1).join(', ')} differ too).` : '.'));
  }
  return leaf;
}

// ---- the whole check -----------------------------------------------------------

/** GET as text (exact UTF-8), with the token; an error status is a reason not to check. */
async function fetchText(url, signal) {
  const res = await authFetch(url, { headers: { Accept: 'text/plain' }, signal });
  if (!res.ok) throw new IntegrityUnavailable(await errorMessage(res, `GET ${url} failed`));
  try {
    return strictUtf8.decode(await res.arrayBuffer());
  } catch (err) {
    if (err.name === 'AbortError') throw err;
    throw new IntegrityFailure(url === '/log/key' ? 'key' : 'signature', `${url} is not UTF-8 text.`);
  }
}

/**
 * Runs checks 1–4, in order, for `shown` (the event's attributes as displayed); `onRetry(n, of)`
 * is told of each wait for the event to be sealed. Resolves to the verified facts; rejects with an IntegrityFailure,
 * IntegrityUnavailable or NotSealedYet (after the retries).
 */
async function verifyEvent(shown, signal, onRetry) {
  if (!globalThis.crypto?.subtle) {
    throw new IntegrityUnavailable(window.isSecureContext
      ? 'This browser has no WebCrypto to check the log with.'
      : 'This page is not a secure context (HTTPS, or http://localhost), so the browser offers no WebCrypto to check the log with.');
  }
  const key = await loadLogKey(signal);
  const cryptoKey = await importEd25519(key.publicKey);
  for (let attempt = 0; ; attempt++) {
    // A fresh checkpoint each time: the event is sealed into a later one than the last seen.
    const checkpoint = await loadCheckpoint(key, cryptoKey, signal);
    try {
      if (checkpoint.size === 0) throw new NotSealedYet('The log is empty.');
      const proof = await loadInclusionProof(String(shown.id), checkpoint.size, signal);
      await checkInclusion(proof, checkpoint);
      const leaf = checkLeafIsEvent(proof.leaf, shown);
      return { key, checkpoint, proof, leaf };
    } catch (err) {
      if (!(err instanceof NotSealedYet) || attempt >= SEAL_RETRY_DELAYS.length) throw err;
      onRetry(attempt + 1, SEAL_RETRY_DELAYS.length);
      await sleep(SEAL_RETRY_DELAYS[attempt], signal);
      if (signal.aborted) throw err;
    }
  }
}

// ---- what the page shows ---------------------------------------------------------

/** The integrity box of an event's details, checked at once. */
function integrityPanel(shown) {
  const box = el('section', { class: 'integrity', 'data-testid': 'integrity', 'aria-live': 'polite', 'aria-label': 'Integrity' });
  runIntegrityCheck(box, shown);
  return box;
}

async function runIntegrityCheck(box, shown) {
  stopIntegrity();
  const controller = new AbortController();
  integrity.controller = controller;
  const { signal } = controller;
  const again = () => runIntegrityCheck(box, shown);
  renderIntegrity(box, { state: 'checking', busy: true, title: 'Checking this event against the signed log…' });
  try {
    const facts = await verifyEvent(shown, signal, (n, of) => renderIntegrity(box, {
      state: 'pending', busy: true, title: 'Not sealed yet — retrying',
      sub: `The log has not put this event into a signed checkpoint yet (asked ${n} of ${of} times).`,
    }));
    if (signal.aborted) return;
    renderVerified(box, facts, again);
  } catch (err) {
    if (signal.aborted || err.name === 'AbortError') return;
    if (err instanceof IntegrityFailure) renderFailed(box, err, shown, again);
    else if (err instanceof NotSealedYet) {
      renderIntegrity(box, {
        state: 'pending', title: 'Not sealed yet',
        sub: 'The log has not put this event into a signed checkpoint yet; it usually does within seconds.',
        actions: [checkAgainButton(again)],
      });
    } else {
      renderIntegrity(box, {
        state: 'unavailable', title: 'Integrity not checked',
        sub: err.message || String(err), actions: [checkAgainButton(again)],
      });
      if (!(err instanceof IntegrityUnavailable || err instanceof ApiError)) console.error(err);
    }
  }
}

function checkAgainButton(onClick) {
  return el('button', { type: 'button', class: 'btn btn-ghost btn-sm', 'data-testid': 'integrity-again', text: 'Check again', onclick: onClick });
}

const ICONS = { verified: '✓', failed: '✕', unavailable: '!', pending: '…', checking: '' };

/**
 * Draws the box: icon (turning while `busy`), headline, one line under it, buttons, and the
 * list of checks.
 */
function renderIntegrity(box, { state, busy = false, title, sub, actions = [], checks = null, failed = null }) {
  box.dataset.state = state;
  box.setAttribute('aria-busy', busy ? 'true' : 'false');
  if (failed) box.dataset.failed = failed; else delete box.dataset.failed;
  const head = el('div', { class: 'integrity-head' },
    el('span', { class: 'integrity-icon', 'aria-hidden': 'true', text: busy ? '' : ICONS[state] }),
    el('div', { class: 'integrity-text' },
      el('p', { class: 'integrity-title', 'data-testid': 'integrity-title', text: title }),
      sub ? el('p', { class: 'integrity-sub', 'data-testid': 'integrity-sub', text: sub }) : null),
    actions.length ? el('div', { class: 'integrity-actions' }, ...actions) : null);
  box.replaceChildren(head);
  if (checks) {
    // The hover text and the expandable list say the same: what was checked, and how it went.
    head.title = checks.map((c) => `${MARKS[c.result]} ${c.label}`).join('\n');
    box.append(el('details', { class: 'integrity-details', open: state === 'failed' },
      el('summary', { text: 'What was checked' }),
      el('ul', { class: 'integrity-checks' }, ...checks.map((c) => el('li', {
        class: `check check-${c.result}`, 'data-testid': 'integrity-check', 'data-check': c.id, 'data-result': c.result,
      }, el('span', { class: 'check-mark', 'aria-hidden': 'true', text: MARKS[c.result] }),
      el('span', { class: 'visually-hidden', text: `${RESULT_WORDS[c.result]}: ` }),
      el('span', { class: 'check-text' }, el('span', { class: 'check-label', text: c.label }),
        c.detail ? el('span', { class: 'check-detail', text: c.detail }) : null))))));
  }
}

const MARKS = { ok: '✓', failed: '✕', skipped: '–' };
const RESULT_WORDS = { ok: 'passed', failed: 'failed', skipped: 'not reached' };

function renderVerified(box, { key, checkpoint, proof, leaf }, again) {
  const details = {
    key: `${key.name}+${toHex(key.keyHash)}${key.pinnedNow ? ' — pinned now, on this first visit' : ''}`,
    signature: `Checkpoint of ${checkpoint.origin}, ${checkpoint.size.toLocaleString()} leaves`,
    proof: `Leaf ${proof.index.toLocaleString()}, ${proof.hashes.length} hashes up to root ${toBase64(checkpoint.root)}`,
    leaf: `Event ${leaf.id}, seq ${leaf.seq}`,
  };
  const checks = CHECKS.map((c) => ({ ...c, result: 'ok', detail: details[c.id] }));
  renderIntegrity(box, {
    state: 'verified',
    title: `Included in checkpoint of size ${checkpoint.size.toLocaleString()} — verified`,
    sub: `${checkpoint.origin} · leaf ${proof.index.toLocaleString()} · checked in this browser`,
    checks, actions: [checkAgainButton(again)],
  });
  box.dataset.treeSize = String(checkpoint.size);
  box.dataset.leafIndex = String(proof.index);
}

function renderFailed(box, failure, shown, again) {
  const at = CHECKS.findIndex((c) => c.id === failure.check);
  const checks = CHECKS.map((c, i) => ({
    ...c,
    result: i < at ? 'ok' : i === at ? 'failed' : 'skipped',
    detail: i === at ? failure.message : null,
  }));
  const actions = [checkAgainButton(again)];
  if (failure.servedKey) {
    actions.push(el('button', {
      type: 'button', class: 'btn btn-danger btn-sm', 'data-testid': 'integrity-trust-key', text: 'Trust the new key',
      onclick: () => {
        // Only right when the log really was given a new key (e.g. a new data directory).
        const sure = window.confirm(`Trust ${failure.servedKey} from now on? Do this only if you know the log’s key was replaced.`);
        if (sure && pinKey(failure.servedKey)) runIntegrityCheck(box, shown);
      },
    }));
  }
  renderIntegrity(box, {
    state: 'failed', failed: failure.check, title: failure.failure, sub: failure.means, checks, actions,
  });
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

const VIEW_TITLES = { users: 'auditlog', events: 'Events · auditlog', object: 'Timeline · auditlog', actor: 'Activity · auditlog', live: 'Live · auditlog', event: 'Event · auditlog', sinks: 'Sinks · auditlog', retention: 'Retention · auditlog' };
const NAV_OF_VIEW = { users: 'users', events: 'events', event: 'events', object: 'events', actor: 'events', live: 'live', sinks: 'sinks', retention: 'retention' };
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
  if (head === 'sinks') return { view: 'sinks', params };
  if (head === 'retention') return { view: 'retention', params };
  return { view: 'unknown', params };
}

// ---------------------------------------------------------------------------
// Sinks (log streams): a read-only view of GET /api/sinks, refreshed while shown.

let sinksTimer = 0;

/** Shows each sink's state, lag and counts; refreshes every 2 s while the page is open. */
async function loadSinks() {
  clearTimeout(sinksTimer);
  const doc = await api('GET', '/api/sinks');
  const sinks = doc?.data ?? [];
  const body = $('#sinks-body');
  body.replaceChildren(...sinks.map(sinkRow));
  $('#sinks-empty').hidden = sinks.length > 0;
  $('#sinks-count').textContent = `(${sinks.length})`;
  if (currentView === 'sinks') sinksTimer = setTimeout(() => loadSinks().catch(showError), 2000);
}

function sinkRow(sink) {
  const a = sink.attributes ?? {};
  const s = a.status ?? {};
  const state = a.paused ? 'paused' : s.failing ? 'failing' : s.delivering ? 'delivering' : 'elsewhere';
  const title = {
    paused: 'Paused: the cursor stays where it is',
    failing: 'Failing for longer than its failingAfterSecs; it keeps retrying from the same place',
    delivering: 'Delivered by this auditor',
    elsewhere: 'Delivered by another auditor sharing the store, or starting',
  }[state];
  const tr = document.createElement('tr');
  tr.dataset.testid = `sink-${sink.id}`;
  const cell = (text, cls) => {
    const td = document.createElement('td');
    if (cls) td.className = cls;
    td.textContent = text;
    return td;
  };
  const badge = document.createElement('span');
  badge.className = `sink-state sink-${state}`;
  badge.textContent = state;
  badge.title = title;
  const stateCell = document.createElement('td');
  stateCell.append(badge);
  const lag = typeof s.lagSeconds === 'number' ? s.lagSeconds.toFixed(1) : '–';
  tr.append(
    cell(sink.id), cell(a.kind ?? ''), stateCell,
    cell(String(s.lagEvents ?? '–'), 'num'), cell(lag, 'num'),
    cell(String(s.delivered ?? 0), 'num'), cell(String(s.failedAttempts ?? 0), 'num'),
    cell(s.lastError ?? '', 'sink-error'),
  );
  return tr;
}

// ---------------------------------------------------------------------------
// Retention: each tenant's policy, what was pruned, and the legal holds. Admins
// read their tenant's and place holds; operators also set policies, look up any
// tenant, and release holds (the auditor decides; the page only shows what applies).

let retentionTenant = '';

function isOperator() {
  return state.users.get(String(ACTOR_ID))?.attributes?.role === 'operator';
}

function days(n) {
  return n === null || n === undefined ? 'for ever' : `${n} day${n === 1 ? '' : 's'}`;
}

async function loadRetention() {
  const operator = isOperator();
  for (const node of document.querySelectorAll('#view-retention [data-operator-only]')) node.hidden = !operator;
  const query = retentionTenant ? `?filter[tenantId]=${encodeURIComponent(retentionTenant)}` : '';
  const [doc, holds] = await Promise.all([
    api('GET', `/api/retention${query}`),
    api('GET', '/api/legal-holds'),
  ]);
  const meta = doc?.meta ?? {};
  $('#retention-summary').textContent = `Tenants without a policy of their own keep events ${days(meta.defaultDays)}`
    + (meta.defaultDays ? `; expired events are pruned every ${Math.round((meta.pruneIntervalSecs ?? 3600) / 60)} min.` : '.');
  $('#retention-body').replaceChildren(...(doc?.data ?? []).map((r) => retentionRow(r, operator)));
  const list = holds?.data ?? [];
  $('#holds-body').replaceChildren(...list.map((h) => holdRow(h, operator)));
  $('#holds-empty').hidden = list.length > 0;
  $('#holds-count').textContent = `(${list.length})`;
}

function retentionRow(r, operator) {
  const a = r.attributes ?? {};
  const cell = (text, cls) => el('td', { class: cls, text });
  const tr = el('tr', { 'data-testid': `retention-${r.id}` },
    el('td', { text: r.id }),
    cell(days(a.effectiveDays) + (a.days === null ? ' (default)' : '')),
    cell(String(a.legalHolds ?? 0), 'num'),
    cell(String(a.prunedEvents ?? 0), 'num'),
    cell(a.newestPruned ? timeFormat.format(new Date(a.newestPruned)) : '–'));
  if (operator) {
    const input = el('input', {
      type: 'number', min: '1', max: '36500', value: a.days ?? '', placeholder: 'default',
      'aria-label': `Days to keep ${r.id}'s events`, 'data-testid': `retention-days-${r.id}`, class: 'days-input',
    });
    const save = el('button', { type: 'button', class: 'btn btn-ghost', text: 'Save', 'data-testid': `retention-save-${r.id}` });
    save.addEventListener('click', () => saveRetention(r.id, input.value, save).catch(showError));
    tr.append(el('td', { class: 'retention-edit' }, input, save));
  }
  return tr;
}

async function saveRetention(tenant, value, button) {
  const text = String(value).trim();
  const n = text === '' ? null : Number(text);
  if (n !== null && !(Number.isInteger(n) && n >= 1 && n <= 36500)) {
    throw new Error('Days must be a whole number from 1 to 36500, or empty for the default.');
  }
  const declined = n !== null && !window.confirm(
    `Keep ${tenant}'s events for ${days(n)}?\n\nOlder events will be pruned at the next prune: their content is gone for good.`);
  if (declined) return;
  button.disabled = true;
  try {
    await api('PATCH', `/api/retention/${encodeURIComponent(tenant)}`,
      { data: { type: 'retention', id: tenant, attributes: { days: n } } });
    showStatus(`${tenant} keeps its events ${days(n)}${n === null ? ' (the default)' : ''}.`);
    await loadRetention();
  } finally {
    button.disabled = false;
  }
}

function holdRow(h, operator) {
  const a = h.attributes ?? {};
  const covers = a.targetType ? `${a.targetType} ${a.targetId}` : 'the whole tenant';
  const tr = el('tr', { 'data-testid': `hold-${h.id}` },
    el('td', { text: a.tenantId }), el('td', { text: covers }), el('td', { text: a.reason, class: 'hold-reason-cell' }),
    el('td', { text: a.placedBy }), el('td', { text: timeFormat.format(new Date(a.placedAt)) }));
  if (operator) {
    const release = el('button', { type: 'button', class: 'btn btn-ghost btn-danger', text: 'Release', 'data-testid': 'release-hold' });
    release.addEventListener('click', () => releaseHold(h, covers, release).catch(showError));
    tr.append(el('td', {}, release));
  }
  return tr;
}

async function releaseHold(h, covers, button) {
  const a = h.attributes ?? {};
  if (!window.confirm(`Release the legal hold on ${covers} of ${a.tenantId}?\n\nReason: ${a.reason}\n\nEvents it kept will be pruned at the next prune if their retention has passed.`)) return;
  button.disabled = true;
  try {
    await api('DELETE', `/api/legal-holds/${encodeURIComponent(h.id)}`);
    showStatus(`The hold on ${covers} is released.`);
    await loadRetention();
  } finally {
    button.disabled = false;
  }
}

async function placeHold(ev) {
  ev.preventDefault();
  const form = ev.currentTarget;
  const value = (name) => form.elements[name].value.trim();
  const attributes = { reason: value('reason') };
  if (value('tenantId')) attributes.tenantId = value('tenantId');
  if (value('targetType') || value('targetId')) {
    if (!value('targetType') || !value('targetId')) {
      showError(new Error('Give both a target type and an id, or neither to hold the whole tenant.'));
      return;
    }
    attributes.targetType = value('targetType');
    attributes.targetId = value('targetId');
  }
  const button = form.querySelector('button[type="submit"]');
  button.disabled = true;
  try {
    await api('POST', '/api/legal-holds', { data: { type: 'legal-holds', attributes } });
    form.reset();
    showStatus('The legal hold is placed.');
    await loadRetention();
  } catch (err) {
    showError(err);
  } finally {
    button.disabled = false;
  }
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
  if (currentView === 'event' && view !== 'event') stopIntegrity();
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
  else if (view === 'sinks') loadSinks().catch(showError);
  else if (view === 'retention') loadRetention().catch(showError);
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
  $('#refresh-sinks').addEventListener('click', () => { clearError(); loadSinks().catch(showError); });
  $('#refresh-retention').addEventListener('click', () => { clearError(); loadRetention().catch(showError); });
  $('#hold-form').addEventListener('submit', placeHold);
  $('#retention-tenant-form').addEventListener('submit', (ev) => {
    ev.preventDefault();
    retentionTenant = $('#retention-tenant').value.trim();
    clearError();
    loadRetention().catch(showError);
  });
  $('#refresh-history').addEventListener('click', () => { clearError(); loadHistory(); });
  $('#erase-history').addEventListener('click', (ev) => erasePersonalData(ev.currentTarget));
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
