//! SQS: batches sent with retries of only the entries that failed, queue attributes, and the one
//! adapter that talks to the service.

use std::collections::HashMap;
use std::time::Duration;

use aws_config::SdkConfig;
use aws_sdk_sqs::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_sqs::types::{
    ChangeMessageVisibilityBatchRequestEntry, DeleteMessageBatchRequestEntry, Message,
    MessageAttributeValue, MessageSystemAttributeName, QueueAttributeName,
    SendMessageBatchRequestEntry,
};
use serde::Deserialize;
use shared::aws::{region_of_queue_url, QueueArn};
use shared::error::Failure;
use shared::retry::Backoff;

use crate::error::CtlError;

/// SQS's most entries in one batch call.
pub const MAX_BATCH: usize = 10;
/// What one SendMessageBatch may carry in all. SQS now takes 1 MiB; a quarter keeps queues
/// created with the older 256 KiB limit working.
pub const MAX_BATCH_BYTES: usize = 256 * 1024;
/// Attempts at each entry of a batch before it is reported as failed.
pub const SEND_ATTEMPTS: u32 = 5;
pub const SEND_BACKOFF: Backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(5));

/// A message to send.
#[derive(Debug, Clone, PartialEq)]
pub struct Outgoing {
    /// What the report calls it (the key, or the dead letter's message id).
    pub label: String,
    pub body: String,
    pub attributes: HashMap<String, MessageAttributeValue>,
    /// Both set for a FIFO queue.
    pub group_id: Option<String>,
    pub deduplication_id: Option<String>,
}

impl Outgoing {
    /// What the message weighs against SQS's size limits.
    pub fn size(&self) -> usize {
        self.body.len()
            + self
                .attributes
                .iter()
                .map(|(name, value)| {
                    name.len()
                        + value.data_type().len()
                        + value.string_value().map_or(0, str::len)
                        + value.binary_value().map_or(0, |b| b.as_ref().len())
                })
                .sum::<usize>()
    }
}

/// An entry of a batch call that SQS refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryFailure {
    /// Its index in the batch sent.
    pub index: usize,
    pub code: String,
    pub message: String,
    /// SQS's word that the entry itself is wrong: sending it again cannot succeed.
    pub sender_fault: bool,
}

/// The one queue operation the retry logic needs.
pub trait BatchQueue {
    /// Sends up to [`MAX_BATCH`] messages; answers the entries that failed.
    async fn send_batch(&self, batch: &[Outgoing]) -> Result<Vec<EntryFailure>, CtlError>;
}

/// What became of a list of messages.
#[derive(Debug, Default)]
pub struct SendReport {
    pub sent: Vec<Outgoing>,
    pub failed: Vec<(Outgoing, String)>,
}

/// Sends `messages` (at most [`MAX_BATCH`]) in one batch, then again only those that failed for a
/// reason that may pass, with backoff. A call that fails whole for a reason that cannot pass (a
/// missing queue, access denied) stops everything: no other batch could succeed either.
pub async fn send_with_retries<Q: BatchQueue>(
    queue: &Q,
    messages: Vec<Outgoing>,
    backoff: Backoff,
    attempts: u32,
) -> Result<SendReport, CtlError> {
    let mut report = SendReport::default();
    let mut pending = messages;
    let mut attempt = 0;
    while !pending.is_empty() {
        let last = attempt + 1 >= attempts;
        match queue.send_batch(&pending).await {
            Ok(failures) => {
                let mut failures: HashMap<usize, EntryFailure> =
                    failures.into_iter().map(|f| (f.index, f)).collect();
                let mut again = Vec::new();
                for (index, message) in pending.into_iter().enumerate() {
                    match failures.remove(&index) {
                        None => report.sent.push(message),
                        Some(failure) if failure.sender_fault || last => {
                            let reason = format!("{}: {}", failure.code, failure.message);
                            report.failed.push((message, reason));
                        }
                        Some(_) => again.push(message),
                    }
                }
                pending = again;
            }
            Err(CtlError::Aws(err)) if err.is_retryable() && !last => {}
            Err(CtlError::Aws(err)) if err.is_retryable() => {
                let reason = err.to_string();
                report
                    .failed
                    .extend(pending.drain(..).map(|m| (m, reason.clone())));
            }
            Err(err) => return Err(err),
        }
        if !pending.is_empty() {
            tokio::time::sleep(backoff.equal_jitter(attempt)).await;
        }
        attempt += 1;
    }
    Ok(report)
}

