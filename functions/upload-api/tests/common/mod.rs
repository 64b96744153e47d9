//! The upload service against the local stand-ins, with resources of its own: a bucket whose
//! ObjectCreated notifications go to a queue of this test's, the two DynamoDB tables, the change
//! topic with a queue subscribed to it, and the API served over real HTTP the way a function URL
//! delivers requests (so clients use it with a plain HTTP client).

#![allow(dead_code)]

pub mod function_url;
pub mod moto;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use aws_lambda_events::event::sqs::{SqsEvent, SqsMessage};
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, GlobalSecondaryIndex, KeySchemaElement, KeyType, Projection,
    ProjectionType, ScalarAttributeType,
};
use aws_sdk_s3::config::{Credentials, Region, SharedCredentialsProvider};
use aws_sdk_s3::types::{Event, NotificationConfiguration, QueueConfiguration};
use aws_sdk_sqs::types::{MessageSystemAttributeName, QueueAttributeName};
use aws_smithy_runtime_api::client::http::SharedHttpClient;
use lambda_runtime::{Context, LambdaEvent};
use shared::batch::BatchRunner;
use shared::config::Env;
use shared::metrics::Metrics;
use test_support::queues::notified_keys;
use upload_api::auth::{token_hash_hex, IamPrincipal};
use upload_api::client::ApiClient;
use upload_api::cloudfront::signer_from_secret;
use upload_api::config::UploadAccess;
use upload_api::metadata::Outcome;
use upload_api::store::files::FEED_INDEX;
use upload_api::store::{
    DynamoFiles, DynamoRateLimiter, DynamoSessions, S3Heads, S3Uploads, SnsNotifier,
};
use upload_api::{Api, ApiConfig, MetadataConfig, MetadataWriter};

pub type StackApi = Api<S3Uploads, DynamoSessions, DynamoFiles, DynamoRateLimiter>;
pub type Writer = MetadataWriter<S3Heads, DynamoFiles, SnsNotifier>;

pub const ALICE: &str = "alice";
pub const BOB: &str = "bob";
pub const MIB: usize = 1024 * 1024;

pub fn var(name: &str) -> String {
    match std::env::var(name) {
        Ok(value) if !value.is_empty() => value,
        _ => panic!(
            "{name} is not set: these tests need the local stack and the strict S3. Run \
             `scripts/local-stack up` and `scripts/strict-s3 up`, then source .local/env and \
             .local/strict-s3.env (scripts/test does all of it)."
        ),
    }
}

fn unique(what: &str) -> String {
    let stamp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis();
    format!(
        "upload-it-{what}-{stamp}-{:06x}",
        fastrand::u32(..0xff_ffff)
    )
}

pub fn token(caller: &str) -> String {
    format!("{caller}-token-{:016x}", fastrand::u64(..))
}

/// Which S3 the API signs for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signer {
    /// moto, the local stack's S3 (notifications, no signature checks).
    Moto,
    /// s3s-fs, the strict S3 (signatures and checksums checked, no notifications).
    Strict,
    /// The strict S3 itself, not through the wire recorder `scripts/test` puts in front of it:
    /// for requests tampered with on purpose, which AWS refuses and the recorder would report
    /// (and which s3s-fs answers before reading their body, a reset once relayed).
    StrictUnrecorded,
}

pub struct Stack {
    pub sdk: aws_config::SdkConfig,
    pub s3: aws_sdk_s3::Client,
    pub sqs: aws_sdk_sqs::Client,
    pub dynamodb: aws_sdk_dynamodb::Client,
    pub sns: aws_sdk_sns::Client,
    /// The bucket the API signs for (on moto or on the strict S3).
    pub bucket: String,
    /// The client for that bucket.
    pub bucket_client: aws_sdk_s3::Client,
    pub events_queue_url: String,
    pub events_queue_arn: String,
    pub changes_queue_url: String,
    pub topic_arn: String,
    pub uploads_table: String,
    pub files_table: String,
    pub task_table: String,
    pub tokens: HashMap<&'static str, String>,
    pub api: Arc<StackApi>,
    pub base_url: String,
    pub writer: Writer,
    signer: Signer,
}

