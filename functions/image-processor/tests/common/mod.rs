//! The local stack (moto) as the integration tests use it: clients from the environment that
//! `scripts/local-stack up` writes, uploads, real S3 -> SQS notifications, renditions read back.

pub mod fixtures;

use std::collections::HashMap;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent, SqsMessage};
use image_processor::store::S3Store;
use image_processor::tasks::DynamoTaskTable;
use image_processor::{Config, Processor};
use lambda_runtime::{Context, LambdaEvent};
use shared::batch::BatchRunner;
use shared::config::Env;
use shared::metrics::{Captured, Metrics};
use tokio::sync::{Mutex, MutexGuard};

pub use test_support::queues::notified_keys;

pub type StackProcessor = Processor<S3Store, DynamoTaskTable>;

/// The tests share one image queue: they take turns.
static QUEUE: Mutex<()> = Mutex::const_new(());

pub struct Stack {
    pub s3: aws_sdk_s3::Client,
    pub sqs: aws_sdk_sqs::Client,
    pub dynamodb: aws_sdk_dynamodb::Client,
    pub bucket: String,
    pub queue_url: String,
    pub queue_arn: String,
    pub table: String,
    /// This test's own key prefix, under the notified prefix.
    pub root: String,
    _turn: MutexGuard<'static, ()>,
}

fn required(name: &str) -> String {
    match std::env::var(name) {
        Ok(value) if !value.is_empty() => value,
        _ => panic!(
            "{name} is not set: these tests need the local AWS stack. Run `scripts/local-stack up` \
             and `eval \"$(scripts/local-stack env)\"` first (scripts/test does both)."
        ),
    }
}

impl Stack {
    pub async fn new() -> Stack {
        let turn = QUEUE.lock().await;
        for name in [
            "AWS_ENDPOINT_URL",
            "AWS_REGION",
            "AWS_ACCESS_KEY_ID",
            "AWS_SECRET_ACCESS_KEY",
        ] {
            required(name);
        }
        let bucket = required("BUCKET");
        let queue_url = required("IMAGE_QUEUE_URL");
        let table = required("TASK_TABLE");
        let notified = std::env::var("IMAGE_INPUT_PREFIX").unwrap_or_default();
        let sdk = shared::aws::load_config().await;
        let sqs = shared::aws::sqs_client(&sdk);
        let queue_arn = sqs
            .get_queue_attributes()
            .queue_url(&queue_url)
            .attribute_names(aws_sdk_sqs::types::QueueAttributeName::QueueArn)
            .send()
            .await
            .expect("image queue attributes")
            .attributes
            .and_then(|a| {
                a.get(&aws_sdk_sqs::types::QueueAttributeName::QueueArn)
                    .cloned()
            })
            .expect("image queue ARN");
        let stamp = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_millis();
        Stack {
            s3: shared::aws::s3_client(&sdk),
            sqs,
            dynamodb: shared::aws::dynamodb_client(&sdk),
            bucket,
            queue_url,
            queue_arn,
            table,
            root: format!("{notified}image-it-{stamp}-{:04x}/", fastrand::u16(..)),
            _turn: turn,
        }
    }

    pub fn input_prefix(&self) -> String {
        format!("{}images/", self.root)
    }

    pub fn output_prefix(&self) -> String {
        format!("{}thumbnails/", self.root)
    }

    /// A processor for this test's prefixes; `extra` adds or overrides variables.
    pub fn processor(&self, extra: &[(&str, &str)]) -> StackProcessor {
        self.processor_counted(extra).0
    }

    /// The same, with the metrics it writes kept for the test to read.
    pub fn processor_counted(&self, extra: &[(&str, &str)]) -> (StackProcessor, Captured) {
        let input = self.input_prefix();
        let output = self.output_prefix();
        let mut pairs: Vec<(&str, &str)> = vec![
            ("TASK_TABLE", &self.table),
            ("INPUT_PREFIXES", &input),
            ("OUTPUT_PREFIX", &output),
            ("IMAGE_CONCURRENCY", "2"),
        ];
        pairs.extend_from_slice(extra);
        let config = Config::from_env(&Env::from_pairs(pairs)).expect("test configuration");
        let tasks = DynamoTaskTable::new(self.dynamodb.clone(), &self.table, config.task_ttl);
        let (metrics, captured) = Metrics::new("ImageProcessorTest").capturing();
        let processor = Processor::new(config, S3Store::new(self.s3.clone()), tasks, metrics);
        (processor, captured)
    }

