//! Helpers shared by the integration tests.
#![allow(dead_code)]

#[path = "../../examples/demo_auth/mod.rs"]
pub mod demo_auth;
pub mod harness;
pub mod store_conformance;
pub mod upstream;
