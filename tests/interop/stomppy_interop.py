#!/usr/bin/env python3
"""Interoperability checks of stomp-broker against the stomp.py client.

Usage: stomppy_interop.py PORT

Connects to a broker on 127.0.0.1:PORT (started by
stomp-broker/tests/interop_stomppy.rs) with stomp.py connections and
listeners, and checks: CONNECT in 1.2 (and 1.1, 1.0), topics, queues with
client-individual ACK and NACK, retention and redelivery, round robin,
transactions (SEND and ACK), receipts, heart-beats and DISCONNECT with a
receipt.

Every scenario runs, each on destinations and connections of its own.
Exits 0 and prints "stomp.py interop: N checks passed" when every check
passes; otherwise prints "FAIL: [scenario] ..." to stderr for each failed
scenario and exits 1 (2 when the whole run takes too long, so that a hung
client or broker cannot hang the test).
"""

import os
import queue
import sys
import threading
import time

import stomp

HOST = "127.0.0.1"
# How long to wait for something that should happen.
WAIT = 5.0
# How long to watch for something that should not happen.
QUIET = 0.5
# The whole run must end within this; a hang is a failure.
DEADLINE = 45.0


class Failure(Exception):
    """A check failed."""


PASSED = []


def ok(what):
    """Records a passed check."""
    PASSED.append(what)
    print(f"ok {len(PASSED)} - {what}", flush=True)


def check(condition, what, detail=""):
    """Passes `what` if `condition` holds, fails the run otherwise."""
    if not condition:
        raise Failure(f"{what}: {detail}" if detail else what)
    ok(what)


def describe(frame):
    """A frame, for failure messages."""
    if frame is None:
        return "<none>"
    return f"{frame.cmd} headers={frame.headers!r} body={frame.body!r}"


class Recorder(stomp.ConnectionListener):
    """Records everything one connection receives."""

    def __init__(self, name):
        self.name = name
        self.messages = queue.Queue()
        self.cond = threading.Condition()
        self.receipts = []
        self.errors = []
        self.connected_frame = None
        self.heartbeats = 0
        self.heartbeat_timeouts = 0
        self.disconnected = threading.Event()

    def on_connected(self, frame):
        with self.cond:
            self.connected_frame = frame
            self.cond.notify_all()

    def on_message(self, frame):
        self.messages.put(frame)

    def on_receipt(self, frame):
        with self.cond:
            self.receipts.append(frame.headers.get("receipt-id"))
            self.cond.notify_all()

    def on_error(self, frame):
        with self.cond:
            self.errors.append(frame)
            self.cond.notify_all()

    def on_heartbeat(self):
        with self.cond:
            self.heartbeats += 1

    def on_heartbeat_timeout(self):
        with self.cond:
            self.heartbeat_timeouts += 1

    def on_disconnected(self):
        self.disconnected.set()


