#!/usr/bin/env node
// End-to-end test of the chat page in real headless Chromium (playwright-core
// driving /usr/bin/chromium) against a running chat-server.
//
//   node tests/e2e/chat.mjs BASE_URL [SCREENSHOT.png] --strict-server URL [--resume-limit N]
//   node tests/e2e/chat.mjs BASE_URL [SCREENSHOT.png] --jwt-secret SECRET
//
// BASE_URL is the server's http://HOST:PORT/. The first form needs a server
// in guest mode without a room creation rate (--max-room-rate 0: the script
// creates 300 rooms), and a second one (--strict-server) in guest mode with
// a fresh data directory and a --max-text-chars under 50. User A (alice)
// loads the page from the server, user B (bob) through a TCP proxy in this
// script, which can cut every connection and refuse new ones (an outage),
// stop forwarding while keeping the sockets open (a half-open line), and
// move B to the second server. The checks: live messages both ways, room
// creation seen live by the other user and the server's 409/400 messages,
// text never rendered as HTML, empty and too long texts refused on the
// page, the outage (B reconnects, re-subscribes with x-resume-after and sees
// what A sent meanwhile once each, in order), the outbox (messages sent into
// a half-open line show "Sending…" and are sent again, in order, after the
// reconnect; one the server accepted while its RECEIPT was lost is not; one
// the server refuses shows "Not sent" with its reason, Retry and Discard;
// offline, 50 wait and the 51st is refused), a reload, older history on
// scrolling up, the phone layout, 300 rooms arriving live and a reconnect
// fetching only the rooms after the newest known. With --resume-limit N
// (the server's) also the recovery from "resume too far behind".
// Screenshots: SCREENSHOT.png (default target/e2e/chat-page.png, desktop)
// and next to it -phone.png and -phone-rooms.png (360 px wide),
// -reconnecting.png (B during the outage), -sending.png (B's messages on the
// half-open line), -not-sent.png and -not-sent-phone.png (refused messages).
//
// The second form needs a server started with that --jwt-secret and checks
// sign-in with tokens: the token field, forged and expired tokens refused,
// `?token=` in the URL, the name claim as the sender; SCREENSHOT.png shows
// the sign-in form.
//
// Each check prints `ok N - ...`; the last line is `chat e2e: N checks
// passed`. Any failure exits 1, with screenshots of the pages
// (-failure-WHO.png) and their console output, and so does the 90 s
// watchdog. Run by chat-server/tests/e2e_browser.rs, which starts the
// servers with fresh data directories.

import crypto from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { chromium } from 'playwright-core';

const WATCHDOG_MS = 90_000;
const CHROMIUM = '/usr/bin/chromium';
const CHROMIUM_ARGS = [
  '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync',
];
const DESKTOP = { width: 1280, height: 800 };
const PHONE = { width: 360, height: 740 };
/** How long B's network stays down in the outage check. */
const OUTAGE_MS = 3000;

// ===== arguments =====

function parseArgs(argv) {
  const args = { base: null, shot: 'target/e2e/chat-page.png', resumeLimit: 0, jwtSecret: '', strict: null };
  const rest = [];
  for (let i = 0; i < argv.length; i += 1) {
    if (argv[i] === '--resume-limit') args.resumeLimit = Number(argv[(i += 1)]);
    else if (argv[i] === '--jwt-secret') args.jwtSecret = argv[(i += 1)] || '';
    else if (argv[i] === '--strict-server') args.strict = argv[(i += 1)] || '';
    else rest.push(argv[i]);
  }
  const isUrl = (u) => typeof u === 'string' && /^https?:\/\//.test(u);
  // The catch-up check sends resume-limit + 5 messages and expects them in the last page of 50.
  if (!isUrl(rest[0]) || !(args.resumeLimit >= 0 && args.resumeLimit <= 40)
    || (args.jwtSecret ? args.strict !== null : !isUrl(args.strict))) {
    console.error('usage: node tests/e2e/chat.mjs BASE_URL [SCREENSHOT.png] --strict-server URL [--resume-limit N (at most 40)]\n'
      + '       node tests/e2e/chat.mjs BASE_URL [SCREENSHOT.png] --jwt-secret SECRET');
    process.exit(2);
  }
  args.base = new URL(rest[0]);
  if (args.strict) args.strict = new URL(args.strict);
  if (rest[1]) args.shot = rest[1];
  return args;
}

const args = parseArgs(process.argv.slice(2));
const shotPath = (suffix) => args.shot.replace(/(\.png)?$/i, `${suffix}.png`);

// ===== reporting =====

let passed = 0;
let browser = null;
const pages = {}; // who -> page, for failure screenshots
const logs = []; // console output and page errors of every page
const pageErrors = [];
const wsFrames = {}; // who -> [{ dir: 'sent' | 'received', text }], every STOMP frame of the page

function ok(name) {
  passed += 1;
  console.log(`ok ${passed} - ${name}`);
}

function check(condition, message) {
  if (!condition) throw new Error(message);
}

function same(actual, expected, message) {
  const a = JSON.stringify(actual);
  const e = JSON.stringify(expected);
  if (a !== e) throw new Error(`${message}\n  expected: ${e}\n  actual:   ${a}`);
}

