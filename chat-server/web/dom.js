// Helpers of the chat page: DOM shorthands, ids (decimal strings of any length, compared
// as BigInt), the text rules shared with the server, the notice bar, the rooms drawer on
// phones, date formatting, and how one message looks (shared by the room's messages and
// the outbox's entries).

import { state } from './session.js';

/** Tags this page's receipt ids (a counter makes them unique), to tell pages apart in frame logs. */
const PAGE_TAG = Math.random().toString(36).slice(2, 10);

export const $ = (sel) => document.querySelector(sel);
export const el = (tag, cls, text) => {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined) e.textContent = text;
  return e;
};
export const show = (node, visible) => { node.hidden = !visible; };
export const big = (id) => BigInt(id);
export const isId = (v) => typeof v === 'string' && /^\d{1,40}$/.test(v);
/** Length in Unicode scalar values, as the server counts characters. */
export const charCount = (s) => [...s].length;
/** Trims what Rust's str::trim trims (JS \s lacks U+0085). */
export const trimText = (s) => s.replace(/^[\s\u0085]+|[\s\u0085]+$/g, '');
// Control and invisible characters (as the server refuses in names): a name
// with a zero-width or bidirectional mark could pass for another one.
export const hasInvisible = (s) => /[\p{Cc}\p{Cf}\u2028\u2029\u115F\u1160\u3164\uFFA0]/u.test(s);
let serial = 0;
/** A new receipt or subscription id, unique to this page. */
export const nextId = (kind) => `${kind}-${PAGE_TAG}-${(serial += 1)}`;

/** The index at which `id` keeps a list ascending by id (`idAt(i)`): O(1) at the end, else O(log n). */
export function insertionIndex(length, idAt, id) {
  const n = big(id);
  if (length === 0 || big(idAt(length - 1)) < n) return length;
  let lo = 0;
  let hi = length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (big(idAt(mid)) < n) lo = mid + 1; else hi = mid;
  }
  return lo;
}

export function setError(node, message) {
  node.textContent = message || '';
  show(node, Boolean(message));
}

let noticeTimer = 0;
export function notice(message, sticky = false) {
  $('#notice-text').textContent = message;
  show($('#notice'), true);
  clearTimeout(noticeTimer);
  if (!sticky) noticeTimer = setTimeout(() => show($('#notice'), false), 8000);
}

/** A stable hue per sender for the avatar. */
function hueOf(name) {
  let h = 0;
  for (const c of name) h = (h * 31 + c.codePointAt(0)) >>> 0;
  return h % 360;
}

const timeFormat = new Intl.DateTimeFormat(undefined, { hour: '2-digit', minute: '2-digit' });
const fullFormat = new Intl.DateTimeFormat(undefined, { dateStyle: 'full', timeStyle: 'medium' });
export const createdFormat = new Intl.DateTimeFormat(undefined, { dateStyle: 'medium' });
const dayFormat = new Intl.DateTimeFormat(undefined, { weekday: 'long', month: 'long', day: 'numeric', year: 'numeric' });

export function dayLabel(date) {
  const today = new Date();
  const key = (d) => `${d.getFullYear()}-${d.getMonth()}-${d.getDate()}`;
  if (key(date) === key(today)) return 'Today';
  const yesterday = new Date(today.getFullYear(), today.getMonth(), today.getDate() - 1);
  if (key(date) === key(yesterday)) return 'Yesterday';
  return dayFormat.format(date);
}

/** The frame of a message as shown: day divider, avatar, sender line, text. */
export function messageShell(sender, text, testid) {
  const li = el('li', 'msg');
  li.setAttribute('data-testid', testid);
  if (sender === state.me) li.classList.add('mine');
  const day = el('div', 'day');
  day.setAttribute('aria-hidden', 'true');
  const avatar = el('div', 'avatar', [...sender][0] ? [...sender][0].toUpperCase() : '?');
  avatar.style.setProperty('--hue', hueOf(sender));
  avatar.setAttribute('aria-hidden', 'true');
  const meta = el('div', 'meta');
  const name = el('span', 'sender', sender);
  name.setAttribute('data-testid', 'sender');
  meta.append(name);
  const para = el('p', 'text', text); // text, never HTML
  para.setAttribute('data-testid', `${testid}-text`);
  const body = el('div', 'body');
  body.append(meta, para);
  li.append(day, avatar, body);
  return { li, meta, body };
}

export function messageNode(m) {
  const { li, meta } = messageShell(m.sender, m.text, 'message');
  li.dataset.id = m.id;
  li.dataset.sender = m.sender;
  const time = el('time', 'time');
  const date = new Date(m.sentAt);
  if (!Number.isNaN(date.getTime())) {
    time.dateTime = m.sentAt;
    time.textContent = timeFormat.format(date);
    time.title = fullFormat.format(date);
  }
  meta.append(time);
  return li;
}

/** Opens or closes the rooms drawer (phones). */
export function setDrawer(open) {
  document.body.classList.toggle('rooms-open', open);
  $('#show-rooms').setAttribute('aria-expanded', String(open));
  show($('#scrim'), open);
}
