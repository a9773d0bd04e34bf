//! Helpers shared by edge's integration tests and `cargo xtask run`'s lab:
//! network namespaces and veth links that clean themselves up, a small real
//! HTTP backend and client that work inside a namespace, the `edge` process,
//! hand-built packets for the kernel tests, and deadline-bounded waits;
//! for the gRPC tests, a real gRPC backend and client (grpcio, run by
//! Python) and raw HTTP/2 calls; a real Redis server; headless Chromium
//! through WebDriver; the scale-out lab (BIRD, ECMP, several edge hosts).

pub mod backend;
pub mod browser;
pub mod dsr;
pub mod ecmp;
pub mod edge;
pub mod grpc;
pub mod http;
pub mod l4packets;
pub mod lab;
pub mod loopback;
pub mod metrics;
pub mod netns;
pub mod packets;
pub mod process;
pub mod proxy;
pub mod redis;
pub mod tls;
pub mod topology;
pub mod wait;
