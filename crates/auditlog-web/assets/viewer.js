// The embeddable viewer: the events a viewer token may read (one tenant's, or
// one object's), with filters, an object's timeline and a CSV export. It needs
// nothing but the token in its URL (`/viewer?token=…`), and is themed by
// `accent=%23RRGGBB` and `dark=1`. Every request carries the token; the APIs
// decide what it may see, the page only shows it.

const params = new URLSearchParams(location.search);
const token = params.get('token') || '';
const $ = (sel) => document.querySelector(sel);
const PAGE_SIZE = 25;

const timeFormat = new Intl.DateTimeFormat(undefined, {
  year: 'numeric', month: 'short', day: 'numeric', hour: '2-digit', minute: '2-digit', second: '2-digit',
});

/** An element with attributes (`text` sets its text) and children. */
function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null) continue;
    if (k === 'text') node.textContent = v; else node.setAttribute(k, v);
  }
  node.append(...children.filter((c) => c !== null && c !== undefined));
  return node;
}

function theme() {
  const accent = params.get('accent') || '';
  if (/^#[0-9a-fA-F]{3,8}$/.test(accent)) document.documentElement.style.setProperty('--accent', accent);
  if (['1', 'true', 'yes'].includes((params.get('dark') || '').toLowerCase())) {
    document.documentElement.classList.add('dark');
  }
}

/** What the token says it shows (its claims; the server checks them, this only names them). */
function claims() {
  try {
    const part = token.split('.')[1].replace(/-/g, '+').replace(/_/g, '/');
    return JSON.parse(atob(part + '='.repeat((4 - (part.length % 4)) % 4)));
  } catch {
    return {};
  }
}

function say(text, isError = false) {
  const box = $('[data-testid="viewer-message"]');
  box.textContent = text;
  box.hidden = !text;
  box.classList.toggle('error', isError);
}

async function get(url, accept = 'application/vnd.api+json') {
  const res = await fetch(url, { headers: { authorization: `Bearer ${token}`, accept } });
  if (res.status === 401) throw new Error('This link has expired. Ask for a new one.');
  if (!res.ok) {
    let detail = `the server answered ${res.status}`;
    try { detail = (await res.json()).errors?.[0]?.detail || detail; } catch { /* not JSON */ }
    throw new Error(res.status === 403 ? `Not visible with this link: ${detail}` : detail);
  }
  return res;
}

/** Which events are listed: the whole scope, or one object's timeline. */
const view = { object: null, next: null };

function filterQuery() {
  const form = $('[data-testid="viewer-filters"]');
  const parts = [`page[size]=${PAGE_SIZE}`];
  const actions = [...form.querySelectorAll('input[name="action"]:checked')].map((b) => b.value);
  if (actions.length) parts.push(`filter[action]=${actions.join(',')}`);
  const name = form.elements.eventName.value.trim();
  if (name) parts.push(`filter[eventName]=${encodeURIComponent(name)}`);
  return parts.join('&');
}

function listUrl(extra = '') {
  const base = view.object
    ? `/events/on/${encodeURIComponent(view.object.type)}/${encodeURIComponent(view.object.id)}`
    : '/api/data-events';
  return `${base}?${filterQuery()}${extra}`;
}

function objectLink(type, id) {
  const link = el('a', { href: '#', 'data-testid': 'viewer-object', text: `${type} ${id}` });
  link.addEventListener('click', (ev) => {
    ev.preventDefault();
    openTimeline(type, String(id));
  });
  return link;
}

function changeList(changes) {
  if (!changes || typeof changes !== 'object') return null;
  const shown = (v) => {
    if (v && typeof v === 'object') return v.erased ? '[erased]' : v.masked ? '[masked]' : JSON.stringify(v);
    return v === null || v === undefined ? '—' : String(v);
  };
  const items = Object.entries(changes).slice(0, 5).map(([field, ch]) => el('li', {
    text: ch && ch.masked ? `${field}: changed (masked)` : `${field}: ${shown(ch?.prev)} → ${shown(ch?.next)}`,
  }));
  return items.length ? el('ul', { class: 'changes' }, ...items) : null;
}

function row(resource) {
  const a = resource.attributes || {};
  return el('li', { class: 'event', 'data-testid': 'viewer-event', 'data-tenant': a.tenantId || 'default' },
    el('time', { datetime: new Date(a.timestamp).toISOString(), text: timeFormat.format(new Date(a.timestamp)) }),
    el('span', { class: 'badge', text: a.action }),
    el('div', { class: 'who' },
      objectLink(a.actorType, a.actorId), document.createTextNode(' → '), objectLink(a.targetType, a.targetId),
      a.eventName ? el('span', { class: 'scope', text: ` · ${a.eventName}` }) : null,
      changeList(a.changes)));
}

async function load(append) {
  const list = $('[data-testid="viewer-events"]');
  const more = $('[data-testid="viewer-more"]');
  try {
    const url = append && view.next ? view.next : listUrl();
    const doc = await (await get(url)).json();
    if (!append) list.replaceChildren();
    const data = Array.isArray(doc.data) ? doc.data : [];
    list.append(...data.map(row));
    view.next = doc.links?.next || null;
    more.hidden = !view.next;
    say(list.children.length ? '' : 'No events.');
  } catch (err) {
    if (!append) list.replaceChildren();
    more.hidden = true;
    say(err.message, true);
  }
}

function openTimeline(type, id) {
  view.object = { type, id };
  $('[data-testid="viewer-crumbs"]').hidden = false;
  $('[data-testid="viewer-timeline-title"]').textContent = `Timeline of ${type} ${id}`;
  load(false);
}

function closeTimeline() {
  view.object = null;
  $('[data-testid="viewer-crumbs"]').hidden = true;
  load(false);
}

async function exportCsv(button) {
  button.disabled = true;
  try {
    const res = await get(listUrl('&format=csv'), 'text/csv');
    const href = URL.createObjectURL(await res.blob());
    const link = el('a', { href, download: 'audit-events.csv' });
    document.body.append(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(href), 10_000);
  } catch (err) {
    say(err.message, true);
  } finally {
    button.disabled = false;
  }
}

function start() {
  theme();
  if (!token) {
    say('This page needs a viewer link (…/viewer?token=…).', true);
    return;
  }
  const c = claims();
  const scope = c.scope ? `${c.scope.type} ${c.scope.id}` : 'all events';
  $('[data-testid="viewer-scope"]').textContent = `${scope} · ${c.tenant || 'default'}`
    + (c.exp ? ` · link valid until ${timeFormat.format(new Date(c.exp * 1000))}` : '');
  $('[data-testid="viewer-filters"]').addEventListener('submit', (ev) => { ev.preventDefault(); load(false); });
  $('[data-testid="viewer-more"]').addEventListener('click', () => load(true));
  $('[data-testid="viewer-back"]').addEventListener('click', closeTimeline);
  $('[data-testid="viewer-export"]').addEventListener('click', (ev) => exportCsv(ev.currentTarget));
  load(false);
}

start();
