//! The Helm chart (charts/authtrail) as Helm renders it and as the cluster and the sidecar read
//! it. Rendering and linting run Helm's own engine (Helm 4's Go SDK in the pinned
//! helm-python-sdk wheel, through scripts/helm-render.py); schema validation runs the pinned
//! kubernetes-validate. Both are installed by `.ci/run` into tests/helm/py-deps (git-ignored,
//! tests/helm/requirements.txt): without them these tests are skipped, and fail under
//! `CI=true`.
//!
//! Rendered: the default values; sidecar mode (values-sidecar.yaml, patched into
//! existing-deployment.yaml as `kubectl patch` would); a ServiceMonitor with a PVC; an
//! existingSecret with PostgreSQL, an HMAC key set and a native sidecar. Each must be valid
//! YAML of well-formed objects that pass the Kubernetes schemas; every probe port must resolve
//! in the probed container; Services and the NetworkPolicy must select the pods and the admin
//! port; the ConfigMap's authtrail.yaml must load with authtrail's own loader, with every
//! `${VAR}` it reads handed to the container from the Secret that holds it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

use base64::Engine as _;
use serde_json::{json, Value};

#[path = "support/k8s.rs"]
mod k8s;
#[path = "support/thirdparty.rs"]
mod thirdparty;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn deps() -> PathBuf {
    root().join("tests/helm/py-deps")
}

/// `None` when Helm's engine and kubernetes-validate are installed, else skip (or fail in CI).
fn skip() -> Option<()> {
    thirdparty::skip_unless_installed(
        "helm-python-sdk and kubernetes-validate (tests/helm/requirements.txt)",
        &[
            deps().join("helm_python/lib/libhelm_c.so"),
            deps().join("kubernetes_validate"),
            deps().join("yaml"),
        ],
    )
}

fn python() -> Command {
    let mut c = Command::new("python3");
    c.env("PYTHONPATH", deps());
    c
}

/// scripts/helm-render.py with these arguments: its stdout, or its stderr as the error.
fn helm(args: &[&str]) -> Result<String, String> {
    let out = python()
        .arg(root().join("scripts/helm-render.py"))
        .args(args)
        .output()
        .expect("python3 runs");
    let stdout = String::from_utf8(out.stdout).unwrap();
    if out.status.success() {
        Ok(stdout)
    } else {
        Err(format!(
            "{stdout}{}",
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// The values arguments: tests/helm/FILE (if any) and JSON objects merged over it.
fn values_args(file: Option<&str>, set: &[Value]) -> Vec<String> {
    let mut args = Vec::new();
    if let Some(f) = file {
        args.push("-f".to_string());
        args.push(root().join("tests/helm").join(f).display().to_string());
    }
    for s in set {
        args.push("--set-json".to_string());
        args.push(s.to_string());
    }
    args
}

/// `helm template` of the chart with these values: the rendered text.
fn template(file: Option<&str>, set: &[Value]) -> Result<String, String> {
    let mut args = vec!["template".to_string(), "--namespace".into(), "auth".into()];
    args.extend(values_args(file, set));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    helm(&args)
}

/// The rendered objects, each checked to be a well-formed Kubernetes object.
fn objects(what: &str, text: &str) -> Vec<Value> {
    let docs: Vec<Value> =
        serde_saphyr::from_multiple(text).unwrap_or_else(|e| panic!("{what}: not YAML: {e}"));
    let docs: Vec<Value> = docs.into_iter().filter(|d| !d.is_null()).collect();
    let mut seen = BTreeSet::new();
    for d in &docs {
        for k in ["apiVersion", "kind"] {
            assert!(
                d[k].as_str().is_some_and(|s| !s.is_empty()),
                "{what}: an object without {k}: {d}"
            );
        }
        let name = d["metadata"]["name"].as_str().unwrap_or_default();
        assert!(
            !name.is_empty() && name.len() <= 63,
            "{what}: {} without a usable metadata.name",
            d["kind"]
        );
        assert!(
            seen.insert((d["kind"].to_string(), name.to_string())),
            "{what}: two {} named {name}",
            d["kind"]
        );
    }
    docs
}

fn of_kind<'a>(docs: &'a [Value], kind: &str) -> Vec<&'a Value> {
    docs.iter().filter(|d| d["kind"] == kind).collect()
}

fn one<'a>(docs: &'a [Value], kind: &str) -> &'a Value {
    let all = of_kind(docs, kind);
    assert_eq!(all.len(), 1, "one {kind}");
    all[0]
}

