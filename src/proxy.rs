//! The reverse proxy: accept client connections, classify each request, forward it to the
//! upstream, and — for mapped routes — hand the finished exchange to the pipeline as an event.
//!
//! Unmapped requests take the short path: forwarded and streamed back untouched, only counted.
//! Mapped requests stream too; at most `inspect_limit` bytes of each body are copied aside, and
//! the event is built when the response body ends (or breaks off). The proxy never imports the
//! store: events leave through [`Pipeline::submit`], which never waits.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Request, Response, StatusCode, Uri, Version};
use hyper::body::Incoming;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use uuid::Uuid;

use crate::classify::extract::{
    self, EventBase, Failure, ParsedBody, RequestFacts, ResponseFacts, SeenToken,
};
use crate::classify::{self, Delivery, Match, RequestHead, TokenLocation};
use crate::config::Config;
use crate::event::{self, AuditEvent, ClientInfo, Outcome, Stage};
use crate::identity::require::{self, Decision, Mode, Requirement};
use crate::pipeline::Pipeline;

pub mod body;
pub mod coverage;
pub mod live;
pub mod server;
pub mod tls;

use body::{BodyEnd, Capture, ProxyBody};
use coverage::Coverage;

/// Longest user agent kept on an event, in characters.
const MAX_USER_AGENT: usize = 256;

/// Everything a request needs, shared by all connections.
pub struct Proxy {
    pub(crate) cfg: Arc<Config>,
    client: Client<hyper_rustls::HttpsConnector<HttpConnector>, ProxyBody>,
    pipeline: Pipeline,
    coverage: Arc<Coverage>,
    /// `http://host:port`, the prefix of every upstream URI.
    upstream_base: String,
    /// The same, parsed once: upstream URIs are assembled from parts, not re-parsed.
    upstream_origin: Option<(http::uri::Scheme, http::uri::Authority)>,
    /// Request counters and latency histograms, registered per route of this map.
    metrics: crate::metrics::ProxyMetrics,
}

