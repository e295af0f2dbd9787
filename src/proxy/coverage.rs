//! Counts of traffic no route describes, by method and path shape, so an operator can see which
//! auth endpoints the map misses. Bounded: past [`MAX_KEYS`] distinct shapes, further ones are
//! only counted in `overflow`. Paths are reduced to shapes (ids and long values become `{}`) so
//! nothing secret-looking is kept even in memory for long. Hits of mapped routes are counted too
//! (by route id, so bounded by the route map), so the admin API can name routes with no traffic.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use serde::Serialize;
use time::OffsetDateTime;

/// Most distinct method+shape keys kept.
pub const MAX_KEYS: usize = 10_000;

/// Path shape → (count, last seen in Unix milliseconds), for one method.
type Shapes = HashMap<String, (u64, i64)>;

/// Traffic counters since the sidecar started, shared by the proxy and the admin API.
#[derive(Debug, Default)]
pub struct Coverage {
    /// Method → shape → (count, last seen): nested so a hit is looked up by `&str`, without
    /// building an owned key per request.
    seen: Mutex<HashMap<String, Shapes>>,
    /// Keys in `seen`, for the bound.
    keys: AtomicU64,
    overflow: AtomicU64,
    routes: Mutex<HashMap<String, (u64, i64)>>,
}

/// Requests one mapped route took.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RouteHits {
    pub route: String,
    pub count: u64,
    /// Unix milliseconds.
    pub last_seen_ms: i64,
}

/// One row of the coverage report.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Unmapped {
    pub method: String,
    pub path: String,
    pub count: u64,
    /// Unix milliseconds.
    pub last_seen_ms: i64,
}

impl Coverage {
    pub fn record(&self, method: &http::Method, path: &str) {
        let shape = shape(path);
        let now = crate::event::unix_millis(OffsetDateTime::now_utc());
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(entry) = seen
            .get_mut(method.as_str())
            .and_then(|shapes| shapes.get_mut(&shape))
        {
            entry.0 += 1;
            entry.1 = now;
            return;
        }
        if self.keys.load(Ordering::Relaxed) < MAX_KEYS as u64 {
            self.keys.fetch_add(1, Ordering::Relaxed);
            seen.entry(method.as_str().to_string())
                .or_default()
                .insert(shape, (1, now));
        } else {
            self.overflow.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Count a request that route `id` took.
    pub fn record_route(&self, id: &str) {
        let now = crate::event::unix_millis(OffsetDateTime::now_utc());
        let mut routes = self.routes.lock().unwrap_or_else(|e| e.into_inner());
        match routes.get_mut(id) {
            Some(entry) => {
                entry.0 += 1;
                entry.1 = now;
            }
            None => {
                routes.insert(id.to_string(), (1, now));
            }
        }
    }

    /// Hits per mapped route that had any, by route id.
    pub fn route_report(&self) -> Vec<RouteHits> {
        let routes = self.routes.lock().unwrap_or_else(|e| e.into_inner());
        let mut rows: Vec<RouteHits> = routes
            .iter()
            .map(|(id, (count, last))| RouteHits {
                route: id.clone(),
                count: *count,
                last_seen_ms: *last,
            })
            .collect();
        rows.sort_by(|a, b| a.route.cmp(&b.route));
        rows
    }

    /// Unmapped traffic, most frequent first.
    pub fn report(&self) -> (Vec<Unmapped>, u64) {
        let seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        let mut rows: Vec<Unmapped> = seen
            .iter()
            .flat_map(|(m, shapes)| {
                shapes.iter().map(move |(p, (count, last))| Unmapped {
                    method: m.clone(),
                    path: p.clone(),
                    count: *count,
                    last_seen_ms: *last,
                })
            })
            .collect();
        rows.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.path.cmp(&b.path)));
        (rows, self.overflow.load(Ordering::Relaxed))
    }
}

/// `/v1/users/12345/sessions/abc…` → `/v1/users/{}/sessions/{}`: segments with three or more
/// digits (or only digits), an `@`, or more than 24 characters are values, not names.
pub fn shape(path: &str) -> String {
    let segments = crate::classify::segments(path);
    let mut out = String::with_capacity(path.len());
    for seg in &segments {
        out.push('/');
        let digits = seg.chars().filter(char::is_ascii_digit).count();
        let value = seg.len() > 24 || seg.contains('@') || digits >= 3 || digits == seg.len();
        out.push_str(if value { "{}" } else { seg.as_ref() });
    }
    if out.is_empty() {
        out.push('/');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes_hide_values() {
        assert_eq!(shape("/v1/users/12345/sessions"), "/v1/users/{}/sessions");
        assert_eq!(
            shape("/magic/eyJhbGciOiJIUzI1NiJ9xxxxxxxxxxxx"),
            "/magic/{}"
        );
        assert_eq!(shape("/"), "/");
        assert_eq!(shape("/oauth2/u-4242/x@y.z/7"), "/oauth2/{}/{}/{}");
    }

    #[test]
    fn counts_are_bounded() {
        let name = |mut n: usize| {
            let mut s = String::from("/");
            loop {
                s.push((b'a' + (n % 26) as u8) as char);
                n /= 26;
                if n == 0 {
                    return s;
                }
            }
        };
        let c = Coverage::default();
        for i in 0..(MAX_KEYS + 5) {
            c.record(&http::Method::GET, &name(i));
        }
        c.record(&http::Method::GET, &name(0));
        let (rows, overflow) = c.report();
        assert_eq!(rows.len(), MAX_KEYS);
        assert_eq!(overflow, 5);
        assert_eq!(rows[0].count, 2);
        assert_eq!(rows[0].path, "/a");
    }
}
