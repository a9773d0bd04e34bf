//! Upstream pools at run time: selection, health, outlier ejection,
//! circuit breaking and the retry budget.

mod breaker;
mod budget;
pub mod health;
mod pool;
pub mod select;
mod window;

pub use breaker::{Admission, State as BreakerState};
pub use pool::{Backend, UpstreamPool};
pub use select::PickInput;