class Client:
    """A stomp.py connection with its recorder."""

    def __init__(self, port, name, version="1.2", heartbeats=(0, 0)):
        self.name = name
        self.version = version
        classes = {"1.0": stomp.Connection10, "1.1": stomp.Connection11, "1.2": stomp.Connection12}
        kwargs = {"reconnect_attempts_max": 1}
        if version != "1.0":
            kwargs["heartbeats"] = heartbeats
            kwargs["vhost"] = "/"
        self.conn = classes[version]([(HOST, port)], **kwargs)
        self.rec = Recorder(name)
        self.conn.set_listener("recorder", self.rec)
        self.receipt_seq = 0
        try:
            self.conn.connect(username=name, passcode="secret", wait=True)
        except stomp.exception.ConnectFailedException as e:
            raise Failure(f"{name}: CONNECT (STOMP {version}) failed: errors={self.errors()}") from e
        # connect(wait=True) returns when the transport saw CONNECTED, which
        # may be just before the listeners are told: wait for ours.
        with self.rec.cond:
            if not self.rec.cond.wait_for(lambda: self.rec.connected_frame is not None, WAIT):
                raise Failure(f"{name}: no CONNECTED frame reached the listener within {WAIT}s")

    # -- receipts -------------------------------------------------------

    def next_receipt(self, what):
        self.receipt_seq += 1
        return f"{self.name}-{what}-{self.receipt_seq}"

    def wait_receipt(self, receipt, what):
        """Waits for RECEIPT `receipt`; fails on timeout or ERROR."""
        deadline = time.monotonic() + WAIT
        with self.rec.cond:
            while receipt not in self.rec.receipts:
                if self.rec.errors:
                    raise Failure(f"{self.name}: {what}: got ERROR instead of RECEIPT {receipt}: {self.errors()}")
                left = deadline - time.monotonic()
                if left <= 0:
                    raise Failure(f"{self.name}: {what}: no RECEIPT {receipt} within {WAIT}s "
                                  f"(receipts so far: {self.rec.receipts})")
                self.rec.cond.wait(left)

    def errors(self):
        return [describe(f) for f in self.rec.errors]

    # -- frames with receipts -------------------------------------------

    def subscribe(self, destination, sub_id, ack="auto"):
        receipt = self.next_receipt("sub")
        if self.version == "1.0":
            self.conn.subscribe(destination, id=sub_id, ack=ack, receipt=receipt)
        else:
            self.conn.subscribe(destination, sub_id, ack=ack, receipt=receipt)
        self.wait_receipt(receipt, f"SUBSCRIBE {destination}")

    def unsubscribe(self, sub_id):
        receipt = self.next_receipt("unsub")
        self.conn.unsubscribe(id=sub_id, receipt=receipt)
        self.wait_receipt(receipt, f"UNSUBSCRIBE {sub_id}")

    def send(self, destination, body, **headers):
        receipt = self.next_receipt("send")
        self.conn.send(destination, body, receipt=receipt, **headers)
        self.wait_receipt(receipt, f"SEND {body!r} to {destination}")

    def ack(self, message, transaction=None):
        receipt = self.next_receipt("ack")
        self.conn.ack(**self.ack_args(message), transaction=transaction, receipt=receipt)
        self.wait_receipt(receipt, f"ACK of {message.body!r}")

    def nack(self, message):
        receipt = self.next_receipt("nack")
        self.conn.nack(**self.ack_args(message), receipt=receipt)
        self.wait_receipt(receipt, f"NACK of {message.body!r}")

    def ack_args(self, message):
        if self.version == "1.2":
            return {"id": message.headers["ack"]}
        if self.version == "1.1":
            return {"id": message.headers["message-id"], "subscription": message.headers["subscription"]}
        return {"id": message.headers["message-id"]}

    def tx(self, command, transaction):
        receipt = self.next_receipt(command)
        getattr(self.conn, command)(transaction, receipt=receipt)
        self.wait_receipt(receipt, f"{command.upper()} {transaction}")

    # -- messages -------------------------------------------------------

    def message(self, what):
        """The next MESSAGE; fails after WAIT seconds."""
        try:
            return self.rec.messages.get(timeout=WAIT)
        except queue.Empty:
            raise Failure(f"{self.name}: {what}: no MESSAGE within {WAIT}s (errors: {self.errors()})") from None

    def no_message(self, what, seconds=QUIET):
        """No MESSAGE arrives within `seconds`."""
        try:
            frame = self.rec.messages.get(timeout=seconds)
        except queue.Empty:
            return
        raise Failure(f"{self.name}: {what}: unexpected MESSAGE {describe(frame)}")

    def no_errors(self, what):
        if self.rec.errors:
            raise Failure(f"{self.name}: {what}: unexpected ERROR frames: {self.errors()}")

    # -- disconnect -----------------------------------------------------

    def disconnect(self):
        """DISCONNECT with a receipt; the receipt must come and the socket close."""
        receipt = self.next_receipt("bye")
        # stomp.py's disconnect(receipt=...) blocks until the connection
        # ends: run it on a thread so that a broker that never answers
        # fails the check instead of hanging the run.
        worker = threading.Thread(target=self.conn.disconnect, kwargs={"receipt": receipt}, daemon=True)
        worker.start()
        worker.join(WAIT)
        if worker.is_alive():
            raise Failure(f"{self.name}: DISCONNECT did not complete within {WAIT}s "
                          f"(receipts: {self.rec.receipts}, errors: {self.errors()})")
        # stomp.py marks the connection closed on the RECEIPT just before it
        # tells the listeners: disconnect() may return a moment before ours
        # hears of it.
        with self.rec.cond:
            if not self.rec.cond.wait_for(lambda: receipt in self.rec.receipts, WAIT):
                raise Failure(f"{self.name}: DISCONNECT: no RECEIPT {receipt} "
                              f"(receipts: {self.rec.receipts}, errors: {self.errors()})")
        if not self.rec.disconnected.wait(WAIT):
            raise Failure(f"{self.name}: the connection was not closed after the DISCONNECT receipt")
        self.no_errors("DISCONNECT")