impl Stack {
    /// A stack on moto, the API configured with `extra` on top of the defaults.
    pub async fn start(extra: &[(&str, &str)]) -> Stack {
        Stack::start_with(Signer::Moto, extra).await
    }

    pub async fn start_with(signer: Signer, extra: &[(&str, &str)]) -> Stack {
        // The service's log lines go with a failing test's output.
        shared::logging::init();
        for name in [
            "AWS_ENDPOINT_URL",
            "AWS_REGION",
            "AWS_ACCESS_KEY_ID",
            "AWS_SECRET_ACCESS_KEY",
        ] {
            var(name);
        }
        let sdk = shared::aws::load_config().await;
        let s3 = shared::aws::s3_client(&sdk);
        let sqs = shared::aws::sqs_client(&sdk);
        let dynamodb = shared::aws::dynamodb_client(&sdk);
        let sns = aws_sdk_sns::Client::new(&sdk);

        let (events_queue_url, events_queue_arn) = create_queue(&sqs, &unique("events")).await;
        let (changes_queue_url, changes_queue_arn) = create_queue(&sqs, &unique("changes")).await;
        let topic_arn = sns
            .create_topic()
            .name(unique("topic"))
            .send()
            .await
            .expect("create the change topic")
            .topic_arn
            .expect("topic ARN");
        sns.subscribe()
            .topic_arn(&topic_arn)
            .protocol("sqs")
            .endpoint(&changes_queue_arn)
            .send()
            .await
            .expect("subscribe the change queue");

        let uploads_table = unique("uploads");
        let files_table = unique("files");
        let task_table = unique("tasks");
        create_keyed_table(&dynamodb, &uploads_table).await;
        create_keyed_table(&dynamodb, &task_table).await;
        create_files_table(&dynamodb, &files_table).await;

        let (bucket, bucket_client, credentials) = match signer {
            Signer::Moto => {
                let bucket = unique("bucket");
                s3.create_bucket()
                    .bucket(&bucket)
                    .send()
                    .await
                    .expect("create the bucket");
                s3.put_bucket_notification_configuration()
                    .bucket(&bucket)
                    .notification_configuration(
                        NotificationConfiguration::builder()
                            .queue_configurations(
                                QueueConfiguration::builder()
                                    .queue_arn(&events_queue_arn)
                                    .events(Event::from("s3:ObjectCreated:*"))
                                    .build()
                                    .unwrap(),
                            )
                            .build(),
                    )
                    .send()
                    .await
                    .expect("notify the events queue");
                let credentials = sdk.credentials_provider().expect("credentials");
                let fixed = sdk
                    .to_builder()
                    .http_client(SharedHttpClient::new(moto::ListPartsRootFix(
                        aws_smithy_http_client::Builder::new()
                            .tls_provider(aws_smithy_http_client::tls::Provider::Rustls(
                                aws_smithy_http_client::tls::rustls_provider::CryptoMode::AwsLc,
                            ))
                            .build_https(),
                    )))
                    .build();
                (bucket, shared::aws::s3_client(&fixed), credentials)
            }
            Signer::Strict | Signer::StrictUnrecorded => {
                let credentials = SharedCredentialsProvider::new(Credentials::new(
                    var("STRICT_S3_ACCESS_KEY"),
                    var("STRICT_S3_SECRET_KEY"),
                    None,
                    None,
                    "strict-s3",
                ));
                let config = aws_sdk_s3::Config::builder()
                    .behavior_version(aws_sdk_s3::config::BehaviorVersion::latest())
                    .endpoint_url(match signer {
                        Signer::StrictUnrecorded => {
                            std::env::var("WIRE_UPSTREAM_STRICT_S3_ENDPOINT")
                                .unwrap_or_else(|_| var("STRICT_S3_ENDPOINT"))
                        }
                        _ => var("STRICT_S3_ENDPOINT"),
                    })
                    .region(Region::new("us-east-1"))
                    .credentials_provider(credentials.clone())
                    .force_path_style(true)
                    .request_checksum_calculation(
                        aws_sdk_s3::config::RequestChecksumCalculation::WhenRequired,
                    )
                    .response_checksum_validation(
                        aws_sdk_s3::config::ResponseChecksumValidation::WhenRequired,
                    )
                    .build();
                (
                    var("STRICT_S3_BUCKET"),
                    aws_sdk_s3::Client::from_conf(config),
                    credentials,
                )
            }
        };

        let tokens: HashMap<&'static str, String> =
            [(ALICE, token(ALICE)), (BOB, token(BOB))].into();
        let mut stack = Stack {
            writer: writer(&sdk, &files_table, &topic_arn),
            api: Arc::new(
                api(
                    &sdk,
                    &bucket,
                    &bucket_client,
                    credentials.clone(),
                    &dynamodb,
                    &uploads_table,
                    &files_table,
                    &tokens,
                    extra,
                )
                .await,
            ),
            base_url: String::new(),
            sdk,
            s3,
            sqs,
            dynamodb,
            sns,
            bucket,
            bucket_client,
            events_queue_url,
            events_queue_arn,
            changes_queue_url,
            topic_arn,
            uploads_table,
            files_table,
            task_table,
            tokens,
            signer,
        };
        stack.base_url = function_url::serve(stack.api.clone()).await;
        if signer == Signer::Moto {
            // S3 announces the notification configuration with a test event.
            stack.drain_test_event().await;
        }
        stack
    }

