//! The backfill function: copies an object the overseas bucket lacks from the domestic origin.

pub mod breaker;
pub mod config;
pub mod copy;
pub mod error;
pub mod freshness;
pub mod handler;
pub mod invalidate;
pub mod lease;
pub mod origin;
pub mod plan;
pub mod ranged;
pub mod refresh;
pub mod secret;
pub mod store;
pub mod task;
