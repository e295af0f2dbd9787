//! Synthetic trails for the query benchmarks (`authtrail generate`): plausible auth traffic —
//! skewed apps and actors, mostly logins and refreshes, a realistic share of failures, tokens
//! that recur across their issue, refresh and revoke — appended to a store through its normal
//! chain-appending path, in time order. Repeatable for a given seed; it never reads the store.

use std::net::{IpAddr, Ipv4Addr};

use serde_json::Map;
use time::OffsetDateTime;
use uuid::Uuid;

use super::GenerateArgs;
use crate::event::{
    Actor, ActorKind, Attributed, AuditEvent, ClientInfo, HttpInfo, Outcome, Stage, Target,
    TokenRef, TokenRole,
};
use crate::store::{self, EventStore};

/// Events appended per store transaction.
const BATCH: usize = 5_000;
/// The chain instance generated events are appended to.
pub const INSTANCE: &str = "generate";

/// What to generate.
#[derive(Clone, Debug)]
pub struct Options {
    pub events: u64,
    pub apps: u32,
    pub actors: u32,
    /// Events spread evenly over this many days, ending now.
    pub days: u32,
    pub seed: u64,
}

/// SplitMix64: small, fast, and good enough to make test data.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// In [0, n), skewed towards 0 by `power` (1 = uniform).
    fn skewed(&mut self, n: u32, power: i32) -> u32 {
        ((self.unit().powi(power) * f64::from(n)) as u32).min(n.saturating_sub(1))
    }
}

/// Event types with their weights (per mille) and route ids.
const TYPES: &[(&str, u32, &str)] = &[
    ("auth.login", 380, "login"),
    ("token.refresh", 250, "refresh"),
    ("auth.logout", 80, "logout"),
    ("token.issue", 50, "token"),
    ("auth.mfa.verify", 40, "mfa-verify"),
    ("password.reset.request", 30, "reset-request"),
    ("password.reset.complete", 20, "reset-complete"),
    ("email.verify.complete", 40, "verify-email"),
    ("token.revoke", 20, "revoke"),
    ("account.update", 30, "update-user"),
    ("account.register", 30, "register"),
    ("account.deactivate", 10, "deactivate-user"),
    ("admin.role.grant", 10, "grant-role"),
    ("provider.update", 10, "update-provider"),
];

fn pick_type(rng: &mut Rng) -> (&'static str, &'static str) {
    let mut roll = (rng.next() % 1000) as u32;
    for (t, w, route) in TYPES {
        if roll < *w {
            return (t, route);
        }
        roll -= w;
    }
    ("auth.login", "login")
}

fn hex64(mut a: u64, mut b: u64) -> String {
    let mut out = String::with_capacity(64);
    for _ in 0..2 {
        for v in [a, b] {
            out.push_str(&format!("{v:016x}"));
        }
        a = a.rotate_left(17) ^ 0x5bd1_e995;
        b = b.rotate_left(29) ^ 0x2545_f491;
    }
    out
}