    /// Another API over the same resources, with other settings; returns its base URL.
    pub async fn another_api(&self, extra: &[(&str, &str)]) -> String {
        self.api_signing_with(self.signing_credentials(), extra)
            .await
    }

    /// The credentials the stack's API signs with.
    pub fn signing_credentials(&self) -> SharedCredentialsProvider {
        match self.signer {
            Signer::Moto => self.sdk.credentials_provider().expect("credentials"),
            Signer::Strict | Signer::StrictUnrecorded => {
                SharedCredentialsProvider::new(Credentials::new(
                    var("STRICT_S3_ACCESS_KEY"),
                    var("STRICT_S3_SECRET_KEY"),
                    None,
                    None,
                    "strict-s3",
                ))
            }
        }
    }

    /// Another API over the same resources that signs with `credentials`; returns its base URL.
    pub async fn api_signing_with(
        &self,
        credentials: SharedCredentialsProvider,
        extra: &[(&str, &str)],
    ) -> String {
        let api = api(
            &self.sdk,
            &self.bucket,
            &self.bucket_client,
            credentials,
            &self.dynamodb,
            &self.uploads_table,
            &self.files_table,
            &self.tokens,
            extra,
        )
        .await;
        function_url::serve(Arc::new(api)).await
    }

    /// A Secrets Manager secret holding `value`; returns its ARN.
    pub async fn secret(&self, value: &str) -> String {
        aws_sdk_secretsmanager::Client::new(&self.sdk)
            .create_secret()
            .name(unique("signing-key"))
            .secret_string(value)
            .send()
            .await
            .expect("create the secret")
            .arn
            .expect("secret ARN")
    }

    /// A client of the API at `base_url` (another API over this stack) for `caller`.
    pub fn client_of(&self, base_url: &str, caller: &str) -> ApiClient {
        ApiClient::new(base_url, Some(self.tokens[caller].clone()))
    }

    pub fn client(&self, caller: &str) -> ApiClient {
        ApiClient::new(&self.base_url, Some(self.tokens[caller].clone()))
    }

    /// A client whose every request reaches this stack's API (started with `AUTH_MODE=iam`)
    /// signed by `principal`, as through an `AWS_IAM` function URL.
    pub async fn iam_client(&self, principal: IamPrincipal) -> ApiClient {
        ApiClient::new(
            function_url::serve_as(self.api.clone(), Some(principal)).await,
            None,
        )
    }

    pub fn prefix(&self, caller: &str) -> String {
        format!("uploads/{caller}/")
    }

