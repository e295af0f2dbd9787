//! Alerts end to end: each kind of rule (a threshold grouped by actor, any account deactivation,
//! any provider change, a burst of password resets from one ip) against local webhook receivers —
//! every notification signed (checked independently), retried on a 500, counted as failed when
//! the receiver keeps failing — and recorded as an `alert.fired` event and a log line.

mod support;

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use hyper::Method;
use serde_json::{json, Value};
use support::harness::{self, post_json, send};
use support::{upstream, webhook};

const SECRET: &str = "alert-secret-0123456789";
const DEAD_SECRET: &str = "dead-secret-9876543210";

const ROUTES: &str = r#"  - id: login
    match: { method: POST, path: /login }
    event: auth.login
    actor: { request_body: /username }
  - id: deactivate
    match: { method: POST, path: "/v1/users/{id}/deactivate" }
    event: account.deactivate
    target: { kind: user, from: { path: id } }
  - id: provider-add
    match: { method: POST, path: /v1/providers }
    event: provider.add
  - id: reset
    match: { method: POST, path: /v1/password/reset }
    event: password.reset.request
"#;

fn extra(sec: &webhook::Receiver, dead: &webhook::Receiver) -> String {
    format!(
        r#"sinks:
  sec: {{ webhook: "{}", secret: "{SECRET}", events: [], retries: 2, backoff: 20ms, timeout: 2s }}
  dead: {{ webhook: "{}", secret: "{DEAD_SECRET}", events: [], retries: 1, backoff: 20ms, timeout: 2s }}
alerts:
  - id: brute-force
    when: {{ event: auth.login, outcome: failure }}
    threshold: {{ count: 3, window: 5s, group_by: actor }}
    notify: [sec]
  - id: deactivation
    when: {{ event: account.deactivate }}
    notify: [sec]
  - id: provider-change
    when: {{ event: "provider.*" }}
    notify: [sec, dead]
  - id: reset-burst
    when: {{ event: password.reset.request }}
    threshold: {{ count: 3, window: 5s, group_by: ip }}
    notify: [sec]
"#,
        sec.url("/alerts"),
        dead.url("/alerts")
    )
}

/// `name{labels} value` lines of a scrape, by name and sorted labels.
fn scrape(text: &str) -> BTreeMap<(String, String), f64> {
    let mut out = BTreeMap::new();
    for line in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let (series, value) = line.rsplit_once(' ').unwrap();
        let (name, labels) = match series.split_once('{') {
            Some((n, l)) => {
                let mut parts: Vec<&str> = l.trim_end_matches('}').split(',').collect();
                parts.sort();
                (n.to_string(), parts.join(","))
            }
            None => (series.to_string(), String::new()),
        };
        out.insert((name, labels), value.parse().unwrap());
    }
    out
}