/// kubernetes-validate --strict on these objects (kinds it has no schema for, such as the
/// ServiceMonitor CRD, only warn).
fn validate_schemas(what: &str, docs: &[Value]) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rendered.yaml");
    let text: String = docs
        .iter()
        .map(|d| format!("---\n{}\n", serde_json::to_string(d).unwrap()))
        .collect();
    std::fs::write(&path, text).unwrap();
    let out = python()
        .args([
            "-m",
            "kubernetes_validate",
            "--strict",
            "--quiet",
            "-k",
            "1.30.0",
        ])
        .arg(&path)
        .output()
        .expect("python3 runs");
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && !report.contains("ERROR"),
        "{what}: the Kubernetes 1.30 schemas reject it:\n{report}"
    );
}

fn b64(s: &str) -> String {
    String::from_utf8(
        base64::engine::general_purpose::STANDARD
            .decode(s)
            .unwrap_or_else(|e| panic!("Secret data {s:?}: {e}")),
    )
    .unwrap()
}

fn sha256_hex(s: &[u8]) -> String {
    authtrail::hex::encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, s).as_ref())
}

/// `${VAR}` and `${VAR:-default}` references of a config: name -> has a default.
fn env_refs(config: &str) -> BTreeMap<String, bool> {
    let mut out: BTreeMap<String, bool> = BTreeMap::new();
    for part in config.split("${").skip(1) {
        let Some((expr, _)) = part.split_once('}') else {
            continue;
        };
        let (name, default) = match expr.split_once(":-") {
            Some((n, _)) => (n, true),
            None => (expr, false),
        };
        let e = out.entry(name.to_string()).or_insert(default);
        *e = *e && default;
    }
    out
}

/// Applies a strategic-merge patch as `kubectl patch` does for what the chart's patch holds:
/// maps merge, lists of named objects (containers, volumes, env) merge by name, anything else
/// is replaced.
fn strategic_merge(base: &mut Value, patch: &Value) {
    match (base, patch) {
        (Value::Object(b), Value::Object(p)) => {
            for (k, v) in p {
                strategic_merge(b.entry(k.clone()).or_insert(Value::Null), v);
            }
        }
        (Value::Array(b), Value::Array(p))
            if p.iter().all(|i| i["name"].is_string())
                && b.iter().all(|i| i["name"].is_string()) =>
        {
            for item in p {
                match b.iter_mut().find(|i| i["name"] == item["name"]) {
                    Some(existing) => strategic_merge(existing, item),
                    None => b.push(item.clone()),
                }
            }
        }
        (b, p) => *b = p.clone(),
    }
}

/// One rendering of the chart and what the checks need to know about it.
struct Case {
    what: &'static str,
    docs: Vec<Value>,
    /// The pod authtrail runs in: the chart's Deployment, or the existing one patched.
    pod: Value,
}

fn render_case(what: &'static str, file: Option<&str>) -> Case {
    let text = template(file, &[]).unwrap_or_else(|e| panic!("{what}: helm template: {e}"));
    let docs = objects(what, &text);
    let sidecar = of_kind(&docs, "Deployment").is_empty();
    let pod = if sidecar {
        let patch_cm = of_kind(&docs, "ConfigMap")
            .into_iter()
            .find(|c| c["data"]["patch.yaml"].is_string())
            .unwrap_or_else(|| panic!("{what}: sidecar mode renders the patch ConfigMap"));
        let patch: Value = serde_saphyr::from_str(patch_cm["data"]["patch.yaml"].as_str().unwrap())
            .unwrap_or_else(|e| panic!("{what}: patch.yaml: {e}"));
        let mut base: Value = serde_saphyr::from_str(
            &std::fs::read_to_string(root().join("tests/helm/existing-deployment.yaml")).unwrap(),
        )
        .unwrap();
        strategic_merge(&mut base, &patch);
        base
    } else {
        one(&docs, "Deployment").clone()
    };
    Case { what, docs, pod }
}

