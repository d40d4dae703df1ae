//! Every HTTP error of the server is the contract's JSON
//! `{"error": CODE, "message": TEXT}` with the right status: a path that
//! does not decode, an unknown path, a method a route does not have, a
//! bad query, a body too large, a plain GET of the WebSocket endpoint.

mod support;

use support::{Node, unique};

#[tokio::test]
async fn every_error_is_json_with_its_status() {
    let server = Node::new().start().await;
    let rest = server.rest();
    let room = rest.create_room_id(&unique("errors")).await;
    let cases: &[(&str, String, u16, &str)] = &[
        ("GET", "/api/rooms/%FF".into(), 400, "bad_request"),
        ("GET", "/api/rooms/%FF/messages".into(), 400, "bad_request"),
        ("GET", "/%FF".into(), 400, "bad_request"),
        ("GET", "/vendor/%FF".into(), 400, "bad_request"),
        ("GET", "/api/rooms?limit=%FF".into(), 400, "bad_request"),
        ("GET", format!("/api/rooms/{room}/messages?before=%FF"), 400, "bad_request"),
        ("GET", "/stomp".into(), 400, "bad_request"),
        ("POST", "/healthz".into(), 405, "method_not_allowed"),
        ("PUT", "/".into(), 405, "method_not_allowed"),
        ("DELETE", "/api/rooms".into(), 405, "method_not_allowed"),
        ("PATCH", format!("/api/rooms/{room}"), 405, "method_not_allowed"),
        ("POST", "/stomp".into(), 405, "method_not_allowed"),
        ("POST", "/metrics".into(), 405, "method_not_allowed"),
        ("GET", "/no/such/page".into(), 404, "not_found"),
        ("GET", "/api/no-such-endpoint".into(), 404, "not_found"),
        ("GET", "/vendor/no-such-file.js".into(), 404, "not_found"),
    ];
    for (method, path, status, code) in cases {
        rest.request(method, path, None).await.expect_error(*status, code);
    }
    let allowed = rest.request("POST", "/healthz", None).await;
    assert!(
        allowed.header("allow").is_some_and(|allow| allow.contains("GET")),
        "405 without Allow: GET: {allowed:?}"
    );

    let huge = format!("{{\"name\": \"{}\"}}", "x".repeat(17 * 1024));
    rest.post_raw("/api/rooms", &huge).await.expect_error(413, "payload_too_large");
}
