//! The API gateway's configuration: `consumers:` and the `policies:` of
//! listeners and routes (surface, validation and model).

pub mod model;
pub(super) mod surface;
pub(super) mod validate;

pub use model::*;
pub use validate::{
    JWT_ALGORITHMS, MAX_CONCURRENCY, MAX_CONSUMERS, MAX_LIMIT, MAX_RATE_LIMITS, check_password_hash,
};
