use std::time::Duration;

use image_processor::store::S3Store;
use image_processor::tasks::DynamoTaskTable;
use image_processor::{handle, Config, Processor};
use lambda_runtime::{service_fn, LambdaEvent};
use shared::batch::{BatchRunner, VisibilityExtender};
use shared::config::Env;
use shared::metrics::Metrics;
use shared::retry::Backoff;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    image_processor::imaging::keep_memory_mapped();
    shared::logging::init();
    let config = Config::from_env(&Env::process())?;
    let sdk = shared::aws::load_config().await;
    let metrics = Metrics::for_function(config.metrics_namespace.clone());
    let runner = BatchRunner::new(config.batch_concurrency, metrics.clone()).with_visibility(
        VisibilityExtender::new(
            shared::aws::sqs_client(&sdk),
            Backoff::new(Duration::from_secs(10), Duration::from_secs(15 * 60)),
        ),
    );
    let tasks = DynamoTaskTable::new(
        shared::aws::dynamodb_client(&sdk),
        config.task_table.clone(),
        config.task_ttl,
    );
    let processor = Processor::new(
        config,
        S3Store::new(shared::aws::s3_client(&sdk)),
        tasks,
        metrics,
    );
    lambda_runtime::run(service_fn(|event: LambdaEvent<_>| {
        handle(&processor, &runner, event)
    }))
    .await
}