    async fn drain_test_event(&self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            for message in self.receive(&self.events_queue_url).await {
                let body = message.body.clone().unwrap_or_default();
                self.delete(&self.events_queue_url, &message).await;
                if body.contains("s3:TestEvent") {
                    return;
                }
            }
        }
    }

    async fn receive(&self, queue_url: &str) -> Vec<aws_sdk_sqs::types::Message> {
        self.sqs
            .receive_message()
            .queue_url(queue_url)
            .max_number_of_messages(10)
            .wait_time_seconds(1)
            .message_system_attribute_names(MessageSystemAttributeName::All)
            .send()
            .await
            .expect("receive messages")
            .messages
            .unwrap_or_default()
    }

    async fn delete(&self, queue_url: &str, message: &aws_sdk_sqs::types::Message) {
        self.sqs
            .delete_message()
            .queue_url(queue_url)
            .receipt_handle(message.receipt_handle.clone().unwrap_or_default())
            .send()
            .await
            .expect("delete a message");
    }

    /// The S3 event messages naming `keys`, as SQS would hand them to Lambda (waits up to 30 s).
    /// moto may announce one object twice (a completed multipart upload as `Put` and as
    /// `CompleteMultipartUpload`): every message is returned.
    pub async fn events_for(&self, keys: &[&str]) -> Vec<SqsMessage> {
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut found: Vec<SqsMessage> = Vec::new();
        let mut seen: Vec<String> = Vec::new();
        while keys.iter().any(|k| !seen.iter().any(|s| s == k)) {
            assert!(
                Instant::now() < deadline,
                "events for {keys:?} did not all arrive in 30 s (seen {seen:?})"
            );
            for message in self.receive(&self.events_queue_url).await {
                let body = message.body.clone().unwrap_or_default();
                self.delete(&self.events_queue_url, &message).await;
                let named = notified_keys(&body);
                if named.iter().any(|k| keys.contains(&k.as_str())) {
                    seen.extend(named);
                    found.push(self.lambda_record(message));
                }
            }
        }
        // A second announcement of the same object arrives with the first or just after it.
        for message in self.receive(&self.events_queue_url).await {
            let body = message.body.clone().unwrap_or_default();
            self.delete(&self.events_queue_url, &message).await;
            if notified_keys(&body)
                .iter()
                .any(|k| keys.contains(&k.as_str()))
            {
                found.push(self.lambda_record(message));
            }
        }
        found
    }

    fn lambda_record(&self, message: aws_sdk_sqs::types::Message) -> SqsMessage {
        let mut record = SqsMessage::default();
        record.message_id = message.message_id;
        record.receipt_handle = message.receipt_handle;
        record.body = message.body;
        record.event_source = Some("aws:sqs".into());
        record.event_source_arn = Some(self.events_queue_arn.clone());
        record.attributes = message
            .attributes
            .unwrap_or_default()
            .into_iter()
            .map(|(name, value)| (name.as_str().to_owned(), value))
            .collect();
        record
    }

    /// Runs the metadata writer on each message, as its Lambda would.
    pub async fn record(&self, messages: &[SqsMessage]) -> Vec<Outcome> {
        let mut outcomes = Vec::new();
        for message in messages {
            outcomes.extend(
                self.writer
                    .process(message.clone())
                    .await
                    .expect("the metadata writer records the event"),
            );
        }
        outcomes
    }

    /// Runs the metadata writer's Lambda handler on a batch.
    pub async fn record_batch(&self, messages: Vec<SqsMessage>) -> Vec<String> {
        let mut event = SqsEvent::default();
        event.records = messages;
        let response = upload_api::metadata::handle(
            &self.writer,
            &BatchRunner::new(4, Metrics::new("UploadApiTest")),
            LambdaEvent::new(event, Context::default()),
        )
        .await
        .expect("the batch as a whole succeeds");
        response
            .batch_item_failures
            .into_iter()
            .map(|f| f.item_identifier)
            .collect()
    }

    /// The change messages that reached the topic's subscriber queue (waits for `count`).
    pub async fn change_messages(&self, count: usize) -> Vec<serde_json::Value> {
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut found = Vec::new();
        while found.len() < count {
            assert!(
                Instant::now() < deadline,
                "only {} of {count} change messages arrived in 20 s",
                found.len()
            );
            for message in self.receive(&self.changes_queue_url).await {
                self.delete(&self.changes_queue_url, &message).await;
                let envelope: serde_json::Value =
                    serde_json::from_str(message.body.as_deref().unwrap_or("{}")).unwrap();
                let inner = envelope["Message"].as_str().expect("an SNS notification");
                let mut change: serde_json::Value = serde_json::from_str(inner).unwrap();
                change["_attributes"] = envelope["MessageAttributes"].clone();
                found.push(change);
            }
        }
        found
    }

    /// Change messages that arrive within `wait` (to show that none do).
    pub async fn change_messages_within(&self, wait: Duration) -> usize {
        let deadline = Instant::now() + wait;
        let mut count = 0;
        while Instant::now() < deadline {
            for message in self.receive(&self.changes_queue_url).await {
                self.delete(&self.changes_queue_url, &message).await;
                count += 1;
            }
        }
        count
    }

    /// Bytes of an object in the signing bucket, `None` when it is absent.
    pub async fn object(&self, key: &str) -> Option<Vec<u8>> {
        match self
            .bucket_client
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
        {
            Ok(output) => Some(output.body.collect().await.unwrap().into_bytes().to_vec()),
            Err(err)
                if err
                    .raw_response()
                    .is_some_and(|r| r.status().as_u16() == 404) =>
            {
                None
            }
            Err(err) => panic!("get {key}: {err:?}"),
        }
    }

    pub async fn keys_under(&self, prefix: &str) -> Vec<String> {
        let output = self
            .bucket_client
            .list_objects_v2()
            .bucket(&self.bucket)
            .prefix(prefix)
            .send()
            .await
            .expect("list the bucket");
        let mut keys: Vec<String> = output
            .contents()
            .iter()
            .filter_map(|o| o.key().map(str::to_owned))
            .collect();
        keys.sort();
        keys
    }

    /// The image processor over this stack's bucket and task table, for uploads.
    pub fn image_processor(
        &self,
    ) -> image_processor::Processor<
        image_processor::store::S3Store,
        image_processor::tasks::DynamoTaskTable,
    > {
        let config = image_processor::Config::from_env(&Env::from_pairs([
            ("TASK_TABLE", self.task_table.as_str()),
            ("INPUT_PREFIXES", "uploads/"),
            ("OUTPUT_PREFIX", "thumbnails/"),
            ("IMAGE_CONCURRENCY", "1"),
        ]))
        .expect("image processor configuration");
        let tasks = image_processor::tasks::DynamoTaskTable::new(
            self.dynamodb.clone(),
            &self.task_table,
            config.task_ttl,
        );
        image_processor::Processor::new(
            config,
            image_processor::store::S3Store::new(self.s3.clone()),
            tasks,
            Metrics::new("UploadApiTest"),
        )
    }
}

