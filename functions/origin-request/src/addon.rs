//! The Node-API surface: one async function, `handle(eventJson) -> Promise<replyJson>`.
//!
//! JSON text crosses the boundary rather than JS objects: one `JSON.stringify` and one parse with
//! serde cost less than walking the event property by property through Node-API.

use std::panic::AssertUnwindSafe;
use std::sync::LazyLock;

use futures::FutureExt;
use napi_derive::napi;
use shared::metrics::Metrics;

use crate::error::EdgeError;
use crate::hook::{Hook, METRICS_NAMESPACE};
use crate::sqs::SqsQueue;

/// One per sandbox: the SQS clients and the repeat filter live as long as it does.
static HOOK: LazyLock<Hook<SqsQueue>> = LazyLock::new(|| {
    shared::logging::init();
    Hook::new(
        SqsQueue::from_env(),
        Metrics::for_function(METRICS_NAMESPACE),
        Box::new(std::io::stdout()),
    )
});

/// A single worker thread: a sandbox handles one request at a time, and every thread started
/// costs cold-start time. If the runtime cannot be built, napi's default one is used.
#[cfg(not(test))]
#[napi_derive::module_init]
fn init() {
    if let Ok(runtime) = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
    {
        napi::bindgen_prelude::create_custom_tokio_runtime(runtime);
    }
}

/// Handles one CloudFront event (JSON text) and resolves to what CloudFront should get back
/// (JSON text). Rejects when the event cannot be read or the core panicked; the JavaScript
/// handler then returns the request it was given.
#[napi]
pub async fn handle(event: String) -> napi::Result<String> {
    let result = AssertUnwindSafe(HOOK.handle_json(&event))
        .catch_unwind()
        .await
        .unwrap_or_else(|panic| Err(EdgeError::Panic(panic_message(panic.as_ref()))));
    result.map_err(|err| {
        tracing::error!(error = %err, "edge hook failed");
        napi::Error::from_reason(err.to_string())
    })
}

pub fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".to_owned())
}
