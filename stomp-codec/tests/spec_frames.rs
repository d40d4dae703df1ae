//! Every command of STOMP 1.2, decoded from the frames given as examples in
//! the specification.

mod support;

use stomp_codec::{Command, Item, Version};
use support::{decode_all, headers, one_frame, pairs};

fn check(wire: &[u8], command: Command, expected: &[(&str, &str)], body: &[u8]) {
    let frame = one_frame(wire);
    assert_eq!(frame.command(), command);
    assert_eq!(headers(&frame), pairs(expected));
    assert_eq!(&frame.body()[..], body);
}

#[test]
fn connect_and_stomp() {
    check(
        b"CONNECT\naccept-version:1.2\nhost:stomp.github.org\n\n\0",
        Command::Connect,
        &[("accept-version", "1.2"), ("host", "stomp.github.org")],
        b"",
    );
    check(
        b"STOMP\naccept-version:1.0,1.1,1.2\nhost:/\nheart-beat:10000,10000\n\n\0",
        Command::Stomp,
        &[("accept-version", "1.0,1.1,1.2"), ("host", "/"), ("heart-beat", "10000,10000")],
        b"",
    );
}

#[test]
fn connected() {
    check(
        b"CONNECTED\nversion:1.2\nheart-beat:0,0\nserver:stomp-rs/0.1\nsession:s-1\n\n\0",
        Command::Connected,
        &[
            ("version", "1.2"),
            ("heart-beat", "0,0"),
            ("server", "stomp-rs/0.1"),
            ("session", "s-1"),
        ],
        b"",
    );
}

#[test]
fn send() {
    check(
        b"SEND\ndestination:/queue/a\ncontent-type:text/plain\n\nhello queue a\0",
        Command::Send,
        &[("destination", "/queue/a"), ("content-type", "text/plain")],
        b"hello queue a",
    );
}

#[test]
fn subscribe_and_unsubscribe() {
    check(
        b"SUBSCRIBE\nid:0\ndestination:/queue/foo\nack:client\n\n\0",
        Command::Subscribe,
        &[("id", "0"), ("destination", "/queue/foo"), ("ack", "client")],
        b"",
    );
    check(b"UNSUBSCRIBE\nid:0\n\n\0", Command::Unsubscribe, &[("id", "0")], b"");
}

#[test]
fn ack_and_nack() {
    check(
        b"ACK\nid:12345\ntransaction:tx1\n\n\0",
        Command::Ack,
        &[("id", "12345"), ("transaction", "tx1")],
        b"",
    );
    check(
        b"NACK\nid:12345\ntransaction:tx1\n\n\0",
        Command::Nack,
        &[("id", "12345"), ("transaction", "tx1")],
        b"",
    );
}

#[test]
fn transactions() {
    check(b"BEGIN\ntransaction:tx1\n\n\0", Command::Begin, &[("transaction", "tx1")], b"");
    check(b"COMMIT\ntransaction:tx1\n\n\0", Command::Commit, &[("transaction", "tx1")], b"");
    check(b"ABORT\ntransaction:tx1\n\n\0", Command::Abort, &[("transaction", "tx1")], b"");
}

#[test]
fn disconnect_and_receipt() {
    check(b"DISCONNECT\nreceipt:77\n\n\0", Command::Disconnect, &[("receipt", "77")], b"");
    check(b"RECEIPT\nreceipt-id:77\n\n\0", Command::Receipt, &[("receipt-id", "77")], b"");
}

#[test]
fn message() {
    check(
        b"MESSAGE\nsubscription:0\nmessage-id:007\ndestination:/queue/a\ncontent-type:text/plain\n\nhello queue a\0",
        Command::Message,
        &[
            ("subscription", "0"),
            ("message-id", "007"),
            ("destination", "/queue/a"),
            ("content-type", "text/plain"),
        ],
        b"hello queue a",
    );
}

#[test]
fn error_with_content_length() {
    let body = b"The message:\n-----\nMESSAGE\ndestined:/queue/a\nreceipt:message-12345\n\nHello queue a!\n-----\nDid not contain a destination header, which is REQUIRED\nfor message propagation.\n";
    let mut wire = format!(
        "ERROR\nreceipt-id:message-12345\ncontent-type:text/plain\ncontent-length:{}\nmessage:malformed frame received\n\n",
        body.len()
    )
    .into_bytes();
    wire.extend_from_slice(body);
    wire.push(0);
    let frame = one_frame(&wire);
    assert_eq!(frame.command(), Command::Error);
    assert_eq!(frame.header_str("message"), Some("malformed frame received"));
    assert_eq!(frame.content_length(), Ok(Some(body.len())));
    assert_eq!(&frame.body()[..], &body[..]);
}

#[test]
fn repeated_header_first_wins() {
    let frame = one_frame(
        b"MESSAGE\nsubscription:0\nmessage-id:007\ndestination:/queue/a\nfoo:World\nfoo:Hello\n\n\0",
    );
    assert_eq!(frame.header_str("foo"), Some("World"));
    let foos: Vec<_> = frame.headers().iter().filter(|(n, _)| *n == b"foo").collect();
    assert_eq!(foos.len(), 2, "every occurrence is kept, in order");
}

#[test]
fn every_command_decodes_in_every_version() {
    for version in Version::ALL {
        for command in Command::ALL {
            let wire = format!("{command}\nk:v\n\n\0");
            let items = decode_all(wire.as_bytes(), version).unwrap();
            let [Item::Frame(frame)] = items.as_slice() else { panic!("{items:?}") };
            assert_eq!(frame.command(), command);
            assert_eq!(frame.header_str("k"), Some("v"));
        }
    }
}

#[test]
fn empty_values_and_colons_in_values() {
    let frame = one_frame(b"SEND\ndestination:/queue/a\nempty:\nurl:http://x:80/y\n\n\0");
    assert_eq!(frame.header_str("empty"), Some(""));
    assert_eq!(frame.header_str("url"), Some("http://x:80/y"));
}

#[test]
fn values_are_not_trimmed() {
    let frame = one_frame(b"SEND\nkey: padded \n\n\0");
    assert_eq!(frame.header_str("key"), Some(" padded "));
}
