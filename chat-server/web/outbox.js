// The outbox: what was typed, until the server has it.
//
// A typed message goes into its room's outbox and shows at once below the
// room's messages as "sending…". Every SEND carries a receipt: the RECEIPT
// means the server accepted it, and its MESSAGE (mine, same text, newer than
// the room was when it was typed; the oldest such entry first) takes the
// entry's place on screen. When the connection drops before the RECEIPT, or
// an ERROR names the receipt, the entry is "unsure" until the room's next
// resume: the replay claims it if the server had accepted it after all;
// otherwise it is sent once more, in the original order. A second failure,
// or a refusal no resend can fix, leaves it "Not sent" with the reason and
// Retry and Discard buttons. Nothing is ever resent in a loop.
//
// An entry's state: 'queued' (waits for the connection and its room's
// check), 'sending' (sent, no RECEIPT yet), 'sent' (RECEIPT, its MESSAGE
// not seen yet), 'unsure' (sent, then the connection dropped or the server
// refused it), 'failed' (not sent; the user decides).

import { $, el, show, big, nextId, messageShell } from './dom.js';
import { state } from './session.js';
import { maxId, validMessage, updateEmpty, nearBottom, scrollToBottom } from './messages.js';

/** Times the page sends one message by itself: once, and once more after a lost connection. */
const AUTO_SENDS = 2;
/** Refusals that sending again cannot fix: such a message is "Not sent" at once. */
const PERMANENT = /^(unknown room|text is empty|text too long|bad message|clients may not send|unknown destination)/;

const FAILED_UNKNOWN = 'The connection was lost and too much was posted meanwhile to tell whether it '
  + 'arrived: look for it above before you retry.';
const FAILED_LOST = 'The connection was lost before the server confirmed it.';

export const roomOutbox = (roomId) => state.outbox.get(roomId) || [];
export const isOpen = (roomId) => Boolean(state.room && state.room.id === roomId);

/** Puts a typed message in the open room's outbox; it goes out when the room is ready. */
export function enqueue(r, text) {
  const e = {
    roomId: r.id, text, after: maxId(r) || '0', state: 'queued', sends: 0, reason: '', receipt: '',
    node: null, gone: false,
  };
  if (!state.outbox.has(r.id)) state.outbox.set(r.id, []);
  state.outbox.get(r.id).push(e);
  state.outboxCount += 1;
  renderEntry(e);
  updateEmpty(r);
  flushRoom(r.id);
}

export function removeEntry(e) {
  const list = roomOutbox(e.roomId);
  const i = list.indexOf(e);
  if (i < 0) return;
  list.splice(i, 1);
  if (!list.length) state.outbox.delete(e.roomId);
  state.outboxCount -= 1;
  e.gone = true;
  if (e.node) e.node.remove();
  e.node = null;
  if (state.room) updateEmpty(state.room);
}

/** My message m arrived in the room: it confirms the oldest entry it can be. */
export function claimPending(roomId, m) {
  if (m.sender !== state.me) return;
  const n = big(m.id);
  const e = roomOutbox(roomId).find((p) => p.sends > 0 && p.state !== 'failed' && p.text === m.text
    && n > big(p.after));
  if (e) removeEntry(e);
}

/** Sends the room's queued messages, in order, once its outbox is checked on this connection. */
function flushRoom(roomId) {
  const c = state.client;
  if (!c || !c.connected || !state.settled.has(roomId)) return;
  for (const e of roomOutbox(roomId)) if (e.state === 'queued') transmit(c, e);
}

function transmit(c, e) {
  e.sends += 1;
  e.state = 'sending';
  e.receipt = nextId('send');
  c.watchForReceipt(e.receipt, () => onSendReceipt(e));
  c.publish({
    destination: `/app/rooms.${e.roomId}`,
    body: JSON.stringify({ text: e.text }),
    headers: { 'content-type': 'application/json', receipt: e.receipt },
  });
  renderEntry(e);
}

/** Accepted: its MESSAGE comes in the open room; elsewhere it is in history, done. */
function onSendReceipt(e) {
  if (e.gone) return;
  if (!isOpen(e.roomId)) { removeEntry(e); return; }
  e.state = 'sent';
  renderEntry(e);
}

/** An ERROR for a SEND of the outbox (the connection closes next). False when it names none. */
export function onSendRefused(receiptId, reason) {
  const e = [...state.outbox.values()].flat().find((p) => p.receipt === receiptId);
  if (!e || e.gone) return false;
  if (PERMANENT.test(reason)) {
    fail(e, reason);
  } else {
    e.state = 'unsure';
    e.reason = reason;
    renderEntry(e);
  }
  return true;
}

function fail(e, reason) {
  e.state = 'failed';
  e.reason = reason;
  renderEntry(e);
}

/** The connection dropped: a SEND without its RECEIPT may or may not have arrived. */
export function onConnectionLost() {
  state.settled.clear();
  state.checks.clear();
  for (const list of state.outbox.values()) {
    for (const e of list) {
      if (e.state === 'sending') { e.state = 'unsure'; renderEntry(e); }
    }
  }
}

