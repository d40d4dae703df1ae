// The chat page: plain JavaScript modules, no build step. It talks to the server it was
// loaded from: REST under /api for rooms and history, STOMP over WebSocket at /stomp for
// live messages, sending, and room-creation events.
//
// The modules: dom.js (helpers, formatting, a message's look), session.js (state, the REST
// client, sign-in and out), rooms.js (the room list, the open room's address), messages.js
// (the open room: history, live messages, scrolling), outbox.js (pending sends, receipts,
// resend), connection.js (the STOMP client, reconnect, resume), and this entry module: the
// composer and start-up (wiring the page's controls). The modules import one another in a
// cycle, which is safe: none calls another while loading; start() runs once all are loaded.

import { $, show, charCount, trimText, setError, setDrawer } from './dom.js';
import {
  state, store, api, claimsOf, nicknameProblem, join, enter, showLogin, changeName, tokenFromUrl,
} from './session.js';
import { createRoom, route } from './rooms.js';
import { scrollToBottom, onScroll } from './messages.js';
import { enqueue } from './outbox.js';
import { setStatus } from './connection.js';

/** Messages the outbox holds at most (sending or not sent); the composer refuses more. */
const MAX_PENDING = 50;

// ===== composer =====

export function setComposerEnabled(enabled) {
  const text = $('#composer-text');
  text.disabled = !enabled;
  $('#send').disabled = !enabled;
  const room = enabled && state.room && state.rooms.get(state.room.id);
  text.placeholder = enabled ? `Message ${room ? `#${room.name}` : 'the room'}` : 'Pick a room first';
}

function updateCharCount() {
  const text = $('#composer-text');
  const n = charCount(text.value);
  const max = state.info.maxTextChars;
  const counter = $('#char-count');
  counter.textContent = n > max * 0.8 ? `${n} / ${max}` : '';
  counter.classList.toggle('over', n > max);
  text.style.height = 'auto';
  text.style.height = `${Math.min(text.scrollHeight, 160)}px`;
}

/**
 * Why a text cannot be sent, or ''. Checked here first: the server answers a bad SEND with
 * ERROR and closes the connection.
 */
function textProblem(text) {
  if (!text) return 'Type a message first.';
  const n = charCount(text);
  const max = state.info.maxTextChars;
  if (n > max) return `Your message is too long: ${n} characters, at most ${max} are allowed.`;
  if (state.outboxCount >= MAX_PENDING) {
    return `${MAX_PENDING} of your messages are still waiting to be sent: wait for them, `
      + 'or discard the ones not sent.';
  }
  return '';
}

/** Puts the text in the outbox (shown at once, sent as soon as the connection allows) and empties the box. */
function send(event) {
  if (event) event.preventDefault();
  const r = state.room;
  const box = $('#composer-text');
  if (!r || !r.loaded) return;
  let text = trimText(box.value);
  if (typeof text.toWellFormed === 'function') text = text.toWellFormed();
  const problem = textProblem(text);
  setError($('#composer-error'), problem);
  if (problem) return;
  enqueue(r, text);
  box.value = '';
  updateCharCount();
  scrollToBottom();
}

function onComposerKey(event) {
  if (event.key === 'Enter' && !event.shiftKey && !event.isComposing) send(event);
}

// ===== start-up =====

function bind() {
  $('#login-form').addEventListener('submit', join);
  $('#new-room-form').addEventListener('submit', createRoom);
  $('#new-room').addEventListener('input', () => setError($('#room-error'), ''));
  $('#composer').addEventListener('submit', send);
  $('#composer-text').addEventListener('keydown', onComposerKey);
  $('#composer-text').addEventListener('input', () => { updateCharCount(); setError($('#composer-error'), ''); });
  $('#messages').addEventListener('scroll', onScroll, { passive: true });
  $('#jump-latest').addEventListener('click', scrollToBottom);
  $('#show-rooms').addEventListener('click', () => setDrawer(!document.body.classList.contains('rooms-open')));
  $('#scrim').addEventListener('click', () => setDrawer(false));
  $('#notice-close').addEventListener('click', () => show($('#notice'), false));
  $('#sign-out').addEventListener('click', changeName);
  window.addEventListener('hashchange', route);
  window.addEventListener('beforeunload', (event) => {
    if (state.outboxCount > 0) event.preventDefault(); // the browser asks before what was typed is lost
  });
}

async function start() {
  bind();
  tokenFromUrl();
  setStatus('offline');
  try {
    const info = await api('/api/info');
    if (info && typeof info === 'object') Object.assign(state.info, info);
  } catch (err) {
    setError($('#login-error'), `The server cannot be reached (${err.message}). Reload to try again.`);
  }
  const jwt = state.info.auth === 'jwt';
  show($('#token-row'), jwt);
  if (jwt) $('#login-intro').textContent = 'This server signs you in with an access token. Your name comes from the token.';
  if (jwt && store.token && nicknameProblem(store.nickname)) {
    // Opened with ?token=: the name comes from the token's claims.
    const claims = claimsOf(store.token);
    const name = claims ? [...String(claims.name || claims.sub || '')].slice(0, 32).join('') : '';
    if (!nicknameProblem(name)) store.nickname = name;
  }
  if (!nicknameProblem(store.nickname) && (!jwt || store.token)) await enter();
  else showLogin();
}

start();
