//! The viewer at `/ui`: one HTML page, its script and its stylesheet, all compiled into the
//! binary. No CDN, font or third-party script; a strict Content-Security-Policy allows only these
//! three same-origin files and `fetch` to the API. The page holds no data: it signs in with an
//! admin credential (kept in `sessionStorage`) and reads `/v1` like any other client, building
//! every element with `textContent`, never `innerHTML`.

use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Redirect, Response};

const PAGE: &str = include_str!("ui.html");
const SCRIPT: &str = include_str!("ui.js");
const STYLE: &str = include_str!("ui.css");

const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
    connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; \
    frame-ancestors 'none'";

fn asset(body: &'static str, content_type: &'static str) -> Response {
    let mut resp = body.into_response();
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    resp
}

pub(super) async fn page() -> Response {
    asset(PAGE, "text/html; charset=utf-8")
}

pub(super) async fn script() -> Response {
    asset(SCRIPT, "text/javascript; charset=utf-8")
}

pub(super) async fn style() -> Response {
    asset(STYLE, "text/css; charset=utf-8")
}

pub(super) async fn redirect() -> Redirect {
    Redirect::to("/ui")
}
