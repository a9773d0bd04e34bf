//! Stream listeners: raw TCP proxied to a pool, and TLS passed through to
//! a pool chosen by the ClientHello's server name.
pub mod accept;
pub mod client_hello;
pub mod copy;
pub mod proxy_protocol;
pub mod service;
