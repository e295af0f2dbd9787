//! `keys`, `trust` and `defaults.keys`: key sets compiled for verification, trusted proxy CIDRs,
//! the fingerprint key.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use jsonwebtoken::{Algorithm, DecodingKey};
use serde_saphyr::Spanned;

use super::Checker;
use crate::config::model::{File, KeySetSpec};
use crate::config::types::Text;
use crate::identity::jwks::{family, JwksCache, JwksSource};
use crate::identity::keys::{pem_family, pem_key, ClaimRules, KeySource};
use crate::identity::{Fingerprinter, Identity, KeySet, TrustedProxies};

const ASYMMETRIC: &[Algorithm] = &[
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::EdDSA,
];

pub(super) fn loopback_host(uri: &http::Uri) -> bool {
    matches!(uri.host(), Some("localhost") | Some("[::1]") | Some("::1"))
        || uri.host().is_some_and(|h| {
            h.parse::<std::net::Ipv4Addr>()
                .is_ok_and(|ip| ip.is_loopback())
        })
}

pub(super) fn identity(c: &mut Checker<'_>, raw: &File) -> Identity {
    let mut keysets = HashMap::new();
    for (name, spec) in &raw.keys.0 {
        if let Some(keyset) = key_set(c, name, spec) {
            keysets.insert(name.clone(), Arc::new(keyset));
        }
    }
    let default_keys = default_keys(c, raw, &keysets);
    let trusted = trusted_proxies(c, raw);
    let fingerprinter = fingerprinter(c, raw);
    Identity {
        keysets,
        default_keys,
        fingerprinter,
        trusted,
        lineage_cache: raw
            .trust
            .lineage_cache
            .as_ref()
            .map_or(crate::identity::DEFAULT_LINEAGE_CACHE, |n| {
                usize::try_from(n.value).unwrap_or(usize::MAX)
            }),
    }
}

/// `keys.NAME`: one kind of key, its algorithms (each of the key's family) and claim rules;
/// `None` when the key itself is unusable (reported).
fn key_set(c: &mut Checker<'_>, name: &String, spec: &Spanned<KeySetSpec>) -> Option<KeySet> {
    let at = |f: &str| format!("keys.{name}.{f}");
    let s = &spec.value;
    let given = [
        s.secret.is_some(),
        s.public_key_pem.is_some(),
        s.public_key_file.is_some(),
        s.jwks_url.is_some(),
        s.jwks_file.is_some(),
    ]
    .iter()
    .filter(|b| **b)
    .count();
    if given != 1 {
        let msg = "a key set has exactly one of secret, public_key_pem, public_key_file, jwks_url, jwks_file";
        c.err(spec, format!("keys.{name}"), msg);
        return None;
    }
    let mut algorithms = configured_algorithms(c, s, &at);
    let rules = claim_rules(c, s, &at);
    // The kind of key decides which algorithms may ever be used with it.
    let (source, kind, default_algs) = if let Some(secret) = &s.secret {
        hmac_key(c, spec, secret, &at)
    } else if s.public_key_pem.is_some() || s.public_key_file.is_some() {
        public_key(c, spec, &at)?
    } else {
        jwks_key(c, name, spec, &at)?
    };
    if algorithms.is_empty() {
        algorithms = default_algs;
    }
    check_families(c, spec, &algorithms, kind, &at);
    Some(KeySet::new(name.clone(), source, algorithms, &rules))
}

