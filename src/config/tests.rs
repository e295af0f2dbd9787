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
        ["authtrail.yaml:4:34: routes[0].match.bogus: unknown field `bogus`, expected one of method, path, host, body, path_case, path_policy"]
    );
}

#[test]
fn unknown_top_level_key() {
    assert_eq!(
        errors("upstream: http://127.0.0.1:9000\nlisten_addr: 0.0.0.0:1\n"),
        ["authtrail.yaml:2:1: listen_addr: unknown field `listen_addr`, expected one of listen, upstream, inspect_limit, path_policy, request_id_header, max_connections, timeouts, admin, store, redact, trust, tls, upstream_tls, keys, requirements, defaults, routes, retention, sinks, alerts, lookups, reasons"]
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
    // The examples and presets take their keys from the environment; `cli::presets` tests set
    // and unset the same variables, under this lock.
    let _env = TEST_ENV.lock().unwrap_or_else(|e| e.into_inner());
    std::env::set_var("FINGERPRINT_KEY", "shipped-config-test-key-0123");
    std::env::set_var("DRF_JWT_SECRET", "shipped-config-test-hmac-secret");
    let mut loaded = 0;
    for dir in ["/config", "/config/presets"] {
        let dir = format!("{}{dir}", env!("CARGO_MANIFEST_DIR"));
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "yaml") {
                // Every `${NAME}` (without a default) a preset takes from the environment, set
                // to a test value.
                let text = std::fs::read_to_string(&path).unwrap();
                for part in text.split("${").skip(1) {
                    let name: String = part
                        .chars()
                        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                        .collect();
                    let bare = part[name.len()..].starts_with('}');
                    if bare && !name.is_empty() && std::env::var_os(&name).is_none() {
                        std::env::set_var(&name, "shipped-config-test-secret-0123456789");
                    }
                }
                if let Err(e) = load_file(&path) {
                    panic!("{}: {e}", path.display());
                }
                loaded += 1;
            }
        }
    }
    assert!(loaded >= 5, "the examples and the presets ({loaded})");
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
    // Every ${VAR} the config reads is a key of the example Secret.
    let secret = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/examples/kubernetes/secret.yaml"
    ))
    .unwrap();
    for var in embedded
        .split("${")
        .skip(1)
        .filter_map(|s| s.split_once('}'))
    {
        assert!(
            secret.contains(&format!("{}:", var.0)),
            "{} is not in secret.yaml",
            var.0
        );
    }
    std::env::set_var("AUTHTRAIL_CHECKPOINT_KEY", "42".repeat(32));
    std::env::set_var(
        "AUTHTRAIL_FINGERPRINT_KEY",
        "configmap-test-fingerprint-key",
    );
    std::env::set_var("AUTHTRAIL_WEBHOOK_SECRET", "configmap-test-webhook-secret");
    std::env::set_var(
        "AUTHTRAIL_ADMIN_TOKEN_SHA256",
        crate::admin::auth::token_sha256_hex("configmap-test-admin-token"),
    );
    let cfg = match load_str(embedded, "configmap.yaml#authtrail.yaml") {
        Ok(cfg) => cfg,
        Err(e) => panic!("{e}"),
    };
    // An admin credential, or `/v1` and `/ui` answer 401 to everyone.
    assert!(!cfg.admin_credentials.is_empty());
    assert!(cfg.ops.retention.is_some() && !cfg.ops.alerts.is_empty() && cfg.ops.sinks.len() == 2);

    // Both pod layouts give authtrail time for its preStop, its drain and the last flushes
    // (alerts, store, sinks: up to 10s more) before SIGKILL.
    let grace = cfg.timeouts.shutdown_grace.as_secs();
    for (file, budget) in [
        ("deployment.yaml", "containers"),
        ("deployment-native-sidecar.yaml", "initContainers"),
    ] {
        let path = format!("{}/examples/kubernetes/{file}", env!("CARGO_MANIFEST_DIR"));
        let d: serde_json::Value =
            serde_saphyr::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        let pod = &d["spec"]["template"]["spec"];
        let authtrail = pod[budget]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == "authtrail")
            .unwrap_or_else(|| panic!("{file}: no authtrail in {budget}"));
        let own_pre_stop = authtrail["lifecycle"]["preStop"]["sleep"]["seconds"]
            .as_u64()
            .unwrap_or(0);
        // A native sidecar stops after the main containers: their preStop comes first.
        let before = if budget == "initContainers" {
            assert_eq!(authtrail["restartPolicy"], "Always", "{file}");
            pod["containers"][0]["lifecycle"]["preStop"]["sleep"]["seconds"]
                .as_u64()
                .unwrap()
                + 5
        } else {
            own_pre_stop
        };
        let period = pod["terminationGracePeriodSeconds"].as_u64().unwrap();
        assert!(
            period >= before + grace + 10,
            "{file}: terminationGracePeriodSeconds {period} < {before} + {grace} + 10"
        );
    }
}