fn cases() -> Vec<Case> {
    vec![
        render_case("default values", None),
        render_case("values-sidecar.yaml", Some("values-sidecar.yaml")),
        render_case(
            "values-servicemonitor.yaml",
            Some("values-servicemonitor.yaml"),
        ),
        render_case(
            "values-existing-secret.yaml",
            Some("values-existing-secret.yaml"),
        ),
    ]
}

fn authtrail(case: &Case) -> &Value {
    k8s::container(&case.pod, "authtrail")
        .unwrap_or_else(|| panic!("{}: no authtrail container", case.what))
}

fn config_text(case: &Case) -> &str {
    of_kind(&case.docs, "ConfigMap")
        .into_iter()
        .find_map(|c| c["data"]["authtrail.yaml"].as_str())
        .unwrap_or_else(|| panic!("{}: no ConfigMap with authtrail.yaml", case.what))
}

#[test]
fn the_chart_lints_and_every_rendering_passes_the_kubernetes_schemas() {
    if skip().is_some() {
        return;
    }
    for file in [
        None,
        Some("values-sidecar.yaml"),
        Some("values-servicemonitor.yaml"),
        Some("values-existing-secret.yaml"),
    ] {
        let mut args = vec!["lint".to_string(), "--strict".into()];
        args.extend(values_args(file, &[]));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        if let Err(e) = helm(&args) {
            panic!("helm lint --strict {file:?}:\n{e}");
        }
    }
    for case in cases() {
        validate_schemas(case.what, &case.docs);
        if case.docs.iter().all(|d| d["kind"] != "Deployment") {
            // Sidecar mode: the existing Deployment with the patch applied is valid too.
            validate_schemas(
                &format!("{} (patched Deployment)", case.what),
                std::slice::from_ref(&case.pod),
            );
        }
    }
}