/// A key source, the family its algorithms must be of, and its default algorithms.
type KeyOf = (KeySource, &'static str, Vec<Algorithm>);

/// `algorithms:` as written (empty: the key's defaults).
fn configured_algorithms(
    c: &mut Checker<'_>,
    s: &KeySetSpec,
    at: &impl Fn(&str) -> String,
) -> Vec<Algorithm> {
    let mut algorithms = Vec::new();
    if let Some(algs) = &s.algorithms {
        for a in &algs.value {
            match a.0.parse::<Algorithm>() {
                Ok(alg) => algorithms.push(alg),
                Err(_) => {
                    let msg = format!("unknown algorithm \"{a}\" (\"none\" is never allowed)");
                    c.err(algs, at("algorithms"), msg);
                }
            }
        }
    }
    algorithms
}

/// Issuer, audiences, leeway and the claims naming the subject and the app.
fn claim_rules(c: &mut Checker<'_>, s: &KeySetSpec, at: &impl Fn(&str) -> String) -> ClaimRules {
    ClaimRules {
        issuer: s
            .issuer
            .as_ref()
            .map(|i| i.0.iter().map(|t| t.0.clone()).collect()),
        audience: s
            .audience
            .as_ref()
            .map(|a| a.0.iter().map(|t| t.0.clone()).collect()),
        leeway: s.leeway.map_or(Duration::from_secs(30), |d| d.0),
        id_token_audience: s
            .id_token_audience
            .as_ref()
            .map(|a| a.0.iter().map(|t| t.0.clone()).collect()),
        subject_claim: claim_name(c, &s.subject_claim, &at("subject_claim")),
        app_claim: claim_name(c, &s.app_claim, &at("app_claim")),
    }
}

/// `secret:`: an HMAC key of at least 16 bytes.
fn hmac_key(
    c: &mut Checker<'_>,
    spec: &Spanned<KeySetSpec>,
    secret: &Text,
    at: &impl Fn(&str) -> String,
) -> KeyOf {
    if secret.0.len() < 16 {
        c.err(
            spec,
            at("secret"),
            "an HMAC secret must be at least 16 bytes",
        );
    }
    (
        KeySource::Static(DecodingKey::from_secret(secret.0.as_bytes())),
        "hmac",
        vec![Algorithm::HS256],
    )
}

/// `public_key_pem:` or `public_key_file:`: a PEM public key, read now.
fn public_key(
    c: &mut Checker<'_>,
    spec: &Spanned<KeySetSpec>,
    at: &impl Fn(&str) -> String,
) -> Option<KeyOf> {
    let s = &spec.value;
    let pem = match (&s.public_key_pem, &s.public_key_file) {
        (Some(p), _) => Ok(p.0.clone().into_bytes()),
        (None, Some(f)) => {
            std::fs::read(&f.0).map_err(|e| format!("cannot read public_key_file \"{f}\": {e}"))
        }
        (None, None) => Err(String::new()),
    };
    let field = if s.public_key_pem.is_some() {
        "public_key_pem"
    } else {
        "public_key_file"
    };
    match pem.and_then(|p| pem_key(&p).map(|(k, algs)| (k, algs, pem_family(&p)))) {
        Ok((key, algs, fam)) => Some((KeySource::Static(key), fam.unwrap_or("unknown"), algs)),
        Err(e) => {
            c.err(spec, at(field), e);
            None
        }
    }
}

/// `jwks_url:` (https, or http for loopback hosts, with its client) or `jwks_file:`, and the
/// refresh schedule.
fn jwks_key(
    c: &mut Checker<'_>,
    name: &str,
    spec: &Spanned<KeySetSpec>,
    at: &impl Fn(&str) -> String,
) -> Option<KeyOf> {
    let s = &spec.value;
    let every = s.refresh.map_or(Duration::from_secs(600), |d| d.0);
    let min = s.min_refresh.map_or(Duration::from_secs(30), |d| d.0);
    let source = if let Some(url) = &s.jwks_url {
        let uri = match url.0.parse::<http::Uri>() {
            Ok(u)
                if u.scheme_str() == Some("https")
                    || (u.scheme_str() == Some("http") && loopback_host(&u)) =>
            {
                u
            }
            _ => {
                let msg = format!(
                    "invalid jwks_url \"{url}\": expected https://… (http only for loopback hosts)"
                );
                c.err(spec, at("jwks_url"), msg);
                return None;
            }
        };
        let ca = s
            .jwks_ca_file
            .as_ref()
            .map(|f| std::path::PathBuf::from(&f.0));
        match JwksCache::client(ca.as_deref()) {
            Ok(client) => JwksSource::Url {
                uri,
                client: Box::new(client),
            },
            Err(e) => {
                c.err(spec, at("jwks_ca_file"), e);
                return None;
            }
        }
    } else {
        let f = s
            .jwks_file
            .as_ref()
            .map(|f| f.0.clone())
            .unwrap_or_default();
        JwksSource::File(f.into())
    };
    let cache = Arc::new(JwksCache::new(name.to_string(), source, every, min));
    Some((KeySource::Jwks(cache), "jwks", ASYMMETRIC.to_vec()))
}

/// Every algorithm must be of the key's family (a JWKS takes any asymmetric one).
fn check_families(
    c: &mut Checker<'_>,
    spec: &Spanned<KeySetSpec>,
    algorithms: &[Algorithm],
    kind: &str,
    at: &impl Fn(&str) -> String,
) {
    for alg in algorithms {
        let ok = match kind {
            "jwks" => family(*alg) != "hmac",
            k => family(*alg) == k,
        };
        if !ok {
            let msg = format!("algorithm {alg:?} cannot be used with this key set's {kind} key");
            match &spec.value.algorithms {
                Some(a) => c.err(a, at("algorithms"), msg),
                None => c.err(spec, at("algorithms"), msg),
            }
        }
    }
}

/// `defaults.keys`, or the only key set.
fn default_keys(
    c: &mut Checker<'_>,
    raw: &File,
    keysets: &HashMap<String, Arc<KeySet>>,
) -> Option<String> {
    match &raw.defaults.keys {
        Some(k) if !keysets.contains_key(&k.value.0) => {
            let msg = format!("unknown key set \"{}\"", k.value);
            c.err(k, "defaults.keys", msg);
            None
        }
        Some(k) => Some(k.value.0.clone()),
        None if keysets.len() == 1 => keysets.keys().next().cloned(),
        None => None,
    }
}

/// `trust.proxies`: networks or single addresses.
fn trusted_proxies(c: &mut Checker<'_>, raw: &File) -> TrustedProxies {
    let mut proxies = Vec::new();
    for (i, p) in raw.trust.proxies.iter().enumerate() {
        let text = p.value.trim();
        let parsed = text
            .parse::<ipnet::IpNet>()
            .or_else(|_| text.parse::<std::net::IpAddr>().map(ipnet::IpNet::from));
        match parsed {
            Ok(net) => proxies.push(net),
            Err(_) => {
                let msg = format!("invalid CIDR \"{text}\": expected e.g. 10.0.0.0/8 or 192.0.2.1");
                c.err(p, format!("trust.proxies[{i}]"), msg);
            }
        }
    }
    TrustedProxies(proxies)
}

/// `trust.fingerprint_key`: at least 16 bytes.
fn fingerprinter(c: &mut Checker<'_>, raw: &File) -> Option<Fingerprinter> {
    raw.trust.fingerprint_key.as_ref().and_then(|k| {
        if k.value.0.len() < 16 {
            c.err(
                k,
                "trust.fingerprint_key",
                "the fingerprint key must be at least 16 bytes",
            );
            None
        } else {
            Some(Fingerprinter::new(k.value.0.as_bytes()))
        }
    })
}

/// A claim name (`user_id`) or JSON pointer (`/ext/app`); never empty.
fn claim_name(
    c: &mut Checker<'_>,
    v: &Option<serde_saphyr::Spanned<crate::config::types::Text>>,
    at: &str,
) -> Option<String> {
    let v = v.as_ref()?;
    let name = v.value.trim();
    if name.is_empty() || name == "/" {
        c.err(v, at, "a claim name must not be empty");
        return None;
    }
    Some(name.to_string())
}

/// `tokens:` of a route: where tokens are presented and issued, checked against the identity
/// config (recording tokens needs the fingerprint key).
pub(super) fn token_rule(
    c: &mut Checker<'_>,
    r: &crate::config::model::Route,
    at: &str,
    identity: &Identity,
) -> crate::classify::TokenRule {
    use crate::classify::TokenRule;
    use crate::identity::TokenLocation;
    let Some(spec) = &r.tokens else {
        return TokenRule {
            bearer: identity.fingerprinter.is_some(),
            ..TokenRule::default()
        };
    };
    let t = &spec.value;
    if identity.fingerprinter.is_none() {
        c.err(spec, at, "recording tokens needs trust.fingerprint_key (tokens are stored by keyed fingerprint only)");
    }
    let mut pointers = |list: &[crate::config::types::Text], issued: bool| -> Vec<TokenLocation> {
        let mut out = Vec::new();
        for p in list {
            if !p.0.starts_with('/') {
                let msg = format!("invalid JSON pointer \"{p}\": must start with \"/\"");
                c.err(spec, at, msg);
                continue;
            }
            out.push(if issued {
                TokenLocation::ResponseBody(p.0.clone())
            } else {
                TokenLocation::RequestBody(p.0.clone())
            });
        }
        out
    };
    let mut issued = pointers(&t.issued, true);
    let presented = pointers(&t.presented, false);
    for p in &t.redirect {
        if p.0.is_empty() || p.0.contains(['&', '=', '?', '#']) {
            let msg = format!("invalid redirect parameter \"{p}\": expected a name like code");
            c.err(spec, format!("{at}.redirect"), msg);
            continue;
        }
        issued.push(TokenLocation::Redirect(p.0.clone()));
    }
    let keys = t.keys.as_ref().map(|k| k.0.clone());
    if let Some(k) = &keys {
        if !identity.keysets.contains_key(k) {
            c.err(
                spec,
                format!("{at}.keys"),
                format!("unknown key set \"{k}\""),
            );
        }
    }
    TokenRule {
        presented,
        issued,
        bearer: t.bearer.unwrap_or(true) && identity.fingerprinter.is_some(),
        keys,
    }
}

/// Claim sources must name a key set that exists (or there must be a default one): a claim is
/// only ever taken from a verified token.
pub(super) fn check_claim_sources(
    c: &mut Checker<'_>,
    r: &crate::config::model::Route,
    route: &crate::classify::Route,
    at: &str,
    identity: &Identity,
) {
    use crate::classify::Source;
    let target = route
        .target
        .iter()
        .flat_map(|t| t.from.iter().chain(&t.display));
    let captures = route.capture.iter().flat_map(|(_, s)| s.iter());
    for s in route
        .actor
        .iter()
        .chain(&route.app)
        .chain(target)
        .chain(captures)
    {
        if let Source::Claim { keys, .. } = s.base() {
            let msg = match keys {
                Some(k) if !identity.keysets.contains_key(k) => format!("unknown key set \"{k}\" in {}", s.label()),
                None if identity.keyset(None).is_none() => format!(
                    "{} needs a key set to verify the token: add one under keys (and defaults.keys when there are several)",
                    s.label()
                ),
                _ => continue,
            };
            c.err(&r.id, at, msg);
        }
    }
}