impl Proxy {
    pub fn new(cfg: Arc<Config>, pipeline: Pipeline, coverage: Arc<Coverage>) -> Proxy {
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(cfg.timeouts.upstream_connect));
        connector.set_nodelay(true);
        connector.enforce_http(false);
        // An http:// upstream never uses the TLS config; an https:// one gets its roots and
        // optional client certificate from `upstream_tls`.
        let tls = cfg.upstream_tls.as_deref().cloned().unwrap_or_else(|| {
            rustls::ClientConfig::builder()
                .with_root_certificates(rustls::RootCertStore::empty())
                .with_no_client_auth()
        });
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .wrap_connector(connector);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(cfg.timeouts.idle)
            .build(connector);
        let upstream_base = format!(
            "{}://{}",
            cfg.upstream.scheme_str().unwrap_or("http"),
            cfg.upstream.authority().map_or("", |a| a.as_str())
        );
        let upstream_origin = cfg
            .upstream
            .scheme()
            .cloned()
            .zip(cfg.upstream.authority().cloned());
        let metrics = crate::metrics::ProxyMetrics::new(&cfg.routes);
        Proxy {
            cfg,
            client,
            pipeline,
            coverage,
            upstream_base,
            upstream_origin,
            metrics,
        }
    }

    pub fn coverage(&self) -> &Arc<Coverage> {
        &self.coverage
    }

    /// Serve one request from `peer`.
    pub async fn handle(
        self: Arc<Self>,
        req: Request<Incoming>,
        peer: SocketAddr,
    ) -> Response<ProxyBody> {
        let start = Instant::now();
        let time = event::now_millis();
        let (mut parts, body) = req.into_parts();
        let request_id = ensure_request_id(&mut parts.headers, &self.cfg.request_id_header);

        let matched = classify::classify(&self.cfg.routes, &RequestHead::from_parts(&parts))
            .map(|m| (m.index, m.params, !m.route.body.is_empty()));
        let Some((mut index, mut params, needs_body)) = matched else {
            self.coverage.record(&parts.method, parts.uri.path());
            return self
                .forward_unmapped(parts, ProxyBody::Stream(body), peer, request_id)
                .await;
        };
        let head =
            body::read_head_within(body, self.cfg.inspect_limit, self.cfg.timeouts.body_read).await;
        if needs_body {
            // The route depends on a body field (e.g. an OAuth grant_type): decide on the head.
            let view = classify::BodyView {
                headers: &parts.headers,
                bytes: head.inspected(self.cfg.inspect_limit),
                truncated: head.truncated,
            };
            match classify::classify_body(&self.cfg.routes, &RequestHead::from_parts(&parts), &view)
            {
                Some(m) => (index, params) = (m.index, m.params),
                None => {
                    self.coverage.record(&parts.method, parts.uri.path());
                    return self
                        .forward_unmapped(parts, head.into_body(), peer, request_id)
                        .await;
                }
            }
        }
        self.coverage
            .record_route(&self.cfg.routes.routes[index].id);
        self.metrics.route(index).request();

        let snapshot = RequestSnapshot {
            method: parts.method.clone(),
            path: parts.uri.path().to_string(),
            query: parts.uri.query().map(str::to_string),
            headers: parts.headers.clone(),
        };
        // A place in the queue for this exchange's event, before anything else happens: when the
        // writer is behind, the request waits here (up to `store.queue_wait`) instead of its
        // event being dropped later. The upstream has not seen it yet.
        let slot = self.pipeline.reserve(self.cfg.store.queue_wait).await;
        let pending = Pending {
            proxy: self.clone(),
            slot,
            index,
            params,
            request: snapshot,
            // A view of the head (no copy): the same bytes are forwarded by `head.into_body()`.
            req_body: head
                .bytes
                .slice(..head.bytes.len().min(self.cfg.inspect_limit)),
            req_truncated: head.truncated,
            req_parsed: ParsedBody::default(),
            seen: Vec::new(),
            start,
            time,
            request_id: request_id.clone(),
            peer,
        };
        let mut pending = pending;
        pending.seen = pending.presented_tokens().await;
        if head.failed {
            let (failure, status, code, msg) = if head.timed_out {
                (
                    Failure::ClientTimeout,
                    StatusCode::REQUEST_TIMEOUT,
                    "request_timeout",
                    "request body was not sent in time",
                )
            } else {
                (
                    Failure::ClientAborted,
                    StatusCode::BAD_REQUEST,
                    "bad_request",
                    "request body could not be read",
                )
            };
            pending.finish_without_response(failure);
            return error_response(status, code, msg, &self.cfg.request_id_header, &request_id);
        }
        // Authenticating mode: a route that requires a verified token is decided here, before
        // the upstream (or the sync attempt) sees anything.
        if let Some(req) = self.cfg.routes.routes[index].require.clone() {
            if let Some(resp) = pending.check_requirement(&req) {
                return resp;
            }
        }
        // Fail closed: a sync route's attempt event is committed before the upstream sees anything.
        if self.cfg.routes.routes[index].delivery == Delivery::Sync
            && !pending.commit_attempt().await
        {
            pending.refuse();
            return error_response(
                StatusCode::SERVICE_UNAVAILABLE,
                "audit_unavailable",
                "the audit trail could not record this request, so it was not forwarded",
                &self.cfg.request_id_header,
                &request_id,
            );
        }
        let Some(upstream_req) = self.upstream_request(parts, head.into_body(), peer) else {
            return error_response(
                StatusCode::BAD_REQUEST,
                "bad_request",
                "invalid request target",
                &self.cfg.request_id_header,
                &request_id,
            );
        };
        let forwarded = Instant::now();
        let sent = tokio::time::timeout(
            self.cfg.timeouts.upstream_response,
            self.client.request(upstream_req),
        )
        .await;
        let m = self.metrics.route(index);
        match &sent {
            Ok(Ok(_)) => {
                let waited = forwarded.elapsed();
                m.upstream(waited);
                m.added(start.elapsed().saturating_sub(waited));
            }
            Ok(Err(_)) => m.upstream_error(false),
            Err(_) => m.upstream_error(true),
        }
        match sent {
            Ok(Ok(resp)) => {
                let (mut rparts, rbody) = resp.into_parts();
                strip_hop_by_hop(&mut rparts.headers);
                set_header(
                    &mut rparts.headers,
                    &self.cfg.request_id_header,
                    &request_id,
                );
                let resp_capture = Capture::new(self.cfg.inspect_limit);
                let status = rparts.status;
                let resp_headers = rparts.headers.clone();
                let cap = resp_capture.clone();
                let finish: body::Finisher = Box::new(move |how| {
                    pending.finish(Some(status), Some(resp_headers), &cap, how)
                });
                Response::from_parts(rparts, ProxyBody::tee(rbody, resp_capture, Some(finish)))
            }
            Ok(Err(e)) => {
                let failure = upstream_failure(&e);
                tracing::warn!(route = %self.cfg.routes.routes[index].id, request_id = %request_id, reason = failure.reason(), error = %ErrorChain(&e), "upstream request failed");
                pending.finish_without_response(failure);
                bad_gateway(failure, &self.cfg.request_id_header, &request_id)
            }
            Err(_) => {
                tracing::warn!(route = %self.cfg.routes.routes[index].id, request_id = %request_id, "upstream timed out");
                pending.finish_without_response(Failure::UpstreamTimeout);
                error_response(
                    StatusCode::GATEWAY_TIMEOUT,
                    "gateway_timeout",
                    "upstream did not answer in time",
                    &self.cfg.request_id_header,
                    &request_id,
                )
            }
        }
    }

    async fn forward_unmapped(
        &self,
        parts: http::request::Parts,
        body: ProxyBody,
        peer: SocketAddr,
        request_id: String,
    ) -> Response<ProxyBody> {
        let Some(upstream_req) = self.upstream_request(parts, body, peer) else {
            return error_response(
                StatusCode::BAD_REQUEST,
                "bad_request",
                "invalid request target",
                &self.cfg.request_id_header,
                &request_id,
            );
        };
        let rid = &self.cfg.request_id_header;
        let m = self.metrics.unmapped();
        m.request();
        let forwarded = Instant::now();
        let sent = tokio::time::timeout(
            self.cfg.timeouts.upstream_response,
            self.client.request(upstream_req),
        )
        .await;
        match &sent {
            Ok(Ok(_)) => m.upstream(forwarded.elapsed()),
            Ok(Err(_)) => m.upstream_error(false),
            Err(_) => m.upstream_error(true),
        }
        match sent {
            Ok(Ok(resp)) => {
                let (mut rparts, rbody) = resp.into_parts();
                strip_hop_by_hop(&mut rparts.headers);
                set_header(&mut rparts.headers, rid, &request_id);
                Response::from_parts(rparts, ProxyBody::Stream(rbody))
            }
            Ok(Err(e)) => {
                let failure = upstream_failure(&e);
                tracing::warn!(request_id = %request_id, reason = failure.reason(), error = %ErrorChain(&e), "upstream request failed");
                bad_gateway(failure, rid, &request_id)
            }
            Err(_) => error_response(
                StatusCode::GATEWAY_TIMEOUT,
                "gateway_timeout",
                "upstream did not answer in time",
                rid,
                &request_id,
            ),
        }
    }

    /// The upstream URI of a request: the upstream's origin and the request's path and query.
    fn upstream_uri(&self, uri: &Uri) -> Option<Uri> {
        match (&self.upstream_origin, uri.path_and_query()) {
            (Some((scheme, authority)), Some(pq)) if pq.as_str().starts_with('/') => {
                let mut up = http::uri::Parts::default();
                up.scheme = Some(scheme.clone());
                up.authority = Some(authority.clone());
                up.path_and_query = Some(pq.clone());
                Uri::from_parts(up).ok()
            }
            _ => {
                let pq = uri.path_and_query().map_or("/", |pq| pq.as_str());
                format!("{}{}", self.upstream_base, pq).parse().ok()
            }
        }
    }

    /// Rewrite a client request for the upstream: URI, hop-by-hop headers, `X-Forwarded-*`.
    fn upstream_request(
        &self,
        mut parts: http::request::Parts,
        body: ProxyBody,
        peer: SocketAddr,
    ) -> Option<Request<ProxyBody>> {
        let original_host = parts.headers.get(header::HOST).cloned().or_else(|| {
            parts
                .uri
                .authority()
                .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
        });
        parts.uri = self.upstream_uri(&parts.uri)?;
        parts.version = Version::HTTP_11;
        strip_hop_by_hop(&mut parts.headers);
        let proto = if parts.extensions.get::<server::Secure>().is_some() {
            "https"
        } else {
            "http"
        };
        let h = &mut parts.headers;
        let xff = HeaderName::from_static("x-forwarded-for");
        let prior: Vec<String> = h
            .get_all(&xff)
            .iter()
            .filter_map(|v| v.to_str().ok().map(str::to_string))
            .collect();
        // Only a trusted proxy's chain is passed on; anyone else's is replaced, so the upstream
        // never sees an address a client made up.
        let trusted = self.cfg.identity.trusted.contains(peer.ip());
        let chain = if prior.is_empty() || !trusted {
            peer.ip().to_string()
        } else {
            format!("{}, {}", prior.join(", "), peer.ip())
        };
        set_header(h, &xff, &chain);
        set_header(h, &HeaderName::from_static("x-forwarded-proto"), proto);
        if let Some(host) = original_host {
            h.insert(HeaderName::from_static("x-forwarded-host"), host.clone());
            h.insert(header::HOST, host);
        }
        Some(Request::from_parts(parts, body))
    }
}

