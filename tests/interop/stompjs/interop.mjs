#!/usr/bin/env node
// Interoperability checks of stomp-broker's WebSocket transport against the
// JavaScript client @stomp/stompjs (with the `ws` package as the WebSocket).
//
// Usage:
//   node interop.mjs WS_URL              the WebSocket checks
//   node interop.mjs WS_URL TCP_PORT     the cross-transport checks: the same
//                                        broker also serves STOMP over TCP on
//                                        127.0.0.1:TCP_PORT
//
// WS_URL is for example ws://127.0.0.1:15674/stomp. Started by
// stomp-broker/tests/interop_stompjs.rs; run scripts/ensure-node first to
// install the pinned packages (package-lock.json).
//
// The WebSocket checks: CONNECT (version 1.2 on subprotocol v12.stomp, and
// the subprotocol capping the version at 1.1 and 1.0), a topic message from a
// second client (body, destination, headers), a SEND with a receipt, a queue
// with client-individual ACK and NACK (redelivery, and redelivery after a
// disconnect), transactions (commit, abort; an ACK inside an aborted
// transaction), heart-beats both ways over 3.5 s of silence, 1 MiB binary and
// text bodies received intact, and a clean deactivate() (DISCONNECT, RECEIPT,
// WebSocket close handshake).
//
// The cross-transport checks: a message sent over TCP reaches a stompjs
// subscriber, and a message (text with escaped headers, binary with NUL
// octets) sent by stompjs reaches a TCP subscriber.
//
// Every scenario runs, each on destinations and connections of its own.
// Prints one line per check; exits 0 after "stompjs interop: N checks passed"
// when every check passed. Otherwise prints "FAIL: [scenario] ..." to stderr
// for each failed scenario, with the last client debug lines, and exits 1;
// a watchdog makes a hang a failure too (exit 1 after 45 s).

import { createHash } from 'node:crypto';
import net from 'node:net';

import { Client } from '@stomp/stompjs';
import { WebSocket } from 'ws';

/** How long to wait for something that should happen (ms). */
const WAIT = 5000;
/** How long to watch for something that should not happen (ms). */
const QUIET = 500;
/** The whole run must end within this (ms). */
const DEADLINE = 45000;
/** The subprotocols offered, best first. */
const PROTOCOLS = ['v12.stomp', 'v11.stomp', 'v10.stomp'];
const MIB = 1024 * 1024;

const [url, tcpPortArg] = process.argv.slice(2);
if (!url || !/^wss?:\/\//.test(url) || process.argv.length > 4) {
  console.error('usage: node interop.mjs WS_URL [TCP_PORT]   (WS_URL like ws://127.0.0.1:15674/stomp)');
  process.exit(2);
}
const tcpPort = tcpPortArg === undefined ? undefined : Number(tcpPortArg);
if (tcpPort !== undefined && !(Number.isInteger(tcpPort) && tcpPort > 0 && tcpPort < 65536)) {
  console.error(`TCP_PORT must be a port number, got ${JSON.stringify(tcpPortArg)}`);
  process.exit(2);
}

const watchdog = setTimeout(() => {
  console.error(`FAIL: the run did not finish within ${DEADLINE / 1000} s (a hang)`);
  dumpDebug();
  process.exit(1);
}, DEADLINE);

// ---------------------------------------------------------------------------
// Reporting

class Failure extends Error {}

let passed = 0;
const failures = [];

function ok(what) {
  passed += 1;
  console.log(`ok ${passed} - ${what}`);
}

function check(condition, what, detail = '') {
  if (!condition) {
    throw new Failure(detail ? `${what}: ${detail}` : what);
  }
  ok(what);
}

function equal(actual, expected, what) {
  check(actual === expected, what, `expected ${show(expected)}, got ${show(actual)}`);
}

function show(value) {
  if (typeof value === 'string' && value.length > 200) {
    return `${JSON.stringify(value.slice(0, 200))}... (${value.length} chars)`;
  }
  return JSON.stringify(value);
}

function describe(frame) {
  if (!frame) return '<none>';
  const body = frame.isBinaryBody ? `<${frame.binaryBody.length} bytes>` : show(frame.body);
  return `${frame.command} headers=${JSON.stringify(frame.headers)} body=${body}`;
}

