//! authtrail: an audit-logging reverse-proxy sidecar for auth servers.
//!
//! The flow, one module each:
//! accept ([`proxy`]) → classify ([`classify`]) → forward ([`proxy`]) → event ([`event`]) →
//! queue and batch ([`pipeline`]) → store ([`store`]) → query ([`admin`], [`cli`]).
//! [`identity`] verifies tokens (HMAC, PEM, JWKS), fingerprints them and decides route
//! requirements; [`config`] turns the YAML file into the checked types all of them run on;
//! [`sidecar`] wires them together and drains them in order on shutdown.

pub mod admin;
pub mod classify;
pub mod cli;
pub mod config;
pub mod event;
pub mod identity;
pub mod pipeline;
pub mod proxy;
pub mod sidecar;
pub mod store;
