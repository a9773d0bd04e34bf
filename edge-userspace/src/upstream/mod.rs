//! Upstream pools at run time: selection, health, outlier ejection,
//! circuit breaking, the retry budget and upstream TLS.

mod breaker;
mod budget;
pub mod call;
pub mod health;
mod pool;
pub mod select;
pub mod stats;
pub mod tls;
mod window;

pub use breaker::{Admission, State as BreakerState};
pub use pool::{Backend, BackendState, UpstreamPool};
pub use select::PickInput;
