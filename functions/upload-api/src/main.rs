use shared::config::Env;
use shared::metrics::Metrics;
use upload_api::cloudfront::signer_from_secret;
use upload_api::config::UploadAccess;
use upload_api::store::{DynamoFiles, DynamoRateLimiter, DynamoSessions, S3Uploads};
use upload_api::{function_url, Api, ApiConfig};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    shared::logging::init();
    let config = ApiConfig::from_env(&Env::process())?;
    let sdk = shared::aws::load_config().await;
    let dynamodb = shared::aws::dynamodb_client(&sdk);
    let mut api = Api::new(
        config.clone(),
        S3Uploads::from_sdk(&sdk, &config.bucket)?,
        DynamoSessions::new(dynamodb.clone(), &config.uploads_table),
        DynamoFiles::new(dynamodb.clone(), &config.files_table),
        DynamoRateLimiter::new(dynamodb, &config.uploads_table, config.rate_limit),
        Metrics::for_function(config.metrics_namespace.clone()),
    );
    if let UploadAccess::Signed(signed) = &config.access {
        let secrets = aws_sdk_secretsmanager::Client::new(&sdk);
        api = api.with_cloudfront(signer_from_secret(&secrets, signed).await?);
    }
    lambda_runtime::run(lambda_runtime::service_fn(|event| {
        function_url::handle(&api, event)
    }))
    .await
}
