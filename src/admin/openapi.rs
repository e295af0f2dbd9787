//! `GET /v1/openapi.json`: the OpenAPI 3.1 document of the admin API, embedded in the binary.
//! A unit test checks that it names every `/v1` route the router serves; `tests/openapi.rs`
//! validates it (openapi-spec-validator) and holds a real sidecar's answers to it: every
//! documented operation and status, with its content type, headers and body schema.

use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};

/// The document, as served.
pub const DOCUMENT: &str = include_str!("openapi.json");

pub(super) async fn handler() -> Response {
    let mut resp = DOCUMENT.into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}
