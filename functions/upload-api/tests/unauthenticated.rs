//! What a request with bad credentials costs (issue 21): a 401, one `AuthenticationRefused` count
//! for the alarm on floods, and no request to AWS at all. The stores here point at a closed port,
//! so a request that reached one would be answered 5xx, not 401.

use aws_lambda_events::event::lambda_function_urls::LambdaFunctionUrlRequest;
use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region, SharedCredentialsProvider};
use serde_json::json;
use shared::config::Env;
use shared::metrics::Metrics;
use upload_api::auth::token_hash_hex;
use upload_api::function_url::decode;
use upload_api::service::AUTHENTICATION_REFUSED;
use upload_api::store::{DynamoFiles, DynamoRateLimiter, DynamoSessions, S3Uploads};
use upload_api::{Api, ApiConfig};

const CLOSED: &str = "http://127.0.0.1:9";

fn request(method: &str, path: &str, authorization: Option<&str>) -> LambdaFunctionUrlRequest {
    let mut headers =
        json!({"host": "abc.lambda-url.us-east-1.on.aws", "content-type": "application/json"});
    if let Some(value) = authorization {
        headers["authorization"] = json!(value);
    }
    serde_json::from_value(json!({
        "version": "2.0",
        "rawPath": path,
        "rawQueryString": "",
        "headers": headers,
        "requestContext": {
            "http": {"method": method, "path": path, "protocol": "HTTP/1.1", "sourceIp": "203.0.113.9"},
            "requestId": "bad-token",
            "timeEpoch": 1717243200000u64,
        },
        "body": if method == "POST" { json!("{\"key\":\"a.jpg\",\"size\":1}") } else { json!(null) },
        "isBase64Encoded": false,
    }))
    .expect("a function URL event")
}

#[tokio::test]
async fn bad_credentials_are_refused_before_any_aws_request_and_counted() {
    let credentials =
        SharedCredentialsProvider::new(Credentials::new("AKID", "SECRET", None, None, "test"));
    let sdk = aws_config::SdkConfig::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .credentials_provider(credentials.clone())
        .endpoint_url(CLOSED)
        .build();
    let s3 = aws_sdk_s3::Client::new(&sdk);
    let dynamodb = aws_sdk_dynamodb::Client::new(&sdk);
    let hashes = format!("alice:{}", token_hash_hex("alice's real token"));
    let config = ApiConfig::from_env(&Env::from_pairs([
        ("BUCKET", "bucket"),
        ("UPLOADS_TABLE", "uploads"),
        ("FILES_TABLE", "files"),
        ("AUTH_TOKENS", hashes.as_str()),
    ]))
    .expect("configuration");
    let (metrics, captured) = Metrics::new("UploadApiTest").capturing();
    let api = Api::new(
        config.clone(),
        S3Uploads::new(s3, "bucket", credentials, "us-east-1"),
        DynamoSessions::new(dynamodb.clone(), "uploads"),
        DynamoFiles::new(dynamodb.clone(), "files"),
        DynamoRateLimiter::new(dynamodb, "uploads", config.rate_limit),
        metrics,
    );
    let bad = [
        ("GET", "/me", None),
        ("GET", "/me", Some("Bearer not-a-token")),
        (
            "POST",
            "/uploads",
            Some("Bearer 0123456789abcdef0123456789abcdef"),
        ),
        ("GET", "/files", Some("Basic YWxpY2U6c2VjcmV0")),
        ("GET", "/me", Some("Bearer")),
    ];
    for (method, path, authorization) in bad {
        let served = api
            .serve(
                &decode(request(method, path, authorization)),
                time::OffsetDateTime::now_utc(),
            )
            .await;
        let err = served.result.expect_err("refused");
        assert_eq!(
            err.status(),
            401,
            "{method} {path} {authorization:?}: {err}"
        );
        assert!(served.caller.is_none());
    }
    assert_eq!(captured.total(AUTHENTICATION_REFUSED), bad.len() as f64);
    assert_eq!(captured.total("Requests"), 0.0, "no route ran");
    for document in captured.documents() {
        assert_eq!(
            document["_aws"]["CloudWatchMetrics"][0]["Dimensions"],
            json!([[]]),
            "no dimension but the function's (none outside Lambda): one alarm covers every route"
        );
    }
}