async function fail(error, step) {
  console.log(`not ok - ${step || 'setup'}: ${error && error.stack ? error.stack : error}`);
  for (const [who, page] of Object.entries(pages)) {
    try {
      const file = shotPath(`-failure-${who}`);
      await page.screenshot({ path: file, timeout: 3000 });
      console.log(`# screenshot of ${who}'s page: ${file}`);
    } catch { /* the page may be gone */ }
  }
  if (logs.length) console.log(`# browser console (last 60 lines):\n${logs.slice(-60).map((l) => `#   ${l}`).join('\n')}`);
  console.log(`chat e2e: FAILED after ${passed} checks passed`);
  process.exit(1);
}

setTimeout(() => fail(new Error(`watchdog: the run took longer than ${WATCHDOG_MS / 1000} s`), 'watchdog'),
  WATCHDOG_MS).unref();

let currentStep = '';
async function step(name, fn) {
  currentStep = name;
  await fn();
  ok(name);
}

// ===== the TCP proxy in front of user B =====

/**
 * Forwards 127.0.0.1:<port> to a server: drop() cuts everything and refuses new connections
 * until restore(): a real outage. blackhole() stops forwarding (both ways, or only the server's
 * answers with { up: false }) and keeps the sockets open: a half-open line the browser cannot
 * notice; cut() ends it by closing those connections. switchTo(url) sends new connections to
 * another server and cuts the current ones.
 */
function startProxy(target) {
  const pairs = new Set();
  let upstreamUrl = target;
  let down = false;
  let hole = null; // null, or { up, down }: what new connections stop forwarding
  const server = net.createServer((client) => {
    if (down) { client.resetAndDestroy(); return; }
    const upstream = net.connect(Number(upstreamUrl.port), upstreamUrl.hostname);
    const pair = { client, upstream, hole };
    pairs.add(pair);
    const close = () => {
      client.destroy();
      upstream.destroy();
      pairs.delete(pair);
    };
    client.on('error', close).on('close', close);
    upstream.on('error', close).on('close', close);
    forward(client, upstream, () => pair.hole && pair.hole.up);
    forward(upstream, client, () => pair.hole && pair.hole.down);
  });
  const cutAll = () => {
    for (const { client, upstream } of pairs) { client.resetAndDestroy(); upstream.resetAndDestroy(); }
    pairs.clear();
  };
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve({
      url: `http://127.0.0.1:${server.address().port}/`,
      drop() { down = true; cutAll(); },
      restore() { down = false; },
      blackhole({ up = true } = {}) {
        hole = { up, down: true };
        for (const pair of pairs) pair.hole = hole;
      },
      cut() { hole = null; cutAll(); },
      switchTo(url) { upstreamUrl = url; cutAll(); },
      close() { this.drop(); server.close(); },
    }));
  });
}

/** Pipes from -> to, swallowing what arrives while swallow() says so, with backpressure. */
function forward(from, to, swallow) {
  from.on('data', (chunk) => {
    if (swallow() || to.destroyed) return;
    if (!to.write(chunk)) {
      from.pause();
      to.once('drain', () => from.resume());
    }
  });
}

// ===== REST from the script =====

async function rest(pathname, init, base = args.base) {
  const res = await fetch(new URL(pathname, base), init);
  const text = await res.text();
  let body = null;
  try { body = text ? JSON.parse(text) : null; } catch { body = text; }
  return { status: res.status, headers: res.headers, body };
}

/** name, or name-2, name-3, ... when a room of that name exists (the script can run twice against one server). */
async function freshName(name) {
  const { body } = await rest('/api/rooms?limit=1000');
  const taken = new Set(body.map((r) => r.name));
  let candidate = name;
  for (let i = 2; taken.has(candidate); i += 1) candidate = `${name}-${i}`;
  return candidate;
}

async function createRoomRest(name) {
  return rest('/api/rooms', {
    method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ name }),
  });
}

// ===== page helpers =====

async function newUser(who, { url, viewport = DESKTOP, phone = false }) {
  const context = await browser.newContext({
    viewport, deviceScaleFactor: phone ? 2 : 1, isMobile: phone, hasTouch: phone,
    locale: 'en-GB', timezoneId: 'Europe/Berlin',
  });
  const page = await context.newPage();
  page.setDefaultTimeout(10_000);
  page.on('console', (m) => logs.push(`[${who}] ${m.type()}: ${m.text()}`));
  page.on('pageerror', (e) => { pageErrors.push(`[${who}] ${e.message}`); logs.push(`[${who}] pageerror: ${e.message}`); });
  pages[who] = page;
  wsFrames[who] = [];
  page.on('websocket', (ws) => {
    const record = (dir) => (f) => wsFrames[who].push({ dir, text: String(f.payload) });
    ws.on('framesent', record('sent'));
    ws.on('framereceived', record('received'));
  });
  await page.goto(url);
  return page;
}

async function signIn(page, nickname) {
  await page.locator('#nickname').waitFor({ state: 'visible' });
  await page.fill('#nickname', nickname);
  await page.click('#join');
  await waitStatus(page, 'connected');
  await page.waitForFunction((n) => document.querySelector('#whoami').textContent === n, nickname);
}

async function waitStatus(page, status, timeout = 10_000) {
  await page.waitForFunction((s) => document.querySelector('#status')?.dataset.state === s, status, { timeout });
}

const roomButton = (page, name) => page.locator('#room-list [data-testid="room-item"]')
  .filter({ has: page.locator('.room-name', { hasText: new RegExp(`^${name.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}$`) }) });

/** Clicks the room in the list (opening the drawer on a phone) and waits for its history. */
async function openRoom(page, name) {
  if (await page.locator('#show-rooms').isVisible() && !(await page.evaluate(() => document.body.classList.contains('rooms-open')))) {
    await page.click('#show-rooms');
  }
  await roomButton(page, name).click();
  await page.locator('#room-title', { hasText: `# ${name}` }).waitFor();
  await waitHistoryLoaded(page);
}

async function waitHistoryLoaded(page) {
  await page.waitForFunction(() => {
    const s = document.querySelector('#history-state')?.dataset.state;
    return s === 'more' || s === 'start';
  });
}

/** The messages the page shows, in page order. */
function shown(page) {
  return page.$$eval('#messages [data-testid="message"]', (nodes) => nodes.map((n) => ({
    id: n.dataset.id, sender: n.dataset.sender, text: n.querySelector('[data-testid="message-text"]').textContent,
  })));
}

async function waitForText(page, text, timeout = 10_000) {
  await page.waitForFunction((t) => [...document.querySelectorAll('#messages [data-testid="message-text"]')]
    .some((n) => n.textContent === t), text, { timeout });
}

