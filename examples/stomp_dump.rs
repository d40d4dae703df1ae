//! Decodes a STOMP byte stream from standard input and prints each item.
//!
//! A debugging aid for captures and hand-written frames:
//!
//! ```text
//! printf 'SEND\ndestination:/queue/a\n\nhello\0\n' | cargo run --example stomp-dump
//! printf 'SEND\n\n\0' | cargo run --example stomp-dump -- --version 1.0
//! ```
//!
//! Exits with status 1 and the codec's error on the first malformed frame.

use std::io::{self, Read, Write};
use std::process::ExitCode;

use bytes::BytesMut;
use stomp_codec::{Frame, Item, StompCodec, Version};

fn main() -> ExitCode {
    let mut codec = StompCodec::new();
    if let Some(version) = version_arg() {
        codec.set_version(version);
    }
    match dump(&mut codec, io::stdin().lock(), &mut io::stdout().lock()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("stomp-dump: {e}");
            ExitCode::FAILURE
        }
    }
}

fn version_arg() -> Option<Version> {
    let args: Vec<String> = std::env::args().collect();
    let i = args.iter().position(|a| a == "--version")?;
    let version = args.get(i + 1).and_then(|v| Version::from_bytes(v.as_bytes()));
    if version.is_none() {
        eprintln!("stomp-dump: --version takes 1.0, 1.1 or 1.2; using 1.2");
    }
    version
}

fn dump(codec: &mut StompCodec, mut input: impl Read, out: &mut impl Write) -> io::Result<()> {
    let mut buf = BytesMut::with_capacity(8 * 1024);
    let mut chunk = [0u8; 8 * 1024];
    loop {
        while let Some(item) = codec.decode_item(&mut buf).map_err(io::Error::other)? {
            print_item(&item, out)?;
        }
        let n = input.read(&mut chunk)?;
        if n == 0 {
            if !codec.is_idle() || !buf.is_empty() {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "input ended inside a frame",
                ));
            }
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

fn print_item(item: &Item, out: &mut impl Write) -> io::Result<()> {
    match item {
        Item::Heartbeat => writeln!(out, "(heart-beat)"),
        Item::Frame(frame) => print_frame(frame, out),
    }
}

fn print_frame(frame: &Frame, out: &mut impl Write) -> io::Result<()> {
    writeln!(out, "{}", frame.command())?;
    for (name, value) in frame.headers().iter() {
        writeln!(
            out,
            "  {}: {}",
            String::from_utf8_lossy(name).escape_debug(),
            String::from_utf8_lossy(value).escape_debug()
        )?;
    }
    writeln!(
        out,
        "  body: {} bytes {:?}",
        frame.body().len(),
        String::from_utf8_lossy(&frame.body()[..frame.body().len().min(80)])
    )
}