#[test]
fn retention_sinks_and_alerts_errors_are_reported_together() {
    let yaml = r#"upstream: http://127.0.0.1:9000
routes:
  - id: login
    match: { path: /login }
    event: auth.login
retention:
  default: 400days
  rules:
    - { event: "Auth.*", keep: 90d }
    - { app: app-a, keep: sometimes }
sinks:
  both: { stdout: {}, webhook: "https://hooks.example.com/a" }
  plain: { webhook: "http://hooks.example.com/a" }
  weak: { webhook: "https://hooks.example.com/a", secret: short, format: xml }
  out: { stdout: { format: json }, batch: 10 }
alerts:
  - id: a
    when: { event: auth.login, outcome: failed, route: nope }
    threshold: { count: 0, window: 5m, group_by: user }
    notify: [out, missing]
"#;
    assert_eq!(
        errors(yaml),
        [
            "authtrail.yaml:7:3: retention: retention needs store.checkpoint.signing_key: every purge is sealed with a signed checkpoint so that verify still passes",
            "authtrail.yaml:7:12: retention.default: invalid keep \"400days\": expected a duration such as 90d, or forever",
            "authtrail.yaml:9:16: retention.rules[0].event: invalid event type \"Auth.*\": expected dotted lowercase words like auth.login, or a prefix like auth.*",
            "authtrail.yaml:10:27: retention.rules[1].keep: invalid keep \"sometimes\": expected a duration such as 90d, or forever",
            "authtrail.yaml:12:9: sinks.both: a sink has exactly one of stdout, webhook, http, otlp, syslog",
            "authtrail.yaml:13:21: sinks.plain.webhook: invalid webhook \"http://hooks.example.com/a\": expected https://… (http only for loopback hosts)",
            "authtrail.yaml:14:59: sinks.weak.secret: webhook secret must be at least 16 bytes",
            "authtrail.yaml:14:74: sinks.weak.format: unknown format \"xml\": expected json or ocsf",
            "authtrail.yaml:15:8: sinks.out.batch: batch does not apply to a stdout sink (it is for webhook, http and otlp sinks)",
            "authtrail.yaml:18:41: alerts[0].when.outcome[0]: invalid outcome \"failed\": expected success, failure, error or unknown",
            "authtrail.yaml:18:56: alerts[0].when.route[0]: unknown route \"nope\"",
            "authtrail.yaml:19:16: alerts[0].threshold.count: count must be at least 1",
            "authtrail.yaml:19:50: alerts[0].threshold.group_by: invalid group_by \"user\": expected actor, ip, target or app",
            "authtrail.yaml:20:14: alerts[0].notify[0]: sink \"out\" is not a webhook",
            "authtrail.yaml:20:19: alerts[0].notify[1]: unknown sink \"missing\"",
        ]
    );
}

