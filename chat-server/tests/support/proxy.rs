//! A TCP proxy in front of a service, that a test can pause (bytes stop
//! flowing until it resumes, as when a database stalls) or cut (open
//! connections are closed, new ones refused, as when it goes away).

use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};

/// A running proxy; cut when dropped at the latest.
#[derive(Debug)]
pub struct Proxy {
    /// Where it listens (127.0.0.1, an ephemeral port).
    pub addr: SocketAddr,
    flowing: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl Proxy {
    /// Forwards every connection to `target`.
    pub async fn start(target: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind the proxy");
        let addr = listener.local_addr().expect("the proxy's address");
        let (flowing, watch) = watch::channel(true);
        let task = tokio::spawn(forward_all(listener, target, watch));
        Self { addr, flowing, task }
    }

    /// Holds every byte from now on (connections stay open) until
    /// [`resume`](Self::resume).
    pub fn pause(&self) {
        self.flowing.send_replace(false);
    }

    /// Lets bytes flow again, those held first.
    pub fn resume(&self) {
        self.flowing.send_replace(true);
    }

    /// Closes every connection and the listener: the service is now
    /// unreachable through the proxy.
    pub async fn cut(mut self) {
        self.task.abort();
        let _ = (&mut self.task).await;
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Accepts and forwards until aborted; aborting drops the listener and
/// the set of forwarding tasks, which aborts them all.
async fn forward_all(listener: TcpListener, target: SocketAddr, flowing: watch::Receiver<bool>) {
    let mut pipes = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((client, _)) = accepted else { continue };
                let Ok(server) = TcpStream::connect(target).await else { continue };
                let (client_read, client_write) = client.into_split();
                let (server_read, server_write) = server.into_split();
                pipes.spawn(pipe(client_read, server_write, flowing.clone()));
                pipes.spawn(pipe(server_read, client_write, flowing.clone()));
            }
            Some(_) = pipes.join_next() => {}
        }
    }
}

/// Copies `from` to `to`, holding what it read while paused.
async fn pipe(mut from: OwnedReadHalf, mut to: OwnedWriteHalf, mut flowing: watch::Receiver<bool>) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if flowing.wait_for(|flowing| *flowing).await.is_err()
            || to.write_all(&buf[..n]).await.is_err()
        {
            break;
        }
    }
    let _ = to.shutdown().await;
}