async function send(page, text) {
  await page.fill('#composer textarea', text);
  await page.click('#send');
  await waitForText(page, text);
}

/** Checks that ids strictly increase (so each message is shown once, in order). */
function assertOrdered(list, who) {
  for (let i = 1; i < list.length; i += 1) {
    check(BigInt(list[i - 1].id) < BigInt(list[i].id),
      `${who}'s page shows message ids out of order or twice: ${list[i - 1].id} then ${list[i].id}`);
  }
}

/** Records every state #status takes from now on into window.__statusLog. */
async function recordStatus(page) {
  await page.evaluate(() => {
    const node = document.querySelector('#status');
    window.__statusLog = [node.dataset.state];
    new MutationObserver(() => window.__statusLog.push(node.dataset.state))
      .observe(node, { attributes: true, attributeFilter: ['data-state'] });
  });
}

const statusLog = (page) => page.evaluate(() => window.__statusLog.filter((s, i, a) => i === 0 || a[i - 1] !== s));

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Waits until the page, whose states recordStatus() follows, has been reconnecting and is connected again. */
async function reconnected(page, timeout = 10_000) {
  await page.waitForFunction(() => {
    const log = window.__statusLog;
    return log.includes('reconnecting') && log[log.length - 1] === 'connected';
  }, null, { timeout });
}

/** The open room's id, from the address. */
const roomIdOf = (page) => page.evaluate(() => /\d+$/.exec(location.hash)[0]);

/** The outbox entry (own message not yet confirmed) with this text. */
const pendingItem = (page, text) => page.locator('#pending-list [data-testid="pending"]')
  .filter({ has: page.getByText(text, { exact: true }) });

/** Types a message and sends it; the page shows it in the outbox at once. */
async function sendPending(page, text) {
  await page.fill('#composer textarea', text);
  await page.click('#send');
  const item = pendingItem(page, text);
  await item.waitFor({ timeout: 2000 });
  same(await page.inputValue('#composer textarea'), '', 'the composer after sending');
  return item;
}

async function entryState(item) {
  return {
    state: await item.getAttribute('data-state'),
    status: await item.locator('[data-testid="pending-status"]').textContent(),
  };
}

/** How many SEND frames the page of `who` sent with this text. */
const sendsOf = (who, text) => wsFrames[who].filter(({ dir, text: frame }) => dir === 'sent'
  && frame.startsWith('SEND\n') && frame.includes(JSON.stringify({ text }))).length;

/** How many messages with this text the page shows. */
const countOn = async (page, text) => (await shown(page)).filter((m) => m.text === text).length;

/** How many messages with this text the room's REST history has (its newest 200). */
async function historyCount(roomId, text, base = args.base) {
  const page = await rest(`/api/rooms/${roomId}/messages?limit=200`, undefined, base);
  check(page.status === 200, `GET /api/rooms/${roomId}/messages: ${page.status}`);
  return page.body.filter((m) => m.text === text).length;
}

/** Waits (history is written at most 1 s behind the live stream) until REST has the text exactly once. */
async function historyOnce(roomId, text) {
  const deadline = Date.now() + 5000;
  let n = await historyCount(roomId, text);
  while (n === 0 && Date.now() < deadline) {
    await sleep(100);
    n = await historyCount(roomId, text);
  }
  same(n, 1, `copies of "${text}" in the REST history of room ${roomId}`);
}

/** Every room, page by page, as GET /api/rooms lists them. */
async function allRooms() {
  const all = [];
  for (let after = ''; ;) {
    const page = await rest(`/api/rooms?limit=1000${after ? `&after=${after}` : ''}`);
    check(page.status === 200, `GET /api/rooms: ${page.status}`);
    all.push(...page.body);
    if (page.body.length < 1000) return all;
    after = page.body[page.body.length - 1].id;
  }
}

// ===== the checks =====

async function checkAssets(auth) {
  const want = [
    ['/', 'text/html'], ['/app.js', 'javascript'], ['/style.css', 'text/css'], ['/favicon.svg', 'image/svg+xml'],
    ['/vendor/stomp.umd.min.js', 'javascript'], ['/vendor/LICENSE-stompjs.txt', 'text/plain'],
  ];
  for (const [p, type] of want) {
    const res = await fetch(new URL(p, args.base));
    check(res.status === 200, `GET ${p}: status ${res.status}`);
    const got = res.headers.get('content-type') || '';
    check(got.includes(type), `GET ${p}: content-type "${got}", expected ${type}`);
    await res.arrayBuffer();
  }
  const info = await rest('/api/info');
  check(info.status === 200 && info.body.auth === auth,
    `GET /api/info: ${JSON.stringify(info.body)}, expected "auth":"${auth}" (is --jwt-secret given to both the server and the script, or to neither?)`);
  return info.body;
}

