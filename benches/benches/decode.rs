//! Decoding: `stomp-codec`'s `StompCodec` against the other Rust STOMP
//! parsers, on byte-identical input (see `stomp_benches` for the inputs).
//!
//! Competitors:
//! - `stomp-parser` 0.8: `ClientFrame::try_from(Vec<u8>)` for the `SEND`
//!   inputs, `ServerFrame::try_from(Vec<u8>)` for the `MESSAGE` inputs. It
//!   takes ownership of a buffer holding exactly one frame.
//! - `async-stomp` 0.7 and `tokio-stomp-2` 0.3: their `ClientCodec`, a
//!   `tokio_util::codec::Decoder`. Both are client libraries: they decode
//!   server frames (`MESSAGE`) only, so on the `SEND` inputs only
//!   `stomp-parser` competes.
//!
//! Fairness: every iteration gets a fresh buffer holding the input, built in
//! the setup of `iter_batched`, so filling it is not timed for anyone; the
//! routine returns the decoded item and the buffer, so dropping them is not
//! timed either. Each codec is reused across iterations, as on a
//! connection. What is timed is what each library's API does to turn wire
//! octets into its frame type: ours slices the buffer, the others copy
//! headers into `String`s and the body into a `Vec` (or, for
//! `stomp-parser`, parse in place in the `Vec` they were given).
//!
//! Before timing, every parser is checked to decode every input it is run
//! on into the expected frame (command, destination, body length), so that
//! no parser is timed failing fast.
//!
//! `message_64k_nolen` has no `content-length`: there every parser has to
//! search the 64 KiB body for its NUL, while with `content-length` ours
//! (and `stomp-parser`, which takes the last octet as the NUL) never reads
//! the body at all.
//!
//! Groups: `decode/<input>` with `Throughput::Bytes` (MB/s) and
//! `decode_frames/<input>` with `Throughput::Elements(1)` (frames/s), plus
//! `decode_stream/message_300x32`: 32 frames back to back in one buffer,
//! decoded in a loop as `FramedRead` would (the codecs only; `stomp-parser`
//! needs one frame per buffer).

use std::hint::black_box;

use bytes::BytesMut;
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use stomp_benches::{DESTINATION, Input, Kind, decode_inputs, message_300};
use stomp_codec::{Command, Item, StompCodec};
use tokio_util::codec::Decoder;

/// Frames in the `decode_stream` buffer.
const STREAM_FRAMES: usize = 32;

fn fresh(input: &Input) -> BytesMut {
    BytesMut::from(&input.wire[..])
}

/// Decodes with our codec and checks the frame.
fn check_ours(input: &Input) {
    let mut codec = StompCodec::new();
    let mut buf = fresh(input);
    let Ok(Some(Item::Frame(frame))) = codec.decode_item(&mut buf) else {
        panic!("stomp-codec failed on {}", input.name);
    };
    let command = match input.kind {
        Kind::Send => Command::Send,
        Kind::Message => Command::Message,
    };
    assert_eq!(frame.command(), command, "stomp-codec on {}", input.name);
    assert_eq!(frame.header_str("destination"), Some(DESTINATION));
    assert_eq!(frame.body().len(), input.body.len(), "stomp-codec body");
    assert_eq!(&frame.body()[..], &input.body[..], "stomp-codec body");
    assert!(buf.is_empty(), "stomp-codec left octets on {}", input.name);
}

/// Decodes with stomp-parser and checks the frame.
fn check_stomp_parser(input: &Input) {
    let body_len = match input.kind {
        Kind::Send => match stomp_parser::client::ClientFrame::try_from(input.wire.clone()) {
            Ok(stomp_parser::client::ClientFrame::Send(frame)) => {
                assert_eq!(frame.destination().value(), DESTINATION);
                frame.body().map_or(0, <[u8]>::len)
            }
            other => panic!("stomp-parser failed on {}: {other:?}", input.name),
        },
        Kind::Message => match stomp_parser::server::ServerFrame::try_from(input.wire.clone()) {
            Ok(stomp_parser::server::ServerFrame::Message(frame)) => {
                assert_eq!(frame.destination().value(), DESTINATION);
                frame.body().map_or(0, <[u8]>::len)
            }
            other => panic!("stomp-parser failed on {}: {other:?}", input.name),
        },
    };
    assert_eq!(body_len, input.body.len(), "stomp-parser body");
}

/// Decodes a MESSAGE with async-stomp and checks it.
fn check_async_stomp(input: &Input) {
    let mut buf = fresh(input);
    let decoded = async_stomp::client::ClientCodec::new().decode(&mut buf);
    let Ok(Some(async_stomp::Message {
        content: async_stomp::FromServer::Message { destination, body, .. },
        ..
    })) = decoded
    else {
        panic!("async-stomp failed on {}: {decoded:?}", input.name);
    };
    assert_eq!(destination, DESTINATION);
    assert_eq!(body.as_deref(), Some(&input.body[..]), "async-stomp body");
    assert!(buf.is_empty(), "async-stomp left octets on {}", input.name);
}

/// Decodes a MESSAGE with tokio-stomp-2 and checks it.
fn check_tokio_stomp_2(input: &Input) {
    let mut buf = fresh(input);
    let decoded = tokio_stomp_2::client::ClientCodec.decode(&mut buf);
    let Ok(Some(tokio_stomp_2::Message {
        content: tokio_stomp_2::FromServer::Message { destination, body, .. },
        ..
    })) = decoded
    else {
        panic!("tokio-stomp-2 failed on {}: {decoded:?}", input.name);
    };
    assert_eq!(destination, DESTINATION);
    assert_eq!(body.as_deref(), Some(&input.body[..]), "tokio-stomp-2 body");
    assert!(buf.is_empty(), "tokio-stomp-2 left octets on {}", input.name);
}

