//! Counts of traffic no route describes, by method and path shape, so an operator can see which
//! auth endpoints the map misses. Bounded: past [`MAX_KEYS`] distinct shapes, further ones are
//! only counted in `overflow`. Paths are reduced to shapes before anything is kept, even in
//! memory: a segment stays readable only when it is a literal of a route template in the current
//! map or looks like a dictionary word (`magic-login`, `.well-known`, `oauth2`); every other
//! segment — ids, tokens, hex, base64url, base32, UUIDs, JWT parts — becomes `{}`, and query
//! strings are never kept. Hits of mapped routes are counted too (by route id, so bounded by the
//! route map), so the admin API can name routes with no traffic.
//!
//! Each shape also keeps **evidence** of what its exchanges looked like — names, never values —
//! for `authtrail suggest` to draft routes from: how many responses of each status class, the
//! request's content type family, the top-level JSON keys of request and response bodies (per
//! response status class) or the field names of a form, the names of the cookies a response set
//! and of the parameters of a 3xx `Location`. Only the first [`INSPECT_BUDGET`] bytes of a body
//! are read (from a bounded copy, once the response has ended; the client's stream is never held
//! for it), bodies of `GET` and `HEAD` not at all, and a name is kept only when it reads as one
//! ([`name_like`]: the word test of path segments, camelCase split), so a key that is a token or
//! an id is dropped and only counted.
//!
//! **Cost on the unmapped path.** Counts (requests, statuses, content types, cookie and
//! `Location` names) are taken for every exchange. Bodies are read for every exchange of a shape
//! until [`SETTLED_AFTER`] read in a row added no new name to its key sets, then for one exchange
//! in [`SETTLED_SAMPLE`] (a new name starts full reading again): a shape's key sets are what its
//! first exchanges show, and a rare key still shows up over many. A raw path's shape is
//! remembered ([`PATH_MEMO`] paths of at most [`PATH_MEMO_LEN`] bytes, about 0.5 MB at most), as
//! the same paths repeat.
//!
//! Memory: a shape's evidence is a few counters and at most [`MAX_BODY_KEYS`] request keys,
//! [`MAX_BODY_KEYS`] response keys per status class and [`MAX_HEADER_NAMES`] cookie and
//! `Location` names, each a 2-byte index into one table of at most [`MAX_NAMES`] distinct names
//! of at most [`MAX_NAME`] bytes shared by every shape. Per shape: 248 bytes of counters and
//! list headers, at most 176 indexes (352 bytes) and the allocator's share of 7 lists — at most
//! about 700 bytes, 7 MB over [`MAX_KEYS`] shapes; the name table at most about 600 KiB (each
//! name at most 64 bytes in one shared allocation, a map entry and a list slot). Past a cap,
//! further names are counted in `names_dropped`.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use bytes::Bytes;
use http::header::{HeaderMap, CONTENT_ENCODING, CONTENT_TYPE, LOCATION, SET_COOKIE};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

/// Most distinct method+shape keys kept.
pub const MAX_KEYS: usize = 10_000;
/// Most bytes of an unmapped request's or response's body read for its shape's evidence.
pub const INSPECT_BUDGET: usize = 16 * 1024;
/// Most top-level key (or form field) names kept per shape for requests, and for the responses
/// of each status class.
pub const MAX_BODY_KEYS: usize = 32;
/// Most cookie names, and most `Location` parameter names, kept per shape.
pub const MAX_HEADER_NAMES: usize = 8;
/// Longest name kept, in bytes.
pub const MAX_NAME: usize = 64;
/// Distinct names kept across every shape.
pub const MAX_NAMES: usize = 4096;
/// Most words (`-` `_` `.` separated, camelCase split) in a kept name.
const MAX_NAME_PARTS: usize = 8;
/// Most digits in a kept name.
const MAX_NAME_DIGITS: usize = 3;
/// Most form fields or JSON keys looked at in one body (kept or not).
const MAX_SCANNED: usize = 256;

/// Path shape → its counters, for one method.
type Shapes = HashMap<Arc<str>, Entry>;

/// Most raw paths whose shape is remembered ([`Seen::paths`]); past it the memo starts over.
const PATH_MEMO: usize = 1024;
/// Longest raw path whose shape is remembered, in bytes.
const PATH_MEMO_LEN: usize = 256;
/// A shape's bodies are all read until this many read in a row added no new name ...
const SETTLED_AFTER: u32 = 64;
/// ... then one exchange in this many has its bodies read (its counts are always taken).
const SETTLED_SAMPLE: u64 = 16;

/// Traffic counters since the sidecar started, shared by the proxy and the admin API.
#[derive(Debug, Default)]
pub struct Coverage {
    /// Method → shape → counters, and the names their evidence indexes.
    seen: Mutex<Seen>,
    /// Keys in `seen`, for the bound.
    keys: AtomicU64,
    overflow: AtomicU64,
    routes: Mutex<HashMap<String, (u64, i64)>>,
    /// Literal segments of the current route map's path templates: kept readable in shapes.
    /// Replaced on every config reload (the counters survive reloads, the literals follow them).
    literals: RwLock<Arc<HashSet<String>>>,
}

#[derive(Debug, Default)]
struct Seen {
    /// Nested so a hit is looked up by `&str`, without building an owned key per request.
    shapes: HashMap<String, Shapes>,
    names: NameTable,
    /// Raw path → its shape, for the paths seen lately: a path repeats request after request,
    /// and shaping it (every segment tested for a value) costs more than the lookup. Bounded by
    /// [`PATH_MEMO`] entries of at most [`PATH_MEMO_LEN`] bytes; emptied when the route
    /// literals change.
    paths: HashMap<Box<str>, Arc<str>>,
}

/// One unmapped method + shape.
#[derive(Debug, Default)]
struct Entry {
    count: u64,
    /// Unix milliseconds.
    last: i64,
    /// Sightings in a row whose bodies were read and added no new name: once
    /// [`SETTLED_AFTER`], the shape's bodies are read for one exchange in [`SETTLED_SAMPLE`].
    settled: u32,
    tally: Tally,
}

impl Entry {
    /// Whether the next exchange of this shape has its bodies read.
    fn reads_bodies(&self) -> bool {
        self.settled < SETTLED_AFTER || self.count % SETTLED_SAMPLE == 0
    }
}

/// A shape's evidence, as indexes into the [`NameTable`].
#[derive(Debug, Default)]
struct Tally {
    observed: u64,
    /// 2xx, 3xx, 4xx, 5xx.
    status: [u64; 4],
    /// json, form, other, none.
    content: [u64; 4],
    request_keys: Vec<u16>,
    /// By status class, as `status`.
    response_keys: [Vec<u16>; 4],
    cookies: Vec<u16>,
    location: Vec<u16>,
    dropped: u64,
}

/// The distinct names every shape's evidence indexes: bounded by [`MAX_NAMES`].
#[derive(Debug, Default)]
struct NameTable {
    index: HashMap<Arc<str>, u16>,
    names: Vec<Arc<str>>,
}

impl NameTable {
    fn intern(&mut self, name: &str) -> Option<u16> {
        if let Some(&i) = self.index.get(name) {
            return Some(i);
        }
        if self.names.len() >= MAX_NAMES {
            return None;
        }
        let i = u16::try_from(self.names.len()).ok()?;
        let name: Arc<str> = Arc::from(name);
        self.names.push(name.clone());
        self.index.insert(name, i);
        Some(i)
    }

    /// The name of `id` (one this table gave out).
    fn name(&self, id: u16) -> &str {
        self.names.get(usize::from(id)).map_or("", |n| n)
    }

