//! `suggest`: draft routes for the unmapped endpoints that look like auth actions, from what the
//! running sidecar saw (`GET /v1/coverage`): each method + path shape with its evidence — status
//! classes, the request's body type, the names of body keys, of cookies set and of redirect
//! parameters, never a value. Rules over the path's words, the method and those names pick an
//! event type, the outcome, actor and target sources and the tokens issued; each route comes with
//! the evidence it used and a confidence. The draft is checked merged into the config with the
//! loader `check` uses: a route that would not load is left in, commented out, with the reason.

use std::collections::BTreeSet;
use std::io::Write;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use serde::Deserialize;
use serde_json::{json, Value};

use super::stdout;
use crate::proxy::coverage::Evidence;

/// `suggest`: the sidecar to ask, and what to keep.
#[derive(Debug, clap::Args)]
pub struct SuggestArgs {
    /// The sidecar's config file: its `admin.listen`, route ids, key sets and
    /// `trust.fingerprint_key` shape the draft, which is checked merged into it.
    #[arg(long, short)]
    pub config: PathBuf,
    /// Admin base URL, instead of `admin.listen` (e.g. through a port-forward).
    #[arg(long)]
    pub admin: Option<String>,
    /// An admin bearer token with `read` on every app.
    #[arg(long, env = "AUTHTRAIL_ADMIN_TOKEN", hide_env_values = true)]
    pub token: String,
    /// Leave out suggestions below this confidence.
    #[arg(long, value_enum, default_value_t = Confidence::Low)]
    pub min_confidence: Confidence,
    /// Write the draft to this file instead of standard output.
    #[arg(long, short)]
    pub output: Option<PathBuf>,
}

/// How sure a suggestion is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, clap::ValueEnum)]
pub enum Confidence {
    Low,
    Medium,
    High,
}

impl Confidence {
    fn as_str(self) -> &'static str {
        match self {
            Confidence::Low => "low",
            Confidence::Medium => "medium",
            Confidence::High => "high",
        }
    }
}

pub async fn run(a: SuggestArgs) -> Result<i32> {
    let (url, v) =
        super::coverage::fetch(&a.config, a.admin.as_deref(), &a.token, "authtrail-suggest")
            .await?;
    if v["scope"] != "all" {
        bail!("{url}: this credential sees some apps only; coverage is sidecar-wide and needs one that sees every app");
    }
    let shapes: Vec<Shape> = serde_json::from_value(v["unmapped"].clone())
        .with_context(|| format!("{url}: unexpected \"unmapped\""))?;
    let text = std::fs::read_to_string(&a.config)
        .with_context(|| format!("config {}", a.config.display()))?;
    let facts =
        ConfigFacts::read(&text).map_err(|e| anyhow::anyhow!("{}: {e}", a.config.display()))?;
    let overflow = v["unmapped_overflow"].as_u64().unwrap_or(0);
    let mut plan = plan(shapes, &facts, a.min_confidence);
    let file = a.config.display().to_string();
    let checked = check_merged(&text, &file, &mut plan);
    let draft = render(&plan, &url, &file, overflow, &checked);
    match &a.output {
        Some(path) => {
            std::fs::write(path, &draft).with_context(|| format!("write {}", path.display()))?;
            eprintln!(
                "{}: {} routes suggested, {} shapes skipped",
                path.display(),
                plan.drafts.iter().filter(|d| d.rejected.is_none()).count(),
                plan.skipped.len()
            );
        }
        None => stdout().write_all(draft.as_bytes())?,
    }
    Ok(0)
}

/// One unmapped method + path shape, as the admin API reports it.
#[derive(Clone, Debug, Deserialize)]
pub struct Shape {
    pub method: String,
    pub path: String,
    #[serde(default)]
    pub count: u64,
    #[serde(default)]
    pub evidence: Evidence,
}

/// What the draft takes from the config: ids already used, whether tokens can be recorded, and
/// whether a bearer token's claims can be read (one key set, or `defaults.keys`).
#[derive(Clone, Debug, Default)]
pub struct ConfigFacts {
    pub route_ids: BTreeSet<String>,
    pub fingerprint_key: bool,
    /// The claim naming a verified bearer token's user (`sub`, or the key set's
    /// `subject_claim`), when claims can be read without naming a key set.
    pub subject_claim: Option<String>,
}

impl ConfigFacts {
    /// From the config's YAML, as written (no `${ENV}` is resolved: only names are read).
    pub fn read(text: &str) -> Result<ConfigFacts, String> {
        let v: Value = serde_saphyr::from_str(text).map_err(|e| e.to_string())?;
        let route_ids = v["routes"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|r| r["id"].as_str().map(str::to_string))
            .collect();
        let keys = v["keys"].as_object();
        let default = v["defaults"]["keys"]
            .as_str()
            .map(str::to_string)
            .or_else(|| {
                keys.filter(|k| k.len() == 1)
                    .and_then(|k| k.keys().next().cloned())
            });
        let subject_claim = default.and_then(|name| {
            let set = keys?.get(&name)?;
            Some(set["subject_claim"].as_str().unwrap_or("sub").to_string())
        });
        Ok(ConfigFacts {
            route_ids,
            fingerprint_key: !v["trust"]["fingerprint_key"].is_null(),
            subject_claim,
        })
    }
}

