//! Faults the image processor meets in production, injected by a proxy in front of the local S3 and
//! DynamoDB. Each scenario ends with the invariants checked: every rendition of the source in S3,
//! whole and byte-identical to what a clean run wrote, or the message reported failed (retryable:
//! the next delivery completes it); nothing partial visible; no multipart upload open; nothing
//! already there overwritten; the task record completed exactly once, and a delivery after that
//! does no work.
//!
//! Every test has its own bucket (notifying its own queue) and task table, so that it can share
//! the local stack with other suites. `FIGURE` lines on stdout are the figures of each scenario
//! (`cargo test -p image-processor --test faults -- --nocapture | grep FIGURE`).

#[allow(dead_code)]
mod common;

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent, SqsMessage};
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, KeySchemaElement, KeyType,
    ScalarAttributeType,
};
use aws_sdk_s3::types::{
    Event, FilterRule, FilterRuleName, NotificationConfiguration, NotificationConfigurationFilter,
    QueueConfiguration, S3KeyFilter,
};
use aws_sdk_sqs::types::{MessageSystemAttributeName, QueueAttributeName};
use common::fixtures::{self, BASELINE};
use image_processor::event::{parse_body, Body};
use image_processor::store::S3Store;
use image_processor::task::{decide, Decision, Task};
use image_processor::tasks::{DynamoTaskTable, Finish, TaskTable};
use image_processor::{Config, Error, Outcome, Processor};
use lambda_runtime::{Context, LambdaEvent};
use shared::config::Env;
use shared::metrics::Metrics;
use shared::Failure;
use test_support::fault_proxy::{Fault, FaultProxy, Op, Rule};
use test_support::queues::create_queue;
use tokio::time::Instant;

type Item = HashMap<String, AttributeValue>;

/// The operations whose attempts a figure reports.
const OPS: [Op; 7] = [
    Op::GetObject,
    Op::PutObject,
    Op::HeadObject,
    Op::PutItem,
    Op::GetItem,
    Op::UpdateItem,
    Op::DeleteItem,
];

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

fn required(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!("{name} is not set: run `scripts/local-stack up` and load `.local/env` first")
    })
}

/// One test's own bucket, queue and task table, the processor under test with its S3 and DynamoDB
/// requests through a fault proxy, and what a clean run wrote.
struct Lab {
    name: String,
    s3: aws_sdk_s3::Client,
    dynamodb: aws_sdk_dynamodb::Client,
    sqs: aws_sdk_sqs::Client,
    proxy: FaultProxy,
    config: Config,
    processor: Processor<S3Store, DynamoTaskTable>,
    bucket: String,
    queue_url: String,
    queue_arn: String,
    /// Every source is this JPEG.
    source: Vec<u8>,
    /// The renditions a clean run wrote: name under the source's prefix (`160.jpg`) -> bytes.
    reference: BTreeMap<String, Vec<u8>>,
    /// Requests a clean run made, per operation.
    clean: Vec<(Op, usize)>,
}

/// What a scenario must have left of a task that did not complete.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Claim {
    /// Given back: the next delivery claims it at once.
    Released,
    /// Still held until its lease ends.
    LeftToExpire,
}

impl Lab {
    async fn new(test: &str) -> Lab {
        let sdk = shared::aws::load_config().await;
        let s3 = shared::aws::s3_client(&sdk);
        let dynamodb = shared::aws::dynamodb_client(&sdk);
        let sqs = shared::aws::sqs_client(&sdk);
        let name = format!("image-faults-{test}-{:08x}", fastrand::u32(..));
        s3.create_bucket().bucket(&name).send().await.unwrap();
        dynamodb
            .create_table()
            .table_name(&name)
            .attribute_definitions(
                AttributeDefinition::builder()
                    .attribute_name("id")
                    .attribute_type(ScalarAttributeType::S)
                    .build()
                    .unwrap(),
            )
            .key_schema(
                KeySchemaElement::builder()
                    .attribute_name("id")
                    .key_type(KeyType::Hash)
                    .build()
                    .unwrap(),
            )
            .billing_mode(BillingMode::PayPerRequest)
            .send()
            .await
            .unwrap();
        let (queue_url, queue_arn) = create_queue(&sqs, &name, &[]).await;
        let images = QueueConfiguration::builder()
            .queue_arn(&queue_arn)
            .events(Event::from("s3:ObjectCreated:*"))
            .events(Event::from("s3:ObjectRemoved:*"))
            .filter(
                NotificationConfigurationFilter::builder()
                    .key(
                        S3KeyFilter::builder()
                            .filter_rules(
                                FilterRule::builder()
                                    .name(FilterRuleName::Prefix)
                                    .value("images/")
                                    .build(),
                            )
                            .build(),
                    )
                    .build(),
            )
            .build()
            .unwrap();
        s3.put_bucket_notification_configuration()
            .bucket(&name)
            .notification_configuration(
                NotificationConfiguration::builder()
                    .queue_configurations(images)
                    .build(),
            )
            .send()
            .await
            .unwrap();

        let proxy = FaultProxy::start(required("AWS_ENDPOINT_URL")).await;
        // The production clients, pointed at the proxy. Each lab has its own retry quota (the
        // SDK's token bucket is per process and partition), so that tests do not drain each
        // other's.
        let partition = aws_sdk_s3::config::retry::RetryPartition::new(name.clone());
        let proxied_s3 = aws_sdk_s3::Client::from_conf(
            s3.config()
                .to_builder()
                .endpoint_url(proxy.endpoint())
                .retry_partition(partition.clone())
                .build(),
        );
        let proxied_dynamodb = aws_sdk_dynamodb::Client::from_conf(
            dynamodb
                .config()
                .to_builder()
                .endpoint_url(proxy.endpoint())
                .retry_partition(partition)
                .build(),
        );
        let config = Config::from_env(&Env::from_pairs([
            ("TASK_TABLE", name.as_str()),
            ("INPUT_PREFIXES", "images/"),
            ("OUTPUT_PREFIX", "thumbnails/"),
            ("IMAGE_CONCURRENCY", "2"),
        ]))
        .unwrap();
        let processor = Processor::new(
            config.clone(),
            S3Store::new(proxied_s3),
            DynamoTaskTable::new(proxied_dynamodb, &name, config.task_ttl),
            Metrics::new("ImageProcessorFaults"),
        );
        let mut lab = Lab {
            name: name.clone(),
            s3,
            dynamodb,
            sqs,
            proxy,
            config,
            processor,
            bucket: name,
            queue_url,
            queue_arn,
            source: fixtures::jpeg(480, 360, BASELINE),
            reference: BTreeMap::new(),
            clean: Vec::new(),
        };
        let clean = lab.deliveries(&["clean"]).await.remove(0);
        lab.proxy.set_rules(vec![]);
        let outcome = lab.process(&clean).await.unwrap();
        assert_eq!(
            outcome,
            [Outcome::Rendered {
                renditions: 4,
                written: 4
            }]
        );
        lab.clean = OPS.iter().map(|op| (*op, lab.proxy.count(*op))).collect();
        lab.reference = lab.renditions("clean").await;
        assert_eq!(
            lab.reference.keys().collect::<Vec<_>>(),
            ["1280.jpg", "160.jpg", "320.jpg", "640.jpg"]
        );
        lab
    }

