//! The reverse proxy: accept client connections, classify each request, forward it to the
//! upstream, and — for mapped routes — hand the finished exchange to the pipeline as an event.
//!
//! Unmapped requests take the short path: forwarded and streamed back untouched, only counted —
//! with the names their exchange shows (status class, body keys, cookies set; never values),
//! read from bounded copies once the response has ended (`coverage`).
//! Mapped requests stream too; at most `inspect_limit` bytes of each body are copied aside, and
//! the event is built when the response body ends (or breaks off). The proxy never imports the
//! store: events leave through [`Pipeline::submit`], which never waits.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Request, Response, StatusCode, Uri, Version};
use hyper::body::Incoming;
use uuid::Uuid;

use crate::classify::extract::{
    self, EventBase, Failure, ParsedBody, RequestFacts, ResponseFacts, SeenToken,
};
use crate::classify::inspect::Uninspectable;
use crate::classify::{
    self, Delivery, Match, PathPolicy, RequestHead, Route, RouteMap, Routing, TokenLocation,
};
use crate::config::Config;
use crate::event::{self, AuditEvent, ClientInfo, Outcome, Stage};
use crate::identity::lineage::{Issuance, LineageIndex};
use crate::identity::require::{self, Decision, Mode, Requirement};
use crate::metrics::RouteMetrics;
use crate::pipeline::Pipeline;
use tokio_util::task::TaskTracker;

pub mod body;
pub mod coverage;
pub mod live;
pub mod server;
pub mod upstream;

use body::{BodyEnd, Capture, ProxyBody};
use coverage::Coverage;

/// Longest user agent kept on an event, in characters.
const MAX_USER_AGENT: usize = 256;

/// Everything a request needs, shared by all connections.
pub struct Proxy {
    pub(crate) cfg: Arc<Config>,
    upstream: upstream::Pool,
    pipeline: Pipeline,
    coverage: Arc<Coverage>,
    /// `http://host:port`: a request target that is not a plain path is checked against it.
    upstream_base: String,
    /// Request counters and latency histograms, registered per route of this map.
    metrics: crate::metrics::ProxyMetrics,
    /// Who each issued token, code and session cookie was issued to (kept across reloads).
    lineage: Arc<LineageIndex>,
    /// The mapped exchanges that run on to their event after their clients hung up (shared
    /// across reloads; the shutdown drain waits for them): see [`Proxy::complete`].
    exchanges: TaskTracker,
}

impl Proxy {
    pub fn new(
        cfg: Arc<Config>,
        pipeline: Pipeline,
        coverage: Arc<Coverage>,
        lineage: Arc<LineageIndex>,
        exchanges: TaskTracker,
    ) -> Proxy {
        // An http:// upstream never uses the TLS config; an https:// one gets its roots and
        // optional client certificate from `upstream_tls`.
        let upstream = upstream::Pool::new(
            &cfg.upstream,
            cfg.upstream_tls.clone(),
            cfg.timeouts.upstream_connect,
            cfg.timeouts.idle,
        );
        let upstream_base = format!(
            "{}://{}",
            cfg.upstream.scheme_str().unwrap_or("http"),
            cfg.upstream.authority().map_or("", |a| a.as_str())
        );
        let metrics = crate::metrics::ProxyMetrics::new(&cfg.routes);
        Proxy {
            cfg,
            upstream,
            pipeline,
            coverage,
            upstream_base,
            metrics,
            lineage,
            exchanges,
        }
    }

    pub fn coverage(&self) -> &Arc<Coverage> {
        &self.coverage
    }

    /// Serve one request from `peer`, in phases on one `Exchange`: **route** (one reading of
    /// the target, the upstream's) → **admit** (read the body's head, decide body conditions,
    /// open the exchange, refuse what cannot be checked) → **authorize** (the route's
    /// requirement, the sync attempt) → **forward** → **respond** (the event is built when the
    /// response body ends). An unmapped request leaves after route or admit and is only
    /// forwarded.
    pub async fn handle(
        self: Arc<Self>,
        req: Request<Incoming>,
        peer: SocketAddr,
    ) -> Response<ProxyBody> {
        let _in_flight = crate::metrics::InFlight::enter();
        match self.phases(req, peer).await {
            Ok(resp) | Err(resp) => resp,
        }
    }

    async fn phases(
        self: Arc<Self>,
        req: Request<Incoming>,
        peer: SocketAddr,
    ) -> Step<Response<ProxyBody>> {
        let (mut parts, body) = req.into_parts();
        let arrival = Arrival::new(&mut parts, peer, &self.cfg.request_id_header);
        let Some(routed) = self.route(&mut parts, &arrival).await? else {
            let watch = Watch::stream(&self.coverage, &parts, &body);
            let body = match &watch {
                // A bounded copy of the request body for its shape's evidence, read after the
                // exchange; the body streams on untouched.
                Some(Watch {
                    request: RequestCopy::Tee(capture),
                    ..
                }) => ProxyBody::tee(body, capture.clone(), None),
                _ => ProxyBody::Stream(body),
            };
            return Ok(self.forward_unmapped(parts, body, &arrival, watch).await);
        };
        // Boxed: the mapped phases' state is several KB, and an unmapped request's future (moved
        // into its box by the connection's service) would otherwise be as big.
        Box::pin(self.mapped(parts, body, routed, arrival, peer)).await
    }

    /// The phases of a request a route matched: admit, authorize, forward and respond.
    async fn mapped(
        self: Arc<Self>,
        parts: http::request::Parts,
        body: Incoming,
        routed: Routed,
        arrival: Arrival,
        peer: SocketAddr,
    ) -> Step<Response<ProxyBody>> {
        let (exchange, body) = match self.admit(&parts, body, routed, arrival).await? {
            Admission::Mapped(exchange, body) => (exchange, body),
            Admission::Unmapped(body, arrival, watch) => {
                return Ok(self.forward_unmapped(parts, body, &arrival, watch).await);
            }
        };
        let exchange = exchange.authorize().await?;
        let Some(upstream_req) = self.upstream_request(parts, body, peer) else {
            let resp = self.invalid_target(&exchange.request_id);
            exchange.refuse(StatusCode::BAD_REQUEST, Outcome::Failure, "invalid_target");
            return Err(resp);
        };
        Ok(self.complete(exchange, upstream_req).await)
    }