    /// The names of `ids`, sorted.
    fn resolve(&self, ids: &[u16]) -> Vec<String> {
        let mut out: Vec<String> = ids
            .iter()
            .filter_map(|&i| self.names.get(usize::from(i)))
            .map(|n| n.to_string())
            .collect();
        out.sort();
        out
    }
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
    pub evidence: Evidence,
}

/// What the exchanges of one unmapped shape looked like: counts and names, never a value.
/// Served by the admin API (`GET /v1/coverage`, each row's `evidence`) and read back by
/// `authtrail suggest`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Evidence {
    /// Exchanges whose response was seen (a request the upstream never answered is counted
    /// in `count` only).
    pub observed: u64,
    /// Responses by status class.
    pub status: ClassCounts,
    /// Requests by body type: `json`, `form` (urlencoded), `other`, `none` (no body).
    pub request_content: ContentCounts,
    /// Top-level JSON keys, or form field names, of the request bodies.
    pub request_keys: Vec<String>,
    /// Top-level JSON keys of the response bodies, by status class.
    pub response_keys: ClassKeys,
    /// Names of the cookies responses set.
    pub cookies_set: Vec<String>,
    /// Parameter names of the `Location` of 3xx responses (query and fragment).
    pub location_params: Vec<String>,
    /// Names not kept: not name-like (a value used as a key), or past a cap.
    pub names_dropped: u64,
}

/// Counts by status class.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ClassCounts {
    #[serde(rename = "2xx")]
    pub s2xx: u64,
    #[serde(rename = "3xx")]
    pub s3xx: u64,
    #[serde(rename = "4xx")]
    pub s4xx: u64,
    #[serde(rename = "5xx")]
    pub s5xx: u64,
}

/// Names by status class.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ClassKeys {
    #[serde(rename = "2xx")]
    pub s2xx: Vec<String>,
    #[serde(rename = "3xx")]
    pub s3xx: Vec<String>,
    #[serde(rename = "4xx")]
    pub s4xx: Vec<String>,
    #[serde(rename = "5xx")]
    pub s5xx: Vec<String>,
}

/// Requests by body type.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ContentCounts {
    pub json: u64,
    pub form: u64,
    pub other: u64,
    pub none: u64,
}

/// Which shape an unmapped request was counted under ([`Coverage::record`]), for the evidence
/// its exchange adds when it ends ([`Coverage::observe`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShapeKey {
    method: http::Method,
    shape: Arc<str>,
    /// Whether this exchange's bodies are read for names ([`Entry::reads_bodies`]).
    pub bodies: bool,
}

/// A request body's type, as far as its evidence goes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Family {
    Json,
    /// `application/x-www-form-urlencoded`.
    Form,
    Other,
    /// No body.
    #[default]
    None,
}

impl Family {
    /// The family of a request with these headers; `has_body`: the body is not known to be
    /// empty.
    pub fn of(headers: &HeaderMap, has_body: bool) -> Family {
        if !has_body {
            return Family::None;
        }
        if headers.contains_key(CONTENT_ENCODING) {
            return Family::Other;
        }
        match media_type(headers).as_deref() {
            Some(t) if is_json(t) => Family::Json,
            Some("application/x-www-form-urlencoded") => Family::Form,
            _ => Family::Other,
        }
    }

    /// Whether a body of this family has names to read.
    pub fn readable(self) -> bool {
        matches!(self, Family::Json | Family::Form)
    }

    fn index(self) -> usize {
        match self {
            Family::Json => 0,
            Family::Form => 1,
            Family::Other => 2,
            Family::None => 3,
        }
    }
}

/// The media type of `Content-Type`, lowercase, without parameters.
fn media_type(headers: &HeaderMap) -> Option<String> {
    let v = headers.get(CONTENT_TYPE)?.to_str().ok()?;
    Some(v.split(';').next()?.trim().to_ascii_lowercase())
}

fn is_json(media: &str) -> bool {
    media == "application/json" || media.ends_with("+json")
}

/// Whether the bodies of a request with this method are read for names: not for `GET` and
/// `HEAD` (reads: no auth action to draft, and where maps keyed by user names are served).
pub fn reads_bodies(method: &http::Method) -> bool {
    !matches!(*method, http::Method::GET | http::Method::HEAD)
}

/// Whether a response with these headers has a JSON body whose keys can be read (no
/// `Content-Encoding`).
pub fn json_response(headers: &HeaderMap) -> bool {
    !headers.contains_key(CONTENT_ENCODING) && media_type(headers).is_some_and(|t| is_json(&t))
}

/// Names kept from one source, before they reach a shape.
#[derive(Debug, Default)]
struct Names {
    kept: Vec<String>,
    dropped: u64,
}

impl Names {
    /// Keep `raw` when it reads as a name (and is new, within `cap`); count it otherwise.
    fn offer(&mut self, raw: &[u8], cap: usize, test: fn(&str) -> bool) {
        let name = match std::str::from_utf8(raw) {
            Ok(n) if test(n) => n,
            _ => {
                self.dropped += 1;
                return;
            }
        };
        if self.kept.iter().any(|k| k == name) {
            return;
        }
        if self.kept.len() >= cap {
            self.dropped += 1;
            return;
        }
        self.kept.push(name.to_string());
    }
}

/// What one finished unmapped exchange showed, names only: built from the response head
/// ([`Sighting::new`]) and the bounded copies of both bodies, then merged into its shape by
/// [`Coverage::observe`]. The bodies' names are read in the merge, where the shape's evidence
/// tells which of them are already known (names repeat request after request: a name the
/// shape holds is neither tested again nor looked up in the name table).
#[derive(Debug, Default)]
pub struct Sighting {
    status: u16,
    family: Family,
    /// At most [`INSPECT_BUDGET`] bytes of a JSON or form request body.
    request: Bytes,
    /// At most [`INSPECT_BUDGET`] bytes of a JSON response body.
    response: Bytes,
    cookies: Names,
    location: Names,
}

impl Sighting {
    /// The response head's part: its status, the names of the cookies it sets and, for a 3xx,
    /// the parameter names of its `Location`. No value is kept.
    pub fn new(status: u16, family: Family, response: &HeaderMap) -> Sighting {
        let mut s = Sighting {
            status,
            family,
            ..Sighting::default()
        };
        for v in response.get_all(SET_COOKIE) {
            let v = v.as_bytes();
            let pair = v.split(|&b| b == b';').next().unwrap_or_default();
            if let Some(eq) = pair.iter().position(|&b| b == b'=') {
                s.cookies
                    .offer(pair[..eq].trim_ascii(), MAX_HEADER_NAMES, name_like);
            }
        }
        if (300..400).contains(&status) {
            if let Some(loc) = response.get(LOCATION) {
                let loc = loc.as_bytes();
                let params = loc
                    .iter()
                    .position(|&b| b == b'?' || b == b'#')
                    .map_or(&[][..], |i| &loc[i + 1..]);
                for pair in params
                    .split(|&b| b == b'&' || b == b'#' || b == b'?')
                    .take(MAX_SCANNED)
                {
                    match pair.iter().position(|&b| b == b'=') {
                        Some(eq) => s.location.offer(&pair[..eq], MAX_HEADER_NAMES, name_like),
                        // `?error` alone (a failed form login): only a lowercase word.
                        None if !pair.is_empty() => {
                            s.location.offer(pair, MAX_HEADER_NAMES, dictionary_like)
                        }
                        None => {}
                    }
                }
            }
        }
        s
    }

    /// The request body (once): its top-level JSON keys or form field names are read from at
    /// most [`INSPECT_BUDGET`] bytes (a prefix of the body) when the sighting is merged.
    pub fn read_request(&mut self, bytes: &[u8]) {
        self.request_body(Bytes::copy_from_slice(budget(bytes)));
    }