    fn key(name: &str) -> String {
        format!("images/{name}.jpg")
    }

    /// Uploads a source per name and returns their notifications, as SQS delivers them.
    async fn deliveries(&self, names: &[&str]) -> Vec<SqsMessage> {
        for name in names {
            self.s3
                .put_object()
                .bucket(&self.bucket)
                .key(Self::key(name))
                .body(self.source.clone().into())
                .send()
                .await
                .unwrap();
        }
        let keys: Vec<String> = names.iter().map(|n| Self::key(n)).collect();
        let mut found: Vec<Option<SqsMessage>> = vec![None; names.len()];
        let started = Instant::now();
        while found.iter().any(Option::is_none) {
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "notifications missing"
            );
            let received = self
                .sqs
                .receive_message()
                .queue_url(&self.queue_url)
                .max_number_of_messages(10)
                .wait_time_seconds(1)
                .message_system_attribute_names(MessageSystemAttributeName::All)
                .send()
                .await
                .unwrap();
            for message in received.messages.unwrap_or_default() {
                let body = message.body.clone().unwrap_or_default();
                let notified = common::notified_keys(&body);
                if let Some(i) = keys.iter().position(|k| notified.contains(k)) {
                    found[i] = Some(self.record(&message));
                }
                self.sqs
                    .delete_message()
                    .queue_url(&self.queue_url)
                    .receipt_handle(message.receipt_handle.unwrap_or_default())
                    .send()
                    .await
                    .unwrap();
            }
        }
        found.into_iter().map(Option::unwrap).collect()
    }

    /// Deletes a source and returns its removal's notification, as SQS delivers it.
    async fn delete(&self, name: &str) -> SqsMessage {
        self.s3
            .delete_object()
            .bucket(&self.bucket)
            .key(Self::key(name))
            .send()
            .await
            .unwrap();
        let started = Instant::now();
        loop {
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "removal notification missing"
            );
            let received = self
                .sqs
                .receive_message()
                .queue_url(&self.queue_url)
                .max_number_of_messages(10)
                .wait_time_seconds(1)
                .message_system_attribute_names(MessageSystemAttributeName::All)
                .send()
                .await
                .unwrap();
            for message in received.messages.unwrap_or_default() {
                let body = message.body.clone().unwrap_or_default();
                let removal = body.contains("\"ObjectRemoved:")
                    && common::notified_keys(&body).contains(&Self::key(name));
                self.sqs
                    .delete_message()
                    .queue_url(&self.queue_url)
                    .receipt_handle(message.receipt_handle.clone().unwrap_or_default())
                    .send()
                    .await
                    .unwrap();
                if removal {
                    return self.record(&message);
                }
            }
        }
    }

    /// The message as Lambda hands it to the function.
    fn record(&self, message: &aws_sdk_sqs::types::Message) -> SqsMessage {
        let mut record = SqsMessage::default();
        record.message_id = message.message_id.clone();
        record.receipt_handle = message.receipt_handle.clone();
        record.body = message.body.clone();
        record.event_source = Some("aws:sqs".into());
        record.event_source_arn = Some(self.queue_arn.clone());
        for (name, value) in message.attributes().into_iter().flatten() {
            record
                .attributes
                .insert(name.as_str().to_owned(), value.clone());
        }
        record
    }

    fn task(&self, record: &SqsMessage) -> Task {
        let Body::Notices(notices) = parse_body(record.body.as_deref().unwrap()).unwrap() else {
            panic!("not a notification");
        };
        match decide(&self.config, &notices[0]).unwrap() {
            Decision::Process(task) => task,
            Decision::Ignore(reason) => panic!("ignored: {reason:?}"),
        }
    }

    /// One delivery, in an invocation with a minute left.
    async fn process(&self, record: &SqsMessage) -> Result<Vec<Outcome>, Error> {
        self.processor
            .process_message(record, now_ms() + 60_000)
            .await
    }

    /// One delivery through the Lambda handler, in an invocation that ends at `deadline_ms`.
    async fn invoke(&self, record: &SqsMessage, deadline_ms: u64) -> SqsBatchResponse {
        let mut event = SqsEvent::default();
        event.records = vec![record.clone()];
        let mut context = Context::default();
        context.deadline = deadline_ms;
        image_processor::handle(
            &self.processor,
            &common::runner(),
            LambdaEvent::new(event, context),
        )
        .await
        .expect("the batch as a whole succeeds")
    }

    /// The renditions of a source: name under its prefix -> bytes.
    async fn renditions(&self, name: &str) -> BTreeMap<String, Vec<u8>> {
        let prefix = format!("{}{}/", self.config.output_prefix, Self::key(name));
        let listed = self
            .s3
            .list_objects_v2()
            .bucket(&self.bucket)
            .prefix(&prefix)
            .send()
            .await
            .unwrap();
        let mut renditions = BTreeMap::new();
        for object in listed.contents() {
            let key = object.key().unwrap();
            renditions.insert(key[prefix.len()..].to_owned(), self.get(key).await);
        }
        renditions
    }

    async fn get(&self, key: &str) -> Vec<u8> {
        let object = self
            .s3
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
            .unwrap();
        object.body.collect().await.unwrap().into_bytes().to_vec()
    }

    /// The task records of a source (one per revision; the tests write each source once).
    async fn records(&self, name: &str) -> Vec<Item> {
        self.dynamodb
            .scan()
            .table_name(&self.name)
            .filter_expression("begins_with(id, :prefix)")
            .expression_attribute_values(
                ":prefix",
                AttributeValue::S(format!("{}/{}|", self.bucket, Self::key(name))),
            )
            .consistent_read(true)
            .send()
            .await
            .unwrap()
            .items
            .unwrap_or_default()
    }

    async fn put_record(&self, task: &Task, status: &str, lease_until: u64, token: &str) {
        self.dynamodb
            .put_item()
            .table_name(&self.name)
            .item("id", AttributeValue::S(task.id.clone()))
            .item("status", AttributeValue::S(status.into()))
            .item("lease_until", AttributeValue::N(lease_until.to_string()))
            .item("lease_token", AttributeValue::S(token.into()))
            .item(
                "expires_at",
                AttributeValue::N((now_ms() / 1000 + 3600).to_string()),
            )
            .send()
            .await
            .unwrap();
    }

    /// Invariants that hold whatever happened: no upload left open, the source untouched.
    async fn assert_clean_bucket(&self, name: &str) {
        let open = self
            .s3
            .list_multipart_uploads()
            .bucket(&self.bucket)
            .send()
            .await
            .unwrap()
            .uploads()
            .len();
        assert_eq!(open, 0, "{name}: a multipart upload is open");
        assert!(
            self.get(&Self::key(name)).await == self.source,
            "{name}: the source changed"
        );
    }

    /// Every rendition there, byte-identical to the clean run's; the record completed once.
    async fn assert_complete(&self, name: &str) {
        let renditions = self.renditions(name).await;
        assert_eq!(
            renditions.keys().collect::<Vec<_>>(),
            self.reference.keys().collect::<Vec<_>>(),
            "{name}: renditions"
        );
        for (file, bytes) in &renditions {
            assert!(
                *bytes == self.reference[file],
                "{name}: {file} differs from the clean run's"
            );
        }
        let records = self.records(name).await;
        assert_eq!(records.len(), 1, "{name}: {records:?}");
        assert_eq!(common::string_attr(&records[0], "status"), "COMPLETED");
        assert_eq!(
            records[0].get("renditions").and_then(|v| v.as_n().ok()),
            Some(&"4".to_owned())
        );
        assert!(!records[0].contains_key("lease_token"), "{name}");
        self.assert_clean_bucket(name).await;
    }

    /// Only whole renditions identical to the clean run's, if any; the claim as `claim` says.
    async fn assert_nothing_partial(&self, name: &str, claim: Claim) -> usize {
        let renditions = self.renditions(name).await;
        for (file, bytes) in &renditions {
            assert!(
                self.reference.get(file) == Some(bytes),
                "{name}: {file} is partial or differs from the clean run's"
            );
        }
        let records = self.records(name).await;
        match claim {
            Claim::Released => assert!(records.is_empty(), "{name}: {records:?}"),
            Claim::LeftToExpire => {
                assert_eq!(records.len(), 1, "{name}");
                assert_eq!(common::string_attr(&records[0], "status"), "IN_PROGRESS");
            }
        }
        self.assert_clean_bucket(name).await;
        renditions.len()
    }

    /// A delivery after completion is a duplicate: no S3 request, no write to the record.
    async fn assert_no_work_after_completion(&self, name: &str, record: &SqsMessage) {
        self.proxy.set_rules(vec![]);
        let outcome = self.process(record).await.unwrap();
        assert_eq!(outcome, [Outcome::AlreadyCompleted], "{name}");
        for op in [
            Op::GetObject,
            Op::PutObject,
            Op::HeadObject,
            Op::UpdateItem,
            Op::DeleteItem,
        ] {
            assert_eq!(self.proxy.count(op), 0, "{name}: {op:?} after completion");
        }
        let response = self.invoke(record, now_ms() + 60_000).await;
        assert!(response.batch_item_failures.is_empty(), "{name}");
    }

    /// Requests per operation since the rules were set, beside a clean run's.
    fn attempts(&self) -> String {
        OPS.iter()
            .filter_map(|op| {
                let n = self.proxy.count(*op);
                let clean = self.clean.iter().find(|(o, _)| o == op).map_or(0, |c| c.1);
                (n > 0 || clean > 0).then(|| format!("{op:?} {n}/{clean}"))
            })
            .collect::<Vec<_>>()
            .join(", ")
    }

    fn figure(&self, scenario: &str, outcome: &str, started: Instant) {
        println!(
            "FIGURE | {scenario} | faults injected {} | requests (this run/clean run) {} | {outcome} | {} ms",
            self.proxy.injected(),
            self.attempts(),
            started.elapsed().as_millis()
        );
    }

    async fn remove(self) {
        let listed = self
            .s3
            .list_objects_v2()
            .bucket(&self.bucket)
            .send()
            .await
            .unwrap();
        for object in listed.contents() {
            self.s3
                .delete_object()
                .bucket(&self.bucket)
                .key(object.key().unwrap())
                .send()
                .await
                .unwrap();
        }
        self.s3
            .delete_bucket()
            .bucket(&self.bucket)
            .send()
            .await
            .unwrap();
        self.dynamodb
            .delete_table()
            .table_name(&self.name)
            .send()
            .await
            .unwrap();
        self.sqs
            .delete_queue()
            .queue_url(&self.queue_url)
            .send()
            .await
            .unwrap();
    }
}