#[test]
fn probes_resolve_in_the_probed_container_and_the_pod_is_locked_down() {
    if skip().is_some() {
        return;
    }
    for case in cases() {
        let what = case.what;
        let probes = k8s::check_probe_ports(what, &case.pod);
        assert!(probes >= 3, "{what}: authtrail's three probes ({probes})");
        let a = authtrail(&case);
        for (probe, path) in [
            ("startupProbe", "/healthz"),
            ("livenessProbe", "/healthz"),
            ("readinessProbe", "/readyz"),
        ] {
            assert_eq!(a[probe]["httpGet"]["path"], path, "{what}: {probe}");
            let port = &a[probe]["httpGet"]["port"];
            let number = port
                .as_str()
                .and_then(|n| k8s::named_port(a, n))
                .or(port.as_u64());
            assert_eq!(number, Some(9090), "{what}: {probe} on the admin port");
        }
        // Port names are unique in the pod (the patch adds authtrail's to yours).
        let mut names = BTreeSet::new();
        for c in k8s::containers(&case.pod) {
            for n in k8s::port_names(c) {
                assert!(
                    names.insert(n.clone()),
                    "{what}: port name {n} twice in the pod"
                );
            }
        }
        // Locked down: non-root, read-only root, no capabilities, no escalation.
        let pod_sc = &k8s::pod_spec(&case.pod)["securityContext"];
        let sc = &a["securityContext"];
        assert!(
            sc["runAsNonRoot"] == true || pod_sc["runAsNonRoot"] == true,
            "{what}: runAsNonRoot"
        );
        assert_eq!(sc["readOnlyRootFilesystem"], true, "{what}");
        assert_eq!(sc["allowPrivilegeEscalation"], false, "{what}");
        assert_eq!(sc["capabilities"]["drop"], json!(["ALL"]), "{what}");
        assert!(
            a["resources"]["limits"]["memory"].is_string(),
            "{what}: resources"
        );
        // The data volume (SQLite file and spool) is a disk, never a tmpfs, and the spool dir
        // of the config is on it.
        let mounts = a["volumeMounts"].as_array().unwrap();
        let data = mounts
            .iter()
            .find(|m| m["mountPath"] == "/var/lib/authtrail")
            .unwrap_or_else(|| panic!("{what}: the data volume"));
        let volume = k8s::pod_spec(&case.pod)["volumes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["name"] == data["name"])
            .unwrap_or_else(|| panic!("{what}: volume {}", data["name"]));
        assert!(
            volume["emptyDir"].is_object() || volume["persistentVolumeClaim"].is_object(),
            "{what}: data volume {volume}"
        );
        assert_ne!(volume["emptyDir"]["medium"], "Memory", "{what}");
        assert!(
            config_text(&case).contains("dir: /var/lib/authtrail/spool"),
            "{what}: the spool is on the data volume"
        );
        // The upstream is a port some other container of the pod declares.
        let upstream: http::Uri = config_text(&case)
            .lines()
            .find_map(|l| l.strip_prefix("upstream: "))
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(upstream.host(), Some("127.0.0.1"), "{what}");
        let port = u64::from(upstream.port_u16().unwrap());
        assert!(
            k8s::containers(&case.pod)
                .iter()
                .filter(|c| c["name"] != "authtrail")
                .any(|c| c["ports"]
                    .as_array()
                    .is_some_and(|ps| ps.iter().any(|p| p["containerPort"] == port))),
            "{what}: the upstream port {port} is the auth server's"
        );
        // The shutdown budget covers authtrail's preStop, drain and flush.
        let grace = k8s::pod_spec(&case.pod)["terminationGracePeriodSeconds"]
            .as_u64()
            .unwrap();
        let pre_stop = a["lifecycle"]["preStop"]["sleep"]["seconds"]
            .as_u64()
            .unwrap_or(0);
        assert!(grace >= pre_stop + 20 + 15, "{what}: grace {grace}s");
    }
}

#[test]
fn services_servicemonitor_and_networkpolicy_select_the_pods_and_the_admin_port() {
    if skip().is_some() {
        return;
    }
    for case in cases() {
        let what = case.what;
        let labels = &case.pod["spec"]["template"]["metadata"]["labels"];
        let a = authtrail(&case);
        let declared = k8s::port_names(a);
        let services = of_kind(&case.docs, "Service");
        assert_eq!(services.len(), 2, "{what}: proxy and admin Services");
        let mut admin_service = None;
        for s in &services {
            assert!(
                k8s::selects(&s["spec"]["selector"], labels),
                "{what}: {} selects the pods",
                s["metadata"]["name"]
            );
            for p in s["spec"]["ports"].as_array().unwrap() {
                let target = p["targetPort"].as_str().unwrap();
                assert!(declared.contains(target), "{what}: targetPort {target}");
                if k8s::named_port(a, target) == Some(9090) {
                    admin_service = Some((*s, p["name"].as_str().unwrap().to_string()));
                }
            }
        }
        let (admin_service, admin_port_name) =
            admin_service.unwrap_or_else(|| panic!("{what}: a Service for the admin port"));

        let np = one(&case.docs, "NetworkPolicy");
        assert!(
            k8s::selects(&np["spec"]["podSelector"]["matchLabels"], labels),
            "{what}: the NetworkPolicy selects the pods"
        );
        assert_eq!(np["spec"]["policyTypes"], json!(["Ingress"]), "{what}");
        let rules = np["spec"]["ingress"].as_array().unwrap();
        let admits = |rule: &Value, port: u64| {
            rule["ports"].as_array().is_some_and(|ps| {
                ps.iter().any(|p| {
                    p["port"] == port
                        || p["port"].as_str().and_then(|n| k8s::named_port(a, n)) == Some(port)
                })
            })
        };
        let admin_rules: Vec<&Value> = rules.iter().filter(|r| admits(r, 9090)).collect();
        assert!(!admin_rules.is_empty(), "{what}: a rule for the admin port");
        for r in &admin_rules {
            assert!(
                r["from"].as_array().is_some_and(|f| !f.is_empty()),
                "{what}: the admin port is open to everyone: {r}"
            );
        }
        assert!(
            rules.iter().any(|r| admits(r, 8080)),
            "{what}: the proxy port"
        );

        if let Some(sm) = of_kind(&case.docs, "ServiceMonitor").first() {
            assert_eq!(sm["apiVersion"], "monitoring.coreos.com/v1");
            let sel = &sm["spec"]["selector"]["matchLabels"];
            for s in &services {
                assert_eq!(
                    k8s::selects(sel, &s["metadata"]["labels"]),
                    s["metadata"]["name"] == admin_service["metadata"]["name"],
                    "{what}: the ServiceMonitor selects the admin Service only"
                );
            }
            assert_eq!(sm["spec"]["endpoints"][0]["port"], admin_port_name.as_str());
            assert_eq!(sm["spec"]["endpoints"][0]["path"], "/metrics");
            assert_eq!(sm["metadata"]["labels"]["release"], "kube-prometheus-stack");
        }
    }
    // Off by default.
    let default = render_case("default values", None);
    assert!(of_kind(&default.docs, "ServiceMonitor").is_empty());
}

/// authtrail::config::load_str reads `${VAR}` from the process environment: one test at a time.
static ENV: Mutex<()> = Mutex::new(());

#[test]
fn the_configmap_loads_with_authtrails_loader_and_the_secret_holds_what_it_reads() {
    if skip().is_some() {
        return;
    }
    let _env = ENV.lock().unwrap_or_else(|e| e.into_inner());
    for case in cases() {
        let what = case.what;
        let config = config_text(&case);
        let a = authtrail(&case);
        let env = a["env"].as_array().unwrap();
        let secrets = of_kind(&case.docs, "Secret");
        // Every ${VAR} reaches the container: from the Secret (a required key unless every use
        // has a default), or as a plain extraEnv value.
        let mut values: BTreeMap<String, String> = BTreeMap::new();
        for (var, has_default) in env_refs(config) {
            let entry = env
                .iter()
                .find(|e| e["name"] == var.as_str())
                .unwrap_or_else(|| panic!("{what}: ${{{var}}} is not in the container's env"));
            if let Some(v) = entry["value"].as_str() {
                values.insert(var, v.to_string());
                continue;
            }
            let r = &entry["valueFrom"]["secretKeyRef"];
            assert_eq!(r["key"], var.as_str(), "{what}");
            assert_eq!(r["optional"] == true, has_default, "{what}: {var} optional");
            let name = r["name"].as_str().unwrap();
            match secrets.iter().find(|s| s["metadata"]["name"] == name) {
                Some(s) => match s["data"][&var].as_str() {
                    Some(v) => {
                        values.insert(var, b64(v));
                    }
                    None => assert!(has_default, "{what}: Secret {name} lacks {var}"),
                },
                None if has_default => {}
                None => {
                    // existingSecret: not rendered; stand-ins of the right shape.
                    assert_eq!(name, "authtrail-keys", "{what}");
                    assert!(
                        secrets.is_empty(),
                        "{what}: no Secret rendered with existingSecret"
                    );
                    let v = match var.as_str() {
                        "AUTHTRAIL_CHECKPOINT_KEY" => "42".repeat(32),
                        "AUTHTRAIL_STORE_URL" => "postgres://authtrail:pw@db:5432/authtrail".into(),
                        v if v.starts_with("AUTHTRAIL_ADMIN_TOKEN_SHA256_") => {
                            sha256_hex(b"helm-test-token")
                        }
                        _ => "helm-test-stand-in-0123456789abcdef".into(),
                    };
                    values.insert(var, v);
                }
            }
        }
        for (k, v) in &values {
            std::env::set_var(k, v);
        }
        let loaded = authtrail::config::load_str(config, "configmap#authtrail.yaml");
        for k in values.keys() {
            std::env::remove_var(k);
        }
        let cfg = loaded.unwrap_or_else(|e| panic!("{what}: authtrail.yaml does not load:\n{e}"));
        assert_eq!(cfg.listen.port(), 8080, "{what}");
        assert_eq!(cfg.admin_listen.port(), 9090, "{what}");
        assert!(
            cfg.admin_listen.ip().is_unspecified(),
            "{what}: kubelet and Services reach it"
        );
        assert!(
            cfg.store.spool.dir.starts_with("/var/lib/authtrail"),
            "{what}"
        );
        assert!(
            !cfg.admin_credentials.is_empty(),
            "{what}: an admin credential"
        );
        // The admin credentials the config names are the Secret's: the hash of the token the
        // values gave, or of the one generated and kept beside it.
        if let Some(secret) = secrets.first() {
            for c in &cfg.admin_credentials {
                let var = format!(
                    "AUTHTRAIL_ADMIN_TOKEN_SHA256_{}",
                    c.name.to_uppercase().replace('-', "_")
                );
                let hash: String = c.token_sha256.iter().map(|b| format!("{b:02x}")).collect();
                assert_eq!(values[&var], hash, "{what}: {}", c.name);
                let token = match (what, c.name.as_str()) {
                    ("values-sidecar.yaml", "oncall") => "helm-test-oncall-token".to_string(),
                    ("values-sidecar.yaml", "team-billing") => "helm-test-billing-token".into(),
                    _ => b64(secret["data"][format!("admin-token-{}", c.name)]
                        .as_str()
                        .unwrap_or_else(|| panic!("{what}: generated token of {}", c.name))),
                };
                assert_eq!(sha256_hex(token.as_bytes()), hash, "{what}: {}", c.name);
            }
        }
        if what == "values-sidecar.yaml" {
            // The preset's map with the values' route first, and the extraEnv issuer.
            assert!(
                cfg.routes.routes.len() > 5,
                "{what}: the keycloak preset's routes"
            );
            assert!(config.contains("id: healthz"), "{what}");
            assert_eq!(cfg.admin_credentials.len(), 2, "{what}");
            let secret = secrets[0];
            assert!(
                secret["data"]
                    .as_object()
                    .unwrap()
                    .keys()
                    .all(|k| !k.starts_with("admin-token-")),
                "{what}: no token generated when every one is given"
            );
        }
        // The pod template rolls when the config changes: the annotation is its checksum.
        assert_eq!(
            case.pod["spec"]["template"]["metadata"]["annotations"]["checksum/authtrail-config"],
            sha256_hex(config.trim_end_matches('\n').as_bytes()),
            "{what}"
        );
    }
}

#[test]
fn every_preset_renders_as_written_and_loads() {
    if skip().is_some() {
        return;
    }
    let _env = ENV.lock().unwrap_or_else(|e| e.into_inner());
    let dir = root().join("config/presets");
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| {
            let p = e.unwrap().path();
            Some(p.file_name()?.to_str()?.strip_suffix(".yaml")?.to_string())
        })
        .collect();
    names.sort();
    assert!(names.len() >= 8, "{names:?}");
    for name in names {
        let text = template(None, &[json!({"config": {"preset": name}})])
            .unwrap_or_else(|e| panic!("preset {name}: {e}"));
        let docs = objects(&name, &text);
        let config = of_kind(&docs, "ConfigMap")[0]["data"]["authtrail.yaml"]
            .as_str()
            .unwrap();
        // Helm reads the preset as YAML 1.1 and writes it back; authtrail reads YAML 1.2. The
        // map must come out as authtrail reads the file itself (no `on` turned into `true`).
        let rendered: Value = serde_saphyr::from_str(config).unwrap();
        let original: Value = serde_saphyr::from_str(
            &std::fs::read_to_string(dir.join(format!("{name}.yaml"))).unwrap(),
        )
        .unwrap();
        for (key, value) in original.as_object().unwrap() {
            if ["listen", "upstream", "store", "trust", "admin"].contains(&key.as_str()) {
                continue;
            }
            assert_eq!(
                &rendered[key], value,
                "preset {name}: {key} changed on the way"
            );
        }
        // Stand-ins for what the Secret would hold; `${VAR:-default}`s keep their defaults.
        let vars: Vec<String> = env_refs(config)
            .into_iter()
            .filter(|(_, has_default)| !has_default)
            .map(|(v, _)| v)
            .collect();
        for v in &vars {
            std::env::set_var(
                v,
                match v.as_str() {
                    "AUTHTRAIL_CHECKPOINT_KEY" => "42".repeat(32),
                    v if v.starts_with("AUTHTRAIL_ADMIN_TOKEN_SHA256_") => sha256_hex(b"t"),
                    _ => "helm-test-stand-in-0123456789abcdef".to_string(),
                },
            );
        }
        let loaded = authtrail::config::load_str(config, &format!("{name} via the chart"));
        for v in &vars {
            std::env::remove_var(v);
        }
        let cfg = loaded.unwrap_or_else(|e| panic!("preset {name} via the chart:\n{e}"));
        assert!(!cfg.routes.routes.is_empty(), "preset {name}");
    }
}