#[tokio::test]
async fn every_alert_kind_notifies_signed_webhooks_and_records_alert_fired() {
    let up = upstream::spawn().await;
    let sec = webhook::spawn().await;
    let dead = webhook::spawn().await;
    dead.fail_always();
    // The first notification is refused once: it must be retried, not lost.
    sec.fail_next(1);
    let mut sc = harness::start(up.addr, &extra(&sec, &dead), ROUTES).await;
    let started = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();

    // Two failed logins for alice and one for bob: below the threshold.
    for user in ["alice", "bob", "alice"] {
        post_json(&sc.url("/login"), json!({ "username": user }), &[]).await;
    }
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert!(sec.all().is_empty(), "{:?}", sec.all());
    // The third for alice fires.
    post_json(&sc.url("/login"), json!({ "username": "alice" }), &[]).await;
    sec.wait_until("brute-force notified", |r| {
        r.iter().any(|x| x.status == 200)
    })
    .await;
    post_json(&sc.url("/v1/users/u-42/deactivate"), json!({}), &[]).await;
    post_json(&sc.url("/v1/providers"), json!({ "name": "github" }), &[]).await;
    for _ in 0..3 {
        post_json(
            &sc.url("/v1/password/reset"),
            json!({ "email": "a@example.com" }),
            &[],
        )
        .await;
    }
    let got = sec
        .wait_until("four alerts delivered", |r| {
            r.iter().filter(|x| x.status == 200).count() == 4
        })
        .await;
    // One refused attempt, then four deliveries.
    assert_eq!(got.len(), 5, "{got:#?}");
    assert_eq!(got[0].status, 500);
    assert_eq!(got[0].body, got[1].body, "the retry resends the same body");

    let mut by_alert = BTreeMap::new();
    for r in sec.delivered() {
        assert!(r.signed_with(SECRET), "bad signature on {r:?}");
        assert!(!r.signed_with(DEAD_SECRET));
        assert!(r.timestamp() >= started && r.timestamp() <= started + 60);
        assert_eq!(r.path, "/alerts");
        assert_eq!(r.headers["content-type"], "application/json");
        let body = r.json();
        assert_eq!(body["kind"], "alert");
        by_alert.insert(body["alert"].as_str().unwrap().to_string(), body);
    }
    assert_eq!(
        by_alert.keys().collect::<Vec<_>>(),
        [
            "brute-force",
            "deactivation",
            "provider-change",
            "reset-burst"
        ]
    );
    let bf = &by_alert["brute-force"];
    assert_eq!(
        (
            &bf["group_by"],
            &bf["group"],
            &bf["count"],
            &bf["window_ms"]
        ),
        (&json!("actor"), &json!("alice"), &json!(3), &json!(5000))
    );
    assert_eq!(bf["trigger"]["type"], "auth.login");
    assert_eq!(bf["trigger"]["actor"]["id"], "alice");
    let de = &by_alert["deactivation"];
    assert_eq!((&de["count"], &de["group"]), (&json!(1), &Value::Null));
    assert_eq!(de["trigger"]["target"]["id"], "u-42");
    assert_eq!(
        by_alert["provider-change"]["trigger"]["type"],
        "provider.add"
    );
    let rb = &by_alert["reset-burst"];
    assert_eq!(
        (&rb["group_by"], &rb["group"]),
        (&json!("ip"), &json!("127.0.0.1"))
    );

    // The dead receiver: the first try and one retry, then given up and counted.
    let dead_got = dead.wait_until("two attempts", |r| r.len() == 2).await;
    assert!(dead_got
        .iter()
        .all(|r| r.status == 500 && r.signed_with(DEAD_SECRET)));
    // The failure is counted once the last retry has been answered.
    let mut m = BTreeMap::new();
    for _ in 0..100 {
        let text = send(
            Method::GET,
            &format!("http://{}/metrics", sc.admin),
            &[],
            Bytes::new(),
        )
        .await
        .unwrap();
        m = scrape(&String::from_utf8_lossy(&text.body));
        let failed = (
            "authtrail_alert_notifications_total".to_string(),
            "result=\"failed\",sink=\"dead\"".to_string(),
        );
        if m.get(&failed) == Some(&1.0) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let get = |name: &str, labels: &str| m.get(&(name.to_string(), labels.to_string())).copied();
    assert_eq!(
        get(
            "authtrail_alert_notifications_total",
            "result=\"failed\",sink=\"dead\""
        ),
        Some(1.0)
    );
    assert_eq!(
        get("authtrail_alerts_fired_total", "alert=\"brute-force\""),
        Some(1.0)
    );
    assert_eq!(
        get("authtrail_alerts_fired_total", "alert=\"reset-burst\""),
        Some(1.0)
    );
    assert_eq!(
        get(
            "authtrail_alert_notifications_total",
            "result=\"delivered\",sink=\"sec\""
        ),
        Some(4.0)
    );
    assert_eq!(get("authtrail_alert_events_dropped_total", ""), Some(0.0));

    // Each firing is an event in the trail, and a log line.
    let events = sc.wait_events(4 + 1 + 1 + 3 + 4).await;
    let fired: Vec<_> = events
        .iter()
        .filter(|e| e.event_type == "alert.fired")
        .collect();
    assert_eq!(fired.len(), 4, "{fired:#?}");
    let bf = fired
        .iter()
        .find(|e| e.details["alert"] == "brute-force")
        .unwrap();
    let target = bf.target.as_ref().unwrap();
    assert_eq!(
        (target.kind.as_str(), target.id.as_str()),
        ("actor", "alice")
    );
    assert_eq!(bf.http.route, "alert:brute-force");
    assert_eq!(bf.details["count"], 3);
    let trigger = events
        .iter()
        .find(|e| e.id.to_string() == bf.details["trigger_event"])
        .expect("the trigger event is stored too");
    assert_eq!(trigger.actor.id.as_deref(), Some("alice"));
    let logs = harness::captured_logs();
    assert!(
        logs.lines().any(|l| l.contains("alert fired")
            && l.contains("alert=brute-force")
            && l.contains("group=\"alice\"")),
        "no alert log line"
    );
    assert!(logs.contains("alert notification failed"));
    let summary = sc.stop().await;
    assert_eq!(summary.events.dropped, 0);
}
