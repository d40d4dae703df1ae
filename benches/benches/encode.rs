//! Encoding: `stomp-codec`'s `encode_frame` and `PreparedFrame` against the
//! other Rust STOMP libraries' encoders, on equivalent frames.
//!
//! Every encoder is checked, before timing, to write exactly the input's
//! wire octets (see `stomp_benches`).
//!
//! - `encode/<input>`: one frame into a reused `BytesMut`, cleared each
//!   iteration.
//!   - `stomp-codec`: `encode_frame(&frame, ..)`; the frame is built once.
//!   - `async-stomp` 0.7 and `tokio-stomp-2` 0.3: `ClientCodec` as an
//!     `Encoder<Message<ToServer>>`. They only encode client frames, so they
//!     appear in the `SEND` groups only. The encoder takes the message by
//!     value, so a fresh one is built in the setup of `iter_batched`
//!     (untimed); dropping it inside `encode` is timed, as their API
//!     requires.
//!   - `stomp-parser` 0.8: its frame builders are its serialiser:
//!     `SendFrameBuilder`/`MessageFrameBuilder::build()` writes the frame
//!     into a `Vec<u8>` of its own, returned by `Into<Vec<u8>>`. The builder
//!     (owned `String`s and body) is made in the setup; `build` and `into`
//!     are timed, and the `Vec` is returned so that freeing it is not. It
//!     cannot write into a caller's buffer.
//! - `fanout/<input>`: one `MESSAGE` delivered to one more subscriber, the
//!   broker's hot path. The shared frame has no `subscription`; each
//!   recipient adds its own.
//!   - `prepared.encode_into`: `PreparedFrame::encode_into` copies the
//!     shared head (encoded once), writes `subscription`, copies the body.
//!   - `prepared.to_buf`: the vectored variant, which copies neither head
//!     nor body (only the per-recipient header is written).
//!   - `encode_frame (clone+header)`: without `PreparedFrame`, a broker
//!     clones the shared frame, adds the header and encodes it whole.
//!   - `encode_frame (prebuilt)`: encoding an already built per-recipient
//!     frame, a lower bound for the whole-frame path.

use std::hint::black_box;

use bytes::{Buf, BytesMut};
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use stomp_benches::{
    CONTENT_TYPE, DESTINATION, Input, Kind, MESSAGE_ID, RECEIPT, SUBSCRIPTION, inputs, message_64k,
    message_300,
};
use stomp_codec::{Frame, PreparedFrame, Version, encode_frame};
use tokio_util::codec::Encoder;

/// The SEND as async-stomp's message type.
fn async_stomp_send(input: &Input) -> async_stomp::Message<async_stomp::ToServer> {
    async_stomp::ToServer::Send {
        destination: DESTINATION.to_owned(),
        transaction: None,
        headers: Some(vec![
            ("content-type".to_owned(), CONTENT_TYPE.to_owned()),
            ("content-length".to_owned(), input.header("content-length").to_owned()),
            ("receipt".to_owned(), RECEIPT.to_owned()),
        ]),
        body: Some(input.body.clone()),
    }
    .into()
}

/// The SEND as tokio-stomp-2's message type.
fn tokio_stomp_2_send(input: &Input) -> tokio_stomp_2::Message<tokio_stomp_2::ToServer> {
    tokio_stomp_2::ToServer::Send {
        destination: DESTINATION.to_owned(),
        transaction: None,
        headers: Some(vec![
            ("content-type".to_owned(), CONTENT_TYPE.to_owned()),
            ("content-length".to_owned(), input.header("content-length").to_owned()),
            ("receipt".to_owned(), RECEIPT.to_owned()),
        ]),
        body: Some(input.body.clone()),
    }
    .into()
}

fn body_len_u32(input: &Input) -> u32 {
    u32::try_from(input.body.len()).expect("body fits a u32")
}

/// The SEND as stomp-parser's builder.
fn stomp_parser_send(input: &Input) -> stomp_parser::client::SendFrameBuilder {
    stomp_parser::client::SendFrameBuilder::new(DESTINATION.to_owned())
        .content_type(CONTENT_TYPE.to_owned())
        .content_length(body_len_u32(input))
        .receipt(RECEIPT.to_owned())
        .body(input.body.clone())
}

/// The MESSAGE as stomp-parser's builder.
fn stomp_parser_message(input: &Input) -> stomp_parser::server::MessageFrameBuilder {
    stomp_parser::server::MessageFrameBuilder::new(
        MESSAGE_ID.to_owned(),
        DESTINATION.to_owned(),
        SUBSCRIPTION.to_owned(),
    )
    .content_type(CONTENT_TYPE.to_owned())
    .content_length(body_len_u32(input))
    .body(input.body.clone())
}

/// Serialises with stomp-parser.
fn stomp_parser_encode(input: &Input) -> Vec<u8> {
    match input.kind {
        Kind::Send => stomp_parser_send(input).build().into(),
        Kind::Message => stomp_parser_message(input).build().into(),
    }
}