    pub async fn put(&self, key: &str, body: Vec<u8>) -> String {
        self.s3
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .body(body.into())
            .send()
            .await
            .unwrap_or_else(|e| panic!("put {key}: {e:?}"))
            .e_tag
            .unwrap_or_default()
    }

    /// Replaces the object at `key` only if it is still the one with `etag`, as the backfill
    /// refreshes a copy; returns the new ETag.
    pub async fn replace(&self, key: &str, body: Vec<u8>, etag: &str) -> String {
        self.s3
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .if_match(etag)
            .body(body.into())
            .send()
            .await
            .unwrap_or_else(|e| panic!("replace {key}: {e:?}"))
            .e_tag
            .unwrap_or_default()
    }

    pub async fn delete_object(&self, key: &str) {
        self.s3
            .delete_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
            .unwrap_or_else(|e| panic!("delete {key}: {e:?}"));
    }

    /// The removal notification of `key`, as SQS delivers it.
    pub async fn removal(&self, key: &str) -> SqsMessage {
        self.messages(1, |body| {
            body.contains("\"ObjectRemoved:") && notified_keys(body).iter().any(|k| k == key)
        })
        .await
        .remove(0)
    }

    pub async fn get(
        &self,
        key: &str,
    ) -> Option<aws_sdk_s3::operation::get_object::GetObjectOutput> {
        match self
            .s3
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
        {
            Ok(output) => Some(output),
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

    pub async fn get_bytes(&self, key: &str) -> Option<Vec<u8>> {
        let output = self.get(key).await?;
        Some(output.body.collect().await.unwrap().into_bytes().to_vec())
    }

    /// Every key under `prefix`.
    pub async fn keys_under(&self, prefix: &str) -> Vec<String> {
        let mut keys = Vec::new();
        let mut pages = self
            .s3
            .list_objects_v2()
            .bucket(&self.bucket)
            .prefix(prefix)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            keys.extend(
                page.unwrap()
                    .contents
                    .unwrap_or_default()
                    .into_iter()
                    .filter_map(|o| o.key),
            );
        }
        keys.sort();
        keys
    }

    /// Waits for the notifications of `count` keys for which `wanted` holds, as SQS delivers them
    /// to Lambda. Messages about other keys (other tests' uploads) are deleted: nothing else
    /// reads this queue in tests.
    pub async fn notifications(
        &self,
        count: usize,
        wanted: impl Fn(&str) -> bool,
    ) -> Vec<SqsMessage> {
        self.messages(count, |body| {
            notified_keys(body).iter().any(|key| wanted(key))
        })
        .await
    }

    /// Waits for `count` messages whose body `wanted` accepts; deletes the others.
    pub async fn messages(&self, count: usize, wanted: impl Fn(&str) -> bool) -> Vec<SqsMessage> {
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut found: Vec<SqsMessage> = Vec::new();
        while found.len() < count {
            assert!(
                Instant::now() < deadline,
                "only {} of {count} notifications arrived within 30 s",
                found.len()
            );
            let received = self
                .sqs
                .receive_message()
                .queue_url(&self.queue_url)
                .max_number_of_messages(10)
                .wait_time_seconds(1)
                .message_system_attribute_names(aws_sdk_sqs::types::MessageSystemAttributeName::All)
                .send()
                .await
                .expect("receive from the image queue");
            for message in received.messages.unwrap_or_default() {
                let body = message.body.clone().unwrap_or_default();
                if wanted(&body) {
                    found.push(self.lambda_record(message));
                } else {
                    self.delete(message.receipt_handle.as_deref().unwrap_or_default())
                        .await;
                }
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
        record.event_source_arn = Some(self.queue_arn.clone());
        record.aws_region = std::env::var("AWS_REGION").ok();
        record.attributes = message
            .attributes
            .unwrap_or_default()
            .into_iter()
            .map(|(name, value)| (name.as_str().to_owned(), value))
            .collect::<HashMap<_, _>>();
        record
    }

    pub async fn delete(&self, receipt_handle: &str) {
        self.sqs
            .delete_message()
            .queue_url(&self.queue_url)
            .receipt_handle(receipt_handle)
            .send()
            .await
            .expect("delete a message");
    }

    /// Uploads the objects and returns their notifications, in upload order.
    pub async fn upload(&self, objects: &[(String, Vec<u8>)]) -> Vec<SqsMessage> {
        for (key, body) in objects {
            self.put(key, body.clone()).await;
        }
        let keys: Vec<&str> = objects.iter().map(|(k, _)| k.as_str()).collect();
        let mut records = self
            .notifications(keys.len(), |key| keys.contains(&key))
            .await;
        records.sort_by_key(|r| {
            let key = notified_keys(r.body.as_deref().unwrap_or_default()).remove(0);
            keys.iter().position(|k| *k == key)
        });
        records
    }

    /// Runs the Lambda handler on `records`, then deletes them as Lambda would.
    pub async fn invoke(
        &self,
        processor: &StackProcessor,
        records: Vec<SqsMessage>,
    ) -> SqsBatchResponse {
        let handles: Vec<String> = records
            .iter()
            .filter_map(|r| r.receipt_handle.clone())
            .collect();
        let mut event = SqsEvent::default();
        event.records = records;
        let response =
            image_processor::handle(processor, &runner(), LambdaEvent::new(event, context()))
                .await
                .expect("the batch as a whole succeeds");
        for handle in handles {
            self.delete(&handle).await;
        }
        response
    }

    /// The task record of a source key (there is one per revision; tests write each key once).
    pub async fn task_record(
        &self,
        key: &str,
    ) -> Option<HashMap<String, aws_sdk_dynamodb::types::AttributeValue>> {
        let items = self.task_records(key).await;
        assert!(items.len() <= 1, "{} records for {key}", items.len());
        items.into_iter().next()
    }

    /// Every task record of a source key: one per event (creations and removals).
    pub async fn task_records(
        &self,
        key: &str,
    ) -> Vec<HashMap<String, aws_sdk_dynamodb::types::AttributeValue>> {
        let prefix = format!("{}/{key}|", self.bucket);
        self.dynamodb
            .scan()
            .table_name(&self.table)
            .filter_expression("begins_with(id, :prefix)")
            .expression_attribute_values(
                ":prefix",
                aws_sdk_dynamodb::types::AttributeValue::S(prefix),
            )
            .consistent_read(true)
            .send()
            .await
            .expect("scan the task table")
            .items
            .unwrap_or_default()
    }
}

/// The message with its S3 event as S3 itself sends it, which moto does not quite: with the
/// sequencer that orders the events of one key (moto sends none), and for a removal without the
/// object's size and ETag (S3 sends neither, moto both).
pub fn as_s3_sends(record: &SqsMessage, sequencer: &str) -> SqsMessage {
    let mut body: serde_json::Value =
        serde_json::from_str(record.body.as_deref().expect("a body")).expect("an S3 event");
    let event = &mut body["Records"][0];
    let removal = event["eventName"]
        .as_str()
        .is_some_and(|name| name.starts_with("ObjectRemoved:"));
    let object = event["s3"]["object"]
        .as_object_mut()
        .expect("an S3 event record");
    object.insert("sequencer".into(), sequencer.into());
    if removal {
        object.remove("size");
        object.remove("eTag");
    }
    let mut record = record.clone();
    record.body = Some(body.to_string());
    record
}

/// The deadline of a call that is not about deadlines.
pub fn a_minute() -> tokio::time::Instant {
    tokio::time::Instant::now() + Duration::from_secs(60)
}

pub fn runner() -> BatchRunner {
    BatchRunner::new(4, Metrics::new("ImageProcessorTest"))
}

/// A context whose deadline is a minute away, as Lambda's would be.
pub fn context() -> Context {
    let mut context = Context::default();
    context.deadline = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
        + 60_000;
    context
}

pub fn string_attr<'a>(
    item: &'a HashMap<String, aws_sdk_dynamodb::types::AttributeValue>,
    name: &str,
) -> &'a str {
    item.get(name)
        .and_then(|v| v.as_s().ok())
        .map_or("", String::as_str)
}
