use std::time::Duration;

use shared::batch::{BatchRunner, VisibilityExtender};
use shared::config::Env;
use shared::metrics::Metrics;
use shared::retry::Backoff;
use upload_api::store::{DynamoFiles, S3Heads, SnsNotifier};
use upload_api::{metadata, MetadataConfig, MetadataWriter};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    shared::logging::init();
    let config = MetadataConfig::from_env(&Env::process())?;
    let sdk = shared::aws::load_config().await;
    let metrics = Metrics::for_function(config.metrics_namespace.clone());
    let runner = BatchRunner::new(config.batch_concurrency, metrics.clone()).with_visibility(
        VisibilityExtender::new(
            shared::aws::sqs_client(&sdk),
            Backoff::new(Duration::from_secs(5), Duration::from_secs(15 * 60)),
        ),
    );
    let writer = MetadataWriter::new(
        config.clone(),
        S3Heads::new(shared::aws::s3_client(&sdk)),
        DynamoFiles::new(shared::aws::dynamodb_client(&sdk), &config.files_table),
        SnsNotifier::new(aws_sdk_sns::Client::new(&sdk), &config.changes_topic_arn),
        metrics,
    );
    lambda_runtime::run(lambda_runtime::service_fn(|event| {
        metadata::handle(&writer, &runner, event)
    }))
    .await
}