    /// Forward and respond, never cancelled by the client: once the upstream may act on a
    /// request, its exchange runs to its event whether or not the client stays. (hyper drops a
    /// request's future when its connection closes; a login the upstream carried out for a
    /// client that hung up would otherwise leave no event.) Dropped unfinished, the work moves
    /// into a task of its own ([`Detached`]); the event of an exchange whose client went away
    /// has the upstream's answer, with as much of the response body as `inspect_limit` keeps,
    /// and the reason `client_aborted`.
    async fn complete(
        self: Arc<Self>,
        mut exchange: Exchange,
        upstream_req: Request<ProxyBody>,
    ) -> Response<ProxyBody> {
        exchange.forwarded = true;
        let tracker = self.exchanges.clone();
        let within = self.cfg.timeouts.upstream_response;
        let most = self.cfg.max_connections;
        let work = Box::pin(async move {
            let upstream = self
                .forward(
                    upstream_req,
                    self.metrics.route(exchange.index),
                    Some(exchange.start),
                    Some(exchange.route.id.as_str()),
                    &exchange.request_id,
                )
                .await;
            exchange.respond(upstream)
        });
        Detached {
            work: Some(work),
            tracker,
            within,
            most,
        }
        .await
    }

    /// Route: read the target as the upstream will, so that a request an upstream may read as
    /// a mapped route never passes as unmapped (`None`). An ambiguous target is refused, or
    /// rewritten to the canonical form of the route it resembles, as that route's
    /// `path_policy` says.
    async fn route(
        self: &Arc<Self>,
        parts: &mut http::request::Parts,
        arrival: &Arrival,
    ) -> Step<Option<Routed>> {
        let routing = classify::route_request(
            &self.cfg.routes,
            &RequestHead::from_parts(parts),
            &parts.headers,
            parts.uri.query(),
        );
        let a = match routing {
            // Counted by the caller, which forwards it.
            Routing::Unmapped => return Ok(None),
            Routing::Mapped(m) => return Ok(Some(Routed::new(&self.cfg.routes, m))),
            Routing::Ambiguous(a) => a,
        };
        let variant = a.label();
        let mut resembles = Routed::new(&self.cfg.routes, a.resembles.clone());
        match self.cfg.routes.policy_for(a.resembles.route) {
            PathPolicy::Reject => {
                let (body, truncated) = (Bytes::new(), false);
                let admitting = Admitting::new();
                // Boxed, as the mapped phases are: a rare path that would size every request's
                // future.
                let mut exchange =
                    Box::pin(self.open(parts, resembles, body, truncated, arrival.clone())).await;
                admitting.done();
                let notes = &mut exchange.notes;
                notes.insert("variant".into(), variant.clone().into());
                notes.insert("resembles".into(), a.resembles.route.id.clone().into());
                if let Some(p) = &a.primary {
                    notes.insert("primary_route".into(), p.route.id.clone().into());
                }
                tracing::warn!(route = %a.resembles.route.id, variant = %variant, request_id = %exchange.request_id, "ambiguous request target refused");
                Err(exchange.reject(
                    "request.rejected",
                    "ambiguous_path",
                    StatusCode::BAD_REQUEST,
                    "the request target can be read as a different route; send it in its canonical form",
                ))
            }
            PathPolicy::Normalize => {
                resembles.notes.insert(
                    "normalized".into(),
                    serde_json::json!({
                        "variant": variant,
                        "method": parts.method.as_str(),
                        "path": parts.uri.path(),
                    }),
                );
                if normalize_target(parts, &a).is_none() {
                    return Err(self.invalid_target(&arrival.request_id));
                }
                Ok(Some(resembles))
            }
        }
    }

    /// Admit: read the body's head (up to `inspect_limit`, within `timeouts.body_read`), decide
    /// the route's body conditions on it, and open the exchange; refuse a body that was not
    /// sent, one an enforcing route's conditions cannot be checked on, and conflicting
    /// credentials. A body no route's conditions hold for leaves as unmapped.
    async fn admit(
        self: &Arc<Self>,
        parts: &http::request::Parts,
        body: Incoming,
        routed: Routed,
        arrival: Arrival,
    ) -> Step<Admission> {
        let limit = self.cfg.inspect_limit;
        let admitting = Admitting::new();
        let head = body::read_head_within(body, limit, self.cfg.timeouts.body_read).await;
        // Over the limit however the bytes arrived: one write or many, ended or not.
        let truncated = head.truncated || head.bytes.len() > limit;
        let (routed, uninspectable) = if routed.route.body.is_empty() || head.failed {
            (routed, None)
        } else {
            match self.match_body(parts, head.inspected(limit), truncated, routed) {
                Some(decided) => decided,
                None => {
                    // Read in full, and no route's conditions hold: truly unmapped.
                    admitting.done();
                    let watch = Watch::head(&self.coverage, parts, &head.bytes);
                    return Ok(Admission::Unmapped(head.into_body(), arrival, watch));
                }
            }
        };
        self.coverage.record_route(&routed.route.id);
        self.metrics.route(routed.index).request();
        let inspected = head.bytes.slice(..head.bytes.len().min(limit));
        let exchange = self
            .open(parts, routed, inspected, truncated, arrival)
            .await;
        // From here the exchange's own drop guard answers for it.
        admitting.done();
        let exchange = exchange.check_admission(&head, uninspectable)?;
        Ok(Admission::Mapped(exchange, head.into_body()))
    }