async function main() {
  let info;
  await step('the page, its assets and /api/info are served', async () => { info = await checkAssets('guest'); });

  const proxy = await startProxy(args.base);
  browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS, headless: true });
  let a;
  let b;
  await step('alice (direct) and bob (through the proxy) sign in and the page opens #general', async () => {
    a = await newUser('alice', { url: args.base.href });
    b = await newUser('bob', { url: proxy.url });
    await signIn(a, 'alice');
    await signIn(b, 'bob');
    for (const page of [a, b]) {
      await page.locator('#room-title', { hasText: '# general' }).waitFor();
      await waitHistoryLoaded(page);
    }
  });

  const roomName = await freshName('design-review');
  await step('(d) a room alice creates appears in bob\'s list live; a taken or too long name shows the server\'s 409 or 400 message', async () => {
    await a.fill('#new-room', roomName);
    await a.click('#create-room');
    await a.locator('#room-title', { hasText: `# ${roomName}` }).waitFor();
    await roomButton(b, roomName).waitFor({ timeout: 5000 });
    for (const [name, status, what] of [['general', 409, 'a taken room name'], ['x'.repeat(150), 400, 'a too long room name']]) {
      await a.fill('#new-room', name);
      check(await a.locator('#room-error').isHidden(), 'the room error stays after the name was edited');
      await a.click('#create-room');
      const answer = await createRoomRest(name);
      same(answer.status, status, `POST /api/rooms with ${what}`);
      await a.locator('#room-error').waitFor();
      same(await a.textContent('#room-error'), answer.body.message, `the error shown for ${what}`);
    }
    await a.fill('#new-room', '');
  });

  const talk = [
    [a, 'alice', 'Morning! Is the 0.1 release still on for Thursday?'],
    [b, 'bob', 'Yes. The broker passed the overnight soak test: 2.4M messages, no loss.'],
    [a, 'alice', 'Great. Did the reconnect fix make it in?'],
    [b, 'bob', 'It did: clients resume from the last id they saw, so nothing is missed or shown twice.'],
    [a, 'alice', 'Perfect, I\'ll write the release notes this afternoon.'],
  ];
  await step('(a) alice and bob in #general see each other\'s messages live, with sender and time', async () => {
    await openRoom(a, 'general');
    for (const [from, , text] of talk) {
      await send(from, text);
      await waitForText(from === a ? b : a, text, 5000);
    }
    const expected = talk.map(([, sender, text]) => ({ sender, text }));
    for (const [who, page] of [['alice', a], ['bob', b]]) {
      const list = await shown(page);
      same(list.slice(-talk.length).map(({ sender, text }) => ({ sender, text })), expected, `#general on ${who}'s page`);
      assertOrdered(list, who);
      const times = await page.$$eval('#messages time.time', (n) => n.map((t) => t.textContent));
      check(times.every((t) => /^\d{1,2}:\d{2}/.test(t)), `${who}'s page shows times ${JSON.stringify(times)}`);
    }
  });

  await step('message text is shown as text, never as HTML', async () => {
    await openRoom(a, roomName);
    await openRoom(b, roomName);
    const evil = '<img src=x onerror="window.__xss=1"><b>not bold</b> & <script>window.__xss=2</script>';
    await send(a, evil);
    await waitForText(b, evil, 5000);
    for (const page of [a, b]) {
      check(await page.locator('#messages img, #messages b, #messages script').count() === 0, 'markup from a message became elements');
      check(await page.evaluate(() => window.__xss === undefined), 'markup from a message ran');
    }
  });

  await step('an empty or too long message is refused on the page, and the connection stays up', async () => {
    await recordStatus(b);
    const before = (await shown(b)).length;
    await b.fill('#composer textarea', '   \n  ');
    await b.press('#composer textarea', 'Enter');
    await b.locator('#composer-error').waitFor();
    const long = 'x'.repeat(info.maxTextChars + 1);
    await b.fill('#composer textarea', long);
    await b.click('#send');
    await b.locator('#composer-error', { hasText: String(info.maxTextChars) }).waitFor();
    check((await b.inputValue('#composer textarea')) === long, 'the refused text was not kept in the composer');
    await sleep(300);
    same(await statusLog(b), ['connected'], 'bob\'s connection states');
    same((await shown(b)).length, before, 'messages shown after refused sends');
    await b.fill('#composer textarea', '');
  });

  await step('(c) bob\'s network drops for 3 s while alice sends 5 messages: after the reconnect bob sees each once, in order', async () => {
    await recordStatus(b);
    const seen = (await shown(b)).at(-1).id;
    const roomId = await b.evaluate(() => /\d+$/.exec(location.hash)[0]);
    const framesBefore = wsFrames.bob.length;
    const dropped = Date.now();
    proxy.drop();
    await waitStatus(b, 'reconnecting', 5000);
    const meanwhile = [];
    for (let i = 1; i <= 5; i += 1) {
      const text = `Sent while bob was offline (${i} of 5)`;
      meanwhile.push(text);
      await send(a, text);
    }
    await b.screenshot({ path: shotPath('-reconnecting') });
    await sleep(Math.max(0, OUTAGE_MS - (Date.now() - dropped)));
    check(await b.evaluate(() => document.querySelector('#status').dataset.state) === 'reconnecting',
      'bob\'s page did not stay in "reconnecting" during the outage');
    proxy.restore();
    await waitStatus(b, 'connected', 10_000);
    for (const text of meanwhile) await waitForText(b, text, 5000);
    await send(a, 'And this one is live again.');
    await waitForText(b, 'And this one is live again.', 5000);
    await send(b, 'Back online, I got all five.');
    await waitForText(a, 'Back online, I got all five.', 5000);
    const listA = await shown(a);
    const listB = await shown(b);
    assertOrdered(listB, 'bob');
    same(listB, listA, 'bob\'s messages (ids, senders, texts) compared with alice\'s');
    for (const text of meanwhile) {
      same(listB.filter((m) => m.text === text).length, 1, `copies of "${text}" on bob's page`);
    }
    const states = await statusLog(b);
    same(states, ['connected', 'reconnecting', 'connected'], 'bob\'s connection states');
    const resubscribed = wsFrames.bob.slice(framesBefore).some(({ dir, text }) => dir === 'sent'
      && text.startsWith('SUBSCRIBE\n') && text.includes(`\ndestination:/topic/rooms.${roomId}\n`)
      && text.includes(`\nx-resume-after:${seen}\n`));
    check(resubscribed, `bob's page did not SUBSCRIBE again to /topic/rooms.${roomId} with x-resume-after:${seen}`);
  });

  if (args.resumeLimit > 0) {
    await step(`bob misses more than --resume-limit (${args.resumeLimit}) messages: the page reloads the last page and goes on live`, async () => {
      await recordStatus(b);
      const framesBefore = wsFrames.bob.length;
      proxy.drop();
      await waitStatus(b, 'reconnecting', 5000);
      const n = args.resumeLimit + 5;
      const texts = [];
      for (let i = 1; i <= n; i += 1) texts.push(`Catch-up ${i} of ${n}`);
      await sendBurst(a, roomName, texts);
      await waitForText(a, texts[n - 1], 10_000);
      proxy.restore();
      await waitForText(b, texts[n - 1], 15_000);
      await waitStatus(b, 'connected', 10_000);
      await send(a, 'Live after the catch-up.');
      await waitForText(b, 'Live after the catch-up.', 5000);
      const listA = await shown(a);
      const listB = await shown(b);
      assertOrdered(listB, 'bob');
      const tailA = listA.slice(-listB.length);
      same(listB, tailA, 'bob\'s messages after the reload compared with the newest of alice\'s');
      check(texts.every((t) => listB.some((m) => m.text === t)), 'bob misses some of the catch-up messages');
      const states = await statusLog(b);
      check(states[0] === 'connected' && states.includes('reconnecting') && states[states.length - 1] === 'connected',
        `bob's connection states: ${JSON.stringify(states)}`);
      check(wsFrames.bob.slice(framesBefore).some(({ dir, text }) => dir === 'received'
        && text.startsWith('ERROR\n') && text.includes('\nmessage:resume too far behind')),
      'the server did not answer bob\'s resume with ERROR "resume too far behind" (is --resume-limit the server\'s?)');
    });
  }

  await step('(f) messages bob sends into a half-open line show "Sending…", go out once more after the reconnect, and are in the room once each, in order', async () => {
    await checkHalfOpen(a, b, proxy);
  });

  await step('(g) a message the server accepted while its RECEIPT was lost is found in the resume\'s replay: shown once, not sent again', async () => {
    await checkAcceptedUnconfirmed(a, b, proxy);
  });

  await step('(h) a message the server refuses shows "Not sent" with the server\'s reason, Retry and Discard; never resent by itself; Retry sends it once the cause is gone', async () => {
    await checkRefused(a, b, proxy);
  });

  await step('(i) offline, bob\'s outbox holds 50 messages and refuses the 51st on the page; after the reconnect all go out once, in order', async () => {
    await checkOfflineQueue(a, b, proxy);
  });

  await step('(b) after a reload bob is signed in again, in the same room, with the history in order', async () => {
    const before = await shown(a);
    await b.reload();
    await waitStatus(b, 'connected');
    same(await b.textContent('#whoami'), 'bob', 'the nickname after the reload');
    await b.locator('#room-title', { hasText: `# ${roomName}` }).waitFor();
    await waitHistoryLoaded(b);
    const after = await shown(b);
    same(after, before.slice(-after.length), 'bob\'s messages after the reload compared with alice\'s');
    check(after.length === Math.min(before.length, 50), `bob's page shows ${after.length} messages after the reload`);
  });

  await step('scrolling to the top loads older history (before=oldest id), in order, once each', async () => {
    const name = await freshName('history');
    const created = await createRoomRest(name);
    same(created.status, 201, `POST /api/rooms ${name}`);
    const texts = Array.from({ length: 121 }, (_, i) => `History message ${i + 1}`);
    await sendBurst(a, created.body.id, texts);
    const deadline = Date.now() + 10_000;
    for (;;) { // history is written behind the live stream: wait until REST has the last one
      const latest = await rest(`/api/rooms/${created.body.id}/messages?limit=1`);
      if (latest.status === 200 && latest.body[0]?.text === texts[texts.length - 1]) break;
      check(Date.now() < deadline, `GET .../messages?limit=1 still answers ${JSON.stringify(latest.body)}`);
      await sleep(100);
    }
    await roomButton(b, name).waitFor();
    await openRoom(b, name);
    same((await shown(b)).map((m) => m.text), texts.slice(-50), 'the first page of #history');
    for (let round = 0; round < 5 && (await shown(b)).length < texts.length; round += 1) {
      const count = (await shown(b)).length;
      await b.locator('#messages').evaluate((n) => { n.scrollTop = 0; });
      await b.waitForFunction((c) => document.querySelectorAll('#messages [data-testid="message"]').length > c, count);
      await waitHistoryLoaded(b);
      const top = await b.locator('#messages').evaluate((n) => n.scrollTop);
      check(top > 0, 'the view jumped to the top after older messages were added (the reading position was lost)');
    }
    const list = await shown(b);
    same(list.map((m) => m.text), texts, 'all of #history after scrolling up');
    assertOrdered(list, 'bob');
    same(await b.getAttribute('#history-state', 'data-state'), 'start', 'the history state at the first message');
  });

  let phone;
  await step('(e) screenshots: desktop (1280x800) and phone (360x740), no horizontal overflow on the phone', async () => {
    fs.mkdirSync(path.dirname(path.resolve(args.shot)), { recursive: true });
    await openRoom(a, 'general');
    await a.locator('#messages').evaluate((n) => { n.scrollTop = n.scrollHeight; });
    await a.locator('#composer textarea').fill('Sounds good. Ship it!');
    await a.screenshot({ path: args.shot });
    await a.locator('#composer textarea').fill('');

    phone = await newUser('alice-phone', { url: args.base.href, viewport: PHONE, phone: true });
    await signIn(phone, 'alice');
    await phone.locator('#room-title', { hasText: '# general' }).waitFor();
    await waitHistoryLoaded(phone);
    const width = await phone.evaluate(() => document.documentElement.scrollWidth);
    check(width <= PHONE.width, `the phone page is ${width} px wide`);
    const sidebar = await phone.locator('#sidebar').boundingBox();
    check(!sidebar || sidebar.x + sidebar.width <= 0, 'the room list covers the chat on a phone while closed');
    await phone.screenshot({ path: shotPath('-phone') });
    await phone.click('#show-rooms');
    await phone.waitForFunction(() => document.querySelector('#sidebar').getBoundingClientRect().x >= 0);
    await sleep(250); // the drawer's slide-in
    await phone.screenshot({ path: shotPath('-phone-rooms') });
    await roomButton(phone, roomName).click();
    await phone.locator('#room-title', { hasText: `# ${roomName}` }).waitFor();
    await phone.waitForFunction(() => document.querySelector('#sidebar').getBoundingClientRect().right <= 0);
    console.log(`# screenshots: ${args.shot}, ${shotPath('-phone')}, ${shotPath('-phone-rooms')}`);
  });

  await step('"Change name" signs out; signing in again under a new name sends as that name', async () => {
    await phone.click('#sign-out');
    await phone.locator('#login').waitFor();
    same(await phone.inputValue('#nickname'), 'alice', 'the nickname offered after signing out');
    await signIn(phone, 'alice-mobile');
    await phone.locator('#room-title', { hasText: `# ${roomName}` }).waitFor();
    await waitHistoryLoaded(phone);
    await openRoom(a, roomName);
    await send(phone, 'Now on my phone.');
    await waitForText(a, 'Now on my phone.', 5000);
    same((await shown(a)).at(-1).sender, 'alice-mobile', 'the sender after the change of name');
  });

  await step('(j) 300 rooms created while the pages are open appear live, in order; after a reconnect bob\'s page fetches only the rooms after the newest it knows', async () => {
    await checkManyRooms(a, b, proxy);
  });

  await step('no uncaught JavaScript errors on any page', async () => {
    same(pageErrors, [], 'uncaught page errors');
  });

  await browser.close();
  proxy.close();
}

