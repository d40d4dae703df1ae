//! REST helpers: requests to one server and their replies, with the JSON
//! error shape of the contract.

use std::net::{IpAddr, SocketAddr};

use reqwest::header::HeaderMap;
use serde_json::Value;

use super::WAIT;

/// A REST client of one server (optionally sending a Bearer token).
#[derive(Debug, Clone)]
pub struct Rest {
    client: reqwest::Client,
    base: String,
    token: Option<String>,
}

/// A reply: status, headers and the body as text.
#[derive(Debug)]
pub struct Reply {
    /// The request, for messages (`GET /api/rooms`).
    pub request: String,
    /// The HTTP status code.
    pub status: u16,
    /// The response headers.
    pub headers: HeaderMap,
    /// The body as text.
    pub body: String,
}

impl Reply {
    /// The body as JSON; panics (showing the body) if it is not JSON.
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("{}: body is not JSON ({e}): {:?}", self.request, self.body))
    }

    /// The value of header `name`, if present and text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// Asserts the status and returns the body as JSON.
    pub fn expect_json(&self, status: u16) -> Value {
        assert_eq!(
            self.status, status,
            "{}: unexpected status; body {:?}",
            self.request, self.body
        );
        self.json()
    }

    /// Asserts an error reply: `status`, a JSON object with exactly the
    /// string fields `error` (= `code`) and `message` (not empty). Returns
    /// the message.
    pub fn expect_error(&self, status: u16, code: &str) -> String {
        let body = self.expect_json(status);
        let what = format!("{}: error body {body}", self.request);
        let object = body.as_object().unwrap_or_else(|| panic!("{what} is not an object"));
        assert_eq!(object.len(), 2, "{what}: expected exactly {{\"error\",\"message\"}}");
        assert_eq!(object.get("error").and_then(Value::as_str), Some(code), "{what}");
        let message = object.get("message").and_then(Value::as_str).unwrap_or_default();
        assert!(!message.trim().is_empty(), "{what}: empty or missing message");
        assert!(
            self.header("content-type").is_some_and(|t| t.starts_with("application/json")),
            "{what}: content-type {:?}",
            self.header("content-type")
        );
        message.to_owned()
    }
}

impl Rest {
    /// A client of the server whose HTTP side is at `addr`.
    pub fn new(addr: SocketAddr, token: Option<String>) -> Self {
        let client = reqwest::Client::builder()
            .no_proxy()
            .timeout(WAIT)
            .build()
            .expect("build the HTTP client");
        Self { client, base: format!("http://{addr}"), token }
    }

    /// A client of the server at `addr` whose connections come from the
    /// local address `local` (e.g. `127.0.0.2`: on Linux every 127.x.y.z
    /// reaches the loopback), for limits counted per address.
    pub fn from_address(addr: SocketAddr, local: IpAddr, token: Option<String>) -> Self {
        let client = reqwest::Client::builder()
            .no_proxy()
            .timeout(WAIT)
            .local_address(local)
            .build()
            .expect("build the HTTP client");
        Self { client, base: format!("http://{addr}"), token }
    }

    /// The same server, with `token` (or none).
    pub fn with_token(&self, token: Option<&str>) -> Self {
        Self { token: token.map(str::to_owned), ..self.clone() }
    }

    /// The full URL of `path` (which starts with `/`).
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    async fn run(&self, request: reqwest::RequestBuilder, what: String) -> Reply {
        let request = match &self.token {
            Some(token) => request.bearer_auth(token),
            None => request,
        };
        let response = request.send().await.unwrap_or_else(|e| panic!("{what}: {e}"));
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let body =
            response.text().await.unwrap_or_else(|e| panic!("{what}: reading the body: {e}"));
        Reply { request: what, status, headers, body }
    }

    /// `GET path`.
    pub async fn get(&self, path: &str) -> Reply {
        self.run(self.client.get(self.url(path)), format!("GET {path}")).await
    }

    /// `GET path` with a raw `Authorization` header value (and no token).
    pub async fn get_authorization(&self, path: &str, authorization: &str) -> Reply {
        let request = self.client.get(self.url(path)).header("authorization", authorization);
        let what = format!("GET {path} (Authorization: {authorization})");
        self.with_token(None).run(request, what).await
    }

    /// `POST path` with `body` as `application/json` (sent as is, so that
    /// it may be malformed).
    pub async fn post_raw(&self, path: &str, body: &str) -> Reply {
        let request = self
            .client
            .post(self.url(path))
            .header("content-type", "application/json")
            .body(body.to_owned());
        self.run(request, format!("POST {path} {body:.120}")).await
    }

    /// `METHOD path` (any method, e.g. `PUT`), with `body` if given.
    pub async fn request(&self, method: &str, path: &str, body: Option<&str>) -> Reply {
        let verb = reqwest::Method::from_bytes(method.as_bytes()).expect("an HTTP method");
        let mut request = self.client.request(verb, self.url(path));
        if let Some(body) = body {
            request = request.header("content-type", "application/json").body(body.to_owned());
        }
        self.run(request, format!("{method} {path}")).await
    }

    /// `POST path` with a JSON body.
    pub async fn post(&self, path: &str, body: &Value) -> Reply {
        self.post_raw(path, &body.to_string()).await
    }

    /// Creates room `name`, asserting 201; returns the room JSON.
    pub async fn create_room(&self, name: &str) -> Value {
        let reply = self.post("/api/rooms", &serde_json::json!({ "name": name })).await;
        reply.expect_json(201)
    }

    /// Creates room `name`; returns its id.
    pub async fn create_room_id(&self, name: &str) -> String {
        let room = self.create_room(name).await;
        room["id"].as_str().unwrap_or_else(|| panic!("room id is not a string: {room}")).to_owned()
    }
}