    /// The route whose body conditions hold for `bytes` (`None`: no route's do). When the body
    /// cannot be inspected the request still belongs to its method and path: the route the
    /// readable part of the body points to (else the most specific) takes it, flagged with
    /// every route it may be, and the reason is returned when any candidate enforces.
    fn match_body(
        &self,
        parts: &http::request::Parts,
        bytes: &[u8],
        truncated: bool,
        mut routed: Routed,
    ) -> Option<(Routed, Option<Uninspectable>)> {
        let rhead = RequestHead::from_parts(parts);
        let why = match classify::inspect::inspectable(&parts.headers, bytes, truncated) {
            Ok(()) => {
                let view = classify::BodyView {
                    headers: &parts.headers,
                    bytes,
                    truncated,
                };
                let m = classify::classify_body(&self.cfg.routes, &rhead, &view)?;
                return Some((routed.rematch(&self.cfg.routes, m), None));
            }
            Err(why) => why,
        };
        let candidates = classify::head_candidates(&self.cfg.routes, &rhead);
        if let Some(m) = classify::inspect::best_effort(&candidates, &parts.headers, bytes) {
            routed = routed.rematch(&self.cfg.routes, m.clone());
        }
        let unchecked: Vec<String> = candidates
            .iter()
            .flat_map(|m| m.route.body.iter())
            .map(|(ptr, allowed)| format!("{ptr} = {}", allowed.join("|")))
            .collect();
        let ids: Vec<&str> = candidates.iter().map(|m| m.route.id.as_str()).collect();
        routed.notes.insert(
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
        Some((routed, enforcing.then_some(why)))
    }

    /// The exchange of a mapped request, with its queue place reserved and its presented
    /// tokens inspected. When the writer is behind, the request waits here (up to
    /// `store.queue_wait`) instead of its event being dropped later; the upstream has not seen
    /// it yet.
    async fn open(
        self: &Arc<Self>,
        parts: &http::request::Parts,
        routed: Routed,
        req_body: Bytes,
        req_truncated: bool,
        arrival: Arrival,
    ) -> Exchange {
        let slot = self.pipeline.reserve(self.cfg.store.queue_wait).await;
        let mut exchange = Exchange {
            proxy: self.clone(),
            slot,
            route: routed.route,
            index: routed.index,
            params: routed.params,
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
            notes: routed.notes,
            start: arrival.start,
            time: arrival.time,
            request_id: arrival.request_id,
            peer: arrival.peer,
            settled: false,
            forwarded: false,
        };
        exchange.seen = exchange.presented_tokens().await;
        exchange
    }

    /// Forward: send `upstream_req` within `timeouts.upstream_response`, timed and counted in
    /// `metrics` (with the sidecar's own share of the time since `since`, for mapped requests).
    /// The upstream's response head comes back without its hop-by-hop headers and with the
    /// request id; a failure comes back with the 502 or 504 to answer.
    async fn forward(
        &self,
        upstream_req: Request<ProxyBody>,
        metrics: &RouteMetrics,
        since: Option<Instant>,
        route: Option<&str>,
        request_id: &str,
    ) -> Upstream {
        let rid = &self.cfg.request_id_header;
        let forwarded = Instant::now();
        let sent = tokio::time::timeout(
            self.cfg.timeouts.upstream_response,
            self.upstream.send(upstream_req),
        )
        .await;
        match sent {
            Ok(Ok(resp)) => {
                let waited = forwarded.elapsed();
                metrics.upstream(waited);
                metrics.response(resp.status().as_u16());
                if let Some(since) = since {
                    metrics.added(since.elapsed().saturating_sub(waited));
                }
                let (mut rparts, rbody) = resp.into_parts();
                strip_hop_by_hop(&mut rparts.headers);
                set_header(&mut rparts.headers, rid, request_id);
                Ok((rparts, rbody))
            }
            Ok(Err(e)) => {
                metrics.upstream_error(false);
                let failure = upstream_failure(&e);
                tracing::warn!(route, request_id = %request_id, reason = failure.reason(), error = %ErrorChain(&e), "upstream request failed");
                Err((failure, bad_gateway(failure, rid, request_id)))
            }
            Err(_) => {
                metrics.upstream_error(true);
                tracing::warn!(route, request_id = %request_id, "upstream timed out");
                let resp = error_response(
                    StatusCode::GATEWAY_TIMEOUT,
                    "gateway_timeout",
                    "upstream did not answer in time",
                    rid,
                    request_id,
                );
                Err((Failure::UpstreamTimeout, resp))
            }
        }
    }

    /// The short path of an unmapped request: forwarded and streamed back untouched, only
    /// counted. With a `watch` (its shape is tracked), the names its exchange shows are added to
    /// the shape's evidence once the response ends, from a bounded copy of each body.
    async fn forward_unmapped(
        &self,
        parts: http::request::Parts,
        body: ProxyBody,
        arrival: &Arrival,
        watch: Option<Watch>,
    ) -> Response<ProxyBody> {
        let request_id = &arrival.request_id;
        let Some(upstream_req) = self.upstream_request(parts, body, arrival.peer) else {
            return self.invalid_target(request_id);
        };
        let metrics = self.metrics.unmapped();
        metrics.request();
        match self
            .forward(upstream_req, metrics, None, None, request_id)
            .await
        {
            Ok((rparts, rbody)) => {
                let body = match watch {
                    Some(w) => w.respond(&self.coverage, &rparts, rbody),
                    None => ProxyBody::Stream(rbody),
                };
                Response::from_parts(rparts, body)
            }
            Err((_, resp)) => resp,
        }
    }

    /// The 400 of a request target that cannot be forwarded.
    fn invalid_target(&self, request_id: &str) -> Response<ProxyBody> {
        error_response(
            StatusCode::BAD_REQUEST,
            "bad_request",
            "invalid request target",
            &self.cfg.request_id_header,
            request_id,
        )
    }

    /// The upstream URI of a request: its path and query, in origin-form (the pool sends
    /// everything to the upstream's origin). A target that is not a plain path is read as if it
    /// followed the upstream's origin; `None` when that is not a valid URI.
    fn upstream_uri(&self, uri: &Uri) -> Option<Uri> {
        let pq = match uri.path_and_query() {
            Some(pq) if pq.as_str().starts_with('/') => pq.clone(),
            other => {
                let pq = other.map_or("/", |pq| pq.as_str());
                let absolute: Uri = format!("{}{}", self.upstream_base, pq).parse().ok()?;
                absolute.path_and_query()?.clone()
            }
        };
        let mut up = http::uri::Parts::default();
        up.path_and_query = Some(pq);
        Uri::from_parts(up).ok()
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
        let proto =
            HeaderValue::from_static(if parts.extensions.get::<server::Secure>().is_some() {
                "https"
            } else {
                "http"
            });
        let h = &mut parts.headers;
        // Only a trusted proxy's chain is passed on; anyone else's is replaced, so the upstream
        // never sees an address a client made up.
        let trusted = self.cfg.identity.trusted.contains(peer.ip());
        let chain = forwarded_for(trusted.then(|| h.get_all(&X_FORWARDED_FOR)), peer.ip());
        if let Some(chain) = chain {
            h.insert(X_FORWARDED_FOR, chain);
        }
        h.insert(X_FORWARDED_PROTO, proto);
        if let Some(host) = original_host {
            h.insert(X_FORWARDED_HOST, host.clone());
            h.insert(header::HOST, host);
        }
        Some(Request::from_parts(parts, body))
    }
}

/// What a phase that ends the exchange early answers with (`Err`: a refusal, an error); `Ok`
/// goes on to the next phase.
type Step<T> = Result<T, Response<ProxyBody>>;

/// The forward-and-respond of a mapped exchange ([`Proxy::complete`]). Polled to its end in
/// the request's own future, as any other; dropped before that (the client hung up), it moves
/// its work, boxed so it can move, into a task of its own (tracked for the shutdown drain), where
/// the response it makes is read for the event alone ([`ProxyBody::abandon`]). Only an
/// abandoned exchange pays for a task. At most `max_connections` run at once: clients that
/// connect, send and hang up cannot hold more upstream requests open than connections could;
/// past that the work is dropped, and its exchange records `client_aborted` without a status,
/// marked `forwarded`.
struct Detached {
    work: Option<Pin<Box<dyn Future<Output = Response<ProxyBody>> + Send>>>,
    tracker: TaskTracker,
    /// How long an abandoned response's body is read for.
    within: Duration,
    /// The most abandoned exchanges followed at once (`max_connections`).
    most: usize,
}

impl Future for Detached {
    type Output = Response<ProxyBody>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Response<ProxyBody>> {
        let Some(work) = self.work.as_mut() else {
            return Poll::Pending;
        };
        let resp = std::task::ready!(work.as_mut().poll(cx));
        self.work = None;
        Poll::Ready(resp)
    }
}

impl Drop for Detached {
    fn drop(&mut self) {
        let Some(work) = self.work.take() else {
            return;
        };
        // Outside a runtime (it is shutting down) the work is dropped: its exchange then records
        // `client_aborted` without a status as it goes.
        if self.tracker.len() >= self.most {
            crate::metrics::abandoned("unfollowed");
            tracing::warn!(
                most = self.most,
                "abandoned exchanges at their limit: one recorded without the upstream's answer"
            );
            return;
        }
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            crate::metrics::abandoned("followed");
            let within = self.within;
            let abandoned = async move { work.await.into_body().abandon(within).await };
            self.tracker.spawn_on(abandoned, &rt);
        } else {
            crate::metrics::abandoned("unfollowed");
        }
    }
}

