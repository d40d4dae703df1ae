// The open room: its messages (ordered and deduplicated by id, grouped by sender and day),
// the newest page of history on opening and older pages as the reader scrolls up, live
// messages, keeping the view pinned to the bottom, and the room's heading.

import {
  $, show, big, isId, insertionIndex, setError, notice, messageNode, createdFormat, dayLabel,
  setDrawer,
} from './dom.js';
import { state, store, api } from './session.js';
import { addRoom, markOpenRoom } from './rooms.js';
import { claimPending, showOutbox } from './outbox.js';
import { leaveRoom, subscribeRoom } from './connection.js';
import { setComposerEnabled } from './app.js';

/** Messages fetched per history page (GET /api/rooms/{id}/messages). */
const PAGE = 50;
/** Consecutive messages of one sender within this are grouped. */
const GROUP_MS = 5 * 60 * 1000;
/** Distance from the bottom (px) under which new messages keep the view pinned. */
const STICKY_PX = 80;
/** Distance from the top (px) under which older history is loaded. */
const OLDER_PX = 150;

function newRoomView(id) {
  return {
    id,
    msgs: [], // sorted by id, ascending
    nodes: new Map(), // id -> <li>
    loaded: false,
    hasMore: false,
    loadingOlder: false,
    sub: null,
  };
}

export const maxId = (r) => (r.msgs.length ? r.msgs[r.msgs.length - 1].id : null);

export function validMessage(m, roomId) {
  return m && isId(m.id) && m.roomId === roomId && typeof m.sender === 'string'
    && typeof m.text === 'string';
}

/** Sets the day divider and the grouping of the message at index i. */
function decorate(r, i) {
  const m = r.msgs[i];
  if (!m) return;
  const node = r.nodes.get(m.id);
  const prev = r.msgs[i - 1];
  const date = new Date(m.sentAt);
  const prevDate = prev ? new Date(prev.sentAt) : null;
  const valid = !Number.isNaN(date.getTime());
  const newDay = valid && (!prevDate || prevDate.toDateString() !== date.toDateString());
  node.classList.toggle('new-day', newDay);
  node.firstChild.textContent = newDay ? dayLabel(date) : '';
  const grouped = !newDay && prev && prev.sender === m.sender && valid
    && date - prevDate >= 0 && date - prevDate < GROUP_MS;
  node.classList.toggle('grouped', Boolean(grouped));
}

const byId = (x, y) => (big(x.id) < big(y.id) ? -1 : 1);

/**
 * Inserts messages (any order) by id; skips ones already shown. Returns how many were new.
 * Each of mine takes the place of the outbox entry it confirms (oldest first, hence the sort).
 */
function addMessages(r, list) {
  const box = $('#message-list');
  const fresh = list.filter((m) => validMessage(m, r.id) && !r.nodes.has(m.id)).sort(byId);
  let added = 0;
  for (const m of fresh) {
    if (r.nodes.has(m.id)) continue; // the same id twice in one list
    claimPending(r.id, m);
    const lo = insertionIndex(r.msgs.length, (k) => r.msgs[k].id, m.id);
    const node = messageNode(m);
    const next = r.msgs[lo];
    box.insertBefore(node, next ? r.nodes.get(next.id) : null);
    r.msgs.splice(lo, 0, m);
    r.nodes.set(m.id, node);
    decorate(r, lo);
    decorate(r, lo + 1);
    added += 1;
  }
  updateEmpty(r);
  return added;
}

/** "No messages yet" while the room has neither messages nor any of mine waiting. */
export function updateEmpty(r) {
  if (r !== state.room) return;
  show($('#empty'), r.loaded && r.msgs.length === 0 && !state.outbox.has(r.id));
}

function renderHistoryState(r) {
  const node = $('#history-state');
  if (!r || !r.loaded) { node.textContent = r ? 'Loading messages…' : ''; node.dataset.state = 'loading'; return; }
  if (r.loadingOlder) { node.textContent = 'Loading older messages…'; node.dataset.state = 'loading'; return; }
  if (r.hasMore) { node.textContent = 'Scroll up for older messages'; node.dataset.state = 'more'; return; }
  const room = state.rooms.get(r.id);
  node.textContent = r.msgs.length ? `This is the beginning of #${room ? room.name : r.id}` : '';
  node.dataset.state = 'start';
}

const scroller = () => $('#messages');
export const nearBottom = () => {
  const s = scroller();
  return s.scrollHeight - s.scrollTop - s.clientHeight < STICKY_PX;
};
export function scrollToBottom() {
  const s = scroller();
  s.scrollTop = s.scrollHeight;
  show($('#jump-latest'), false);
}

