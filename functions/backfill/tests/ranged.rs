//! Split copies and key leases against the local stack: the lease table in DynamoDB and the part
//! queue in SQS (moto), the strict S3 (s3s-fs, which checks signatures and checksums; moto answers
//! ListParts with a `ListPartsResponse` root where S3's API reference and the SDK expect
//! `ListPartsResult`, so no split copy can complete on it), and a real origin serving ranges at a
//! set rate. The part queue
//! is drained here as Lambda's event source mapping would, `workers` records at a time.
//!
//! A stand-in that lists no part checksums in ListParts (real S3 does, for an upload created
//! with CRC32C) is covered too: the completion then takes each part's CRC32C from the lease, where the part recorded
//! it, and checks S3's against it wherever S3 gives one.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use aws_lambda_events::event::sqs::SqsMessage;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType,
};
use aws_sdk_s3::error::ProvideErrorMetadata;
use aws_sdk_sqs::types::QueueAttributeName;
use backfill::copy::CopyOutcome;
use backfill::error::BackfillError;
use backfill::handler::Backfill;
use backfill::lease::DynamoLeases;
use backfill::origin::HttpOrigin;
use backfill::ranged::SqsQueue;
use backfill::store::S3Store;
use common::{bytes, strict_client, Harness, MIB};
use futures::StreamExt;
use tokio::time::Instant;

type App = Backfill<HttpOrigin, S3Store, DynamoLeases, SqsQueue>;

struct Split {
    h: Harness,
    app: App,
    sqs: aws_sdk_sqs::Client,
    queue_url: String,
    /// Every upload id the part tasks named.
    uploads: std::sync::Mutex<std::collections::BTreeSet<String>>,
}

/// The origin's rate for these tests: 8 MiB/s, so that a 4 s deadline cannot hold 48 MiB.
const RATE: usize = 8 * MIB;

impl Split {
    async fn start() -> Split {
        let _ = tracing_subscriber::fmt()
            .with_env_filter("backfill=debug")
            .with_test_writer()
            .try_init();
        let h = Harness::start_with(
            &[
                ("PROBE_BYTES", "1048576"),
                ("PART_SECONDS", "1s"),
                ("ORIGIN_IDLE_TIMEOUT", "5s"),
            ],
            Some(strict_client()),
        )
        .await;
        let sdk = shared::aws::load_config().await;
        let dynamo = shared::aws::dynamodb_client(&sdk);
        let sqs = shared::aws::sqs_client(&sdk);
        let suffix = fastrand::u64(..);
        let table = format!("copy-leases-test-{suffix}");
        dynamo
            .create_table()
            .table_name(&table)
            .billing_mode(BillingMode::PayPerRequest)
            .attribute_definitions(
                AttributeDefinition::builder()
                    .attribute_name("pk")
                    .attribute_type(ScalarAttributeType::S)
                    .build()
                    .unwrap(),
            )
            .key_schema(
                KeySchemaElement::builder()
                    .attribute_name("pk")
                    .key_type(KeyType::Hash)
                    .build()
                    .unwrap(),
            )
            .send()
            .await
            .unwrap();
        let queue_url = sqs
            .create_queue()
            .queue_name(format!("backfill-parts-test-{suffix}"))
            .attributes(QueueAttributeName::VisibilityTimeout, "3")
            .send()
            .await
            .unwrap()
            .queue_url
            .unwrap();
        let mut config = h.app.config.clone();
        config.lease_table = Some(table.clone());
        config.part_queue_url = Some(queue_url.clone());
        let app = Backfill::new(
            config.clone(),
            HttpOrigin::new(&config).unwrap(),
            S3Store::new(h.s3.clone()),
        )
        .with_leases(
            DynamoLeases::new(dynamo, table),
            Some(SqsQueue::new(sqs.clone(), queue_url.clone())),
        );
        Split {
            h,
            app,
            sqs,
            queue_url,
            uploads: Default::default(),
        }
    }

    /// A copy message for `name`, served by the ranged route at `RATE`.
    fn copy(&self, name: &str) -> (String, String) {
        let key = self.h.key(name);
        (self.h.message(&format!("/ranged/{RATE}/{name}"), &key), key)
    }

    async fn handle(
        &self,
        id: &str,
        body: &str,
        deadline: Instant,
    ) -> Result<CopyOutcome, BackfillError> {
        let mut record = SqsMessage::default();
        record.message_id = Some(id.to_owned());
        record.body = Some(body.to_owned());
        self.app.handle_record(record, deadline).await
    }