// ===== the outbox: what bob typed is never lost, and never posted twice =====

/** Bob's messages go into a line that swallows everything both ways, then the line is cut. */
async function checkHalfOpen(a, b, proxy) {
  const roomId = await roomIdOf(b);
  const texts = ['Typed while the line was silently dead.', 'A second one, which must stay second.'];
  await recordStatus(b);
  proxy.blackhole();
  const items = [];
  for (const text of texts) items.push(await sendPending(b, text));
  await sleep(1000); // neither a RECEIPT nor a MESSAGE can come
  for (const item of items) {
    same(await entryState(item), { state: 'sending', status: 'Sending…' }, 'bob\'s message on the half-open line');
  }
  same(await statusLog(b), ['connected'], 'bob\'s connection states while the line is half-open (unnoticed)');
  same(await countOn(a, texts[0]), 0, 'copies on alice\'s page while bob\'s line swallows everything');
  await b.screenshot({ path: shotPath('-sending') });
  proxy.cut();
  await reconnected(b);
  for (const text of texts) {
    await waitForText(b, text, 10_000);
    await waitForText(a, text, 5000);
  }
  for (const item of items) await item.waitFor({ state: 'detached', timeout: 2000 });
  for (const [who, page] of [['alice', a], ['bob', b]]) {
    const list = (await shown(page)).filter((m) => texts.includes(m.text));
    same(list.map((m) => m.text), texts, `bob's two messages on ${who}'s page (once each, in the order typed)`);
  }
  for (const text of texts) {
    same(sendsOf('bob', text), 2, `SEND frames with "${text}" (the first was swallowed, so one resend)`);
    await historyOnce(roomId, text);
  }
}

