//! What the integration tests of several crates share. Never a dependency of a function.

pub mod fault_proxy;
pub mod json;
pub mod queues;
pub mod tls;
pub mod wan;
pub mod wire;