    /// Lambda's part of the work: the part queue's records, `workers` at once, each with its own
    /// invocation deadline; a record that succeeds is deleted, a failed one comes back after the
    /// queue's visibility timeout. Ends when the queue has been empty for two polls.
    async fn drain(&self, workers: usize, invocation: Duration) -> BTreeMap<String, usize> {
        let mut outcomes = BTreeMap::new();
        let mut empty_polls = 0;
        let give_up = Instant::now() + Duration::from_secs(120);
        while empty_polls < 2 {
            assert!(
                Instant::now() < give_up,
                "the part queue never drained: {outcomes:?}"
            );
            let received = self
                .sqs
                .receive_message()
                .queue_url(&self.queue_url)
                .max_number_of_messages(workers.min(10) as i32)
                .wait_time_seconds(1)
                .send()
                .await
                .unwrap();
            let messages = received.messages.unwrap_or_default();
            if messages.is_empty() {
                let attributes = self
                    .sqs
                    .get_queue_attributes()
                    .queue_url(&self.queue_url)
                    .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
                    // A restart waits a few seconds in the queue before it can be received.
                    .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesDelayed)
                    .send()
                    .await
                    .unwrap()
                    .attributes
                    .unwrap_or_default();
                let waiting = [
                    QueueAttributeName::ApproximateNumberOfMessagesNotVisible,
                    QueueAttributeName::ApproximateNumberOfMessagesDelayed,
                ]
                .iter()
                .any(|name| attributes.get(name).is_some_and(|count| count != "0"));
                empty_polls = if waiting { 0 } else { empty_polls + 1 };
                continue;
            }
            empty_polls = 0;
            for message in &messages {
                let body: serde_json::Value =
                    serde_json::from_str(message.body.as_deref().unwrap_or("{}")).unwrap();
                if let Some(id) = body["upload_id"].as_str() {
                    self.uploads.lock().unwrap().insert(id.to_owned());
                }
            }
            let results = futures::stream::iter(messages)
                .map(|message| async move {
                    let deadline = Instant::now() + invocation;
                    let body = message.body.clone().unwrap_or_default();
                    let id = message.message_id.clone().unwrap_or_default();
                    (message, self.handle(&id, &body, deadline).await)
                })
                .buffer_unordered(workers)
                .collect::<Vec<_>>()
                .await;
            for (message, result) in results {
                let label = match &result {
                    Ok(outcome) => outcome.label().to_owned(),
                    Err(err) => format!("error: {err}"),
                };
                *outcomes.entry(label).or_default() += 1;
                if result.is_ok() {
                    self.sqs
                        .delete_message()
                        .queue_url(&self.queue_url)
                        .receipt_handle(message.receipt_handle.unwrap())
                        .send()
                        .await
                        .unwrap();
                }
            }
        }
        outcomes
    }
}

impl Split {
    /// Uploads the part tasks named that S3 still holds parts of (s3s-fs implements no
    /// ListMultipartUploads: each is asked for with ListParts).
    async fn open_uploads(&self, key: &str) -> Vec<String> {
        let ids: Vec<String> = self.uploads.lock().unwrap().iter().cloned().collect();
        let mut open = Vec::new();
        for id in ids {
            let listed = self
                .h
                .s3
                .list_parts()
                .bucket(&self.h.bucket)
                .key(key)
                .upload_id(&id)
                .send()
                .await;
            match listed {
                Err(err)
                    if err
                        .as_service_error()
                        .is_some_and(|e| e.code() == Some("NoSuchUpload")) => {}
                Err(err) => panic!("ListParts {id}: {err:?}"),
                // s3s-fs answers an unknown upload with an empty list where S3 says NoSuchUpload.
                Ok(listed) if listed.parts().is_empty() => {}
                Ok(_) => open.push(id),
            }
        }
        open
    }
}

fn etagged(tag: &str) -> Vec<(&'static str, String)> {
    vec![
        ("etag", format!("\"{tag}\"")),
        ("content-type", "video/mp4".to_owned()),
    ]
}