#[test]
fn retention_sinks_and_alerts_defaults() {
    let yaml = r#"upstream: http://127.0.0.1:9000
store: { checkpoint: { signing_key: "4242424242424242424242424242424242424242424242424242424242424242" } }
retention:
  rules: [ { event: "auth.*", keep: 90d }, { event: account.delete, keep: forever } ]
  legal_hold: [app-x]
sinks:
  out: { stdout: {} }
  hook: { webhook: "http://127.0.0.1:8125/hook", secret: "0123456789abcdef", events: [auth.*] }
alerts:
  - id: deactivations
    when: { event: account.deactivate }
    notify: [hook]
"#;
    let cfg = load_str(yaml, "a.yaml").unwrap_or_else(|e| panic!("{e}"));
    let r = cfg.ops.retention.unwrap();
    use crate::ops::retention::Keep;
    assert_eq!(r.default, Keep::Forever);
    assert_eq!(r.interval, Duration::from_secs(3600));
    assert_eq!(r.batch, 1000);
    assert_eq!(r.rules[1].keep, Keep::Forever);
    assert_eq!(r.legal_hold, ["app-x"]);
    use crate::ops::sinks::{Format, Target};
    assert_eq!(cfg.ops.sinks.len(), 2);
    assert_eq!(
        (
            &cfg.ops.sinks[0].target,
            cfg.ops.sinks[0].format,
            cfg.ops.sinks[0].queue
        ),
        (&Target::Stdout, Format::Json, 10_000)
    );
    let Target::Webhook {
        webhook,
        batch,
        flush,
    } = &cfg.ops.sinks[1].target
    else {
        panic!("a webhook")
    };
    assert_eq!((*batch, *flush), (100, Duration::from_secs(1)));
    assert_eq!(
        (webhook.timeout, webhook.retries, webhook.backoff),
        (Duration::from_secs(5), 3, Duration::from_millis(500))
    );
    assert_eq!(format!("{:?}", webhook.secret), "Some(Secret(..))");
    assert_eq!(
        cfg.ops.sinks[1].types,
        Some(vec![crate::store::TypeFilter::Prefix("auth.".into())])
    );
    assert_eq!(cfg.ops.alerts[0].notify, ["hook"]);
    assert!(cfg.ops.alerts[0].threshold.is_none());
}

#[test]
fn http_otlp_and_syslog_sink_errors_are_pinned() {
    let yaml = r#"upstream: http://127.0.0.1:9000
sinks:
  hec: { http: { url: "https://splunk.example.com:8088/services/collector/event", body: splunk, headers: { "Bad Name": x } } }
  es: { http: { url: "https://elastic:pw@es.example.com/_bulk", body: elasticsearch_bulk, index: Audit } }
  loki: { http: { url: "http://loki.example.com/loki/api/v1/push", body: loki, headers: { Content-Type: text/plain } }, secret: "0123456789abcdef0" }
  loki2: { http: { url: "https://loki.example.com/loki/api/v1/push", body: loki, index: audit, host: h } }
  otel: { otlp: { url: "ftp://collector/v1/logs", headers: { Authorization: "Bearer a\u0001b" } } }
  siem: { syslog: { address: "siem.example.com:99999", transport: tcp }, ca_file: /nonexistent/ca.pem }
  siem2: { syslog: { address: 127.0.0.1, transport: dtls, format: leef, facility: auth2 }, batch: 5, format: json }
  siem3: { syslog: { address: "127.0.0.1:6514", app_name: "auth trail", msgid: "0123456789abcdef0123456789abcdef0" } }
"#;
    assert_eq!(
        errors(yaml),
        [
            "authtrail.yaml:3:89: sinks.hec.http.body: unknown body \"splunk\": expected splunk_hec, elasticsearch_bulk or loki",
            "authtrail.yaml:4:22: sinks.es.http.url: url must not hold credentials (user:password@): send them in headers",
            "authtrail.yaml:4:98: sinks.es.http.index: invalid index \"Audit\": lowercase, without spaces or \\ / * ? \" < > | , #, not starting with - _ +",
            "authtrail.yaml:5:9: sinks.loki.secret: secret does not apply to an http sink (it is for webhook sinks)",
            "authtrail.yaml:5:24: sinks.loki.http.url: invalid url \"http://loki.example.com/loki/api/v1/push\": expected https://… (http only for loopback hosts)",
            "authtrail.yaml:5:105: sinks.loki.http.headers.Content-Type: header \"Content-Type\" is set by authtrail",
            "authtrail.yaml:6:89: sinks.loki2.http.index: index is only for splunk_hec and elasticsearch_bulk bodies",
            "authtrail.yaml:6:102: sinks.loki2.http.host: host is only for splunk_hec bodies",
            "authtrail.yaml:7:24: sinks.otel.otlp.url: invalid url \"ftp://collector/v1/logs\": expected https://… (http only for loopback hosts)",
            "authtrail.yaml:7:77: sinks.otel.otlp.headers.Authorization: header \"Authorization\": invalid value (control characters or non-ASCII; not shown)",
            "authtrail.yaml:8:9: sinks.siem.ca_file: ca_file is only for transport tls",
            "authtrail.yaml:8:9: sinks.siem.ca_file: ca_file /nonexistent/ca.pem: No such file or directory (os error 2)",
            "authtrail.yaml:8:30: sinks.siem.syslog.address: invalid address \"siem.example.com:99999\": expected HOST:PORT (or [IPv6]:PORT)",
            "authtrail.yaml:9:10: sinks.siem2.format: format of a syslog sink is syslog.format",
            "authtrail.yaml:9:10: sinks.siem2.batch: batch does not apply to a syslog sink (it is for webhook, http and otlp sinks)",
            "authtrail.yaml:9:53: sinks.siem2.syslog.transport: unknown transport \"dtls\": expected tcp, tls or udp",
            "authtrail.yaml:9:67: sinks.siem2.syslog.format: unknown format \"leef\": expected json or cef",
            "authtrail.yaml:9:83: sinks.siem2.syslog.facility: unknown facility \"auth2\": expected kern, user, mail, daemon, auth, syslog, lpr, news, uucp, cron, authpriv, ftp, ntp, security, console, solaris-cron or local0 to local7",
            "authtrail.yaml:10:59: sinks.siem3.syslog.app_name: app_name must be 1 to 48 printable ASCII characters, no spaces",
            "authtrail.yaml:10:80: sinks.siem3.syslog.msgid: msgid must be 1 to 32 printable ASCII characters, no spaces",
        ]
    );
}