/// Groups messages into batches SQS takes: at most [`MAX_BATCH`] entries and [`MAX_BATCH_BYTES`]
/// (a message larger than that alone goes in a batch of its own), the order kept.
pub fn batches(messages: Vec<Outgoing>, max_entries: usize) -> Vec<Vec<Outgoing>> {
    let max_entries = max_entries.clamp(1, MAX_BATCH);
    let mut batches: Vec<Vec<Outgoing>> = Vec::new();
    let mut bytes = 0;
    for message in messages {
        let size = message.size();
        match batches.last_mut() {
            Some(batch) if batch.len() < max_entries && bytes + size <= MAX_BATCH_BYTES => {
                bytes += size;
                batch.push(message);
            }
            _ => {
                bytes = size;
                batches.push(vec![message]);
            }
        }
    }
    batches
}

/// The queue attributes the tool reads.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QueueAttributes {
    pub arn: Option<QueueArn>,
    /// ApproximateNumberOfMessages.
    pub visible: u64,
    /// ApproximateNumberOfMessagesNotVisible: received and not yet deleted.
    pub in_flight: u64,
    pub delayed: u64,
    pub redrive: Option<RedrivePolicy>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedrivePolicy {
    pub dead_letter_queue: QueueArn,
    pub max_receive_count: u32,
}

impl QueueAttributes {
    pub fn from_map(map: &HashMap<QueueAttributeName, String>) -> Result<Self, String> {
        let count = |name: QueueAttributeName| -> Result<u64, String> {
            map.get(&name).map_or(Ok(0), |raw| {
                raw.parse()
                    .map_err(|_| format!("attribute {name} is {raw:?}, not a count"))
            })
        };
        let redrive = map
            .get(&QueueAttributeName::RedrivePolicy)
            .filter(|raw| !raw.trim().is_empty())
            .map(|raw| parse_redrive_policy(raw))
            .transpose()?;
        Ok(QueueAttributes {
            arn: map
                .get(&QueueAttributeName::QueueArn)
                .and_then(|raw| QueueArn::parse(raw)),
            visible: count(QueueAttributeName::ApproximateNumberOfMessages)?,
            in_flight: count(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)?,
            delayed: count(QueueAttributeName::ApproximateNumberOfMessagesDelayed)?,
            redrive,
        })
    }
}

/// A queue's `RedrivePolicy` attribute (JSON; `maxReceiveCount` is a number or, from some
/// tools, a string).
pub fn parse_redrive_policy(raw: &str) -> Result<RedrivePolicy, String> {
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Raw {
        dead_letter_target_arn: String,
        max_receive_count: serde_json::Value,
    }
    let policy: Raw = serde_json::from_str(raw)
        .map_err(|e| format!("RedrivePolicy {raw:?} is not a redrive policy: {e}"))?;
    let dead_letter_queue = QueueArn::parse(&policy.dead_letter_target_arn).ok_or_else(|| {
        format!(
            "RedrivePolicy names {:?}, not an SQS queue ARN",
            policy.dead_letter_target_arn
        )
    })?;
    let max_receive_count = match &policy.max_receive_count {
        serde_json::Value::Number(n) => n.as_u64(),
        serde_json::Value::String(s) => s.parse().ok(),
        _ => None,
    }
    .and_then(|n| u32::try_from(n).ok())
    .ok_or_else(|| format!("RedrivePolicy {raw:?} has no usable maxReceiveCount"))?;
    Ok(RedrivePolicy {
        dead_letter_queue,
        max_receive_count,
    })
}

/// Whether a queue URL is a FIFO queue's.
pub fn is_fifo_url(url: &str) -> bool {
    url.trim_end_matches('/').ends_with(".fifo")
}