/**
 * After the room's resume on this connection, whose replay claimed what the server had
 * accepted: an unsure entry was not accepted and goes out once more, unless it went out
 * twice already or the replay did not reach back to it (`seen(e)` is false).
 */
export function settle(roomId, seen) {
  for (const e of [...roomOutbox(roomId)]) {
    if (e.state === 'sent') removeEntry(e); // accepted; its message is shown or in history
    if (e.state !== 'unsure') continue;
    if (!seen(e)) fail(e, FAILED_UNKNOWN);
    else if (e.sends >= AUTO_SENDS) fail(e, e.reason || FAILED_LOST);
    else e.state = 'queued';
  }
  state.settled.add(roomId);
  flushRoom(roomId);
}

/** Whether the open room's list holds every message after `after` (not so after a reload). */
export const seenSince = (r, after) => !r.hasMore || !r.msgs.length || big(after) + 1n >= big(r.msgs[0].id);

/**
 * Settles a room that is not open: a resume SUBSCRIBE from its oldest unsure entry, whose
 * replay claims what was accepted, ended by its RECEIPT.
 */
export function checkRoom(roomId) {
  const c = state.client;
  if (!c || !c.connected || state.settled.has(roomId) || [...state.checks.values()].includes(roomId)) return;
  const unsure = roomOutbox(roomId).filter((e) => e.state === 'unsure');
  if (!unsure.length) { settle(roomId, () => true); return; }
  const from = unsure.map((e) => e.after).reduce((x, y) => (big(y) < big(x) ? y : x));
  const receipt = nextId('check');
  let sub = null;
  state.checks.set(receipt, roomId);
  c.watchForReceipt(receipt, () => {
    state.checks.delete(receipt);
    try { sub.unsubscribe(); } catch { /* the connection is gone */ }
    settle(roomId, () => true);
  });
  sub = c.subscribe(`/topic/rooms.${roomId}`, (frame) => {
    let m;
    try { m = JSON.parse(frame.body); } catch { return; }
    if (validMessage(m, roomId)) claimPending(roomId, m);
  }, { 'x-resume-after': from, receipt });
}

/** An ERROR for a check: its unsure entries cannot be checked, so they are not sent again. */
export function onCheckRefused(receiptId, reason) {
  const roomId = state.checks.get(receiptId);
  state.checks.delete(receiptId);
  const why = reason.startsWith('resume too far behind') ? FAILED_UNKNOWN : reason;
  for (const e of roomOutbox(roomId)) if (e.state === 'unsure') fail(e, why);
}

function retry(e) {
  if (e.gone || e.state !== 'failed') return;
  const list = roomOutbox(e.roomId);
  list.push(...list.splice(list.indexOf(e), 1)); // it goes out after what is waiting
  if (isOpen(e.roomId) && state.room.loaded) e.after = maxId(state.room) || e.after;
  Object.assign(e, { state: 'queued', sends: 0, reason: '' });
  if (e.node) $('#pending-list').append(e.node);
  renderEntry(e);
  flushRoom(e.roomId);
}

export function clearOutbox() {
  state.outbox.clear();
  state.outboxCount = 0;
  state.settled.clear();
  state.checks.clear();
  $('#pending-list').replaceChildren();
}

// ----- the outbox on screen: the open room's entries, below its messages -----

const ENTRY_LABEL = {
  queued: 'Sending…', sending: 'Sending…', unsure: 'Sending…', sent: 'Sent', failed: 'Not sent',
};

/** Shows room r's entries (and no other room's) in the pending list. */
export function showOutbox(r) {
  for (const list of state.outbox.values()) for (const e of list) e.node = null;
  $('#pending-list').replaceChildren();
  if (r) for (const e of roomOutbox(r.id)) renderEntry(e);
}

function renderEntry(e) {
  if (e.gone || !isOpen(e.roomId)) return;
  const stick = nearBottom(); // a "Not sent" line makes the entry taller: keep the bottom in view
  if (!e.node) {
    e.node = entryNode(e);
    $('#pending-list').append(e.node);
  }
  e.node.dataset.state = e.state;
  e.node.querySelector('.pending-status').textContent = ENTRY_LABEL[e.state];
  const failed = e.state === 'failed';
  show(e.node.querySelector('.pending-failure'), failed);
  e.node.querySelector('.pending-reason').textContent = failed ? e.reason : '';
  if (stick) scrollToBottom();
}

function entryNode(e) {
  const { li, meta, body } = messageShell(state.me, e.text, 'pending');
  li.classList.add('pending');
  const status = el('span', 'pending-status');
  status.setAttribute('data-testid', 'pending-status');
  meta.append(status);
  const failure = el('div', 'pending-failure');
  failure.setAttribute('role', 'alert');
  const reason = el('span', 'pending-reason');
  reason.setAttribute('data-testid', 'pending-reason');
  const actions = el('span', 'pending-actions');
  actions.append(entryButton('Retry', 'retry', () => retry(e)),
    entryButton('Discard', 'discard', () => removeEntry(e)));
  failure.append(reason, actions);
  body.append(failure);
  return li;
}

function entryButton(label, testid, onClick) {
  const button = el('button', 'link-button', label);
  button.type = 'button';
  button.setAttribute('data-testid', testid);
  button.addEventListener('click', onClick);
  return button;
}
