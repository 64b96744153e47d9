//! `redrive`: moves dead letters back to the queue they came from. Each is received from the DLQ,
//! sent to the source queue with its body and message attributes, and deleted from the DLQ only
//! once the send succeeded: a crash in between leaves a copy in both, never in neither.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use aws_config::SdkConfig;
use aws_sdk_sqs::types::{Message, MessageAttributeValue, MessageSystemAttributeName};
use serde_json::Value;
use shared::message::BackfillMessage;
use shared::ObjectKey;
use time::OffsetDateTime;

use crate::cli::RedriveArgs;
use crate::error::{CtlError, Outcome};
use crate::queue::{
    batches, send_with_retries, Outgoing, SqsQueue, MAX_BATCH, SEND_ATTEMPTS, SEND_BACKOFF,
};

/// How long a received dead letter stays hidden: time enough to send and delete it. One whose
/// send failed shows up in the DLQ again after this.
pub const RECEIVE_VISIBILITY: Duration = Duration::from_secs(60);
const RECEIVE_WAIT: Duration = Duration::from_secs(1);

/// The message to send for a dead letter. On a FIFO queue it keeps its message group, and gets a
/// deduplication id of its own: the original's may still be inside the queue's five-minute
/// window, where SQS would drop the copy while the DLQ's is deleted. A redrive run again after a
/// crash makes the same id for the same dead letter, so SQS drops that repeat.
pub fn resend(message: &Message, fifo: bool) -> Result<Outgoing, String> {
    let id = message.message_id().unwrap_or_default();
    let body = message
        .body()
        .ok_or_else(|| "the dead letter has no body".to_owned())?;
    let attributes = message
        .message_attributes()
        .map(|attributes| {
            attributes
                .iter()
                .map(|(name, value)| (name.clone(), attribute_copy(value)))
                .collect()
        })
        .unwrap_or_default();
    let (group_id, deduplication_id) = if fifo {
        let group = message
            .attributes()
            .and_then(|a| a.get(&MessageSystemAttributeName::MessageGroupId))
            .ok_or_else(|| "the dead letter of a FIFO queue has no MessageGroupId".to_owned())?;
        (Some(group.clone()), Some(format!("redrive-{id}")))
    } else {
        (None, None)
    };
    Ok(Outgoing {
        label: id.to_owned(),
        body: body.to_owned(),
        attributes,
        group_id,
        deduplication_id,
    })
}

/// An attribute as received, reduced to what SendMessage takes.
fn attribute_copy(value: &MessageAttributeValue) -> MessageAttributeValue {
    MessageAttributeValue::builder()
        .data_type(value.data_type())
        .set_string_value(value.string_value().map(str::to_owned))
        .set_binary_value(value.binary_value().cloned())
        .build()
        .expect("the data type is set")
}

