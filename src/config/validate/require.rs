//! `requirements`, `defaults.require_mode`, `defaults.on_keys_unavailable` and each route's
//! `require`: compiled into shared [`Requirement`]s.

use std::collections::HashMap;
use std::sync::Arc;

use serde_saphyr::Spanned;

use super::Checker;
use crate::classify::PathTemplate;
use crate::config::model::{File, RequireRef, RequireSpec};
use crate::identity::require::{AppFrom, Mode, OnKeysUnavailable, Requirement};
use crate::identity::Identity;
use crate::identity::TokenLocation;

/// Defaults and the named blocks, ready for routes to reference.
pub(super) struct Requirements {
    mode: Mode,
    on_keys: OnKeysUnavailable,
    named: HashMap<String, Arc<Requirement>>,
}

fn mode(
    c: &mut Checker<'_>,
    at: &Spanned<impl std::fmt::Debug>,
    path: &str,
    v: &str,
) -> Option<Mode> {
    match v {
        "observe" => Some(Mode::Observe),
        "enforce" => Some(Mode::Enforce),
        other => {
            c.err(
                at,
                path,
                format!("invalid mode \"{other}\": expected observe or enforce"),
            );
            None
        }
    }
}

fn on_keys(
    c: &mut Checker<'_>,
    at: &Spanned<impl std::fmt::Debug>,
    path: &str,
    v: &str,
) -> Option<OnKeysUnavailable> {
    match v {
        "deny" => Some(OnKeysUnavailable::Deny),
        "allow_and_flag" => Some(OnKeysUnavailable::AllowAndFlag),
        other => {
            c.err(
                at,
                path,
                format!("invalid on_keys_unavailable \"{other}\": expected deny or allow_and_flag"),
            );
            None
        }
    }
}

/// Compile `spec` on top of `base` (for `use:`) with the defaults.
#[allow(clippy::too_many_arguments)]
fn compile(
    c: &mut Checker<'_>,
    at: &Spanned<impl std::fmt::Debug>,
    path: &str,
    name: &str,
    spec: &RequireSpec,
    base: Option<&Requirement>,
    defaults: &Requirements,
    identity: &Identity,
) -> Requirement {
    let mut r = base.cloned().unwrap_or(Requirement {
        name: name.to_string(),
        mode: defaults.mode,
        keys: None,
        token: TokenLocation::Bearer,
        claims: Vec::new(),
        scopes: Vec::new(),
        app_matches: None,
        app_claim: "app_id".into(),
        on_keys_unavailable: defaults.on_keys,
    });
    if let Some(m) = &spec.mode {
        r.mode = mode(c, at, &format!("{path}.mode"), &m.0).unwrap_or(r.mode);
    }
    if let Some(k) = &spec.on_keys_unavailable {
        r.on_keys_unavailable = on_keys(c, at, &format!("{path}.on_keys_unavailable"), &k.0)
            .unwrap_or(r.on_keys_unavailable);
    }
    if let Some(k) = &spec.keys {
        r.keys = Some(k.0.clone());
    }
    if let Some(t) = &spec.token {
        let locs: Vec<TokenLocation> = [
            t.header
                .as_ref()
                .map(|h| TokenLocation::Header(h.0.clone())),
            t.cookie
                .as_ref()
                .map(|h| TokenLocation::Cookie(h.0.clone())),
            t.query.as_ref().map(|h| TokenLocation::Query(h.0.clone())),
        ]
        .into_iter()
        .flatten()
        .collect();
        match <[TokenLocation; 1]>::try_from(locs) {
            Ok([loc]) => r.token = loc,
            Err(_) => c.err(
                at,
                format!("{path}.token"),
                "name exactly one of header, cookie, query",
            ),
        }
    }
    for (claim, allowed) in &spec.claims.0 {
        r.claims.retain(|(c, _)| c != claim);
        r.claims.push((
            claim.clone(),
            allowed.0.iter().map(|t| t.0.clone()).collect(),
        ));
    }
    for s in &spec.scopes {
        if !r.scopes.contains(&s.0) {
            r.scopes.push(s.0.clone());
        }
    }
    if let Some(a) = &spec.app_matches {
        r.app_matches = match (&a.path, &a.header) {
            (Some(p), None) => Some(AppFrom::Path(p.0.clone())),
            (None, Some(h)) => Some(AppFrom::Header(h.0.to_ascii_lowercase())),
            _ => {
                c.err(
                    at,
                    format!("{path}.app_matches"),
                    "name exactly one of path, header",
                );
                None
            }
        };
    }
    if let Some(a) = &spec.app_claim {
        r.app_claim = a.0.clone();
    }
    match &r.keys {
        Some(k) if !identity.keysets.contains_key(k) => {
            c.err(
                at,
                format!("{path}.keys"),
                format!("unknown key set \"{k}\""),
            );
        }
        None if identity.keyset(None).is_none() => {
            c.err(at, path, "a requirement needs a key set to verify tokens: add one under keys (and defaults.keys when there are several)");
        }
        _ => {}
    }
    r
}