/// The draft: routes suggested (in the order they should be added), and what was left out.
#[derive(Debug, Default)]
pub struct Plan {
    pub drafts: Vec<Draft>,
    /// Shapes that do not look like auth actions, with why.
    pub skipped: Vec<(Shape, &'static str)>,
    /// Suggestions under `--min-confidence`.
    pub below: Vec<Draft>,
}

/// One suggested route.
#[derive(Clone, Debug)]
pub struct Draft {
    pub shape: Shape,
    pub id: String,
    pub template: String,
    pub event: &'static str,
    pub confidence: Confidence,
    /// Why this event and this confidence, in words.
    pub reasons: Vec<String>,
    /// The route's fields, in the order written.
    pub fields: Vec<(&'static str, Value)>,
    /// What the draft could not fill in, as comments.
    pub notes: Vec<String>,
    /// Set when the config with this route does not load: the loader's message.
    pub rejected: Option<String>,
}

impl Draft {
    /// The route as YAML: a list item indented two spaces, fields in flow style.
    pub fn yaml(&self) -> String {
        let mut out = format!("  - id: {}\n", flow(&json!(self.id)));
        for (k, v) in &self.fields {
            match (k, v) {
                // Long objects read better as blocks.
                (_, Value::Object(m)) if m.len() > 1 && flow(v).len() > 70 => {
                    out.push_str(&format!("    {k}:\n"));
                    let mut pairs: Vec<(&String, &Value)> = m.iter().collect();
                    pairs.sort_by_key(|(k, _)| {
                        KEY_ORDER.iter().position(|o| o == k).unwrap_or(usize::MAX)
                    });
                    for (ik, iv) in pairs {
                        out.push_str(&format!("      {ik}: {}\n", flow(iv)));
                    }
                }
                _ => out.push_str(&format!("    {k}: {}\n", flow(v))),
            }
        }
        out
    }
}

/// Classify every shape; drafts are ordered so that no route hides a later one (literal
/// segments before parameters at the same position).
pub fn plan(shapes: Vec<Shape>, facts: &ConfigFacts, min: Confidence) -> Plan {
    let mut plan = Plan::default();
    let mut ids = facts.route_ids.clone();
    for shape in shapes {
        match classify(&shape) {
            Err(why) => plan.skipped.push((shape, why)),
            Ok(c) => {
                let draft = build(shape, c, facts, &mut ids);
                if draft.confidence < min {
                    plan.below.push(draft);
                } else {
                    plan.drafts.push(draft);
                }
            }
        }
    }
    plan.drafts.sort_by(|a, b| {
        let mask =
            |d: &Draft| -> Vec<bool> { d.shape.path.split('/').map(|s| s == "{}").collect() };
        mask(a)
            .cmp(&mask(b))
            .then_with(|| a.template.cmp(&b.template))
            .then_with(|| a.shape.method.cmp(&b.shape.method))
    });
    plan
}

/// What the rules concluded about one shape.
#[derive(Debug)]
pub struct Classified {
    pub event: &'static str,
    pub confidence: Confidence,
    pub reasons: Vec<String>,
}

/// The words of a shape's literal segments (lowercase): each segment whole, split at `-`, `_`
/// and `.`, joined without them (`sign-in` → `sign`, `in`, `signin`), and a segment made of two
/// known words split in two (`passwordreset` → `password`, `reset`).
struct Words {
    segments: Vec<String>,
    words: Vec<String>,
}

/// Every word a rule looks for (for splitting compounds like `resetpassword`).
const VOCABULARY: &[&str] = &[
    "access",
    "account",
    "accounts",
    "activate",
    "admin",
    "authenticate",
    "authorize",
    "ban",
    "block",
    "challenge",
    "change",
    "confirm",
    "consent",
    "deactivate",
    "delete",
    "disable",
    "email",
    "enable",
    "exchange",
    "forgot",
    "grant",
    "impersonate",
    "introspect",
    "in",
    "lock",
    "log",
    "login",
    "logoff",
    "logout",
    "lost",
    "member",
    "members",
    "mfa",
    "new",
    "otp",
    "out",
    "password",
    "passwd",
    "permissions",
    "profile",
    "reactivate",
    "recover",
    "recovery",
    "refresh",
    "register",
    "registration",
    "request",
    "resend",
    "reset",
    "revoke",
    "role",
    "roles",
    "send",
    "session",
    "sessions",
    "set",
    "sign",
    "signin",
    "signout",
    "signup",
    "suspend",
    "token",
    "tokens",
    "totp",
    "unblock",
    "unlock",
    "up",
    "update",
    "user",
    "users",
    "verification",
    "verify",
];

impl Words {
    fn of(path: &str) -> Words {
        let segments: Vec<String> = path
            .split('/')
            .filter(|s| !s.is_empty())
            .map(str::to_ascii_lowercase)
            .collect();
        let mut words = Vec::new();
        for s in segments.iter().filter(|s| *s != "{}") {
            words.push(s.clone());
            let parts: Vec<&str> = s.split(['-', '_', '.']).filter(|p| !p.is_empty()).collect();
            if parts.len() > 1 {
                words.extend(parts.iter().map(|p| p.to_string()));
                words.push(parts.concat());
            }
            for p in parts {
                for (i, _) in p.char_indices().skip(1) {
                    let (a, b) = p.split_at(i);
                    if VOCABULARY.contains(&a) && VOCABULARY.contains(&b) {
                        words.push(a.to_string());
                        words.push(b.to_string());
                    }
                }
            }
        }
        Words { segments, words }
    }

    /// The first of `list` among the words.
    fn find(&self, list: &[&'static str]) -> Option<&'static str> {
        list.iter()
            .copied()
            .find(|w| self.words.iter().any(|x| x == w))
    }

    fn has(&self, list: &[&'static str]) -> bool {
        self.find(list).is_some()
    }

    /// The last segment is a parameter (`/users/{}`): the route acts on one thing.
    fn ends_with_param(&self) -> bool {
        self.segments.last().is_some_and(|s| s == "{}")
    }
}

const STATIC_EXTENSIONS: &[&str] = &[
    "css",
    "eot",
    "gif",
    "htm",
    "html",
    "ico",
    "jpeg",
    "jpg",
    "js",
    "map",
    "mjs",
    "png",
    "svg",
    "ttf",
    "txt",
    "webmanifest",
    "webp",
    "woff",
    "woff2",
];
const STATIC_DIRS: &[&str] = &[
    "_next",
    "assets",
    "css",
    "dist",
    "favicon.ico",
    "fonts",
    "images",
    "img",
    "js",
    "public",
    "static",
];
const HEALTH_WORDS: &[&str] = &[
    "health",
    "healthcheck",
    "healthz",
    "live",
    "livez",
    "liveness",
    "metrics",
    "ping",
    "ready",
    "readiness",
    "readyz",
    "status",
    "version",
];

/// Request keys that hold a password (their values are never seen; the name says enough).
const PASSWORD_KEYS: &[&str] = &[
    "password",
    "passwd",
    "pass",
    "new_password",
    "newPassword",
    "new_password1",
    "current_password",
    "currentPassword",
    "old_password",
    "oldPassword",
    "password1",
];
/// Request keys that name who logs in, best first.
const IDENTITY_KEYS: &[&str] = &[
    "username",
    "email",
    "login",
    "user",
    "userName",
    "user_name",
    "identifier",
    "phone",
    "phone_number",
];
/// Response keys of tokens handed out.
const ISSUED_KEYS: &[&str] = &[
    "access_token",
    "refresh_token",
    "id_token",
    "accessToken",
    "refreshToken",
    "idToken",
    "access",
    "refresh",
    "token",
    "session_token",
    "sessionToken",
];
/// Request keys of a refresh token presented.
const REFRESH_KEYS: &[&str] = &["refresh_token", "refreshToken", "refresh"];
/// Request keys of a one-time secret: a reset or verification token, an OTP.
const CODE_KEYS: &[&str] = &[
    "token",
    "code",
    "key",
    "otp",
    "totp",
    "uid",
    "mfa_code",
    "otp_code",
    "totp_code",
];
/// Response keys an error's reason is read from, best first.
const REASON_KEYS: &[&str] = &[
    "error",
    "error_code",
    "errorCode",
    "code",
    "detail",
    "message",
    "msg",
    "error_description",
    "title",
];
const USER_WORDS: &[&str] = &[
    "users", "user", "accounts", "account", "members", "member", "profile", "me", "admin",
];

fn any_key<'a>(keys: &'a [String], list: &[&str]) -> Option<&'a str> {
    list.iter()
        .find_map(|k| keys.iter().find(|x| x == k))
        .map(String::as_str)
}

fn keys_of<'a>(keys: &'a [String], list: &[&str]) -> Vec<&'a str> {
    list.iter()
        .filter_map(|k| keys.iter().find(|x| x == k))
        .map(String::as_str)
        .collect()
}

/// The event a shape looks like, or why it is no auth action.
pub fn classify(shape: &Shape) -> Result<Classified, &'static str> {
    let m = shape.method.to_ascii_uppercase();
    let w = Words::of(&shape.path);
    let e = &shape.evidence;
    if matches!(m.as_str(), "OPTIONS" | "HEAD" | "TRACE" | "CONNECT") {
        return Err("not an action (OPTIONS, HEAD)");
    }
    let last = w.segments.last().map_or("", String::as_str);
    let ext = last.rsplit_once('.').map(|(_, x)| x);
    if ext.is_some_and(|x| STATIC_EXTENSIONS.contains(&x))
        || w.segments
            .first()
            .is_some_and(|s| STATIC_DIRS.contains(&s.as_str()))
    {
        return Err("static asset");
    }
    if matches!(m.as_str(), "GET") && w.has(HEALTH_WORDS) {
        return Err("health check or status");
    }
    if w.segments.iter().any(|s| s == ".well-known") || w.has(&["jwks", "jwks.json", "certs"]) {
        return Err("discovery or key document");
    }
    let Some((event, word)) = event_of(&m, &w, e) else {
        return Err(if m == "GET" {
            "a read, not an auth action"
        } else {
            "no auth word in the path or the body names"
        });
    };
    if m == "GET"
        && !matches!(
            event,
            "auth.logout" | "email.verify.complete" | "account.verify" | "oauth.authorize"
        )
    {
        return Err("a read, not an auth action");
    }
    Ok(score(&m, event, word, e))
}

