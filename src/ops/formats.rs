//! What the sinks write: an event as JSON (the stored shape, or OCSF), and the request bodies of
//! the HTTP products an `http` sink speaks — Splunk HEC events, Elasticsearch `_bulk` NDJSON and
//! Loki pushes — with the reading of an Elasticsearch `_bulk` answer's per-item results. Pure
//! functions of the events: no I/O here.

use std::sync::Arc;

use bytes::Bytes;
use serde_json::{json, Value};

use crate::event::AuditEvent;
use crate::store::Checkpoint;

/// How events are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// The event as the store keeps it.
    Json,
    /// OCSF 1.x (Authentication, Account Change, API Activity), as `export --format ocsf`.
    Ocsf,
}

/// `event` in `format`, as one JSON value.
pub fn encode(event: &AuditEvent, format: Format) -> Value {
    match format {
        Format::Json => serde_json::to_value(event).unwrap_or(Value::Null),
        Format::Ocsf => crate::event::ocsf::to_ocsf(event),
    }
}

/// What a sink takes from its queues: an event, or a signed checkpoint.
#[derive(Clone, Debug)]
pub enum Item {
    Event(Arc<AuditEvent>),
    Checkpoint(Arc<Checkpoint>),
}

/// The event type a checkpoint record goes out as (msgid, sourcetype suffix, label).
pub const CHECKPOINT_TYPE: &str = "authtrail.checkpoint";

impl Item {
    /// The item as one JSON value: the event in `format`, or the checkpoint's record.
    pub fn json(&self, format: Format) -> Value {
        match self {
            Item::Event(e) => encode(e, format),
            Item::Checkpoint(cp) => cp.record(),
        }
    }

    /// Unix time in nanoseconds: the event's time, or when the checkpoint was signed.
    pub fn unix_nanos(&self) -> i128 {
        match self {
            Item::Event(e) => e.time.unix_timestamp_nanos(),
            Item::Checkpoint(cp) => i128::from(cp.created_ms) * 1_000_000,
        }
    }

    /// The event type (`authtrail.checkpoint` for a checkpoint).
    pub fn event_type(&self) -> &str {
        match self {
            Item::Event(e) => &e.event_type,
            Item::Checkpoint(_) => CHECKPOINT_TYPE,
        }
    }

    /// A stable id: the event's UUID, or the checkpoint's chain, segment and signing time (a
    /// resent checkpoint keeps its id).
    pub fn id(&self) -> String {
        match self {
            Item::Event(e) => e.id.to_string(),
            Item::Checkpoint(cp) => format!(
                "checkpoint:{}:{}-{}:{}",
                cp.instance, cp.from_n, cp.to_n, cp.created_ms
            ),
        }
    }

    pub fn is_event(&self) -> bool {
        matches!(self, Item::Event(_))
    }
}

/// This machine's name (a pod's name in Kubernetes), for syslog's HOSTNAME and HEC's `host`:
/// `/proc/sys/kernel/hostname`, else `$HOSTNAME`, else `-`.
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "-".to_string())
}

/// The request body an `http` sink sends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BodyFormat {
    /// Splunk HTTP Event Collector, `/services/collector/event`: event objects concatenated.
    SplunkHec,
    /// Elasticsearch (and OpenSearch) `_bulk`: NDJSON `create` actions, `_id` the event id.
    ElasticsearchBulk,
    /// Grafana Loki `/loki/api/v1/push`, JSON.
    Loki,
}

impl BodyFormat {
    pub fn content_type(self) -> &'static str {
        match self {
            BodyFormat::SplunkHec | BodyFormat::Loki => "application/json",
            BodyFormat::ElasticsearchBulk => "application/x-ndjson",
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            BodyFormat::SplunkHec => "splunk_hec",
            BodyFormat::ElasticsearchBulk => "elasticsearch_bulk",
            BodyFormat::Loki => "loki",
        }
    }
}

/// An `http` sink's body settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpBody {
    pub format: BodyFormat,
    /// The event's shape inside the body.
    pub events: Format,
    /// Elasticsearch: the index (or data stream) written to. Splunk: the HEC `index` (the
    /// token's default index when `None`).
    pub index: Option<String>,
    /// Splunk: the `host` field; this machine's name when `None`.
    pub host: Option<String>,
}

/// Default Elasticsearch index.
pub const DEFAULT_INDEX: &str = "authtrail";

/// The body for `items` (at least one).
pub fn http_body(cfg: &HttpBody, host: &str, items: &[Item]) -> Bytes {
    let mut out = Vec::with_capacity(items.len() * 768);
    match cfg.format {
        BodyFormat::SplunkHec => {
            for item in items {
                let nanos = item.unix_nanos();
                // Seconds with millisecond precision, as HEC's `time` takes them.
                let ms = nanos.div_euclid(1_000_000);
                let time = serde_json::Number::from_f64(ms as f64 / 1000.0)
                    .map_or(Value::Null, Value::Number);
                let sourcetype = if item.is_event() {
                    "authtrail:event"
                } else {
                    "authtrail:checkpoint"
                };
                let mut obj = json!({
                    "time": time,
                    "host": host,
                    "source": "authtrail",
                    "sourcetype": sourcetype,
                    "event": item.json(cfg.events),
                });
                if let Some(index) = &cfg.index {
                    obj["index"] = Value::String(index.clone());
                }
                let _ = serde_json::to_writer(&mut out, &obj);
                out.push(b'\n');
            }
        }
        BodyFormat::ElasticsearchBulk => {
            let index = cfg.index.as_deref().unwrap_or(DEFAULT_INDEX);
            for item in items {
                let action = json!({ "create": { "_index": index, "_id": item.id() } });
                let _ = serde_json::to_writer(&mut out, &action);
                out.push(b'\n');
                let mut doc = item.json(cfg.events);
                if let Value::Object(map) = &mut doc {
                    // Data streams require it; dashboards sort by it.
                    let ms = item.unix_nanos().div_euclid(1_000_000);
                    let ts = time::OffsetDateTime::from_unix_timestamp_nanos(ms * 1_000_000)
                        .map(crate::event::rfc3339_millis::format)
                        .unwrap_or_default();
                    map.insert("@timestamp".into(), Value::String(ts));
                }
                let _ = serde_json::to_writer(&mut out, &doc);
                out.push(b'\n');
            }
        }
        BodyFormat::Loki => {
            let _ = serde_json::to_writer(&mut out, &loki_push(cfg.events, items));
        }
    }
    Bytes::from(out)
}