/** The last debug lines of every client, printed on failure. */
const debugLines = [];
function debugLog(name) {
  return (line) => {
    debugLines.push(`[${name}] ${line.length > 300 ? `${line.slice(0, 300)}...` : line}`);
    if (debugLines.length > 80) debugLines.shift();
  };
}
function dumpDebug() {
  if (debugLines.length === 0) return;
  console.error('--- last stompjs debug lines ---');
  for (const line of debugLines) console.error(line);
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** `promise`, or a Failure naming `what` after `ms`. */
function within(promise, what, ms = WAIT) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Failure(`timed out after ${ms} ms waiting for ${what}`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

const sha256 = (bytes) => createHash('sha256').update(bytes).digest('hex');

/** A queue of received items, awaited one at a time. */
class Inbox {
  constructor(name) {
    this.name = name;
    this.items = [];
    this.waiters = [];
  }
  push(item) {
    const waiter = this.waiters.shift();
    if (waiter) waiter(item);
    else this.items.push(item);
  }
  next(what = `a message on ${this.name}`, ms = WAIT) {
    if (this.items.length > 0) return Promise.resolve(this.items.shift());
    let resolver;
    const waiting = new Promise((resolve) => {
      resolver = resolve;
      this.waiters.push(resolve);
    });
    return within(waiting, what, ms).catch((error) => {
      this.waiters = this.waiters.filter((w) => w !== resolver);
      throw error;
    });
  }
  /** Nothing arrives within `ms`. */
  async quiet(what, ms = QUIET) {
    await sleep(ms);
    check(this.items.length === 0, what, `got ${this.items.map(describe).join('; ')}`);
  }
}

// ---------------------------------------------------------------------------
// stompjs clients

/** Every client opened, so that a failed scenario cannot leave one running. */
const openClients = new Set();

/**
 * A connected stompjs Client (no reconnection). Resolves with
 * { client, connected, events }, where `events` records what happened after
 * CONNECTED; rejects on an ERROR frame, a close or a timeout first.
 */
async function connect(name, { protocols = PROTOCOLS, ...config } = {}) {
  const events = {
    errors: [],
    closes: [],
    socketErrors: [],
    disconnectReceipt: undefined,
    heartbeatsReceived: 0,
    heartbeatLost: 0,
    unhandled: [],
    socket: undefined,
  };
  let settle;
  const connected = new Promise((resolve, reject) => {
    settle = { resolve, reject };
  });
  const client = new Client({
    webSocketFactory: () => {
      events.socket = new WebSocket(url, protocols);
      return events.socket;
    },
    connectHeaders: { login: name, passcode: 'secret', host: '/' },
    reconnectDelay: 0,
    connectionTimeout: WAIT,
    heartbeatIncoming: 0,
    heartbeatOutgoing: 0,
    debug: debugLog(name),
    onConnect: (frame) => settle.resolve(frame),
    onStompError: (frame) => {
      events.errors.push(frame);
      settle.reject(new Failure(`${name}: ERROR frame before CONNECTED: ${describe(frame)}`));
    },
    onWebSocketClose: (event) => {
      events.closes.push({ code: event.code, reason: event.reason, wasClean: event.wasClean });
      const why = events.socketErrors.length > 0 ? ` after the error: ${events.socketErrors.join('; ')}` : '';
      settle.reject(
        new Failure(`${name}: WebSocket closed before CONNECTED (code ${event.code} ${JSON.stringify(event.reason)})${why}`),
      );
    },
    onWebSocketError: (event) => {
      events.socketErrors.push(String(event?.message ?? event?.error ?? event));
      debugLog(name)(`WebSocket error: ${event?.message ?? event}`);
    },
    onDisconnect: (frame) => {
      events.disconnectReceipt = frame;
    },
    onHeartbeatReceived: () => {
      events.heartbeatsReceived += 1;
    },
    onHeartbeatLost: () => {
      events.heartbeatLost += 1;
    },
    onUnhandledMessage: (message) => events.unhandled.push(message),
    onUnhandledReceipt: (frame) => events.unhandled.push(frame),
    onUnhandledFrame: (frame) => events.unhandled.push(frame),
    ...config,
  });
  openClients.add(client);
  client.activate();
  const frame = await within(connected, `${name} to connect`);
  return { client, connected: frame, events, name };
}

/**
 * Resolves with the RECEIPT for `id` (call before sending); rejects if an
 * ERROR frame or a close comes first.
 */
function receipt(session, id) {
  const { client, events, name } = session;
  const errors = events.errors.length;
  const closes = events.closes.length;
  let poll;
  return new Promise((resolve, reject) => {
    client.watchForReceipt(id, (frame) => {
      clearInterval(poll);
      resolve(frame);
    });
    poll = setInterval(() => {
      if (events.errors.length > errors) {
        clearInterval(poll);
        reject(new Failure(`${name}: ERROR instead of RECEIPT ${id}: ${describe(events.errors[errors])}`));
      } else if (events.closes.length > closes) {
        clearInterval(poll);
        reject(new Failure(`${name}: connection closed instead of RECEIPT ${id}: ${JSON.stringify(events.closes[closes])}`));
      }
    }, 20);
    setTimeout(() => clearInterval(poll), WAIT + 100);
  });
}

/** Sends `send(headers)` with a `receipt` header and waits for its RECEIPT. */
async function withReceipt(session, id, send) {
  const waiting = receipt(session, id);
  send({ receipt: id });
  const frame = await within(waiting, `RECEIPT ${id} on ${session.name}`);
  equal(frame.headers['receipt-id'], id, `RECEIPT for ${id} carries receipt-id ${id}`);
  return frame;
}

/** Subscribes with a receipt, so the subscription is live; returns the Inbox. */
async function subscribe(session, destination, headers = {}) {
  const inbox = new Inbox(`${session.name} ${destination}`);
  const id = headers.id ?? `sub-${destination}`;
  await withReceipt(session, `subscribed-${id}`, (r) =>
    session.client.subscribe(destination, (message) => inbox.push(message), { id, ...headers, ...r }),
  );
  return inbox;
}

/** Publishes with a receipt. */
async function publish(session, params, receiptId) {
  await withReceipt(session, receiptId, (r) =>
    session.client.publish({ ...params, headers: { ...(params.headers ?? {}), ...r } }),
  );
}

/** deactivate() must send DISCONNECT, get its RECEIPT and close the WebSocket cleanly. */
async function disconnect(session) {
  const { client, events, name } = session;
  const closesBefore = events.closes.length;
  check(client.connected, `${name} is still connected before deactivate()`);
  await within(client.deactivate(), `${name}'s deactivate() to finish`);
  openClients.delete(client);
  check(
    events.disconnectReceipt?.command === 'RECEIPT',
    `${name}: DISCONNECT answered by a RECEIPT`,
    describe(events.disconnectReceipt),
  );
  const close = events.closes[closesBefore];
  check(
    close !== undefined && close.wasClean && (close.code === 1000 || close.code === 1005),
    `${name}: WebSocket closed with a close handshake (1000 or 1005)`,
    JSON.stringify(close),
  );
  check(events.errors.length === 0, `${name}: no ERROR frame during the session`, events.errors.map(describe).join('; '));
}

/** Fails if the session saw an ERROR frame or a close. */
function healthy(session, what) {
  const { events, client } = session;
  check(
    events.errors.length === 0 && events.closes.length === 0 && client.connected,
    what,
    `errors=${events.errors.map(describe).join('; ')} closes=${JSON.stringify(events.closes)}`,
  );
}

/** Deterministic pseudo-random bytes (xorshift32), NUL octets included. */
function pseudoRandomBytes(length, seed) {
  const bytes = new Uint8Array(length);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < length; i += 1) {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    bytes[i] = x & 0xff;
  }
  for (let i = 0; i < length; i += 4099) bytes[i] = 0; // NULs for sure
  return bytes;
}

/** A text of exactly `bytes` UTF-8 octets, with multi-byte characters. */
function bigText(bytes) {
  const parts = [];
  let size = 0;
  for (let i = 0; size < bytes - 64; i += 1) {
    const part = `line ${i}: héllo wörld €${i % 97} ✓\n`;
    parts.push(part);
    size += Buffer.byteLength(part);
  }
  parts.push('x'.repeat(bytes - size));
  return parts.join('');
}

// ---------------------------------------------------------------------------
// WebSocket scenarios

async function scenarioConnect() {
  const s = await connect('connect');
  equal(s.connected.command, 'CONNECTED', 'CONNECT answered by CONNECTED');
  equal(s.connected.headers.version, '1.2', 'CONNECTED version header is 1.2');
  equal(s.client.connectedVersion, '1.2', 'stompjs reports STOMP 1.2');
  equal(s.events.socket.protocol, 'v12.stomp', 'WebSocket subprotocol negotiated is v12.stomp');
  check(Boolean(s.connected.headers.server), 'CONNECTED has a server header', describe(s.connected));
  check(Boolean(s.connected.headers.session), 'CONNECTED has a session header', describe(s.connected));
  equal(s.connected.headers['user-name'], 'connect', 'CONNECTED user-name is the login');
  await disconnect(s);

  // The subprotocol caps the version, whatever accept-version offers.
  for (const [protocol, version] of [
    ['v11.stomp', '1.1'],
    ['v10.stomp', '1.0'],
  ]) {
    const t = await connect(`connect-${protocol}`, { protocols: [protocol] });
    equal(t.events.socket.protocol, protocol, `subprotocol ${protocol} offered alone is agreed`);
    equal(t.connected.headers.version, version, `subprotocol ${protocol} gives STOMP ${version}`);
    await disconnect(t);
  }
}

async function scenarioTopic() {
  const subscriber = await connect('topic-sub');
  const publisher = await connect('topic-pub');
  const inbox = await subscribe(subscriber, '/topic/stompjs.news');
  await publish(
    publisher,
    {
      destination: '/topic/stompjs.news',
      body: 'hello from stompjs: ünïcödé ✓',
      // Not a backslash followed by c, n or r: stompjs 7.5.0 unescapes
      // header values with sequential replaces, so it reads the (correct)
      // wire value a\\cb\\\\c as "a:b\\:". The cross-transport checks read
      // such a value with a raw TCP client instead.
      headers: { 'content-type': 'text/plain;charset=utf-8', 'x-tag': 'a:b\\d\nline 2' },
    },
    'pub-news',
  );
  const message = await inbox.next();
  equal(message.command, 'MESSAGE', 'subscriber receives a MESSAGE');
  equal(message.body, 'hello from stompjs: ünïcödé ✓', 'MESSAGE body is what was published');
  equal(message.headers.destination, '/topic/stompjs.news', 'MESSAGE destination header');
  equal(message.headers.subscription, 'sub-/topic/stompjs.news', 'MESSAGE subscription header is the id');
  check(Boolean(message.headers['message-id']), 'MESSAGE has a message-id', describe(message));
  equal(message.headers['content-type'], 'text/plain;charset=utf-8', 'MESSAGE keeps content-type');
  equal(message.headers['x-tag'], 'a:b\\d\nline 2', 'MESSAGE keeps a custom header with :, \\ and LF (1.2 escaping)');
  await inbox.quiet('exactly one copy of a topic message per subscription');
  await disconnect(subscriber);
  await disconnect(publisher);
}

async function scenarioReceipt() {
  const s = await connect('receipt');
  const waiting = receipt(s, 'pub-receipt-1');
  s.client.publish({ destination: '/topic/stompjs.receipts', body: 'r', headers: { receipt: 'pub-receipt-1' } });
  const frame = await within(waiting, 'the RECEIPT of a SEND');
  equal(frame.command, 'RECEIPT', 'SEND with a receipt header is answered by RECEIPT');
  equal(frame.headers['receipt-id'], 'pub-receipt-1', 'watchForReceipt sees receipt-id pub-receipt-1');
  check(s.events.unhandled.length === 0, 'no unexpected frame', s.events.unhandled.map(describe).join('; '));
  await disconnect(s);
}

async function scenarioQueueAcks() {
  const producer = await connect('queue-pub');
  const consumer = await connect('queue-sub');
  const queue = '/queue/stompjs.jobs';
  const inbox = await subscribe(consumer, queue, { ack: 'client-individual' });
  await publish(producer, { destination: queue, body: 'job-1' }, 'job-1');
  await publish(producer, { destination: queue, body: 'job-2' }, 'job-2');
  const first = await inbox.next();
  const second = await inbox.next();
  equal(first.body, 'job-1', 'queue delivers job-1 first');
  equal(second.body, 'job-2', 'queue delivers job-2 second');
  check(Boolean(first.headers.ack), 'client-individual MESSAGE has an ack header (1.2)', describe(first));
  await withReceipt(consumer, 'ack-job-1', (r) => first.ack(r));
  await withReceipt(consumer, 'nack-job-2', (r) => second.nack(r));
  const again = await inbox.next('job-2 redelivered after NACK');
  equal(again.body, 'job-2', 'NACKed job-2 is redelivered');
  equal(again.headers.redelivered, 'true', 'the redelivery has redelivered:true');
  await withReceipt(consumer, 'ack-job-2', (r) => again.ack(r));
  await inbox.quiet('no more deliveries once both are acknowledged');

  // Unacknowledged at disconnect: back to the queue, for the next consumer.
  await publish(producer, { destination: queue, body: 'job-3' }, 'job-3');
  const third = await inbox.next();
  equal(third.body, 'job-3', 'queue delivers job-3');
  await disconnect(consumer);
  const next = await connect('queue-sub-2');
  const inbox2 = await subscribe(next, queue, { ack: 'client-individual' });
  const redelivered = await inbox2.next('job-3 redelivered to a new consumer after a disconnect');
  equal(redelivered.body, 'job-3', 'unacknowledged job-3 goes to the next consumer after a disconnect');
  await withReceipt(next, 'ack-job-3', (r) => redelivered.ack(r));
  await disconnect(next);
  await disconnect(producer);
}

async function scenarioTransactions() {
  const subscriber = await connect('tx-sub');
  const sender = await connect('tx-pub');
  const topic = '/topic/stompjs.tx';
  const inbox = await subscribe(subscriber, topic);

  const tx = sender.client.begin('tx-commit');
  sender.client.publish({ destination: topic, body: 'in-tx-1', headers: { transaction: tx.id } });
  sender.client.publish({ destination: topic, body: 'in-tx-2', headers: { transaction: tx.id } });
  await inbox.quiet('nothing is delivered before COMMIT');
  tx.commit();
  equal((await inbox.next()).body, 'in-tx-1', 'COMMIT delivers the first SEND');
  equal((await inbox.next()).body, 'in-tx-2', 'COMMIT delivers the second SEND, in order');

  const aborted = sender.client.begin('tx-abort');
  sender.client.publish({ destination: topic, body: 'aborted', headers: { transaction: aborted.id } });
  aborted.abort();
  // Frames of one connection are handled in order: this comes after ABORT.
  await publish(sender, { destination: topic, body: 'after-abort' }, 'after-abort');
  equal((await inbox.next()).body, 'after-abort', 'ABORT discards the SEND (the next message is the later one)');
  await inbox.quiet('nothing of the aborted transaction arrives');

  // An ACK inside an aborted transaction does not happen.
  const queue = '/queue/stompjs.tx';
  const consumer = await connect('tx-consumer');
  const jobs = await subscribe(consumer, queue, { ack: 'client-individual' });
  await publish(sender, { destination: queue, body: 'tx-job' }, 'tx-job');
  const job = await jobs.next();
  const ackTx = consumer.client.begin('tx-ack');
  job.ack({ transaction: ackTx.id });
  ackTx.abort();
  await withReceipt(consumer, 'ack-after-abort', (r) => job.ack(r));
  healthy(consumer, 'the message is still unacknowledged after ABORT (a later ACK succeeds)');

  healthy(sender, 'transactions raised no ERROR');
  await disconnect(consumer);
  await disconnect(subscriber);
  await disconnect(sender);
}

async function scenarioHeartbeats() {
  const s = await connect('heartbeat', { heartbeatIncoming: 1000, heartbeatOutgoing: 1000 });
  const header = s.connected.headers['heart-beat'] ?? '';
  const match = /^(\d+),(\d+)$/.exec(header);
  check(match !== null, 'CONNECTED has a heart-beat header sx,sy', show(header));
  const [sx, sy] = [Number(match[1]), Number(match[2])];
  check(sx > 0 && sy > 0, 'the broker agrees to heart-beats both ways', header);
  const inbox = await subscribe(s, '/topic/stompjs.heartbeat');
  const before = s.events.heartbeatsReceived;
  await sleep(3500);
  const received = s.events.heartbeatsReceived - before;
  const interval = Math.max(sx, 1000);
  check(
    received >= Math.floor(3500 / interval) - 1 && received >= 1,
    `broker heart-beats arrive over 3.5 s of silence (every ${interval} ms)`,
    `received ${received}`,
  );
  equal(s.events.heartbeatLost, 0, 'stompjs never lost the broker heart-beat');
  healthy(s, 'still connected after 3.5 s of silence (the broker accepts stompjs heart-beats)');
  const other = await connect('heartbeat-pub');
  await publish(other, { destination: '/topic/stompjs.heartbeat', body: 'still here' }, 'hb-pub');
  equal((await inbox.next()).body, 'still here', 'a message still arrives after the silence');
  await disconnect(other);
  await disconnect(s);
}

async function scenarioLarge() {
  const subscriber = await connect('large-sub');
  const publisher = await connect('large-pub');
  const topic = '/topic/stompjs.large';
  const inbox = await subscribe(subscriber, topic);

  const binary = pseudoRandomBytes(MIB, 0x5eed);
  await publish(
    publisher,
    { destination: topic, binaryBody: binary, headers: { 'content-type': 'application/octet-stream' } },
    'large-binary',
  );
  const got = await inbox.next('the 1 MiB binary message');
  const body = got.binaryBody;
  equal(body.length, MIB, '1 MiB binary body: length');
  equal(sha256(body), sha256(binary), '1 MiB binary body: sha256 (NUL octets included)');
  equal(got.headers['content-length'], String(MIB), '1 MiB binary body: content-length header');

  const text = bigText(MIB);
  await publish(publisher, { destination: topic, body: text }, 'large-text');
  const gotText = await inbox.next('the 1 MiB text message');
  equal(Buffer.byteLength(gotText.body), MIB, '1 MiB text body: UTF-8 length');
  equal(sha256(gotText.body), sha256(text), '1 MiB text body: sha256');
  healthy(subscriber, 'large messages raised no ERROR');
  await disconnect(subscriber);
  await disconnect(publisher);
}

// ---------------------------------------------------------------------------
// A raw STOMP 1.2 client over TCP, for the cross-transport checks.

function escapeHeader(value) {
  return String(value).replace(/[\\\r\n:]/g, (c) => ({ '\\': '\\\\', '\r': '\\r', '\n': '\\n', ':': '\\c' })[c]);
}

function unescapeHeader(value) {
  return value.replace(/\\(.)/g, (_, c) => ({ '\\': '\\', r: '\r', n: '\n', c: ':' })[c] ?? `\\${c}`);
}

class TcpStomp {
  constructor(name) {
    this.name = name;
    this.buffer = Buffer.alloc(0);
    // MESSAGE frames, and the others (CONNECTED, RECEIPT, ERROR): a
    // message to a destination the client itself subscribed to may come
    // before the RECEIPT of its SEND.
    this.frames = new Inbox(`${name} (tcp)`);
    this.replies = new Inbox(`${name} (tcp replies)`);
    this.closed = false;
  }

  async connect(port) {
    this.socket = net.connect({ host: '127.0.0.1', port });
    this.socket.setNoDelay(true);
    this.socket.on('data', (chunk) => {
      this.buffer = Buffer.concat([this.buffer, chunk]);
      this.parse();
    });
    this.socket.on('error', (error) => debugLog(this.name)(`TCP error: ${error.message}`));
    this.socket.on('close', () => {
      this.closed = true;
    });
    await within(new Promise((resolve) => this.socket.once('connect', resolve)), `${this.name} TCP connect`);
    this.write('CONNECT', { 'accept-version': '1.2', host: '/', login: this.name, 'heart-beat': '0,0' });
    const connected = await this.replies.next(`CONNECTED on ${this.name}`);
    if (connected.command !== 'CONNECTED') {
      throw new Failure(`${this.name}: CONNECT over TCP answered by ${describe(connected)}`);
    }
    return connected;
  }

  /** Frames from the buffer; heart-beat EOLs between frames are skipped. */
  parse() {
    for (;;) {
      let start = 0;
      while (start < this.buffer.length && (this.buffer[start] === 0x0a || this.buffer[start] === 0x0d)) start += 1;
      this.buffer = this.buffer.subarray(start);
      const end = this.buffer.indexOf('\n\n');
      const endCr = this.buffer.indexOf('\r\n\r\n');
      let headEnd;
      let bodyStart;
      if (endCr !== -1 && (end === -1 || endCr < end)) {
        headEnd = endCr;
        bodyStart = endCr + 4;
      } else if (end !== -1) {
        headEnd = end;
        bodyStart = end + 2;
      } else {
        return;
      }
      const lines = this.buffer.subarray(0, headEnd).toString('utf8').split(/\r?\n/);
      const command = lines.shift();
      const headers = {};
      for (const line of lines) {
        const colon = line.indexOf(':');
        const key = unescapeHeader(line.slice(0, colon));
        if (!(key in headers)) headers[key] = unescapeHeader(line.slice(colon + 1));
      }
      let bodyEnd;
      if (headers['content-length'] !== undefined) {
        bodyEnd = bodyStart + Number(headers['content-length']);
        if (this.buffer.length < bodyEnd + 1) return;
      } else {
        bodyEnd = this.buffer.indexOf(0, bodyStart);
        if (bodyEnd === -1) return;
      }
      if (this.buffer[bodyEnd] !== 0) {
        this.replies.push({ command: 'MALFORMED', headers, body: 'no NUL after the body' });
        return;
      }
      const body = Buffer.from(this.buffer.subarray(bodyStart, bodyEnd));
      this.buffer = this.buffer.subarray(bodyEnd + 1);
      const frame = { command, headers, binaryBody: body, body: body.toString('utf8'), isBinaryBody: true };
      (command === 'MESSAGE' ? this.frames : this.replies).push(frame);
    }
  }

  write(command, headers, body) {
    const bytes = body === undefined ? Buffer.alloc(0) : Buffer.from(body);
    const escape = command === 'CONNECT' ? String : escapeHeader;
    let head = `${command}\n`;
    for (const [key, value] of Object.entries(headers)) head += `${escape(key)}:${escape(value)}\n`;
    if (body !== undefined) head += `content-length:${bytes.length}\n`;
    this.socket.write(Buffer.concat([Buffer.from(`${head}\n`), bytes, Buffer.from([0])]));
  }

  /** Sends with a receipt and waits for it. */
  async request(command, headers, body) {
    const id = `${this.name}-${command.toLowerCase()}-${Math.random().toString(36).slice(2)}`;
    this.write(command, { ...headers, receipt: id }, body);
    const reply = await this.replies.next(`RECEIPT ${id} on ${this.name}`);
    check(
      reply.command === 'RECEIPT' && reply.headers['receipt-id'] === id,
      `${this.name}: ${command} over TCP answered by its RECEIPT`,
      describe(reply),
    );
  }

  async disconnect() {
    this.write('DISCONNECT', { receipt: 'bye' });
    const reply = await this.replies.next(`RECEIPT of DISCONNECT on ${this.name}`);
    check(reply.command === 'RECEIPT' && reply.headers['receipt-id'] === 'bye', `${this.name}: DISCONNECT over TCP answered by RECEIPT`, describe(reply));
    await within(
      new Promise((resolve) => (this.closed ? resolve() : this.socket.once('close', resolve))),
      `${this.name}: the broker to close the TCP connection after DISCONNECT`,
    );
  }
}

async function scenarioCrossTransport() {
  const topic = '/topic/stompjs.cross';
  const ws = await connect('cross-ws');
  const wsInbox = await subscribe(ws, topic);
  const tcp = new TcpStomp('cross-tcp');
  const connected = await tcp.connect(tcpPort);
  equal(connected.headers.version, '1.2', 'TCP client connected with STOMP 1.2 to the same broker');
  await tcp.request('SUBSCRIBE', { id: 'tcp-sub', destination: topic, ack: 'auto' });

  // TCP -> WebSocket. The WebSocket client hears its own later sends too, and
  // the TCP client its own: each side reads both, in order.
  await tcp.request('SEND', { destination: topic, 'content-type': 'text/plain', 'x-note': 'from:tcp\nline 2' }, 'hello from TCP ✓');
  const fromTcp = await wsInbox.next('the message sent over TCP, at the stompjs subscriber');
  equal(fromTcp.body, 'hello from TCP ✓', 'TCP -> WebSocket: body');
  equal(fromTcp.headers.destination, topic, 'TCP -> WebSocket: destination header');
  equal(fromTcp.headers['x-note'], 'from:tcp\nline 2', 'TCP -> WebSocket: escaped header value');
  const echo = await tcp.frames.next('the TCP client its own message');
  equal(echo.body, 'hello from TCP ✓', 'TCP subscriber gets its own message too');

  // WebSocket -> TCP, text with escaped headers.
  await publish(
    ws,
    { destination: topic, body: 'hello from stompjs ✓', headers: { 'x-note': 'from:ws\nline 2', 'x-tag': 'a:b\\c' } },
    'cross-text',
  );
  const fromWs = await tcp.frames.next('the message sent by stompjs, at the TCP subscriber');
  equal(fromWs.command, 'MESSAGE', 'WebSocket -> TCP: MESSAGE');
  equal(fromWs.body, 'hello from stompjs ✓', 'WebSocket -> TCP: body');
  equal(fromWs.headers.destination, topic, 'WebSocket -> TCP: destination header');
  equal(fromWs.headers.subscription, 'tcp-sub', 'WebSocket -> TCP: subscription header');
  equal(fromWs.headers['x-note'], 'from:ws\nline 2', 'WebSocket -> TCP: escaped header value');
  equal(fromWs.headers['x-tag'], 'a:b\\c', 'WebSocket -> TCP: header value with \\ before c');
  equal((await wsInbox.next()).body, 'hello from stompjs ✓', 'stompjs subscriber gets its own message too');

  // WebSocket -> TCP, binary with NUL octets (a binary WebSocket message).
  const binary = pseudoRandomBytes(64 * 1024, 42);
  await publish(ws, { destination: topic, binaryBody: binary }, 'cross-binary');
  const binFromWs = await tcp.frames.next('the binary message sent by stompjs, at the TCP subscriber');
  equal(binFromWs.binaryBody.length, binary.length, 'WebSocket -> TCP: 64 KiB binary body length');
  equal(sha256(binFromWs.binaryBody), sha256(binary), 'WebSocket -> TCP: 64 KiB binary body sha256');
  equal(sha256((await wsInbox.next()).binaryBody), sha256(binary), 'stompjs gets the binary body back intact');

  // TCP -> WebSocket, a queue: the stompjs consumer ACKs what TCP sent.
  const queue = '/queue/stompjs.cross';
  const jobs = await subscribe(ws, queue, { ack: 'client-individual' });
  await tcp.request('SEND', { destination: queue }, Buffer.from([1, 0, 2, 0, 3]));
  const job = await jobs.next('the queue message sent over TCP');
  equal(sha256(job.binaryBody), sha256(Buffer.from([1, 0, 2, 0, 3])), 'TCP -> WebSocket queue: body with NUL octets');
  await withReceipt(ws, 'cross-ack', (r) => job.ack(r));

  await wsInbox.quiet('no stray messages at the stompjs subscriber');
  await tcp.frames.quiet('no stray messages at the TCP subscriber', 0);
  await tcp.replies.quiet('no stray frames (ERROR) at the TCP client', 0);
  await tcp.disconnect();
  await disconnect(ws);
}

// ---------------------------------------------------------------------------

async function run(name, scenario) {
  try {
    await scenario();
  } catch (error) {
    const message = error instanceof Failure ? error.message : (error?.stack ?? String(error));
    failures.push(`[${name}] ${message}`);
    console.error(`FAIL: [${name}] ${message}`);
  } finally {
    for (const client of openClients) {
      openClients.delete(client);
      await client.deactivate({ force: true }).catch(() => {});
    }
  }
}

process.on('unhandledRejection', (error) => {
  console.error(`FAIL: unhandled rejection: ${error?.stack ?? error}`);
  dumpDebug();
  process.exit(1);
});

const scenarios =
  tcpPort === undefined
    ? [
        ['connect', scenarioConnect],
        ['topic', scenarioTopic],
        ['receipt', scenarioReceipt],
        ['queue-acks', scenarioQueueAcks],
        ['transactions', scenarioTransactions],
        ['heart-beats', scenarioHeartbeats],
        ['large-messages', scenarioLarge],
      ]
    : [['cross-transport', scenarioCrossTransport]];

for (const [name, scenario] of scenarios) {
  await run(name, scenario);
}
clearTimeout(watchdog);
if (failures.length > 0) {
  dumpDebug();
  console.error(`stompjs interop: ${failures.length} scenario(s) failed, ${passed} checks passed`);
  process.exit(1);
}
console.log(`stompjs interop: ${passed} checks passed`);
process.exit(0);