#[test]
fn http_otlp_and_syslog_sink_defaults() {
    std::env::set_var("AUTHTRAIL_TEST_HEC_TOKEN", "hec-token-value");
    let yaml = r#"upstream: http://127.0.0.1:9000
sinks:
  hec: { http: { url: "https://splunk.example.com:8088/services/collector/event", body: splunk_hec, headers: { Authorization: "Splunk ${AUTHTRAIL_TEST_HEC_TOKEN}" }, gzip: true } }
  es: { http: { url: "https://es.example.com/_bulk", body: elasticsearch_bulk }, format: ocsf, batch: 500 }
  otel: { otlp: { url: "http://127.0.0.1:4318/v1/logs" } }
  siem: { syslog: { address: siem.example.com }, retries: 1 }
  siem6: { syslog: { address: "[::1]", transport: tls, format: cef, facility: local3, hostname: pod-1, msgid: AUDIT } }
"#;
    let cfg = load_str(yaml, "a.yaml").unwrap_or_else(|e| panic!("{e}"));
    use crate::ops::sinks::{BodyFormat, Format, Target};
    use crate::ops::syslog::{Payload, Transport};
    let sinks = &cfg.ops.sinks;
    let Target::Http {
        endpoint,
        body,
        batch,
        flush,
    } = &sinks[0].target
    else {
        panic!("http")
    };
    assert_eq!(
        (body.format, body.events),
        (BodyFormat::SplunkHec, Format::Json)
    );
    assert_eq!(
        (*batch, *flush, endpoint.gzip),
        (100, Duration::from_secs(1), true)
    );
    assert_eq!((body.index.as_deref(), body.host.as_deref()), (None, None));
    // Header values never show in Debug.
    let debug = format!("{:?}", cfg.ops);
    assert!(debug.contains("authorization: .."), "{debug}");
    assert!(!debug.contains("hec-token-value"), "{debug}");
    let Target::Http { body, batch, .. } = &sinks[1].target else {
        panic!("http")
    };
    assert_eq!(
        (body.format, body.events, *batch),
        (BodyFormat::ElasticsearchBulk, Format::Ocsf, 500)
    );
    let Target::Otlp { endpoint, .. } = &sinks[2].target else {
        panic!("otlp")
    };
    assert_eq!(
        endpoint.client.url.to_string(),
        "http://127.0.0.1:4318/v1/logs"
    );
    assert!(endpoint.headers.is_empty() && !endpoint.gzip);
    let Target::Syslog(y) = &sinks[3].target else {
        panic!("syslog")
    };
    assert_eq!(
        (y.host.as_str(), y.port, y.transport, y.payload, y.facility),
        ("siem.example.com", 514, Transport::Tcp, Payload::Json, 4)
    );
    assert_eq!(
        (y.app_name.as_str(), &y.hostname, &y.msgid),
        ("authtrail", &None, &None)
    );
    assert_eq!(
        (y.timeout, y.retries, y.backoff),
        (Duration::from_secs(5), 1, Duration::from_millis(500))
    );
    let Target::Syslog(y) = &sinks[4].target else {
        panic!("syslog")
    };
    assert_eq!(
        (y.host.as_str(), y.port, y.transport, y.payload, y.facility),
        ("::1", 6514, Transport::Tls, Payload::Cef, 19)
    );
    assert_eq!(
        (y.hostname.as_deref(), y.msgid.as_deref()),
        (Some("pod-1"), Some("AUDIT"))
    );
}