/// What the upstream gave back: its response head (hop-by-hop headers stripped, request id set)
/// and body, or why there is none and the 502 or 504 to answer.
type Upstream = Result<(http::response::Parts, Incoming), (Failure, Response<ProxyBody>)>;

/// When and from where a request arrived, and its id.
#[derive(Clone)]
struct Arrival {
    start: Instant,
    time: time::OffsetDateTime,
    request_id: String,
    peer: SocketAddr,
}

impl Arrival {
    /// Now, from `peer`; the request id is the client's sane one, else a new one set on `parts`.
    fn new(parts: &mut http::request::Parts, peer: SocketAddr, rid_header: &HeaderName) -> Arrival {
        let start = Instant::now();
        let time = event::now_millis();
        let request_id = ensure_request_id(&mut parts.headers, rid_header);
        Arrival {
            start,
            time,
            request_id,
            peer,
        }
    }
}

/// The route a mapped request is served under, as the route phase (and then the body's
/// conditions) decided it.
struct Routed {
    route: Arc<Route>,
    /// Position of the route in the map (its metrics, its [`Match`]).
    index: usize,
    params: Vec<(String, String)>,
    /// Facts of how the proxy read the request (`normalized`, `body_uninspected`), for the
    /// event's details.
    notes: serde_json::Map<String, serde_json::Value>,
}

impl Routed {
    fn new(map: &RouteMap, m: Match<'_>) -> Routed {
        Routed {
            route: map.routes[m.index].clone(),
            index: m.index,
            params: m.params,
            notes: serde_json::Map::new(),
        }
    }

    /// The same request under the route its body points to; the notes so far are kept.
    fn rematch(self, map: &RouteMap, m: Match<'_>) -> Routed {
        Routed {
            notes: self.notes,
            ..Routed::new(map, m)
        }
    }
}

/// A mapped request between its head and its exchange (its body's head being read, a queue
/// place awaited). Dropped there — hyper drops the request's future when its client hangs up —
/// it is counted (`authtrail_exchanges_abandoned_total{when="before_admission"}`) and has no
/// event: it was never forwarded, its body may be partial, and a request waiting for a queue
/// place has none for its event.
struct Admitting(bool);

impl Admitting {
    fn new() -> Admitting {
        Admitting(true)
    }

    fn done(mut self) {
        self.0 = false;
    }
}

impl Drop for Admitting {
    fn drop(&mut self) {
        if self.0 {
            crate::metrics::abandoned("before_admission");
        }
    }
}

/// How the admit phase lets a request on.
// Returned once per request and taken apart at once, like the exchange it carries: boxing
// would only add an allocation.
#[allow(clippy::large_enum_variant)]
enum Admission {
    /// As a mapped exchange, with the whole body to forward.
    Mapped(Exchange, ProxyBody),
    /// As unmapped: no route's body conditions hold.
    Unmapped(ProxyBody, Arrival, Option<Watch>),
}

/// An unmapped request whose shape coverage tracks: where the names of its exchange come from.
struct Watch {
    key: coverage::ShapeKey,
    family: coverage::Family,
    request: RequestCopy,
    /// Whether the bodies' names are read: not for reads (`GET`, `HEAD`), whose answers are
    /// where maps keyed by user names live and which are no auth action to draft a route for;
    /// for a shape whose bodies have shown nothing new for a while, only for one exchange in
    /// several ([`coverage::ShapeKey::bodies`]).
    bodies: bool,
}

/// The request body's bounded copy, for its names.
enum RequestCopy {
    /// Nothing to read (no body, or not JSON or a form).
    None,
    /// The head the proxy read before deciding the request is unmapped.
    Head(Bytes),
    /// Kept while the body streams to the upstream.
    Tee(Capture),
}

