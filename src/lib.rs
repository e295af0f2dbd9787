//! authtrail: an audit-logging reverse-proxy sidecar for auth servers.
//!
//! The flow, one module each:
//! accept ([`proxy`]) → classify ([`classify`]) → forward ([`proxy`]) → event ([`event`]) →
//! queue and batch ([`pipeline`]) → store ([`store`]) → query ([`admin`], [`cli`]).
//! [`identity`] verifies tokens (HMAC, PEM, JWKS), fingerprints them and decides route
//! requirements; [`config`] turns the YAML file into the checked types all of them run on;
//! [`ops`] runs beside the pipeline: alert rules and stream sinks on its taps, and retention
//! purges of the store; [`metrics`] holds the Prometheus counters, which `admin::metrics`
//! serves at `/metrics`. [`sidecar`] wires them together and drains them in order on shutdown.
//! Leaves every module may use: [`hex`] (the one hex codec), [`units`] (the duration and size
//! parsers), [`tls`] (certificates, client configs and the one CA-file loader) and [`event`]
//! (with its OCSF mapping).
//!
//! Imports point one way, down these steps (`tests/layering.rs` keeps it so):
//! `hex`, `units`, `tls`, `event` ← `store` ← `identity` ← `classify` ← `metrics` ← `pipeline` ←
//! `ops` ← `config` ← `proxy` ← `admin` ← `sidecar` ← `cli`. The config compiles into types the
//! modules below it own (`ops::OpsConfig`, `pipeline::PipelineConfig`, …); none of them
//! imports it.

pub mod admin;
pub mod classify;
pub mod cli;
pub mod config;
pub mod event;
pub mod hex;
pub mod identity;
pub mod metrics;
pub mod ops;
pub mod pipeline;
pub mod proxy;
pub mod sidecar;
pub mod store;
pub mod tls;
pub mod units;
