//! The HTTP side (axum): the web page, the REST API, `/healthz` and
//! `/readyz`, and the STOMP WebSocket endpoint `/stomp`, whose upgraded
//! connections the broker serves.

use std::sync::Arc;
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection, QueryRejection};
use axum::extract::{ConnectInfo, DefaultBodyLimit, MatchedPath, Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Router};
use hyper_util::rt::TokioIo;
use serde::Deserialize;
use serde_json::json;
use stomp_broker::Broker;
use stomp_broker::store::{MessageId, RoomId};
use stomp_broker::websocket::negotiate_subprotocol;
use stomp_broker::websocket::tokio_tungstenite::WebSocketStream;
use stomp_broker::websocket::tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use stomp_broker::websocket::tokio_tungstenite::tungstenite::protocol::Role;

use crate::api_error::{ApiError, ApiResult};
use crate::auth::{Identity, bearer};
use crate::chat::{Chat, ROOMS_TOPIC, RoomJson};
use crate::listener::{Peer, network};
use crate::quota::{Client, RateLimiter, RoomCap};
use crate::web;

/// Largest REST request body.
const MAX_BODY: usize = 16 * 1024;
const DEFAULT_ROOMS: usize = 100;
const MAX_ROOMS: usize = 1000;
const DEFAULT_MESSAGES: usize = 50;
const MAX_MESSAGES: usize = 200;

/// What the handlers share.
#[derive(Debug, Clone)]
pub(crate) struct App {
    pub(crate) chat: Arc<Chat>,
    pub(crate) broker: Broker,
    pub(crate) identity: Identity,
    /// `--max-rooms`.
    pub(crate) room_cap: Arc<RoomCap>,
    /// `--max-room-rate`.
    pub(crate) room_rate: Arc<RateLimiter>,
}

/// The subject of the request's valid token (JWT mode), put in the
/// request's extensions by [`require_token`].
#[derive(Debug, Clone)]
struct Subject(String);

/// The whole HTTP service.
pub(crate) fn router(app: App) -> Router {
    let api = Router::new()
        .route("/rooms", get(list_rooms).post(create_room))
        .route("/rooms/{id}", get(get_room))
        .route("/rooms/{id}/messages", get(messages))
        .route_layer(middleware::from_fn_with_state(app.clone(), require_token))
        .route("/info", get(info))
        .route("/status", get(status))
        .fallback(|| async { ApiError::not_found("no such API endpoint") });
    Router::new()
        .route("/", get(|| async { web::asset("index.html") }))
        .route("/{file}", get(|file| async { asset("", file) }))
        .route("/vendor/{file}", get(|file| async { asset("vendor/", file) }))
        .route("/healthz", get(|| async { axum::Json(json!({ "status": "ok" })) }))
        .route("/readyz", get(ready))
        .route("/metrics", get(metrics))
        .route("/status", get(|| async { web::asset("status.html") }))
        .route("/stomp", get(upgrade))
        .nest("/api", api)
        .method_not_allowed_fallback(method_not_allowed)
        .fallback(|| async { ApiError::not_found("not found") })
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .layer(middleware::from_fn_with_state(app.clone(), count_requests))
        .with_state(app)
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "method not allowed here")
}

/// The embedded file `{dir}{file}`.
fn asset(dir: &str, file: Result<Path<String>, PathRejection>) -> Response {
    match file {
        Ok(Path(file)) => web::asset(&format!("{dir}{file}")),
        Err(e) => ApiError::from(e).into_response(),
    }
}

/// Counts each answer by route template (unmatched requests as one).
async fn count_requests(State(app): State<App>, request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |m| m.as_str().to_owned());
    let response = next.run(request).await;
    app.chat.metrics.http(&route, response.status().as_u16());
    response
}