impl Watch {
    /// Count an unmapped request whose body has not been read; `None` past the shape limit.
    fn stream(coverage: &Coverage, parts: &http::request::Parts, body: &Incoming) -> Option<Watch> {
        use http_body::Body as _;
        let key = coverage.record(&parts.method, parts.uri.path())?;
        let family = coverage::Family::of(&parts.headers, !body.is_end_stream());
        let bodies = key.bodies && coverage::reads_bodies(&parts.method);
        let request = if bodies && family.readable() {
            RequestCopy::Tee(Capture::new(coverage::INSPECT_BUDGET))
        } else {
            RequestCopy::None
        };
        Some(Watch {
            key,
            family,
            request,
            bodies,
        })
    }

    /// Count an unmapped request whose body's head was read (`head`).
    fn head(coverage: &Coverage, parts: &http::request::Parts, head: &Bytes) -> Option<Watch> {
        let key = coverage.record(&parts.method, parts.uri.path())?;
        let family = coverage::Family::of(&parts.headers, !head.is_empty());
        let bodies = key.bodies && coverage::reads_bodies(&parts.method);
        let request = if bodies && family.readable() {
            RequestCopy::Head(Bytes::copy_from_slice(
                &head[..head.len().min(coverage::INSPECT_BUDGET)],
            ))
        } else {
            RequestCopy::None
        };
        Some(Watch {
            key,
            family,
            request,
            bodies,
        })
    }

    /// The response body to stream back: a JSON one teed into a bounded copy. The names of the
    /// head are taken now (no header value is kept); both bodies are read once the response
    /// ends, on a task of their own, so the client's stream never waits for the reading.
    fn respond(
        self,
        coverage: &Arc<Coverage>,
        rparts: &http::response::Parts,
        rbody: Incoming,
    ) -> ProxyBody {
        let sighting =
            coverage::Sighting::new(rparts.status.as_u16(), self.family, &rparts.headers);
        let coverage = coverage.clone();
        if self.bodies && coverage::json_response(&rparts.headers) {
            let capture = Capture::new(coverage::INSPECT_BUDGET);
            let copy = capture.clone();
            let finish: body::Finisher = Box::new(move |_| {
                let response = copy.take().bytes.freeze();
                self.observe(coverage, sighting, response);
            });
            ProxyBody::tee(rbody, capture, Some(finish))
        } else {
            self.observe(coverage, sighting, Bytes::new());
            ProxyBody::Stream(rbody)
        }
    }

    /// Read the bodies' names into the shape's evidence, off the client's path (when there is
    /// a body to read; the head's counts alone are added at once).
    fn observe(self, coverage: Arc<Coverage>, mut sighting: coverage::Sighting, response: Bytes) {
        if matches!(self.request, RequestCopy::None) && response.is_empty() {
            coverage.observe(&self.key, sighting);
            return;
        }
        let read = move || {
            let request = match self.request {
                RequestCopy::None => Bytes::new(),
                RequestCopy::Head(b) => b,
                RequestCopy::Tee(c) => c.take().bytes.freeze(),
            };
            sighting.request_body(request);
            sighting.response_body(response);
            coverage.observe(&self.key, sighting);
        };
        match tokio::runtime::Handle::try_current() {
            Ok(rt) => {
                rt.spawn(async move { read() });
            }
            Err(_) => read(),
        }
    }
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

/// A mapped exchange: its route, the request as it arrived, what was learnt of it so far; it
/// goes through the phases from admission until its response body ends, and its event is
/// built last.
struct Exchange {
    proxy: Arc<Proxy>,
    /// The queue place reserved for this exchange's event (`None`: the queue stayed full for
    /// `store.queue_wait`, or the pipeline is shutting down; the event may then be dropped).
    slot: Option<crate::pipeline::Slot>,
    route: Arc<Route>,
    /// Position of the route in the map.
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
    /// Its event was built, or it was refused with an event of its own (`access.denied`):
    /// dropped before that, it records one (see the `Drop` impl).
    settled: bool,
    /// Handed to the upstream ([`Proxy::complete`]).
    forwarded: bool,
}

/// An exchange dropped before it settled was abandoned before it reached the upstream: hyper
/// dropped the request when its client hung up while the request waited here (for a key set,
/// a lineage lookup, a `sync` attempt's commit). Its event says so (`client_aborted`, no
/// status), so every admitted mapped request has one, and a `sync` attempt its completion.
/// (Also dropped unsettled: a forwarded exchange whose client hung up when the sidecar already
/// followed `max_connections` such exchanges, see [`Detached`]; its event is marked
/// `details.forwarded`.)
impl Drop for Exchange {
    fn drop(&mut self) {
        if !self.settled {
            if self.forwarded {
                // Forwarded, then given up unanswered: too many abandoned exchanges at once
                // (counted where that was decided).
                self.notes.insert("forwarded".into(), true.into());
            } else {
                crate::metrics::abandoned("before_forwarding");
            }
            let empty = Capture::new(0);
            self.record(None, None, &empty, Some(Failure::ClientAborted));
        }
    }
}

impl Exchange {
    fn request_facts(&self) -> RequestFacts<'_> {
        RequestFacts {
            method: &self.request.method,
            path: &self.request.path,
            query: self.request.query.as_deref(),
            headers: &self.request.headers,
            body: &self.req_body,
            body_truncated: self.req_truncated,
            parsed: &self.req_parsed,
            cookies: &[],
        }
    }

    /// Inspect every token the route reads from the request; may wait for a JWKS refresh.
    async fn presented_tokens(&self) -> Vec<SeenToken> {
        let cfg = &self.proxy.cfg;
        let facts = self.request_facts();
        let mut seen = Vec::new();
        for (location, keys) in self.route.token_reads() {
            if location.is_issued() {
                continue;
            }
            if let Some(raw) = extract::request_token(location, &facts) {
                let checked = cfg.identity.check(&raw, keys.as_deref()).await;
                seen.push(SeenToken::new(location.clone(), keys.clone(), checked));
            }
        }
        // Session cookies: fingerprinted, never parsed or verified.
        for name in &self.route.session.cookies {
            if let Some(raw) = extract::request_cookie(&self.request.headers, name) {
                let location = TokenLocation::Cookie(name.clone());
                seen.retain(|s| s.location != location);
                let mut t = SeenToken::new(location, None, cfg.identity.opaque(raw));
                t.session = true;
                seen.push(t);
            }
        }
        // Who each token that does not prove itself was issued to.
        // Once per fingerprint: a token read from two places is one lookup.
        let now = self.time.unix_timestamp();
        let mut done: Vec<(String, bool, crate::identity::lineage::Lineage)> = Vec::new();
        for t in seen.iter_mut().filter(|t| t.wants_lineage()) {
            let fp = &t.checked.fingerprint;
            let found = match done.iter().find(|(f, s, _)| f == fp && *s == t.session) {
                Some((_, _, l)) => l.clone(),
                None => {
                    let l = self.proxy.lineage.lookup(fp, t.session, now).await;
                    done.push((fp.clone(), t.session, l.clone()));
                    l
                }
            };
            t.lineage = Some(found);
        }
        seen
    }