def body_is(frame, expected, what):
    check(frame.body == expected, what, f"expected body {expected!r}, got {describe(frame)}")


# ---------------------------------------------------------------------------
# Scenarios
# ---------------------------------------------------------------------------


def connect_12(port):
    c = Client(port, "connect12")
    frame = c.rec.connected_frame
    check(frame.headers.get("version") == "1.2", "CONNECTED negotiates version 1.2", describe(frame))
    check(frame.headers.get("server", "").startswith("stomp-broker/"), "CONNECTED names the server", describe(frame))
    check(bool(frame.headers.get("session")), "CONNECTED has a session id", describe(frame))
    check(c.conn.is_connected(), "stomp.py reports the 1.2 connection as connected")
    c.disconnect()
    check(not c.conn.is_connected(), "DISCONNECT with receipt: RECEIPT received and connection closed")


def topics(port):
    sub = Client(port, "topic-sub")
    sub2 = Client(port, "topic-sub2")
    pub = Client(port, "topic-pub")
    sub.subscribe("/topic/interop.news", "t1")
    sub2.subscribe("/topic/interop.news", "t2")
    ok("SUBSCRIBE with receipt= gets its RECEIPT")

    # stomp.py escapes ':' in 1.2 header values as '\c'; the broker must
    # carry it through to subscribers as the same value.
    pub.send("/topic/interop.news", "hello topic", content_type="text/plain", **{"x-interop": "a:b"})
    ok("SEND with receipt= gets its RECEIPT")
    m = sub.message("topic message")
    body_is(m, "hello topic", "topic subscriber receives the body published by another connection")
    check(m.headers.get("destination") == "/topic/interop.news", "MESSAGE destination header", describe(m))
    check(m.headers.get("subscription") == "t1", "MESSAGE subscription header is the SUBSCRIBE id", describe(m))
    check(bool(m.headers.get("message-id")), "MESSAGE has a message-id", describe(m))
    check(m.headers.get("x-interop") == "a:b", "custom header with an escaped ':' passes through", describe(m))
    check(m.headers.get("content-type") == "text/plain", "content-type passes through", describe(m))
    m2 = sub2.message("topic fan-out")
    body_is(m2, "hello topic", "a second topic subscriber also receives the message (fan-out)")

    sub.unsubscribe("t1")
    pub.send("/topic/interop.news", "after unsubscribe")
    body_is(sub2.message("after unsubscribe"), "after unsubscribe", "remaining subscriber still receives")
    sub.no_message("after UNSUBSCRIBE")
    ok("no MESSAGE after UNSUBSCRIBE (with receipt)")
    for c in (sub, sub2, pub):
        c.disconnect()


