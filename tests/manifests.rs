//! The Kubernetes example (examples/kubernetes) as kubelet and the sidecar would read it: every
//! named probe port is a port of the probed container (kubelet looks names up there only),
//! every Service targets a port some container declares, and the kustomization lists files
//! that exist. (That the ConfigMap's authtrail.yaml loads with the Secret's keys, with an admin
//! credential, is `config::tests::kubernetes_configmap_config_loads`.)

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde_json::Value;

#[path = "support/k8s.rs"]
mod k8s;

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/kubernetes")
}

/// Every YAML document of every manifest, with the file it came from.
fn documents() -> Vec<(String, Value)> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    let mut out = Vec::new();
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap();
        let docs: Vec<Value> =
            serde_saphyr::from_multiple(&text).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
        let name = f.file_name().unwrap().to_string_lossy().into_owned();
        out.extend(docs.into_iter().map(|d| (name.clone(), d)));
    }
    out
}

fn kind<'a>(docs: &'a [(String, Value)], k: &str) -> Vec<&'a (String, Value)> {
    docs.iter().filter(|(_, d)| d["kind"] == k).collect()
}

#[test]
fn every_named_probe_port_belongs_to_the_probed_container() {
    let docs = documents();
    let deployments = kind(&docs, "Deployment");
    assert_eq!(
        deployments.len(),
        2,
        "deployment.yaml and the native-sidecar one"
    );
    let probes: usize = deployments
        .iter()
        .map(|(file, d)| k8s::check_probe_ports(file, d))
        .sum();
    assert!(probes >= 6, "the probes were read ({probes})");
}

#[test]
fn services_target_declared_ports_and_kustomize_lists_real_files() {
    let docs = documents();
    let declared: BTreeSet<String> = kind(&docs, "Deployment")
        .iter()
        .flat_map(|(_, d)| k8s::containers(d))
        .flat_map(k8s::port_names)
        .collect();
    for (file, s) in kind(&docs, "Service") {
        for p in s["spec"]["ports"].as_array().unwrap() {
            if let Some(name) = p["targetPort"].as_str() {
                assert!(declared.contains(name), "{file}: targetPort {name}");
            }
        }
    }
    let (_, k) = kind(&docs, "Kustomization")[0];
    for r in k["resources"].as_array().unwrap() {
        let r = r.as_str().unwrap();
        assert!(dir().join(r).exists(), "kustomization.yaml lists {r}");
    }
}
