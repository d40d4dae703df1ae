//! Test support: a broker on an ephemeral port and a raw STOMP client.
#![allow(dead_code, unreachable_pub, clippy::missing_panics_doc)]

use std::net::SocketAddr;
use std::time::Duration;

use bytes::BytesMut;
use stomp_broker::{Broker, BrokerBuilder};
use stomp_codec::{Command, Frame, Item, StompCodec, Version, encode_frame};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// How long a test waits for something that should happen.
pub const WAIT: Duration = Duration::from_secs(5);

/// A broker serving on 127.0.0.1 on an ephemeral port.
pub struct TestBroker {
    pub broker: Broker,
    pub addr: SocketAddr,
    serving: JoinHandle<std::io::Result<()>>,
}

impl TestBroker {
    /// Starts `builder`'s broker.
    pub async fn start(builder: BrokerBuilder) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("local addr");
        let broker = builder.build();
        let serving = tokio::spawn({
            let broker = broker.clone();
            async move { broker.serve(listener).await }
        });
        Self { broker, addr, serving }
    }

    /// Starts a broker with the defaults.
    pub async fn default() -> Self {
        Self::start(Broker::builder()).await
    }

    /// A connected STOMP 1.2 client logged in as `login`.
    pub async fn client(&self, login: &str) -> Client {
        Client::connect(self.addr, login).await
    }

    /// Shuts the broker down and waits for the accept loop to end.
    pub async fn stop(self) {
        self.broker.shutdown().await;
        self.serving.await.expect("serve task").expect("serve");
    }
}

/// A STOMP client speaking raw frames.
pub struct Client {
    pub stream: TcpStream,
    pub codec: StompCodec,
    buf: BytesMut,
}

impl Client {
    /// A TCP connection with nothing sent yet.
    pub async fn raw(addr: SocketAddr) -> Self {
        let stream = TcpStream::connect(addr).await.expect("connect");
        stream.set_nodelay(true).expect("nodelay");
        Self { stream, codec: StompCodec::new(), buf: BytesMut::new() }
    }

    /// Connected with STOMP 1.2 as `login`; panics unless CONNECTED.
    pub async fn connect(addr: SocketAddr, login: &str) -> Self {
        let mut client = Self::raw(addr).await;
        let connected = client
            .request(
                Frame::new(Command::Connect)
                    .with_header("accept-version", "1.2")
                    .with_header("host", "/")
                    .with_header("login", login.to_owned()),
            )
            .await;
        assert_eq!(connected.command(), Command::Connected, "{connected:?}");
        client
    }

    /// Sends `frame` and returns the next frame received.
    pub async fn request(&mut self, frame: Frame) -> Frame {
        self.send(frame).await;
        self.recv().await
    }

    /// Writes raw octets.
    pub async fn send_raw(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.expect("write");
    }

    /// Writes a frame, encoded in the codec's version.
    pub async fn send(&mut self, frame: Frame) {
        let mut out = BytesMut::new();
        encode_frame(&frame, self.codec.version(), &mut out).expect("encode");
        self.send_raw(&out).await;
    }

    /// Sets the version frames are encoded and decoded in.
    pub fn set_version(&mut self, version: Version) {
        self.codec.set_version(version);
    }

    /// The next item, or `None` at end of stream; panics after [`WAIT`].
    pub async fn item(&mut self) -> Option<Item> {
        tokio::time::timeout(WAIT, self.next_item()).await.expect("timed out waiting for a frame")
    }

    async fn next_item(&mut self) -> Option<Item> {
        loop {
            if let Some(item) =
                self.codec.decode_item(&mut self.buf).expect("broker sent a malformed frame")
            {
                return Some(item);
            }
            match self.stream.read_buf(&mut self.buf).await {
                Ok(0) | Err(_) => return None,
                Ok(_) => {}
            }
        }
    }

    /// The next frame, skipping heart-beats; panics at end of stream.
    pub async fn recv(&mut self) -> Frame {
        loop {
            match self.item().await {
                Some(Item::Frame(frame)) => return frame,
                Some(Item::Heartbeat) => {}
                None => panic!("connection closed while waiting for a frame"),
            }
        }
    }

    /// The next frame, which must have `command`.
    pub async fn expect(&mut self, command: Command) -> Frame {
        let frame = self.recv().await;
        assert_eq!(frame.command(), command, "{frame:?}");
        frame
    }

    /// The next frame must be ERROR; returns its `message` header.
    pub async fn expect_error(&mut self) -> String {
        let frame = self.expect(Command::Error).await;
        frame.header_str("message").expect("ERROR has a message header").to_owned()
    }