fn rendered_all(outcome: &[Outcome]) -> bool {
    matches!(outcome, [Outcome::Rendered { renditions: 4, .. }])
}

#[tokio::test]
async fn transient_s3_faults_on_the_source_read_and_the_rendition_writes_are_absorbed() {
    let lab = Lab::new("s3-transient").await;
    let delay = Fault::Delay(Duration::from_millis(300));
    let scenarios: Vec<(&str, Rule)> = vec![
        (
            "GetObject 503 SlowDown x2",
            Rule::first(Op::GetObject, 2, Fault::Status(503, "SlowDown")),
        ),
        (
            "GetObject 500 x1",
            Rule::first(Op::GetObject, 1, Fault::Status(500, "InternalError")),
        ),
        (
            "GetObject connection reset x1",
            Rule::first(Op::GetObject, 1, Fault::Drop),
        ),
        (
            "GetObject +300 ms latency",
            Rule::always(Op::GetObject, delay),
        ),
        (
            "PutObject 503 SlowDown x2",
            Rule::first(Op::PutObject, 2, Fault::Status(503, "SlowDown")),
        ),
        (
            "PutObject 500 x1",
            Rule::first(Op::PutObject, 1, Fault::Status(500, "InternalError")),
        ),
        (
            "PutObject connection reset x1",
            Rule::first(Op::PutObject, 1, Fault::Drop),
        ),
        (
            "PutObject written, answer lost x1",
            Rule::first(Op::PutObject, 1, Fault::DropAnswer),
        ),
        (
            "PutObject +300 ms latency",
            Rule::always(Op::PutObject, delay),
        ),
    ];
    let names: Vec<String> = (0..scenarios.len())
        .map(|i| format!("transient-{i}"))
        .collect();
    let records = lab
        .deliveries(&names.iter().map(String::as_str).collect::<Vec<_>>())
        .await;
    for (i, (scenario, rule)) in scenarios.into_iter().enumerate() {
        let lost_answer = matches!(rule.fault, Fault::DropAnswer);
        lab.proxy.set_rules(vec![rule]);
        let started = Instant::now();
        let outcome = lab.process(&records[i]).await;
        let Ok(outcome) = outcome else {
            panic!("{scenario}: {outcome:?}");
        };
        assert!(lab.proxy.injected() > 0, "{scenario}: nothing injected");
        // A write whose answer was lost is found on the retry (412), made from the same source:
        // kept, not written again.
        let written = if lost_answer { 3 } else { 4 };
        assert_eq!(
            outcome,
            [Outcome::Rendered {
                renditions: 4,
                written
            }],
            "{scenario}"
        );
        lab.figure(scenario, &format!("rendered, {written} written"), started);
        lab.assert_complete(&names[i]).await;
        assert_eq!(lab.proxy.answered(Op::PutObject, 200), 4, "{scenario}");
        assert_eq!(lab.proxy.answered(Op::UpdateItem, 200), 1, "{scenario}");
        lab.assert_no_work_after_completion(scenario, &records[i])
            .await;
    }
    lab.remove().await;
}