fn add(split: &Split, name: &str, body: &[u8], tag: &str) {
    let headers = etagged(tag);
    let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
    split.h.server.add(name, body.to_vec(), &headers);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_copy_too_slow_for_one_invocation_is_split_and_completed_byte_identical() {
    let s = Split::start().await;
    let body = bytes(48 * MIB + 123);
    add(&s, "big.mp4", &body, "v1");
    let (message, key) = s.copy("big.mp4");
    // 48 MiB at 8 MiB/s cannot fit 4 s: the first invocation splits and uploads part 1 itself.
    let outcome = s
        .handle("copy-1", &message, Instant::now() + Duration::from_secs(4))
        .await
        .unwrap();
    let CopyOutcome::Split { parts } = outcome else {
        panic!("expected a split, got {outcome:?}")
    };
    assert!(parts >= 3, "{parts} parts");
    assert_eq!(
        s.h.object(&key).await,
        None,
        "nothing visible before the last part"
    );
    let outcomes = s.drain(4, Duration::from_secs(20)).await;
    assert_eq!(outcomes.get("copied"), Some(&1), "{outcomes:?}");
    // Each part once by the workers (the last one reported as the copy), but part 1, uploaded
    // by the first invocation unless it ran out of time and handed it over.
    let by_workers = outcomes.get("part_uploaded").copied().unwrap_or_default() + 1;
    assert!(
        by_workers == parts as usize - 1 || by_workers == parts as usize,
        "every part once: {outcomes:?} of {parts}"
    );
    let stored = s.h.object(&key).await.expect("the object is there");
    assert!(stored == body, "byte-identical");
    assert_eq!(
        s.open_uploads(&key).await,
        Vec::<String>::new(),
        "no upload left"
    );
    // Every byte fetched once, but for what was in flight when the first answer was dropped
    // after part 1 (loopback socket buffers).
    let sent = s.h.server.bytes_sent("big.mp4");
    assert!(
        sent <= body.len() as u64 + 8 * MIB as u64,
        "origin sent {sent} bytes for {}",
        body.len()
    );
    let head =
        s.h.s3
            .head_object()
            .bucket(&s.h.bucket)
            .key(&key)
            .send()
            .await
            .unwrap();
    assert_eq!(
        head.content_type(),
        Some("video/mp4"),
        "the origin's attributes kept"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn twenty_messages_for_one_key_fetch_its_body_once() {
    let s = Split::start().await;
    let body = bytes(3 * MIB);
    add(&s, "burst.mp4", &body, "b1");
    let (message, key) = s.copy("burst.mp4");
    let runs = (0..20).map(|i| {
        let (s, message) = (&s, &message);
        async move {
            s.handle(
                &format!("m{i}"),
                message,
                Instant::now() + Duration::from_secs(30),
            )
            .await
            .unwrap()
            .label()
        }
    });
    let labels = futures::future::join_all(runs).await;
    let count = |label| labels.iter().filter(|l| **l == label).count();
    assert_eq!(count("copied"), 1, "{labels:?}");
    assert_eq!(
        count("copied") + count("in_flight") + count("already_present"),
        20
    );
    assert_eq!(s.h.object(&key).await.as_deref(), Some(&body[..]));
    let sent = s.h.server.bytes_sent("burst.mp4");
    assert_eq!(sent, body.len() as u64, "one fetch of the body: {labels:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_origin_change_mid_copy_restarts_it_and_the_new_version_lands() {
    let s = Split::start().await;
    let old = bytes(48 * MIB);
    add(&s, "changing.mp4", &old, "old");
    let (message, key) = s.copy("changing.mp4");
    let outcome = s
        .handle("copy-1", &message, Instant::now() + Duration::from_secs(4))
        .await
        .unwrap();
    assert!(matches!(outcome, CopyOutcome::Split { .. }), "{outcome:?}");
    // The newsroom replaces the file before the parts run.
    let mut new = bytes(49 * MIB);
    new[0] ^= 0xff;
    add(&s, "changing.mp4", &new, "new");
    let outcomes = s.drain(4, Duration::from_secs(20)).await;
    assert!(outcomes.contains_key("restarted"), "{outcomes:?}");
    assert_eq!(outcomes.get("copied"), Some(&1), "{outcomes:?}");
    let stored = s.h.object(&key).await.expect("the object is there");
    assert!(stored == new, "the new version, whole");
    assert_eq!(s.uploads.lock().unwrap().len(), 1, "one split upload");
    assert_eq!(
        s.open_uploads(&key).await,
        Vec::<String>::new(),
        "the old upload was aborted"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_part_cut_at_its_deadline_is_redelivered_and_the_copy_completes() {
    let s = Split::start().await;
    let body = bytes(48 * MIB);
    add(&s, "cut.mp4", &body, "c1");
    let (message, key) = s.copy("cut.mp4");
    s.handle("copy-1", &message, Instant::now() + Duration::from_secs(4))
        .await
        .unwrap();
    // The first deliveries run out of time mid-part (as an invocation killed at its deadline):
    // they are not deleted, no upload completes, nothing partial is visible.
    let received = s
        .sqs
        .receive_message()
        .queue_url(&s.queue_url)
        .max_number_of_messages(10)
        .wait_time_seconds(1)
        .send()
        .await
        .unwrap()
        .messages
        .unwrap_or_default();
    assert!(!received.is_empty());
    for message in &received {
        let result = s
            .handle(
                message.message_id.as_deref().unwrap(),
                message.body.as_deref().unwrap(),
                Instant::now() + Duration::from_millis(300),
            )
            .await;
        assert!(matches!(result, Err(BackfillError::Deadline)), "{result:?}");
    }
    assert_eq!(s.h.object(&key).await, None, "nothing partial visible");
    let outcomes = s.drain(4, Duration::from_secs(20)).await;
    assert_eq!(outcomes.get("copied"), Some(&1), "{outcomes:?}");
    assert!(s.h.object(&key).await.expect("there") == body);
    assert_eq!(s.open_uploads(&key).await, Vec::<String>::new());
}