    /// The next frame must be MESSAGE; returns it.
    pub async fn expect_message(&mut self) -> Frame {
        self.expect(Command::Message).await
    }

    /// The connection must close (after any frames, which are returned).
    pub async fn expect_closed(&mut self) -> Vec<Frame> {
        let mut frames = Vec::new();
        while let Some(item) = self.item().await {
            if let Item::Frame(frame) = item {
                frames.push(frame);
            }
        }
        frames
    }

    /// No frame arrives within `wait` (heart-beats are ignored).
    pub async fn expect_silence(&mut self, wait: Duration) {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            match tokio::time::timeout_at(deadline, self.next_item()).await {
                Err(_) => return,
                Ok(Some(Item::Heartbeat)) => {}
                Ok(other) => panic!("expected silence, got {other:?}"),
            }
        }
    }

    /// Sends `frame` with a `receipt` header and waits for its RECEIPT.
    pub async fn with_receipt(&mut self, frame: Frame, receipt: &str) {
        let reply = self.request(frame.with_header("receipt", receipt.to_owned())).await;
        assert_eq!(reply.command(), Command::Receipt, "{reply:?}");
        assert_eq!(reply.header_str("receipt-id"), Some(receipt));
    }

    /// Subscribes (waiting for the receipt, so the subscription is live).
    pub async fn subscribe(&mut self, id: &str, destination: &str, ack: &str) {
        let frame = Frame::new(Command::Subscribe)
            .with_header("id", id.to_owned())
            .with_header("destination", destination.to_owned())
            .with_header("ack", ack.to_owned());
        self.with_receipt(frame, &format!("sub-{id}")).await;
    }

    /// Sends a message (waiting for the receipt).
    pub async fn publish(&mut self, destination: &str, body: &str) {
        let frame = Frame::new(Command::Send)
            .with_header("destination", destination.to_owned())
            .with_body(body.to_owned());
        self.with_receipt(frame, "pub").await;
    }
}

/// A SEND frame.
pub fn send(destination: &str, body: &str) -> Frame {
    Frame::new(Command::Send)
        .with_header("destination", destination.to_owned())
        .with_body(body.to_owned())
}

/// The body of a frame as text.
pub fn body(frame: &Frame) -> String {
    String::from_utf8_lossy(frame.body()).into_owned()
}

/// DISCONNECT with a receipt; the RECEIPT must come, then the end of stream.
pub async fn disconnect(mut client: Client) {
    let frame = Frame::new(Command::Disconnect).with_header("receipt", "bye");
    client.send(frame).await;
    let frames = client.expect_closed().await;
    assert_eq!(frames.len(), 1, "{frames:?}");
    assert_eq!(frames[0].command(), Command::Receipt, "{frames:?}");
    assert_eq!(frames[0].header_str("receipt-id"), Some("bye"));
}

/// The workspace root: `CARGO_MANIFEST_DIR/..`.
pub fn workspace_root() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the crate is in a workspace")
        .to_path_buf()
}

/// Reads all of a child process's pipe on a thread of its own.
pub fn drain(mut pipe: impl std::io::Read + Send + 'static) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = pipe.read_to_end(&mut bytes);
        String::from_utf8_lossy(&bytes).into_owned()
    })
}

/// Runs an interop script from `command` without blocking the runtime (the
/// broker serves on it meanwhile), for at most `timeout`, and asserts that
/// it succeeded and ended with its summary line, `"{name}: N checks
/// passed"`. `hint` says what to install when the program cannot be run.
pub async fn run_interop(
    mut command: std::process::Command,
    name: &str,
    hint: &str,
    timeout: Duration,
) {
    use std::process::Stdio;
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {command:?} ({e}): {hint}"));
    let stdout = drain(child.stdout.take().expect("stdout"));
    let stderr = drain(child.stderr.take().expect("stderr"));
    let started = std::time::Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for the script") {
            break Some(status);
        }
        if started.elapsed() > timeout {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let stdout = stdout.join().expect("stdout reader");
    let stderr = stderr.join().expect("stderr reader");
    let report = format!("{command:?}\n--- stdout ---\n{stdout}--- stderr ---\n{stderr}");
    let Some(status) = status else {
        panic!("{name} script did not finish within {timeout:?}\n{report}");
    };
    assert!(status.success(), "{name} script failed ({status})\n{report}");
    let last = stdout.lines().last().unwrap_or_default();
    assert!(
        last.starts_with(&format!("{name}: ")) && last.ends_with(" checks passed"),
        "the script succeeded without its final summary line\n{report}"
    );
    eprintln!("{last}");
}
