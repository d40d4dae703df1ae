// Who is signed in and what the page knows: what it remembers across visits (`store`:
// nickname and open room in localStorage, the token only in sessionStorage), its live
// state (`state`, shared by every module), the REST client that carries the token, and
// signing in and out.

import { $, show, charCount, hasInvisible, setError, setDrawer } from './dom.js';
import { loadRooms, clearRooms, route } from './rooms.js';
import { clearOutbox } from './outbox.js';
import { connect, setStatus } from './connection.js';

export const store = {
  get nickname() { return localStorage.getItem('chat.nickname') || ''; },
  set nickname(v) { localStorage.setItem('chat.nickname', v); },
  // The token is a credential: it lives only as long as the tab.
  get token() { return sessionStorage.getItem('chat.token') || ''; },
  set token(v) { if (v) sessionStorage.setItem('chat.token', v); else sessionStorage.removeItem('chat.token'); },
  get room() { return localStorage.getItem('chat.room') || ''; },
  set room(v) { localStorage.setItem('chat.room', v); },
};

export const state = {
  info: { auth: 'guest', maxTextChars: 2000, version: '' },
  nickname: '',
  token: '',
  /** Display name used to mark one's own messages. */
  me: '',
  /** Rooms by id. */
  rooms: new Map(),
  /** Room ids in list order (ascending), and each room's <li>. */
  roomOrder: [],
  roomNodes: new Map(),
  /** Highest room id known: room ids only grow, so a reconnect fetches only the rooms after it. */
  lastRoomId: '',
  /** The room button marked as the open room. */
  currentRoomButton: null,
  /** Messages typed and not yet confirmed, per room id, oldest first (see the outbox). */
  outbox: new Map(),
  outboxCount: 0,
  /** Rooms whose outbox was checked on this connection: what is typed there goes out at once. */
  settled: new Set(),
  /** Check subscriptions under way (receipt id -> room id), for rooms that are not open. */
  checks: new Map(),
  /** The open room (see newRoomView in messages.js), or null. */
  room: null,
  /** The stompjs Client while signed in. */
  client: null,
  roomsSub: null,
  /** Set by a "resume too far behind" ERROR: reload the open room on the next connect. */
  resync: false,
};

/** Calls the REST API; throws an Error carrying the server's JSON message and the status. */
export async function api(path, { method = 'GET', body } = {}) {
  const headers = { Accept: 'application/json' };
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  if (state.token) headers.Authorization = `Bearer ${state.token}`;
  let res;
  try {
    res = await fetch(path, {
      method, headers, cache: 'no-store',
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch {
    const err = new Error('The server cannot be reached.');
    err.status = 0;
    throw err;
  }
  const text = await res.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch { data = null; }
  if (!res.ok) {
    const err = new Error((data && typeof data.message === 'string' && data.message)
      || `${res.status} ${res.statusText}`.trim());
    err.status = res.status;
    err.code = data && data.error;
    if (res.status === 401 && state.info.auth === 'jwt' && path !== '/api/info') {
      signOut(`The server did not accept your token: ${err.message}`);
    }
    throw err;
  }
  return data;
}

// ===== sign-in and out =====

export function claimsOf(token) {
  try {
    const part = token.split('.')[1].replace(/-/g, '+').replace(/_/g, '/');
    const bin = atob(part.padEnd(Math.ceil(part.length / 4) * 4, '='));
    const bytes = Uint8Array.from(bin, (c) => c.charCodeAt(0));
    return JSON.parse(new TextDecoder().decode(bytes));
  } catch {
    return null;
  }
}

export function nicknameProblem(name) {
  if (!name) return 'Enter a nickname.';
  if (charCount(name) > 32) return 'A nickname has at most 32 characters.';
  if (hasInvisible(name)) return 'A nickname cannot contain control or invisible characters.';
  return '';
}

export async function join(event) {
  event.preventDefault();
  const nickname = $('#nickname').value.trim();
  const token = $('#token').value.trim();
  const err = $('#login-error');
  const problem = nicknameProblem(nickname);
  if (problem) { setError(err, problem); $('#nickname').focus(); return; }
  if (state.info.auth === 'jwt' && !token) {
    setError(err, 'This server requires an access token.');
    $('#token').focus();
    return;
  }
  setError(err, '');
  store.nickname = nickname;
  store.token = state.info.auth === 'jwt' ? token : '';
  await enter();
}

export async function enter() {
  state.nickname = store.nickname;
  state.token = state.info.auth === 'jwt' ? store.token : '';
  const claims = state.token ? claimsOf(state.token) : null;
  state.me = (claims && (claims.name || claims.sub)) || state.nickname;
  $('#join').disabled = true;
  try {
    clearRooms();
    await loadRooms();
  } catch (err) {
    setError($('#login-error'), err.status === 401
      ? `The server did not accept your token: ${err.message}`
      : `Could not load the rooms: ${err.message}`);
    showLogin();
    return;
  } finally {
    $('#join').disabled = false;
  }
  document.body.classList.remove('signed-out');
  show($('#login'), false);
  show($('#app'), true);
  $('#whoami').textContent = state.me;
  show($('#whoami'), true);
  show($('#sign-out'), true);
  connect();
  route();
}

export function showLogin() {
  document.body.classList.add('signed-out');
  show($('#app'), false);
  show($('#login'), true);
  show($('#whoami'), false);
  show($('#sign-out'), false);
  // Fill in what is remembered, but never over what was typed already.
  if (!$('#nickname').value) $('#nickname').value = store.nickname;
  if (!$('#token').value) $('#token').value = store.token;
  $('#nickname').focus();
}

export function signOut(reason) {
  const client = state.client;
  state.client = null;
  if (client) client.deactivate();
  state.room = null;
  clearRooms();
  clearOutbox();
  setStatus('offline');
  setDrawer(false);
  if (reason) { store.token = ''; setError($('#login-error'), reason); }
  showLogin();
}

/** "Change name": signs out, after asking when typed messages would be dropped. */
export function changeName() {
  const n = state.outboxCount;
  if (n > 0 && !window.confirm(`${n === 1 ? '1 message is' : `${n} messages are`} not sent yet. `
    + 'Change name anyway and drop them?')) return;
  signOut('');
}

export function tokenFromUrl() {
  const url = new URL(location.href);
  const token = url.searchParams.get('token');
  if (token === null) return;
  store.token = token.trim();
  url.searchParams.delete('token'); // keep the credential out of the address bar and history
  history.replaceState(null, '', url.pathname + url.search + url.hash);
}