/// The event type, and the path word that chose it (`None`: chosen from body names only).
fn event_of(m: &str, w: &Words, e: &Evidence) -> Option<(&'static str, Option<&'static str>)> {
    let req = &e.request_keys;
    let has_code = any_key(req, CODE_KEYS).is_some();
    let has_password = any_key(req, PASSWORD_KEYS).is_some();
    let users = w.has(USER_WORDS);
    let hit = |list: &[&'static str]| w.find(list);
    if let Some(x) = hit(&["impersonate", "impersonation"]) {
        return Some(("support.impersonate", Some(x)));
    }
    if let Some(x) = hit(&["mfa", "otp", "totp", "2fa", "twofactor", "two-factor"]) {
        let challenge = w.has(&["challenge", "send", "resend", "request", "start"]);
        let event = if challenge {
            "auth.mfa.challenge"
        } else {
            "auth.mfa.verify"
        };
        return Some((event, Some(x)));
    }
    if let Some(x) = hit(&["logout", "signout", "logoff"]) {
        return Some(("auth.logout", Some(x)));
    }
    if let Some(x) = hit(&["revoke", "revocation"]) {
        let session = w.has(&["session", "sessions"]);
        return Some((
            if session {
                "session.revoke"
            } else {
                "token.revoke"
            },
            Some(x),
        ));
    }
    if let Some(x) = hit(&["refresh"]) {
        return Some(("token.refresh", Some(x)));
    }
    if let Some(x) = hit(&["forgot", "lost", "recover", "recovery"]) {
        let complete = has_code && has_password;
        let event = if complete {
            "password.reset.complete"
        } else {
            "password.reset.request"
        };
        return Some((event, Some(x)));
    }
    if let Some(x) = hit(&["reset"]) {
        let complete =
            w.has(&["confirm", "complete", "set", "new", "verify"]) || (has_code && has_password);
        let event = if complete {
            "password.reset.complete"
        } else {
            "password.reset.request"
        };
        return Some((event, Some(x)));
    }
    if let Some(x) = hit(&["password", "passwd"]) {
        return Some(("password.change", Some(x)));
    }
    if let Some(x) = hit(&["introspect"]) {
        return Some(("token.verify", Some(x)));
    }
    if let Some(x) = hit(&["authorize", "authorization"]) {
        return Some(("oauth.authorize", Some(x)));
    }
    if let Some(x) = hit(&["consent"]) {
        return Some(("oauth.consent", Some(x)));
    }
    if let Some(x) = hit(&["token", "tokens"]) {
        let event = match m {
            "DELETE" => "token.revoke",
            _ if w.has(&["verify"]) => "token.verify",
            _ if w.has(&["exchange"]) => "token.exchange",
            _ => "token.issue",
        };
        return Some((event, Some(x)));
    }
    if let Some(x) = hit(&["login", "signin", "authenticate", "logon"]) {
        return Some(("auth.login", Some(x)));
    }
    if let Some(x) = hit(&["session", "sessions"]) {
        return match m {
            "POST" if !w.ends_with_param() => Some(("auth.login", Some(x))),
            "DELETE" if w.ends_with_param() => Some(("session.revoke", Some(x))),
            "DELETE" => Some(("auth.logout", Some(x))),
            _ => None,
        };
    }
    if let Some(x) = hit(&["register", "registration", "signup", "join"]) {
        return Some(("account.register", Some(x)));
    }
    if users {
        let user_word = hit(USER_WORDS);
        if let Some(x) = hit(&["deactivate", "disable", "suspend", "ban", "block"]) {
            return Some(("account.deactivate", Some(x)));
        }
        if let Some(x) = hit(&["lock"]) {
            return Some(("account.lock", Some(x)));
        }
        if let Some(x) = hit(&[
            "reactivate",
            "activate",
            "enable",
            "unlock",
            "unban",
            "unblock",
        ]) {
            return Some(("account.reactivate", Some(x)));
        }
        if let Some(x) = hit(&["role", "roles", "permissions", "groups", "grant"]) {
            return match m {
                "DELETE" => Some(("admin.role.revoke", Some(x))),
                "POST" | "PUT" | "PATCH" => Some(("admin.role.grant", Some(x))),
                _ => None,
            };
        }
        if hit(&["verify", "confirm", "verification", "confirmation"]).is_none() {
            return match m {
                "DELETE" => Some(("account.delete", user_word)),
                "PATCH" | "PUT" => Some(("account.update", user_word)),
                "POST" if !w.ends_with_param() && has_password => {
                    Some(("account.register", user_word))
                }
                "POST" if !w.ends_with_param() => Some(("account.create", user_word)),
                _ => None,
            };
        }
    }
    if let Some(x) = hit(&[
        "verify",
        "confirm",
        "verification",
        "confirmation",
        "activate",
    ]) {
        let event = if w.has(&["request", "resend", "send"]) {
            "email.verify.request"
        } else if w.has(&["email"]) || has_code || m == "GET" {
            "email.verify.complete"
        } else {
            "account.verify"
        };
        return Some((event, Some(x)));
    }
    // No word in the path: the names in the bodies alone.
    let issued = any_key(&e.response_keys.s2xx, ISSUED_KEYS).is_some();
    if m == "POST" && has_password && any_key(req, IDENTITY_KEYS).is_some() && issued {
        return Some(("auth.login", None));
    }
    if m == "POST" && req.iter().any(|k| k == "grant_type") {
        return Some(("token.issue", None));
    }
    None
}

/// The methods an event's endpoint usually takes.
fn usual_methods(event: &str) -> &'static [&'static str] {
    match event {
        "auth.logout" => &["POST", "DELETE", "GET"],
        "token.revoke" | "admin.role.revoke" => &["POST", "DELETE"],
        "session.revoke" | "account.delete" => &["DELETE"],
        "account.update" => &["PATCH", "PUT"],
        "password.change"
        | "password.reset.complete"
        | "account.deactivate"
        | "account.reactivate"
        | "account.lock"
        | "admin.role.grant" => &["POST", "PUT", "PATCH"],
        "email.verify.complete" | "account.verify" | "oauth.authorize" => &["POST", "GET"],
        _ => &["POST"],
    }
}

/// How sure the rules are: a path word counts 2, the usual method 1, request names that fit
/// 1–2, response names (or cookies, redirect parameters) that fit 1–2; only server errors seen
/// take 1 away. High: 5 or more, with a path word and names from a body; medium: 3 or more;
/// low: the rest.
fn score(m: &str, event: &'static str, word: Option<&str>, e: &Evidence) -> Classified {
    let mut points = 0i32;
    let mut reasons = Vec::new();
    if let Some(word) = word {
        points += 2;
        reasons.push(format!("path word \"{word}\""));
    } else {
        reasons.push("no path word: body names only".to_string());
    }
    if usual_methods(event).contains(&m) {
        points += 1;
        reasons.push(m.to_string());
    } else {
        points -= 1;
        reasons.push(format!("{m} is unusual for {event}"));
    }
    let mut body = false;
    for (pts, why) in [request_fit(event, e), response_fit(event, e)]
        .into_iter()
        .flatten()
    {
        points += pts;
        body = true;
        reasons.push(why);
    }
    let s = &e.status;
    if s.s5xx > 0 && s.s2xx + s.s3xx + s.s4xx == 0 {
        points -= 1;
        reasons.push("only 5xx seen".to_string());
    }
    if e.observed == 0 {
        reasons.push("no response seen yet".to_string());
    }
    let confidence = if points >= 5 && word.is_some() && body {
        Confidence::High
    } else if points >= 3 {
        Confidence::Medium
    } else {
        Confidence::Low
    };
    Classified {
        event,
        confidence,
        reasons,
    }
}