#[allow(clippy::too_many_arguments)]
async fn api(
    sdk: &aws_config::SdkConfig,
    bucket: &str,
    client: &aws_sdk_s3::Client,
    credentials: SharedCredentialsProvider,
    dynamodb: &aws_sdk_dynamodb::Client,
    uploads_table: &str,
    files_table: &str,
    tokens: &HashMap<&'static str, String>,
    extra: &[(&str, &str)],
) -> StackApi {
    let hashes = tokens
        .iter()
        .map(|(caller, token)| format!("{caller}:{}", token_hash_hex(token)))
        .collect::<Vec<_>>()
        .join(",");
    let mut pairs: Vec<(&str, &str)> = vec![
        ("BUCKET", bucket),
        ("UPLOADS_TABLE", uploads_table),
        ("FILES_TABLE", files_table),
        ("AUTH_TOKENS", &hashes),
        ("MAX_UPLOAD_BYTES", "67108864"),
        ("PART_SIZE", "5242880"),
        ("FEED_SETTLE", "0s"),
        ("RATE_LIMIT_PER_SECOND", "1000"),
        ("RATE_LIMIT_BURST", "1000"),
        (
            "ALLOWED_CONTENT_TYPES",
            "image/jpeg,image/png,application/octet-stream,video/mp4",
        ),
    ];
    pairs.extend_from_slice(extra);
    let config = ApiConfig::from_env(&Env::from_pairs(pairs)).expect("test configuration");
    let api = Api::new(
        config.clone(),
        S3Uploads::new(client.clone(), bucket, credentials, "us-east-1"),
        DynamoSessions::new(dynamodb.clone(), uploads_table),
        DynamoFiles::new(dynamodb.clone(), files_table),
        DynamoRateLimiter::new(dynamodb.clone(), uploads_table, config.rate_limit),
        Metrics::new("UploadApiTest"),
    );
    // As main does: the signing key from Secrets Manager (moto's).
    match &config.access {
        UploadAccess::Signed(signed) => api.with_cloudfront(
            signer_from_secret(&aws_sdk_secretsmanager::Client::new(sdk), signed)
                .await
                .expect("the CloudFront signing key"),
        ),
        _ => api,
    }
}

