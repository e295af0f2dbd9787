//! The audit event: the one model shared by the proxy, the pipeline, the stores and the query
//! surfaces. It depends on nothing else in the crate, and it never holds a secret: values that
//! reach it have already passed the redaction rules of `classify`.

use std::fmt;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use time::OffsetDateTime;
use uuid::Uuid;

pub mod ocsf;

/// One recorded auth action: what happened, who did it, to whom, in which app, and how it ended.
///
/// The fields of this type and of every type it holds are declared in the order of their JSON
/// names (`type` is `event_type`): serde_json then writes an event's canonical encoding
/// directly, with no `Value` tree in between (`store::chain::encode_unlinked`; a test checks it).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AuditEvent {
    /// Who triggered the action.
    pub actor: Actor,
    /// The tenant the action happened in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app: Option<Attributed>,
    /// Set when the app sources disagreed (e.g. the token says one app, a header another);
    /// `app` then holds the verified value when there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app_conflict: Option<Vec<Attributed>>,
    /// Tamper evidence: the event's link in its writer's hash chain. Set by the store when the
    /// pipeline appends the event; `None` before that.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chain: Option<ChainLink>,
    /// Captured, non-secret fields named by the route's `capture` allow-list.
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub details: Map<String, Value>,
    pub http: HttpInfo,
    /// UUIDv7: unique, and roughly time-ordered.
    pub id: Uuid,
    pub outcome: Outcome,
    /// Short machine-readable reason, e.g. `invalid_credentials` or `upstream_timeout`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Assigned by the store on insert; strictly increasing per store. `None` until stored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seq: Option<i64>,
    pub source: ClientInfo,
    pub stage: Stage,
    /// What the action was done to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<Target>,
    /// When the request reached the sidecar (UTC, millisecond precision).
    #[serde(with = "rfc3339_millis")]
    pub time: OffsetDateTime,
    /// Tokens presented or issued in this exchange, by fingerprint — never the token itself.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tokens: Vec<TokenRef>,
    /// Event type from the taxonomy, e.g. `auth.login`.
    #[serde(rename = "type")]
    pub event_type: String,
}

/// One link of a hash chain (one chain per sidecar instance).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChainLink {
    /// SHA-256 over the versioned canonical encoding of the event and `prev_hash`, hex.
    pub hash: String,
    /// The sidecar instance whose chain this is.
    pub instance: String,
    /// Position in the chain, from 1.
    pub n: i64,
    /// `hash` of link `n - 1` (64 zeros for the first link), hex.
    pub prev_hash: String,
}

/// `attempt` is written before forwarding (sync routes); `completed` once the response is known.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    Attempt,
    Completed,
}

/// How the action ended, as the route's outcome rules read the response.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Success,
    Failure,
    /// The upstream failed (unreachable, timed out, 5xx) or the exchange broke off.
    Error,
    /// No outcome rule matched the response.
    Unknown,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::Failure => "failure",
            Outcome::Error => "error",
            Outcome::Unknown => "unknown",
        }
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Outcome {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "success" => Ok(Outcome::Success),
            "failure" => Ok(Outcome::Failure),
            "error" => Ok(Outcome::Error),
            "unknown" => Ok(Outcome::Unknown),
            other => Err(format!(
                "invalid outcome \"{other}\": expected success, failure, error or unknown"
            )),
        }
    }
}

/// A value together with where it came from, so an investigator can tell a verified token claim
/// from a field anyone could have typed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attributed {
    /// The source that yielded the value, e.g. `path:user_id` or `request_body:/username`.
    pub source: String,
    pub value: String,
    pub verified: bool,
}

/// Who acted.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Actor {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    pub kind: ActorKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    pub verified: bool,
}