#[tokio::test]
async fn lasting_s3_faults_fail_retryably_and_the_redelivery_completes() {
    let lab = Lab::new("s3-lasting").await;
    let scenarios: Vec<(&str, Rule)> = vec![
        (
            "GetObject 503 SlowDown, every attempt",
            Rule::always(Op::GetObject, Fault::Status(503, "SlowDown")),
        ),
        (
            "GetObject connection reset, every attempt",
            Rule::always(Op::GetObject, Fault::Drop),
        ),
        (
            "GetObject body cut in half, every request",
            Rule::always(Op::GetObject, Fault::Truncate),
        ),
        (
            "PutObject 500, every attempt",
            Rule::always(Op::PutObject, Fault::Status(500, "InternalError")),
        ),
        (
            "PutObject 503 from the third request on",
            Rule {
                op: Op::PutObject,
                from: 3,
                to: usize::MAX,
                fault: Fault::Status(503, "SlowDown"),
            },
        ),
    ];
    let names: Vec<String> = (0..scenarios.len())
        .map(|i| format!("lasting-{i}"))
        .collect();
    let records = lab
        .deliveries(&names.iter().map(String::as_str).collect::<Vec<_>>())
        .await;
    for (i, (scenario, rule)) in scenarios.into_iter().enumerate() {
        lab.proxy.set_rules(vec![rule.clone()]);
        let started = Instant::now();
        let err = lab.process(&records[i]).await.unwrap_err();
        assert!(err.is_retryable(), "{scenario}: {err}");
        assert_eq!(err.reason(), "aws", "{scenario}: {err}");
        lab.figure(scenario, &format!("retryable failure: {err}"), started);
        lab.assert_nothing_partial(&names[i], Claim::Released).await;
        // Through the handler: the message is reported as a batch item failure.
        lab.proxy.set_rules(vec![rule]);
        let response = lab.invoke(&records[i], now_ms() + 60_000).await;
        let failed: Vec<&str> = response
            .batch_item_failures
            .iter()
            .map(|f| f.item_identifier.as_str())
            .collect();
        assert_eq!(
            failed,
            [records[i].message_id.as_deref().unwrap()],
            "{scenario}"
        );
        let present = lab.assert_nothing_partial(&names[i], Claim::Released).await;

        // The fault is over: the next delivery completes the task, writing only what is missing.
        lab.proxy.set_rules(vec![]);
        let outcome = lab.process(&records[i]).await.unwrap();
        assert_eq!(
            outcome,
            [Outcome::Rendered {
                renditions: 4,
                written: 4 - present
            }],
            "{scenario}"
        );
        lab.assert_complete(&names[i]).await;
        // What the failed delivery wrote was refused by the conditional writes, not overwritten.
        assert_eq!(lab.proxy.answered(Op::PutObject, 412), present);
        assert_eq!(lab.proxy.answered(Op::PutObject, 200), 4 - present);
        println!(
            "FIGURE | {scenario}: redelivery | renditions already there {present} | rendered, {} written",
            4 - present
        );
        lab.assert_no_work_after_completion(scenario, &records[i])
            .await;
    }
    lab.remove().await;
}

