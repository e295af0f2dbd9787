//! `GET /v1/openapi.json`: the OpenAPI 3.1 document of the admin API, embedded in the binary.
//! A test checks that it parses and names every `/v1` route the router serves.

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
