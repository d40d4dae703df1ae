// The room list in the sidebar, kept sorted by id with one insertion per new room (loaded
// over REST page by page, then followed on /topic/rooms), the "new room" form, and the
// address of the open room (#/rooms/{id}), which decides the room shown.

import { $, el, big, isId, insertionIndex, setError, setDrawer } from './dom.js';
import { state, store, api } from './session.js';
import { selectRoom } from './messages.js';

/** Rooms fetched per page of GET /api/rooms (the server's maximum). */
const ROOM_PAGE = 1000;
/** Pages of rooms one load fetches at most (the server caps how many rooms exist). */
const MAX_ROOM_PAGES = 100;

const validRoom = (r) => r && isId(r.id) && typeof r.name === 'string';

/**
 * Fetches the rooms after `after` (all of them when empty) into the list, page by page.
 * Room ids only grow, so once the page follows /topic/rooms again after a reconnect, the
 * rooms after the highest id it knows are all it can have missed.
 */
export async function loadRooms(after = '') {
  let cursor = after;
  for (let pages = 0; pages < MAX_ROOM_PAGES; pages += 1) {
    const page = await api(`/api/rooms?limit=${ROOM_PAGE}${cursor ? `&after=${cursor}` : ''}`);
    if (!Array.isArray(page)) return;
    for (const room of page) addRoom(room);
    const last = page[page.length - 1];
    if (page.length < ROOM_PAGE || !validRoom(last)) return;
    cursor = last.id;
  }
}

export function clearRooms() {
  state.rooms.clear();
  state.roomOrder = [];
  state.roomNodes.clear();
  state.lastRoomId = '';
  state.currentRoomButton = null;
  $('#room-list').replaceChildren();
  $('#room-count').textContent = '';
}

/** Puts a new room in its place in the list: one insertion, whatever the list's length. */
export function addRoom(room) {
  if (!validRoom(room) || state.rooms.has(room.id)) return;
  state.rooms.set(room.id, room);
  const order = state.roomOrder;
  const i = insertionIndex(order.length, (k) => order[k], room.id);
  const li = roomItem(room);
  $('#room-list').insertBefore(li, i < order.length ? state.roomNodes.get(order[i]) : null);
  order.splice(i, 0, room.id);
  state.roomNodes.set(room.id, li);
  if (!state.lastRoomId || big(room.id) > big(state.lastRoomId)) state.lastRoomId = room.id;
  $('#room-count').textContent = String(order.length);
  if (state.room && state.room.id === room.id) markOpenRoom(room.id);
}

function roomItem(room) {
  const li = el('li');
  const button = el('button', 'room');
  button.type = 'button';
  button.dataset.roomId = room.id;
  button.setAttribute('data-testid', 'room-item');
  button.append(el('span', 'hash', '#'), el('span', 'room-name', room.name));
  button.addEventListener('click', () => openRoom(room.id));
  li.append(button);
  return li;
}

/** Marks the open room's button (and unmarks the one before). */
export function markOpenRoom(id) {
  if (state.currentRoomButton) state.currentRoomButton.removeAttribute('aria-current');
  const li = id ? state.roomNodes.get(id) : null;
  state.currentRoomButton = li ? li.firstChild : null;
  if (state.currentRoomButton) state.currentRoomButton.setAttribute('aria-current', 'true');
}

export async function createRoom(event) {
  event.preventDefault();
  const input = $('#new-room');
  const name = input.value.trim();
  setError($('#room-error'), '');
  if (!name) {
    setError($('#room-error'), 'Enter a name for the new room.');
    input.focus();
    return;
  }
  $('#create-room').disabled = true;
  try {
    const room = await api('/api/rooms', { method: 'POST', body: { name } });
    addRoom(room);
    input.value = '';
    if (validRoom(room)) openRoom(room.id);
  } catch (err) {
    setError($('#room-error'), err.message);
  } finally {
    $('#create-room').disabled = false;
  }
}

export function onRoomEvent(frame) {
  try { addRoom(JSON.parse(frame.body)); } catch { /* not a room: ignore */ }
}

// ----- the address of the open room -----

function openRoom(id) {
  const hash = `#/rooms/${id}`;
  if (location.hash !== hash) location.hash = hash; // -> hashchange -> route()
  else route();
}

function roomFromHash() {
  const m = /^#\/rooms\/(\d+)$/.exec(location.hash);
  return m ? m[1] : null;
}

function defaultRoom() {
  if (state.rooms.has(store.room)) return store.room;
  for (const r of state.rooms.values()) if (r.name === 'general') return r.id;
  return state.roomOrder[0] || null;
}

export function route() {
  if (!state.client) return;
  const id = roomFromHash();
  if (id) { selectRoom(id); return; }
  const fallback = defaultRoom();
  if (fallback) history.replaceState(null, '', `#/rooms/${fallback}`);
  if (fallback) selectRoom(fallback);
  else setDrawer(true);
}
