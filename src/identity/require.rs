//! Authenticating mode: a route's requirement — a verified token, required claims and scopes,
//! tenancy — and the decision for one request. Pure: the proxy supplies the checked token and
//! the request's path parameters and headers, and acts on the [`Decision`].

use http::HeaderMap;
use serde_json::Value;

use super::TokenLocation;
use super::{CheckedToken, Invalid};

/// Observe records what would be denied; enforce denies it at the edge.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Observe,
    Enforce,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Observe => "observe",
            Mode::Enforce => "enforce",
        }
    }
}

/// What to do when the key set cannot be loaded (JWKS down, nothing cached).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OnKeysUnavailable {
    /// 503 `keys_unavailable` (enforce); never a silent allow.
    Deny,
    /// Let the request through and record the gap as `access.would_deny`.
    AllowAndFlag,
}

/// Where the tenancy rule reads the request's app.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AppFrom {
    Path(String),
    Header(String),
}

/// One compiled requirement (named and shared by routes, or inline).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Requirement {
    pub name: String,
    pub mode: Mode,
    pub keys: Option<String>,
    pub token: TokenLocation,
    /// Claim (name or JSON pointer) → allowed values: a string claim must equal one, an array
    /// claim must contain one.
    pub claims: Vec<(String, Vec<String>)>,
    /// Every one must be granted by `scope` (space-separated) or `scp` (array).
    pub scopes: Vec<String>,
    /// The token's `app_claim` must equal the app named here.
    pub app_matches: Option<AppFrom>,
    pub app_claim: String,
    pub on_keys_unavailable: OnKeysUnavailable,
}

/// The verdict for one request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    Allow,
    /// Allowed only because the keys were unavailable and the policy says so.
    AllowFlagged {
        reason: String,
    },
    Deny(Denial),
}

/// Why a request is (or would be) refused, and how to say it (RFC 6750).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Denial {
    pub status: u16,
    /// `invalid_token`, `insufficient_scope`, `keys_unavailable`; `None` when no token was sent.
    pub error: Option<&'static str>,
    /// Machine-readable reason stored on the event: `missing_token`, `token_expired`,
    /// `claim_mismatch:role`, `missing_scope:users:write`, `app_mismatch`, `keys_unavailable`.
    pub reason: String,
    /// Human-readable, safe to show the client (names no secret).
    pub description: String,
}

impl Denial {
    /// The `WWW-Authenticate` value for 401 and 403 answers.
    pub fn www_authenticate(&self, requirement: &Requirement) -> Option<String> {
        if self.status != 401 && self.status != 403 {
            return None;
        }
        let mut v = String::from("Bearer realm=\"authtrail\"");
        if let Some(e) = self.error {
            v.push_str(&format!(
                ", error=\"{e}\", error_description=\"{}\"",
                self.description.replace('"', "'")
            ));
        }
        if self.error == Some("insufficient_scope") && !requirement.scopes.is_empty() {
            v.push_str(&format!(", scope=\"{}\"", requirement.scopes.join(" ")));
        }
        Some(v)
    }
}

fn deny(status: u16, error: Option<&'static str>, reason: String, description: String) -> Decision {
    Decision::Deny(Denial {
        status,
        error,
        reason,
        description,
    })
}