#[tokio::test]
async fn dynamodb_throttling_errors_and_lost_answers() {
    let lab = Lab::new("dynamodb").await;
    let scenarios: Vec<(&str, Rule)> = vec![
        (
            "claim PutItem throttled x2",
            Rule::first(
                Op::PutItem,
                2,
                Fault::Status(400, "ProvisionedThroughputExceededException"),
            ),
        ),
        (
            "claim PutItem 500 x1",
            Rule::first(Op::PutItem, 1, Fault::Status(500, "InternalServerError")),
        ),
        (
            "claim PutItem taken, answer lost x1",
            Rule::first(Op::PutItem, 1, Fault::DropAnswer),
        ),
        (
            "completion UpdateItem throttled x2",
            Rule::first(Op::UpdateItem, 2, Fault::Status(400, "ThrottlingException")),
        ),
        (
            "completion UpdateItem 500 x1",
            Rule::first(Op::UpdateItem, 1, Fault::Status(500, "InternalServerError")),
        ),
        (
            "completion UpdateItem done, answer lost x1",
            Rule::first(Op::UpdateItem, 1, Fault::DropAnswer),
        ),
    ];
    let mut names: Vec<String> = (0..scenarios.len())
        .map(|i| format!("dynamodb-{i}"))
        .collect();
    names.push("throttled-claim".into());
    let records = lab
        .deliveries(&names.iter().map(String::as_str).collect::<Vec<_>>())
        .await;
    for (i, (scenario, rule)) in scenarios.into_iter().enumerate() {
        lab.proxy.set_rules(vec![rule]);
        let started = Instant::now();
        let outcome = lab.process(&records[i]).await;
        let Ok(outcome) = outcome else {
            panic!("{scenario}: {outcome:?}");
        };
        assert!(rendered_all(&outcome), "{scenario}: {outcome:?}");
        assert!(lab.proxy.injected() > 0, "{scenario}");
        lab.figure(scenario, "rendered", started);
        lab.assert_complete(&names[i]).await;
        assert_eq!(lab.proxy.answered(Op::UpdateItem, 200), 1, "{scenario}");
        assert_eq!(lab.proxy.answered(Op::PutObject, 200), 4, "{scenario}");
        lab.assert_no_work_after_completion(scenario, &records[i])
            .await;
    }

    // Throttled on every attempt: nothing read, nothing written, reported for a later retry.
    let scenario = "claim PutItem throttled, every attempt";
    let record = records.last().unwrap();
    lab.proxy.set_rules(vec![Rule::always(
        Op::PutItem,
        Fault::Status(400, "ProvisionedThroughputExceededException"),
    )]);
    let started = Instant::now();
    let err = lab.process(record).await.unwrap_err();
    assert!(err.is_retryable(), "{err}");
    assert_eq!(err.reason(), "aws");
    assert_eq!(lab.proxy.count(Op::GetObject), 0);
    lab.figure(scenario, "retryable failure, nothing read", started);
    assert_eq!(
        lab.assert_nothing_partial("throttled-claim", Claim::Released)
            .await,
        0
    );
    lab.proxy.set_rules(vec![]);
    assert!(rendered_all(&lab.process(record).await.unwrap()));
    lab.assert_complete("throttled-claim").await;
    lab.remove().await;
}