/// Checks a queue URL's form (not that the queue exists).
pub fn check_queue_url(raw: &str) -> Result<String, String> {
    let valid = (raw.starts_with("https://") || raw.starts_with("http://"))
        && raw.split('/').filter(|s| !s.is_empty()).count() >= 4
        && !raw.contains(char::is_whitespace);
    if valid {
        Ok(raw.trim_end_matches('/').to_owned())
    } else {
        Err(format!(
            "{raw:?} is not an SQS queue URL such as https://sqs.eu-west-1.amazonaws.com/123456789012/backfill"
        ))
    }
}

/// An SQS client for the region a queue URL names: the SDK sends to its configured endpoint, not
/// to the URL's host.
pub fn sqs_client_for(config: &SdkConfig, url: &str) -> aws_sdk_sqs::Client {
    client_for_region(config, region_of_queue_url(url))
}

fn client_for_region(config: &SdkConfig, region: Option<String>) -> aws_sdk_sqs::Client {
    let configured = config.region().map(|r| r.as_ref().to_owned());
    match region {
        // A local stand-in is one endpoint for every region.
        Some(region) if configured.as_ref() != Some(&region) && config.endpoint_url().is_none() => {
            let config = config
                .to_builder()
                .region(aws_config::Region::new(region))
                .build();
            aws_sdk_sqs::Client::new(&config)
        }
        _ => shared::aws::sqs_client(config),
    }
}