/// Points (and why) for request names that fit `event`.
fn request_fit(event: &str, e: &Evidence) -> Option<(i32, String)> {
    let req = &e.request_keys;
    let ids = keys_of(req, IDENTITY_KEYS);
    let passwords = keys_of(req, PASSWORD_KEYS);
    let codes = keys_of(req, CODE_KEYS);
    let has = |names: &[&str]| format!("request has {}", names.join(", "));
    let both =
        |a: &[&str], b: &[&str]| format!("request has {} and {}", a.join(", "), b.join(", "));
    match event {
        "auth.login" | "account.register" if !ids.is_empty() && !passwords.is_empty() => {
            Some((2, both(&ids, &passwords)))
        }
        "auth.login" | "account.register" if !passwords.is_empty() => Some((1, has(&passwords))),
        "token.issue" => {
            let grant = keys_of(req, &["grant_type", "client_id", "code", "assertion"]);
            (!grant.is_empty()).then(|| (1, has(&grant)))
        }
        "token.refresh" | "token.revoke" | "token.verify" | "token.exchange" => {
            let presented = keys_of(req, &["refresh_token", "refreshToken", "refresh", "token"]);
            (!presented.is_empty()).then(|| (2, has(&presented)))
        }
        "password.reset.request" | "email.verify.request" if !ids.is_empty() => {
            Some((1, has(&ids)))
        }
        "password.reset.complete" if !codes.is_empty() && !passwords.is_empty() => {
            Some((2, both(&codes, &passwords)))
        }
        "password.change" if passwords.len() > 1 => Some((2, has(&passwords))),
        "password.change" if !passwords.is_empty() => Some((1, has(&passwords))),
        "auth.mfa.verify" | "email.verify.complete" | "account.verify" if !codes.is_empty() => {
            Some((1, has(&codes)))
        }
        "account.update" | "account.create" | "admin.role.grant" if !req.is_empty() => {
            let names: Vec<&str> = req.iter().take(6).map(String::as_str).collect();
            Some((1, has(&names)))
        }
        _ => None,
    }
}

/// Points (and why) for response names, cookies or redirect parameters that fit `event`.
fn response_fit(event: &str, e: &Evidence) -> Option<(i32, String)> {
    let ok = &e.response_keys.s2xx;
    let issued = keys_of(ok, ISSUED_KEYS);
    let cookies = || format!("response sets cookie {}", e.cookies_set.join(", "));
    match event {
        "auth.login" | "token.issue" | "token.refresh" | "token.exchange" | "auth.mfa.verify"
            if !issued.is_empty() =>
        {
            Some((2, format!("2xx response has {}", issued.join(", "))))
        }
        "auth.login" | "auth.mfa.verify" | "auth.logout" if !e.cookies_set.is_empty() => {
            Some((1, cookies()))
        }
        "account.register" | "account.create" => {
            let user = keys_of(ok, &["id", "user", "user_id", "email", "username"]);
            (!user.is_empty()).then(|| (1, format!("2xx response has {}", user.join(", "))))
        }
        "oauth.authorize" => {
            let params: Vec<&str> = e
                .location_params
                .iter()
                .map(String::as_str)
                .filter(|p| matches!(*p, "code" | "error" | "state"))
                .collect();
            (!params.is_empty()).then(|| (2, format!("redirects with {}", params.join(", "))))
        }
        _ => None,
    }
}

/// The path template of a shape: each `{}` a named parameter — the last `{id}`, earlier ones
/// after the segment before them (`/orgs/{}/users/{}` → `/orgs/{org_id}/users/{id}`).
pub fn template(shape: &str) -> (String, Vec<String>) {
    let segments: Vec<&str> = shape.split('/').filter(|s| !s.is_empty()).collect();
    let total = segments.iter().filter(|s| **s == "{}").count();
    let mut seen = 0;
    let mut params: Vec<String> = Vec::new();
    let mut out = String::new();
    for (i, s) in segments.iter().enumerate() {
        out.push('/');
        if *s != "{}" {
            out.push_str(s);
            continue;
        }
        seen += 1;
        let base = if seen == total {
            "id".to_string()
        } else {
            let prev = i.checked_sub(1).map_or("", |j| segments[j]);
            let word: String = prev
                .trim_end_matches('s')
                .chars()
                .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
                .collect();
            if word.is_empty()
                || word == "{}"
                || !word.starts_with(|c: char| c.is_ascii_alphabetic())
            {
                format!("p{seen}")
            } else {
                format!("{word}_id")
            }
        };
        let mut name = base.clone();
        let mut n = 2;
        while params.contains(&name) {
            name = format!("{base}{n}");
            n += 1;
        }
        out.push('{');
        out.push_str(&name);
        out.push('}');
        params.push(name);
    }
    if out.is_empty() {
        out.push('/');
    }
    (out, params)
}

/// A route id from the path's words (`/api/v2/password/forgot` → `password-forgot`), unique
/// among `ids` (then taken).
fn route_id(shape: &Shape, event: &str, ids: &mut BTreeSet<String>) -> String {
    let words: Vec<String> = shape
        .path
        .split('/')
        .filter(|s| !s.is_empty() && *s != "{}")
        .filter(|s| {
            let v = s.strip_prefix('v').unwrap_or("x");
            *s != "api" && !(v.len() <= 2 && !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()))
        })
        .map(|s| {
            s.chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() {
                        c.to_ascii_lowercase()
                    } else {
                        '-'
                    }
                })
                .collect::<String>()
                .trim_matches('-')
                .to_string()
        })
        .filter(|s| !s.is_empty())
        .collect();
    let mut base = if words.is_empty() {
        event.replace('.', "-")
    } else {
        words.join("-")
    };
    let method = shape.method.to_ascii_lowercase();
    if method != "post" {
        base = format!("{base}-{method}");
    }
    let mut id = base.clone();
    if ids.contains(&id) && !base.ends_with(&method) {
        id = format!("{base}-{method}");
    }
    let mut n = 2;
    while ids.contains(&id) {
        id = format!("{base}-{n}");
        n += 1;
    }
    ids.insert(id.clone());
    id
}