/// The request as it was when it arrived (before rewriting), for the event.
struct RequestSnapshot {
    method: http::Method,
    path: String,
    query: Option<String>,
    headers: HeaderMap,
}

/// A mapped exchange waiting for its response to finish.
struct Pending {
    proxy: Arc<Proxy>,
    /// The queue place reserved for this exchange's event (`None`: the queue stayed full for
    /// `store.queue_wait`, or the pipeline is shutting down; the event may then be dropped).
    slot: Option<crate::pipeline::Slot>,
    index: usize,
    params: Vec<(String, String)>,
    request: RequestSnapshot,
    /// The inspected head of the request body.
    req_body: Bytes,
    req_truncated: bool,
    /// `req_body` parsed once, for every token location and source that reads it.
    req_parsed: ParsedBody,
    /// Tokens found so far (request side first, issued ones added when the response ends).
    seen: Vec<SeenToken>,
    start: Instant,
    time: time::OffsetDateTime,
    request_id: String,
    peer: SocketAddr,
}

impl Pending {
    fn request_facts(&self) -> RequestFacts<'_> {
        RequestFacts {
            method: &self.request.method,
            path: &self.request.path,
            query: self.request.query.as_deref(),
            headers: &self.request.headers,
            body: &self.req_body,
            body_truncated: self.req_truncated,
            parsed: &self.req_parsed,
        }
    }

    /// Inspect every token the route reads from the request; may wait for a JWKS refresh.
    async fn presented_tokens(&self) -> Vec<SeenToken> {
        let cfg = &self.proxy.cfg;
        let Some(route) = cfg.routes.routes.get(self.index) else {
            return Vec::new();
        };
        let facts = self.request_facts();
        let mut seen = Vec::new();
        for (location, keys) in route.token_reads() {
            if location.is_issued() {
                continue;
            }
            if let Some(raw) = extract::request_token(&location, &facts) {
                let checked = cfg.identity.check(&raw, keys.as_deref()).await;
                seen.push(SeenToken {
                    location,
                    keys,
                    checked,
                });
            }
        }
        seen
    }

    fn finish_without_response(self, failure: Failure) {
        let empty = Capture::new(0);
        self.record(None, None, &empty, Some(failure));
    }

    fn finish(
        self,
        status: Option<StatusCode>,
        headers: Option<HeaderMap>,
        resp: &Capture,
        how: BodyEnd,
    ) {
        let failure = match how {
            BodyEnd::Complete => None,
            BodyEnd::Failed => Some(Failure::UpstreamAborted),
            BodyEnd::Malformed => Some(Failure::UpstreamBadResponse),
            BodyEnd::Dropped => Some(Failure::ClientAborted),
        };
        self.record(status, headers.as_ref(), resp, failure);
    }

    /// Commit the `attempt` event of a sync route within `store.sync_timeout`; false when it
    /// could not be committed (the request must then not be forwarded).
    async fn commit_attempt(&self) -> bool {
        let Some(mut ev) = self.event(None, None, &Capture::new(0), None) else {
            return false;
        };
        ev.stage = Stage::Attempt;
        ev.outcome = Outcome::Unknown;
        ev.reason = None;
        let (route, request_id) = (ev.http.route.clone(), ev.http.request_id.clone());
        let wait = self.proxy.cfg.store.sync_timeout;
        match tokio::time::timeout(wait, self.proxy.pipeline.commit(ev)).await {
            Ok(Ok(())) => true,
            Ok(Err(e)) => {
                tracing::warn!(route = %route, request_id = %request_id, error = %e, "sync route refused: attempt event not committed");
                false
            }
            Err(_) => {
                tracing::warn!(route = %route, request_id = %request_id, timeout = ?wait, "sync route refused: attempt event not committed in time");
                false
            }
        }
    }

    /// Apply the route's requirement: `None` to go on (allowed, or only observed), or the
    /// denial to send. Every denial or would-be denial is recorded as its own event.
    fn check_requirement(&self, req: &Requirement) -> Option<Response<ProxyBody>> {
        let token = self
            .seen
            .iter()
            .find(|t| t.location == req.token && t.keys == req.keys)
            .map(|t| &t.checked);
        let decision = require::evaluate(req, token, &self.params, &self.request.headers);
        let (kind, denial) = match (&decision, req.mode) {
            (Decision::Allow, _) => return None,
            (Decision::AllowFlagged { reason }, _) => {
                self.record_access("access.would_deny", req, reason, None, token);
                return None;
            }
            (Decision::Deny(d), Mode::Observe) => ("access.would_deny", d),
            (Decision::Deny(d), Mode::Enforce) => ("access.denied", d),
        };
        let status = StatusCode::from_u16(denial.status).unwrap_or(StatusCode::FORBIDDEN);
        self.record_access(kind, req, &denial.reason, Some(status), token);
        if req.mode == Mode::Observe {
            return None;
        }
        let cfg = &self.proxy.cfg;
        let code = denial.error.unwrap_or("unauthorized");
        let mut resp = error_response(
            status,
            code,
            &denial.description,
            &cfg.request_id_header,
            &self.request_id,
        );
        if let Some(v) = denial
            .www_authenticate(req)
            .and_then(|v| HeaderValue::from_str(&v).ok())
        {
            resp.headers_mut().insert(header::WWW_AUTHENTICATE, v);
        }
        Some(resp)
    }

    /// An `access.denied` / `access.would_deny` event: the route's facts, the denial's reason,
    /// and — when no verified actor is known — the token's own subject, marked unverified.
    fn record_access(
        &self,
        kind: &str,
        req: &Requirement,
        reason: &str,
        status: Option<StatusCode>,
        token: Option<&crate::identity::CheckedToken>,
    ) {
        let Some(mut ev) = self.event(status, None, &Capture::new(0), None) else {
            return;
        };
        ev.event_type = kind.to_string();
        ev.outcome = Outcome::Failure;
        ev.reason = Some(reason.to_string());
        if ev.actor.id.is_none() {
            if let Some(sub) = token.and_then(|t| t.claim_str("sub")) {
                ev.actor.id = Some(crate::classify::redact::truncate(
                    &sub,
                    crate::classify::redact::MAX_VALUE_CHARS,
                ));
                ev.actor.kind = crate::event::ActorKind::User;
                ev.actor.verified = token.is_some_and(|t| t.verified);
                ev.actor.source = Some(format!("claim:sub@{}", req.token.label()));
            }
        }
        ev.details.insert(
            "requirement".into(),
            serde_json::Value::String(req.name.clone()),
        );
        ev.details.insert(
            "mode".into(),
            serde_json::Value::String(req.mode.as_str().into()),
        );
        tracing::info!(route = %ev.http.route, event = %kind, reason = %reason, request_id = %ev.http.request_id, "access requirement not met");
        self.proxy.pipeline.submit(ev);
    }

    /// Record that a sync route was refused with 503 because its attempt was not committed.
    fn refuse(mut self) {
        let status = Some(StatusCode::SERVICE_UNAVAILABLE);
        if let Some(mut ev) = self.event(status, None, &Capture::new(0), None) {
            ev.outcome = Outcome::Error;
            ev.reason = Some("audit_unavailable".to_string());
            self.proxy.pipeline.submit_reserved(ev, self.slot.take());
        }
    }

    fn record(
        mut self,
        status: Option<StatusCode>,
        resp_headers: Option<&HeaderMap>,
        resp: &Capture,
        failure: Option<Failure>,
    ) {
        if let Some(ev) = self.event(status, resp_headers, resp, failure) {
            tracing::debug!(route = %ev.http.route, event = %ev.event_type, outcome = %ev.outcome, request_id = %ev.http.request_id, "audit event built");
            self.proxy.pipeline.submit_reserved(ev, self.slot.take());
        }
    }

    /// The event of this exchange as far as it is known.
    fn event(
        &self,
        status: Option<StatusCode>,
        resp_headers: Option<&HeaderMap>,
        resp: &Capture,
        failure: Option<Failure>,
    ) -> Option<AuditEvent> {
        let cfg = &self.proxy.cfg;
        let route = cfg.routes.routes.get(self.index)?;
        let resp_cap = resp.take();
        let m = Match {
            route,
            index: self.index,
            params: self.params.clone(),
        };
        let req_facts = self.request_facts();
        let resp_parsed = ParsedBody::default();
        let resp_facts = ResponseFacts {
            status,
            headers: resp_headers,
            body: &resp_cap.bytes,
            body_truncated: resp_cap.truncated,
            failure,
            parsed: &resp_parsed,
        };
        let user_agent = self.request.headers.get(header::USER_AGENT).map(|v| {
            crate::classify::redact::truncate(
                &String::from_utf8_lossy(v.as_bytes()),
                MAX_USER_AGENT,
            )
        });
        let base = EventBase {
            id: Uuid::now_v7(),
            time: self.time,
            request_id: self.request_id.clone(),
            client: ClientInfo {
                ip: Some(
                    cfg.identity
                        .trusted
                        .client_ip(self.peer.ip(), &self.request.headers),
                ),
                user_agent,
            },
            duration_ms: self.start.elapsed().as_millis() as u64,
        };
        // Issued tokens join the presented ones; without any, the presented ones are lent as is.
        let mut seen = std::borrow::Cow::Borrowed(self.seen.as_slice());
        for (location, keys) in route.token_reads() {
            if let TokenLocation::ResponseBody(ptr) = &location {
                if let Some(raw) = extract::response_token(ptr, &resp_facts) {
                    let checked = cfg.identity.check_now(&raw, keys.as_deref());
                    seen.to_mut().push(SeenToken {
                        location,
                        keys,
                        checked,
                    });
                }
            }
        }
        Some(extract::build_event(
            &m,
            &cfg.redactor,
            &req_facts,
            &resp_facts,
            &seen,
            base,
        ))
    }
}

