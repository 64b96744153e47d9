//! The image processor: thumbnails of the images that land in the overseas bucket, from S3 event
//! notifications delivered through SQS, each task done once.
//!
//! Pure decisions (`event`, `task`, `rendition`), the CPU pipeline (`imaging`), I/O behind narrow
//! traits (`store`, `tasks`) with one AWS adapter each, and the handler (`processor`).

pub mod config;
pub mod error;
pub mod event;
pub mod imaging;
pub mod processor;
pub mod rendition;
pub mod store;
pub mod task;
pub mod tasks;

pub use config::Config;
pub use error::Error;
pub use processor::{handle, Outcome, Processor};
