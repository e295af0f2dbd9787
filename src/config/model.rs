//! The YAML file as written: serde structs with `deny_unknown_fields`. Every field's `///` is its
//! user documentation (README's config reference follows it). Values with cross-field meaning are
//! kept `Spanned` so validation can point at them.

use serde::Deserialize;
use serde_saphyr::Spanned;

use super::types::{ByteSize, Duration, OneOrMany, Text};
use crate::classify::Source;

/// The whole config file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct File {
    /// Address the proxy listens on. Default `0.0.0.0:8080`.
    pub listen: Option<Spanned<Text>>,
    /// Base URL of the auth server this sidecar fronts, e.g. `http://127.0.0.1:9000`. Required.
    pub upstream: Spanned<Text>,
    /// How much of a mapped request's or response's body is inspected. Bodies stream through
    /// whole either way. Default `64KiB`.
    pub inspect_limit: Option<ByteSize>,
    /// Header carrying the request id; kept when the client sends one, else generated.
    /// Default `x-request-id`.
    pub request_id_header: Option<Spanned<Text>>,
    /// Most client connections served at once; more wait in the accept backlog. Default `10000`.
    pub max_connections: Option<usize>,
    #[serde(default)]
    pub timeouts: Timeouts,
    #[serde(default)]
    pub admin: Admin,
    #[serde(default)]
    pub store: Store,
    #[serde(default)]
    pub redact: Redact,
    #[serde(default)]
    pub defaults: Defaults,
    #[serde(default)]
    pub routes: Vec<Route>,
}

/// Proxy timeouts.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Timeouts {
    /// Time a client has to send the request head. Default `10s`.
    pub header_read: Option<Duration>,
    /// Time to open a connection to the upstream. Default `5s`.
    pub upstream_connect: Option<Duration>,
    /// Time for the upstream to start its response; then 504. Default `30s`.
    pub upstream_response: Option<Duration>,
    /// A client connection with no traffic for this long is closed. Default `60s`.
    pub idle: Option<Duration>,
    /// On SIGTERM, how long in-flight requests may take to finish. Default `20s`.
    pub shutdown_grace: Option<Duration>,
}

/// The admin listener (health, readiness; later the query API).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Admin {
    /// Default `127.0.0.1:9090`.
    pub listen: Option<Spanned<Text>>,
}

/// Where events are stored and how they get there.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Store {
    /// `sqlite://PATH` (created if missing). Default `sqlite://authtrail.db`.
    pub url: Option<Spanned<Text>>,
    /// Events that may wait for the writer; beyond it they are counted as dropped. Default `10000`.
    pub queue_capacity: Option<usize>,
    /// Most events written in one transaction. Default `256`.
    pub batch_size: Option<usize>,
    /// Longest an event waits for its batch to fill. Default `100ms`.
    pub flush_interval: Option<Duration>,
}

/// Extra secret field names, on top of the built-in list.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Redact {
    /// Field names (whole words, case-insensitive) never captured. Default empty.
    #[serde(default)]
    pub fields: Vec<Text>,
}

/// Sources used by routes that do not name their own.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Defaults {
    pub actor: Option<Spanned<OneOrMany<Source>>>,
    pub app: Option<Spanned<OneOrMany<Source>>>,
}

/// One entry of the route-to-event map.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Route {
    /// Unique id, stored on every event of the route.
    pub id: Spanned<Text>,
    #[serde(rename = "match")]
    pub matcher: Match,
    /// Event type: dotted lowercase words, e.g. `auth.login`.
    pub event: Spanned<Text>,
    #[serde(default)]
    pub outcome: Outcome,
    /// Ordered sources for the actor's id: the first that yields a value wins.
    pub actor: Option<Spanned<OneOrMany<Source>>>,
    /// Ordered sources for the app (tenant).
    pub app: Option<Spanned<OneOrMany<Source>>>,
    pub target: Option<Target>,
    /// Extra non-secret fields stored in `details`, by name.
    #[serde(default)]
    pub capture: indexmap_lite::OrderedMap<Spanned<OneOrMany<Source>>>,
    /// `async` (default): queued, never slows the response.
    pub delivery: Option<Spanned<Text>>,
}

/// Which requests a route takes.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Match {
    /// One method or a list; any method when absent.
    pub method: Option<Spanned<OneOrMany<Text>>>,
    /// Path template: `{name}` matches one segment, a final `*` the rest.
    pub path: Spanned<Text>,
    /// Host (without port); any host when absent.
    pub host: Option<Spanned<Text>>,
}

/// Outcome rules.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Outcome {
    /// Status codes or classes of a success. Default `[2xx, 3xx]`.
    pub success: Option<Spanned<Vec<Text>>>,
    /// Default `[4xx]`.
    pub failure: Option<Spanned<Vec<Text>>>,
    /// Default `[5xx]`.
    pub error: Option<Spanned<Vec<Text>>>,
    /// A success must also satisfy this response-body condition, else it is a failure.
    pub success_if: Option<BodyCondition>,
    /// JSON pointer into the response body giving the reason, e.g. `/error`.
    pub reason: Option<Spanned<Text>>,
}

/// `{ pointer: /ok, equals: true }`; without `equals` the value must exist and not be null.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BodyCondition {
    pub pointer: Spanned<Text>,
    pub equals: Option<serde_json::Value>,
}

/// `{ kind: user, from: { path: user_id } }`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Target {
    /// user, token, provider, org, app, ...
    pub kind: Spanned<Text>,
    pub from: Spanned<OneOrMany<Source>>,
    /// Optional sources for a display name.
    pub display: Option<Spanned<OneOrMany<Source>>>,
}

/// A tiny insertion-ordered map for `capture` (YAML order is the stored order).
pub mod indexmap_lite {
    use std::fmt;

    use serde::de::{Deserialize, Deserializer, MapAccess, Visitor};

    #[derive(Debug)]
    pub struct OrderedMap<V>(pub Vec<(String, V)>);

    impl<V> Default for OrderedMap<V> {
        fn default() -> Self {
            OrderedMap(Vec::new())
        }
    }

    impl<'de, V: Deserialize<'de>> Deserialize<'de> for OrderedMap<V> {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            struct Vis<V>(std::marker::PhantomData<V>);
            impl<'de, V: Deserialize<'de>> Visitor<'de> for Vis<V> {
                type Value = OrderedMap<V>;
                fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                    f.write_str("a map")
                }
                fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<Self::Value, A::Error> {
                    let mut out = Vec::new();
                    while let Some((k, v)) = m.next_entry::<String, V>()? {
                        out.push((k, v));
                    }
                    Ok(OrderedMap(out))
                }
            }
            d.deserialize_map(Vis(std::marker::PhantomData))
        }
    }
}