#[tokio::test]
async fn another_worker_holds_the_claim_has_finished_it_or_died() {
    let lab = Lab::new("claims").await;
    let records = lab.deliveries(&["busy", "done", "dead"]).await;

    // A live claim of another worker: refused (ConditionalCheckFailed), retried after its lease.
    let (record, task) = (&records[0], lab.task(&records[0]));
    let lease_until = now_ms() + 60_000;
    lab.put_record(&task, "IN_PROGRESS", lease_until, "other-worker")
        .await;
    lab.proxy.set_rules(vec![]);
    let started = Instant::now();
    let err = lab.process(record).await.unwrap_err();
    assert_eq!(err.reason(), "task_in_progress");
    assert!(err.is_retryable());
    let retry_after = err.retry_after().unwrap();
    assert!(
        retry_after > Duration::from_secs(30) && retry_after <= Duration::from_secs(60),
        "{retry_after:?}"
    );
    assert_eq!(lab.proxy.answered(Op::PutItem, 400), 1);
    assert_eq!(lab.proxy.count(Op::GetObject), 0);
    lab.figure(
        "another worker's live claim",
        &format!("task_in_progress, retry after {} s", retry_after.as_secs()),
        started,
    );
    let response = lab.invoke(record, now_ms() + 60_000).await;
    assert_eq!(response.batch_item_failures.len(), 1);
    let records_of_busy = lab.records("busy").await;
    assert_eq!(
        common::string_attr(&records_of_busy[0], "lease_token"),
        "other-worker"
    );
    assert!(lab.renditions("busy").await.is_empty());

    // Completed by another worker: a duplicate, skipped without work.
    let (record, task) = (&records[1], lab.task(&records[1]));
    lab.put_record(&task, "COMPLETED", 0, "other-worker").await;
    lab.proxy.set_rules(vec![]);
    let started = Instant::now();
    assert_eq!(
        lab.process(record).await.unwrap(),
        [Outcome::AlreadyCompleted]
    );
    lab.figure(
        "completed by another worker",
        "already_completed, skipped",
        started,
    );
    assert_eq!(lab.proxy.count(Op::GetObject), 0);
    assert_eq!(lab.proxy.count(Op::PutObject), 0);
    let response = lab.invoke(record, now_ms() + 60_000).await;
    assert!(response.batch_item_failures.is_empty());

    // A worker died holding the claim: once its lease is over, the next delivery takes over.
    let (record, task) = (&records[2], lab.task(&records[2]));
    lab.put_record(&task, "IN_PROGRESS", now_ms() - 1000, "dead-worker")
        .await;
    lab.proxy.set_rules(vec![]);
    let started = Instant::now();
    assert!(rendered_all(&lab.process(record).await.unwrap()));
    lab.figure(
        "a dead worker's expired lease",
        "taken over, rendered",
        started,
    );
    lab.assert_complete("dead").await;
    // The dead worker, were it to come back, could neither complete nor release the task.
    let table = DynamoTaskTable::new(lab.dynamodb.clone(), &lab.name, lab.config.task_ttl);
    let done = Finish::Completed { renditions: 4 };
    assert!(!table
        .finish(
            &task.id,
            "dead-worker",
            &done,
            now_ms() / 1000 + 60,
            common::a_minute()
        )
        .await
        .unwrap());
    table
        .release(&task.id, "dead-worker", common::a_minute())
        .await
        .unwrap();
    lab.assert_complete("dead").await;
    lab.assert_no_work_after_completion("dead", record).await;
    lab.remove().await;
}

#[tokio::test]
async fn a_crash_between_the_renditions_and_the_task_record() {
    let lab = Lab::new("crash").await;
    let records = lab
        .deliveries(&["crashed", "unrecorded", "overtaken"])
        .await;

    // The process dies after writing every rendition, before its completion reaches DynamoDB:
    // the invocation is dropped while its UpdateItem is held.
    let record = &records[0];
    lab.proxy
        .set_rules(vec![Rule::always(Op::UpdateItem, Fault::Hold)]);
    let deadline = now_ms() + 3000;
    let started = Instant::now();
    tokio::select! {
        response = lab.invoke(record, deadline) => panic!("the invocation ended: {response:?}"),
        () = lab.proxy.held() => {}
    }
    lab.figure(
        "process dies before completing the task record",
        "invocation lost",
        started,
    );
    assert_eq!(lab.proxy.answered(Op::PutObject, 200), 4);
    assert_eq!(
        lab.assert_nothing_partial("crashed", Claim::LeftToExpire)
            .await,
        4
    );
    redeliver_after_the_lease("crashed", &lab, record, deadline).await;

    // The completion fails on every attempt: reported for a retry, the claim left to its lease.
    let record = &records[1];
    lab.proxy.set_rules(vec![Rule::always(
        Op::UpdateItem,
        Fault::Status(500, "InternalServerError"),
    )]);
    let deadline = now_ms() + 3000;
    let started = Instant::now();
    let response = lab.invoke(record, deadline).await;
    assert_eq!(response.batch_item_failures.len(), 1);
    lab.figure(
        "completion UpdateItem 500, every attempt",
        "batch item failure (retryable)",
        started,
    );
    assert_eq!(
        lab.assert_nothing_partial("unrecorded", Claim::LeftToExpire)
            .await,
        4
    );
    redeliver_after_the_lease("unrecorded", &lab, record, deadline).await;

    // A slow worker's completion is on the way when its deadline comes: the call is cut there
    // (retryable, the renditions written, the claim left to its lease), so the worker never
    // outlives its lease. The redelivery after the lease takes the task over and completes it; the
    // slow worker's completion, were it to reach DynamoDB that late, is refused.
    let record = &records[2];
    lab.proxy
        .set_rules(vec![Rule::first(Op::UpdateItem, 1, Fault::Hold)]);
    // Time enough to render before the cut (the debug build, on a loaded machine): the cut must
    // come while the completion is held, not while the renditions are drawn.
    let deadline = now_ms() + 5000;
    let started = Instant::now();
    let err = lab
        .processor
        .process_message(record, deadline)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Deadline), "{err}");
    assert!(err.is_retryable());
    assert!(now_ms() < deadline, "cut before the lease ends");
    assert_eq!(
        lab.assert_nothing_partial("overtaken", Claim::LeftToExpire)
            .await,
        4
    );
    let slow_token =
        common::string_attr(&lab.records("overtaken").await[0], "lease_token").to_owned();
    wait_until(deadline).await;
    lab.proxy.set_rules(vec![]);
    let taken_over = lab.process(record).await.unwrap();
    assert_eq!(
        taken_over,
        [Outcome::Rendered {
            renditions: 4,
            written: 0
        }]
    );
    lab.assert_complete("overtaken").await;
    let table = DynamoTaskTable::new(lab.dynamodb.clone(), &lab.name, lab.config.task_ttl);
    let late = table
        .finish(
            &lab.task(record).id,
            &slow_token,
            &Finish::Completed { renditions: 4 },
            now_ms() / 1000 + 60,
            common::a_minute(),
        )
        .await
        .unwrap();
    assert!(!late, "the late completion is refused");
    lab.figure(
        "slow worker's completion cut at its deadline, its lease taken over",
        "completed once by the new holder, the late completion refused",
        started,
    );
    lab.assert_complete("overtaken").await;
    lab.assert_no_work_after_completion("overtaken", record)
        .await;
    lab.remove().await;
}