/// Hop-by-hop headers (RFC 9110 §7.6.1) are for one connection only and never forwarded.
/// (Parsed names: removing by `&str` would parse each name again on every request.)
static HOP_BY_HOP: [HeaderName; 9] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

fn strip_hop_by_hop(h: &mut HeaderMap) {
    let listed: Vec<HeaderName> = h
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .collect();
    for name in listed {
        h.remove(name);
    }
    for name in &HOP_BY_HOP {
        h.remove(name);
    }
}

fn set_header(h: &mut HeaderMap, name: &HeaderName, value: &str) {
    if let Ok(v) = HeaderValue::from_str(value) {
        h.insert(name.clone(), v);
    }
}

/// Keep a sane client-sent request id (≤ 128 visible ASCII characters); otherwise make one.
fn ensure_request_id(h: &mut HeaderMap, name: &HeaderName) -> String {
    if let Some(v) = h.get(name).and_then(|v| v.to_str().ok()) {
        let v = v.trim();
        if !v.is_empty() && v.len() <= 128 && v.bytes().all(|b| b.is_ascii_graphic()) {
            return v.to_string();
        }
    }
    let mut buf = Uuid::encode_buffer();
    let id: &str = Uuid::now_v7().simple().encode_lower(&mut buf);
    if let Ok(v) = HeaderValue::from_str(id) {
        h.insert(name.clone(), v);
    }
    id.to_string()
}

