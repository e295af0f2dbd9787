//! `lookups` (tables sources map their values through) and `reasons` (stable codes for the
//! upstream's reason texts).

use std::collections::HashMap;
use std::sync::Arc;

use serde_saphyr::Spanned;

use super::Checker;
use crate::classify::{Lookup, ReasonRule, StatusPattern, TextMatch};
use crate::config::model::{self, indexmap_lite::OrderedMap};
use crate::config::types::Text;

/// Longest compiled regular expression of a reason rule.
const REGEX_SIZE_LIMIT: usize = 1 << 20;

/// Every `lookups.NAME`, inline or read from its file.
pub(super) fn lookups(c: &mut Checker<'_>, raw: &model::File) -> HashMap<String, Lookup> {
    let mut out = HashMap::new();
    for (name, spec) in &raw.lookups.0 {
        let entries: Vec<(String, String)> = match &spec.value {
            model::Lookup::Inline(pairs) => pairs.clone(),
            model::Lookup::File(path) => match read_lookup_file(path) {
                Ok(pairs) => pairs,
                Err(e) => {
                    // Known but empty: sources naming it are not reported again.
                    c.err(spec, format!("lookups.{name}.file"), e);
                    Vec::new()
                }
            },
        };
        let mut table = HashMap::with_capacity(entries.len());
        for (k, v) in entries {
            let (k, v) = (k.trim().to_string(), v.trim().to_string());
            if k.is_empty() || v.is_empty() {
                let msg =
                    format!("lookup entry \"{k}\": neither the key nor the value may be empty");
                c.err(spec, format!("lookups.{name}"), msg);
                continue;
            }
            table.insert(k, v);
        }
        out.insert(name.clone(), Lookup(Arc::new(table)));
    }
    out
}

/// A lookup file: one YAML map of `value: mapped` pairs.
fn read_lookup_file(path: &str) -> Result<Vec<(String, String)>, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read lookup file \"{path}\": {e}"))?;
    let map: OrderedMap<Text> = serde_saphyr::from_str(&text).map_err(|e| {
        let at = e
            .location()
            .map(|l| format!(" line {}", l.line()))
            .unwrap_or_default();
        let msg = super::super::bare_message(&e);
        format!("lookup file \"{path}\"{at}: {msg} (expected a map of value: mapped)")
    })?;
    Ok(map.0.into_iter().map(|(k, v)| (k, v.0)).collect())
}

/// A `reasons` list (the file's or a route's).
pub(super) fn reason_rules(
    c: &mut Checker<'_>,
    list: &[Spanned<model::ReasonRule>],
    path: &str,
) -> Vec<ReasonRule> {
    let mut out = Vec::new();
    for (i, spec) in list.iter().enumerate() {
        let at = |f: &str| format!("{path}[{i}].{f}");
        let r = &spec.value;
        let code = r.code.trim().to_string();
        let code_ok = !code.is_empty()
            && code.len() <= 64
            && code.bytes().all(|b| {
                b.is_ascii_lowercase()
                    || b.is_ascii_digit()
                    || matches!(b, b'_' | b'.' | b':' | b'-')
            });
        if !code_ok {
            let msg = format!(
                "invalid reason code \"{}\": use up to 64 of a-z 0-9 _ . : - like invalid_credentials",
                r.code
            );
            c.err(spec, at("code"), msg);
        }
        let given = [r.exact.is_some(), r.prefix.is_some(), r.regex.is_some()]
            .iter()
            .filter(|b| **b)
            .count();
        if given > 1 {
            c.err(
                spec,
                format!("{path}[{i}]"),
                "a reason rule matches the text one way: exact, prefix or regex",
            );
            continue;
        }
        if given == 0 && r.status.is_none() {
            c.err(
                spec,
                format!("{path}[{i}]"),
                "a reason rule needs exact, prefix, regex or status",
            );
            continue;
        }
        let text = if let Some(t) = &r.exact {
            Some(TextMatch::Exact(t.0.clone()))
        } else if let Some(t) = &r.prefix {
            Some(TextMatch::Prefix(t.0.clone()))
        } else if let Some(t) = &r.regex {
            match regex::RegexBuilder::new(&t.0)
                .size_limit(REGEX_SIZE_LIMIT)
                .build()
            {
                Ok(re) => Some(TextMatch::Regex(re)),
                Err(e) => {
                    let first = e.to_string();
                    let first = first.lines().last().unwrap_or("").trim().to_string();
                    c.err(spec, at("regex"), format!("invalid regex \"{t}\": {first}"));
                    continue;
                }
            }
        } else {
            None
        };
        let status = match &r.status {
            None => None,
            Some(s) => match StatusPattern::parse(s) {
                Ok(p) => Some(p),
                Err(e) => {
                    c.err(spec, at("status"), e);
                    continue;
                }
            },
        };
        if code_ok {
            out.push(ReasonRule { text, status, code });
        }
    }
    out
}
