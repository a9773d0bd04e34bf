//! edge's daemon: loads and feeds the XDP fast path and runs the L7 proxy.
//!
//! Configuration flows one way: YAML → [`config`] → runtime objects
//! ([`dataplane`] maps, [`proxy`] services, [`admin`] endpoint).

pub mod access_log;
pub mod admin;
#[cfg(feature = "alloc-count")]
pub mod alloc_count;
pub mod bgp;
pub mod cache;
pub mod cli;
pub mod compression;
pub mod config;
pub mod ctl;
pub mod daemon;
pub mod dataplane;
pub mod decap;
pub mod drain;
pub mod grpc;
pub mod health;
pub mod l4;
pub mod metrics;
pub mod notify;
pub mod policy;
pub mod proxy;
pub mod runtime;
pub mod stream;
pub mod traffic;
pub mod transcode;
pub mod transform;
pub mod upstream;
