#!/usr/bin/env node
// End-to-end test of the chat page in real headless Chromium (playwright-core
// driving /usr/bin/chromium) against a running chat-server.
//
//   node tests/e2e/chat.mjs BASE_URL [SCREENSHOT.png] [--resume-limit N]
//   node tests/e2e/chat.mjs BASE_URL [SCREENSHOT.png] --jwt-secret SECRET
//
// BASE_URL is the server's http://HOST:PORT/. The first form needs a server
// in guest mode. User A (alice) loads the page from the server, user B (bob)
// through a TCP proxy in this script, whose drop() resets every connection
// and refuses new ones until restore(): a real network outage for B alone.
// The checks: live messages both ways, room creation seen live by the other
// user and the server's 409/400 messages, text never rendered as HTML, empty
// and too long texts refused on the page, the outage (B reconnects,
// re-subscribes with x-resume-after and sees what A sent meanwhile once each,
// in order), a reload, older history on scrolling up, the phone layout. With
// --resume-limit N (the server's) also the recovery from "resume too far
// behind". Screenshots: SCREENSHOT.png (default target/e2e/chat-page.png,
// desktop) and next to it -phone.png and -phone-rooms.png (360 px wide) and
// -reconnecting.png (B during the outage).
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
  const args = { base: null, shot: 'target/e2e/chat-page.png', resumeLimit: 0, jwtSecret: '' };
  const rest = [];
  for (let i = 0; i < argv.length; i += 1) {
    if (argv[i] === '--resume-limit') args.resumeLimit = Number(argv[(i += 1)]);
    else if (argv[i] === '--jwt-secret') args.jwtSecret = argv[(i += 1)] || '';
    else rest.push(argv[i]);
  }
  // The catch-up check sends resume-limit + 5 messages and expects them in the last page of 50.
  if (!rest[0] || !/^https?:\/\//.test(rest[0]) || !(args.resumeLimit >= 0 && args.resumeLimit <= 40)) {
    console.error('usage: node tests/e2e/chat.mjs BASE_URL [SCREENSHOT.png] [--resume-limit N (at most 40)]\n'
      + '       node tests/e2e/chat.mjs BASE_URL --jwt-secret SECRET');
    process.exit(2);
  }
  args.base = new URL(rest[0]);
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

/** Forwards 127.0.0.1:<port> to target; drop() cuts everything and refuses new connections until restore(). */
function startProxy(target) {
  const sockets = new Set();
  let down = false;
  const server = net.createServer((client) => {
    if (down) { client.resetAndDestroy(); return; }
    const upstream = net.connect(Number(target.port), target.hostname);
    sockets.add(client);
    sockets.add(upstream);
    const close = () => {
      client.destroy();
      upstream.destroy();
      sockets.delete(client);
      sockets.delete(upstream);
    };
    client.on('error', close).on('close', close);
    upstream.on('error', close).on('close', close);
    client.pipe(upstream);
    upstream.pipe(client);
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve({
      url: `http://127.0.0.1:${server.address().port}/`,
      drop() {
        down = true;
        for (const s of sockets) s.resetAndDestroy();
        sockets.clear();
      },
      restore() { down = false; },
      close() { this.drop(); server.close(); },
    }));
  });
}

// ===== REST from the script =====

async function rest(pathname, init) {
  const res = await fetch(new URL(pathname, args.base), init);
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

  await step('no uncaught JavaScript errors on any page', async () => {
    same(pageErrors, [], 'uncaught page errors');
  });

  await browser.close();
  proxy.close();
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