def queues(port):
    q = "/queue/interop.work"
    consumer = Client(port, "q-consumer")
    producer = Client(port, "q-producer")
    consumer.subscribe(q, "q1", ack="client-individual")
    for body in ("w1", "w2", "w3"):
        producer.send(q, body)
    got = [consumer.message(f"queue message {i}") for i in range(3)]
    check([m.body for m in got] == ["w1", "w2", "w3"], "queue consumer receives w1, w2, w3 in order",
          [describe(m) for m in got])
    check(all(m.headers.get("ack") for m in got), "1.2 MESSAGEs of a client-individual subscription carry an ack header",
          [describe(m) for m in got])
    check(len({m.headers["ack"] for m in got}) == 3, "ack ids are distinct")
    w1, w2, w3 = got
    consumer.ack(w1)
    consumer.nack(w2)
    consumer.ack(w3)
    ok("ACK and NACK (by the ack header) get their RECEIPTs")
    again = consumer.message("redelivery after NACK")
    body_is(again, "w2", "NACKed message is redelivered")
    check(again.headers.get("destination") == q, "redelivered MESSAGE has the queue as destination", describe(again))
    consumer.ack(again)
    consumer.no_message("after acking everything")
    ok("nothing more arrives once every message is acknowledged")
    consumer.unsubscribe("q1")

    # Nobody consumes now: the queue keeps what is sent.
    producer.send(q, "kept")
    late = Client(port, "q-late")
    late.subscribe(q, "q2", ack="client-individual")
    kept = late.message("retained message")
    body_is(kept, "kept", "queue retains a message sent while nobody consumed; acked ones are gone")
    late.no_message("after the retained message")
    ok("acknowledged messages are not delivered again to a new consumer")
    # Leave "kept" unacknowledged and disconnect: it goes back to the queue.
    late.disconnect()
    last = Client(port, "q-last")
    last.subscribe(q, "q3", ack="client-individual")
    back = last.message("message returned by a disconnect")
    body_is(back, "kept", "an unacknowledged message returns to the queue when its consumer disconnects")
    last.ack(back)
    last.no_message("after acking the returned message")

    # Round robin: two consumers share a queue's messages.
    rr = "/queue/interop.rr"
    a = Client(port, "rr-a")
    b = Client(port, "rr-b")
    a.subscribe(rr, "a")
    b.subscribe(rr, "b")
    bodies = [f"r{i}" for i in range(4)]
    for body in bodies:
        producer.send(rr, body)
    got_a = [a.message("round robin a").body for _ in range(2)]
    got_b = [b.message("round robin b").body for _ in range(2)]
    a.no_message("round robin a: more than its share")
    b.no_message("round robin b: more than its share")
    check(sorted(got_a + got_b) == bodies, "two queue consumers get each message exactly once, two each",
          f"a={got_a} b={got_b}")
    for c in (consumer, producer, last, a, b):
        c.disconnect()


def transactions(port):
    q = "/queue/interop.tx"
    consumer = Client(port, "tx-consumer")
    producer = Client(port, "tx-producer")
    consumer.subscribe(q, "tx")

    producer.tx("begin", "tx-abort")
    producer.send(q, "aborted", transaction="tx-abort")
    producer.tx("abort", "tx-abort")
    ok("BEGIN, transactional SEND and ABORT get their RECEIPTs")
    producer.send(q, "sentinel")
    first = consumer.message("after ABORT")
    body_is(first, "sentinel", "a SEND in an aborted transaction is never delivered")

    producer.tx("begin", "tx-commit")
    producer.send(q, "committed-1", transaction="tx-commit")
    producer.send(q, "committed-2", transaction="tx-commit")
    consumer.no_message("transactional SENDs before COMMIT")
    ok("transactional SENDs are held until COMMIT")
    producer.tx("commit", "tx-commit")
    got = [consumer.message("after COMMIT").body for _ in range(2)]
    check(got == ["committed-1", "committed-2"], "COMMIT delivers the transaction's SENDs in order", got)
    consumer.no_message("after COMMIT")

    # ACK inside a transaction: aborted, the ACK is void (the message stays
    # unacknowledged and a NACK returns it); committed, it counts.
    qa = "/queue/interop.txack"
    acker = Client(port, "tx-acker")
    acker.subscribe(qa, "ta", ack="client-individual")
    producer.send(qa, "t1")
    m = acker.message("message to ack in a transaction")
    acker.tx("begin", "tx-ack-abort")
    acker.ack(m, transaction="tx-ack-abort")
    acker.tx("abort", "tx-ack-abort")
    acker.no_message("after aborting a transactional ACK")
    acker.nack(m)
    again = acker.message("redelivery after the aborted ACK and a NACK")
    body_is(again, "t1", "an ACK in an aborted transaction does not count (NACK still redelivers)")
    acker.tx("begin", "tx-ack-commit")
    acker.ack(again, transaction="tx-ack-commit")
    acker.tx("commit", "tx-ack-commit")
    acker.unsubscribe("ta")
    check_empty = Client(port, "tx-check")
    check_empty.subscribe(qa, "tc", ack="client-individual")
    check_empty.no_message("after a committed ACK")
    ok("an ACK in a committed transaction counts")
    for c in (consumer, producer, acker, check_empty):
        c.disconnect()