    /// The admit phase's refusals, once the exchange is open: a body that was not sent (in
    /// time), a body an enforcing route's conditions could not be checked on (`uninspectable`),
    /// more than one credential.
    // The `Err` is the response itself, moved once to the client: boxing would only allocate.
    #[allow(clippy::result_large_err)]
    fn check_admission(
        mut self,
        head: &body::Head,
        uninspectable: Option<Uninspectable>,
    ) -> Step<Exchange> {
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
            let resp = self.error_response(status, code, msg);
            self.finish_without_response(failure);
            return Err(resp);
        }
        if let Some(why) = uninspectable {
            tracing::warn!(route = %self.route.id, why = why.as_str(), request_id = %self.request_id, "body-conditioned route refused: body not inspectable");
            return Err(self.reject(
                "access.denied",
                "body_uninspected",
                why.status(),
                why.message(),
            ));
        }
        // Never check one credential and forward another.
        if let Some(why) = self.duplicate_credentials() {
            self.notes
                .insert("duplicate".into(), serde_json::Value::String(why.into()));
            tracing::warn!(route = %self.route.id, duplicate = why, request_id = %self.request_id, "request with conflicting credentials refused");
            return Err(self.reject(
                "request.rejected",
                "duplicate_credentials",
                StatusCode::BAD_REQUEST,
                "the request carries more than one credential; send exactly one",
            ));
        }
        Ok(self)
    }

    /// Authorize: a route that requires a verified token is decided here, before the upstream
    /// (or the sync attempt) sees anything; then, failing closed, a sync route's attempt event
    /// is committed before the upstream sees anything.
    async fn authorize(mut self) -> Step<Exchange> {
        if let Some(requirement) = &self.route.require {
            if let Some(resp) = self.check_requirement(requirement) {
                // Its `access.denied` event is the exchange's.
                self.settled = true;
                return Err(resp);
            }
        }
        if self.route.delivery == Delivery::Sync && !self.commit_attempt().await {
            let resp = self.error_response(
                StatusCode::SERVICE_UNAVAILABLE,
                "audit_unavailable",
                "the audit trail could not record this request, so it was not forwarded",
            );
            let status = StatusCode::SERVICE_UNAVAILABLE;
            self.refuse(status, Outcome::Error, "audit_unavailable");
            return Err(resp);
        }
        Ok(self)
    }

    /// Respond: stream the upstream's response back, a copy of up to `inspect_limit` bytes of
    /// its body set aside; the event is built when the body ends (or breaks off). Without a
    /// response the event records why, and the client gets the 502 or 504.
    fn respond(self, upstream: Upstream) -> Response<ProxyBody> {
        let (rparts, rbody) = match upstream {
            Ok(head) => head,
            Err((failure, resp)) => {
                self.finish_without_response(failure);
                return resp;
            }
        };
        let resp_capture = Capture::new(self.proxy.cfg.inspect_limit);
        let status = rparts.status;
        let resp_headers = rparts.headers.clone();
        let cap = resp_capture.clone();
        let finish: body::Finisher =
            Box::new(move |how| self.finish(Some(status), Some(resp_headers), &cap, how));
        Response::from_parts(rparts, ProxyBody::tee(rbody, resp_capture, Some(finish)))
    }

    /// The small JSON error body, with this exchange's request id.
    fn error_response(&self, status: StatusCode, code: &str, message: &str) -> Response<ProxyBody> {
        let rid_header = &self.proxy.cfg.request_id_header;
        error_response(status, code, message, rid_header, &self.request_id)
    }

    fn finish_without_response(mut self, failure: Failure) {
        let empty = Capture::new(0);
        self.record(None, None, &empty, Some(failure));
    }

    fn finish(
        mut self,
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
        let mut ev = self.event(None, None, &Capture::new(0), None);
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
    fn check_requirement(&self, requirement: &Requirement) -> Option<Response<ProxyBody>> {
        let token = self
            .seen
            .iter()
            .find(|t| t.location == requirement.token && t.keys == requirement.keys)
            .map(|t| &t.checked);
        let headers = &self.request.headers;
        let decision = require::evaluate(requirement, token, &self.params, headers);
        let (kind, denial) = match (&decision, requirement.mode) {
            (Decision::Allow, _) => return None,
            (Decision::AllowFlagged { reason }, _) => {
                self.record_access("access.would_deny", requirement, reason, None, token);
                return None;
            }
            (Decision::Deny(d), Mode::Observe) => ("access.would_deny", d),
            (Decision::Deny(d), Mode::Enforce) => ("access.denied", d),
        };
        let status = StatusCode::from_u16(denial.status).unwrap_or(StatusCode::FORBIDDEN);
        self.record_access(kind, requirement, &denial.reason, Some(status), token);
        if requirement.mode == Mode::Observe {
            return None;
        }
        let code = denial.error.unwrap_or("unauthorized");
        let mut resp = self.error_response(status, code, &denial.description);
        if let Some(v) = denial
            .www_authenticate(requirement)
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
        requirement: &Requirement,
        reason: &str,
        status: Option<StatusCode>,
        token: Option<&crate::identity::CheckedToken>,
    ) {
        let mut ev = self.event(status, None, &Capture::new(0), None);
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
                ev.actor.source = Some(format!("claim:sub@{}", requirement.token.label()));
            }
        }
        ev.details.insert(
            "requirement".into(),
            serde_json::Value::String(requirement.name.clone()),
        );
        ev.details.insert(
            "mode".into(),
            serde_json::Value::String(requirement.mode.as_str().into()),
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
        self.settled = true;
        let mut ev = self.event(Some(status), None, &Capture::new(0), None);
        ev.event_type = kind.to_string();
        ev.outcome = Outcome::Failure;
        ev.reason = Some(reason.to_string());
        self.proxy.pipeline.submit_reserved(ev, self.slot.take());
        let code = match reason {
            "ambiguous_path" => "ambiguous_path",
            "body_uninspected" => "body_uninspected",
            _ => "invalid_request",
        };
        self.error_response(status, code, message)
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
        let query_count = |name: &str| {
            self.request.query.as_deref().map_or(0, |q| {
                form_urlencoded::parse(q.as_bytes())
                    .filter(|(k, _)| k == name)
                    .count()
            })
        };
        let mut reads_bearer = false;
        for (location, _) in self.route.token_reads() {
            match location {
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
        // The header a requirement checks the token's app against (`app_matches`): the upstream
        // may read another copy, or all of them joined.
        if let Some(r) = &self.route.require {
            if let Some(require::AppFrom::Header(name)) = &r.app_matches {
                if h.get_all(name.as_str()).iter().count() > 1 {
                    return Some("app_header");
                }
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

    /// Record that the request was refused with `status` before the upstream saw it: a sync
    /// route whose attempt was not committed (503 `audit_unavailable`), a target that cannot be
    /// forwarded (400 `invalid_target`).
    fn refuse(mut self, status: StatusCode, outcome: Outcome, reason: &str) {
        self.settled = true;
        let mut ev = self.event(Some(status), None, &Capture::new(0), None);
        ev.outcome = outcome;
        ev.reason = Some(reason.to_string());
        self.proxy.pipeline.submit_reserved(ev, self.slot.take());
    }

    fn record(
        &mut self,
        status: Option<StatusCode>,
        resp_headers: Option<&HeaderMap>,
        resp: &Capture,
        failure: Option<Failure>,
    ) {
        self.settled = true;
        let mut ev = self.event(status, resp_headers, resp, failure);
        self.learn(&mut ev);
        tracing::debug!(route = %ev.http.route, event = %ev.event_type, outcome = %ev.outcome, request_id = %ev.http.request_id, "audit event built");
        self.proxy.pipeline.submit_reserved(ev, self.slot.take());
    }

    /// Remember who what this event issued belongs to, and end the sessions a logout ended
    /// (marked on the event, so the store's answer agrees with memory after a restart).
    fn learn(&self, ev: &mut AuditEvent) {
        use crate::event::TokenRole;
        if ev.outcome != Outcome::Success {
            return;
        }
        let index = &self.proxy.lineage;
        for t in ev.tokens.iter().filter(|t| t.role == TokenRole::Issued) {
            if let Some(issuance) = Issuance::of(ev, t.exp) {
                index.remember(&t.fingerprint, issuance);
            }
        }
        // A session cookie presented unbound to an event that names its actor by other means
        // (a login that keeps the pre-login interaction cookie) is bound to that actor.
        let named_here = ev
            .actor
            .source
            .as_deref()
            .is_some_and(|s| !(s.starts_with("lineage:") || s.starts_with("session:")));
        if named_here && !self.route.session.ends {
            let mut bound = false;
            for t in self
                .seen
                .iter()
                .filter(|t| t.session && !t.location.is_issued())
            {
                // Bound already to someone: the login does not re-bind it.
                let named = matches!(
                    &t.lineage,
                    Some(crate::identity::lineage::Lineage::Found(i)) if i.actor.is_some()
                );
                if !named {
                    if let Some(issuance) = Issuance::of(ev, None) {
                        index.remember(&t.checked.fingerprint, issuance);
                        bound = true;
                    }
                }
            }
            if bound {
                ev.details
                    .insert("session_bound".into(), serde_json::Value::Bool(true));
            }
        }
        if self.route.session.ends {
            let mut ended = false;
            for t in &ev.tokens {
                if t.role == TokenRole::Presented && t.kind == "session" {
                    index.end(&t.fingerprint, ev.id);
                    ended = true;
                }
            }
            if ended {
                ev.details
                    .insert("session_ended".into(), serde_json::Value::Bool(true));
            }
        }
    }

    /// The event of this exchange as far as it is known.
    fn event(
        &self,
        status: Option<StatusCode>,
        resp_headers: Option<&HeaderMap>,
        resp: &Capture,
        failure: Option<Failure>,
    ) -> AuditEvent {
        let cfg = &self.proxy.cfg;
        let resp_cap = resp.take();
        let m = Match {
            route: &self.route,
            index: self.index,
            params: self.params.clone(),
        };
        let cookies = extract::cookie_prints(
            &self.route,
            &self.request.headers,
            cfg.identity.fingerprinter.as_ref(),
        );
        let req_facts = RequestFacts {
            cookies: &cookies,
            ..self.request_facts()
        };
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
        for (location, keys) in self.route.token_reads() {
            if !location.is_issued() {
                continue;
            }
            let Some((raw, expires)) = extract::issued_token(location, &resp_facts) else {
                continue;
            };
            let checked = cfg.identity.check_now(&raw, keys.as_deref());
            let mut t = SeenToken::new(location.clone(), keys.clone(), checked);
            t.expires = expires;
            seen.to_mut().push(t);
        }
        // Session cookies the response sets: fingerprinted, never parsed or verified.
        if let Some(headers) = resp_headers {
            let now = time::OffsetDateTime::now_utc();
            for name in &self.route.session.cookies {
                let Some((raw, expires)) = extract::set_cookie(headers, name, now) else {
                    continue;
                };
                let location = TokenLocation::SetCookie(name.clone());
                let mut t = SeenToken::new(location, None, cfg.identity.opaque(&raw));
                t.session = true;
                t.expires = expires;
                seen.to_mut().push(t);
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
        ev
    }
}

/// The `X-Forwarded-*` headers set on every forwarded request (parsed once, not per request).
const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");

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

/// `HOP_BY_HOP.contains(name)`, by the name's length first.
fn is_hop_by_hop(name: &HeaderName) -> bool {
    let s = name.as_str();
    match s.len() {
        2 => s == "te",
        7 => s == "trailer" || s == "upgrade",
        10 => s == "connection" || s == "keep-alive",
        16 => s == "proxy-connection",
        17 => s == "transfer-encoding",
        18 => s == "proxy-authenticate",
        19 => s == "proxy-authorization",
        _ => false,
    }
}

fn strip_hop_by_hop(h: &mut HeaderMap) {
    // Most messages carry none: one pass over the names present (compared, not hashed) instead
    // of a lookup per hop-by-hop name. `Connection` is one of them, so a message naming more
    // in it is never skipped.
    if !h.keys().any(is_hop_by_hop) {
        return;
    }
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

/// The `X-Forwarded-For` chain to send: the `prior` one's values (those that are text) with
/// `peer` appended, or `peer` alone when there is none (`None`: not a valid value).
fn forwarded_for(
    prior: Option<header::GetAll<'_, HeaderValue>>,
    peer: std::net::IpAddr,
) -> Option<HeaderValue> {
    let mut values = prior
        .into_iter()
        .flatten()
        .filter_map(|v| v.to_str().ok())
        .peekable();
    if values.peek().is_none() {
        return Some(peer_value(peer));
    }
    let mut chain = String::new();
    for v in values {
        chain.push_str(v);
        chain.push_str(", ");
    }
    chain.push_str(&peer.to_string());
    HeaderValue::from_str(&chain).ok()
}

/// `peer` as a header value. Requests come from few addresses (one load balancer, often), so
/// each thread keeps the last one made: most requests clone it instead of formatting one.
fn peer_value(peer: std::net::IpAddr) -> HeaderValue {
    thread_local! {
        static LAST: std::cell::RefCell<Option<(std::net::IpAddr, HeaderValue)>> =
            const { std::cell::RefCell::new(None) };
    }
    LAST.with_borrow_mut(|last| match last {
        Some((ip, value)) if *ip == peer => value.clone(),
        _ => {
            let value = HeaderValue::from_maybe_shared(Bytes::from(peer.to_string()))
                .expect("an IP address is a valid header value");
            *last = Some((peer, value.clone()));
            value
        }
    })
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
fn upstream_failure(e: &upstream::Error) -> Failure {
    use upstream::Error as E;
    match e {
        E::Resolve { .. }
        | E::NoAddress(_)
        | E::Connect { .. }
        | E::ConnectTimeout(_)
        | E::Tls { .. }
        | E::ServerName(_)
        | E::Handshake(_) => Failure::UpstreamUnreachable,
        // `is_parse` covers a bad status line, header or version and a head too large.
        E::Request(h) if h.is_parse() => Failure::UpstreamBadResponse,
        E::Request(_) => Failure::UpstreamUnreachable,
    }
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

/// An error with its sources, for the log: the outer message ("request to the upstream") does
/// not say what went wrong, its sources do ("connection closed before message completed").
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forwarded_for_appends_the_peer_to_a_trusted_chain_only() {
        let peer: std::net::IpAddr = "192.0.2.7".parse().unwrap();
        let v6: std::net::IpAddr = "2001:db8::1".parse().unwrap();
        let mut h = HeaderMap::new();
        let xff = HeaderName::from_static("x-forwarded-for");
        let chain = |h: &HeaderMap, trusted: bool, peer| {
            forwarded_for(trusted.then(|| h.get_all(&xff)), peer).unwrap()
        };
        assert_eq!(chain(&h, true, peer), "192.0.2.7");
        // The cached value follows the peer.
        assert_eq!(chain(&h, false, v6), "2001:db8::1");
        assert_eq!(chain(&h, false, peer), "192.0.2.7");
        h.append(&xff, HeaderValue::from_static("203.0.113.9"));
        h.append(&xff, HeaderValue::from_static("198.51.100.1, 10.0.0.1"));
        assert_eq!(
            chain(&h, true, peer),
            "203.0.113.9, 198.51.100.1, 10.0.0.1, 192.0.2.7"
        );
        assert_eq!(chain(&h, false, peer), "192.0.2.7");
        // Values that are not text are left out; with none left, the peer alone.
        let mut h = HeaderMap::new();
        h.append(&xff, HeaderValue::from_bytes(b"\xff").unwrap());
        assert_eq!(chain(&h, true, peer), "192.0.2.7");
        h.append(&xff, HeaderValue::from_static(""));
        assert_eq!(chain(&h, true, peer), ", 192.0.2.7");
    }

    #[test]
    fn every_hop_by_hop_header_is_stripped_alone_or_with_others() {
        let end_to_end = |h: &mut HeaderMap| {
            h.append(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
            h.append("x-keep", HeaderValue::from_static("1"));
        };
        fn kept(h: &HeaderMap) -> Vec<&str> {
            let mut names: Vec<&str> = h.keys().map(|k| k.as_str()).collect();
            names.sort_unstable();
            names
        }
        // The quick test is the list's.
        for name in &HOP_BY_HOP {
            assert!(is_hop_by_hop(name), "{name}");
        }
        for name in [
            header::CONTENT_TYPE,
            header::CONTENT_LENGTH,
            header::AUTHORIZATION,
            header::TRAILER,
            HeaderName::from_static("te2"),
            HeaderName::from_static("keep-alivf"),
            HeaderName::from_static("x-forwarded-for"),
            HeaderName::from_static("proxy-connectiom"),
        ] {
            assert_eq!(is_hop_by_hop(&name), HOP_BY_HOP.contains(&name), "{name}");
        }
        // None present: untouched.
        let mut h = HeaderMap::new();
        end_to_end(&mut h);
        strip_hop_by_hop(&mut h);
        assert_eq!(kept(&h), ["content-type", "x-keep"]);
        // Each alone, by any spelling hyper parses to the same name, with the others.
        for name in &HOP_BY_HOP {
            let mut h = HeaderMap::new();
            end_to_end(&mut h);
            let upper = name.as_str().to_ascii_uppercase();
            h.append(
                HeaderName::from_bytes(upper.as_bytes()).unwrap(),
                HeaderValue::from_static("x"),
            );
            strip_hop_by_hop(&mut h);
            assert_eq!(kept(&h), ["content-type", "x-keep"], "{name} was kept");
        }
        // What `Connection` names goes too; only with it.
        let mut h = HeaderMap::new();
        end_to_end(&mut h);
        h.append(
            header::CONNECTION,
            HeaderValue::from_static("x-keep , close"),
        );
        strip_hop_by_hop(&mut h);
        assert_eq!(kept(&h), ["content-type"]);
    }
}