/// The route a classified shape gets.
fn build(shape: Shape, c: Classified, facts: &ConfigFacts, ids: &mut BTreeSet<String>) -> Draft {
    let (template, params) = template(&shape.path);
    let id = route_id(&shape, c.event, ids);
    let e = &shape.evidence;
    let event = c.event;
    let req = &e.request_keys;
    let mut fields: Vec<(&'static str, Value)> = Vec::new();
    let mut notes = Vec::new();
    fields.push((
        "match",
        json!({ "method": shape.method.to_ascii_uppercase(), "path": template }),
    ));
    fields.push(("event", json!(event)));

    let typed = |k: &str| json!({ "request_body": format!("/{k}") });
    let ident = any_key(req, IDENTITY_KEYS);
    let bearer = facts
        .subject_claim
        .as_ref()
        .map(|claim| json!({ "claim": claim }));
    let path_id = params.last().filter(|p| *p == "id").cloned();
    let self_service = shape.path.split('/').any(|s| s == "me");
    let admin_action = matches!(
        event,
        "account.delete"
            | "account.update"
            | "account.create"
            | "account.deactivate"
            | "account.reactivate"
            | "account.lock"
            | "admin.role.grant"
            | "admin.role.revoke"
            | "support.impersonate"
            | "session.revoke"
    ) && path_id.is_some()
        || matches!(event, "account.create" | "support.impersonate");

    // Who acted.
    let actor = match event {
        "auth.login" | "auth.mfa.verify" if ident.is_some() => {
            Some(typed(ident.unwrap_or_default()))
        }
        "account.register" => {
            let mut from = Vec::new();
            if e.response_keys.s2xx.iter().any(|k| k == "id") {
                from.push(json!({ "response_body": "/id" }));
            }
            if let Some(k) = ident {
                from.push(typed(k));
            }
            match from.len() {
                0 => None,
                1 => from.pop(),
                _ => Some(Value::Array(from)),
            }
        }
        "password.reset.request"
        | "password.reset.complete"
        | "email.verify.request"
        | "email.verify.complete"
        | "account.verify"
        | "auth.mfa.challenge" => None,
        "token.issue" | "token.refresh" | "oauth.authorize" | "oauth.consent" => None,
        _ => bearer.clone(),
    };
    match actor {
        Some(a) => fields.push(("actor", a)),
        None => match event {
            "auth.logout" | "password.change" | "account.update" | "account.delete"
            | "account.deactivate" | "account.reactivate" | "account.lock"
            | "admin.role.grant" | "admin.role.revoke" | "session.revoke"
            | "support.impersonate" | "account.create" | "token.revoke" => notes.push(
                "actor: add { claim: sub } once a key set verifies the bearer token (keys:, defaults.keys), or a session cookie (session:)".to_string(),
            ),
            "auth.login" | "token.issue" | "token.refresh" => notes.push(
                "actor: a verified one comes from the token issued: { issued_token: /access_token, claim: sub } with a key set".to_string(),
            ),
            _ => {}
        },
    }
    if admin_action && facts.subject_claim.is_some() {
        fields.push(("actor_kind", json!("admin")));
    }

    // Whom it was done to.
    let target = match event {
        "password.reset.request" | "email.verify.request" => ident.map(|k| {
            let kind = if k.contains("mail") {
                "email"
            } else {
                "username"
            };
            json!({ "kind": kind, "from": typed(k) })
        }),
        "account.register" => fields
            .iter()
            .find(|(k, _)| *k == "actor")
            .map(|(_, a)| json!({ "kind": "user", "from": a })),
        _ if path_id.is_some()
            && (event.starts_with("account.")
                || event.starts_with("admin.")
                || event == "support.impersonate"
                || event == "session.revoke") =>
        {
            let kind = if event == "session.revoke" {
                "session"
            } else {
                "user"
            };
            let mut t =
                json!({ "kind": kind, "from": { "path": path_id.clone().unwrap_or_default() } });
            if kind == "user" {
                if let Some(d) = any_key(&e.response_keys.s2xx, &["email", "username"]) {
                    t["display"] = json!({ "response_body": format!("/{d}") });
                }
            }
            Some(t)
        }
        "account.update" | "account.delete" | "password.change" if self_service => {
            bearer.clone().map(|b| json!({ "kind": "user", "from": b }))
        }
        _ => None,
    };
    if let Some(t) = target {
        fields.push(("target", t));
    }

    // How it ended.
    let mut outcome = serde_json::Map::new();
    let mut success = vec![json!("2xx")];
    if e.status.s3xx > 0 && e.status.s3xx >= e.status.s2xx {
        success.push(json!("3xx"));
    }
    outcome.insert("success".into(), Value::Array(success));
    outcome.insert("failure".into(), json!(["4xx"]));
    let failures: Vec<String> = e
        .response_keys
        .s4xx
        .iter()
        .chain(&e.response_keys.s3xx)
        .cloned()
        .collect();
    if let Some(r) = any_key(&failures, REASON_KEYS) {
        outcome.insert("reason".into(), json!(format!("/{r}")));
    }
    fields.push(("outcome", Value::Object(outcome)));

    // Tokens handed out or handed in.
    let issued: Vec<String> = match event {
        "auth.login" | "token.issue" | "token.refresh" | "token.exchange" | "auth.mfa.verify"
        | "account.register" => keys_of(&e.response_keys.s2xx, ISSUED_KEYS)
            .into_iter()
            .map(|k| format!("/{k}"))
            .collect(),
        _ => Vec::new(),
    };
    let presented: Vec<String> = match event {
        "token.refresh" => keys_of(req, REFRESH_KEYS),
        "token.revoke" | "token.verify" | "token.exchange" => {
            keys_of(req, &["token", "refresh_token", "refreshToken", "refresh"])
        }
        _ => Vec::new(),
    }
    .into_iter()
    .map(|k| format!("/{k}"))
    .collect();
    let redirect: Vec<&str> = match event {
        "oauth.authorize" | "auth.login" => e
            .location_params
            .iter()
            .map(String::as_str)
            .filter(|p| *p == "code")
            .collect(),
        _ => Vec::new(),
    };
    if !issued.is_empty() || !presented.is_empty() || !redirect.is_empty() {
        let mut t = serde_json::Map::new();
        if !presented.is_empty() {
            t.insert("presented".into(), json!(presented));
        }
        if !issued.is_empty() {
            t.insert("issued".into(), json!(issued));
        }
        if !redirect.is_empty() {
            t.insert("redirect".into(), json!(redirect));
        }
        if facts.fingerprint_key {
            fields.push(("tokens", Value::Object(t)));
        } else {
            notes.push(format!(
                "tokens: {} — recording tokens needs trust.fingerprint_key",
                flow(&Value::Object(t))
            ));
        }
    }
    if matches!(event, "auth.login" | "auth.logout") && !e.cookies_set.is_empty() {
        notes.push(format!(
            "session: {{ cookies: [{}] }} if these are session cookies (needs trust.fingerprint_key)",
            e.cookies_set.join(", ")
        ));
    }
    if event == "token.issue" {
        notes.push(
            "one path, several grants: split it with match.body: { /grant_type: ... } (see config/presets/django-oauth-toolkit.yaml)".to_string(),
        );
    }
    Draft {
        shape,
        id,
        template,
        event,
        confidence: c.confidence,
        reasons: c.reasons,
        fields,
        notes,
        rejected: None,
    }
}

/// A YAML flow rendering of `v`: plain scalars where YAML reads them back as the same string,
/// double-quoted (JSON) otherwise.
pub fn flow(v: &Value) -> String {
    match v {
        Value::String(s) => {
            let plain = !s.is_empty()
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '/' | '-'))
                && !s.starts_with(['-', '.'])
                && !s.starts_with(|c: char| c.is_ascii_digit())
                || is_status_class(s);
            let keyword = matches!(
                s.to_ascii_lowercase().as_str(),
                "true" | "false" | "null" | "yes" | "no" | "on" | "off" | "y" | "n" | "~"
            );
            if plain && !keyword {
                s.clone()
            } else {
                serde_json::to_string(s).unwrap_or_default()
            }
        }
        Value::Array(a) => format!("[{}]", a.iter().map(flow).collect::<Vec<_>>().join(", ")),
        Value::Object(m) => {
            let mut pairs: Vec<(&String, &Value)> = m.iter().collect();
            pairs.sort_by_key(|(k, _)| KEY_ORDER.iter().position(|o| o == k).unwrap_or(usize::MAX));
            format!(
                "{{ {} }}",
                pairs
                    .iter()
                    .map(|(k, v)| format!("{k}: {}", flow(v)))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        }
        other => other.to_string(),
    }
}