/// One line for a dead letter: id, when it was first sent, receives, what it asks for.
pub fn describe(message: &Message) -> String {
    let attribute = |name| {
        message
            .attributes()
            .and_then(|a| a.get(&name))
            .map(String::as_str)
    };
    let sent = attribute(MessageSystemAttributeName::SentTimestamp)
        .and_then(|ms| ms.parse::<i128>().ok())
        .and_then(|ms| OffsetDateTime::from_unix_timestamp_nanos(ms * 1_000_000).ok())
        .and_then(|t| {
            t.replace_nanosecond(0)
                .ok()?
                .format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| "?".to_owned());
    let receives = attribute(MessageSystemAttributeName::ApproximateReceiveCount).unwrap_or("?");
    format!(
        "{}  sent {sent}  receives {receives}  {}",
        message.message_id().unwrap_or("?"),
        summarize_body(message.body().unwrap_or_default())
    )
}

/// What a message body asks for: a backfill, an S3 event's keys, or the start of the text.
pub fn summarize_body(body: &str) -> String {
    if let Ok(message) = BackfillMessage::parse(body) {
        return format!(
            "backfill s3://{}/{} ({})",
            message.bucket,
            message.key,
            message.trigger.as_str()
        );
    }
    if let Ok(value) = serde_json::from_str::<Value>(body) {
        if let Some(records) = value.get("Records").and_then(Value::as_array) {
            let keys: Vec<String> = records
                .iter()
                .filter_map(|r| {
                    let raw = r.pointer("/s3/object/key")?.as_str()?;
                    Some(
                        ObjectKey::from_s3_event_key(raw).map_or(raw.to_owned(), |k| k.to_string()),
                    )
                })
                .collect();
            return format!("s3 event: {}", keys.join(", "));
        }
        if let Some(event) = value.get("Event").and_then(Value::as_str) {
            return event.to_owned();
        }
    }
    let mut start: String = body.chars().take(80).collect();
    if start.len() < body.len() {
        start.push('…');
    }
    format!("{start:?}")
}

pub async fn run(args: RedriveArgs, config: &SdkConfig) -> Result<Outcome, CtlError> {
    let source = SqsQueue::new(config, &args.queue_url);
    let source_attributes = source.attributes().await?;
    let dlq_url = match (&args.dlq_url, &source_attributes.redrive) {
        (Some(url), _) => url.clone(),
        (None, Some(redrive)) => SqsQueue::url_of(config, &redrive.dead_letter_queue).await?,
        (None, None) => {
            return Err(CtlError::Input(format!(
                "queue {} has no RedrivePolicy naming its DLQ: give --dlq-url",
                source.url
            )))
        }
    };
    let dlq = SqsQueue::new(config, &dlq_url);
    let dlq_attributes = dlq.attributes().await?;
    if dlq.is_fifo() != source.is_fifo() {
        return Err(CtlError::Usage(format!(
            "{} and {} are not both FIFO or both standard queues",
            dlq.url, source.url
        )));
    }
    println!(
        "{} from {} ({} waiting) to {}",
        if args.dry_run {
            "dry run: would move"
        } else {
            "moving"
        },
        dlq.url,
        dlq_attributes.visible,
        source.url
    );
    let limit = args.max.unwrap_or(usize::MAX);
    let mut seen = HashSet::new();
    let mut moved = 0;
    let mut held = Vec::new();
    let mut failed: Vec<(String, String)> = Vec::new();
    while seen.len() < limit {
        let want = (limit - seen.len()).min(MAX_BATCH);
        let received = dlq.receive(want, RECEIVE_VISIBILITY, RECEIVE_WAIT).await?;
        let fresh: Vec<Message> = received
            .into_iter()
            .filter(|m| seen.insert(m.message_id().unwrap_or_default().to_owned()))
            .collect();
        if fresh.is_empty() {
            break;
        }
        if args.dry_run {
            for message in &fresh {
                println!("  {}", describe(message));
                held.extend(message.receipt_handle().map(str::to_owned));
            }
            continue;
        }
        let mut handles = HashMap::new();
        let mut descriptions = HashMap::new();
        let mut outgoing = Vec::new();
        for message in &fresh {
            let id = message.message_id().unwrap_or_default().to_owned();
            match resend(message, source.is_fifo()) {
                Ok(entry) => {
                    handles.insert(id.clone(), message.receipt_handle().unwrap_or_default());
                    descriptions.insert(id, describe(message));
                    outgoing.push(entry);
                }
                Err(reason) => failed.push((id, reason)),
            }
        }
        for batch in batches(outgoing, MAX_BATCH) {
            let report = send_with_retries(&source, batch, SEND_BACKOFF, SEND_ATTEMPTS).await?;
            failed.extend(
                report
                    .failed
                    .into_iter()
                    .map(|(m, reason)| (m.label, reason)),
            );
            let sent_handles: Vec<String> = report
                .sent
                .iter()
                .map(|m| handles[&m.label].to_owned())
                .collect();
            let undeleted = dlq.delete_batch(&sent_handles).await?;
            for (index, message) in report.sent.iter().enumerate() {
                match undeleted.iter().find(|(i, _)| *i == index) {
                    None => {
                        moved += 1;
                        println!("  moved {}", descriptions[&message.label]);
                    }
                    Some((_, reason)) => failed.push((
                        message.label.clone(),
                        format!("sent, but not deleted from the DLQ (a later redrive sends it again): {reason}"),
                    )),
                }
            }
        }
    }
    if args.dry_run {
        dlq.release(&held).await?;
        println!("would move: {}", held.len());
    } else {
        println!("moved: {moved}");
    }
    if !failed.is_empty() {
        println!("failed: {}", failed.len());
        for (id, reason) in &failed {
            println!("  {id}: {reason}");
        }
    }
    Ok(Outcome::from_failures(failed.len()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_smithy_types::Blob;

    fn dead_letter(body: &str) -> Message {
        Message::builder()
            .message_id("2f1c6c3e-1111-4b7a-9d0e-000000000001")
            .receipt_handle("handle")
            .body(body)
            .attributes(MessageSystemAttributeName::MessageGroupId, "backfill-07")
            .attributes(MessageSystemAttributeName::MessageDeduplicationId, "abc")
            .attributes(MessageSystemAttributeName::SentTimestamp, "1795000000123")
            .attributes(MessageSystemAttributeName::ApproximateReceiveCount, "6")
            .message_attributes(
                "origin",
                MessageAttributeValue::builder()
                    .data_type("String")
                    .string_value("edge")
                    .build()
                    .unwrap(),
            )
            .message_attributes(
                "blob",
                MessageAttributeValue::builder()
                    .data_type("Binary")
                    .binary_value(Blob::new(vec![0, 1, 2]))
                    .build()
                    .unwrap(),
            )
            .build()
    }

    #[test]
    fn a_dead_letter_keeps_body_attributes_and_group() {
        let message = dead_letter("hello");
        let standard = resend(&message, false).unwrap();
        assert_eq!(standard.body, "hello");
        assert_eq!(standard.label, "2f1c6c3e-1111-4b7a-9d0e-000000000001");
        assert_eq!(standard.attributes["origin"].string_value(), Some("edge"));
        assert_eq!(
            standard.attributes["blob"].binary_value().map(Blob::as_ref),
            Some(&[0u8, 1, 2][..])
        );
        assert_eq!(standard.group_id, None);
        let fifo = resend(&message, true).unwrap();
        assert_eq!(fifo.group_id.as_deref(), Some("backfill-07"));
        assert_eq!(
            fifo.deduplication_id.as_deref(),
            Some("redrive-2f1c6c3e-1111-4b7a-9d0e-000000000001")
        );
        let no_group = Message::builder().message_id("x").body("b").build();
        assert!(resend(&no_group, true)
            .unwrap_err()
            .contains("MessageGroupId"));
        assert!(resend(&Message::builder().build(), false).is_err());
    }

    #[test]
    fn bodies_are_summarized() {
        assert_eq!(
            summarize_body(r#"{"Records":[{"s3":{"object":{"key":"images/a+b%2Bc.jpg"}}}]}"#),
            "s3 event: images/a b+c.jpg"
        );
        assert_eq!(
            summarize_body(r#"{"Service":"Amazon S3","Event":"s3:TestEvent"}"#),
            "s3:TestEvent"
        );
        assert_eq!(summarize_body("plain"), "\"plain\"");
        let long = "x".repeat(100);
        assert_eq!(summarize_body(&long), format!("\"{}…\"", "x".repeat(80)));
        let backfill = r#"{"version":1,"bucket":"overseas-origin","key":"images/a.jpg",
            "origin":{"protocol":"https","host":"www.example.com","port":443,"path":""},
            "uri":"/images/a.jpg","request_id":"r","enqueued_at":"2026-11-25T08:00:00Z",
            "trigger":"operator"}"#;
        assert_eq!(
            summarize_body(backfill),
            "backfill s3://overseas-origin/images/a.jpg (operator)"
        );
    }

    #[test]
    fn descriptions_name_id_time_and_receives() {
        assert_eq!(
            describe(&dead_letter("plain")),
            "2f1c6c3e-1111-4b7a-9d0e-000000000001  sent 2026-11-18T11:06:40Z  receives 6  \"plain\""
        );
    }
}