fn writer(sdk: &aws_config::SdkConfig, files_table: &str, topic_arn: &str) -> Writer {
    let config = MetadataConfig::from_env(&Env::from_pairs([
        ("FILES_TABLE", files_table),
        ("CHANGES_TOPIC_ARN", topic_arn),
    ]))
    .expect("writer configuration");
    MetadataWriter::new(
        config,
        S3Heads::new(shared::aws::s3_client(sdk)),
        DynamoFiles::new(shared::aws::dynamodb_client(sdk), files_table),
        SnsNotifier::new(aws_sdk_sns::Client::new(sdk), topic_arn),
        Metrics::new("UploadApiTest"),
    )
}

async fn create_queue(sqs: &aws_sdk_sqs::Client, name: &str) -> (String, String) {
    let url = sqs
        .create_queue()
        .queue_name(name)
        .send()
        .await
        .expect("create a queue")
        .queue_url
        .expect("queue URL");
    let arn = sqs
        .get_queue_attributes()
        .queue_url(&url)
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await
        .expect("queue attributes")
        .attributes
        .and_then(|a| a.get(&QueueAttributeName::QueueArn).cloned())
        .expect("queue ARN");
    (url, arn)
}

fn attribute(name: &str) -> AttributeDefinition {
    AttributeDefinition::builder()
        .attribute_name(name)
        .attribute_type(ScalarAttributeType::S)
        .build()
        .unwrap()
}

fn key(name: &str, kind: KeyType) -> KeySchemaElement {
    KeySchemaElement::builder()
        .attribute_name(name)
        .key_type(kind)
        .build()
        .unwrap()
}

async fn create_keyed_table(dynamodb: &aws_sdk_dynamodb::Client, name: &str) {
    dynamodb
        .create_table()
        .table_name(name)
        .attribute_definitions(attribute("id"))
        .key_schema(key("id", KeyType::Hash))
        .billing_mode(BillingMode::PayPerRequest)
        .send()
        .await
        .expect("create a table");
}

async fn create_files_table(dynamodb: &aws_sdk_dynamodb::Client, name: &str) {
    dynamodb
        .create_table()
        .table_name(name)
        .attribute_definitions(attribute("key"))
        .attribute_definitions(attribute("version"))
        .attribute_definitions(attribute("owner"))
        .attribute_definitions(attribute("change"))
        .key_schema(key("key", KeyType::Hash))
        .key_schema(key("version", KeyType::Range))
        .global_secondary_indexes(
            GlobalSecondaryIndex::builder()
                .index_name(FEED_INDEX)
                .key_schema(key("owner", KeyType::Hash))
                .key_schema(key("change", KeyType::Range))
                .projection(
                    Projection::builder()
                        .projection_type(ProjectionType::All)
                        .build(),
                )
                .build()
                .unwrap(),
        )
        .billing_mode(BillingMode::PayPerRequest)
        .send()
        .await
        .expect("create the files table");
}

/// A session of an assumed role, as the function URL's authorizer names it.
pub fn role_session(account: &str, role: &str, role_id: &str, session: &str) -> IamPrincipal {
    IamPrincipal {
        user_arn: Some(format!(
            "arn:aws:sts::{account}:assumed-role/{role}/{session}"
        )),
        user_id: Some(format!("{role_id}:{session}")),
        account_id: Some(account.to_owned()),
    }
}

/// Deterministic bytes.
pub fn bytes(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| ((i * 31 + usize::from(seed) * 7) % 251) as u8)
        .collect()
}

/// A JPEG photo of `width` x `height`.
pub fn jpeg(width: u32, height: u32) -> Vec<u8> {
    let picture = image::RgbImage::from_fn(width, height, |x, y| {
        image::Rgb([(x % 256) as u8, (y % 256) as u8, ((x + y) % 256) as u8])
    });
    let mut out = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 85)
        .encode_image(&picture)
        .expect("encode a JPEG");
    out
}

/// A directory of this test's own.
pub fn temp_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(unique(name));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}