/// The order keys are written in, as the configuration reference writes them (others after).
const KEY_ORDER: &[&str] = &[
    "method",
    "path",
    "kind",
    "from",
    "display",
    "success",
    "failure",
    "error",
    "reason",
    "presented",
    "issued",
    "redirect",
];

fn is_status_class(s: &str) -> bool {
    s.len() == 3 && s.as_bytes()[0].is_ascii_digit() && s.ends_with("xx")
}

/// The result of checking the draft against the config.
#[derive(Debug)]
pub enum Checked {
    /// The config with every route of the draft loads.
    Accepted,
    /// The config alone does not load here (so the draft could not be checked): why.
    Unchecked(String),
}

/// Merge the draft's routes into the config (after its own) and load it as `check` does, with
/// unset `${ENV}` read as stand-ins; a route that makes it fail is marked rejected, with the
/// loader's message, and left out of the rest of the check.
pub fn check_merged(config: &str, file: &str, plan: &mut Plan) -> Checked {
    let base: Value = match serde_saphyr::from_str(config) {
        Ok(v) => v,
        Err(e) => return Checked::Unchecked(e.to_string()),
    };
    let load = |extra: &[Value]| -> Result<(), String> {
        let mut merged = base.clone();
        if merged.is_null() {
            merged = json!({});
        }
        let Some(obj) = merged.as_object_mut() else {
            return Err("the config is not a mapping".into());
        };
        let routes = obj.entry("routes").or_insert_with(|| json!([]));
        if routes.is_null() {
            *routes = json!([]);
        }
        let Some(list) = routes.as_array_mut() else {
            return Err("routes is not a list".into());
        };
        list.extend(extra.iter().cloned());
        let text = merged.to_string();
        crate::config::types::read_only(|| crate::config::load_str(&text, file))
            .map(|_| ())
            .map_err(|e| e.to_string())
    };
    // The file itself first, so a problem of its own is reported at its own line.
    if let Err(e) = crate::config::types::read_only(|| crate::config::load_str(config, file)) {
        return Checked::Unchecked(e.to_string());
    }
    if let Err(e) = load(&[]) {
        return Checked::Unchecked(without_position(&e, file));
    }
    // Each route as the draft writes it, read back from its YAML.
    let parsed: Vec<Result<Value, String>> = plan
        .drafts
        .iter()
        .map(|d| {
            let text = format!("routes:\n{}", d.yaml());
            serde_saphyr::from_str::<Value>(&text)
                .map_err(|e| e.to_string())
                .map(|v| v["routes"][0].clone())
        })
        .collect();
    let all: Vec<Value> = parsed.iter().filter_map(|p| p.clone().ok()).collect();
    if all.len() == parsed.len() && load(&all).is_ok() {
        return Checked::Accepted;
    }
    let mut kept: Vec<Value> = Vec::new();
    for (d, p) in plan.drafts.iter_mut().zip(parsed) {
        let route = match p {
            Ok(r) => r,
            Err(e) => {
                d.rejected = Some(e);
                continue;
            }
        };
        let mut with = kept.clone();
        with.push(route.clone());
        match load(&with) {
            Ok(()) => kept.push(route),
            Err(e) => d.rejected = Some(without_position(&e, file)),
        }
    }
    Checked::Accepted
}

/// Counts and names, one line.
fn evidence_lines(s: &Shape) -> Vec<String> {
    let e = &s.evidence;
    let mut out = Vec::new();
    let st = &e.status;
    let classes: Vec<String> = [
        ("2xx", st.s2xx),
        ("3xx", st.s3xx),
        ("4xx", st.s4xx),
        ("5xx", st.s5xx),
    ]
    .iter()
    .filter(|(_, n)| *n > 0)
    .map(|(c, n)| format!("{c} ×{n}"))
    .collect();
    let rc = &e.request_content;
    let bodies: Vec<String> = [
        ("json", rc.json),
        ("form", rc.form),
        ("other", rc.other),
        ("no body", rc.none),
    ]
    .iter()
    .filter(|(_, n)| *n > 0)
    .map(|(c, n)| format!("{c} ×{n}"))
    .collect();
    out.push(format!(
        "{} {}: {}; responses {}; request bodies {}",
        s.method,
        s.path,
        requests(s.count),
        if classes.is_empty() {
            "none seen".to_string()
        } else {
            classes.join(", ")
        },
        if bodies.is_empty() {
            "none seen".to_string()
        } else {
            bodies.join(", ")
        },
    ));
    if !e.request_keys.is_empty() {
        out.push(format!("  request keys: {}", e.request_keys.join(", ")));
    }
    let rk = &e.response_keys;
    let resp: Vec<String> = [
        ("2xx", &rk.s2xx),
        ("3xx", &rk.s3xx),
        ("4xx", &rk.s4xx),
        ("5xx", &rk.s5xx),
    ]
    .iter()
    .filter(|(_, k)| !k.is_empty())
    .map(|(c, k)| format!("{c} {}", k.join(", ")))
    .collect();
    if !resp.is_empty() {
        out.push(format!("  response keys: {}", resp.join("; ")));
    }
    if !e.cookies_set.is_empty() {
        out.push(format!("  cookies set: {}", e.cookies_set.join(", ")));
    }
    if !e.location_params.is_empty() {
        out.push(format!(
            "  redirect parameters: {}",
            e.location_params.join(", ")
        ));
    }
    out
}

/// A comment line: no line break can end it early.
fn comment(out: &mut String, indent: &str, text: &str) {
    for line in text.lines() {
        out.push_str(indent);
        out.push('#');
        if !line.is_empty() {
            out.push(' ');
            out.push_str(line);
        }
        out.push('\n');
    }
}

/// `1 request`, `3 requests`.
fn requests(n: u64) -> String {
    if n == 1 {
        "1 request".to_string()
    } else {
        format!("{n} requests")
    }
}