impl Actor {
    pub fn anonymous() -> Self {
        Actor {
            id: None,
            kind: ActorKind::Anonymous,
            display: None,
            verified: false,
            source: None,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ActorKind {
    User,
    Admin,
    Service,
    Anonymous,
}

/// What the action was done to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Target {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display: Option<String>,
    pub id: String,
    /// user, token, provider, org, app, ... (free-form, lowercase).
    pub kind: String,
    pub source: String,
}

/// Whether a token was sent by the client or handed out by the upstream.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TokenRole {
    Presented,
    Issued,
}

/// A token seen in an exchange, recorded by keyed fingerprint and (for JWTs) its claims.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenRef {
    /// The app, from the key set's `app_claim` (when it names one); as the token claims it
    /// unless `verified`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exp: Option<i64>,
    /// HMAC-SHA-256 of the token under the configured fingerprint key, hex.
    pub fingerprint: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iat: Option<i64>,
    /// Why verification failed: expired, not_yet_valid, bad_signature, unknown_key,
    /// wrong_issuer, wrong_audience, malformed, alg_not_allowed, keys_unavailable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub invalid: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jti: Option<String>,
    /// access, refresh, id, bearer, ... (from the map or the token's own claims).
    pub kind: String,
    pub role: TokenRole,
    /// Where the token was found, e.g. `response_body:/access_token` or `bearer`.
    pub source: String,
    /// The subject, from the key set's `subject_claim` (default `sub`); as the token claims it
    /// unless `verified`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sub: Option<String>,
    /// The signature and claims were checked against a configured key set.
    pub verified: bool,
}

/// Where the request came from.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientInfo {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip: Option<IpAddr>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_agent: Option<String>,
}

/// The HTTP exchange the event was classified from.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HttpInfo {
    /// A body was larger than `inspect_limit`: only its head was inspected (it was forwarded whole).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub body_truncated: bool,
    /// From the request reaching the sidecar to the end of the response body, in milliseconds.
    pub duration_ms: u64,
    pub method: String,
    /// The concrete path (no query string: it may carry secrets).
    pub path: String,
    pub request_id: String,
    /// Id of the route that classified the request.
    pub route: String,
    /// Response status; `None` when no response came back from the upstream.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
}

/// Event time serialised as RFC 3339 UTC with exactly three fractional digits.
pub mod rfc3339_millis {
    use serde::{Deserialize, Deserializer, Serializer};
    use time::format_description::well_known::Rfc3339;
    use time::macros::format_description;
    use time::OffsetDateTime;

    pub fn format(t: OffsetDateTime) -> String {
        let fmt = format_description!(
            "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
        );
        t.to_offset(time::UtcOffset::UTC)
            .format(&fmt)
            .unwrap_or_else(|_| t.unix_timestamp().to_string())
    }

    pub fn serialize<S: Serializer>(t: &OffsetDateTime, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format(*t))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<OffsetDateTime, D::Error> {
        let s = String::deserialize(d)?;
        OffsetDateTime::parse(&s, &Rfc3339).map_err(serde::de::Error::custom)
    }
}

/// Current time truncated to milliseconds, so what is stored equals what was built.
pub fn now_millis() -> OffsetDateTime {
    let now = OffsetDateTime::now_utc();
    // Within the second: no 128-bit division, no second date conversion.
    let nanos = now.nanosecond();
    now.replace_nanosecond(nanos - nanos % 1_000_000)
        .unwrap_or(now)
}

/// Milliseconds since the Unix epoch, the stores' time column.
pub fn unix_millis(t: OffsetDateTime) -> i64 {
    (t.unix_timestamp_nanos() / 1_000_000) as i64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn now_millis_is_now_cut_to_whole_milliseconds() {
        let before = OffsetDateTime::now_utc();
        let t = now_millis();
        let after = OffsetDateTime::now_utc();
        assert_eq!(t.nanosecond() % 1_000_000, 0, "{t}");
        assert!(
            before - time::Duration::milliseconds(1) < t && t <= after,
            "{before} {t} {after}"
        );
        // What the stores keep (whole milliseconds) gives the same instant back.
        let ms = unix_millis(t);
        assert_eq!(
            OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000).unwrap(),
            t
        );
    }
}
