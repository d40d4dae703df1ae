//! Application destinations: a SEND to the handler's prefix (`/app/`) goes
//! to the handler, not to subscribers; the handler can publish anywhere and
//! reply to the sender; the RECEIPT comes after the handler returned; a
//! rejection is an ERROR.

#[path = "support/extra_destinations.rs"]
mod extra;
mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use extra::{QUIET, begin, commit, exchange, in_tx};
use stomp_broker::{AppContext, AppHandler, AppMessage, Broker, Rejection};
use stomp_codec::{Command, Headers};
use support::{TestBroker, body, send};

#[derive(Clone, Default)]
struct App {
    /// `(path, destination, sender)` of each call.
    calls: Arc<Mutex<Vec<(String, String, String)>>>,
    /// Calls to `slow` that finished.
    slow_done: Arc<AtomicUsize>,
}

fn refused(e: impl std::fmt::Display) -> Rejection {
    Rejection::new(e.to_string())
}

#[async_trait]
impl AppHandler for App {
    async fn handle(&self, context: &AppContext, message: AppMessage) -> Result<(), Rejection> {
        let sender = context.session().principal().name().to_owned();
        self.calls.lock().unwrap().push((
            message.path.clone(),
            message.destination.clone(),
            sender.clone(),
        ));
        match message.path.as_str() {
            "echo" => {
                let mut headers = Headers::new();
                headers.push("x-from", sender);
                if let Some(custom) = message.headers.get_bytes("x-custom") {
                    headers.push("x-custom", custom);
                }
                context
                    .broker()
                    .publish("/topic/echoes", headers, message.body.clone())
                    .map_err(refused)?;
                let reply = format!("echo: {}", String::from_utf8_lossy(&message.body));
                context.reply("/queue/replies", Headers::new(), reply).map_err(refused)?;
                Ok(())
            }
            "slow" => {
                tokio::time::sleep(Duration::from_millis(300)).await;
                self.slow_done.fetch_add(1, Ordering::SeqCst);
                Ok(())
            }
            "reject" => Err(Rejection::new("bad request").with_detail("The handler refused it.")),
            other => Err(Rejection::new(format!("no handler for {other}"))),
        }
    }
}

async fn start() -> (TestBroker, App) {
    let app = App::default();
    let broker = TestBroker::start(Broker::builder().app_handler("/app/", app.clone())).await;
    (broker, app)
}

#[tokio::test]
async fn a_send_to_the_prefix_reaches_the_handler_not_subscribers() {
    let (broker, app) = start().await;
    let mut watcher = broker.client("watcher").await;
    watcher.subscribe("w", "/app/echo", "auto").await;
    let mut echoes = broker.client("listener").await;
    echoes.subscribe("e", "/topic/echoes", "auto").await;
    let mut sender = broker.client("alice").await;
    sender.subscribe("r", "/user/queue/replies", "auto").await;

    let frame = send("/app/echo", "hi").with_header("x-custom", "42");
    let before_receipt = exchange(&mut sender, frame, "r1").await;
    // The handler replied before it returned, so the reply precedes the
    // RECEIPT.
    assert_eq!(before_receipt.len(), 1, "{before_receipt:?}");
    let reply = &before_receipt[0];
    assert_eq!(body(reply), "echo: hi");
    assert_eq!(reply.header_str("destination"), Some("/user/queue/replies"));
    assert_eq!(reply.header_str("subscription"), Some("r"));

    let published = echoes.expect_message().await;
    assert_eq!(body(&published), "hi");
    assert_eq!(published.header_str("destination"), Some("/topic/echoes"));
    assert_eq!(published.header_str("x-from"), Some("alice"));
    assert_eq!(published.header_str("x-custom"), Some("42"), "the handler saw the headers");

    watcher.expect_silence(QUIET).await;
    echoes.expect_silence(QUIET).await;
    sender.expect_silence(QUIET).await;
    assert_eq!(
        *app.calls.lock().unwrap(),
        [("echo".to_owned(), "/app/echo".to_owned(), "alice".to_owned())]
    );
    drop((watcher, echoes, sender));
    broker.stop().await;
}

#[tokio::test]
async fn the_receipt_comes_after_the_handler_returned() {
    let (broker, app) = start().await;
    let mut c = broker.client("c").await;
    let started = tokio::time::Instant::now();
    assert!(exchange(&mut c, send("/app/slow", ""), "r").await.is_empty());
    assert_eq!(app.slow_done.load(Ordering::SeqCst), 1, "RECEIPT before the handler finished");
    assert!(started.elapsed() >= Duration::from_millis(300));
    drop(c);
    broker.stop().await;
}

#[tokio::test]
async fn a_rejection_is_an_error_with_its_message() {
    let (broker, app) = start().await;
    let mut c = broker.client("c").await;
    c.send(send("/app/reject", "x").with_header("receipt", "r")).await;
    let error = c.expect(Command::Error).await;
    assert_eq!(error.header_str("message"), Some("bad request"));
    assert_eq!(error.header_str("receipt-id"), Some("r"));
    assert!(body(&error).contains("The handler refused it."), "{error:?}");
    assert!(c.expect_closed().await.is_empty());
    assert_eq!(app.calls.lock().unwrap().len(), 1);
    drop(c);
    broker.stop().await;
}

#[tokio::test]
async fn a_send_outside_the_prefix_is_routed_as_usual() {
    let (broker, app) = start().await;
    let mut sub = broker.client("sub").await;
    sub.subscribe("s", "/topic/application", "auto").await;
    let mut p = broker.client("p").await;
    p.publish("/topic/application", "plain").await;
    assert_eq!(body(&sub.expect_message().await), "plain");
    assert!(app.calls.lock().unwrap().is_empty());
    drop((sub, p));
    broker.stop().await;
}

#[tokio::test]
async fn an_app_send_in_a_transaction_reaches_the_handler_at_commit() {
    let (broker, app) = start().await;
    let mut echoes = broker.client("listener").await;
    echoes.subscribe("e", "/topic/echoes", "auto").await;
    let mut c = broker.client("c").await;
    assert!(exchange(&mut c, begin("tx"), "b").await.is_empty());
    assert!(exchange(&mut c, in_tx(send("/app/echo", "later"), "tx"), "s").await.is_empty());
    echoes.expect_silence(QUIET).await;
    assert!(app.calls.lock().unwrap().is_empty(), "not before COMMIT");
    assert!(exchange(&mut c, commit("tx"), "c").await.is_empty());
    assert_eq!(body(&echoes.expect_message().await), "later");
    assert_eq!(app.calls.lock().unwrap().len(), 1);
    drop((echoes, c));
    broker.stop().await;
}