#[test]
fn bad_values_are_refused_when_rendering() {
    if skip().is_some() {
        return;
    }
    for (set, says) in [
        (json!({"persistence": {"medium": "Memory"}}), "tmpfs"),
        (
            json!({"mode": "sidecar"}),
            "sidecar.podSelector is required",
        ),
        (
            json!({"persistence": {"type": "pvc"}, "replicaCount": 2}),
            "replicaCount 1",
        ),
        (json!({"config": {"preset": "no-such"}}), "keycloak"),
        (json!({"secrets": {"checkpointKey": "not-hex"}}), "64 hex"),
        (
            json!({"config": {"store": {"urlFromSecret": true}}}),
            "secrets.storeUrl",
        ),
        (
            json!({"config": {"hmacKeySets": {"main": {}}}}),
            "secrets.jwtSecrets.main",
        ),
        (
            json!({"ports": {"adminName": "authtrail-admin-port"}}),
            "ports.adminName",
        ),
    ] {
        match template(None, std::slice::from_ref(&set)) {
            Ok(_) => panic!("{set} rendered"),
            Err(e) => assert!(e.contains(says), "{set}: {e}"),
        }
    }
    // A config change changes the checksum (and so rolls the pods).
    let sum = |set: &[Value]| {
        let docs = objects("checksum", &template(None, set).unwrap());
        one(&docs, "Deployment")["spec"]["template"]["metadata"]["annotations"]
            ["checksum/authtrail-config"]
            .clone()
    };
    assert_ne!(
        sum(&[]),
        sum(&[json!({"config": {"upstream": "http://127.0.0.1:9001"}})])
    );
}