/** The server gets bob's message, but its answers (RECEIPT, MESSAGE) are swallowed, then the line is cut. */
async function checkAcceptedUnconfirmed(a, b, proxy) {
  const roomId = await roomIdOf(b);
  const text = 'Accepted, but the answer never came back.';
  await recordStatus(b);
  proxy.blackhole({ up: false });
  const item = await sendPending(b, text);
  await waitForText(a, text, 5000); // the server accepted it
  await sleep(300);
  same(await entryState(item), { state: 'sending', status: 'Sending…' }, 'bob\'s message without its RECEIPT');
  proxy.cut();
  await reconnected(b);
  await waitForText(b, text, 10_000); // from the replay of the resume
  await item.waitFor({ state: 'detached', timeout: 2000 });
  await send(b, 'Both of those arrived once.'); // the room is settled: nothing else goes out
  same(sendsOf('bob', text), 1, 'SEND frames with the text (the replay showed it was accepted: no resend)');
  same(await countOn(b, text), 1, `copies of "${text}" on bob's page`);
  same(await countOn(a, text), 1, `copies of "${text}" on alice's page`);
  await historyOnce(roomId, text);
}

/**
 * A refusal the page cannot foresee, made deterministic: the proxy moves bob to the second
 * server (--strict-server: fresh data and a smaller --max-text-chars; the script gives it a room
 * of the same name and id as bob's), as when a node behind a load balancer was restarted with a
 * smaller limit. The page still holds the first server's limit, so it sends; that server answers
 * ERROR "text too long: ..." and closes the connection, which no resend can fix.
 */