function clearMessages(r) {
  r.msgs = [];
  r.nodes = new Map();
  $('#message-list').replaceChildren();
}

/** Shows the newest page of history of room r (replacing what was shown). */
export async function loadLatest(r) {
  const page = await api(`/api/rooms/${r.id}/messages?limit=${PAGE}`);
  if (state.room !== r) return false;
  clearMessages(r);
  r.loaded = true;
  addMessages(r, Array.isArray(page) ? page : []);
  r.hasMore = Array.isArray(page) && page.length === PAGE;
  renderHistoryState(r);
  scrollToBottom();
  return true;
}

async function loadOlder(r) {
  if (!r || r !== state.room || !r.loaded || r.loadingOlder || !r.hasMore || !r.msgs.length) return;
  r.loadingOlder = true;
  renderHistoryState(r);
  try {
    const page = await api(`/api/rooms/${r.id}/messages?before=${r.msgs[0].id}&limit=${PAGE}`);
    if (state.room !== r) return;
    const s = scroller();
    const fromBottom = s.scrollHeight - s.scrollTop;
    addMessages(r, Array.isArray(page) ? page : []);
    r.hasMore = Array.isArray(page) && page.length === PAGE;
    s.scrollTop = s.scrollHeight - fromBottom; // keep what the reader looks at in place
  } catch (err) {
    notice(`Could not load older messages: ${err.message}`);
  } finally {
    r.loadingOlder = false;
    renderHistoryState(r);
  }
  fillViewport(r);
}

/** Loads more history while the list does not fill the view (nothing to scroll). */
function fillViewport(r) {
  const s = scroller();
  if (r === state.room && r.hasMore && s.scrollHeight <= s.clientHeight + OLDER_PX) {
    setTimeout(() => loadOlder(r), 0);
  }
}

export function onScroll() {
  const r = state.room;
  if (scroller().scrollTop < OLDER_PX) loadOlder(r);
  if (nearBottom()) show($('#jump-latest'), false);
}

export function onRoomMessage(r, frame) {
  if (state.room !== r) return;
  let m;
  try { m = JSON.parse(frame.body); } catch { return; }
  const stick = nearBottom();
  if (addMessages(r, [m]) === 0) return;
  if (!r.hasMore) renderHistoryState(r);
  if (stick || m.sender === state.me) scrollToBottom();
  else show($('#jump-latest'), true);
}


export function unsubscribeRoom(r) {
  if (r && r.sub) {
    try { r.sub.unsubscribe(); } catch { /* connection already gone */ }
    r.sub = null;
  }
}

export async function selectRoom(id) {
  setDrawer(false);
  if (state.room && state.room.id === id) return;
  leaveRoom(state.room);
  const r = newRoomView(id);
  state.room = r;
  clearMessages(r);
  showOutbox(r);
  show($('#empty'), false);
  show($('#jump-latest'), false);
  setError($('#composer-error'), '');
  markOpenRoom(id);
  renderRoomHead();
  renderHistoryState(r);
  setComposerEnabled(true);
  if (!state.rooms.has(id)) {
    try {
      addRoom(await api(`/api/rooms/${id}`));
    } catch (err) {
      if (state.room !== r) return;
      state.room = null;
      showOutbox(null);
      renderRoomHead();
      setComposerEnabled(false);
      notice(err.status === 404 ? `Room ${id} does not exist.` : `Could not open the room: ${err.message}`);
      history.replaceState(null, '', location.pathname + location.search);
      setDrawer(true);
      return;
    }
    if (state.room !== r) return;
    renderRoomHead();
  }
  store.room = id;
  try {
    if (!(await loadLatest(r))) return;
  } catch (err) {
    if (state.room === r) notice(`Could not load the messages: ${err.message}`);
    return;
  }
  subscribeRoom(r);
  fillViewport(r);
  if (window.matchMedia('(min-width: 760px)').matches) $('#composer-text').focus();
}

function renderRoomHead() {
  const r = state.room;
  const room = r && state.rooms.get(r.id);
  $('#room-title').textContent = room ? `# ${room.name}` : (r ? 'Loading…' : 'Pick a room');
  document.title = room ? `#${room.name} · Chat` : 'Chat';
  const created = room ? new Date(room.createdAt) : null;
  if (r && !$('#composer-text').disabled) setComposerEnabled(true);
  $('#room-sub').textContent = created && !Number.isNaN(created.getTime())
    ? `created ${createdFormat.format(created)}` : '';
}
