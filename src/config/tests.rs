//! Config errors are part of the interface: each test pins the exact message.

use super::*;

fn errors(yaml: &str) -> Vec<String> {
    match load_str(yaml, "authtrail.yaml") {
        Ok(_) => panic!("config should be rejected:\n{yaml}"),
        Err(e) => e.diagnostics().iter().map(ToString::to_string).collect(),
    }
}

const HEAD: &str = "upstream: http://127.0.0.1:9000\nroutes:\n";

#[test]
fn unknown_key_names_file_line_column_and_field() {
    let yaml = format!("{HEAD}  - id: login\n    match: {{ path: /v1/sessions, bogus: 1 }}\n    event: auth.login\n");
    assert_eq!(
        errors(&yaml),
        ["authtrail.yaml:4:34: routes[0].match.bogus: unknown field `bogus`, expected one of method, path, host, body"]
    );
}

#[test]
fn unknown_top_level_key() {
    assert_eq!(
        errors("upstream: http://127.0.0.1:9000\nlisten_addr: 0.0.0.0:1\n"),
        ["authtrail.yaml:2:1: listen_addr: unknown field `listen_addr`, expected one of listen, upstream, inspect_limit, request_id_header, max_connections, timeouts, admin, store, redact, trust, tls, upstream_tls, keys, requirements, defaults, routes"]
    );
}

#[test]
fn bad_path_template() {
    let yaml = format!("{HEAD}  - id: deactivate\n    match:\n      path: \"/v1/users/{{id/deactivate\"\n    event: account.deactivate\n");
    assert_eq!(
        errors(&yaml),
        ["authtrail.yaml:5:13: routes[0].match.path: invalid path template \"/v1/users/{id/deactivate\": unclosed brace"]
    );
}

#[test]
fn duplicate_route_id() {
    let yaml = format!(
        "{HEAD}  - id: login\n    match: {{ path: /a }}\n    event: auth.login\n  - id: login\n    match: {{ path: /b }}\n    event: auth.login\n"
    );
    assert_eq!(
        errors(&yaml),
        ["authtrail.yaml:6:9: routes[1].id: duplicate route id \"login\" (first defined at line 3)"]
    );
}

#[test]
fn unset_env_var() {
    let yaml = "upstream: http://127.0.0.1:9000\nstore:\n  url: ${AUTHTRAIL_TEST_SURELY_UNSET}\n";
    assert_eq!(
        errors(yaml),
        ["authtrail.yaml:3:8: store.url: environment variable \"AUTHTRAIL_TEST_SURELY_UNSET\" is not set"]
    );
}

#[test]
fn env_var_with_default_and_set_value() {
    let yaml = "upstream: ${AUTHTRAIL_TEST_SURELY_UNSET:-http://127.0.0.1:9000}\nstore:\n  url: sqlite://${CARGO_PKG_NAME_NOT_SET:-x}.db\n";
    let cfg = load_str(yaml, "a.yaml").unwrap();
    assert_eq!(cfg.upstream.to_string(), "http://127.0.0.1:9000/");
    assert_eq!(cfg.store.url, "sqlite://x.db");
}

#[test]
fn cross_field_errors_are_reported_together() {
    let yaml = r#"upstream: http://127.0.0.1:9000
routes:
  - id: login
    match: { path: /v1/sessions }
    event: Auth-Login
  - id: user
    match: { path: "/v1/users/{id}" }
    event: account.update
    target: { kind: user, from: { path: user_id } }
  - id: reset
    match: { path: /v1/reset }
    event: password.reset.complete
    capture:
      reset_code: { request_body: /code }
  - id: again
    match: { method: POST, path: /v1/sessions }
    event: auth.login
  - id: peek
    match: { path: /v1/peek }
    event: audit.query
    actor: { header: Authorization }
"#;
    assert_eq!(
        errors(yaml),
        [
            "authtrail.yaml:5:12: routes[0].event: invalid event type \"Auth-Login\": expected dotted lowercase words like auth.login",
            "authtrail.yaml:9:33: routes[1].target.from[0]: unknown path parameter \"user_id\": template \"/v1/users/{id}\" has id",
            "authtrail.yaml:14:19: routes[2].capture.reset_code: \"reset_code\" is a secret field (matches \"code\") and is never recorded",
            "authtrail.yaml:16:34: routes[3].match: route \"again\" can never match: route \"login\" (line 3) takes every request it would",
            "authtrail.yaml:21:12: routes[4].actor[0]: \"Authorization\" is a secret field (matches \"authorization\") and is never recorded",
        ]
    );
}

#[test]
fn defaults_apply() {
    let cfg = load_str("upstream: http://127.0.0.1:9000\n", "a.yaml").unwrap();
    assert_eq!(cfg.listen.to_string(), "0.0.0.0:8080");
    assert_eq!(cfg.admin_listen.to_string(), "127.0.0.1:9090");
    assert_eq!(cfg.inspect_limit, 65_536);
    assert_eq!(cfg.request_id_header.as_str(), "x-request-id");
    assert_eq!(cfg.timeouts.upstream_response, Duration::from_secs(30));
    assert_eq!(cfg.store.url, "sqlite://authtrail.db");
    assert!(cfg.routes.routes.is_empty());
}

#[test]
fn shipped_configs_load() {
    // The OAuth example takes its fingerprint key from the environment.
    std::env::set_var("FINGERPRINT_KEY", "shipped-config-test-key-0123");
    for entry in std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/config")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "yaml") {
            if let Err(e) = load_file(&path) {
                panic!("{}: {e}", path.display());
            }
        }
    }
}

#[test]
fn kubernetes_configmap_config_loads() {
    #[derive(serde::Deserialize)]
    struct ConfigMap {
        data: std::collections::BTreeMap<String, String>,
    }
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/examples/kubernetes/configmap.yaml"
    );
    let text = std::fs::read_to_string(path).unwrap();
    let cm: ConfigMap = serde_saphyr::from_str(&text).unwrap();
    let embedded = cm.data.get("authtrail.yaml").expect("data.authtrail.yaml");
    if let Err(e) = load_str(embedded, "configmap.yaml#authtrail.yaml") {
        panic!("{e}");
    }
}
