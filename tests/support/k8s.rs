//! Kubernetes manifests as kubelet reads them, shared by `tests/manifests.rs` (the fixed
//! example) and `tests/helm.rs` (the chart): a pod's containers, their ports, and the rule the
//! examples once broke — kubelet resolves a *named* probe port among the probed container's own
//! ports only, never its neighbours'.

#![allow(dead_code)]

use std::collections::BTreeSet;

use serde_json::Value;

/// The pod spec of a Deployment (or of anything with `spec.template.spec`).
pub fn pod_spec(workload: &Value) -> &Value {
    &workload["spec"]["template"]["spec"]
}

/// The containers of a workload's pod: init containers (native sidecars among them) first.
pub fn containers(workload: &Value) -> Vec<&Value> {
    let spec = pod_spec(workload);
    ["initContainers", "containers"]
        .iter()
        .filter_map(|k| spec[*k].as_array())
        .flatten()
        .collect()
}

/// The container called `name` in a workload's pod.
pub fn container<'a>(workload: &'a Value, name: &str) -> Option<&'a Value> {
    containers(workload).into_iter().find(|c| c["name"] == name)
}

pub fn port_names(container: &Value) -> BTreeSet<String> {
    container["ports"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| p["name"].as_str().map(str::to_string))
        .collect()
}

/// The `containerPort` of the port named `name` in `container`.
pub fn named_port(container: &Value, name: &str) -> Option<u64> {
    container["ports"]
        .as_array()?
        .iter()
        .find(|p| p["name"] == name)?["containerPort"]
        .as_u64()
}

/// Every `containerPort` of the pod.
pub fn pod_ports(workload: &Value) -> BTreeSet<u64> {
    containers(workload)
        .into_iter()
        .flat_map(|c| c["ports"].as_array().into_iter().flatten())
        .filter_map(|p| p["containerPort"].as_u64())
        .collect()
}

/// Checks every probe of every container of `workload` (`what` names it in messages): a named
/// port must be declared by the probed container itself, a numbered one by some container of
/// the pod (else nothing listens there). Returns how many probes were read.
pub fn check_probe_ports(what: &str, workload: &Value) -> usize {
    let in_pod = pod_ports(workload);
    let mut probes = 0;
    for c in containers(workload) {
        let names = port_names(c);
        for probe in ["readinessProbe", "livenessProbe", "startupProbe"] {
            let p = &c[probe];
            if p.is_null() {
                continue;
            }
            probes += 1;
            let port = ["httpGet", "tcpSocket", "grpc"]
                .iter()
                .map(|k| &p[*k]["port"])
                .find(|v| !v.is_null())
                .unwrap_or_else(|| panic!("{what}: {} {probe} has no port", c["name"]));
            if let Some(name) = port.as_str() {
                assert!(
                    names.contains(name),
                    "{what}: container {} {probe} uses port \"{name}\", which it does not \
                     declare ({names:?}); kubelet resolves names in the probed container only",
                    c["name"]
                );
            } else {
                let n = port
                    .as_u64()
                    .unwrap_or_else(|| panic!("{what}: {probe} port {port}"));
                assert!(
                    in_pod.contains(&n),
                    "{what}: container {} {probe} probes port {n}, which no container of the \
                     pod declares ({in_pod:?})",
                    c["name"]
                );
            }
        }
    }
    probes
}

/// Whether every label of `selector` is on `labels` (a Service's or a policy's selector
/// picking a pod).
pub fn selects(selector: &Value, labels: &Value) -> bool {
    let Some(sel) = selector.as_object() else {
        return false;
    };
    !sel.is_empty() && sel.iter().all(|(k, v)| &labels[k] == v)
}
