//! Counts of traffic no route describes, by method and path shape, so an operator can see which
//! auth endpoints the map misses. Bounded: past [`MAX_KEYS`] distinct shapes, further ones are
//! only counted in `overflow`. Paths are reduced to shapes before anything is kept, even in
//! memory: a segment stays readable only when it is a literal of a route template in the current
//! map or looks like a dictionary word (`magic-login`, `.well-known`, `oauth2`); every other
//! segment — ids, tokens, hex, base64url, base32, UUIDs, JWT parts — becomes `{}`, and query
//! strings are never kept. Hits of mapped routes are counted too (by route id, so bounded by the
//! route map), so the admin API can name routes with no traffic.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

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
    /// Literal segments of the current route map's path templates: kept readable in shapes.
    /// Replaced on every config reload (the counters survive reloads, the literals follow them).
    literals: RwLock<Arc<HashSet<String>>>,
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
    /// Take the literal segments of `routes`' path templates as the names shapes keep readable
    /// (at start and on every reload, before the new map serves).
    pub fn set_routes(&self, routes: &crate::classify::RouteMap) {
        self.set_literals(
            routes
                .routes
                .iter()
                .flat_map(|r| r.path.literals().map(str::to_string)),
        );
    }

    /// Replace the set of segments kept readable whatever they look like.
    pub fn set_literals(&self, literals: impl IntoIterator<Item = String>) {
        let set: HashSet<String> = literals.into_iter().collect();
        *self.literals.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(set);
    }

    fn literals(&self) -> Arc<HashSet<String>> {
        self.literals
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub fn record(&self, method: &http::Method, path: &str) {
        let shape = shape_with(path, &self.literals());
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

/// [`shape_with`] with no route literals: only dictionary-like segments stay readable.
pub fn shape(path: &str) -> String {
    shape_with(path, &HashSet::new())
}

/// `/v1/users/12345/magic-login/Ab3…` → `/v1/users/{}/magic-login/{}`: a segment stays readable
/// only when it is one of `literals` (route template literals) or [`dictionary_like`]; anything
/// else is a value and becomes `{}`. The query string is dropped, never kept.
pub fn shape_with(path: &str, literals: &HashSet<String>) -> String {
    let segments = crate::classify::segments(path);
    let mut out = String::with_capacity(path.len().min(256));
    for seg in &segments {
        out.push('/');
        let name = literals.contains(seg.as_ref()) || dictionary_like(seg);
        out.push_str(if name { seg.as_ref() } else { "{}" });
    }
    if out.is_empty() {
        out.push('/');
    }
    out
}

/// Longest segment kept, in bytes.
const MAX_SEGMENT: usize = 32;
/// Most `-` / `_` / `.` separated parts in a kept segment.
const MAX_PARTS: usize = 4;
/// Longest part kept (letters and digits).
const MAX_PART: usize = 14;
/// Most digits in a kept segment.
const MAX_DIGITS: usize = 2;

/// Short names a path often carries that the word test below would refuse (no vowel, unusual
/// letter pairs). Each is too short to be a secret.
const KNOWN_PARTS: &[&str] = &[
    "2fa", "acs", "api", "cb", "cdn", "crl", "css", "csv", "dns", "gql", "graphql", "grpc", "htm",
    "html", "http", "http2", "https", "ico", "ipv4", "ipv6", "jpg", "js", "json", "jwk", "jwks",
    "jwt", "ldap", "mfa", "mtls", "oidc", "otp", "pdf", "pkce", "png", "queue", "rpc", "rss",
    "scim", "sms", "smtp", "svg", "totp", "txt", "www", "xml", "ws", "wss",
];

/// Consonant pairs that occur inside ordinary English words (`st` in `reset`, `gn` in `sign`,
/// `lb` in `callback`, `dm` in `admin`). Random letters hit a pair outside this list quickly;
/// pairs of hex letters (`bd`, `cf`, `db`, …) are deliberately absent.
const CONSONANT_PAIRS: &[&str] = &[
    "bb", "bh", "bl", "br", "bs", "cc", "ch", "ck", "cl", "cr", "cs", "ct", "dd", "dg", "dl", "dm",
    "dn", "dr", "ds", "dw", "ff", "fl", "fr", "fs", "ft", "gg", "gh", "gl", "gm", "gn", "gr", "gs",
    "hb", "hc", "hd", "hl", "hm", "hn", "hr", "hs", "ht", "hz", "kc", "kl", "kn", "kr", "ks", "kt",
    "lb", "lc", "ld", "lf", "lg", "lk", "ll", "lm", "ln", "lp", "ls", "lt", "lv", "mb", "ml", "mm",
    "mn", "mp", "ms", "nc", "nd", "nf", "ng", "nh", "nj", "nk", "nl", "nm", "nn", "ns", "nt", "nv",
    "pd", "ph", "pl", "pp", "pr", "ps", "pt", "rb", "rc", "rd", "rf", "rg", "rh", "rk", "rl", "rm",
    "rn", "rp", "rr", "rs", "rt", "rv", "rw", "sc", "sf", "sh", "sk", "sl", "sm", "sn", "sp", "ss",
    "st", "sw", "tc", "tf", "th", "tl", "tm", "tn", "tp", "tr", "ts", "tt", "tw", "wd", "wl", "wn",
    "wr", "wh", "ws", "xp", "xt", "xc",
];

/// Consonant pairs an English word may start with (`st` in `status`, `tr` in `trace`).
const ONSETS: &[&str] = &[
    "bl", "br", "ch", "cl", "cr", "dr", "fl", "fr", "gl", "gn", "gr", "kl", "kn", "kr", "ph", "pl",
    "pr", "sc", "sh", "sk", "sl", "sm", "sn", "sp", "st", "sw", "th", "tr", "tw", "wh", "wr",
];

fn is_vowel(c: u8) -> bool {
    matches!(c, b'a' | b'e' | b'i' | b'o' | b'u' | b'y')
}

/// Whether `seg` reads as a name rather than a value: short lowercase words, possibly with a
/// version-like digit suffix (`v1`, `oauth2`), joined by `-`, `_` or `.` (`magic-login`,
/// `.well-known`, `openid-configuration`). Refused: anything with an uppercase letter, another
/// character, more than [`MAX_DIGITS`] digits or digits inside a word, more than [`MAX_PARTS`]
/// parts, a part longer than [`MAX_PART`], a word without a vowel, with a run of more than
/// four consonants, a consonant pair no English word has, three equal letters in a row, or
/// only hex letters (six or more) — so hex, base64url, base32, UUIDs and JWT parts never pass.
pub fn dictionary_like(seg: &str) -> bool {
    let body = seg.strip_prefix('.').unwrap_or(seg);
    if body.is_empty() || seg.len() > MAX_SEGMENT {
        return false;
    }
    if !body
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'-' | b'_' | b'.'))
    {
        return false;
    }
    if body.bytes().filter(u8::is_ascii_digit).count() > MAX_DIGITS
        || !body.bytes().any(|b| b.is_ascii_lowercase())
    {
        return false;
    }
    let parts: Vec<&str> = body.split(['-', '_', '.']).collect();
    parts.len() <= MAX_PARTS && parts.iter().all(|p| word_like(p))
}

