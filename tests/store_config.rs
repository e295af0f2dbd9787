//! The `store:` part of the config: PostgreSQL URLs, the chain instance, the spool, checkpoint
//! keys and `delivery: sync`, with their exact errors — none of which may repeat a secret.

use authtrail::classify::Delivery;
use authtrail::config::load_str;
use std::time::Duration;

fn errors(yaml: &str) -> String {
    load_str(yaml, "t.yaml")
        .map(|_| ())
        .unwrap_err()
        .to_string()
}

const UP: &str = "upstream: http://127.0.0.1:9000\n";

#[test]
fn postgres_urls_are_accepted_and_defaults_apply() {
    let cfg = load_str(
        &format!("{UP}store:\n  url: postgres://u:pw@db:5432/audit?sslmode=require\n"),
        "t.yaml",
    )
    .unwrap();
    let s = &cfg.store;
    assert_eq!(s.url, "postgres://u:pw@db:5432/audit?sslmode=require");
    assert_eq!(s.sync_timeout, Duration::from_secs(2));
    assert_eq!(s.spool.dir, std::path::PathBuf::from("authtrail-spool"));
    assert_eq!(s.spool.max_bytes, 256 * 1024 * 1024);
    assert_eq!(
        (
            s.pipeline.instance_id.as_deref(),
            s.pipeline.checkpoint.is_none()
        ),
        (None, true)
    );
    assert!(load_str(
        &format!("{UP}store: {{ url: \"postgresql://db/audit\" }}\n"),
        "t.yaml"
    )
    .is_ok());
}

#[test]
fn a_sqlite_trail_keeps_its_spool_beside_the_file() {
    let cfg = load_str(
        &format!("{UP}store: {{ url: sqlite:///var/lib/a/trail.db }}\n"),
        "t.yaml",
    )
    .unwrap();
    assert_eq!(
        cfg.store.spool.dir,
        std::path::PathBuf::from("/var/lib/a/trail.db-spool")
    );
}

#[test]
fn every_store_key_is_read() {
    let yaml = format!(
        "{UP}store:\n  instance_id: pod-a.8080\n  sync_timeout: 750ms\n  spool: {{ dir: /tmp/s, max_bytes: 1MiB }}\n  \
         checkpoint:\n    signing_key: \"{}\"\n    events: 10\n    interval: 30s\n    trusted_keys: [\"{}\"]\n\
         routes:\n  - id: d\n    match: {{ path: /d }}\n    event: account.deactivate\n    delivery: sync\n",
        "01".repeat(32),
        "AB".repeat(32)
    );
    let cfg = load_str(&yaml, "t.yaml").unwrap();
    let s = &cfg.store;
    assert_eq!(s.pipeline.instance_id.as_deref(), Some("pod-a.8080"));
    assert_eq!(s.sync_timeout, Duration::from_millis(750));
    assert_eq!(
        (s.spool.dir.to_str(), s.spool.max_bytes),
        (Some("/tmp/s"), 1 << 20)
    );
    let cp = s.pipeline.checkpoint.as_ref().unwrap();
    assert_eq!(
        (cp.every_events, cp.interval),
        (10, Duration::from_secs(30))
    );
    assert_eq!(cp.trusted_keys, ["ab".repeat(32)]);
    assert_eq!(cfg.routes.routes[0].delivery, Delivery::Sync);
    assert!(
        !format!("{cfg:?}").contains(&"01".repeat(32)),
        "Debug never shows the key"
    );
}

#[test]
fn store_errors_name_the_field_and_never_the_secret() {
    let err = errors(&format!("{UP}store:\n  url: mysql://root:hunter2@db/x\n"));
    assert_eq!(
        err,
        "t.yaml:3:8: store.url: unsupported store url (scheme \"mysql\"): expected sqlite://PATH or postgres://USER:PASSWORD@HOST:PORT/DB"
    );
    let err = errors(&format!(
        "{UP}store:\n  instance_id: \"a b\"\n  checkpoint: {{ signing_key: \"s3cr3t-not-hex\" }}\n"
    ));
    assert_eq!(
        err,
        "t.yaml:3:16: store.instance_id: invalid instance id \"a b\": use 1-64 characters of A-Z a-z 0-9 . _ : -\n\
         t.yaml:4:30: store.checkpoint.signing_key: invalid signing key: expected 64 hex characters (an Ed25519 seed)"
    );
    assert!(!err.contains("s3cr3t"));
}

#[test]
fn delivery_is_async_or_sync() {
    let err = errors(&format!(
        "{UP}routes:\n  - id: d\n    match: {{ path: /d }}\n    event: auth.login\n    delivery: maybe\n"
    ));
    assert_eq!(
        err,
        "t.yaml:6:15: routes[0].delivery: unsupported delivery \"maybe\": expected async or sync"
    );
}

#[test]
fn urls_in_logs_hide_the_password() {
    use authtrail::store::display_url;
    assert_eq!(
        display_url("postgres://audit:hunter2@db:5432/trail?sslmode=require&password=x"),
        "postgres://audit:***@db:5432/trail?..."
    );
    assert_eq!(display_url("postgres://db/trail"), "postgres://db/trail");
    assert_eq!(display_url("sqlite://trail.db"), "sqlite://trail.db");
}
