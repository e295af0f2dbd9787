//! OpenTelemetry logs over HTTP/protobuf (OTLP/HTTP, `POST /v1/logs`): each event one
//! `LogRecord` (its time, a severity from the outcome, the event JSON as the body, a few
//! attributes), under one resource with `service.name = authtrail`. The messages are written
//! here with prost, only the fields authtrail sets or reads, with the field numbers of
//! `opentelemetry/proto/{common,resource,logs,collector/logs}/v1/*.proto`.

use bytes::Bytes;
use prost::Message;

use super::formats::{Format, Item};
use crate::event::Outcome;

/// The protobuf messages (field numbers as in opentelemetry-proto).
pub mod proto {
    /// `opentelemetry.proto.collector.logs.v1.ExportLogsServiceRequest`
    #[derive(Clone, PartialEq, ::prost::Message)]
    pub struct ExportLogsServiceRequest {
        #[prost(message, repeated, tag = "1")]
        pub resource_logs: Vec<ResourceLogs>,
    }

    /// `opentelemetry.proto.collector.logs.v1.ExportLogsServiceResponse`
    #[derive(Clone, PartialEq, ::prost::Message)]
    pub struct ExportLogsServiceResponse {
        #[prost(message, optional, tag = "1")]
        pub partial_success: Option<ExportLogsPartialSuccess>,
    }

    /// `opentelemetry.proto.collector.logs.v1.ExportLogsPartialSuccess`
    #[derive(Clone, PartialEq, ::prost::Message)]
    pub struct ExportLogsPartialSuccess {
        #[prost(int64, tag = "1")]
        pub rejected_log_records: i64,
        #[prost(string, tag = "2")]
        pub error_message: String,
    }

    /// `opentelemetry.proto.logs.v1.ResourceLogs`
    #[derive(Clone, PartialEq, ::prost::Message)]
    pub struct ResourceLogs {
        #[prost(message, optional, tag = "1")]
        pub resource: Option<Resource>,
        #[prost(message, repeated, tag = "2")]
        pub scope_logs: Vec<ScopeLogs>,
        #[prost(string, tag = "3")]
        pub schema_url: String,
    }

    /// `opentelemetry.proto.resource.v1.Resource`
    #[derive(Clone, PartialEq, ::prost::Message)]
    pub struct Resource {
        #[prost(message, repeated, tag = "1")]
        pub attributes: Vec<KeyValue>,
    }

    /// `opentelemetry.proto.logs.v1.ScopeLogs`
    #[derive(Clone, PartialEq, ::prost::Message)]
    pub struct ScopeLogs {
        #[prost(message, optional, tag = "1")]
        pub scope: Option<InstrumentationScope>,
        #[prost(message, repeated, tag = "2")]
        pub log_records: Vec<LogRecord>,
    }

    /// `opentelemetry.proto.common.v1.InstrumentationScope`
    #[derive(Clone, PartialEq, ::prost::Message)]
    pub struct InstrumentationScope {
        #[prost(string, tag = "1")]
        pub name: String,
        #[prost(string, tag = "2")]
        pub version: String,
    }

    /// `opentelemetry.proto.logs.v1.LogRecord`
    #[derive(Clone, PartialEq, ::prost::Message)]
    pub struct LogRecord {
        #[prost(fixed64, tag = "1")]
        pub time_unix_nano: u64,
        /// `SeverityNumber`: 9 INFO, 10 INFO2, 13 WARN, 17 ERROR.
        #[prost(int32, tag = "2")]
        pub severity_number: i32,
        #[prost(string, tag = "3")]
        pub severity_text: String,
        #[prost(message, optional, tag = "5")]
        pub body: Option<AnyValue>,
        #[prost(message, repeated, tag = "6")]
        pub attributes: Vec<KeyValue>,
        #[prost(fixed64, tag = "11")]
        pub observed_time_unix_nano: u64,
        #[prost(string, tag = "12")]
        pub event_name: String,
    }

    /// `opentelemetry.proto.common.v1.KeyValue`
    #[derive(Clone, PartialEq, ::prost::Message)]
    pub struct KeyValue {
        #[prost(string, tag = "1")]
        pub key: String,
        #[prost(message, optional, tag = "2")]
        pub value: Option<AnyValue>,
    }

