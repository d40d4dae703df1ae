// The STOMP connection, on the vendored @stomp/stompjs UMD bundle (the global `StompJs`,
// a classic script that index.html loads before these modules): the status badge,
// reconnects, and on each connect following /topic/rooms and resuming the open room from
// the newest message shown, so nothing is missed or repeated.

import { $, nextId, notice } from './dom.js';
import { state, signOut } from './session.js';
import { loadRooms, onRoomEvent } from './rooms.js';
import { maxId, loadLatest, onRoomMessage, unsubscribeRoom } from './messages.js';
import {
  roomOutbox, isOpen, removeEntry, settle, seenSince, checkRoom, onSendRefused, onCheckRefused,
  onConnectionLost,
} from './outbox.js';

export function setStatus(s) {
  const node = $('#status');
  node.dataset.state = s;
  node.textContent = {
    connecting: 'Connecting…', connected: 'Connected', reconnecting: 'Reconnecting…', offline: 'Offline',
  }[s];
  document.body.dataset.connection = s;
}

/**
 * Subscribes to the open room from the newest message shown (so nothing is missed or
 * repeated). Its RECEIPT comes after the replay: then the room's outbox is settled.
 */
export function subscribeRoom(r) {
  const c = state.client;
  if (!r || r !== state.room || !r.loaded || !c || !c.connected) return;
  unsubscribeRoom(r);
  const receipt = nextId('resume');
  c.watchForReceipt(receipt, () => {
    if (state.room === r) settle(r.id, (e) => seenSince(r, e.after));
  });
  const headers = { 'x-resume-after': maxId(r) || '0', receipt };
  r.sub = c.subscribe(`/topic/rooms.${r.id}`, (frame) => onRoomMessage(r, frame), headers);
}

/** Leaves the open room: its confirmed entries are done, the others are checked on their own. */
export function leaveRoom(r) {
  if (!r) return;
  unsubscribeRoom(r);
  for (const e of [...roomOutbox(r.id)]) if (e.state === 'sent') removeEntry(e);
  checkRoom(r.id);
}

/**
 * Follows room creation; once that is live (its RECEIPT), fetches the rooms created after
 * the newest one known, which covers what was created while the page was not following.
 */
function followRooms(c) {
  const receipt = nextId('rooms');
  c.watchForReceipt(receipt, () => {
    loadRooms(state.lastRoomId).catch(() => { /* the list stays as it was */ });
  });
  state.roomsSub = c.subscribe('/topic/rooms', onRoomEvent, { receipt });
}

async function onConnect() {
  setStatus('connected');
  followRooms(state.client);
  for (const roomId of [...state.outbox.keys()]) if (!isOpen(roomId)) checkRoom(roomId);
  const r = state.room;
  if (!r || !r.loaded) return;
  if (state.resync) {
    state.resync = false;
    try {
      if (!(await loadLatest(r))) return;
    } catch (err) {
      notice(`Could not reload the messages: ${err.message}`);
      return;
    }
  }
  subscribeRoom(r);
}

function onStompError(frame) {
  const headers = frame.headers || {};
  const message = headers.message || frame.body || 'unknown error';
  const receipt = headers['receipt-id'];
  if (receipt && onSendRefused(receipt, message)) return; // shown on the message itself
  if (receipt && state.checks.has(receipt)) {
    onCheckRefused(receipt, message);
    return;
  }
  if (message.startsWith('resume too far behind')) {
    // The server closes the connection after an ERROR; the next connect reloads.
    state.resync = true;
    return;
  }
  if (message.startsWith('invalid token')) {
    signOut(`The server did not accept your token: ${message}`);
    return;
  }
  notice(`Server error: ${message}`);
}

function onSocketClosed() {
  if (state.room) state.room.sub = null;
  state.roomsSub = null;
  onConnectionLost();
  if (state.client && state.client.active) setStatus('reconnecting');
}

export function connect() {
  const scheme = location.protocol === 'https:' ? 'wss' : 'ws';
  const connectHeaders = { login: state.nickname };
  if (state.info.auth === 'jwt') connectHeaders.passcode = state.token;
  const client = new StompJs.Client({
    brokerURL: `${scheme}://${location.host}/stomp`,
    connectHeaders,
    reconnectDelay: 1000,
    heartbeatIncoming: 10000,
    heartbeatOutgoing: 10000,
    connectionTimeout: 10000,
  });
  // Callbacks of a client replaced by signing out and in again are ignored.
  const mine = (fn) => (...args) => { if (state.client === client) fn(...args); };
  client.onConnect = mine(onConnect);
  client.onStompError = mine(onStompError);
  client.onWebSocketClose = mine(onSocketClosed);
  state.client = client;
  setStatus('connecting');
  client.activate();
}
