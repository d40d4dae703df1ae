#!/usr/bin/env python3
"""Writes the committed seed corpus under fuzz/seeds/<target>/.

Run from anywhere: python3 fuzz/gen_seeds.py. It replaces the files it
writes and removes nothing else. The input layout of each target is at the
top of fuzz/fuzz_targets/<target>.rs; this script follows it:

- decode_frame:  version byte, limits byte(s), stream
- decode_stream: version byte, limits byte(s), chunk-size count, sizes, stream
- roundtrip:     version, command index, flags, separator, fields
"""

import os

HERE = os.path.dirname(os.path.abspath(__file__))
SEEDS = os.path.join(HERE, "seeds")

V10, V11, V12 = 0, 1, 2
DEFAULT_LIMITS = b"\x00"


def small_limits(frame, body, headers, line):
    """The limits prefix: max_frame_size = 1 + 2*frame, body, headers % 16, line."""
    return bytes([0x80, frame, body, headers, line])


# (name, version, limits prefix, stream)
STREAMS = [
    ("connect_1_2", V12, DEFAULT_LIMITS,
     b"CONNECT\naccept-version:1.0,1.1,1.2\nhost:stomp.example\nlogin:guest\n"
     b"passcode:gu\\est:pa\\ss\nheart-beat:10000,10000\n\n\0"),
    ("stomp_command", V12, DEFAULT_LIMITS,
     b"STOMP\naccept-version:1.2\nhost:/\n\n\0"),
    ("connected_escape_looking", V12, DEFAULT_LIMITS,
     b"CONNECTED\nversion:1.2\nsession:sess\\n1\\c\\t\nserver:stomp-rs/0.1 (a:b)\nheart-beat:0,0\n\n\0"),
    ("send_content_length_nul_body", V12, DEFAULT_LIMITS,
     b"SEND\ndestination:/queue/a\ncontent-length:5\ncontent-type:application/octet-stream\n\na\0b\0c\0"),
    ("send_no_content_length", V12, DEFAULT_LIMITS,
     b"SEND\ndestination:/topic/chat\ncontent-type:text/plain\n\nhello world\0"),
    ("subscribe", V12, DEFAULT_LIMITS,
     b"SUBSCRIBE\nid:0\ndestination:/queue/foo\nack:client-individual\n\n\0"),
    ("unsubscribe", V12, DEFAULT_LIMITS, b"UNSUBSCRIBE\nid:0\nreceipt:r-1\n\n\0"),
    ("ack_nack", V12, DEFAULT_LIMITS,
     b"ACK\nid:msg-1\ntransaction:tx1\n\n\0NACK\nid:msg-2\n\n\0"),
    ("begin_commit_abort", V12, DEFAULT_LIMITS,
     b"BEGIN\ntransaction:tx1\n\n\0COMMIT\ntransaction:tx1\n\n\0ABORT\ntransaction:tx2\n\n\0"),
    ("disconnect", V12, DEFAULT_LIMITS, b"DISCONNECT\nreceipt:77\n\n\0"),
    ("message", V12, DEFAULT_LIMITS,
     b"MESSAGE\nsubscription:0\nmessage-id:007\ndestination:/queue/a\nack:ack-1\ncontent-length:2\n\nhi\0"),
    ("receipt", V12, DEFAULT_LIMITS, b"RECEIPT\nreceipt-id:77\n\n\0"),
    ("error_with_body", V12, DEFAULT_LIMITS,
     b"ERROR\nmessage:malformed frame\\c bad\ncontent-type:text/plain\ncontent-length:13\n\nsee \0 details\0"),
    ("crlf_line_endings", V12, DEFAULT_LIMITS,
     b"SEND\r\ndestination:/queue/a\r\ncontent-length:3\r\n\r\nabc\0\r\n"
     b"SUBSCRIBE\r\nid:1\r\ndestination:/topic/x\r\n\r\n\0"),
    ("heartbeats_between_frames", V12, DEFAULT_LIMITS,
     b"\n\r\n\nSEND\ndestination:/q\n\nx\0\n\n\r\nRECEIPT\nreceipt-id:1\n\n\0\n\r"),
    ("escapes_1_2", V12, DEFAULT_LIMITS,
     b"MESSAGE\ndestination:/queue/a\\cb\nfoo\\nbar:line1\\nline2\\r\\\\end\\c\n"
     b"subscription:1\nmessage-id:1\n\n\0"),
    ("escapes_1_1", V11, DEFAULT_LIMITS,
     b"MESSAGE\ndestination:/queue/a\\cb\nk\\\\ey:v\\nal\\cue\nsubscription:1\nmessage-id:1\n\n\0"),
    ("escape_cr_in_1_1_is_invalid", V11, DEFAULT_LIMITS,
     b"SEND\ndestination:/q\nx:a\\rb\n\n\0"),
    ("undefined_escape", V12, DEFAULT_LIMITS, b"SEND\ndestination:/q\\t\n\n\0"),
    ("dangling_backslash", V12, DEFAULT_LIMITS, b"SEND\ndestination:/q\\\n\n\0"),
    ("no_escapes_in_1_0", V10, DEFAULT_LIMITS,
     b"SEND\ndestination:/queue/a\\b\\n\nurl:http://h:80/\n\nbody\0"),
    ("repeated_headers", V12, DEFAULT_LIMITS,
     b"MESSAGE\nfoo:World\nfoo:Hello\ndestination:/q\ndestination:/r\nmessage-id:1\nsubscription:s\n\n\0"),
    ("first_content_length_wins", V12, DEFAULT_LIMITS,
     b"SEND\ncontent-length:3\ncontent-length:1\n\na\0b\0"),
    ("session_several_frames", V12, DEFAULT_LIMITS,
     b"CONNECT\naccept-version:1.2\nhost:h\n\n\0"
     b"SUBSCRIBE\nid:0\ndestination:/topic/t\n\n\0\n"
     b"SEND\ndestination:/topic/t\ncontent-length:4\n\nping\0\n"
     b"DISCONNECT\nreceipt:bye\n\n\0"),
    ("truncated_body", V12, DEFAULT_LIMITS,
     b"SEND\ndestination:/queue/a\ncontent-length:10\n\n0123"),
    ("truncated_head", V12, DEFAULT_LIMITS, b"SUBSCRIBE\nid:0\ndesti"),
    ("raw_colon_in_value", V12, DEFAULT_LIMITS,
     b"SEND\ndestination:/queue/a\nurl:http://example.com:8080/x\nempty:\n\n\0"),
    ("malformed_header", V12, DEFAULT_LIMITS, b"SEND\nnovalue\n\n\0"),
    ("empty_header_name", V12, DEFAULT_LIMITS, b"SEND\n:value\n\n\0"),
    ("unknown_command", V12, DEFAULT_LIMITS, b"send\n\n\0"),
    ("invalid_content_length", V12, DEFAULT_LIMITS, b"SEND\ncontent-length:-1\n\n\0"),
    ("missing_nul_after_length", V12, DEFAULT_LIMITS, b"SEND\ncontent-length:2\n\nabc\0"),
    ("nul_in_header_value", V12, DEFAULT_LIMITS, b"SEND\nx:a\0b\n\n\0"),
    ("cr_inside_lines", V10, DEFAULT_LIMITS, b"SEND\nx:a\rb\r\r\n\r\nbody\r\n\0"),
    # Small limits: max_frame_size 129, body 16, 4 headers, 32-octet lines.
    ("limits_too_many_headers", V12, small_limits(64, 16, 4, 32),
     b"SEND\na:1\nb:2\nc:3\nd:4\ne:5\n\n\0"),
    ("limits_line_too_long", V12, small_limits(64, 16, 4, 32),
     b"SEND\nk:" + b"v" * 40 + b"\n\n\0"),
    ("limits_body_too_large", V12, small_limits(64, 16, 4, 32),
     b"SEND\n\n" + b"b" * 20 + b"\0"),
    ("limits_declared_body_too_large", V12, small_limits(64, 16, 4, 32),
     b"SEND\ncontent-length:17\n\n"),
    ("limits_frame_too_large", V12, small_limits(16, 255, 15, 255),
     b"SEND\npad:" + b"p" * 30 + b"\n\n\0"),
    ("limits_fit_exactly", V12, small_limits(64, 16, 4, 32),
     b"SEND\nk:" + b"v" * 30 + b"\r\n\n" + b"b" * 16 + b"\0\nRECEIPT\nreceipt-id:1\n\n\0"),
]

