// The chat page: plain JavaScript, no build step. It talks to the server it was
// loaded from: REST under /api for rooms and history, STOMP over WebSocket at
// /stomp (the vendored @stomp/stompjs UMD bundle, global `StompJs`) for live
// messages, sending, and room-creation events.
//
// Layout of this file: small helpers; the REST client; the room list; the
// message list of the open room (ordered and deduplicated by message id); the
// STOMP connection (reconnects and resumes from the highest id seen); the
// composer; sign-in; start-up.
'use strict';

(() => {
  /** Messages fetched per history page (GET /api/rooms/{id}/messages). */
  const PAGE = 50;
  /** Rooms fetched per page of GET /api/rooms (the server's maximum). */
  const ROOM_PAGE = 1000;
  /** Consecutive messages of one sender within this are grouped. */
  const GROUP_MS = 5 * 60 * 1000;
  /** Distance from the bottom (px) under which new messages keep the view pinned. */
  const STICKY_PX = 80;
  /** Distance from the top (px) under which older history is loaded. */
  const OLDER_PX = 150;

  const store = {
    get nickname() { return localStorage.getItem('chat.nickname') || ''; },
    set nickname(v) { localStorage.setItem('chat.nickname', v); },
    // The token is a credential: it lives only as long as the tab.
    get token() { return sessionStorage.getItem('chat.token') || ''; },
    set token(v) { if (v) sessionStorage.setItem('chat.token', v); else sessionStorage.removeItem('chat.token'); },
    get room() { return localStorage.getItem('chat.room') || ''; },
    set room(v) { localStorage.setItem('chat.room', v); },
  };

  const state = {
    info: { auth: 'guest', maxTextChars: 2000, version: '' },
    nickname: '',
    token: '',
    /** Display name used to mark one's own messages. */
    me: '',
    /** Rooms by id. */
    rooms: new Map(),
    /** The open room (see newRoomView), or null. */
    room: null,
    /** The stompjs Client while signed in. */
    client: null,
    roomsSub: null,
    /** Set by a "resume too far behind" ERROR: reload the open room on the next connect. */
    resync: false,
    everConnected: false,
  };

  // ===== helpers =====

  const $ = (sel) => document.querySelector(sel);
  const el = (tag, cls, text) => {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined) e.textContent = text;
    return e;
  };
  const show = (node, visible) => { node.hidden = !visible; };
  const big = (id) => BigInt(id);
  const isId = (v) => typeof v === 'string' && /^\d{1,40}$/.test(v);
  /** Length in Unicode scalar values, as the server counts characters. */
  const charCount = (s) => [...s].length;
  /** Trims what Rust's str::trim trims (JS \s lacks U+0085). */
  const trimText = (s) => s.replace(/^[\s\u0085]+|[\s\u0085]+$/g, '');
  const hasControl = (s) => /[\u0000-\u001f\u007f-\u009f]/.test(s);

  function setError(node, message) {
    node.textContent = message || '';
    show(node, Boolean(message));
  }

  let noticeTimer = 0;
  function notice(message, sticky = false) {
    $('#notice-text').textContent = message;
    show($('#notice'), true);
    clearTimeout(noticeTimer);
    if (!sticky) noticeTimer = setTimeout(() => show($('#notice'), false), 8000);
  }

  function claimsOf(token) {
    try {
      const part = token.split('.')[1].replace(/-/g, '+').replace(/_/g, '/');
      const bin = atob(part.padEnd(Math.ceil(part.length / 4) * 4, '='));
      const bytes = Uint8Array.from(bin, (c) => c.charCodeAt(0));
      return JSON.parse(new TextDecoder().decode(bytes));
    } catch {
      return null;
    }
  }

  /** A stable hue per sender for the avatar. */
  function hueOf(name) {
    let h = 0;
    for (const c of name) h = (h * 31 + c.codePointAt(0)) >>> 0;
    return h % 360;
  }

  const timeFormat = new Intl.DateTimeFormat(undefined, { hour: '2-digit', minute: '2-digit' });
  const fullFormat = new Intl.DateTimeFormat(undefined, { dateStyle: 'full', timeStyle: 'medium' });
  const createdFormat = new Intl.DateTimeFormat(undefined, { dateStyle: 'medium' });
  const dayFormat = new Intl.DateTimeFormat(undefined, { weekday: 'long', month: 'long', day: 'numeric', year: 'numeric' });

  function dayLabel(date) {
    const today = new Date();
    const key = (d) => `${d.getFullYear()}-${d.getMonth()}-${d.getDate()}`;
    if (key(date) === key(today)) return 'Today';
    const yesterday = new Date(today.getFullYear(), today.getMonth(), today.getDate() - 1);
    if (key(date) === key(yesterday)) return 'Yesterday';
    return dayFormat.format(date);
  }

  // ===== REST =====

  /** Calls the REST API; throws an Error carrying the server's JSON message and the status. */
  async function api(path, { method = 'GET', body } = {}) {
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

  // ===== rooms =====

  const validRoom = (r) => r && isId(r.id) && typeof r.name === 'string';

  async function loadRooms() {
    const all = [];
    let after = '';
    for (;;) {
      const page = await api(`/api/rooms?limit=${ROOM_PAGE}${after ? `&after=${after}` : ''}`);
      if (!Array.isArray(page)) break;
      all.push(...page);
      if (page.length < ROOM_PAGE) break;
      after = page[page.length - 1].id;
    }
    for (const r of all) if (validRoom(r)) state.rooms.set(r.id, r);
    renderRooms();
  }

  function addRoom(room) {
    if (!validRoom(room)) return;
    state.rooms.set(room.id, room);
    renderRooms();
  }

  function renderRooms() {
    const list = $('#room-list');
    const rooms = [...state.rooms.values()].sort((a, b) => (big(a.id) < big(b.id) ? -1 : 1));
    const items = rooms.map((room) => {
      const li = el('li');
      const button = el('button', 'room');
      button.type = 'button';
      button.dataset.roomId = room.id;
      button.setAttribute('data-testid', 'room-item');
      button.append(el('span', 'hash', '#'), el('span', 'room-name', room.name));
      if (state.room && state.room.id === room.id) button.setAttribute('aria-current', 'true');
      button.addEventListener('click', () => openRoom(room.id));
      li.append(button);
      return li;
    });
    list.replaceChildren(...items);
    $('#room-count').textContent = rooms.length ? String(rooms.length) : '';
  }

  async function createRoom(event) {
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

  function onRoomEvent(frame) {
    try { addRoom(JSON.parse(frame.body)); } catch { /* not a room: ignore */ }
  }

  // ===== the open room: its messages =====

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

  const maxId = (r) => (r.msgs.length ? r.msgs[r.msgs.length - 1].id : null);

  function validMessage(m, roomId) {
    return m && isId(m.id) && m.roomId === roomId && typeof m.sender === 'string'
      && typeof m.text === 'string';
  }

  function messageNode(m) {
    const li = el('li', 'msg');
    li.dataset.id = m.id;
    li.dataset.sender = m.sender;
    li.setAttribute('data-testid', 'message');
    if (m.sender === state.me) li.classList.add('mine');
    const day = el('div', 'day');
    day.setAttribute('aria-hidden', 'true');
    const avatar = el('div', 'avatar', [...m.sender][0] ? [...m.sender][0].toUpperCase() : '?');
    avatar.style.setProperty('--hue', hueOf(m.sender));
    avatar.setAttribute('aria-hidden', 'true');
    const meta = el('div', 'meta');
    const sender = el('span', 'sender', m.sender);
    sender.setAttribute('data-testid', 'sender');
    const time = el('time', 'time');
    const date = new Date(m.sentAt);
    if (!Number.isNaN(date.getTime())) {
      time.dateTime = m.sentAt;
      time.textContent = timeFormat.format(date);
      time.title = fullFormat.format(date);
    }
    meta.append(sender, time);
    const text = el('p', 'text', m.text); // text, never HTML
    text.setAttribute('data-testid', 'message-text');
    const body = el('div', 'body');
    body.append(meta, text);
    li.append(day, avatar, body);
    return li;
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

  /** Inserts messages (any order) by id; skips ones already shown. Returns how many were new. */
  function addMessages(r, list) {
    const box = $('#message-list');
    let added = 0;
    for (const m of list) {
      if (!validMessage(m, r.id) || r.nodes.has(m.id)) continue;
      const n = big(m.id);
      let lo = 0;
      let hi = r.msgs.length;
      if (hi === 0 || big(r.msgs[hi - 1].id) < n) {
        lo = hi; // the usual case: newest
      } else {
        while (lo < hi) {
          const mid = (lo + hi) >> 1;
          if (big(r.msgs[mid].id) < n) lo = mid + 1; else hi = mid;
        }
      }
      const node = messageNode(m);
      const next = r.msgs[lo];
      box.insertBefore(node, next ? r.nodes.get(next.id) : null);
      r.msgs.splice(lo, 0, m);
      r.nodes.set(m.id, node);
      decorate(r, lo);
      decorate(r, lo + 1);
      added += 1;
    }
    show($('#empty'), r.loaded && r.msgs.length === 0);
    return added;
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
  const nearBottom = () => {
    const s = scroller();
    return s.scrollHeight - s.scrollTop - s.clientHeight < STICKY_PX;
  };
  function scrollToBottom() {
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
  async function loadLatest(r) {
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

  function onScroll() {
    const r = state.room;
    if (scroller().scrollTop < OLDER_PX) loadOlder(r);
    if (nearBottom()) show($('#jump-latest'), false);
  }

  function onRoomMessage(r, frame) {
    if (state.room !== r) return;
    let m;
    try { m = JSON.parse(frame.body); } catch { return; }
    const stick = nearBottom();
    if (addMessages(r, [m]) === 0) return;
    if (!r.hasMore) renderHistoryState(r);
    if (stick || m.sender === state.me) scrollToBottom();
    else show($('#jump-latest'), true);
  }

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
    const first = [...state.rooms.keys()].sort((a, b) => (big(a) < big(b) ? -1 : 1))[0];
    return first || null;
  }

  function route() {
    if (!state.client) return;
    const id = roomFromHash();
    if (id) { selectRoom(id); return; }
    const fallback = defaultRoom();
    if (fallback) history.replaceState(null, '', `#/rooms/${fallback}`);
    if (fallback) selectRoom(fallback);
    else setDrawer(true);
  }

  function unsubscribeRoom(r) {
    if (r && r.sub) {
      try { r.sub.unsubscribe(); } catch { /* connection already gone */ }
      r.sub = null;
    }
  }

  async function selectRoom(id) {
    setDrawer(false);
    if (state.room && state.room.id === id) return;
    unsubscribeRoom(state.room);
    const r = newRoomView(id);
    state.room = r;
    clearMessages(r);
    show($('#empty'), false);
    show($('#jump-latest'), false);
    setError($('#composer-error'), '');
    renderRooms();
    renderRoomHead();
    renderHistoryState(r);
    setComposerEnabled(true);
    if (!state.rooms.has(id)) {
      try {
        addRoom(await api(`/api/rooms/${id}`));
      } catch (err) {
        if (state.room !== r) return;
        state.room = null;
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

  // ===== STOMP =====

  function setStatus(s) {
    const node = $('#status');
    node.dataset.state = s;
    node.textContent = {
      connecting: 'Connecting…', connected: 'Connected', reconnecting: 'Reconnecting…', offline: 'Offline',
    }[s];
    document.body.dataset.connection = s;
  }

  /** Subscribes to the open room from the newest message shown (so nothing is missed or repeated). */
  function subscribeRoom(r) {
    const c = state.client;
    if (!r || r !== state.room || !r.loaded || !c || !c.connected) return;
    unsubscribeRoom(r);
    const headers = { 'x-resume-after': maxId(r) || '0' };
    r.sub = c.subscribe(`/topic/rooms.${r.id}`, (frame) => onRoomMessage(r, frame), headers);
  }

  async function onConnect() {
    const reconnect = state.everConnected;
    state.everConnected = true;
    setStatus('connected');
    state.roomsSub = state.client.subscribe('/topic/rooms', onRoomEvent);
    if (reconnect) loadRooms().catch(() => { /* the list stays as it was */ });
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
    const message = (frame.headers && frame.headers.message) || frame.body || 'unknown error';
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
    if (state.client && state.client.active) setStatus('reconnecting');
  }

  function connect() {
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
    state.everConnected = false;
    setStatus('connecting');
    client.activate();
  }

  // ===== composer =====

  function setComposerEnabled(enabled) {
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

  function send(event) {
    if (event) event.preventDefault();
    const r = state.room;
    const box = $('#composer-text');
    const error = $('#composer-error');
    if (!r || !r.loaded) return;
    let text = trimText(box.value);
    if (typeof text.toWellFormed === 'function') text = text.toWellFormed();
    const max = state.info.maxTextChars;
    // Checked here first: the server answers a bad SEND with ERROR and closes the connection.
    if (!text) {
      setError(error, 'Type a message first.');
      return;
    }
    const n = charCount(text);
    if (n > max) {
      setError(error, `Your message is too long: ${n} characters, at most ${max} are allowed.`);
      return;
    }
    if (!state.client || !state.client.connected) {
      setError(error, 'Not connected right now: your message was not sent. Try again in a moment.');
      return;
    }
    setError(error, '');
    state.client.publish({
      destination: `/app/rooms.${r.id}`,
      body: JSON.stringify({ text }),
      headers: { 'content-type': 'application/json' },
    });
    box.value = '';
    updateCharCount();
    scrollToBottom();
  }

  function onComposerKey(event) {
    if (event.key === 'Enter' && !event.shiftKey && !event.isComposing) send(event);
  }

  // ===== drawer (phones) =====

  function setDrawer(open) {
    document.body.classList.toggle('rooms-open', open);
    $('#show-rooms').setAttribute('aria-expanded', String(open));
    show($('#scrim'), open);
  }

  // ===== sign-in =====

  function nicknameProblem(name) {
    if (!name) return 'Enter a nickname.';
    if (charCount(name) > 32) return 'A nickname has at most 32 characters.';
    if (hasControl(name)) return 'A nickname cannot contain control characters.';
    return '';
  }

  async function join(event) {
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

  async function enter() {
    state.nickname = store.nickname;
    state.token = state.info.auth === 'jwt' ? store.token : '';
    const claims = state.token ? claimsOf(state.token) : null;
    state.me = (claims && (claims.name || claims.sub)) || state.nickname;
    $('#join').disabled = true;
    try {
      state.rooms.clear();
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

  function showLogin() {
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

  function signOut(reason) {
    const client = state.client;
    state.client = null;
    if (client) client.deactivate();
    state.room = null;
    state.rooms.clear();
    setStatus('offline');
    setDrawer(false);
    if (reason) { store.token = ''; setError($('#login-error'), reason); }
    showLogin();
  }

  // ===== start-up =====

  function tokenFromUrl() {
    const url = new URL(location.href);
    const token = url.searchParams.get('token');
    if (token === null) return;
    store.token = token.trim();
    url.searchParams.delete('token'); // keep the credential out of the address bar and history
    history.replaceState(null, '', url.pathname + url.search + url.hash);
  }

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
    $('#sign-out').addEventListener('click', () => signOut(''));
    window.addEventListener('hashchange', route);
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
})();