#[test]
fn unknown_lookups_and_bad_reason_rules_are_pinned() {
    let yaml = format!(
        "lookups:\n  client_app: {{ svc-alpha: app-alpha }}\nreasons:\n  - {{ exact: a, prefix: b, code: x }}\n  - {{ regex: \"(\", code: y }}\n  - {{ code: Not-A-Code, status: 401 }}\n{HEAD}  - id: t\n    match: {{ path: /t }}\n    event: token.issue\n    app: [ {{ basic_auth: user, map: client_ap }} ]\n"
    );
    let errs = errors(&yaml);
    assert_eq!(errs.len(), 4, "{errs:#?}");
    assert_eq!(
        errs[0],
        "authtrail.yaml:4:5: reasons[0]: a reason rule matches the text one way: exact, prefix or regex"
    );
    assert!(
        errs[1].starts_with("authtrail.yaml:5:5: reasons[1].regex: invalid regex \"(\": "),
        "{}",
        errs[1]
    );
    assert_eq!(
        errs[2],
        "authtrail.yaml:6:5: reasons[2].code: invalid reason code \"Not-A-Code\": use up to 64 of a-z 0-9 _ . : - like invalid_credentials"
    );
    assert_eq!(
        errs[3],
        "authtrail.yaml:12:10: routes[0].app[0].map: unknown lookup \"client_ap\": lookups are client_app"
    );
}

#[test]
fn lookup_files_are_read_and_their_errors_named() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("clients.yaml");
    std::fs::write(&good, "svc-alpha: app-alpha\nsvc-beta: app-beta\n").unwrap();
    let bad = dir.path().join("bad.yaml");
    std::fs::write(&bad, "svc-alpha: app-alpha\n- oops\n").unwrap();
    let route = "  - id: t\n    match: { path: /t }\n    event: token.issue\n    app: { basic_auth: user, map: clients }\n";
    let yaml = format!(
        "upstream: http://127.0.0.1:9000\nlookups:\n  clients: {{ file: {} }}\nroutes:\n{route}",
        good.display()
    );
    let cfg = load_str(&yaml, "authtrail.yaml").unwrap_or_else(|e| panic!("{e}"));
    let crate::classify::Source::Mapped { table, .. } = &cfg.routes.routes[0].app[0] else {
        panic!("a mapped source")
    };
    assert_eq!(table.get("svc-beta"), Some("app-beta"));
    let missing = dir.path().join("missing.yaml");
    for (file, want) in [(&missing, "cannot read lookup file"), (&bad, "line 2")] {
        let yaml = format!(
            "upstream: http://127.0.0.1:9000\nlookups:\n  clients: {{ file: {} }}\nroutes:\n{route}",
            file.display()
        );
        let errs = errors(&yaml);
        assert_eq!(errs.len(), 1, "{errs:#?}");
        assert!(
            errs[0].starts_with("authtrail.yaml:3:12: lookups.clients.file: ")
                && errs[0].contains(want),
            "{}",
            errs[0]
        );
    }
}

