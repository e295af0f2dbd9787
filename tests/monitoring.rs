//! The monitoring examples (examples/monitoring) name only metrics the sidecar serves: every
//! series in the Grafana dashboard's queries and in the Prometheus alert rules is in the metrics
//! table of docs/operations.md, and every metric there is one the code registers or sets.
//! (`promtool` checks and unit-tests the rules themselves in CI.)

use std::collections::BTreeSet;
use std::path::Path;

fn read(rel: &str) -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)).unwrap()
}

/// `authtrail_*` and `process_*` names in `text`, histogram suffixes taken off.
fn metric_names(text: &str) -> BTreeSet<String> {
    let re = regex::Regex::new(r"\b((?:authtrail|process)_[a-z_]+)").unwrap();
    re.captures_iter(text)
        .map(|c| {
            let n = &c[1];
            ["_bucket", "_count", "_sum"]
                .iter()
                .find_map(|s| n.strip_suffix(s))
                .unwrap_or(n)
                .to_string()
        })
        .collect()
}

/// The metrics docs/operations.md documents (its Metrics table), with `_{a,b}_total` and
/// `authtrail_events_written_total, _dropped_total` shorthands spelled out.
fn documented() -> BTreeSet<String> {
    let doc = read("docs/operations.md");
    let table = doc.split("## Metrics").nth(1).unwrap();
    let table = table.split("\n## ").next().unwrap();
    let mut out = BTreeSet::new();
    for line in table.lines().filter(|l| l.starts_with("| `")) {
        let cell = line.split(" | ").next().unwrap();
        let mut family = String::new();
        for name in cell.split('`').skip(1).step_by(2) {
            // `authtrail_sink_events_{sent,dropped,failed}_total{sink}`: one name each.
            if let (Some(open), Some(close)) = (name.find("_{"), name.find('}')) {
                let suffix = name[close + 1..].split('{').next().unwrap();
                for part in name[open + 2..close].split(',') {
                    out.insert(format!("{}_{part}{suffix}", &name[..open]));
                }
                continue;
            }
            let name = name.split('{').next().unwrap();
            if let Some(rest) = name.strip_prefix('_') {
                // `_dropped_total` after `authtrail_events_written_total`.
                out.insert(format!("{family}_{rest}"));
            } else {
                family = name.rsplitn(3, '_').nth(2).unwrap_or(name).to_string();
                out.insert(name.to_string());
            }
        }
    }
    out
}

#[test]
fn the_dashboard_and_the_alerts_use_only_documented_metrics() {
    let documented = documented();
    assert!(documented.len() > 30, "{documented:?}");
    let dashboard: serde_json::Value =
        serde_json::from_str(&read("examples/monitoring/grafana-dashboard.json")).unwrap();
    let mut exprs = String::new();
    for p in dashboard["panels"].as_array().unwrap() {
        for t in p["targets"].as_array().unwrap() {
            exprs.push_str(t["expr"].as_str().unwrap());
            exprs.push('\n');
        }
    }
    exprs.push_str(dashboard["templating"].to_string().as_str());
    let used_by_dashboard = metric_names(&exprs);
    let used_by_alerts = metric_names(&read("examples/monitoring/alerts.yaml"));
    assert!(used_by_dashboard.len() > 15 && used_by_alerts.len() > 10);
    for (what, used) in [
        ("grafana-dashboard.json", &used_by_dashboard),
        ("alerts.yaml", &used_by_alerts),
    ] {
        let unknown: Vec<_> = used.difference(&documented).collect();
        assert!(
            unknown.is_empty(),
            "{what} uses undocumented metrics: {unknown:?}"
        );
    }
}

#[test]
fn every_documented_metric_is_one_the_code_serves() {
    let code = read("src/metrics.rs") + &read("src/admin/metrics.rs");
    for name in documented() {
        assert!(
            code.contains(&format!("\"{name}\"")),
            "docs/operations.md documents {name}, which src/metrics.rs and src/admin/metrics.rs never name"
        );
    }
}