async function checkRefused(a, b, proxy) {
  const strictInfo = (await rest('/api/info', undefined, args.strict)).body;
  const strictRooms = (await rest('/api/rooms', undefined, args.strict)).body;
  check(strictInfo.maxTextChars < 50 && strictRooms.length === 1,
    `--strict-server must be fresh, with --max-text-chars under 50: ${JSON.stringify({ strictInfo, strictRooms })}`);
  const roomId = await roomIdOf(b);
  const name = (await rest(`/api/rooms/${roomId}`)).body.name;
  const twin = await rest('/api/rooms', {
    method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ name }),
  }, args.strict);
  same([twin.status, twin.body.id], [201, roomId], `#${name} created on the strict server (status, id)`);
  const texts = [
    'This sentence has more than fifty characters, so the strict node refuses it.',
    'This one is refused as well, and then discarded by bob.',
  ];
  await recordStatus(b);
  proxy.switchTo(args.strict);
  await reconnected(b);
  for (const text of texts) {
    const item = await sendPending(b, text);
    await b.locator('#pending-list [data-testid="pending"][data-state="failed"]')
      .filter({ has: b.getByText(text, { exact: true }) }).waitFor({ timeout: 10_000 });
    same(await entryState(item), { state: 'failed', status: 'Not sent' }, `"${text}" after the ERROR`);
    same(await item.locator('[data-testid="pending-reason"]').textContent(),
      `text too long: ${[...text].length} characters, at most ${strictInfo.maxTextChars} are allowed`,
      'the reason shown: the server\'s message');
    check(await item.locator('[data-testid="retry"]').isVisible(), 'no Retry button on the message not sent');
    check(await item.locator('[data-testid="discard"]').isVisible(), 'no Discard button on the message not sent');
  }
  await waitStatus(b, 'connected'); // the server closed the connection after each ERROR
  await sleep(500);
  for (const text of texts) same(sendsOf('bob', text), 1, `SEND frames with "${text}" (never resent by itself)`);
  await b.screenshot({ path: shotPath('-not-sent') });
  await b.setViewportSize(PHONE);
  await b.waitForFunction(() => document.querySelector('#sidebar').getBoundingClientRect().right <= 0);
  await b.locator('#messages').evaluate((n) => { n.scrollTop = n.scrollHeight; });
  await b.screenshot({ path: shotPath('-not-sent-phone') });
  await b.setViewportSize(DESKTOP);

  await recordStatus(b);
  proxy.switchTo(args.base);
  await reconnected(b);
  await pendingItem(b, texts[0]).locator('[data-testid="retry"]').click();
  await waitForText(b, texts[0], 10_000);
  await waitForText(a, texts[0], 5000);
  await pendingItem(b, texts[0]).waitFor({ state: 'detached', timeout: 2000 });
  await pendingItem(b, texts[1]).locator('[data-testid="discard"]').click();
  await pendingItem(b, texts[1]).waitFor({ state: 'detached', timeout: 2000 });
  same(sendsOf('bob', texts[0]), 2, 'SEND frames with the retried text (the refused one and the retry)');
  same(sendsOf('bob', texts[1]), 1, 'SEND frames with the discarded text');
  for (const [who, page] of [['alice', a], ['bob', b]]) {
    same(await countOn(page, texts[0]), 1, `copies of the retried message on ${who}'s page`);
    same(await countOn(page, texts[1]), 0, `copies of the discarded message on ${who}'s page`);
  }
  await historyOnce(roomId, texts[0]);
  same(await historyCount(roomId, texts[1]), 0, 'copies of the discarded message in the REST history');
  same(await historyCount(roomId, texts[0], args.strict), 0, 'messages the strict server stored');
}

/** Offline, the outbox takes up to 50 messages (the 51st is refused on the page); they go out in order. */
async function checkOfflineQueue(a, b, proxy) {
  await recordStatus(b);
  proxy.drop();
  await waitStatus(b, 'reconnecting', 5000);
  const texts = Array.from({ length: 50 }, (_, i) => `Queued offline ${i + 1} of 50`);
  for (const text of texts) {
    await b.fill('#composer textarea', text);
    await b.press('#composer textarea', 'Enter');
  }
  same(await b.locator('#pending-list [data-testid="pending"][data-state="queued"]').count(), 50,
    'messages waiting in bob\'s outbox while offline');
  await b.fill('#composer textarea', 'One too many.');
  await b.press('#composer textarea', 'Enter');
  await b.locator('#composer-error', { hasText: '50 of your messages are still waiting' }).waitFor();
  same(await b.inputValue('#composer textarea'), 'One too many.', 'the refused text stays in the composer');
  await b.fill('#composer textarea', '');
  same(texts.map((t) => sendsOf('bob', t)), texts.map(() => 0), 'SEND frames of the queued texts while offline');
  proxy.restore();
  await reconnected(b);
  await waitForText(a, texts[49], 10_000);
  await waitForText(b, texts[49], 5000);
  await b.locator('#pending-list [data-testid="pending"]').first().waitFor({ state: 'detached', timeout: 5000 });
  for (const [who, page] of [['alice', a], ['bob', b]]) {
    const list = (await shown(page)).filter((m) => texts.includes(m.text));
    same(list.map((m) => m.text), texts, `the queued messages on ${who}'s page (once each, in the order typed)`);
  }
  same(texts.map((t) => sendsOf('bob', t)), texts.map(() => 1), 'SEND frames of the queued texts');
}

// ===== the room list =====

/** 300 rooms arrive live; a reconnect asks only for the rooms after the newest the page knows. */
async function checkManyRooms(a, b, proxy) {
  const queries = []; // GET /api/rooms by bob's page from now on
  b.on('request', (request) => {
    const url = new URL(request.url());
    if (url.pathname === '/api/rooms' && request.method() === 'GET') queries.push(url.search);
  });
  const prefix = `bulk-${Date.now().toString(36)}`;
  for (let i = 1; i <= 300; i += 1) {
    const created = await createRoomRest(`${prefix}-${String(i).padStart(3, '0')}`);
    same(created.status, 201, `POST /api/rooms ${prefix}-${i}`);
  }
  const all = await allRooms();
  for (const [who, page] of [['alice', a], ['bob', b]]) {
    await page.waitForFunction((n) => document.querySelectorAll('#room-list [data-testid="room-item"]').length >= n,
      all.length, { timeout: 10_000 });
    const listed = await page.$$eval('#room-list [data-testid="room-item"]', (nodes) => nodes.map((n) => ({
      id: n.dataset.roomId, name: n.querySelector('.room-name').textContent,
    })));
    same(listed, all.map(({ id, name }) => ({ id, name })), `the room list on ${who}'s page (ids ascending)`);
    same(await page.textContent('#room-count'), String(all.length), `the room count on ${who}'s page`);
  }
  same(queries, [], 'GET /api/rooms by bob\'s page while rooms arrived live');
  const newest = all[all.length - 1].id;
  await recordStatus(b);
  proxy.drop();
  await waitStatus(b, 'reconnecting', 5000);
  const offline = await createRoomRest(`${prefix}-created-while-bob-was-offline`);
  same(offline.status, 201, 'POST /api/rooms while bob is offline');
  proxy.restore();
  await waitStatus(b, 'connected', 10_000);
  await roomButton(b, offline.body.name).waitFor({ timeout: 5000 });
  check(queries.length > 0 && queries.every((q) => q === `?limit=1000&after=${newest}`),
    `bob's page asked ${JSON.stringify(queries)} after the reconnect; expected only ?limit=1000&after=${newest}`);
  const last = await b.$$eval('#room-list [data-testid="room-item"]', (nodes) => nodes.map((n) => n.dataset.roomId).at(-1));
  same(last, offline.body.id, 'the last room in bob\'s list');
}