/// Event number `i` of `opts`, at `time`.
fn event(rng: &mut Rng, opts: &Options, time: OffsetDateTime) -> AuditEvent {
    let (event_type, route) = pick_type(rng);
    let app = format!("app-{:02}", rng.skewed(opts.apps, 2));
    let actor_n = rng.skewed(opts.actors, 3);
    let actor = format!("user-{actor_n:06}");
    let fail_rate = if event_type == "auth.login" {
        0.2
    } else {
        0.08
    };
    let roll = rng.unit();
    let outcome = if roll < fail_rate {
        Outcome::Failure
    } else if roll < fail_rate + 0.015 {
        Outcome::Error
    } else if roll < fail_rate + 0.02 {
        Outcome::Unknown
    } else {
        Outcome::Success
    };
    let (status, reason) = match outcome {
        Outcome::Success => (200, None),
        Outcome::Failure if event_type == "auth.login" => (401, Some("invalid_credentials")),
        Outcome::Failure => (403, Some("forbidden")),
        Outcome::Error => (502, Some("upstream_unreachable")),
        Outcome::Unknown => (302, None),
    };
    let target = matches!(
        event_type,
        "account.update" | "account.deactivate" | "admin.role.grant" | "password.reset.complete"
    )
    .then(|| Target {
        kind: "user".into(),
        id: format!("user-{:06}", rng.skewed(opts.actors, 1)),
        display: None,
        source: "path:user_id".into(),
    });
    // A token lives for a few events: its number depends on the actor and the day.
    let mut tokens = Vec::new();
    if matches!(
        event_type,
        "token.refresh" | "token.issue" | "token.revoke" | "auth.logout"
    ) || (event_type == "auth.login" && outcome == Outcome::Success)
    {
        let day = time.unix_timestamp() / 86_400;
        let t = (u64::from(actor_n) << 20) ^ (day as u64) ^ opts.seed.rotate_left(40);
        let role = if matches!(event_type, "auth.login" | "token.issue") {
            TokenRole::Issued
        } else {
            TokenRole::Presented
        };
        tokens.push(TokenRef {
            role,
            kind: "refresh".into(),
            source: "request_body:/refresh_token".into(),
            fingerprint: hex64(t, t.wrapping_mul(0x9e37_79b9_7f4a_7c15)),
            jti: Some(format!("jti-{t:x}")),
            sub: Some(actor.clone()),
            app: None,
            iat: None,
            exp: Some(time.unix_timestamp() + 86_400),
            verified: true,
            invalid: None,
        });
    }
    let ip = IpAddr::V4(Ipv4Addr::from(0x0a00_0000 | (actor_n & 0x00ff_ffff)));
    AuditEvent {
        id: Uuid::now_v7(),
        seq: None,
        time,
        event_type: event_type.into(),
        stage: Stage::Completed,
        outcome,
        reason: reason.map(str::to_string),
        app: Some(Attributed {
            value: app,
            source: "header:x-app-id".into(),
            verified: false,
        }),
        actor: Actor {
            id: Some(actor.clone()),
            kind: ActorKind::User,
            display: Some(format!("User {actor_n}")),
            verified: true,
            source: Some("jwt:sub".into()),
        },
        app_conflict: None,
        target,
        tokens,
        source: ClientInfo {
            ip: Some(ip),
            user_agent: Some("Mozilla/5.0 (generated)".into()),
        },
        http: HttpInfo {
            method: "POST".into(),
            path: format!("/v1/{route}"),
            route: route.into(),
            status: Some(status),
            duration_ms: 5 + rng.next() % 120,
            request_id: format!("{:032x}", rng.next()),
            body_truncated: false,
        },
        details: Map::new(),
        chain: None,
    }
}

/// Append `opts.events` synthetic events to `store`, oldest first, spread over `opts.days` up to
/// now; `progress` is called with the running count every 100,000 events. Returns the number
/// of events newly stored.
pub async fn fill(
    store: &dyn EventStore,
    opts: &Options,
    mut progress: impl FnMut(u64),
) -> Result<u64, store::Error> {
    let mut rng = Rng(opts.seed);
    let end = crate::event::now_millis();
    let span_ms = i64::from(opts.days) * 86_400_000;
    let start = end - time::Duration::milliseconds(span_ms);
    let step = span_ms as f64 / opts.events.max(1) as f64;
    let mut inserted = 0;
    let mut made = 0u64;
    let mut batch = Vec::with_capacity(BATCH);
    while made < opts.events {
        let t = start + time::Duration::milliseconds((made as f64 * step) as i64);
        batch.push(event(&mut rng, opts, t));
        made += 1;
        if batch.len() == BATCH || made == opts.events {
            inserted += store.append(INSTANCE, &batch, false).await?.inserted;
            batch.clear();
            if made % 100_000 < BATCH as u64 {
                progress(made);
            }
        }
    }
    Ok(inserted)
}

/// Fill the configured store with `g.events` synthetic events, reporting progress on stderr.
pub async fn run(g: GenerateArgs) -> anyhow::Result<i32> {
    let cfg = super::load(&g.config)?;
    let store = store::open(&cfg.store.url).await?;
    let opts = Options {
        events: g.events,
        apps: g.apps.max(1),
        actors: g.actors.max(1),
        days: g.days.max(1),
        seed: g.seed,
    };
    let started = std::time::Instant::now();
    // The append rate of each step as the store fills: the curve `docs/benchmarks.md` plots.
    let mut last = (0u64, started);
    let n = fill(store.as_ref(), &opts, |done| {
        let now = std::time::Instant::now();
        let secs = now.duration_since(last.1).as_secs_f64().max(1e-9);
        eprintln!(
            "generate: {done} events ({:.0} events/s since {})",
            (done - last.0) as f64 / secs,
            last.0
        );
        last = (done, now);
    })
    .await?;
    let secs = started.elapsed().as_secs_f64();
    eprintln!(
        "generate: added {n} events in {secs:.1}s ({:.0} events/s)",
        n as f64 / secs.max(1e-9)
    );
    Ok(0)
}
