//! authtrail: an audit-logging reverse-proxy sidecar for auth servers.
//!
//! The flow, one module each:
//! accept ([`proxy`]) → classify ([`classify`]) → forward ([`proxy`]) → event ([`event`]) →
//! queue and batch ([`pipeline`]) → store ([`store`]) → query ([`admin`], [`cli`]).
//! [`config`] turns the YAML file into the checked types all of them run on.

pub mod admin;
pub mod classify;
pub mod cli;
pub mod config;
pub mod event;
pub mod pipeline;
pub mod proxy;
pub mod sidecar;
pub mod store;