fn text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// Decide one request.
pub fn evaluate(
    requirement: &Requirement,
    token: Option<&CheckedToken>,
    params: &[(String, String)],
    headers: &HeaderMap,
) -> Decision {
    let Some(t) = token else {
        return deny(
            401,
            None,
            "missing_token".into(),
            "a bearer token is required".into(),
        );
    };
    match t.invalid {
        Some(Invalid::KeysUnavailable) => {
            return match requirement.on_keys_unavailable {
                OnKeysUnavailable::Deny => deny(
                    503,
                    Some("keys_unavailable"),
                    "keys_unavailable".into(),
                    "the keys to verify the token are unavailable".into(),
                ),
                OnKeysUnavailable::AllowAndFlag => Decision::AllowFlagged {
                    reason: "keys_unavailable".into(),
                },
            };
        }
        Some(why) => {
            return deny(
                401,
                Some("invalid_token"),
                format!("token_{why}"),
                format!("the token is invalid: {why}"),
            );
        }
        None if !t.verified => {
            return deny(
                401,
                Some("invalid_token"),
                "token_malformed".into(),
                "the token is invalid: malformed".into(),
            );
        }
        None => {}
    }
    for (claim, allowed) in &requirement.claims {
        let ok = match t.claim(claim) {
            Some(Value::Array(items)) => {
                items.iter().filter_map(text).any(|v| allowed.contains(&v))
            }
            Some(v) => text(v).is_some_and(|v| allowed.contains(&v)),
            None => {
                return deny(
                    403,
                    Some("insufficient_scope"),
                    format!("claim_missing:{claim}"),
                    format!("the token has no {claim} claim"),
                );
            }
        };
        if !ok {
            return deny(
                403,
                Some("insufficient_scope"),
                format!("claim_mismatch:{claim}"),
                format!("claim {claim} is not {}", allowed.join(" or ")),
            );
        }
    }
    if !requirement.scopes.is_empty() {
        let granted: Vec<String> = ["scope", "scp"]
            .iter()
            .filter_map(|c| t.claim(c))
            .flat_map(|v| match v {
                Value::String(s) => s.split_whitespace().map(str::to_string).collect::<Vec<_>>(),
                Value::Array(a) => a.iter().filter_map(text).collect(),
                _ => Vec::new(),
            })
            .collect();
        if let Some(missing) = requirement.scopes.iter().find(|s| !granted.contains(s)) {
            return deny(
                403,
                Some("insufficient_scope"),
                format!("missing_scope:{missing}"),
                format!("scope {missing} is required"),
            );
        }
    }
    if let Some(from) = &requirement.app_matches {
        let want = match from {
            AppFrom::Path(p) => params.iter().find(|(k, _)| k == p).map(|(_, v)| v.clone()),
            AppFrom::Header(h) => headers
                .get(h.as_str())
                .and_then(|v| v.to_str().ok())
                .map(str::to_string),
        };
        let has = t.claim(&requirement.app_claim).and_then(text);
        if want.is_none() || want != has {
            return deny(
                403,
                Some("insufficient_scope"),
                "app_mismatch".into(),
                "the token is not valid for this app".into(),
            );
        }
    }
    Decision::Allow
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn token(claims: Value) -> CheckedToken {
        CheckedToken {
            fingerprint: "fp".into(),
            claims: claims.as_object().unwrap().clone(),
            is_jwt: true,
            verified: true,
            invalid: None,
            names: Default::default(),
        }
    }

    fn requirement() -> Requirement {
        Requirement {
            name: "admin".into(),
            mode: Mode::Enforce,
            keys: None,
            token: TokenLocation::Bearer,
            claims: vec![
                ("role".into(), vec!["admin".into(), "support".into()]),
                ("token_type".into(), vec!["access".into()]),
            ],
            scopes: vec!["users:write".into()],
            app_matches: Some(AppFrom::Path("app".into())),
            app_claim: "app_id".into(),
            on_keys_unavailable: OnKeysUnavailable::Deny,
        }
    }

    fn good() -> Value {
        json!({"role": "admin", "token_type": "access", "scope": "users:read users:write", "app_id": "a1"})
    }

    fn params() -> Vec<(String, String)> {
        vec![("app".into(), "a1".into())]
    }

    fn reason(d: Decision) -> String {
        match d {
            Decision::Deny(d) => format!("{} {}", d.status, d.reason),
            other => format!("{other:?}"),
        }
    }

    #[test]
    fn every_rule_kind() {
        let h = HeaderMap::new();
        assert_eq!(
            evaluate(&requirement(), Some(&token(good())), &params(), &h),
            Decision::Allow
        );
        let mut c = good();
        c["role"] = json!("user");
        assert_eq!(
            reason(evaluate(&requirement(), Some(&token(c),), &params(), &h)),
            "403 claim_mismatch:role"
        );
        let mut c = good();
        c["role"] = json!(["user", "support"]);
        assert_eq!(
            evaluate(&requirement(), Some(&token(c)), &params(), &h),
            Decision::Allow,
            "array contains"
        );
        let mut c = good();
        c.as_object_mut().unwrap().remove("token_type");
        assert_eq!(
            reason(evaluate(&requirement(), Some(&token(c)), &params(), &h)),
            "403 claim_missing:token_type"
        );
        let mut c = good();
        c["scope"] = json!("users:read");
        assert_eq!(
            reason(evaluate(&requirement(), Some(&token(c)), &params(), &h)),
            "403 missing_scope:users:write"
        );
        let mut c = good();
        c.as_object_mut().unwrap().remove("scope");
        c["scp"] = json!(["users:write"]);
        assert_eq!(
            evaluate(&requirement(), Some(&token(c)), &params(), &h),
            Decision::Allow,
            "scp array"
        );
        let other_app = vec![("app".to_string(), "a2".to_string())];
        assert_eq!(
            reason(evaluate(
                &requirement(),
                Some(&token(good())),
                &other_app,
                &h
            )),
            "403 app_mismatch"
        );
        let mut by_header = requirement();
        by_header.app_matches = Some(AppFrom::Header("x-app-id".into()));
        let mut hh = HeaderMap::new();
        hh.insert("x-app-id", "a1".parse().unwrap());
        assert_eq!(
            evaluate(&by_header, Some(&token(good())), &[], &hh),
            Decision::Allow
        );
        assert_eq!(
            reason(evaluate(&by_header, Some(&token(good())), &[], &h)),
            "403 app_mismatch"
        );
    }

    #[test]
    fn bad_or_missing_tokens_and_key_outages() {
        let h = HeaderMap::new();
        assert_eq!(
            reason(evaluate(&requirement(), None, &params(), &h)),
            "401 missing_token"
        );
        let mut t = token(good());
        t.verified = false;
        t.invalid = Some(Invalid::Expired);
        assert_eq!(
            reason(evaluate(&requirement(), Some(&t), &params(), &h)),
            "401 token_expired"
        );
        t.invalid = Some(Invalid::KeysUnavailable);
        assert_eq!(
            reason(evaluate(&requirement(), Some(&t), &params(), &h)),
            "503 keys_unavailable"
        );
        let mut lenient = requirement();
        lenient.on_keys_unavailable = OnKeysUnavailable::AllowAndFlag;
        assert_eq!(
            evaluate(&lenient, Some(&t), &params(), &h),
            Decision::AllowFlagged {
                reason: "keys_unavailable".into()
            }
        );
    }

    #[test]
    fn www_authenticate_follows_rfc_6750() {
        let r = requirement();
        let Decision::Deny(d) = evaluate(&r, None, &params(), &HeaderMap::new()) else {
            panic!()
        };
        assert_eq!(
            d.www_authenticate(&r).unwrap(),
            "Bearer realm=\"authtrail\""
        );
        let mut c = good();
        c["scope"] = json!("users:read");
        let Decision::Deny(d) = evaluate(&r, Some(&token(c)), &params(), &HeaderMap::new()) else {
            panic!()
        };
        assert_eq!(
            d.www_authenticate(&r).unwrap(),
            "Bearer realm=\"authtrail\", error=\"insufficient_scope\", error_description=\"scope users:write is required\", scope=\"users:write\""
        );
    }
}