fn sqs_error<E, R>(operation: &'static str, err: SdkError<E, R>) -> shared::Error
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug + shared::error::HttpStatus,
{
    shared::Error::aws(operation, err)
}

fn is_missing_queue<E: ProvideErrorMetadata, R>(err: &SdkError<E, R>) -> bool {
    err.as_service_error()
        .and_then(ProvideErrorMetadata::code)
        .is_some_and(|code| code.contains("NonExistentQueue") || code == "QueueDoesNotExist")
}

/// One queue, through the AWS SDK.
#[derive(Debug, Clone)]
pub struct SqsQueue {
    client: aws_sdk_sqs::Client,
    pub url: String,
}

impl SqsQueue {
    pub fn new(config: &SdkConfig, url: &str) -> Self {
        SqsQueue {
            client: sqs_client_for(config, url),
            url: url.to_owned(),
        }
    }

    pub fn is_fifo(&self) -> bool {
        is_fifo_url(&self.url)
    }

    fn missing(&self, err: &impl std::fmt::Display) -> CtlError {
        CtlError::MissingQueue {
            url: self.url.clone(),
            detail: err.to_string(),
        }
    }

    /// The queue's attributes; a queue that does not exist is an error that names it.
    pub async fn attributes(&self) -> Result<QueueAttributes, CtlError> {
        let output = self
            .client
            .get_queue_attributes()
            .queue_url(&self.url)
            .attribute_names(QueueAttributeName::All)
            .send()
            .await;
        let output = match output {
            Ok(output) => output,
            Err(err) if is_missing_queue(&err) => {
                return Err(self.missing(&sqs_error("GetQueueAttributes", err)))
            }
            Err(err) => return Err(sqs_error("GetQueueAttributes", err).into()),
        };
        QueueAttributes::from_map(output.attributes().unwrap_or(&HashMap::new()))
            .map_err(|e| CtlError::Input(format!("queue {}: {e}", self.url)))
    }

    /// The URL of the queue an ARN names, asked in the ARN's region.
    pub async fn url_of(config: &SdkConfig, arn: &QueueArn) -> Result<String, CtlError> {
        let client = client_for_region(config, Some(arn.region.clone()));
        let output = client
            .get_queue_url()
            .queue_name(&arn.name)
            .queue_owner_aws_account_id(&arn.account)
            .send()
            .await;
        match output {
            Ok(output) => output.queue_url().map(str::to_owned).ok_or_else(|| {
                CtlError::Input(format!("GetQueueUrl answered no URL for {}", arn.name))
            }),
            Err(err) if is_missing_queue(&err) => Err(CtlError::MissingQueue {
                url: format!("arn:aws:sqs:{}:{}:{}", arn.region, arn.account, arn.name),
                detail: sqs_error("GetQueueUrl", err).to_string(),
            }),
            Err(err) => Err(sqs_error("GetQueueUrl", err).into()),
        }
    }

    /// Receives up to `max` messages (at most 10) with their system and message attributes,
    /// hidden from other consumers for `visibility`.
    pub async fn receive(
        &self,
        max: usize,
        visibility: Duration,
        wait: Duration,
    ) -> Result<Vec<Message>, CtlError> {
        let output = self
            .client
            .receive_message()
            .queue_url(&self.url)
            .max_number_of_messages(max.clamp(1, MAX_BATCH) as i32)
            .visibility_timeout(visibility.as_secs() as i32)
            .wait_time_seconds(wait.as_secs() as i32)
            .message_system_attribute_names(MessageSystemAttributeName::All)
            .message_attribute_names("All")
            .send()
            .await;
        match output {
            Ok(output) => Ok(output.messages.unwrap_or_default()),
            Err(err) if is_missing_queue(&err) => {
                Err(self.missing(&sqs_error("ReceiveMessage", err)))
            }
            Err(err) => Err(sqs_error("ReceiveMessage", err).into()),
        }
    }

    /// Deletes received messages by receipt handle; answers the handles that could not be
    /// deleted, with the reason.
    pub async fn delete_batch(
        &self,
        receipt_handles: &[String],
    ) -> Result<Vec<(usize, String)>, CtlError> {
        let entries = receipt_handles
            .iter()
            .enumerate()
            .map(|(index, handle)| {
                DeleteMessageBatchRequestEntry::builder()
                    .id(index.to_string())
                    .receipt_handle(handle)
                    .build()
                    .expect("id and receipt handle are set")
            })
            .collect();
        let output = self
            .client
            .delete_message_batch()
            .queue_url(&self.url)
            .set_entries(Some(entries))
            .send()
            .await
            .map_err(|e| sqs_error("DeleteMessageBatch", e))?;
        Ok(output
            .failed()
            .iter()
            .filter_map(|f| {
                let index = f.id().parse().ok()?;
                Some((
                    index,
                    format!("{}: {}", f.code(), f.message().unwrap_or("")),
                ))
            })
            .collect())
    }

    /// Makes received messages visible again at once.
    pub async fn release(&self, receipt_handles: &[String]) -> Result<(), CtlError> {
        for chunk in receipt_handles.chunks(MAX_BATCH) {
            let entries = chunk
                .iter()
                .enumerate()
                .map(|(index, handle)| {
                    ChangeMessageVisibilityBatchRequestEntry::builder()
                        .id(index.to_string())
                        .receipt_handle(handle)
                        .visibility_timeout(0)
                        .build()
                        .expect("id and receipt handle are set")
                })
                .collect();
            self.client
                .change_message_visibility_batch()
                .queue_url(&self.url)
                .set_entries(Some(entries))
                .send()
                .await
                .map_err(|e| sqs_error("ChangeMessageVisibilityBatch", e))?;
        }
        Ok(())
    }
}

impl BatchQueue for SqsQueue {
    async fn send_batch(&self, batch: &[Outgoing]) -> Result<Vec<EntryFailure>, CtlError> {
        let entries = batch
            .iter()
            .enumerate()
            .map(|(index, message)| {
                SendMessageBatchRequestEntry::builder()
                    .id(index.to_string())
                    .message_body(&message.body)
                    .set_message_attributes(
                        (!message.attributes.is_empty()).then(|| message.attributes.clone()),
                    )
                    .set_message_group_id(message.group_id.clone())
                    .set_message_deduplication_id(message.deduplication_id.clone())
                    .build()
                    .expect("id and body are set")
            })
            .collect();
        let output = self
            .client
            .send_message_batch()
            .queue_url(&self.url)
            .set_entries(Some(entries))
            .send()
            .await;
        let output = match output {
            Ok(output) => output,
            Err(err) if is_missing_queue(&err) => {
                return Err(self.missing(&sqs_error("SendMessageBatch", err)))
            }
            Err(err) => return Err(sqs_error("SendMessageBatch", err).into()),
        };
        Ok(output
            .failed()
            .iter()
            .map(|failure| EntryFailure {
                index: failure.id().parse().unwrap_or(usize::MAX),
                code: failure.code().to_owned(),
                message: failure.message().unwrap_or("no message").to_owned(),
                sender_fault: failure.sender_fault(),
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;

    fn message(label: &str) -> Outgoing {
        Outgoing {
            label: label.to_owned(),
            body: format!("{{\"key\":\"{label}\"}}"),
            attributes: HashMap::new(),
            group_id: None,
            deduplication_id: None,
        }
    }

    /// Fails entries by label: `flaky` ones a number of times, `broken` ones always (the
    /// sender's fault), and whole calls while `outages` lasts.
    #[derive(Default)]
    struct FakeQueue {
        flaky: RefCell<HashMap<String, u32>>,
        broken: Vec<String>,
        outages: RefCell<u32>,
        permanent_outage: bool,
        calls: RefCell<Vec<Vec<String>>>,
    }

    impl BatchQueue for FakeQueue {
        async fn send_batch(&self, batch: &[Outgoing]) -> Result<Vec<EntryFailure>, CtlError> {
            self.calls
                .borrow_mut()
                .push(batch.iter().map(|m| m.label.clone()).collect());
            if self.permanent_outage {
                return Err(CtlError::MissingQueue {
                    url: "q".into(),
                    detail: "gone".into(),
                });
            }
            if *self.outages.borrow() > 0 {
                *self.outages.borrow_mut() -= 1;
                return Err(CtlError::Aws(shared::Error::Aws {
                    operation: "SendMessageBatch",
                    message: "ServiceUnavailable".into(),
                    retryable: true,
                }));
            }
            let mut failures = Vec::new();
            for (index, message) in batch.iter().enumerate() {
                if self.broken.contains(&message.label) {
                    failures.push(EntryFailure {
                        index,
                        code: "InvalidParameterValue".into(),
                        message: "bad".into(),
                        sender_fault: true,
                    });
                } else if let Some(left) = self.flaky.borrow_mut().get_mut(&message.label) {
                    if *left > 0 {
                        *left -= 1;
                        failures.push(EntryFailure {
                            index,
                            code: "InternalError".into(),
                            message: "try again".into(),
                            sender_fault: false,
                        });
                    }
                }
            }
            Ok(failures)
        }
    }

    fn labels(messages: &[Outgoing]) -> Vec<&str> {
        messages.iter().map(|m| m.label.as_str()).collect()
    }

    #[tokio::test(start_paused = true)]
    async fn only_the_failed_entries_are_sent_again() {
        let queue = FakeQueue {
            flaky: RefCell::new(HashMap::from([("b".to_owned(), 2)])),
            broken: vec!["c".to_owned()],
            ..FakeQueue::default()
        };
        let batch = ["a", "b", "c", "d"].map(message).to_vec();
        let report = send_with_retries(&queue, batch, SEND_BACKOFF, SEND_ATTEMPTS)
            .await
            .unwrap();
        assert_eq!(labels(&report.sent), ["a", "d", "b"]);
        assert_eq!(report.failed.len(), 1);
        assert_eq!(report.failed[0].0.label, "c");
        assert_eq!(report.failed[0].1, "InvalidParameterValue: bad");
        assert_eq!(
            *queue.calls.borrow(),
            [vec!["a", "b", "c", "d"], vec!["b"], vec!["b"]]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn entries_that_keep_failing_are_reported_after_the_last_attempt() {
        let queue = FakeQueue {
            flaky: RefCell::new(HashMap::from([("a".to_owned(), 100)])),
            ..FakeQueue::default()
        };
        let report = send_with_retries(&queue, vec![message("a")], SEND_BACKOFF, 3)
            .await
            .unwrap();
        assert!(report.sent.is_empty());
        assert_eq!(report.failed[0].1, "InternalError: try again");
        assert_eq!(queue.calls.borrow().len(), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn a_transient_outage_is_waited_out() {
        let queue = FakeQueue {
            outages: RefCell::new(2),
            ..FakeQueue::default()
        };
        let started = tokio::time::Instant::now();
        let report = send_with_retries(&queue, vec![message("a")], SEND_BACKOFF, 5)
            .await
            .unwrap();
        assert_eq!(labels(&report.sent), ["a"]);
        // Equal jitter: at least half of 200 ms, then half of 400 ms.
        assert!(started.elapsed() >= Duration::from_millis(300));

        let queue = FakeQueue {
            outages: RefCell::new(10),
            ..FakeQueue::default()
        };
        let report = send_with_retries(&queue, vec![message("a")], SEND_BACKOFF, 2)
            .await
            .unwrap();
        assert_eq!(
            report.failed[0].1,
            "SendMessageBatch failed: ServiceUnavailable"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_missing_queue_stops_at_once() {
        let queue = FakeQueue {
            permanent_outage: true,
            ..FakeQueue::default()
        };
        let err = send_with_retries(&queue, vec![message("a")], SEND_BACKOFF, 5)
            .await
            .unwrap_err();
        assert!(matches!(err, CtlError::MissingQueue { .. }));
        assert_eq!(queue.calls.borrow().len(), 1);
    }

    #[test]
    fn batches_respect_count_and_size() {
        let small: Vec<Outgoing> = (0..23).map(|i| message(&i.to_string())).collect();
        let sizes: Vec<usize> = batches(small.clone(), 10).iter().map(Vec::len).collect();
        assert_eq!(sizes, [10, 10, 3]);
        let sizes: Vec<usize> = batches(small, 4).iter().map(Vec::len).collect();
        assert_eq!(sizes, [4, 4, 4, 4, 4, 3]);
        let mut big = message("big");
        big.body = "x".repeat(MAX_BATCH_BYTES / 2 + 1);
        let mixed = vec![message("a"), big.clone(), big.clone(), big, message("b")];
        let grouped = batches(mixed, 10);
        let grouped: Vec<Vec<&str>> = grouped.iter().map(|b| labels(b)).collect();
        assert_eq!(grouped, [vec!["a", "big"], vec!["big"], vec!["big", "b"]]);
    }

    #[test]
    fn attributes_and_redrive_policies() {
        let map = HashMap::from([
            (
                QueueAttributeName::QueueArn,
                "arn:aws:sqs:us-east-1:123456789012:backfill".to_owned(),
            ),
            (QueueAttributeName::ApproximateNumberOfMessages, "7".to_owned()),
            (
                QueueAttributeName::ApproximateNumberOfMessagesNotVisible,
                "2".to_owned(),
            ),
            (
                QueueAttributeName::RedrivePolicy,
                r#"{"deadLetterTargetArn": "arn:aws:sqs:us-east-1:123456789012:backfill-dlq", "maxReceiveCount": 5}"#
                    .to_owned(),
            ),
        ]);
        let attributes = QueueAttributes::from_map(&map).unwrap();
        assert_eq!(
            (attributes.visible, attributes.in_flight, attributes.delayed),
            (7, 2, 0)
        );
        let redrive = attributes.redrive.unwrap();
        assert_eq!(redrive.dead_letter_queue.name, "backfill-dlq");
        assert_eq!(redrive.max_receive_count, 5);
        let quoted = parse_redrive_policy(
            r#"{"deadLetterTargetArn":"arn:aws:sqs:eu-west-1:1:d.fifo","maxReceiveCount":"3"}"#,
        )
        .unwrap();
        assert_eq!(quoted.max_receive_count, 3);
        assert!(quoted.dead_letter_queue.is_fifo());
        assert!(
            parse_redrive_policy(r#"{"deadLetterTargetArn":"nope","maxReceiveCount":5}"#)
                .unwrap_err()
                .contains("not an SQS queue ARN")
        );
        assert!(parse_redrive_policy("{}").is_err());
        let bad_count = HashMap::from([(
            QueueAttributeName::ApproximateNumberOfMessages,
            "many".to_owned(),
        )]);
        assert!(QueueAttributes::from_map(&bad_count).is_err());
    }

    #[test]
    fn queue_urls() {
        assert!(is_fifo_url(
            "https://sqs.eu-west-1.amazonaws.com/1/backfill.fifo"
        ));
        assert!(!is_fifo_url(
            "https://sqs.eu-west-1.amazonaws.com/1/backfill"
        ));
        assert_eq!(
            check_queue_url("http://127.0.0.1:5000/123456789012/q/").unwrap(),
            "http://127.0.0.1:5000/123456789012/q"
        );
        for bad in [
            "backfill",
            "https://sqs.amazonaws.com/q",
            "s3://b/k",
            "http://h/1/a b",
        ] {
            assert!(check_queue_url(bad).is_err(), "{bad}");
        }
    }
}
