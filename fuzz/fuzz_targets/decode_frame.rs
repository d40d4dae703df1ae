//! Fuzz target: decode arbitrary octets with one fresh decoder.
//!
//! # Input layout
//!
//! ```text
//! byte 0     protocol version: Version::ALL[b % 3] (0 = 1.0, 1 = 1.1, 2 = 1.2)
//! byte 1     b < 0x80: default Limits, the stream starts at byte 2
//!            b >= 0x80: small Limits from bytes 2..=5, the stream starts at byte 6
//!              byte 2  max_frame_size  = 1 + 2 * b
//!              byte 3  max_body_size   = b
//!              byte 4  max_headers     = b % 16
//!              byte 5  max_header_line = b
//! rest       the STOMP byte stream, given to the decoder in one piece
//! ```
//!
//! (See `Setup` in `fuzz/src/lib.rs`.) Seeds in `fuzz/seeds/decode_frame/`
//! start with `\x02\x00` (STOMP 1.2, default limits) unless named otherwise.
//!
//! # Checked
//!
//! - No panic, whatever the input.
//! - Every item consumes exactly what it stands for: a heart-beat `\n` or
//!   `\r\n`; a frame from its command to its NUL, within the limits, with a
//!   body that agrees with its `content-length` or holds no NUL
//!   (`check_decoded_frame`).
//! - `Ok(None)` consumes nothing and asking again changes nothing.
//! - Errors are terminal: the same error on the next call, and again after
//!   more (valid) input arrives; a limit error carries the limit in force.
//! - Every decoded frame that the encoder accepts (the model in
//!   `model_encode` says which) re-encodes to the reference octets and
//!   decodes back to itself, plus the `content-length` the encoder adds.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use stomp_codec::Item;
use stomp_codec_fuzz::{Setup, check_decoded_frame, check_encode_roundtrip, check_error_limit};

fuzz_target!(|data: &[u8]| {
    let Some((setup, stream)) = Setup::parse(data) else { return };
    let mut codec = setup.codec();
    let mut buf = BytesMut::from(stream);
    // Offset in `stream` of the front of `buf`.
    let mut offset = 0;
    loop {
        let before = buf.len();
        match codec.decode_item(&mut buf) {
            Ok(Some(item)) => {
                let consumed = before - buf.len();
                let wire = &stream[offset..offset + consumed];
                offset += consumed;
                assert!(codec.is_idle(), "not idle after returning an item");
                match item {
                    Item::Heartbeat => {
                        assert!(wire == b"\n" || wire == b"\r\n", "heart-beat consumed {wire:?}");
                    }
                    Item::Frame(frame) => {
                        check_decoded_frame(&frame, wire, &setup.limits);
                        check_encode_roundtrip(&frame, setup.version);
                    }
                }
            }
            Ok(None) => {
                assert_eq!(buf.len(), before, "Ok(None) consumed input");
                assert_eq!(&buf[..], &stream[offset..]);
                assert_eq!(codec.decode_item(&mut buf), Ok(None), "Ok(None) is not stable");
                assert_eq!(buf.len(), before);
                if buf.is_empty() {
                    assert!(codec.is_idle(), "not idle with an empty buffer");
                }
                break;
            }
            Err(e) => {
                check_error_limit(&e, &setup.limits);
                assert!(!codec.is_idle(), "idle after an error");
                assert_eq!(codec.decode_item(&mut buf), Err(e), "error is not terminal");
                buf.extend_from_slice(b"\n\nSEND\ncontent-length:0\n\n\0");
                assert_eq!(codec.decode_item(&mut buf), Err(e), "error forgotten after more input");
                break;
            }
        }
    }
});