# Chunk-size prefixes for decode_stream: (count byte, sizes)
CHUNKINGS = [
    [1], [2], [3], [7], [1, 5, 0], [0, 2], [64], [], [13, 1], [4, 4, 0, 9],
]

# roundtrip: (name, version, command index, flags, separator, fields...)
# Command indexes: 0 CONNECT, 1 STOMP, 2 CONNECTED, 3 SEND, 4 SUBSCRIBE,
# 5 UNSUBSCRIBE, 6 ACK, 7 NACK, 8 BEGIN, 9 COMMIT, 10 ABORT, 11 DISCONNECT,
# 12 MESSAGE, 13 RECEIPT, 14 ERROR.
# flags: bits 0-1 content-length mode, bits 2-4 number of extras.
def extras(k):
    return k << 2


ROUNDTRIP = [
    ("connect", V12, 0, 0, b"|",
     [b"accept-version", b"1.0,1.1,1.2", b"host", b"h", b"passcode", b"a\\b:c", b""]),
    ("connect_newline_unencodable", V12, 0, 0, b"|", [b"login", b"a\nb", b""]),
    ("stomp", V11, 1, 0, b"|", [b"accept-version", b"1.1", b"host", b"/", b""]),
    ("connected", V12, 2, 0, b"|",
     [b"version", b"1.2", b"session", b"s\\n:1", b"heart-beat", b"0,0", b""]),
    ("send_body_auto_length", V12, 3, 0, b"|", [b"destination", b"/queue/a", b"hello"]),
    ("send_nul_body", V12, 3, 0, b"|", [b"destination", b"/queue/a", b"a\0b\0c"]),
    ("send_length_first", V12, 3, 1, b"|", [b"destination", b"/queue/a", b"hello"]),
    ("send_length_last", V11, 3, 2, b"|", [b"destination", b"/queue/a", b"hello"]),
    ("send_length_wrong", V12, 3, 3, b"|", [b"destination", b"/queue/a", b"hello"]),
    ("send_length_text", V12, 3, 0, b"|", [b"content-length", b"five", b"hello"]),
    ("send_escapes_1_2", V12, 3, 0, b"|",
     [b"a:b", b"line1\nline2\r\\end:", b"k\\", b"\r", b"body"]),
    ("send_escapes_1_1", V11, 3, 0, b"|", [b"a:b", b"x\ny\\z:", b"body"]),
    ("send_cr_in_1_1", V11, 3, 0, b"|", [b"x", b"a\rb", b""]),
    ("send_1_0_colon_value", V10, 3, 0, b"|", [b"url", b"http://h:80/", b"x\\y", b"\\n", b"b"]),
    ("send_1_0_colon_name", V10, 3, 0, b"|", [b"a:b", b"v", b""]),
    ("empty_name", V12, 3, 0, b"|", [b"", b"v", b""]),
    ("empty_value_odd_field", V12, 4, 0, b"|", [b"id", b"0", b"ack", b""]),
    ("subscribe", V12, 4, 0, b"|", [b"id", b"0", b"destination", b"/queue/foo", b"ack", b"client", b""]),
    ("unsubscribe", V12, 5, 0, b"|", [b"id", b"0", b""]),
    ("ack", V12, 6, 0, b"|", [b"id", b"m-1", b"transaction", b"tx", b""]),
    ("nack", V11, 7, 0, b"|", [b"id", b"m-2", b""]),
    ("begin", V12, 8, 0, b"|", [b"transaction", b"tx1", b""]),
    ("commit", V12, 9, 0, b"|", [b"transaction", b"tx1", b""]),
    ("abort", V10, 10, 0, b"|", [b"transaction", b"tx1", b""]),
    ("disconnect", V12, 11, 0, b"|", [b"receipt", b"77", b""]),
    ("message_with_extras", V12, 12, extras(2), b"|",
     [b"destination", b"/topic/chat", b"message-id", b"42", b"subscription", b"sub-1", b"ack", b"a:1", b"hello"]),
    ("message_extras_escaped", V10, 12, extras(1), b"|",
     [b"destination", b"/topic/a:b", b"subscription", b"s\n1", b"x"]),
    ("message_repeated_headers", V12, 12, extras(1), b"|",
     [b"foo", b"World", b"foo", b"Hello", b"foo", b"again", b""]),
    ("receipt", V12, 13, 0, b"|", [b"receipt-id", b"77", b""]),
    ("error", V12, 14, 1, b"|", [b"message", b"bad: frame\nsee body", b"see \0 details"]),
    ("nul_separator", V12, 3, 0, b"\0", [b"destination", b"/q|x", b"body|with|bars"]),
    ("nul_in_header", V12, 3, 0, b"|", [b"x", b"a\0b", b""]),
]


def write(target, name, data):
    d = os.path.join(SEEDS, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def main():
    for name, version, limits, stream in STREAMS:
        write("decode_frame", name, bytes([version]) + limits + stream)
    for i, (name, version, limits, stream) in enumerate(STREAMS):
        sizes = CHUNKINGS[i % len(CHUNKINGS)]
        prefix = bytes([version]) + limits + bytes([len(sizes)]) + bytes(sizes)
        write("decode_stream", name, prefix + stream)
    for name, version, command, flags, sep, fields in ROUNDTRIP:
        data = bytes([version, command, flags]) + sep + sep.join(fields)
        write("roundtrip", name, data)


if __name__ == "__main__":
    main()