/// Checks that every encoder writes exactly the input's octets.
fn check(input: &Input) {
    let mut buf = BytesMut::new();
    encode_frame(&input.frame(), Version::V1_2, &mut buf).expect("encodes");
    assert_eq!(&buf[..], &input.wire[..], "stomp-codec on {}", input.name);
    assert_eq!(stomp_parser_encode(input), input.wire, "stomp-parser on {}", input.name);
    if input.kind == Kind::Send {
        buf.clear();
        async_stomp::client::ClientCodec::new()
            .encode(async_stomp_send(input), &mut buf)
            .expect("encodes");
        assert_eq!(&buf[..], &input.wire[..], "async-stomp on {}", input.name);
        buf.clear();
        tokio_stomp_2::client::ClientCodec
            .encode(tokio_stomp_2_send(input), &mut buf)
            .expect("encodes");
        assert_eq!(&buf[..], &input.wire[..], "tokio-stomp-2 on {}", input.name);
    }
}

fn encode(c: &mut Criterion) {
    for input in inputs() {
        check(&input);
        let mut group = c.benchmark_group(format!("encode/{}", input.name));
        group.throughput(Throughput::Bytes(input.wire_len()));
        let mut buf = BytesMut::with_capacity(input.wire.len() * 2);

        let frame = input.frame();
        group.bench_function("stomp-codec", |b| {
            b.iter(|| {
                buf.clear();
                encode_frame(black_box(&frame), Version::V1_2, &mut buf).expect("encodes");
                black_box(buf.len())
            });
        });

        group.bench_function("stomp-parser", |b| match input.kind {
            Kind::Send => b.iter_batched(
                || stomp_parser_send(&input),
                |builder| -> Vec<u8> { builder.build().into() },
                BatchSize::SmallInput,
            ),
            Kind::Message => b.iter_batched(
                || stomp_parser_message(&input),
                |builder| -> Vec<u8> { builder.build().into() },
                BatchSize::SmallInput,
            ),
        });

        // The client libraries encode client frames only.
        if input.kind == Kind::Send {
            let mut codec = async_stomp::client::ClientCodec::new();
            group.bench_function("async-stomp", |b| {
                b.iter_batched(
                    || async_stomp_send(&input),
                    |message| {
                        buf.clear();
                        codec.encode(message, &mut buf).expect("encodes");
                        buf.len()
                    },
                    BatchSize::SmallInput,
                );
            });
            let mut codec = tokio_stomp_2::client::ClientCodec;
            group.bench_function("tokio-stomp-2", |b| {
                b.iter_batched(
                    || tokio_stomp_2_send(&input),
                    |message| {
                        buf.clear();
                        codec.encode(message, &mut buf).expect("encodes");
                        buf.len()
                    },
                    BatchSize::SmallInput,
                );
            });
        }
        group.finish();
    }
}

/// The subscriber each fan-out copy goes to.
const RECIPIENT: &[u8] = b"sub-7";

fn fanout(c: &mut Criterion) {
    for input in [message_300(), message_64k()] {
        // The shared part: the MESSAGE without its subscription header.
        let mut shared = input.frame();
        shared.headers_mut().remove("subscription");
        let prepared = PreparedFrame::new(shared.clone()).expect("prepares");
        let extra: &[(&[u8], &[u8])] = &[(b"subscription", RECIPIENT)];
        let with_header = |frame: &Frame| frame.clone().with_header("subscription", RECIPIENT);
        let whole = with_header(&shared);

        // All four paths must write the same octets.
        let mut expected = BytesMut::new();
        encode_frame(&whole, Version::V1_2, &mut expected).expect("encodes");
        let mut buf = BytesMut::new();
        prepared.encode_into(Version::V1_2, extra, &mut buf).expect("encodes");
        assert_eq!(buf, expected, "encode_into on {}", input.name);
        let mut vectored = prepared.to_buf(Version::V1_2, extra).expect("encodes");
        assert_eq!(
            vectored.copy_to_bytes(vectored.remaining()),
            expected,
            "to_buf on {}",
            input.name
        );

        let mut group = c.benchmark_group(format!("fanout/{}", input.name));
        group.throughput(Throughput::Bytes(expected.len() as u64));
        let mut buf = BytesMut::with_capacity(expected.len() * 2);
        group.bench_function("prepared.encode_into", |b| {
            b.iter(|| {
                buf.clear();
                prepared.encode_into(Version::V1_2, black_box(extra), &mut buf).expect("encodes");
                black_box(buf.len())
            });
        });
        group.bench_function("prepared.to_buf", |b| {
            b.iter(|| prepared.to_buf(Version::V1_2, black_box(extra)).expect("encodes"));
        });
        group.bench_function("encode_frame (clone+header)", |b| {
            b.iter(|| {
                buf.clear();
                let frame = with_header(black_box(&shared));
                encode_frame(&frame, Version::V1_2, &mut buf).expect("encodes");
                black_box(buf.len())
            });
        });
        group.bench_function("encode_frame (prebuilt)", |b| {
            b.iter(|| {
                buf.clear();
                encode_frame(black_box(&whole), Version::V1_2, &mut buf).expect("encodes");
                black_box(buf.len())
            });
        });
        group.finish();
    }
}

criterion_group!(benches, encode, fanout);
criterion_main!(benches);