pub(super) fn requirements(c: &mut Checker<'_>, raw: &File, identity: &Identity) -> Requirements {
    let mut defaults = Requirements {
        mode: Mode::Observe,
        on_keys: OnKeysUnavailable::Deny,
        named: HashMap::new(),
    };
    if let Some(m) = &raw.defaults.require_mode {
        defaults.mode = mode(c, m, "defaults.require_mode", &m.value.0).unwrap_or(Mode::Observe);
    }
    if let Some(k) = &raw.defaults.on_keys_unavailable {
        defaults.on_keys = on_keys(c, k, "defaults.on_keys_unavailable", &k.value.0)
            .unwrap_or(OnKeysUnavailable::Deny);
    }
    for (name, spec) in &raw.requirements.0 {
        let path = format!("requirements.{name}");
        if spec.value.use_.is_some() {
            c.err(
                spec,
                format!("{path}.use"),
                "use is for routes; a named requirement cannot use another",
            );
        }
        let r = compile(c, spec, &path, name, &spec.value, None, &defaults, identity);
        defaults.named.insert(name.clone(), Arc::new(r));
    }
    defaults
}

/// A route's `require`, checked against its path template.
pub(super) fn route_requirement(
    c: &mut Checker<'_>,
    spec: &Spanned<RequireRef>,
    path: &str,
    route_id: &str,
    template: Option<&PathTemplate>,
    reqs: &Requirements,
    identity: &Identity,
) -> Option<Arc<Requirement>> {
    let r = match &spec.value {
        RequireRef::Name(n) => match reqs.named.get(n) {
            Some(r) => r.clone(),
            None => {
                c.err(spec, path, format!("unknown requirement \"{n}\""));
                return None;
            }
        },
        RequireRef::Inline(inline) => {
            let base = match &inline.use_ {
                Some(n) => match reqs.named.get(&n.0) {
                    Some(r) => Some(r.as_ref()),
                    None => {
                        c.err(
                            spec,
                            format!("{path}.use"),
                            format!("unknown requirement \"{n}\""),
                        );
                        return None;
                    }
                },
                None => None,
            };
            let name = inline
                .use_
                .as_ref()
                .map_or_else(|| format!("route:{route_id}"), |n| n.0.clone());
            Arc::new(compile(c, spec, path, &name, inline, base, reqs, identity))
        }
    };
    if let (Some(AppFrom::Path(p)), Some(t)) = (&r.app_matches, template) {
        if !t.has_param(p) {
            let msg = format!(
                "app_matches: unknown path parameter \"{p}\": template \"{t}\" has {}",
                t.params().collect::<Vec<_>>().join(", ")
            );
            c.err(spec, format!("{path}.app_matches"), msg);
        }
    }
    Some(r)
}