#[test]
fn response_header_and_request_cookie_sources_keep_secrets_out() {
    let yaml = r#"upstream: http://127.0.0.1:9000
routes:
  - id: authorize
    match: { path: /authorize }
    event: oauth.authorize
    outcome: { redirect_error: "a=b" }
    capture:
      grant: { response_header: Location, query: code }
      sent: { response_header: Set-Cookie }
      bad: { response_header: "bad header" }
  - id: logout
    match: { path: /logout }
    event: auth.logout
    target: { kind: session, from: { request_cookie: _session } }
"#;
    assert_eq!(
        errors(yaml),
        [
            "authtrail.yaml:6:32: routes[0].outcome.redirect_error: invalid redirect_error \"a=b\": expected a URL parameter name like error, or off",
            "authtrail.yaml:8:14: routes[0].capture.grant[0]: \"code\" is a secret field (matches \"code\") and is never recorded",
            "authtrail.yaml:9:13: routes[0].capture.sent[0]: \"Set-Cookie\" is a secret field (matches \"set-cookie\") and is never recorded",
            "authtrail.yaml:10:12: routes[0].capture.bad[0]: invalid header name \"bad header\"",
            "authtrail.yaml:14:36: routes[1].target.from[0]: request_cookie records a cookie by keyed fingerprint only: set trust.fingerprint_key",
        ]
    );
}

#[test]
fn a_cookie_value_is_never_a_source() {
    let yaml = format!("{HEAD}  - id: logout\n    match: {{ path: /logout }}\n    event: auth.logout\n    actor: {{ cookie: _session }}\n");
    assert_eq!(
        errors(&yaml),
        ["authtrail.yaml:6:12: routes[0].actor: cookie values are secrets: read a claim of a token cookie with { claim: sub, cookie: NAME }, or the cookie's fingerprint with { request_cookie: NAME }"]
    );
}

#[test]
fn sessions_and_lineage_sources_are_checked() {
    let yaml = r#"upstream: http://127.0.0.1:9000
defaults:
  session: { cookies: [sid], ends: true }
routes:
  - id: revoke
    match: { path: /revoke }
    event: token.revoke
    target: { kind: user, from: { lineage: owner, form: token } }
  - id: authorize
    match: { path: /authorize }
    event: oauth.authorize
    tokens: { redirect: ["a=b"] }
    session: { cookies: ["bad cookie"] }
"#;
    assert_eq!(
        errors(yaml),
        [
            "authtrail.yaml:8:33: routes[0].target.from: lineage: \"owner\" is not readable: expected actor or app",
        ]
    );
    let yaml = yaml.replace("lineage: owner", "lineage: actor");
    assert_eq!(
        errors(&yaml),
        [
            "authtrail.yaml:3:12: defaults.session.ends: ends belongs to a route (a logout), not to defaults",
            "authtrail.yaml:3:12: defaults.session.cookies: session cookies are recorded by keyed fingerprint only: set trust.fingerprint_key",
            "authtrail.yaml:12:13: routes[1].tokens: recording tokens needs trust.fingerprint_key (tokens are stored by keyed fingerprint only)",
            "authtrail.yaml:12:13: routes[1].tokens.redirect: invalid redirect parameter \"a=b\": expected a name like code",
            "authtrail.yaml:13:14: routes[1].session.cookies: session cookies are recorded by keyed fingerprint only: set trust.fingerprint_key",
        ]
    );
}

#[test]
fn write_ahead_is_on_by_default_and_its_fsync_interval_is_bounded() {
    let cfg = load_str("upstream: http://127.0.0.1:9000\n", "a.yaml").unwrap();
    assert!(cfg.store.spool.write_ahead);
    assert_eq!(cfg.store.spool.fsync_interval, Duration::from_millis(100));
    let cfg = load_str(
        "upstream: http://127.0.0.1:9000\nstore:\n  spool: { write_ahead: false, fsync_interval: 1s }\n",
        "a.yaml",
    )
    .unwrap();
    assert!(!cfg.store.spool.write_ahead);
    assert_eq!(cfg.store.spool.fsync_interval, Duration::from_secs(1));
    assert_eq!(
        errors("upstream: http://127.0.0.1:9000\nstore:\n  spool: { fsync_interval: 0s }\n"),
        ["authtrail.yaml:3:28: store.spool.fsync_interval: fsync_interval must be between 1ms and 10s"]
    );
}
