//! Helpers shared by the integration tests.
#![allow(dead_code)]

pub mod admin;
pub mod child;
#[path = "../../examples/demo_auth/mod.rs"]
pub mod demo_auth;
pub mod events;
pub mod fault;
pub mod fixtures;
pub mod harness;
pub mod jwks_server;
pub mod k8s;
pub mod oauth;
pub mod ocsf;
pub mod pg;
pub mod rsyslog;
pub mod serve;
pub mod store_conformance;
pub mod tcp_cut;
pub mod thirdparty;
pub mod upstream;
pub mod webhook;