/// One part of a segment: a known short name, one or two digits (`v1.2`), or letters with one
/// trailing digit (two after a single letter: `v10`) that pass the word checks.
fn word_like(part: &str) -> bool {
    if part.is_empty() || part.len() > MAX_PART {
        return false;
    }
    if KNOWN_PARTS.contains(&part) {
        return true;
    }
    let letters = part.trim_end_matches(|c: char| c.is_ascii_digit());
    if letters.is_empty() {
        return part.len() <= 2;
    }
    let letters = letters.as_bytes();
    if !letters.iter().all(u8::is_ascii_lowercase) {
        // A digit inside the word.
        return false;
    }
    let digits = part.len() - letters.len();
    if letters.len() == 1 {
        return true;
    }
    if digits > 1 {
        return false;
    }
    if !is_vowel(letters[0]) && !is_vowel(letters[1]) {
        let onset = [letters[0], letters[1]];
        if !ONSETS.iter().any(|p| p.as_bytes() == onset) {
            return false;
        }
    }
    if !letters.iter().copied().any(is_vowel) {
        return false;
    }
    if letters.len() >= 6 && letters.iter().all(|b| (b'a'..=b'f').contains(b)) {
        return false;
    }
    let mut consonants = 0;
    for (i, &c) in letters.iter().enumerate() {
        if is_vowel(c) {
            consonants = 0;
        } else {
            consonants += 1;
            if consonants > 4 {
                return false;
            }
        }
        if c == b'q' && letters.get(i + 1) != Some(&b'u') {
            return false;
        }
        if i >= 2 && letters[i - 1] == c && letters[i - 2] == c {
            return false;
        }
        if i >= 1 {
            let prev = letters[i - 1];
            if !is_vowel(prev) && !is_vowel(c) {
                let pair = [prev, c];
                if !CONSONANT_PAIRS.iter().any(|p| p.as_bytes() == pair) {
                    return false;
                }
            }
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use base64::Engine;

    use super::*;

    /// SplitMix64: a seeded generator, so the token corpus is the same on every run.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        }

        fn bytes(&mut self, n: usize) -> Vec<u8> {
            (0..n).map(|_| self.next() as u8).collect()
        }
    }

    /// What a secret-bearing URL segment looks like: Python's `secrets.token_urlsafe(n)` (n
    /// random bytes, base64url without padding) for n in 8..=64, `token_hex`, lowercase and
    /// uppercase base32, UUIDs and JWT parts.
    fn secrets(rng: &mut Rng) -> Vec<String> {
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let mut out = Vec::new();
        for n in 8..=64 {
            for _ in 0..40 {
                out.push(b64.encode(rng.bytes(n)));
            }
        }
        for n in [4, 8, 16, 20, 32] {
            for _ in 0..200 {
                let hex: String = rng.bytes(n).iter().map(|b| format!("{b:02x}")).collect();
                out.push(hex);
            }
        }
        // base64.b32encode(os.urandom(n)): RFC 4648 (uppercase, `=` padded), also unpadded and
        // lowercased (as some TOTP and invite links carry it) from 10 bytes (80 bits) up.
        for n in [5, 10, 15, 16, 20, 32] {
            for _ in 0..200 {
                let s = base32(&rng.bytes(n));
                out.push(s.trim_end_matches('=').to_string());
                if n >= 10 {
                    out.push(s.trim_end_matches('=').to_ascii_lowercase());
                }
                out.push(s);
            }
        }
        for _ in 0..500 {
            out.push(uuid::Uuid::from_bytes(rng.bytes(16).try_into().unwrap()).to_string());
            out.push(uuid::Uuid::now_v7().to_string());
        }
        for _ in 0..200 {
            let payload = format!(
                r#"{{"sub":"{}","exp":{}}}"#,
                rng.next(),
                rng.next() % 1_000_000
            );
            out.push(b64.encode(br#"{"alg":"HS256","typ":"JWT"}"#));
            out.push(b64.encode(payload));
            out.push(b64.encode(rng.bytes(32)));
        }
        out
    }

    /// RFC 4648 base32, `=` padded.
    fn base32(bytes: &[u8]) -> String {
        const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
        let mut out = String::new();
        for chunk in bytes.chunks(5) {
            let mut buf = [0u8; 5];
            buf[..chunk.len()].copy_from_slice(chunk);
            let v = buf.iter().fold(0u64, |acc, b| (acc << 8) | u64::from(*b));
            let chars = (chunk.len() * 8).div_ceil(5);
            for i in 0..8 {
                if i < chars {
                    out.push(ALPHABET[((v >> (35 - 5 * i)) & 31) as usize] as char);
                } else {
                    out.push('=');
                }
            }
        }
        out
    }

    #[test]
    fn base32_matches_python() {
        // base64.b32encode(b"foobar") and b32encode(b"\x00" * 10)
        assert_eq!(base32(b"foobar"), "MZXW6YTBOI======");
        assert_eq!(base32(&[0; 10]), "AAAAAAAAAAAAAAAA");
    }

    #[test]
    fn no_generated_secret_survives_a_shape() {
        let mut rng = Rng(0x5EED_0012);
        let tokens = secrets(&mut rng);
        assert!(tokens.len() > 5000);
        let mut kept = Vec::new();
        for t in &tokens {
            let shaped = shape(&format!("/v1/magic-login/{t}"));
            if shaped != "/v1/magic-login/{}" {
                kept.push(shaped);
            }
        }
        assert!(
            kept.is_empty(),
            "{} kept: {:?}",
            kept.len(),
            &kept[..kept.len().min(20)]
        );
        // The reported case: 22-character token_urlsafe(16) values were listed verbatim.
        assert_eq!(
            shape("/v1/magic-login/Zx9_abQrT-kLmNoPqRsTuV"),
            "/v1/magic-login/{}"
        );
        assert_eq!(
            shape("/v1/magic-login/abcdefghijklmnopqrstuv"),
            "/v1/magic-login/{}"
        );
    }

    #[test]
    fn names_stay_readable() {
        for name in [
            "magic-login",
            "users",
            "password-reset",
            ".well-known",
            "openid-configuration",
            "v1",
            "v2",
            "oauth2",
            "token",
            "authorize",
            "userinfo",
            "introspect",
            "revoke",
            "logout",
            "sessions",
            "signup",
            "sign-in",
            "callback",
            "refresh",
            "admin",
            "accounts",
            "profile",
            "settings",
            "healthz",
            "webhooks",
            "passkeys",
            "webauthn",
            "jwks.json",
            "device_authorization",
            "backchannel",
            "mfa",
            "totp",
            "verify-email",
            "robots.txt",
            "api",
        ] {
            assert_eq!(shape(&format!("/{name}")), format!("/{name}"), "{name}");
        }
    }

    #[test]
    fn shapes_hide_values() {
        assert_eq!(shape("/v1/users/12345/sessions"), "/v1/users/{}/sessions");
        assert_eq!(
            shape("/magic/eyJhbGciOiJIUzI1NiJ9xxxxxxxxxxxx"),
            "/magic/{}"
        );
        assert_eq!(shape("/"), "/");
        assert_eq!(shape("/oauth2/u-4242/x@y.z/7"), "/oauth2/{}/{}/{}");
        assert_eq!(shape("/reset/deadbeef/Abc/ABC"), "/reset/{}/{}/{}");
        // Query strings never reach a shape.
        assert_eq!(shape("/login?token=Zx9abQrTkLm&next=/home"), "/login");
    }

    #[test]
    fn route_literals_stay_readable_and_follow_the_map() {
        let c = Coverage::default();
        let template = crate::classify::PathTemplate::parse("/v1/apps/{app}/xkcd42/*").unwrap();
        c.set_literals(template.literals().map(str::to_string));
        c.record(&http::Method::GET, "/v1/apps/Q7xLm/xkcd42/Zq9Wm");
        c.set_literals(Vec::new());
        c.record(&http::Method::GET, "/v1/apps/Q7xLm/xkcd42/Zq9Wm");
        let paths: Vec<String> = c.report().0.into_iter().map(|r| r.path).collect();
        assert_eq!(paths, ["/v1/apps/{}/xkcd42/{}", "/v1/apps/{}/{}/{}"]);
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
        // Route literals, so none of these letter strings is masked.
        c.set_literals((0..(MAX_KEYS + 5)).map(|i| name(i)[1..].to_string()));
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