async fn metrics(State(app): State<App>) -> Response {
    match app.chat.metrics.render() {
        Ok((body, content_type)) => ([(header::CONTENT_TYPE, content_type)], body).into_response(),
        Err(e) => ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

/// The live figures of the status page.
async fn status(State(app): State<App>) -> Response {
    let stats = app.broker.stats();
    let history = app.chat.history.stats();
    let metrics = &app.chat.metrics;
    let backplane = app.broker.backplane_stats().map(|b| {
        json!({
            "connected": b.connected,
            "published": b.published,
            "publishDropped": b.publish_dropped,
            "received": b.received,
            "lost": b.lost,
            "reconnects": b.reconnects,
            "queued": b.queued,
            "subscriptions": b.subscriptions,
        })
    });
    axum::Json(json!({
        "version": env!("CARGO_PKG_VERSION"),
        "uptimeSeconds": metrics.uptime(),
        "connections": app.broker.connection_count(),
        "connectionsTotal": stats.connections_total,
        "framesIn": stats.frames_in,
        "framesOut": stats.frames_out,
        "messagesPublished": stats.messages_published,
        "deliveries": stats.deliveries,
        "errorsSent": stats.errors_sent,
        "slowConsumerDisconnects": stats.slow_consumer_disconnects,
        "heartbeatTimeouts": stats.heartbeat_timeouts,
        "posted": metrics.posted.get(),
        "resumes": metrics.resumes.get(),
        "history": {
            "buffered": history.buffered,
            "accepted": history.accepted,
            "written": history.written,
            "refused": history.refused,
            "failures": history.failures,
            "failing": history.failing,
            "lastBatch": history.last_batch,
            "lastWriteMs": history.last_write.as_secs_f64() * 1000.0,
        },
        "backplane": backplane,
    }))
    .into_response()
}

/// With a JWT secret, the rooms and history calls need a valid token; its
/// subject goes in the request's extensions.
async fn require_token(State(app): State<App>, mut request: Request, next: Next) -> Response {
    if app.identity.requires_token() {
        let token = request.headers().get(header::AUTHORIZATION).and_then(|v| bearer(v.as_bytes()));
        let Some(token) = token else {
            return ApiError::new(
                StatusCode::UNAUTHORIZED,
                "an Authorization: Bearer token is required",
            )
            .into_response();
        };
        match app.identity.verify(token) {
            Ok(verified) => request.extensions_mut().insert(Subject(verified.subject)),
            Err(e) => return ApiError::new(StatusCode::UNAUTHORIZED, e).into_response(),
        };
    }
    next.run(request).await
}

async fn info(State(app): State<App>) -> Response {
    axum::Json(json!({
        "auth": if app.identity.requires_token() { "jwt" } else { "guest" },
        "maxTextChars": app.chat.max_text_chars,
        "version": env!("CARGO_PKG_VERSION"),
    }))
    .into_response()
}

/// Backends reachable: history, rooms, and Redis (backplane and ids).
async fn ready(State(app): State<App>) -> Response {
    let check = |r: Result<(), String>| r.map_or_else(|e| e, |()| "ok".to_owned());
    let history = check(app.chat.history.store().ping().await.map_err(|e| e.to_string()));
    let rooms = check(app.chat.rooms.ping().await.map_err(|e| e.to_string()));
    let mut sequencer = check(app.chat.sequencer.ping().await.map_err(|e| e.to_string()));
    if let Some(stats) = app.broker.backplane_stats()
        && !stats.connected
        && sequencer == "ok"
    {
        sequencer = "backplane disconnected".to_owned();
    }
    let ok = [&history, &rooms, &sequencer].iter().all(|c| *c == "ok");
    let status = if ok { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    let body = json!({
        "status": if ok { "ready" } else { "unavailable" },
        "checks": { "history": history, "rooms": rooms, "backplane": sequencer },
    });
    (status, axum::Json(body)).into_response()
}

#[derive(Debug, Deserialize)]
struct RoomsQuery {
    after: Option<String>,
    limit: Option<String>,
}

#[derive(Debug, Deserialize)]
struct MessagesQuery {
    before: Option<String>,
    limit: Option<String>,
}

/// A `limit` parameter: 1 to `max`, `default` when absent.
fn limit(value: Option<&str>, default: usize, max: usize) -> ApiResult<usize> {
    let Some(value) = value else { return Ok(default) };
    match value.parse::<usize>() {
        Ok(n) if (1..=max).contains(&n) => Ok(n),
        _ => Err(ApiError::bad_request(format!(
            "limit must be a number from 1 to {max}, not '{value}'"
        ))),
    }
}

fn id<T: std::str::FromStr>(value: &str, what: &str) -> ApiResult<T> {
    value.parse().map_err(|_| {
        ApiError::bad_request(format!("{what} '{value}' is not an id (a decimal number)"))
    })
}

async fn list_rooms(
    State(app): State<App>,
    query: Result<Query<RoomsQuery>, QueryRejection>,
) -> ApiResult {
    let Query(query) = query?;
    let after = query.after.as_deref().map(|a| id::<RoomId>(a, "after")).transpose()?;
    let limit = limit(query.limit.as_deref(), DEFAULT_ROOMS, MAX_ROOMS)?;
    let rooms = app.chat.rooms.rooms(after, limit).await?;
    Ok(axum::Json(rooms.iter().map(RoomJson::from).collect::<Vec<_>>()).into_response())
}

#[derive(Debug, Deserialize)]
struct NewRoom {
    name: String,
}

/// Takes one room from the rate of the token's subject, or else of the
/// peer's network.
fn room_rate(app: &App, subject: Option<&Subject>, peer: Peer) -> ApiResult<()> {
    let client = match subject {
        Some(Subject(subject)) => app.room_rate.subject(subject),
        None => Client::Network(network(peer.0.ip())),
    };
    app.room_rate.take(client, Instant::now()).map_err(|wait| {
        let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
        ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            format!("too many rooms made: the next one can be made in {secs} s"),
        )
        .with_retry_after(secs)
    })
}

async fn create_room(
    State(app): State<App>,
    ConnectInfo(peer): ConnectInfo<Peer>,
    subject: Option<Extension<Subject>>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult {
    room_rate(&app, subject.as_ref().map(|Extension(s)| s), peer)?;
    let body = body?;
    let new: NewRoom = serde_json::from_slice(&body).map_err(|e| {
        ApiError::bad_request(format!("expected a JSON object {{\"name\": \"...\"}}: {e}"))
    })?;
    let room = app.room_cap.create(&*app.chat.rooms, &new.name).await?;
    app.chat.remember(&room);
    app.chat.metrics.rooms_created.inc();
    let json = serde_json::to_vec(&RoomJson::from(&room))
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    let mut headers = stomp_broker::codec::Headers::new();
    headers.push(Bytes::from_static(b"content-type"), Bytes::from_static(b"application/json"));
    if let Err(e) = app.broker.publish(ROOMS_TOPIC, headers, json.clone()) {
        tracing::warn!(error = %e, "new room not announced");
    }
    let location = format!("/api/rooms/{}", room.id);
    let mut response =
        (StatusCode::CREATED, [(header::CONTENT_TYPE, "application/json")], json).into_response();
    if let Ok(location) = HeaderValue::from_str(&location) {
        response.headers_mut().insert(header::LOCATION, location);
    }
    Ok(response)
}

async fn room_or_404(app: &App, room: &str) -> ApiResult<stomp_broker::store::Room> {
    id::<RoomId>(room, "room")?;
    app.chat.room(room).await?.ok_or_else(|| ApiError::not_found(format!("unknown room {room}")))
}

async fn get_room(State(app): State<App>, room: Result<Path<String>, PathRejection>) -> ApiResult {
    let Path(room) = room?;
    let room = room_or_404(&app, &room).await?;
    Ok(axum::Json(RoomJson::from(&room)).into_response())
}

/// A room's history, newest first: the stored JSON of each message.
async fn messages(
    State(app): State<App>,
    room: Result<Path<String>, PathRejection>,
    query: Result<Query<MessagesQuery>, QueryRejection>,
) -> ApiResult {
    let Path(room) = room?;
    let Query(query) = query?;
    let room = room_or_404(&app, &room).await?;
    let before = query.before.as_deref().map(|b| id::<MessageId>(b, "before")).transpose()?;
    let limit = limit(query.limit.as_deref(), DEFAULT_MESSAGES, MAX_MESSAGES)?;
    let page = app.chat.history.page(room.id, before, limit).await?;
    let mut body = Vec::with_capacity(2 + page.iter().map(|m| m.body.len() + 1).sum::<usize>());
    body.push(b'[');
    for (i, message) in page.iter().enumerate() {
        if i > 0 {
            body.push(b',');
        }
        body.extend_from_slice(&message.body);
    }
    body.push(b']');
    Ok(([(header::CONTENT_TYPE, "application/json")], body).into_response())
}

/// The STOMP WebSocket endpoint: checks the upgrade, agrees a STOMP
/// subprotocol, answers 101 and hands the upgraded connection to the broker.
async fn upgrade(
    State(app): State<App>,
    ConnectInfo(Peer(peer)): ConnectInfo<Peer>,
    mut request: Request,
) -> ApiResult {
    let headers = request.headers();
    let key = websocket_key(headers).ok_or_else(|| {
        ApiError::bad_request("expected a WebSocket upgrade (version 13) at /stomp")
    })?;
    let accept = derive_accept_key(key.as_bytes());
    let protocol = headers
        .get(header::SEC_WEBSOCKET_PROTOCOL)
        .and_then(|v| v.to_str().ok())
        .and_then(negotiate_subprotocol);
    let on_upgrade = hyper::upgrade::on(&mut request);
    let broker = app.broker;
    let version = protocol.map(|(_, version)| version);
    tokio::spawn(async move {
        match on_upgrade.await {
            Ok(upgraded) => {
                let config = broker.websocket_config();
                let ws = WebSocketStream::from_raw_socket(
                    TokioIo::new(upgraded),
                    Role::Server,
                    Some(config),
                )
                .await;
                broker.serve_websocket(ws, Some(peer), version);
            }
            Err(e) => tracing::debug!(error = %e, %peer, "WebSocket upgrade failed"),
        }
    });
    let mut response = StatusCode::SWITCHING_PROTOCOLS.into_response();
    let out = response.headers_mut();
    out.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    out.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    out.insert(
        header::SEC_WEBSOCKET_ACCEPT,
        HeaderValue::from_str(&accept).map_err(|e| ApiError::bad_request(e.to_string()))?,
    );
    if let Some((name, _)) = protocol {
        out.insert(header::SEC_WEBSOCKET_PROTOCOL, HeaderValue::from_static(name));
    }
    Ok(response)
}

/// The `Sec-WebSocket-Key` of a valid version 13 upgrade request.
fn websocket_key(headers: &HeaderMap) -> Option<String> {
    let has = |name: header::HeaderName, token: &str| {
        headers
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .any(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
    };
    if !has(header::CONNECTION, "upgrade") || !has(header::UPGRADE, "websocket") {
        return None;
    }
    if headers.get(header::SEC_WEBSOCKET_VERSION).and_then(|v| v.to_str().ok()) != Some("13") {
        return None;
    }
    headers.get(header::SEC_WEBSOCKET_KEY).and_then(|v| v.to_str().ok()).map(str::to_owned)
}