#[test]
fn the_chart_ships_the_presets_of_config_presets_and_the_crates_version() {
    // No Helm needed: Helm's .Files can only read inside the chart, so the presets are copies.
    let list = |dir: &Path| -> BTreeMap<String, String> {
        std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
            .map(|p| {
                (
                    p.file_name().unwrap().to_string_lossy().into_owned(),
                    std::fs::read_to_string(&p).unwrap(),
                )
            })
            .collect()
    };
    let ours = list(&root().join("config/presets"));
    let chart = list(&root().join("charts/authtrail/presets"));
    assert_eq!(
        ours.keys().collect::<Vec<_>>(),
        chart.keys().collect::<Vec<_>>(),
        "charts/authtrail/presets/ holds config/presets/*.yaml"
    );
    for (name, text) in &ours {
        assert!(
            &chart[name] == text,
            "charts/authtrail/presets/{name} differs from config/presets/{name}: \
             cp config/presets/*.yaml charts/authtrail/presets/"
        );
    }
    let chart_yaml: Value = serde_saphyr::from_str(
        &std::fs::read_to_string(root().join("charts/authtrail/Chart.yaml")).unwrap(),
    )
    .unwrap();
    assert_eq!(chart_yaml["apiVersion"], "v2");
    assert_eq!(chart_yaml["appVersion"], env!("CARGO_PKG_VERSION"));
}