/// A call S3 or DynamoDB never answers ends by the deadline less the margin (1 s): the delivery is
/// reported failed in the batch response, before the invocation's end, and the next one completes.
#[tokio::test]
async fn a_call_held_by_s3_or_dynamodb_ends_by_the_deadline() {
    let lab = Lab::new("held").await;
    let names = ["held-get", "held-put", "held-claim", "held-complete"];
    let records = lab.deliveries(&names).await;
    let margin = lab.config.deadline_margin;
    let scenarios = [
        (Op::GetObject, Claim::Released),
        (Op::PutObject, Claim::Released),
        (Op::PutItem, Claim::Released),
        // The renditions are written; the claim is left to its lease, as after any failed
        // completion.
        (Op::UpdateItem, Claim::LeftToExpire),
    ];
    for ((op, claim), (name, record)) in scenarios.into_iter().zip(names.iter().zip(&records)) {
        lab.proxy.set_rules(vec![Rule::always(op, Fault::Hold)]);
        let deadline = now_ms() + 2500;
        let started = Instant::now();
        let response = tokio::time::timeout(Duration::from_secs(10), lab.invoke(record, deadline))
            .await
            .unwrap_or_else(|_| panic!("{name}: the invocation hangs"));
        let ended = now_ms();
        assert!(lab.proxy.injected() > 0, "{name}: nothing was held");
        assert_eq!(response.batch_item_failures.len(), 1, "{name}");
        let cut = deadline - margin.as_millis() as u64;
        assert!(
            ended + 50 >= cut && ended < cut + 400,
            "{name}: ended {} ms after the work deadline",
            ended as i64 - cut as i64
        );
        lab.figure(
            &format!("{op:?} held"),
            "cut at the deadline less the margin, batch item failure (retryable)",
            started,
        );
        lab.assert_nothing_partial(name, claim).await;
        match claim {
            Claim::Released => {
                lab.proxy.set_rules(vec![]);
                assert!(rendered_all(&lab.process(record).await.unwrap()), "{name}");
                lab.assert_complete(name).await;
            }
            Claim::LeftToExpire => redeliver_after_the_lease(name, &lab, record, deadline).await,
        }
    }
    lab.remove().await;
}

async fn wait_until(deadline_ms: u64) {
    let left = deadline_ms.saturating_sub(now_ms()) + 50;
    tokio::time::sleep(Duration::from_millis(left)).await;
}

/// After a crash that left the task claimed until `lease_until`: a redelivery within the lease is
/// told to come back; after it, the task is taken over and completed without writing again.
async fn redeliver_after_the_lease(name: &str, lab: &Lab, record: &SqsMessage, lease_until: u64) {
    lab.proxy.set_rules(vec![]);
    let started = Instant::now();
    let outcome = match lab.process(record).await {
        Err(err) => {
            assert_eq!(err.reason(), "task_in_progress", "{name}: {err}");
            assert_eq!(lab.proxy.count(Op::GetObject), 0, "{name}");
            lab.figure(
                &format!("{name}: redelivery within the lease"),
                "task_in_progress, retry later",
                started,
            );
            wait_until(lease_until).await;
            lab.proxy.set_rules(vec![]);
            lab.process(record).await.unwrap()
        }
        // The machine was slow enough for the lease to be over already.
        Ok(outcome) => outcome,
    };
    assert_eq!(
        outcome,
        [Outcome::Rendered {
            renditions: 4,
            written: 0
        }],
        "{name}"
    );
    lab.figure(
        &format!("{name}: redelivery after the lease"),
        "taken over, rendered, 0 written",
        started,
    );
    assert_eq!(lab.proxy.answered(Op::PutObject, 412), 4, "{name}");
    assert_eq!(lab.proxy.answered(Op::PutObject, 200), 0, "{name}");
    lab.assert_complete(name).await;
    lab.assert_no_work_after_completion(name, record).await;
}