/// Why the upstream gave no usable response head. A failure to connect (refused, TLS handshake,
/// connect timeout) and a connection closed or reset before the head was complete are
/// `upstream_unreachable`; a head hyper could not parse (not HTTP, a bad status line or header,
/// too large) is `upstream_bad_response`.
fn upstream_failure(e: &hyper_util::client::legacy::Error) -> Failure {
    if e.is_connect() {
        return Failure::UpstreamUnreachable;
    }
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        if let Some(h) = s.downcast_ref::<hyper::Error>() {
            // `is_parse` covers a bad status line, header or version and a head too large.
            return if h.is_parse() {
                Failure::UpstreamBadResponse
            } else {
                Failure::UpstreamUnreachable
            };
        }
        source = s.source();
    }
    Failure::UpstreamUnreachable
}

/// The 502 of a request the upstream gave no usable response head to.
fn bad_gateway(failure: Failure, rid_header: &HeaderName, request_id: &str) -> Response<ProxyBody> {
    let message = match failure {
        Failure::UpstreamBadResponse => "upstream sent an invalid response",
        Failure::UpstreamUnreachable
        | Failure::UpstreamTimeout
        | Failure::UpstreamAborted
        | Failure::ClientAborted
        | Failure::ClientTimeout => "upstream unreachable",
    };
    error_response(
        StatusCode::BAD_GATEWAY,
        "bad_gateway",
        message,
        rid_header,
        request_id,
    )
}

/// An error with its sources, for the log: hyper-util's own message ("client error
/// (SendRequest)") does not say what went wrong.
struct ErrorChain<'a>(&'a (dyn std::error::Error + 'static));

impl std::fmt::Display for ErrorChain<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)?;
        let mut source = self.0.source();
        while let Some(s) = source {
            write!(f, ": {s}")?;
            source = s.source();
        }
        Ok(())
    }
}

fn error_response(
    status: StatusCode,
    code: &str,
    message: &str,
    rid_header: &HeaderName,
    request_id: &str,
) -> Response<ProxyBody> {
    let body = serde_json::json!({ "error": code, "message": message, "request_id": request_id });
    let mut resp = Response::new(ProxyBody::full(body.to_string()));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    set_header(resp.headers_mut(), rid_header, request_id);
    resp
}