    /// [`Sighting::read_request`] of a copy the caller already holds.
    pub fn request_body(&mut self, bytes: Bytes) {
        if matches!(self.family, Family::Json | Family::Form) {
            self.request = bytes.slice(..budget(&bytes).len());
        }
    }

    /// The response body (once): its top-level JSON keys are read from at most
    /// [`INSPECT_BUDGET`] bytes when the sighting is merged.
    pub fn read_response(&mut self, bytes: &[u8]) {
        self.response_body(Bytes::copy_from_slice(budget(bytes)));
    }

    /// [`Sighting::read_response`] of a copy the caller already holds.
    pub fn response_body(&mut self, bytes: Bytes) {
        self.response = bytes.slice(..budget(&bytes).len());
    }
}

/// The prefix of a body its names are read from.
fn budget(bytes: &[u8]) -> &[u8] {
    &bytes[..bytes.len().min(INSPECT_BUDGET)]
}

/// Field names of a urlencoded form: only of fields with a `=` (a cut-off last field, or a
/// body that is one bare value, gives none).
fn form_names<'b>(bytes: &'b [u8], mut key: impl FnMut(&'b [u8])) {
    for pair in bytes.split(|&b| b == b'&').take(MAX_SCANNED) {
        if let Some(eq) = pair.iter().position(|&b| b == b'=') {
            key(&pair[..eq]);
        }
    }
}

/// The top-level keys of the JSON object `bytes` begins with — a prefix of a body, maybe cut
/// off midway — each as written between its quotes, until the object ends, the bytes end, they
/// stop being JSON, or [`MAX_SCANNED`] keys were seen. Values are skipped unread; nesting is
/// counted, not recursed into.
fn json_keys<'b>(bytes: &'b [u8], mut key: impl FnMut(&'b [u8])) {
    let b = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    let mut i = skip_ws(b, 0);
    if b.get(i) != Some(&b'{') {
        return;
    }
    i += 1;
    for _ in 0..MAX_SCANNED {
        i = skip_ws(b, i);
        if b.get(i) != Some(&b'"') {
            return;
        }
        let Some(end) = string_end(b, i + 1) else {
            return;
        };
        let raw = &b[i + 1..end];
        i = skip_ws(b, end + 1);
        if b.get(i) != Some(&b':') {
            return;
        }
        key(raw);
        let Some(next) = skip_value(b, i + 1) else {
            return;
        };
        i = skip_ws(b, next);
        if b.get(i) != Some(&b',') {
            return;
        }
        i += 1;
    }
}

fn skip_ws(b: &[u8], mut i: usize) -> usize {
    while b
        .get(i)
        .is_some_and(|c| matches!(c, b' ' | b'\t' | b'\r' | b'\n'))
    {
        i += 1;
    }
    i
}

/// The index of the quote closing a string whose content starts at `i`.
fn string_end(b: &[u8], mut i: usize) -> Option<usize> {
    while i < b.len() {
        match b[i] {
            b'\\' => i += 2,
            b'"' => return Some(i),
            _ => i += 1,
        }
    }
    None
}

/// The index just past the JSON value starting at (or after whitespace from) `i`.
fn skip_value(b: &[u8], i: usize) -> Option<usize> {
    let i = skip_ws(b, i);
    match *b.get(i)? {
        b'"' => Some(string_end(b, i + 1)? + 1),
        b'{' | b'[' => {
            let mut depth = 0usize;
            let mut j = i;
            while j < b.len() {
                match b[j] {
                    b'"' => j = string_end(b, j + 1)?,
                    b'{' | b'[' => depth += 1,
                    b'}' | b']' => {
                        depth -= 1;
                        if depth == 0 {
                            return Some(j + 1);
                        }
                    }
                    _ => {}
                }
                j += 1;
            }
            None
        }
        _ => {
            let end = b[i..]
                .iter()
                .position(|c| matches!(c, b',' | b'}' | b']' | b' ' | b'\t' | b'\r' | b'\n'))?;
            Some(i + end)
        }
    }
}

impl Tally {
    /// Add one sighting; whether its bodies added a name to the shape's sets.
    fn merge(&mut self, s: Sighting, names: &mut NameTable) -> bool {
        let before = self.body_names();
        self.observed += 1;
        let d = &mut self.dropped;
        let (request, response) = (&s.request[..], &s.response[..]);
        // A status with no class: the response's names are only counted.
        let set = class_index(s.status).map(|class| {
            self.status[class] += 1;
            &mut self.response_keys[class]
        });
        add_body_names(set, |key| json_keys(response, key), names, d);
        self.content[s.family.index()] += 1;
        let set = Some(&mut self.request_keys);
        match s.family {
            Family::Json => add_body_names(set, |key| json_keys(request, key), names, d),
            Family::Form => add_body_names(set, |key| form_names(request, key), names, d),
            Family::Other | Family::None => {}
        }
        add_names(&mut self.cookies, s.cookies, MAX_HEADER_NAMES, names, d);
        add_names(&mut self.location, s.location, MAX_HEADER_NAMES, names, d);
        self.body_names() != before
    }

    /// How many names the body sets hold (they only grow).
    fn body_names(&self) -> usize {
        self.request_keys.len() + self.response_keys.iter().map(Vec::len).sum::<usize>()
    }

    fn evidence(&self, names: &NameTable) -> Evidence {
        let [s2, s3, s4, s5] = self.status;
        let [json, form, other, none] = self.content;
        let [k2, k3, k4, k5] = &self.response_keys;
        Evidence {
            observed: self.observed,
            status: ClassCounts {
                s2xx: s2,
                s3xx: s3,
                s4xx: s4,
                s5xx: s5,
            },
            request_content: ContentCounts {
                json,
                form,
                other,
                none,
            },
            request_keys: names.resolve(&self.request_keys),
            response_keys: ClassKeys {
                s2xx: names.resolve(k2),
                s3xx: names.resolve(k3),
                s4xx: names.resolve(k4),
                s5xx: names.resolve(k5),
            },
            cookies_set: names.resolve(&self.cookies),
            location_params: names.resolve(&self.location),
            names_dropped: self.dropped,
        }
    }
}

/// 2xx → 0, …, 5xx → 3; other statuses have no class here.
fn class_index(status: u16) -> Option<usize> {
    match status {
        200..=599 => Some(usize::from(status / 100 - 2)),
        _ => None,
    }
}

