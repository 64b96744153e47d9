#![recursion_limit = "256"]

use backfill::config::Config;
use backfill::freshness::DynamoFreshness;
use backfill::handler::{handle_batch, Backfill};
use backfill::invalidate::CloudFront;
use backfill::lease::DynamoLeases;
use backfill::origin::HttpOrigin;
use backfill::ranged::SqsQueue;
use backfill::refresh::Fresh;
use backfill::secret::add_origin_secret;
use backfill::store::S3Store;
use lambda_runtime::{service_fn, LambdaEvent};
use shared::batch::{BatchRunner, HandBack, VisibilityExtender};
use shared::config::Env;
use shared::metrics::Metrics;
use shared::retry::Backoff;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    release_large_buffers();
    shared::logging::init();
    let mut config = Config::from_env(&Env::process())?;
    let sdk = shared::aws::load_config().await;
    // Read before any message is handled: without it the origin refuses every fetch, so a failed
    // read fails the init and the messages wait in the queue for the next sandbox.
    add_origin_secret(&mut config, &sdk)
        .await
        .inspect_err(|err| tracing::error!(error = %err, "init failed"))?;
    let origin = HttpOrigin::new(&config)?;
    let runner = BatchRunner::new(
        config.record_concurrency,
        Metrics::for_function(config.metrics_namespace.clone()),
    )
    .with_visibility(VisibilityExtender::new(
        shared::aws::sqs_client(&sdk),
        Backoff::new(config.retry_base, config.retry_cap),
    ))
    .with_hand_back(HandBack {
        min_start: config.min_record_time,
        ..HandBack::default()
    });
    let leases = config
        .lease_table
        .clone()
        .map(|table| DynamoLeases::new(shared::aws::dynamodb_client(&sdk), table));
    let queue = config
        .part_queue_url
        .clone()
        .map(|url| SqsQueue::new(shared::aws::sqs_client(&sdk), url));
    let fresh = fresh(&config, &sdk);
    let mut app = Backfill::new(config, origin, S3Store::new(shared::aws::s3_client(&sdk)));
    app.fresh = fresh;
    let runner = &runner;
    match leases {
        Some(leases) => {
            let app = &app.with_leases(leases, queue);
            lambda_runtime::run(service_fn(move |event: LambdaEvent<_>| {
                handle_batch(app, runner, event)
            }))
            .await
        }
        // Without a lease table (a local run): neither coalesced nor split.
        None => {
            let app = &app;
            lambda_runtime::run(service_fn(move |event: LambdaEvent<_>| {
                handle_batch(app, runner, event)
            }))
            .await
        }
    }
}

/// The freshness table, queues and distribution the configuration names.
fn fresh(config: &Config, sdk: &aws_config::SdkConfig) -> Fresh {
    let freshness = &config.freshness;
    let queue = |url: &Option<String>| {
        url.clone()
            .map(|url| SqsQueue::new(shared::aws::sqs_client(sdk), url))
    };
    Fresh {
        table: freshness
            .table
            .clone()
            .map(|table| DynamoFreshness::new(shared::aws::dynamodb_client(sdk), table)),
        queue: queue(&freshness.queue_url),
        invalidations: queue(&freshness.invalidation_queue_url),
        cloudfront: freshness
            .distribution_id
            .clone()
            .map(|id| CloudFront::new(aws_sdk_cloudfront::Client::new(sdk), id)),
    }
}

/// Part buffers (megabytes each) come and go all the time. glibc raises its mmap threshold each
/// time such a buffer is freed, after which they are carved from the heap arenas of the runtime's
/// threads and the process's memory creeps up with the object's size. A fixed threshold keeps
/// them in their own mappings, returned to the system when freed: memory stays flat.
fn release_large_buffers() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes a setting of the allocator, which takes its own lock for it.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1024 * 1024);
    }
}
