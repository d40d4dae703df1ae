//! Transports: how STOMP octets travel between the load generator and the
//! broker.
//!
//! Only TCP for now. Each type here is an enum so that a WebSocket
//! transport is one more arm of each (`Kind::Ws`, `Reader::Ws`,
//! `Writer::Ws`: a read appends a message's payload, a write sends one
//! message), and the clients and scenarios above stay as they are.

use std::io;
use std::net::{IpAddr, SocketAddr};

use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpSocket;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

/// A kind of transport.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Kind {
    /// STOMP frames straight over TCP.
    Tcp,
}

/// Where to connect, and how.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Target {
    /// The transport.
    pub(crate) kind: Kind,
    /// The broker's address.
    pub(crate) addr: SocketAddr,
}

/// Opens a connection to `target`, from `source` when given (port chosen
/// by the system), and splits it into its two directions.
pub(crate) async fn open(target: Target, source: Option<IpAddr>) -> io::Result<(Reader, Writer)> {
    match target.kind {
        Kind::Tcp => {
            let socket = match target.addr {
                SocketAddr::V4(_) => TcpSocket::new_v4()?,
                SocketAddr::V6(_) => TcpSocket::new_v6()?,
            };
            if let Some(ip) = source {
                socket.bind(SocketAddr::new(ip, 0)).map_err(|e| {
                    io::Error::new(e.kind(), format!("cannot bind source address {ip}: {e}"))
                })?;
            }
            let stream = socket.connect(target.addr).await?;
            stream.set_nodelay(true)?;
            let (read, write) = stream.into_split();
            Ok((Reader::Tcp(read), Writer::Tcp(write)))
        }
    }
}

/// The receiving direction of a connection.
#[derive(Debug)]
pub(crate) enum Reader {
    /// A TCP stream's read half.
    Tcp(OwnedReadHalf),
}

impl Reader {
    /// Appends what arrives to `buf` (which must have spare capacity);
    /// returns the octets read, 0 at the end of the stream. Cancel safe.
    pub(crate) async fn read_into(&mut self, buf: &mut BytesMut) -> io::Result<usize> {
        match self {
            Self::Tcp(read) => read.read_buf(buf).await,
        }
    }
}

/// The sending direction of a connection.
#[derive(Debug)]
pub(crate) enum Writer {
    /// A TCP stream's write half.
    Tcp(OwnedWriteHalf),
}

impl Writer {
    /// Writes all of `data`.
    pub(crate) async fn write_all(&mut self, data: &[u8]) -> io::Result<()> {
        match self {
            Self::Tcp(write) => write.write_all(data).await,
        }
    }
}