/// Add the body names `read` gives, in order, to `set` (within [`MAX_BODY_KEYS`]; `None`: only
/// count them) as [`Names::offer`] with [`name_like`] and then [`add_names`] would, with one
/// shortcut: a name `set` already holds passed [`name_like`] when it was added and is in the
/// table, so it is neither tested again nor looked up. Names repeat request after request, so
/// after a shape's first sightings its names cost a scan of at most [`MAX_BODY_KEYS`] indexes.
fn add_body_names<'b>(
    set: Option<&mut Vec<u16>>,
    read: impl FnOnce(&mut dyn FnMut(&'b [u8])),
    names: &mut NameTable,
    dropped: &mut u64,
) {
    // This sighting's names, in order, each with its index when `set` holds it.
    let mut kept: [(&'b [u8], Option<u16>); MAX_BODY_KEYS] = [(&[], None); MAX_BODY_KEYS];
    let mut len = 0;
    let held: &[u16] = set.as_deref().map_or(&[], Vec::as_slice);
    let table = &*names;
    read(&mut |raw: &'b [u8]| {
        let known = held
            .iter()
            .copied()
            .find(|&i| table.name(i).as_bytes() == raw);
        if known.is_none() && !std::str::from_utf8(raw).is_ok_and(name_like) {
            *dropped += 1;
            return;
        }
        if kept[..len].iter().any(|&(k, _)| k == raw) {
            return;
        }
        if len >= MAX_BODY_KEYS {
            *dropped += 1;
            return;
        }
        kept[len] = (raw, known);
        len += 1;
    });
    let Some(set) = set else {
        return;
    };
    for &(raw, known) in &kept[..len] {
        let Ok(name) = std::str::from_utf8(raw) else {
            continue;
        };
        if known.is_some() {
            continue;
        }
        match names.intern(name) {
            Some(i) if set.contains(&i) => {}
            Some(i) if set.len() < MAX_BODY_KEYS => set.push(i),
            _ => *dropped += 1,
        }
    }
}

/// Add `new` to `set` (indexes into `names`), within `cap`; what does not fit is counted.
fn add_names(set: &mut Vec<u16>, new: Names, cap: usize, names: &mut NameTable, dropped: &mut u64) {
    *dropped += new.dropped;
    for n in new.kept {
        match names.intern(&n) {
            Some(i) if set.contains(&i) => {}
            Some(i) if set.len() < cap => set.push(i),
            _ => *dropped += 1,
        }
    }
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
        // After the new literals are in place: a path shaped from here on uses them.
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        seen.paths.clear();
    }

    fn literals(&self) -> Arc<HashSet<String>> {
        self.literals
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Count an unmapped request under its method and shape. The key names the shape for the
    /// evidence of the exchange ([`Coverage::observe`]); `None` past [`MAX_KEYS`] shapes.
    pub fn record(&self, method: &http::Method, path: &str) -> Option<ShapeKey> {
        let now = crate::event::unix_millis(OffsetDateTime::now_utc());
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        let shape = match seen.paths.get(path) {
            Some(shape) => shape.clone(),
            None => {
                let shape: Arc<str> = shape_with(path, &self.literals()).into();
                if path.len() <= PATH_MEMO_LEN {
                    if seen.paths.len() >= PATH_MEMO {
                        seen.paths.clear();
                    }
                    seen.paths.insert(path.into(), shape.clone());
                }
                shape
            }
        };
        if let Some(entry) = seen
            .shapes
            .get_mut(method.as_str())
            .and_then(|shapes| shapes.get_mut(&shape))
        {
            entry.count += 1;
            entry.last = now;
            return Some(ShapeKey {
                method: method.clone(),
                shape,
                bodies: entry.reads_bodies(),
            });
        }
        if self.keys.load(Ordering::Relaxed) < MAX_KEYS as u64 {
            self.keys.fetch_add(1, Ordering::Relaxed);
            seen.shapes
                .entry(method.as_str().to_string())
                .or_default()
                .insert(
                    shape.clone(),
                    Entry {
                        count: 1,
                        last: now,
                        settled: 0,
                        tally: Tally::default(),
                    },
                );
            Some(ShapeKey {
                method: method.clone(),
                shape,
                bodies: true,
            })
        } else {
            self.overflow.fetch_add(1, Ordering::Relaxed);
            None
        }
    }

    /// Add what one exchange of a counted shape showed to that shape's evidence.
    pub fn observe(&self, key: &ShapeKey, sighting: Sighting) {
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        let Seen { shapes, names, .. } = &mut *seen;
        if let Some(entry) = shapes
            .get_mut(key.method.as_str())
            .and_then(|s| s.get_mut(&key.shape))
        {
            let read = !sighting.request.is_empty() || !sighting.response.is_empty();
            let grew = entry.tally.merge(sighting, names);
            if grew {
                entry.settled = 0;
            } else if read {
                entry.settled = entry.settled.saturating_add(1);
            }
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

    /// Unmapped traffic, most frequent first, with each shape's evidence.
    pub fn report(&self) -> (Vec<Unmapped>, u64) {
        let seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        let names = &seen.names;
        let mut rows: Vec<Unmapped> = seen
            .shapes
            .iter()
            .flat_map(|(m, shapes)| {
                shapes.iter().map(move |(p, e)| Unmapped {
                    method: m.clone(),
                    path: p.to_string(),
                    count: e.count,
                    last_seen_ms: e.last,
                    evidence: e.tally.evidence(names),
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
/// letter pairs). Each is too short to be a secret. Sorted (looked up by binary search).
const KNOWN_PARTS: &[&str] = &[
    "2fa", "acs", "api", "cb", "cdn", "crl", "css", "csv", "dns", "gql", "graphql", "grpc", "htm",
    "html", "http", "http2", "https", "ico", "ipv4", "ipv6", "jpg", "js", "json", "jwk", "jwks",
    "jwt", "ldap", "mfa", "mtls", "oidc", "otp", "pdf", "pkce", "png", "queue", "rpc", "rss",
    "scim", "sms", "smtp", "svg", "totp", "txt", "ws", "wss", "www", "xml",
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
    let mut parts = 0;
    body.split(['-', '_', '.']).all(|p| {
        parts += 1;
        parts <= MAX_PARTS && word_like(p)
    })
}

/// One part of a segment: a known short name, one or two digits (`v1.2`), or letters with one
/// trailing digit (two after a single letter: `v10`) that pass the word checks.
fn word_like(part: &str) -> bool {
    word_like_bytes(part.as_bytes())
}

/// [`word_like`] on bytes: no allocation, the lists looked up by binary search and bit table.
fn word_like_bytes(part: &[u8]) -> bool {
    if part.is_empty() || part.len() > MAX_PART {
        return false;
    }
    if listed(KNOWN_PARTS, part) {
        return true;
    }
    let digits = part.iter().rev().take_while(|b| b.is_ascii_digit()).count();
    let letters = &part[..part.len() - digits];
    if letters.is_empty() {
        return part.len() <= 2;
    }
    if !letters.iter().all(u8::is_ascii_lowercase) {
        // A digit inside the word.
        return false;
    }
    if letters.len() == 1 {
        return true;
    }
    if digits > 1 {
        return false;
    }
    if !is_vowel(letters[0]) && !is_vowel(letters[1]) && !paired(&ONSET_SET, letters[0], letters[1])
    {
        return false;
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
            if !is_vowel(prev) && !is_vowel(c) && !paired(&CONSONANT_PAIR_SET, prev, c) {
                return false;
            }
        }
    }
    true
}

/// Whether the sorted `list` holds `word`.
fn listed(list: &[&str], word: &[u8]) -> bool {
    list.binary_search_by(|w| w.as_bytes().cmp(word)).is_ok()
}

/// A list of two-letter pairs as 26 bit sets: bit `b` of row `a` when `ab` is listed.
const fn pair_set(pairs: &[&str]) -> [u32; 26] {
    let mut set = [0u32; 26];
    let mut i = 0;
    while i < pairs.len() {
        let p = pairs[i].as_bytes();
        set[(p[0] - b'a') as usize] |= 1 << (p[1] - b'a');
        i += 1;
    }
    set
}

const CONSONANT_PAIR_SET: [u32; 26] = pair_set(CONSONANT_PAIRS);
const ONSET_SET: [u32; 26] = pair_set(ONSETS);

/// Whether the lowercase letters `a` `b` are a pair of `set`.
fn paired(set: &[u32; 26], a: u8, b: u8) -> bool {
    (set[usize::from(a - b'a')] >> (b - b'a')) & 1 == 1
}

/// Short parts of key and cookie names that the word test refuses (no vowel, an unusual
/// onset) and that are too short, or too common, to be a secret. Sorted.
const NAME_PARTS: &[&str] = &[
    "csrf",
    "csrftoken",
    "idp",
    "jsessionid",
    "jti",
    "kc",
    "nbf",
    "phpsessid",
    "pk",
    "sb",
    "sso",
    "ttl",
    "xsrf",
];

/// The words an all-capitals part of a name longer than three letters may be (`XSRF-TOKEN`,
/// `KEYCLOAK_SESSION`): random capitals (base32) pass the word test too often to trust it.
/// Sorted.
const CAPITAL_WORDS: &[&str] = &[
    "access",
    "aspxauth",
    "auth",
    "awsalb",
    "awselb",
    "client",
    "code",
    "consent",
    "csrf",
    "device",
    "host",
    "identity",
    "jsessionid",
    "keycloak",
    "lang",
    "locale",
    "login",
    "next",
    "nonce",
    "oauth",
    "oauth2",
    "phpsessid",
    "pkce",
    "refresh",
    "remember",
    "restart",
    "secure",
    "session",
    "sessionid",
    "state",
    "tenant",
    "theme",
    "token",
    "user",
    "verifier",
    "xsrf",
];

/// Whether a JSON key, form field, cookie or parameter name reads as a name rather than a
/// value: at most [`MAX_NAME`] bytes of `A-Z a-z 0-9 _ . -`, not starting with a digit (but
/// `2fa`), at most [`MAX_NAME_DIGITS`] digits, and every word of it — split at `_`, `.`, `-`
/// and camelCase humps (`refreshToken`, `JWTToken`), lowercased, at least two characters —
/// one the path-segment word test ([`dictionary_like`]) would keep, or a known short part
/// (`csrf`, `jti`); an all-capitals word of more than three letters only when it is a known
/// one ([`CAPITAL_WORDS`]). At most [`MAX_NAME_PARTS`] words. So `access_token`, `expiresIn`,
/// `__Host-session` and `JSESSIONID` pass; a key that is an id, a UUID, hex, base32, base64url
/// or a JWT part does not. (A key that is a dictionary word is a name to this test, whatever
/// the upstream meant by it.)
pub fn name_like(name: &str) -> bool {
    let name = name.as_bytes();
    if name.is_empty() || name.len() > MAX_NAME {
        return false;
    }
    if name[0].is_ascii_digit() && !name.starts_with(b"2fa") {
        return false;
    }
    let mut digits = 0;
    for &b in name {
        if b.is_ascii_digit() {
            digits += 1;
        } else if !(b.is_ascii_alphabetic() || matches!(b, b'_' | b'-' | b'.')) {
            return false;
        }
    }
    if digits > MAX_NAME_DIGITS {
        return false;
    }
    let mut parts = 0;
    // Each part lowercased into this buffer: a name is at most MAX_NAME bytes.
    let mut buf = [0u8; MAX_NAME];
    for chunk in name.split(|&b| matches!(b, b'_' | b'-' | b'.')) {
        let mut start = 0;
        while start < chunk.len() {
            let end = hump_end(chunk, start);
            let part = &chunk[start..end];
            start = end;
            parts += 1;
            if parts > MAX_NAME_PARTS {
                return false;
            }
            let lower = &mut buf[..part.len()];
            lower.copy_from_slice(part);
            lower.make_ascii_lowercase();
            let lower = &*lower;
            let capitals = !part.iter().any(u8::is_ascii_lowercase)
                && part.iter().filter(|b| b.is_ascii_uppercase()).count() > 3;
            let known = listed(NAME_PARTS, lower);
            let ok = if capitals {
                known || listed(CAPITAL_WORDS, lower)
            } else {
                part.len() >= 2 && (known || word_like_bytes(lower))
            };
            if !ok {
                return false;
            }
        }
    }
    parts > 0
}

/// Where the camelCase hump of `chunk` starting at `start` ends: `refreshTokenJWT` →
/// `refresh`, `Token`, `JWT`; `JWTToken` → `JWT`, `Token`. Digits stay with the letters before
/// and after them (`At9C` is one part, which the word test refuses); a part of a single letter
/// (`aBcD` → `a`, `Bc`, `D`) is its own part, refused as too short.
fn hump_end(chunk: &[u8], start: usize) -> usize {
    for i in start + 1..chunk.len() {
        let prev = chunk[i - 1];
        let boundary = chunk[i].is_ascii_uppercase()
            && (prev.is_ascii_lowercase()
                || (prev.is_ascii_uppercase()
                    && chunk.get(i + 1).is_some_and(u8::is_ascii_lowercase)));
        if boundary {
            return i;
        }
    }
    chunk.len()
}

#[cfg(test)]
mod tests {
    use base64::Engine;

    use super::*;

    /// The word and name tests as they were before they were made allocation-free: the
    /// oracle the fast ones must agree with.
    mod oracle {
        use super::super::{
            is_vowel, CAPITAL_WORDS, CONSONANT_PAIRS, KNOWN_PARTS, MAX_DIGITS, MAX_NAME,
            MAX_NAME_DIGITS, MAX_NAME_PARTS, MAX_PART, MAX_PARTS, MAX_SEGMENT, NAME_PARTS, ONSETS,
        };

        /// One part of a segment: a known short name, one or two digits (`v1.2`), or letters with one
        /// trailing digit (two after a single letter: `v10`) that pass the word checks.
        pub fn word_like(part: &str) -> bool {
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

        pub fn dictionary_like(seg: &str) -> bool {
            let body = seg.strip_prefix('.').unwrap_or(seg);
            if body.is_empty() || seg.len() > MAX_SEGMENT {
                return false;
            }
            if !body.bytes().all(|b| {
                b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'-' | b'_' | b'.')
            }) {
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

        pub fn name_like(name: &str) -> bool {
            if name.is_empty() || name.len() > MAX_NAME {
                return false;
            }
            if name.starts_with(|c: char| c.is_ascii_digit()) && !name.starts_with("2fa") {
                return false;
            }
            if !name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
            {
                return false;
            }
            if name.bytes().filter(u8::is_ascii_digit).count() > MAX_NAME_DIGITS {
                return false;
            }
            let mut parts = 0;
            for chunk in name.split(['_', '-', '.']).filter(|c| !c.is_empty()) {
                for part in humps(chunk) {
                    parts += 1;
                    let lower = part.to_ascii_lowercase();
                    let capitals = !part.bytes().any(|b| b.is_ascii_lowercase())
                        && part.bytes().filter(u8::is_ascii_uppercase).count() > 3;
                    let known = NAME_PARTS.contains(&lower.as_str());
                    let ok = if capitals {
                        known || CAPITAL_WORDS.contains(&lower.as_str())
                    } else {
                        part.len() >= 2 && (known || word_like(&lower))
                    };
                    if parts > MAX_NAME_PARTS || !ok {
                        return false;
                    }
                }
            }
            parts > 0
        }

        /// `refreshTokenJWT` → `refresh`, `Token`, `JWT`; `JWTToken` → `JWT`, `Token`. Digits stay
        /// with the letters before and after them (`At9C` is one part, which the word test refuses); a
        /// part of a single letter (`aBcD` → `a`, `Bc`, `D`) is its own part, refused as too short.
        fn humps(chunk: &str) -> Vec<&str> {
            let b = chunk.as_bytes();
            let mut out = Vec::new();
            let mut start = 0;
            for i in 1..b.len() {
                let upper = b[i].is_ascii_uppercase();
                let prev = b[i - 1];
                let boundary = upper
                    && (prev.is_ascii_lowercase()
                        || (prev.is_ascii_uppercase()
                            && b.get(i + 1).is_some_and(u8::is_ascii_lowercase)));
                if boundary {
                    out.push(&chunk[start..i]);
                    start = i;
                }
            }
            out.push(&chunk[start..]);
            out
        }
    }

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

        /// A number below `n`.
        fn pick(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
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
    fn word_lists_are_sorted() {
        // `listed` finds a word by binary search.
        for list in [KNOWN_PARTS, NAME_PARTS, CAPITAL_WORDS] {
            assert!(list.windows(2).all(|w| w[0] < w[1]), "{list:?}");
        }
    }

    /// Names to hold the fast tests against the old ones: the word lists in every case and
    /// joined, every short string of a small alphabet, seeded random strings near the limits
    /// (length, digits, parts), the generated secrets and a few non-ASCII ones.
    fn name_corpus() -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        let words: Vec<&str> = [
            KNOWN_PARTS,
            NAME_PARTS,
            CAPITAL_WORDS,
            CONSONANT_PAIRS,
            ONSETS,
        ]
        .concat()
        .into_iter()
        .chain([
            "access", "token", "refresh", "expires", "in", "user", "name", "password", "id", "x",
            "q", "qu", "queue", "aqua", "strength", "rhythm", "deadbeef", "abcdef", "abcdeff",
            "aaa", "baaab", "v1", "v10", "v100", "oauth2", "a1b", "at9c", "2fa",
        ])
        .collect();
        for w in &words {
            let upper = w.to_ascii_uppercase();
            let capital = format!("{}{}", &upper[..1], &w[1..]);
            out.extend([w.to_string(), upper, capital]);
        }
        for (i, a) in words.iter().enumerate() {
            let b = words[(i * 7 + 3) % words.len()];
            let c = words[(i * 13 + 5) % words.len()];
            let cb = format!("{}{}", b[..1].to_ascii_uppercase(), &b[1..]);
            for sep in ["_", "-", ".", "", "__", "_-"] {
                out.push(format!("{a}{sep}{b}"));
                out.push(format!("{a}{sep}{cb}{sep}{c}"));
                out.push(format!(
                    "{}{sep}{}",
                    a.to_ascii_uppercase(),
                    b.to_ascii_uppercase()
                ));
            }
            out.push(format!("{a}{cb}JWT"));
            out.push(format!("JWT{cb}{a}"));
            out.push(format!("__Host-{a}"));
            out.push(format!(".{a}."));
            out.push(format!("{a}1"));
            out.push(format!("{a}12"));
            out.push(format!("{a}123"));
            out.push(format!("{a}_{b}_{c}_{a}_{b}_{c}_{a}_{b}"));
            out.push(format!("{a}_{b}_{c}_{a}_{b}_{c}_{a}_{b}_{c}"));
        }
        // Every string of up to four characters of this alphabet.
        let alphabet: Vec<char> = "aeqbsTRX2_-.".chars().collect();
        let mut short = vec![String::new()];
        for _ in 0..4 {
            let longer: Vec<String> = short
                .iter()
                .flat_map(|s| alphabet.iter().map(move |c| format!("{s}{c}")))
                .collect();
            out.extend(longer.iter().cloned());
            short = longer;
        }
        let mut rng = Rng(0x5EED_0017);
        let chars = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZaeiouaeiou0123456789_-.";
        for n in 0..60_000 {
            let len = [n % 8, n % 20, 60 + n % 8][n % 3];
            let s: String = (0..len)
                .map(|_| chars[(rng.next() % chars.len() as u64) as usize] as char)
                .collect();
            out.push(s);
        }
        out.extend(secrets(&mut rng));
        for s in [
            "",
            "é",
            "naïve_token",
            "to\u{0}ken",
            "a b",
            "a\tb",
            "2fa",
            "2fa_code",
            "2FA",
        ] {
            out.push(s.to_string());
        }
        out.push("a".repeat(MAX_NAME));
        out.push("ab".repeat(MAX_NAME / 2));
        out.push("ab".repeat(MAX_NAME / 2 + 1));
        out
    }

    #[test]
    fn the_fast_name_test_agrees_with_the_old_one() {
        let corpus = name_corpus();
        assert!(corpus.len() > 90_000, "{}", corpus.len());
        let mut kept = 0;
        for name in &corpus {
            let old = oracle::name_like(name);
            assert_eq!(name_like(name), old, "{name:?}");
            kept += usize::from(old);
        }
        // The corpus reaches both answers, many times.
        assert!(kept > 5_000 && corpus.len() - kept > 50_000, "{kept}");
    }

    #[test]
    fn the_fast_word_test_agrees_with_the_old_one() {
        for seg in name_corpus() {
            let lower = seg.to_ascii_lowercase();
            for s in [&seg, &lower] {
                assert_eq!(word_like(s), oracle::word_like(s), "{s:?}");
                assert_eq!(dictionary_like(s), oracle::dictionary_like(s), "{s:?}");
            }
        }
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

    /// Everything a shape's evidence holds, as text, to search for values.
    fn evidence_text(c: &Coverage) -> String {
        serde_json::to_string(&c.report().0).unwrap()
    }

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        h
    }

    #[test]
    fn no_generated_secret_passes_as_a_name() {
        let mut rng = Rng(0x5EED_0015);
        let tokens = secrets(&mut rng);
        let kept: Vec<&String> = tokens.iter().filter(|t| name_like(t)).collect();
        assert!(
            kept.is_empty(),
            "{} kept: {:?}",
            kept.len(),
            &kept[..kept.len().min(20)]
        );
    }

    #[test]
    fn key_names_stay_readable() {
        for name in [
            "access_token",
            "refresh_token",
            "id_token",
            "token_type",
            "expires_in",
            "expiresIn",
            "accessToken",
            "grant_type",
            "username",
            "password",
            "new_password",
            "email",
            "otp",
            "code",
            "error",
            "error_description",
            "detail",
            "message",
            "session",
            "sessionid",
            "JSESSIONID",
            "__Host-session",
            "csrftoken",
            "XSRF-TOKEN",
            "connect.sid",
            "user_id",
            "is_active",
            "mfa_required",
            "totp_code",
            "state",
            "scope",
        ] {
            assert!(name_like(name), "{name}");
        }
        for value in [
            "",
            "a b",
            "x@y.z",
            "550e8400-e29b-41d4-a716-446655440000",
            "deadbeefcafe",
            "Zx9_abQrT-kLmNoPqRsTuV",
            "eyJhbGciOiJIUzI1NiJ9",
            "hunter2hunter2",
            "12345",
            &"a".repeat(65),
        ] {
            assert!(!name_like(value), "{value}");
        }
    }

    #[test]
    fn json_keys_are_read_from_a_prefix_without_values() {
        let keys = |body: &str| {
            let mut out = Vec::new();
            json_keys(body.as_bytes(), |k| {
                out.push(String::from_utf8_lossy(k).into_owned())
            });
            out
        };
        assert_eq!(
            keys(r#" {"a": 1, "b" : {"c": [1, {"d": "}"}]}, "e": "x\"y", "f": null} "#),
            ["a", "b", "e", "f"]
        );
        // Cut off midway: the keys before the cut.
        assert_eq!(
            keys(r#"{"access_token": "eyJ", "refresh_tok"#),
            ["access_token"]
        );
        assert_eq!(keys(r#"{"a": [1, 2"#), ["a"]);
        // Not an object.
        assert!(keys(r#"["a", "b"]"#).is_empty());
        assert!(keys("null").is_empty());
        assert!(keys("").is_empty());
        // Broken JSON: the keys before the break.
        assert_eq!(keys(r#"{"a": 1 "b": 2}"#), ["a"]);
    }

    #[test]
    fn a_settled_shapes_bodies_are_sampled_and_a_new_key_reads_them_all_again() {
        let c = Coverage::default();
        let head = headers(&[("content-type", "application/json")]);
        // One exchange of /v1/things: whether its bodies were read, and its sighting merged.
        let exchange = |body: &str| -> bool {
            let key = c.record(&http::Method::POST, "/v1/things").unwrap();
            let mut s = Sighting::new(200, Family::Json, &head);
            if key.bodies {
                s.read_request(body.as_bytes());
                s.read_response(br#"{"access_token": 1}"#);
            }
            c.observe(&key, s);
            key.bodies
        };
        // The first exchange adds names; SETTLED_AFTER more add none: all of them are read.
        let first = 1 + SETTLED_AFTER as usize;
        let read: Vec<bool> = (0..first).map(|_| exchange(r#"{"username": 1}"#)).collect();
        assert!(read.iter().all(|&r| r), "{read:?}");
        // Settled: one exchange in SETTLED_SAMPLE is read.
        let n = 4 * SETTLED_SAMPLE as usize;
        let sampled = (0..n).filter(|_| exchange(r#"{"username": 1}"#)).count();
        assert_eq!(sampled, 4);
        // A sampled exchange with a new key: full reading again.
        let mut seen_new = false;
        for _ in 0..SETTLED_SAMPLE {
            seen_new |= exchange(r#"{"username": 1, "mfa_code": 2}"#);
        }
        assert!(seen_new);
        assert!((0..8).all(|_| exchange(r#"{"username": 1}"#)));
        let (rows, _) = c.report();
        let e = &rows[0].evidence;
        // Counts are exact whatever was read.
        let total = (first + n + SETTLED_SAMPLE as usize + 8) as u64;
        assert_eq!(
            (
                rows[0].count,
                e.observed,
                e.status.s2xx,
                e.request_content.json
            ),
            (total, total, total, total)
        );
        assert_eq!(e.request_keys, ["mfa_code", "username"]);
        assert_eq!(e.response_keys.s2xx, ["access_token"]);
    }

    #[test]
    fn a_paths_remembered_shape_follows_new_route_literals() {
        let c = Coverage::default();
        let shape_of = |c: &Coverage| {
            let key = c.record(&http::Method::GET, "/v1/xq7zk/items").unwrap();
            key.shape.to_string()
        };
        assert_eq!(shape_of(&c), "/v1/{}/items");
        assert_eq!(shape_of(&c), "/v1/{}/items");
        c.set_literals(["xq7zk".to_string()]);
        assert_eq!(shape_of(&c), "/v1/xq7zk/items");
        // Past the memo's bound it starts over and still answers.
        for i in 0..PATH_MEMO + 10 {
            c.record(&http::Method::GET, &format!("/v1/p{i}/items"));
        }
        assert_eq!(shape_of(&c), "/v1/xq7zk/items");
        assert!(c.seen.lock().unwrap().paths.len() <= PATH_MEMO);
    }

    #[test]
    fn a_password_value_is_never_recorded() {
        let c = Coverage::default();
        let key = c.record(&http::Method::POST, "/api/v2/login").unwrap();
        let secret = "Tr0ub4dor-horse-battery";
        let token = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJl";
        // Values are never read; a key that is a value is dropped.
        let req = format!(r#"{{"username": "alice", "password": "{secret}", "{secret}": 1}}"#);
        let resp = format!(
            r#"{{"access_token": "{token}", "refresh_token": "r-{secret}", "token_type": "bearer", "{token}": true}}"#
        );
        let head = headers(&[
            ("content-type", "application/json"),
            ("set-cookie", &format!("session={secret}; HttpOnly; Path=/")),
            ("set-cookie", &format!("{token}=1")),
        ]);
        let mut s = Sighting::new(200, Family::Json, &head);
        s.read_request(req.as_bytes());
        s.read_response(resp.as_bytes());
        c.observe(&key, s);
        // A form login redirecting with a code.
        let key = c.record(&http::Method::POST, "/login").unwrap();
        let head = headers(&[(
            "location",
            &format!("https://app/cb?code={secret}&state=s1#{token}"),
        )]);
        let mut s = Sighting::new(302, Family::Form, &head);
        s.read_request(format!("username=alice&password={secret}&{secret}").as_bytes());
        c.observe(&key, s);

        let text = evidence_text(&c);
        for v in [secret, token, "alice", "bearer", "s1", "HttpOnly"] {
            assert!(!text.contains(v), "{v} in {text}");
        }
        let (rows, _) = c.report();
        let login = rows.iter().find(|r| r.path == "/api/v2/login").unwrap();
        let e = &login.evidence;
        assert_eq!(e.observed, 1);
        assert_eq!(e.status.s2xx, 1);
        assert_eq!(e.request_content.json, 1);
        assert_eq!(e.request_keys, ["password", "username"]);
        assert_eq!(
            e.response_keys.s2xx,
            ["access_token", "refresh_token", "token_type"]
        );
        assert_eq!(e.cookies_set, ["session"]);
        // The key that was a password, the key and the cookie that were a token.
        assert_eq!(e.names_dropped, 3);
        let form = rows.iter().find(|r| r.path == "/login").unwrap();
        assert_eq!(form.evidence.status.s3xx, 1);
        assert_eq!(form.evidence.request_content.form, 1);
        assert_eq!(form.evidence.request_keys, ["password", "username"]);
        assert_eq!(form.evidence.location_params, ["code", "state"]);
    }

    #[test]
    fn evidence_is_bounded() {
        let c = Coverage::default();
        let key = c.record(&http::Method::POST, "/v1/things").unwrap();
        // 10,000 word-like keys, of which only the first 16 KiB is read and 32 kept.
        let mut body = String::from("{");
        for i in 0..10_000 {
            let sep = if i == 0 { "" } else { "," };
            body.push_str(&format!(r#"{sep}"field_{}": {i}"#, name_suffix(i)));
        }
        body.push('}');
        assert!(body.len() > INSPECT_BUDGET);
        for status in [200, 200, 404, 500] {
            let mut s = Sighting::new(status, Family::Json, &HeaderMap::new());
            s.read_request(body.as_bytes());
            s.read_response(body.as_bytes());
            c.observe(&key, s);
        }
        let (rows, _) = c.report();
        let e = &rows[0].evidence;
        assert_eq!(e.observed, 4);
        assert_eq!(e.request_keys.len(), MAX_BODY_KEYS);
        assert_eq!(e.response_keys.s2xx.len(), MAX_BODY_KEYS);
        assert_eq!(e.response_keys.s4xx.len(), MAX_BODY_KEYS);
        assert!(e.names_dropped > 0);
        // Many cookies: at most MAX_HEADER_NAMES.
        let many: Vec<(String, String)> = (0..50)
            .map(|i| {
                (
                    "set-cookie".to_string(),
                    format!("c{}_{}=v", i % 10, name_suffix(i)),
                )
            })
            .collect();
        let pairs: Vec<(&str, &str)> = many.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
        c.observe(&key, Sighting::new(200, Family::None, &headers(&pairs)));
        assert_eq!(c.report().0[0].evidence.cookies_set.len(), MAX_HEADER_NAMES);
    }

    /// A distinct word for each `i` (`ab`, `ac`, … in letters the word test keeps).
    fn name_suffix(mut i: usize) -> String {
        const SYLLABLES: &[&str] = &["ba", "de", "fi", "go", "ku", "la", "me", "ni", "po", "ru"];
        let mut s = String::new();
        loop {
            s.push_str(SYLLABLES[i % 10]);
            i /= 10;
            if i == 0 {
                return s;
            }
        }
    }

    #[test]
    fn the_name_table_is_bounded() {
        let c = Coverage::default();
        let key = c.record(&http::Method::POST, "/v1/things").unwrap();
        for batch in 0..(MAX_NAMES / MAX_BODY_KEYS + 10) {
            let mut body = String::from("{");
            for j in 0..MAX_BODY_KEYS {
                let sep = if j == 0 { "" } else { "," };
                body.push_str(&format!(
                    r#"{sep}"key_{}": 1"#,
                    name_suffix(batch * MAX_BODY_KEYS + j)
                ));
            }
            body.push('}');
            let mut s = Sighting::new(200, Family::Json, &HeaderMap::new());
            s.read_request(body.as_bytes());
            c.observe(&key, s);
        }
        let seen = c.seen.lock().unwrap();
        assert_eq!(seen.names.names.len(), MAX_NAMES);
        assert_eq!(seen.names.index.len(), MAX_NAMES);
    }

    /// The merge as it was before body names were read in it: each body's names tested and
    /// copied out first ([`Names::offer`] with the old name test), then interned.
    fn merge_as_before(t: &mut Tally, names: &mut NameTable, sighting: (u16, Family, &str, &str)) {
        let (status, family, request, response) = sighting;
        let (request, response) = (budget(request.as_bytes()), budget(response.as_bytes()));
        let mut req = Names::default();
        let offer = |n: &mut Names, k: &[u8]| n.offer(k, MAX_BODY_KEYS, oracle::name_like);
        match family {
            Family::Json => json_keys(request, |k| offer(&mut req, k)),
            Family::Form => form_names(request, |k| offer(&mut req, k)),
            Family::Other | Family::None => {}
        }
        let mut resp = Names::default();
        json_keys(response, |k| offer(&mut resp, k));
        t.observed += 1;
        if let Some(class) = class_index(status) {
            t.status[class] += 1;
            add_names(
                &mut t.response_keys[class],
                resp,
                MAX_BODY_KEYS,
                names,
                &mut t.dropped,
            );
        } else {
            t.dropped += resp.dropped;
        }
        t.content[family.index()] += 1;
        add_names(
            &mut t.request_keys,
            req,
            MAX_BODY_KEYS,
            names,
            &mut t.dropped,
        );
    }

    #[test]
    fn evidence_is_what_it_was_before_names_were_read_in_the_merge() {
        let mut rng = Rng(0x5EED_0018);
        let pool = [
            "username",
            "password",
            "access_token",
            "refresh_token",
            "token_type",
            "expires_in",
            "user",
            "error",
            "code",
            "state",
            "expiresIn",
            "JSESSIONID",
            "XSRF-TOKEN",
            "2fa",
            "Zx9_abQrT-kLmNoPqRsTuV",
            "deadbeefcafe",
            "12345",
            "x@y.z",
            "a",
            "",
            "é",
            "a\\\"b",
        ];
        let shapes = ["/v1/unmapped", "/v1/things", "/login"];
        let c = Coverage::default();
        let mut before: Vec<(Tally, String)> = Vec::new();
        let mut table = NameTable::default();
        let mut fresh = 0;
        for round in 0..3_000 {
            // Each body: up to 40 keys from the pool, repeated ones, and now and then new
            // distinct names, so the table fills (MAX_NAMES) and the sets reach their cap.
            let mut body = |rng: &mut Rng, json: bool| {
                let n = rng.pick(40);
                let keys: Vec<String> = (0..n)
                    .map(|_| match rng.pick(10) {
                        0..=1 => {
                            fresh += 1;
                            format!("key_{}", name_suffix(fresh))
                        }
                        _ => pool[rng.pick(pool.len())].to_string(),
                    })
                    .collect();
                if json {
                    let fields: Vec<String> = keys.iter().map(|k| format!(r#""{k}": 1"#)).collect();
                    format!("{{{}}}", fields.join(", "))
                } else {
                    let fields: Vec<String> = keys.iter().map(|k| format!("{k}=1")).collect();
                    fields.join("&")
                }
            };
            let family = [Family::Json, Family::Form, Family::Other, Family::None][rng.pick(4)];
            let request = body(&mut rng, family != Family::Form);
            let response = body(&mut rng, true);
            let status = [200, 201, 302, 401, 404, 500, 101, 600][rng.pick(8)];
            let path = shapes[rng.pick(shapes.len())];
            let key = c.record(&http::Method::POST, path).unwrap();
            let mut s = Sighting::new(status, family, &HeaderMap::new());
            s.read_request(request.as_bytes());
            s.read_response(response.as_bytes());
            c.observe(&key, s);
            let i = match before.iter().position(|(_, p)| p == path) {
                Some(i) => i,
                None => {
                    before.push((Tally::default(), path.to_string()));
                    before.len() - 1
                }
            };
            merge_as_before(
                &mut before[i].0,
                &mut table,
                (status, family, &request, &response),
            );
            if round % 500 == 499 {
                let (rows, _) = c.report();
                for (tally, path) in &before {
                    let row = rows.iter().find(|r| &r.path == path).unwrap();
                    let expected = serde_json::to_value(tally.evidence(&table)).unwrap();
                    assert_eq!(
                        serde_json::to_value(&row.evidence).unwrap(),
                        expected,
                        "{path}"
                    );
                }
            }
        }
        assert_eq!(table.names.len(), MAX_NAMES);
        assert_eq!(c.seen.lock().unwrap().names.names, table.names);
    }

    #[test]
    fn request_families() {
        let json = headers(&[("content-type", "application/vnd.api+json; charset=utf-8")]);
        assert_eq!(Family::of(&json, true), Family::Json);
        assert_eq!(Family::of(&json, false), Family::None);
        let form = headers(&[("content-type", "application/x-www-form-urlencoded")]);
        assert_eq!(Family::of(&form, true), Family::Form);
        let gz = headers(&[
            ("content-type", "application/json"),
            ("content-encoding", "gzip"),
        ]);
        assert_eq!(Family::of(&gz, true), Family::Other);
        assert!(!json_response(&gz));
        assert!(json_response(&json));
        assert_eq!(Family::of(&HeaderMap::new(), true), Family::Other);
    }

    #[test]
    #[cfg(target_pointer_width = "64")]
    fn the_documented_size_holds() {
        // The module header's memory bound counts on these.
        assert_eq!(std::mem::size_of::<Tally>(), 248);
        assert_eq!(
            MAX_BODY_KEYS * 5 + MAX_HEADER_NAMES * 2,
            176,
            "indexes per shape"
        );
    }

    #[test]
    fn any_bytes_are_read_without_a_panic() {
        let mut rng = Rng(0x5EED_0016);
        let sample = br#"{"a":{"b":["c",{"d":"e\"}"}]},"f":"\\","g":-1.5e3,"h":[[[]]],"i":true}"#;
        let mut inputs: Vec<Vec<u8>> = (0..=sample.len()).map(|n| sample[..n].to_vec()).collect();
        for n in 0..400 {
            let mut b = rng.bytes(n % 64);
            // Mostly JSON punctuation, so the parser goes deep.
            for x in &mut b {
                *x = b"{}[]\":,\\ a1"[usize::from(*x) % 11];
            }
            inputs.push(b);
        }
        for input in &inputs {
            let mut n = 0;
            json_keys(input, |_| n += 1);
            assert!(n <= MAX_SCANNED);
            let loc = format!("/cb?{}", String::from_utf8_lossy(input));
            let head = match http::HeaderValue::from_str(&loc) {
                Ok(v) => {
                    let mut h = HeaderMap::new();
                    h.insert(LOCATION, v.clone());
                    h.insert(SET_COOKIE, v);
                    h
                }
                Err(_) => HeaderMap::new(),
            };
            for family in [Family::Json, Family::Form] {
                let mut s = Sighting::new(302, family, &head);
                s.read_request(input);
                s.read_response(input);
            }
        }
    }
}
