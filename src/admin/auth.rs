//! Admin credentials: who is calling `/v1`, what they may do, and which apps they see.
//!
//! A credential is configured by the SHA-256 of its bearer token, never the token. A request's
//! token is hashed and compared with every configured hash in constant time. This module decides
//! identity, permission and scope; it never queries the store.

use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

use aws_lc_rs::digest::{digest, SHA256};
use axum::extract::{ConnectInfo, FromRequestParts, MatchedPath};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap};
use subtle::ConstantTimeEq;
use time::OffsetDateTime;
use uuid::Uuid;

use super::probes::{Attempt, Failure};
use super::{AdminState, Error};
use crate::config::{AdminCredential, AppScope, Permission};
use crate::event::{self, AuditEvent};

/// Longest user agent kept on an `audit.query` event, in characters.
const MAX_USER_AGENT: usize = 256;

/// SHA-256 of `token`, lowercase hex: what `admin.credentials[].token_sha256` holds.
pub fn token_sha256_hex(token: &str) -> String {
    crate::hex::encode(digest(&SHA256, token.as_bytes()).as_ref())
}

/// The credential whose hash matches `token`, if any.
///
/// Every configured hash is compared, each in constant time, so the time taken says nothing
/// about which credential (or which prefix of a hash) came close.
pub fn authenticate<'c>(
    credentials: &'c [AdminCredential],
    token: &str,
) -> Option<&'c AdminCredential> {
    let presented = digest(&SHA256, token.as_bytes());
    let presented: &[u8] = presented.as_ref();
    let mut found = None;
    for cred in credentials {
        let equal: bool = presented.ct_eq(&cred.token_sha256[..]).into();
        if equal && found.is_none() {
            found = Some(cred);
        }
    }
    found
}

/// The token of an `Authorization: Bearer TOKEN` header (scheme case-insensitive).
fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.trim().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// An authenticated admin request: the credential and the facts its audit event needs.
#[derive(Clone, Debug)]
pub struct Caller {
    pub credential: AdminCredential,
    pub ip: Option<IpAddr>,
    pub user_agent: Option<String>,
    pub request_id: String,
    /// When the request arrived.
    pub time: OffsetDateTime,
    pub started: Instant,
}

impl Caller {
    /// `Err(Forbidden)` unless the credential grants `permission`.
    pub fn require(&self, permission: Permission) -> Result<(), Error> {
        if self.credential.permissions.contains(&permission) {
            Ok(())
        } else {
            Err(Error::Forbidden {
                credential: self.credential.name.clone(),
                permission: permission.as_str(),
            })
        }
    }

    /// The store's `apps_scope` for this credential: `None` sees every app.
    pub fn apps_scope(&self) -> Option<Vec<String>> {
        match &self.credential.apps {
            AppScope::All => None,
            AppScope::Apps(apps) => Some(apps.clone()),
        }
    }

    /// Whether the credential's scope includes `event`. Events without an app are visible to
    /// `*` credentials only.
    pub fn sees(&self, event: &AuditEvent) -> bool {
        match &self.credential.apps {
            AppScope::All => true,
            AppScope::Apps(apps) => event.app.as_ref().is_some_and(|a| apps.contains(&a.value)),
        }
    }

    /// Whether the credential sees every app.
    pub fn sees_all(&self) -> bool {
        matches!(self.credential.apps, AppScope::All)
    }
}

impl FromRequestParts<AdminState> for Caller {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &AdminState) -> Result<Self, Error> {
        let started = Instant::now();
        let time = event::now_millis();
        let ip = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0.ip());
        let user_agent = parts.headers.get(header::USER_AGENT).map(|v| {
            String::from_utf8_lossy(v.as_bytes())
                .chars()
                .take(MAX_USER_AGENT)
                .collect::<String>()
        });
        let request_id = parts
            .headers
            .get("x-request-id")
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
            .filter(|v| !v.is_empty() && v.len() <= 128 && v.bytes().all(|b| b.is_ascii_graphic()))
            .map_or_else(|| Uuid::now_v7().simple().to_string(), str::to_string);
        // Recorded (aggregated per address) without anything of the credential presented.
        let refuse = |failure: Failure| {
            let endpoint = parts
                .extensions
                .get::<MatchedPath>()
                .map_or("/v1", |m| m.as_str())
                .to_string();
            let attempt = Attempt {
                failure,
                ip,
                user_agent: user_agent.clone(),
                method: parts.method.as_str().to_string(),
                endpoint,
                request_id: request_id.clone(),
                time,
            };
            for e in state.probes.failed(attempt) {
                state.pipeline.submit(e);
            }
            Error::Unauthorized {
                presented: failure == Failure::Invalid,
            }
        };
        let Some(token) = bearer(&parts.headers) else {
            let failure = if parts.headers.contains_key(header::AUTHORIZATION) {
                Failure::Malformed
            } else {
                Failure::Missing
            };
            tracing::info!(ip = ?ip, path = %parts.uri.path(), failure = failure.as_str(), "admin: request without a credential");
            return Err(refuse(failure));
        };
        let config = (state.config)();
        let Some(credential) = authenticate(&config.admin_credentials, token) else {
            tracing::warn!(ip = ?ip, path = %parts.uri.path(), "admin: invalid credential");
            return Err(refuse(Failure::Invalid));
        };
        Ok(Caller {
            credential: credential.clone(),
            ip,
            user_agent,
            request_id,
            time,
            started,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cred(name: &str, token: &str) -> AdminCredential {
        let hex = token_sha256_hex(token);
        let mut hash = [0u8; 32];
        for (i, b) in hash.iter_mut().enumerate() {
            *b = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap();
        }
        AdminCredential {
            name: name.into(),
            token_sha256: hash,
            apps: AppScope::All,
            permissions: vec![Permission::Read],
        }
    }

    #[test]
    fn token_hash_is_lowercase_sha256_hex() {
        assert_eq!(
            token_sha256_hex("password"),
            "5e884898da28047151d0e56f8dc6292773603d0d6aabbdd62a11ef721d1542d8"
        );
    }

    #[test]
    fn authenticate_finds_the_matching_credential_only() {
        let creds = [cred("a", "token-a"), cred("b", "token-b")];
        assert_eq!(
            authenticate(&creds, "token-b").map(|c| c.name.as_str()),
            Some("b")
        );
        assert!(authenticate(&creds, "token-c").is_none());
        assert!(authenticate(&creds, "").is_none());
        assert!(authenticate(&[], "token-a").is_none());
    }

    #[test]
    fn bearer_scheme_is_case_insensitive_and_needs_a_token() {
        let mut h = HeaderMap::new();
        h.insert(header::AUTHORIZATION, "bearer abc".parse().unwrap());
        assert_eq!(bearer(&h), Some("abc"));
        h.insert(header::AUTHORIZATION, "Bearer  ".parse().unwrap());
        assert_eq!(bearer(&h), None);
        h.insert(header::AUTHORIZATION, "Basic abc".parse().unwrap());
        assert_eq!(bearer(&h), None);
    }
}
