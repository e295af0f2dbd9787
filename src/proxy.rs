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
use crate::classify::{self, Delivery, Match, PathPolicy, RequestHead, Routing, TokenLocation};
use crate::config::Config;
use crate::event::{self, AuditEvent, ClientInfo, Outcome, Stage};
use crate::identity::require::{self, Decision, Mode, Requirement};
use crate::pipeline::Pipeline;

pub mod body;
pub mod coverage;
pub mod live;
pub mod server;

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

    /// Serve one request from `peer`, in phases: **route** (one reading of the target, the
    /// upstream's: [`classify::route_request`]) → **admit** (read the body's head, decide body
    /// conditions, refuse what cannot be checked) → **authorize** (the route's requirement,
    /// the sync attempt) → **forward** → **respond** (the event is built when the response
    /// body ends).
    pub async fn handle(
        self: Arc<Self>,
        req: Request<Incoming>,
        peer: SocketAddr,
    ) -> Response<ProxyBody> {
        let start = Instant::now();
        let time = event::now_millis();
        let (mut parts, body) = req.into_parts();
        let request_id = ensure_request_id(&mut parts.headers, &self.cfg.request_id_header);
        let ctx = Arrival {
            start,
            time,
            request_id,
            peer,
        };

        // Route: a request an upstream may read as a mapped route never passes as unmapped.
        let routing = classify::route_request(
            &self.cfg.routes,
            &RequestHead::from_parts(&parts),
            &parts.headers,
            parts.uri.query(),
        );
        let mut notes = serde_json::Map::new();
        let (mut index, mut params) = match routing {
            Routing::Unmapped => {
                self.coverage.record(&parts.method, parts.uri.path());
                return self
                    .forward_unmapped(parts, ProxyBody::Stream(body), peer, ctx.request_id)
                    .await;
            }
            Routing::Mapped(m) => (m.index, m.params),
            Routing::Ambiguous(a) => {
                let variant = a.label();
                let resembles = (a.resembles.index, a.resembles.params.clone());
                match self.cfg.routes.policy_for(a.resembles.route) {
                    PathPolicy::Reject => {
                        let pending = self.pending(&parts, resembles, Bytes::new(), false, ctx);
                        let mut pending = pending.await;
                        pending
                            .notes
                            .insert("variant".into(), variant.clone().into());
                        pending
                            .notes
                            .insert("resembles".into(), a.resembles.route.id.clone().into());
                        if let Some(p) = &a.primary {
                            pending
                                .notes
                                .insert("primary_route".into(), p.route.id.clone().into());
                        }
                        tracing::warn!(route = %a.resembles.route.id, variant = %variant, request_id = %pending.request_id, "ambiguous request target refused");
                        return pending.reject(
                            "request.rejected",
                            "ambiguous_path",
                            StatusCode::BAD_REQUEST,
                            "the request target can be read as a different route; send it in its canonical form",
                        );
                    }
                    PathPolicy::Normalize => {
                        notes.insert(
                            "normalized".into(),
                            serde_json::json!({
                                "variant": variant,
                                "method": parts.method.as_str(),
                                "path": parts.uri.path(),
                            }),
                        );
                        if normalize_target(&mut parts, &a).is_none() {
                            return error_response(
                                StatusCode::BAD_REQUEST,
                                "bad_request",
                                "invalid request target",
                                &self.cfg.request_id_header,
                                &ctx.request_id,
                            );
                        }
                        resembles
                    }
                }
            }
        };

        // Admit: the body's head, and the route's body conditions decided on it.
        let limit = self.cfg.inspect_limit;
        let head = body::read_head_within(body, limit, self.cfg.timeouts.body_read).await;
        // Over the limit however the bytes arrived: one write or many, ended or not.
        let truncated = head.truncated || head.bytes.len() > limit;
        let mut refuse_body = None;
        if !self.cfg.routes.routes[index].body.is_empty() && !head.failed {
            let rhead = RequestHead::from_parts(&parts);
            let bytes = head.inspected(limit);
            match classify::inspect::inspectable(&parts.headers, bytes, truncated) {
                Ok(()) => {
                    let view = classify::BodyView {
                        headers: &parts.headers,
                        bytes,
                        truncated,
                    };
                    match classify::classify_body(&self.cfg.routes, &rhead, &view) {
                        Some(m) => (index, params) = (m.index, m.params),
                        None => {
                            // Read in full, and no route's conditions hold: truly unmapped.
                            self.coverage.record(&parts.method, parts.uri.path());
                            return self
                                .forward_unmapped(parts, head.into_body(), peer, ctx.request_id)
                                .await;
                        }
                    }
                }
                Err(why) => {
                    // The request still belongs to its method and path: the route the readable
                    // part of the body points to (else the most specific) takes it, flagged
                    // with every route it may be; any enforcing candidate refuses it.
                    let candidates = classify::head_candidates(&self.cfg.routes, &rhead);
                    if let Some(m) =
                        classify::inspect::best_effort(&candidates, &parts.headers, bytes)
                    {
                        (index, params) = (m.index, m.params.clone());
                    }
                    let unchecked: Vec<String> = candidates
                        .iter()
                        .flat_map(|m| m.route.body.iter())
                        .map(|(ptr, allowed)| format!("{ptr} = {}", allowed.join("|")))
                        .collect();
                    let ids: Vec<&str> = candidates.iter().map(|m| m.route.id.as_str()).collect();
                    notes.insert(
                        "body_uninspected".into(),
                        serde_json::json!({
                            "why": why.as_str(),
                            "conditions": unchecked,
                            "routes": ids,
                        }),
                    );
                    let enforcing = candidates.iter().any(|m| {
                        m.route
                            .require
                            .as_ref()
                            .is_some_and(|r| r.mode == Mode::Enforce)
                    });
                    if enforcing {
                        refuse_body = Some(why);
                    }
                }
            }
        }
        self.coverage
            .record_route(&self.cfg.routes.routes[index].id);
        self.metrics.route(index).request();

        let req_body = head.bytes.slice(..head.bytes.len().min(limit));
        let mut pending = self
            .pending(&parts, (index, params), req_body, truncated, ctx)
            .await;
        pending.notes.extend(notes);
        let request_id = pending.request_id.clone();
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
        if let Some(why) = refuse_body {
            tracing::warn!(route = %self.cfg.routes.routes[index].id, why = why.as_str(), request_id = %request_id, "body-conditioned route refused: body not inspectable");
            return pending.reject(
                "access.denied",
                "body_uninspected",
                why.status(),
                why.message(),
            );
        }
        // Never check one credential and forward another.
        if let Some(why) = pending.duplicate_credentials() {
            pending
                .notes
                .insert("duplicate".into(), serde_json::Value::String(why.into()));
            tracing::warn!(route = %self.cfg.routes.routes[index].id, duplicate = why, request_id = %request_id, "request with conflicting credentials refused");
            return pending.reject(
                "request.rejected",
                "duplicate_credentials",
                StatusCode::BAD_REQUEST,
                "the request carries more than one credential; send exactly one",
            );
        }
        // Authorize: a route that requires a verified token is decided here, before the
        // upstream (or the sync attempt) sees anything.
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

    /// The exchange of a mapped request, with its queue place reserved and its presented
    /// tokens inspected. When the writer is behind, the request waits here (up to
    /// `store.queue_wait`) instead of its event being dropped later; the upstream has not seen
    /// it yet.
    async fn pending(
        self: &Arc<Self>,
        parts: &http::request::Parts,
        (index, params): (usize, Vec<(String, String)>),
        req_body: Bytes,
        req_truncated: bool,
        ctx: Arrival,
    ) -> Pending {
        let slot = self.pipeline.reserve(self.cfg.store.queue_wait).await;
        let mut pending = Pending {
            proxy: self.clone(),
            slot,
            index,
            params,
            request: RequestSnapshot {
                method: parts.method.clone(),
                path: parts.uri.path().to_string(),
                query: parts.uri.query().map(str::to_string),
                headers: parts.headers.clone(),
            },
            req_body,
            req_truncated,
            req_parsed: ParsedBody::default(),
            seen: Vec::new(),
            notes: serde_json::Map::new(),
            start: ctx.start,
            time: ctx.time,
            request_id: ctx.request_id,
            peer: ctx.peer,
        };
        pending.seen = pending.presented_tokens().await;
        pending
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

/// When and from where a request arrived, and its id.
struct Arrival {
    start: Instant,
    time: time::OffsetDateTime,
    request_id: String,
    peer: SocketAddr,
}

/// Rewrite an ambiguous request to the canonical form of the route it resembles (`path_policy:
/// normalize`): that route's method and path, the query kept, method-override headers removed
/// (the method they asked for is now the method). `None` when the result is not a valid URI.
fn normalize_target(parts: &mut http::request::Parts, a: &classify::Ambiguity<'_>) -> Option<()> {
    let pq = match parts.uri.query() {
        Some(q) => format!("{}?{q}", a.canonical_path),
        None => a.canonical_path.clone(),
    };
    let mut up = http::uri::Parts::default();
    up.path_and_query = Some(pq.parse().ok()?);
    if let Some(authority) = parts.uri.authority() {
        up.scheme = parts.uri.scheme().cloned();
        up.authority = Some(authority.clone());
    }
    parts.uri = Uri::from_parts(up).ok()?;
    parts.method = a.method.clone();
    for name in classify::interpret::METHOD_OVERRIDE_HEADERS {
        parts.headers.remove(name);
    }
    Some(())
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
    /// Facts of how the proxy read the request (`normalized`, `body_uninspected`, ...), added
    /// to the event's details.
    notes: serde_json::Map<String, serde_json::Value>,
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

    /// Refuse the request before the upstream sees it: record a `kind` event (outcome failure,
    /// `reason`) with the route's facts, and answer `status` with the small JSON error body.
    fn reject(
        mut self,
        kind: &str,
        reason: &str,
        status: StatusCode,
        message: &str,
    ) -> Response<ProxyBody> {
        let cfg = self.proxy.cfg.clone();
        if let Some(mut ev) = self.event(Some(status), None, &Capture::new(0), None) {
            ev.event_type = kind.to_string();
            ev.outcome = Outcome::Failure;
            ev.reason = Some(reason.to_string());
            self.proxy.pipeline.submit_reserved(ev, self.slot.take());
        }
        let code = match reason {
            "ambiguous_path" => "ambiguous_path",
            "body_uninspected" => "body_uninspected",
            _ => "invalid_request",
        };
        error_response(
            status,
            code,
            message,
            &cfg.request_id_header,
            &self.request_id,
        )
    }

    /// Why the request carries more credentials than the one that would be checked: two
    /// `Authorization` headers, a token header, cookie or query parameter the route reads given
    /// twice, or a bearer token together with an `access_token` parameter (RFC 6750 §2 allows
    /// one method per request). `None` when it is unambiguous.
    fn duplicate_credentials(&self) -> Option<&'static str> {
        let h = &self.request.headers;
        if h.get_all(header::AUTHORIZATION).iter().count() > 1 {
            return Some("authorization_header");
        }
        let route = self.proxy.cfg.routes.routes.get(self.index)?;
        let query_count = |name: &str| {
            self.request.query.as_deref().map_or(0, |q| {
                form_urlencoded::parse(q.as_bytes())
                    .filter(|(k, _)| k == name)
                    .count()
            })
        };
        let mut reads_bearer = false;
        for (location, _) in route.token_reads() {
            match &location {
                TokenLocation::Bearer => reads_bearer = true,
                TokenLocation::Header(name) if h.get_all(name.as_str()).iter().count() > 1 => {
                    return Some("token_header");
                }
                TokenLocation::Cookie(name) => {
                    let copies = h
                        .get_all(header::COOKIE)
                        .iter()
                        .filter_map(|v| v.to_str().ok())
                        .flat_map(|v| v.split(';'))
                        .filter(|pair| pair.trim().split('=').next() == Some(name.as_str()))
                        .count();
                    if copies > 1 {
                        return Some("token_cookie");
                    }
                }
                TokenLocation::Query(name) if query_count(name) > 1 => {
                    return Some("token_query");
                }
                _ => {}
            }
        }
        let bearer = h
            .get(header::AUTHORIZATION)
            .and_then(|v| v.as_bytes().get(..7))
            .is_some_and(|p| p.eq_ignore_ascii_case(b"bearer "));
        if reads_bearer && bearer {
            let facts = self.request_facts();
            let in_body =
                extract::request_token(&TokenLocation::Form("access_token".into()), &facts)
                    .or_else(|| {
                        extract::request_token(
                            &TokenLocation::RequestBody("/access_token".into()),
                            &facts,
                        )
                    });
            if query_count("access_token") > 0 || in_body.is_some() {
                return Some("bearer_and_access_token");
            }
        }
        None
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
        let mut ev = extract::build_event(&m, &cfg.redactor, &req_facts, &resp_facts, &seen, base);
        for (k, v) in &self.notes {
            let mut v = v.clone();
            // The target as sent is stored like `http.path`: secret-named values masked.
            if let Some(p) = v.get_mut("path") {
                let masked = extract::stored_path(&m, &cfg.redactor, p.as_str().unwrap_or(""));
                *p = serde_json::Value::String(masked);
            }
            ev.details.insert(k.clone(), v);
        }
        Some(ev)
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