    /// `opentelemetry.proto.common.v1.AnyValue` (the string and int kinds).
    #[derive(Clone, PartialEq, ::prost::Message)]
    pub struct AnyValue {
        #[prost(oneof = "any_value::Value", tags = "1, 3")]
        pub value: Option<any_value::Value>,
    }

    pub mod any_value {
        #[derive(Clone, PartialEq, ::prost::Oneof)]
        pub enum Value {
            #[prost(string, tag = "1")]
            StringValue(String),
            #[prost(int64, tag = "3")]
            IntValue(i64),
        }
    }
}

use proto::any_value::Value as V;
use proto::{AnyValue, KeyValue};

/// The content type of OTLP/HTTP binary protobuf.
pub const CONTENT_TYPE: &str = "application/x-protobuf";

fn string(key: &str, value: impl Into<String>) -> KeyValue {
    KeyValue {
        key: key.to_string(),
        value: Some(AnyValue {
            value: Some(V::StringValue(value.into())),
        }),
    }
}

/// Severity number and text of an item.
fn severity(item: &Item) -> (i32, &'static str) {
    match item {
        Item::Event(e) => match e.outcome {
            Outcome::Success => (9, "INFO"),
            Outcome::Unknown => (10, "INFO2"),
            Outcome::Failure => (13, "WARN"),
            Outcome::Error => (17, "ERROR"),
        },
        Item::Checkpoint(_) => (9, "INFO"),
    }
}

fn record(item: &Item, format: Format, observed: u64) -> proto::LogRecord {
    let (number, text) = severity(item);
    let mut attributes = vec![
        string("event.type", item.event_type()),
        string("event.id", item.id()),
    ];
    if let Item::Event(e) = item {
        attributes.push(string("outcome", e.outcome.as_str()));
        if let Some(app) = &e.app {
            attributes.push(string("app", app.value.clone()));
        }
        if let Some(actor) = &e.actor.id {
            attributes.push(string("actor.id", actor.clone()));
        }
        attributes.push(string("request.id", e.http.request_id.clone()));
        if let Some(ip) = e.source.ip {
            attributes.push(string("client.address", ip.to_string()));
        }
        if let Some(status) = e.http.status {
            attributes.push(KeyValue {
                key: "http.response.status_code".into(),
                value: Some(AnyValue {
                    value: Some(V::IntValue(i64::from(status))),
                }),
            });
        }
    }
    proto::LogRecord {
        time_unix_nano: u64::try_from(item.unix_nanos()).unwrap_or(0),
        severity_number: number,
        severity_text: text.into(),
        body: Some(AnyValue {
            value: Some(V::StringValue(item.json(format).to_string())),
        }),
        attributes,
        observed_time_unix_nano: observed,
        event_name: item.event_type().to_string(),
    }
}

/// An `ExportLogsServiceRequest` of `items`, encoded.
pub fn export_request(items: &[Item], format: Format) -> Bytes {
    let observed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(0));
    let req = proto::ExportLogsServiceRequest {
        resource_logs: vec![proto::ResourceLogs {
            resource: Some(proto::Resource {
                attributes: vec![
                    string("service.name", "authtrail"),
                    string("service.version", env!("CARGO_PKG_VERSION")),
                ],
            }),
            scope_logs: vec![proto::ScopeLogs {
                scope: Some(proto::InstrumentationScope {
                    name: "authtrail".into(),
                    version: env!("CARGO_PKG_VERSION").into(),
                }),
                log_records: items.iter().map(|i| record(i, format, observed)).collect(),
            }],
            schema_url: String::new(),
        }],
    };
    Bytes::from(req.encode_to_vec())
}

/// The records a 2xx answer says were rejected, and its message (`partial_success`); `None`
/// when all were accepted (or the answer is empty or not protobuf).
pub fn rejected(body: &[u8]) -> Option<(i64, String)> {
    let resp = proto::ExportLogsServiceResponse::decode(body).ok()?;
    let p = resp.partial_success?;
    (p.rejected_log_records > 0).then_some((p.rejected_log_records, p.error_message))
}
