//! The web chat page, embedded in the binary (no Node.js or files needed
//! to run the server). `web/vendor/` holds @stomp/stompjs at a pinned
//! version with its licence (see `web/vendor/README.md`).

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

/// Each file: its path under `web/`, media type and contents. The page's script is
/// `app.js` and the ES modules it imports (all at the top level, served as `/{file}`).
const ASSETS: &[(&str, &str, &[u8])] = &[
    ("index.html", "text/html; charset=utf-8", include_bytes!("../web/index.html")),
    ("app.js", "text/javascript; charset=utf-8", include_bytes!("../web/app.js")),
    ("dom.js", "text/javascript; charset=utf-8", include_bytes!("../web/dom.js")),
    ("session.js", "text/javascript; charset=utf-8", include_bytes!("../web/session.js")),
    ("rooms.js", "text/javascript; charset=utf-8", include_bytes!("../web/rooms.js")),
    ("messages.js", "text/javascript; charset=utf-8", include_bytes!("../web/messages.js")),
    ("outbox.js", "text/javascript; charset=utf-8", include_bytes!("../web/outbox.js")),
    ("connection.js", "text/javascript; charset=utf-8", include_bytes!("../web/connection.js")),
    ("style.css", "text/css; charset=utf-8", include_bytes!("../web/style.css")),
    ("favicon.svg", "image/svg+xml", include_bytes!("../web/favicon.svg")),
    ("status.html", "text/html; charset=utf-8", include_bytes!("../web/status.html")),
    (
        "vendor/stomp.umd.min.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../web/vendor/stomp.umd.min.js"),
    ),
    (
        "vendor/LICENSE-stompjs.txt",
        "text/plain; charset=utf-8",
        include_bytes!("../web/vendor/LICENSE-stompjs.txt"),
    ),
];

/// The embedded file `path`, or a 404.
pub(crate) fn asset(path: &str) -> Response {
    let Some((_, media_type, body)) = ASSETS.iter().find(|(p, _, _)| *p == path) else {
        let body =
            serde_json::json!({ "error": "not_found", "message": format!("no file /{path}") });
        return (StatusCode::NOT_FOUND, axum::Json(body)).into_response();
    };
    let mut response = (*body).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(media_type));
    // The page changes with the binary: revalidate rather than cache stale code.
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    response
}