def heartbeats(port):
    c = Client(port, "hb", heartbeats=(1000, 1000))
    frame = c.rec.connected_frame
    check(frame.headers.get("heart-beat") == "1000,1000", "CONNECTED answers heart-beat:1000,1000 to 1000,1000",
          describe(frame))
    time.sleep(3.2)
    with c.rec.cond:
        beats, timeouts = c.rec.heartbeats, c.rec.heartbeat_timeouts
    check(beats >= 2, "the broker sent heart-beats (at least 2 in 3 s)",
          f"{beats} heart-beats received in 3.2 s (stomp.py heart-beat timeouts: {timeouts})")
    check(timeouts == 0, "no heart-beat timeout in stomp.py over 3 s", f"{timeouts} timeouts")
    check(c.conn.is_connected(), "still connected after 3 s of heart-beats only")
    c.no_errors("heart-beats")
    c.subscribe("/topic/interop.hb", "hb")
    c.send("/topic/interop.hb", "still alive")
    body_is(c.message("after heart-beats"), "still alive", "the connection still works after 3 s of heart-beats")
    c.disconnect()


def older_versions(port):
    for version in ("1.1", "1.0"):
        c = Client(port, f"v{version}", version=version)
        frame = c.rec.connected_frame
        if version == "1.1":
            check(frame.headers.get("version") == "1.1", "CONNECTED negotiates version 1.1", describe(frame))
        else:
            # STOMP 1.0 CONNECTED has no version header; one saying 1.0 is fine.
            check(frame.headers.get("version") in (None, "1.0"), "CONNECT without accept-version is STOMP 1.0",
                  describe(frame))
        q = f"/queue/interop.v{version}"
        c.subscribe(q, f"s{version}", ack="client")
        c.send(q, f"hello {version}")
        m = c.message(f"STOMP {version} message")
        body_is(m, f"hello {version}", f"STOMP {version}: send and receive on a queue")
        c.ack(m)
        ok(f"STOMP {version}: client ACK (message-id) gets its RECEIPT")
        c.unsubscribe(f"s{version}")
        c.disconnect()


SCENARIOS = [connect_12, topics, queues, transactions, heartbeats, older_versions]


def main():
    if len(sys.argv) != 2 or not sys.argv[1].isdigit():
        print("usage: stomppy_interop.py PORT", file=sys.stderr)
        return 64
    port = int(sys.argv[1])

    def too_slow():
        print(f"FAIL: the run did not finish within {DEADLINE}s (hung client or broker); "
              f"{len(PASSED)} checks had passed", file=sys.stderr, flush=True)
        os._exit(2)

    watchdog = threading.Timer(DEADLINE, too_slow)
    watchdog.daemon = True
    watchdog.start()
    # Every scenario runs (each on its own destinations and connections), so
    # that one failure does not hide the others.
    failures = []
    for scenario in SCENARIOS:
        name = scenario.__name__
        try:
            scenario(port)
        except Failure as e:
            failures.append(f"[{name}] {e}")
        except Exception as e:  # a client error is a failure too, with its cause
            failures.append(f"[{name}] {type(e).__name__}: {e}")
        if failures and failures[-1].startswith(f"[{name}]"):
            print(f"FAIL: {failures[-1]}", file=sys.stderr, flush=True)
    watchdog.cancel()
    if failures:
        print(f"stomp.py interop: {len(PASSED)} checks passed; {len(failures)} of {len(SCENARIOS)} "
              f"scenarios FAILED:", file=sys.stderr, flush=True)
        for failure in failures:
            print(f"  {failure}", file=sys.stderr, flush=True)
        return 1
    print(f"stomp.py interop: {len(PASSED)} checks passed", flush=True)
    return 0


if __name__ == "__main__":
    # os._exit: stomp.py's non-daemon threads must not keep a failed run alive.
    code = main()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
