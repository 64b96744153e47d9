#![recursion_limit = "256"]

use backfill::config::Config;
use backfill::handler::{handle_batch, Backfill};
use backfill::origin::HttpOrigin;
use backfill::store::S3Store;
use lambda_runtime::{service_fn, LambdaEvent};
use shared::batch::{BatchRunner, VisibilityExtender};
use shared::config::Env;
use shared::metrics::Metrics;
use shared::retry::Backoff;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    shared::logging::init();
    let config = Config::from_env(&Env::process())?;
    let sdk = shared::aws::load_config().await;
    let origin = HttpOrigin::new(&config)?;
    let runner = BatchRunner::new(
        config.record_concurrency,
        Metrics::for_function(config.metrics_namespace.clone()),
    )
    .with_visibility(VisibilityExtender::new(
        shared::aws::sqs_client(&sdk),
        Backoff::new(config.retry_base, config.retry_cap),
    ));
    let app = Backfill::new(config, origin, S3Store::new(shared::aws::s3_client(&sdk)));
    let (app, runner) = (&app, &runner);
    lambda_runtime::run(service_fn(move |event: LambdaEvent<_>| {
        handle_batch(app, runner, event)
    }))
    .await
}