/** Sends texts to a room fast, from a second STOMP client in the page (the vendored stompjs), and waits for a receipt. */
async function sendBurst(page, roomIdOrName, texts) {
  await page.evaluate(async ({ room, texts: list }) => {
    let id = room;
    if (!/^\d+$/.test(room)) {
      const rooms = await (await fetch('/api/rooms?limit=1000')).json();
      id = rooms.find((r) => r.name === room).id;
    }
    const client = new StompJs.Client({
      brokerURL: `ws://${location.host}/stomp`, connectHeaders: { login: 'alice' }, reconnectDelay: 0,
    });
    await new Promise((resolve, reject) => {
      client.onConnect = resolve;
      client.onStompError = (f) => reject(new Error(f.headers.message));
      client.onWebSocketClose = () => reject(new Error('closed'));
      client.activate();
    });
    await new Promise((resolve, reject) => {
      client.onStompError = (f) => reject(new Error(f.headers.message));
      client.watchForReceipt('burst-done', resolve);
      list.forEach((text, i) => client.publish({
        destination: `/app/rooms.${id}`,
        body: JSON.stringify({ text }),
        headers: i === list.length - 1 ? { receipt: 'burst-done' } : {},
      }));
    });
    await client.deactivate();
  }, { room: String(roomIdOrName), texts });
}

// ===== JWT mode =====

/** An HS256 JWT signed with --jwt-secret, valid for an hour unless claims say otherwise. */
function jwt(claims) {
  const enc = (o) => Buffer.from(JSON.stringify(o)).toString('base64url');
  const head = enc({ alg: 'HS256', typ: 'JWT' });
  const body = enc({ exp: Math.floor(Date.now() / 1000) + 3600, ...claims });
  const sig = crypto.createHmac('sha256', args.jwtSecret).update(`${head}.${body}`).digest('base64url');
  return `${head}.${body}.${sig}`;
}

async function lastMessage(page) {
  const list = await shown(page);
  return list[list.length - 1];
}

async function mainJwt() {
  await step('JWT mode: the page is served, /api/info says jwt, /api/* needs a bearer token', async () => {
    await checkAssets('jwt');
    same((await rest('/api/rooms')).status, 401, 'GET /api/rooms without a token');
    const auth = { headers: { authorization: `Bearer ${jwt({ sub: 'probe' })}` } };
    same((await rest('/api/rooms', auth)).status, 200, 'GET /api/rooms with a token');
  });

  browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS, headless: true });
  let carol;
  await step('JWT mode: the sign-in asks for a token and refuses a forged or an expired one', async () => {
    carol = await newUser('carol', { url: args.base.href });
    await carol.locator('#token').waitFor({ state: 'visible' });
    await carol.fill('#nickname', 'carol');
    fs.mkdirSync(path.dirname(path.resolve(args.shot)), { recursive: true });
    await carol.screenshot({ path: args.shot });
    const good = jwt({ sub: 'u-carol' });
    const forged = `${good.slice(0, good.lastIndexOf('.') + 1)}${'A'.repeat(43)}`;
    const expired = jwt({ sub: 'u-carol', exp: Math.floor(Date.now() / 1000) - 120 });
    for (const [what, token] of [['forged', forged], ['expired', expired]]) {
      await carol.fill('#token', token);
      const [response] = await Promise.all([
        carol.waitForResponse((r) => new URL(r.url()).pathname === '/api/rooms'),
        carol.click('#join'),
      ]);
      same(response.status(), 401, `GET /api/rooms with the ${what} token`);
      await carol.locator('#login-error').waitFor();
      check(await carol.locator('#app').isHidden(), `the chat opened with the ${what} token`);
    }
  });

  const hello = 'Hello from Carol, signed in with a token.';
  await step('JWT mode: a valid token signs in; REST and STOMP accept it; the sender is the name claim', async () => {
    await carol.fill('#token', jwt({ sub: 'u-carol', name: 'Carol' }));
    await carol.click('#join');
    await waitStatus(carol, 'connected');
    same(await carol.textContent('#whoami'), 'Carol', 'the name shown for the token with name "Carol"');
    await carol.locator('#room-title', { hasText: '# general' }).waitFor();
    await waitHistoryLoaded(carol);
    await send(carol, hello);
    same((await lastMessage(carol)).sender, 'Carol', 'the sender of Carol\'s message');
  });

  await step('JWT mode: ?token= in the URL signs in directly, leaves the address bar, and the sender is the sub', async () => {
    const dave = await newUser('dave', { url: `${args.base.href}?token=${encodeURIComponent(jwt({ sub: 'u-dave' }))}` });
    await waitStatus(dave, 'connected');
    same(await dave.textContent('#whoami'), 'u-dave', 'the name shown for a token without a name claim');
    check(!dave.url().includes('token'), `the token stays in the address bar: ${dave.url()}`);
    await dave.locator('#room-title', { hasText: '# general' }).waitFor();
    await waitHistoryLoaded(dave);
    await waitForText(dave, hello);
    await send(dave, 'Hi Carol, Dave here.');
    await waitForText(carol, 'Hi Carol, Dave here.', 5000);
    same((await lastMessage(carol)).sender, 'u-dave', 'the sender of Dave\'s message on Carol\'s page');
  });

  await step('no uncaught JavaScript errors on any page', async () => {
    same(pageErrors, [], 'uncaught page errors');
  });
  await browser.close();
}

(args.jwtSecret ? mainJwt() : main()).then(() => {
  console.log(`chat e2e: ${passed} checks passed`);
  process.exit(0);
}, (error) => fail(error, currentStep));