type LokiLabels = [(&'static str, String); 4];

/// Loki stream labels of an item: few and bounded (`source`, `app`, `event_type`, `outcome`);
/// everything else is in the line.
fn loki_labels(item: &Item) -> LokiLabels {
    let (app, outcome) = match item {
        Item::Event(e) => (
            e.app.as_ref().map_or("-", |a| a.value.as_str()).to_string(),
            e.outcome.as_str().to_string(),
        ),
        Item::Checkpoint(_) => ("-".to_string(), "success".to_string()),
    };
    [
        ("source", "authtrail".to_string()),
        ("app", app),
        ("event_type", item.event_type().to_string()),
        ("outcome", outcome),
    ]
}

/// `{"streams": [{"stream": {labels}, "values": [["<unix ns>", "<line>"], ...]}]}`, one stream
/// per label set (in order of first appearance), each stream's values in time order.
fn loki_push(format: Format, items: &[Item]) -> Value {
    let mut streams: Vec<(LokiLabels, Vec<(i128, String)>)> = Vec::new();
    for item in items {
        let labels = loki_labels(item);
        let line = item.json(format).to_string();
        let value = (item.unix_nanos(), line);
        match streams.iter_mut().find(|(l, _)| *l == labels) {
            Some((_, values)) => values.push(value),
            None => streams.push((labels, vec![value])),
        }
    }
    let streams: Vec<Value> = streams
        .into_iter()
        .map(|(labels, mut values)| {
            values.sort_by_key(|(ts, _)| *ts);
            let stream: serde_json::Map<String, Value> = labels
                .into_iter()
                .map(|(k, v)| (k.to_string(), Value::String(v)))
                .collect();
            let values: Vec<Value> = values
                .into_iter()
                .map(|(ts, line)| json!([ts.to_string(), line]))
                .collect();
            json!({ "stream": stream, "values": values })
        })
        .collect();
    json!({ "streams": streams })
}

/// What an Elasticsearch `_bulk` answer says about each item of the request.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct BulkResult {
    /// Items created.
    pub created: usize,
    /// Items already there (409 on `create`: a resent event): delivered before.
    pub existing: usize,
    /// Positions (in the request) of items refused with 429, worth sending again.
    pub retry: Vec<usize>,
    /// Items refused for good: position, status and the error's `type` (never its `reason`,
    /// which may quote the document).
    pub failed: Vec<(usize, u16, String)>,
}

/// Read a `_bulk` answer for a request of `n` items. `Err` when it is not one (then nothing is
/// known of the items).
pub fn bulk_result(body: &[u8], n: usize) -> Result<BulkResult, String> {
    let v: Value = serde_json::from_slice(body).map_err(|e| format!("not JSON: {e}"))?;
    let items = v
        .get("items")
        .and_then(Value::as_array)
        .ok_or("no \"items\" array")?;
    if items.len() != n {
        return Err(format!("{} items answered for {n} sent", items.len()));
    }
    let mut out = BulkResult::default();
    for (i, item) in items.iter().enumerate() {
        // Each item is `{ "<action>": { "status": N, "error": {...}? } }`.
        let result = item
            .as_object()
            .and_then(|o| o.values().next())
            .ok_or_else(|| format!("item {i} is not an object"))?;
        let status = result
            .get("status")
            .and_then(Value::as_u64)
            .and_then(|s| u16::try_from(s).ok())
            .ok_or_else(|| format!("item {i} has no status"))?;
        match status {
            200..=299 => out.created += 1,
            409 => out.existing += 1,
            429 => out.retry.push(i),
            _ => {
                let kind = result
                    .get("error")
                    .and_then(|e| e.get("type"))
                    .and_then(Value::as_str)
                    .unwrap_or("unknown")
                    .to_string();
                out.failed.push((i, status, kind));
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bulk_answers_are_read_per_item() {
        let body = br#"{"took":3,"errors":true,"items":[
            {"create":{"_index":"a","_id":"1","status":201,"result":"created"}},
            {"create":{"_index":"a","_id":"2","status":409,"error":{"type":"version_conflict_engine_exception","reason":"[2]: document already exists"}}},
            {"create":{"_index":"a","_id":"3","status":400,"error":{"type":"document_parsing_exception","reason":"secret value"}}},
            {"create":{"_index":"a","_id":"4","status":429,"error":{"type":"es_rejected_execution_exception"}}}
        ]}"#;
        let r = bulk_result(body, 4).unwrap();
        assert_eq!(
            r,
            BulkResult {
                created: 1,
                existing: 1,
                retry: vec![3],
                failed: vec![(2, 400, "document_parsing_exception".into())],
            }
        );
        assert!(bulk_result(b"{}", 1).is_err());
        assert!(bulk_result(br#"{"items":[]}"#, 1).is_err());
    }
}