/// A real queue with a DLQ (maxReceiveCount 2, visibility 1 s) fed through the handler the way
/// the event source mapping does: a source S3 cannot serve ends in the DLQ; moved back once S3
/// is well again, it completes.
#[tokio::test]
async fn lasting_faults_reach_the_dlq_and_a_redrive_completes() {
    let lab = Lab::new("dlq").await;
    let notification = lab.deliveries(&["poison"]).await.remove(0);
    let queue_name = format!("{}-work", lab.name);
    let (dlq_url, dlq_arn) = create_queue(&lab.sqs, &format!("{queue_name}-dlq"), &[]).await;
    let (queue_url, queue_arn) = create_queue(
        &lab.sqs,
        &queue_name,
        &[
            (QueueAttributeName::VisibilityTimeout, "1".into()),
            (
                QueueAttributeName::RedrivePolicy,
                format!(r#"{{"deadLetterTargetArn":"{dlq_arn}","maxReceiveCount":"2"}}"#),
            ),
        ],
    )
    .await;
    let send = |url: String| {
        lab.sqs
            .send_message()
            .queue_url(url)
            .message_body(notification.body.clone().unwrap())
            .send()
    };
    send(queue_url.clone()).await.unwrap();
    lab.proxy
        .set_rules(vec![Rule::always(Op::GetObject, Fault::Truncate)]);
    let started = Instant::now();
    let mut receives = 0;
    let mut dead = Vec::new();
    while dead.is_empty() {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "never in the DLQ"
        );
        receives += pump(&lab, &queue_url, &queue_arn).await;
        dead = lab
            .sqs
            .receive_message()
            .queue_url(&dlq_url)
            .send()
            .await
            .unwrap()
            .messages
            .unwrap_or_default();
    }
    assert_eq!(receives, 2);
    lab.figure(
        "GetObject body cut on every delivery",
        &format!("in the DLQ after {receives} receives"),
        started,
    );
    assert_eq!(
        lab.assert_nothing_partial("poison", Claim::Released).await,
        0
    );

    // The redrive: moved back to its queue once S3 is well, the message completes.
    lab.proxy.set_rules(vec![]);
    send(queue_url.clone()).await.unwrap();
    lab.sqs
        .delete_message()
        .queue_url(&dlq_url)
        .receipt_handle(dead[0].receipt_handle.clone().unwrap())
        .send()
        .await
        .unwrap();
    let started = Instant::now();
    while lab.records("poison").await.is_empty() {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "never redriven"
        );
        pump(&lab, &queue_url, &queue_arn).await;
    }
    lab.figure("redrive from the DLQ", "rendered", started);
    lab.assert_complete("poison").await;
    lab.assert_no_work_after_completion("poison", &notification)
        .await;
    for url in [queue_url, dlq_url] {
        lab.sqs.delete_queue().queue_url(url).send().await.unwrap();
    }
    lab.remove().await;
}

/// One receive from the queue through the handler, deleting what succeeded as Lambda does;
/// returns the number of messages received.
async fn pump(lab: &Lab, queue_url: &str, queue_arn: &str) -> usize {
    let received = lab
        .sqs
        .receive_message()
        .queue_url(queue_url)
        .max_number_of_messages(10)
        .wait_time_seconds(1)
        .message_system_attribute_names(MessageSystemAttributeName::All)
        .send()
        .await
        .unwrap()
        .messages
        .unwrap_or_default();
    for message in &received {
        let mut record = lab.record(message);
        record.event_source_arn = Some(queue_arn.to_owned());
        let response = lab.invoke(&record, now_ms() + 60_000).await;
        if response.batch_item_failures.is_empty() {
            lab.sqs
                .delete_message()
                .queue_url(queue_url)
                .receipt_handle(message.receipt_handle.clone().unwrap())
                .send()
                .await
                .unwrap();
        }
    }
    received.len()
}

/// A source deleted while its renditions are being written: the removal, handled meanwhile,
/// finds none of them; the rendering task reads the source once its writes are done, finds it
/// gone and deletes what it wrote. Nothing is left of the deleted source.
#[tokio::test]
async fn a_source_deleted_while_its_renditions_are_written_leaves_none() {
    let lab = Lab::new("deleted-meanwhile").await;
    let record = lab.deliveries(&["deleted"]).await.remove(0);
    lab.proxy
        .set_rules(vec![Rule::always(Op::PutObject, Fault::Hold)]);
    let started = Instant::now();
    let rendering = lab.process(&record);
    let removing = async {
        lab.proxy.held().await;
        let removal = lab.delete("deleted").await;
        let outcome = lab.process(&removal).await.unwrap();
        lab.proxy.release_held();
        outcome
    };
    let (rendered, removed) = tokio::join!(rendering, removing);
    assert_eq!(
        removed,
        [Outcome::Removed {
            deleted: 0,
            kept: 0
        }]
    );
    assert_eq!(rendered.unwrap(), [Outcome::SourceGone]);
    assert_eq!(
        lab.proxy.answered(Op::PutObject, 200),
        4,
        "written, then deleted"
    );
    assert!(lab.renditions("deleted").await.is_empty());
    let records = lab.records("deleted").await;
    assert_eq!(records.len(), 2, "{records:?}");
    assert!(records
        .iter()
        .all(|r| common::string_attr(r, "status") == "COMPLETED"));
    lab.figure(
        "source deleted while its renditions were held on their way to S3",
        "the removal found none; the rendering task deleted the 4 it wrote",
        started,
    );
    lab.remove().await;
}
