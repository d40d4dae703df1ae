//! Embedding the broker in an application: an interceptor that guards
//! destinations, an application handler for `/app/`, and a subscriber and
//! a publisher in Rust code, without a socket.
//!
//! ```text
//! cargo run --example embedded -- 127.0.0.1:61614
//! ```
//!
//! Then, with any STOMP client logged in as `alice`:
//! - SEND to `/app/shout` with a text body: the handler publishes it in
//!   upper case to `/topic/shouts`, and replies to the sender on
//!   `/user/queue/replies`.
//! - SEND to `/topic/admin.anything`: refused unless logged in as `admin`.
//! - SUBSCRIBE to `/topic/ticks`: a Rust task publishes there every second.

use std::net::SocketAddr;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use stomp_broker::codec::{Frame, Headers};
use stomp_broker::{
    AppContext, AppHandler, AppMessage, Broker, Interceptor, Rejection, SessionInfo,
};
use tokio::net::TcpListener;

/// Only `admin` may send to `/topic/admin.*`; everything else is allowed.
struct AdminGuard;

#[async_trait]
impl Interceptor for AdminGuard {
    async fn on_send(&self, session: &SessionInfo, frame: &mut Frame) -> Result<(), Rejection> {
        let destination = frame.header_str("destination").unwrap_or_default();
        if destination.starts_with("/topic/admin.") && session.principal().name() != "admin" {
            return Err(Rejection::new(format!(
                "{} may not send to {destination}",
                session.principal()
            )));
        }
        Ok(())
    }
}

/// `/app/shout`: publish the text in upper case, and tell the sender.
struct Shout;

#[async_trait]
impl AppHandler for Shout {
    async fn handle(&self, context: &AppContext, message: AppMessage) -> Result<(), Rejection> {
        if message.path != "shout" {
            return Err(Rejection::new(format!(
                "no application destination {}",
                message.destination
            )));
        }
        let text = std::str::from_utf8(&message.body)
            .map_err(|_| Rejection::new("the body must be UTF-8 text"))?;
        let headers: Headers = [("content-type", "text/plain")].into_iter().collect();
        let shouted = Bytes::from(text.to_uppercase());
        let broker = context.broker();
        let delivered = broker
            .publish("/topic/shouts", headers.clone(), shouted)
            .map_err(|e| Rejection::new(e.to_string()))?;
        let reply = format!("shouted to {delivered} subscribers");
        context
            .reply("/queue/replies", headers, reply)
            .map_err(|e| Rejection::new(e.to_string()))?;
        Ok(())
    }
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    tracing_subscriber::fmt().with_writer(std::io::stderr).init();
    let addr: SocketAddr = std::env::args()
        .nth(1)
        .as_deref()
        .unwrap_or("127.0.0.1:61614")
        .parse()
        .map_err(std::io::Error::other)?;
    let broker = Broker::builder().interceptor(AdminGuard).app_handler("/app/", Shout).build();

    // A subscriber in Rust: log what is shouted.
    let mut shouts = broker.subscribe("/topic/shouts").map_err(std::io::Error::other)?;
    tokio::spawn(async move {
        while let Some(message) = shouts.recv().await {
            tracing::info!(body = %String::from_utf8_lossy(message.body()), "shout");
        }
    });

    // A publisher in Rust: a tick every second, until shutdown.
    let ticker = broker.clone();
    let token = broker.shutdown_token();
    tokio::spawn(async move {
        let mut interval = tokio::time::interval(Duration::from_secs(1));
        for n in 0u64.. {
            tokio::select! {
                () = token.cancelled() => return,
                _ = interval.tick() => {}
            }
            let _ = ticker.publish("/topic/ticks", Headers::new(), n.to_string());
        }
    });

    let listener = TcpListener::bind(addr).await?;
    tracing::info!(%addr, "embedded broker listening");
    broker
        .serve_with_shutdown(listener, async { tokio::signal::ctrl_c().await.unwrap_or(()) })
        .await
}