/// One group per input and throughput unit.
fn decode(c: &mut Criterion) {
    for input in decode_inputs() {
        check_ours(&input);
        check_stomp_parser(&input);
        if input.kind == Kind::Message {
            check_async_stomp(&input);
            check_tokio_stomp_2(&input);
        }
        for (prefix, throughput) in [
            ("decode", Throughput::Bytes(input.wire_len())),
            ("decode_frames", Throughput::Elements(1)),
        ] {
            // SEND is a client frame: the client libraries async-stomp and
            // tokio-stomp-2 cannot decode it, so only stomp-parser competes.
            let group_name = match input.kind {
                Kind::Send => format!("{prefix}/{} (SEND: only stomp-parser)", input.name),
                Kind::Message => format!("{prefix}/{}", input.name),
            };
            let mut group = c.benchmark_group(group_name);
            group.throughput(throughput);

            let mut codec = StompCodec::new();
            group.bench_function("stomp-codec", |b| {
                b.iter_batched(
                    || fresh(&input),
                    |mut buf| {
                        let item = codec.decode_item(&mut buf);
                        (item, buf)
                    },
                    BatchSize::SmallInput,
                );
            });

            match input.kind {
                Kind::Send => {
                    group.bench_function("stomp-parser", |b| {
                        b.iter_batched(
                            || input.wire.clone(),
                            stomp_parser::client::ClientFrame::try_from,
                            BatchSize::SmallInput,
                        );
                    });
                }
                Kind::Message => {
                    group.bench_function("stomp-parser", |b| {
                        b.iter_batched(
                            || input.wire.clone(),
                            stomp_parser::server::ServerFrame::try_from,
                            BatchSize::SmallInput,
                        );
                    });
                    let mut codec = async_stomp::client::ClientCodec::new();
                    group.bench_function("async-stomp", |b| {
                        b.iter_batched(
                            || fresh(&input),
                            |mut buf| {
                                let item = codec.decode(&mut buf);
                                (item, buf)
                            },
                            BatchSize::SmallInput,
                        );
                    });
                    let mut codec = tokio_stomp_2::client::ClientCodec;
                    group.bench_function("tokio-stomp-2", |b| {
                        b.iter_batched(
                            || fresh(&input),
                            |mut buf| {
                                let item = codec.decode(&mut buf);
                                (item, buf)
                            },
                            BatchSize::SmallInput,
                        );
                    });
                }
            }
            group.finish();
        }
    }
}

/// Decodes every frame in `buf` with `decoder`, keeping the items.
fn drain<D: Decoder>(decoder: &mut D, mut buf: BytesMut) -> (Vec<D::Item>, BytesMut)
where
    D::Error: std::fmt::Debug,
{
    let mut items = Vec::with_capacity(STREAM_FRAMES);
    while let Some(item) = decoder.decode(&mut buf).expect("decodes") {
        items.push(item);
    }
    (items, buf)
}

/// Back-to-back frames in one buffer: the steady state of a connection.
fn decode_stream(c: &mut Criterion) {
    let input = message_300();
    let wire = input.wire.repeat(STREAM_FRAMES);
    let fresh = || BytesMut::from(&wire[..]);

    // Every codec must decode all the frames, and nothing else.
    let (items, rest) = drain(&mut StompCodec::new(), fresh());
    assert_eq!(items.len(), STREAM_FRAMES);
    assert!(items.iter().all(|item| matches!(
        item, Item::Frame(f) if f.body().len() == input.body.len()
    )));
    assert!(rest.is_empty());
    let (items, rest) = drain(&mut async_stomp::client::ClientCodec::new(), fresh());
    assert_eq!(items.len(), STREAM_FRAMES);
    assert!(items.iter().all(|m| matches!(
        &m.content,
        async_stomp::FromServer::Message { body: Some(b), .. } if b.len() == input.body.len()
    )));
    assert!(rest.is_empty());
    let (items, rest) = drain(&mut tokio_stomp_2::client::ClientCodec, fresh());
    assert_eq!(items.len(), STREAM_FRAMES);
    assert!(items.iter().all(|m| matches!(
        &m.content,
        tokio_stomp_2::FromServer::Message { body: Some(b), .. } if b.len() == input.body.len()
    )));
    assert!(rest.is_empty());

    let mut group = c.benchmark_group(format!("decode_stream/{}x{STREAM_FRAMES}", input.name));
    group.throughput(Throughput::Elements(STREAM_FRAMES as u64));
    let mut codec = StompCodec::new();
    group.bench_function("stomp-codec", |b| {
        b.iter_batched(fresh, |buf| drain(&mut codec, black_box(buf)), BatchSize::SmallInput);
    });
    let mut codec = async_stomp::client::ClientCodec::new();
    group.bench_function("async-stomp", |b| {
        b.iter_batched(fresh, |buf| drain(&mut codec, black_box(buf)), BatchSize::SmallInput);
    });
    let mut codec = tokio_stomp_2::client::ClientCodec;
    group.bench_function("tokio-stomp-2", |b| {
        b.iter_batched(fresh, |buf| drain(&mut codec, black_box(buf)), BatchSize::SmallInput);
    });
    group.finish();
}

criterion_group!(benches, decode, decode_stream);
criterion_main!(benches);