/// A loader message without the position in the merged text it was checked as (which is not
/// the user's file): `f.yaml:1:184: routes[1].match: …` → `routes[1].match: …`.
fn without_position(msg: &str, file: &str) -> String {
    msg.lines()
        .map(|line| {
            let rest = line.strip_prefix(file).and_then(|r| r.strip_prefix(':'));
            let stripped = rest.and_then(|r| {
                let mut it = r.splitn(3, ':');
                let (l, c, tail) = (it.next()?, it.next()?, it.next()?);
                let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
                (digits(l) && digits(c)).then(|| tail.trim_start().to_string())
            });
            stripped.unwrap_or_else(|| line.to_string())
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// Most skipped (or low-confidence) shapes listed in the header.
const LISTED: usize = 20;

/// The YAML draft: a header saying where it came from, what was skipped and how it was
/// checked, then `routes:` with each route under its evidence and confidence.
pub fn render(plan: &Plan, url: &str, file: &str, overflow: u64, checked: &Checked) -> String {
    let mut out = String::new();
    let accepted: Vec<&Draft> = plan
        .drafts
        .iter()
        .filter(|d| d.rejected.is_none())
        .collect();
    let rejected: Vec<&Draft> = plan
        .drafts
        .iter()
        .filter(|d| d.rejected.is_some())
        .collect();
    let count = |c: Confidence| accepted.iter().filter(|d| d.confidence == c).count();
    let mut head = format!(
        "Draft routes from authtrail suggest: the unmapped traffic {url} reported.\n\
         {} routes suggested ({} high, {} medium, {} low confidence); {} shapes skipped as not auth actions",
        accepted.len(),
        count(Confidence::High),
        count(Confidence::Medium),
        count(Confidence::Low),
        plan.skipped.len(),
    );
    if !plan.below.is_empty() {
        head.push_str(&format!("; {} below --min-confidence", plan.below.len()));
    }
    if !rejected.is_empty() {
        head.push_str(&format!(
            "; {} left commented out (the config would not load with them)",
            rejected.len()
        ));
    }
    head.push_str(".\n");
    if overflow > 0 {
        head.push_str(&format!(
            "{overflow} requests of shapes past the sidecar's tracking limit are not in it.\n"
        ));
    }
    head.push_str(
        "Every guess — event type, outcome, actor, target, tokens — comes from path words, methods,\n\
         status classes and the names of body keys, cookies and redirect parameters; never from a\n\
         value. Review each route, then paste the entries below under `routes:` in your config,\n\
         after your own routes, and run `authtrail check`.\n",
    );
    match checked {
        Checked::Accepted => head.push_str(&format!(
            "Checked: {file} with these routes added loads as `authtrail check` loads it.\n"
        )),
        Checked::Unchecked(why) => head.push_str(&format!(
            "Not checked: {file} does not load here on its own ({}).\n",
            why.lines().next().unwrap_or_default()
        )),
    }
    comment(&mut out, "", &head);
    if !plan.skipped.is_empty() {
        comment(&mut out, "", "\nSkipped:");
        for (s, why) in plan.skipped.iter().take(LISTED) {
            comment(
                &mut out,
                "",
                &format!("  {} {} ({}): {why}", s.method, s.path, requests(s.count)),
            );
        }
        if plan.skipped.len() > LISTED {
            comment(
                &mut out,
                "",
                &format!("  … and {} more", plan.skipped.len() - LISTED),
            );
        }
    }
    if !plan.below.is_empty() {
        comment(&mut out, "", "\nBelow --min-confidence:");
        for d in plan.below.iter().take(LISTED) {
            comment(
                &mut out,
                "",
                &format!(
                    "  {} {}: {} ({})",
                    d.shape.method,
                    d.shape.path,
                    d.event,
                    d.confidence.as_str()
                ),
            );
        }
    }
    if plan.drafts.is_empty() {
        out.push_str("routes: []\n");
        return out;
    }
    out.push_str("routes:\n");
    for d in &plan.drafts {
        out.push('\n');
        for line in evidence_lines(&d.shape) {
            comment(&mut out, "  ", &line);
        }
        comment(
            &mut out,
            "  ",
            &format!(
                "confidence: {} — {}",
                d.confidence.as_str(),
                d.reasons.join("; ")
            ),
        );
        for n in &d.notes {
            comment(&mut out, "  ", &format!("TODO {n}"));
        }
        match &d.rejected {
            None => out.push_str(&d.yaml()),
            Some(why) => {
                comment(
                    &mut out,
                    "  ",
                    &format!("left out: the config does not load with it: {why}"),
                );
                for line in d.yaml().lines() {
                    comment(&mut out, "", line);
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proxy::coverage::{ClassCounts, ClassKeys, ContentCounts};

    fn shape(method: &str, path: &str, f: impl FnOnce(&mut Evidence)) -> Shape {
        let mut evidence = Evidence {
            observed: 3,
            status: ClassCounts {
                s2xx: 3,
                ..ClassCounts::default()
            },
            ..Evidence::default()
        };
        f(&mut evidence);
        Shape {
            method: method.into(),
            path: path.into(),
            count: 3,
            evidence,
        }
    }

    fn keys(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn auth_actions_are_told_from_the_rest() {
        let login = shape("POST", "/api/v2/login", |e| {
            e.request_keys = keys(&["password", "username"]);
            e.response_keys = ClassKeys {
                s2xx: keys(&["access_token", "refresh_token", "token_type"]),
                s4xx: keys(&["error"]),
                ..ClassKeys::default()
            };
            e.request_content = ContentCounts {
                json: 3,
                ..ContentCounts::default()
            };
        });
        let c = classify(&login).unwrap();
        assert_eq!(c.event, "auth.login");
        assert_eq!(c.confidence, Confidence::High, "{:?}", c.reasons);
        let cases = [
            ("POST", "/api/v2/logout", "auth.logout"),
            ("POST", "/auth/sign-out", "auth.logout"),
            ("POST", "/api/v2/password/forgot", "password.reset.request"),
            ("POST", "/passwordreset", "password.reset.request"),
            ("POST", "/password/reset/confirm", "password.reset.complete"),
            ("POST", "/users/me/password", "password.change"),
            ("PATCH", "/api/v2/users/{}", "account.update"),
            ("DELETE", "/api/v2/users/{}", "account.delete"),
            ("POST", "/admin/users/{}/deactivate", "account.deactivate"),
            ("POST", "/admin/users/{}/unlock", "account.reactivate"),
            ("POST", "/users/{}/roles", "admin.role.grant"),
            ("DELETE", "/users/{}/roles/{}", "admin.role.revoke"),
            ("POST", "/oauth/token", "token.issue"),
            ("POST", "/token/refresh", "token.refresh"),
            ("POST", "/oauth2/revoke", "token.revoke"),
            ("POST", "/oauth2/introspect", "token.verify"),
            ("POST", "/mfa/verify", "auth.mfa.verify"),
            ("POST", "/2fa/challenge", "auth.mfa.challenge"),
            ("POST", "/signup", "account.register"),
            ("POST", "/auth/verify-email", "email.verify.complete"),
            ("POST", "/auth/verify-email/resend", "email.verify.request"),
            ("DELETE", "/sessions/{}", "session.revoke"),
            ("POST", "/v1/sessions", "auth.login"),
            ("GET", "/oauth/authorize", "oauth.authorize"),
            ("GET", "/logout", "auth.logout"),
            ("POST", "/admin/impersonate", "support.impersonate"),
        ];
        for (m, p, event) in cases {
            let c = classify(&shape(m, p, |_| {}))
                .unwrap_or_else(|why| panic!("{m} {p}: skipped: {why}"));
            assert_eq!(c.event, event, "{m} {p}");
        }
        for (m, p, why) in [
            ("GET", "/static/app.js", "static asset"),
            ("GET", "/favicon.ico", "static asset"),
            ("GET", "/healthz", "health check or status"),
            (
                "GET",
                "/.well-known/openid-configuration",
                "discovery or key document",
            ),
            ("GET", "/api/v2/users/{}", "a read, not an auth action"),
            (
                "POST",
                "/api/v2/orders",
                "no auth word in the path or the body names",
            ),
            ("OPTIONS", "/login", "not an action (OPTIONS, HEAD)"),
        ] {
            assert_eq!(classify(&shape(m, p, |_| {})).unwrap_err(), why, "{m} {p}");
        }
        // Body names alone: a login at an unhelpful path, never high.
        let hidden = shape("POST", "/api/v2/do", |e| {
            e.request_keys = keys(&["email", "password"]);
            e.response_keys.s2xx = keys(&["access_token"]);
        });
        let c = classify(&hidden).unwrap();
        assert_eq!(c.event, "auth.login");
        assert_eq!(c.confidence, Confidence::Medium);
    }

    #[test]
    fn templates_name_their_parameters() {
        assert_eq!(template("/api/v2/users/{}").0, "/api/v2/users/{id}");
        assert_eq!(template("/orgs/{}/users/{}").0, "/orgs/{org_id}/users/{id}");
        assert_eq!(template("/{}/{}").0, "/{p1}/{id}");
        assert_eq!(template("/").0, "/");
        for t in [
            "/api/v2/users/{}",
            "/orgs/{}/users/{}",
            "/{}/{}",
            "/a/{}/{}/b",
        ] {
            crate::classify::PathTemplate::parse(&template(t).0).unwrap();
        }
    }

    #[test]
    fn flow_quotes_what_yaml_would_read_otherwise() {
        assert_eq!(flow(&json!("auth.login")), "auth.login");
        assert_eq!(flow(&json!("/username")), "/username");
        assert_eq!(flow(&json!("2xx")), "2xx");
        assert_eq!(flow(&json!("/a/{id}")), "\"/a/{id}\"");
        assert_eq!(flow(&json!("on")), "\"on\"");
        assert_eq!(flow(&json!("200")), "\"200\"");
        assert_eq!(flow(&json!("-x")), "\"-x\"");
        assert_eq!(flow(&json!("a: b")), "\"a: b\"");
        assert_eq!(
            flow(&json!({ "reason": "/error", "success": ["2xx"], "failure": ["4xx"] })),
            "{ success: [2xx], failure: [4xx], reason: /error }"
        );
    }

    #[test]
    fn the_draft_loads_merged_into_the_config() {
        let facts_yaml = "upstream: http://127.0.0.1:9\ntrust:\n  fingerprint_key: ${SUGGEST_UNIT_FP_KEY}\nroutes:\n  - id: login\n    match: { method: POST, path: /v1/sessions }\n    event: auth.login\n";
        let facts = ConfigFacts::read(facts_yaml).unwrap();
        assert!(facts.fingerprint_key);
        assert!(facts.route_ids.contains("login"));
        let shapes = vec![
            shape("POST", "/api/v2/login", |e| {
                e.request_keys = keys(&["password", "username"]);
                e.response_keys.s2xx = keys(&["access_token", "refresh_token"]);
                e.response_keys.s4xx = keys(&["error"]);
            }),
            shape("PATCH", "/api/v2/users/{}", |e| {
                e.request_keys = keys(&["display_name"]);
                e.response_keys.s2xx = keys(&["email", "id"]);
            }),
            shape("PATCH", "/api/v2/users/me", |_| {}),
            shape("POST", "/api/v2/logout", |_| {}),
            shape("GET", "/static/app.js", |_| {}),
        ];
        let mut plan = plan(shapes, &facts, Confidence::Low);
        assert_eq!(plan.drafts.len(), 4);
        assert_eq!(plan.skipped.len(), 1);
        let ids: Vec<&str> = plan.drafts.iter().map(|d| d.id.as_str()).collect();
        // "login" is taken by the config; `/users/me` comes before `/users/{id}`.
        assert_eq!(
            ids,
            ["login-post", "logout", "users-me-patch", "users-patch"]
        );
        let checked = check_merged(facts_yaml, "unit.yaml", &mut plan);
        assert!(matches!(checked, Checked::Accepted), "{checked:?}");
        assert!(
            plan.drafts.iter().all(|d| d.rejected.is_none()),
            "{:?}",
            plan.drafts.iter().map(|d| &d.rejected).collect::<Vec<_>>()
        );
        let text = render(&plan, "http://x/v1/coverage", "unit.yaml", 0, &checked);
        let merged = format!("{facts_yaml}{}", text.split_once("routes:\n").unwrap().1);
        crate::config::types::read_only(|| crate::config::load_str(&merged, "merged.yaml"))
            .unwrap_or_else(|e| panic!("{e}\n{merged}"));
        // Without the fingerprint key the tokens are a TODO, and the draft still loads.
        let no_fp = "upstream: http://127.0.0.1:9\nroutes: []\n";
        let facts = ConfigFacts::read(no_fp).unwrap();
        let mut plan2 = super::plan(
            vec![shape("POST", "/api/v2/login", |e| {
                e.request_keys = keys(&["password", "username"]);
                e.response_keys.s2xx = keys(&["access_token"]);
            })],
            &facts,
            Confidence::Low,
        );
        assert!(matches!(
            check_merged(no_fp, "unit.yaml", &mut plan2),
            Checked::Accepted
        ));
        assert!(plan2.drafts[0].rejected.is_none());
        assert!(plan2.drafts[0]
            .notes
            .iter()
            .any(|n| n.contains("fingerprint_key")));
    }

    #[test]
    fn with_one_key_set_the_bearer_token_names_the_actor() {
        let config = "upstream: http://127.0.0.1:9\ntrust:\n  fingerprint_key: ${SUGGEST_UNIT_FP}\nkeys:\n  idp:\n    secret: ${SUGGEST_UNIT_SECRET}\n    algorithms: [HS256]\n    subject_claim: user_id\nroutes: []\n";
        let facts = ConfigFacts::read(config).unwrap();
        assert_eq!(facts.subject_claim.as_deref(), Some("user_id"));
        let mut plan = plan(
            vec![
                shape("POST", "/auth/logout", |_| {}),
                shape("DELETE", "/admin/users/{}", |_| {}),
                shape("PATCH", "/users/me", |e| e.request_keys = keys(&["email"])),
            ],
            &facts,
            Confidence::Low,
        );
        let by_event = |ev: &str| plan.drafts.iter().find(|d| d.event == ev).unwrap();
        let field = |d: &Draft, k: &str| {
            d.fields
                .iter()
                .find(|(f, _)| *f == k)
                .map(|(_, v)| v.clone())
        };
        let logout = by_event("auth.logout");
        assert_eq!(field(logout, "actor"), Some(json!({ "claim": "user_id" })));
        let delete = by_event("account.delete");
        assert_eq!(field(delete, "actor_kind"), Some(json!("admin")));
        assert_eq!(
            field(delete, "target"),
            Some(json!({ "kind": "user", "from": { "path": "id" } }))
        );
        let me = by_event("account.update");
        assert_eq!(
            field(me, "target"),
            Some(json!({ "kind": "user", "from": { "claim": "user_id" } }))
        );
        assert!(matches!(
            check_merged(config, "unit.yaml", &mut plan),
            Checked::Accepted
        ));
        assert!(
            plan.drafts.iter().all(|d| d.rejected.is_none()),
            "{:?}",
            plan.drafts.iter().map(|d| &d.rejected).collect::<Vec<_>>()
        );
    }

    #[test]
    fn a_config_that_does_not_load_is_named_with_its_own_line() {
        let config = "upstream: http://127.0.0.1:9\nroutes:\n  - id: a\n    match: { path: \"/x/{id\" }\n    event: auth.login\n";
        let mut plan = Plan::default();
        match check_merged(config, "bad.yaml", &mut plan) {
            Checked::Unchecked(why) => assert!(why.starts_with("bad.yaml:4:"), "{why}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_route_the_config_refuses_is_left_commented_out() {
        // A route literal kept readable can make a suggestion that an earlier one hides.
        let config = "upstream: http://127.0.0.1:9\nroutes:\n  - id: any-user\n    match: { method: PATCH, path: \"/api/users/{x}\" }\n    event: account.update\n";
        let facts = ConfigFacts::read(config).unwrap();
        let mut plan = plan(
            vec![shape("PATCH", "/api/users/{}", |_| {})],
            &facts,
            Confidence::Low,
        );
        let checked = check_merged(config, "unit.yaml", &mut plan);
        assert!(matches!(checked, Checked::Accepted));
        let why = plan.drafts[0].rejected.as_deref().unwrap();
        assert!(
            why.starts_with("routes[1].match: route \"users-patch\" can never match"),
            "{why}"
        );
        let text = render(&plan, "u", "unit.yaml", 0, &checked);
        assert!(text.contains("#   - id: users-patch"), "{text}");
        crate::config::types::read_only(|| {
            crate::config::load_str(
                &format!("{config}{}", text.split_once("routes:\n").unwrap().1),
                "m.yaml",
            )
        })
        .unwrap();
    }
}
