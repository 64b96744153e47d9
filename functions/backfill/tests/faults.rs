//! Faults the backfill meets in production, each scenario ending with the invariants checked: the
//! object is in S3 whole and byte-identical, or the message will be retried (and, in the end, is in
//! the DLQ); nothing partial is visible; no multipart upload is left open.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use aws_lambda_events::event::sqs::{SqsEvent, SqsMessage};
use aws_sdk_sqs::types::{MessageSystemAttributeName, QueueAttributeName};
use backfill::copy::CopyOutcome;
use backfill::error::BackfillError;
use backfill::origin::Lookup;
use common::{behind_proxy, bytes, object_in, Harness, MIB};
use shared::batch::{BatchRunner, VisibilityExtender};
use shared::retry::Backoff;
use shared::Failure;
use test_support::fault_proxy::{Fault, Op, Rule};
use test_support::queues::create_queue;
use tokio::time::Instant;

/// The invariants: whole and identical, or absent; never an open upload.
async fn assert_invariants(
    h: &Harness,
    direct: &aws_sdk_s3::Client,
    key: &str,
    body: &[u8],
    expect_present: bool,
) {
    match object_in(direct, &h.bucket, key).await {
        Some(stored) => assert!(stored == body, "{key}: partial or different object visible"),
        None => assert!(!expect_present, "{key}: missing"),
    }
    let open = direct
        .list_multipart_uploads()
        .bucket(&h.bucket)
        .prefix(&h.prefix)
        .send()
        .await
        .unwrap()
        .uploads()
        .len();
    assert_eq!(open, 0, "{key}: a multipart upload was left open");
}

fn rule(op: Op, from: usize, to: usize, fault: Fault) -> Rule {
    Rule {
        op,
        from,
        to,
        fault,
    }
}

#[tokio::test]
async fn s3_transient_faults_are_absorbed_by_sdk_retries() {
    let (h, proxy, direct) = behind_proxy(&[]).await;
    // "tiny" is read whole and sent again by the SDK; "small" streams, and is sent again with a
    // fresh origin body; "large" goes in parts.
    let tiny = bytes(100_000);
    let small = bytes(400_000);
    let large = bytes(11 * MIB);
    h.server.add("tiny", tiny.clone(), &[]);
    h.server.add("small", small.clone(), &[]);
    h.server.add("large", large.clone(), &[]);
    let scenarios: Vec<(&str, Vec<Rule>, &str, &Vec<u8>)> = vec![
        (
            "503 SlowDown on a PutObject from memory",
            vec![rule(Op::PutObject, 1, 2, Fault::Status(503, "SlowDown"))],
            "tiny",
            &tiny,
        ),
        (
            "reset on a PutObject from memory",
            vec![rule(Op::PutObject, 1, 1, Fault::Drop)],
            "tiny",
            &tiny,
        ),
        (
            "503 SlowDown on PutObject",
            vec![rule(Op::PutObject, 1, 2, Fault::Status(503, "SlowDown"))],
            "small",
            &small,
        ),
        (
            "500 on PutObject",
            vec![rule(
                Op::PutObject,
                1,
                1,
                Fault::Status(500, "InternalError"),
            )],
            "small",
            &small,
        ),
        (
            "connection reset on PutObject",
            vec![rule(Op::PutObject, 1, 1, Fault::Drop)],
            "small",
            &small,
        ),
        (
            "latency on every request",
            vec![
                rule(
                    Op::HeadObject,
                    1,
                    usize::MAX,
                    Fault::Delay(Duration::from_millis(150)),
                ),
                rule(
                    Op::UploadPart,
                    1,
                    usize::MAX,
                    Fault::Delay(Duration::from_millis(150)),
                ),
            ],
            "large",
            &large,
        ),
        (
            "503 on one part",
            vec![rule(Op::UploadPart, 2, 2, Fault::Status(503, "SlowDown"))],
            "large",
            &large,
        ),
        (
            "reset on one part",
            vec![rule(Op::UploadPart, 1, 1, Fault::Drop)],
            "large",
            &large,
        ),
        (
            "500 on CompleteMultipartUpload",
            vec![rule(
                Op::CompleteMultipartUpload,
                1,
                1,
                Fault::Status(500, "InternalError"),
            )],
            "large",
            &large,
        ),
    ];
    for (i, (name, rules, file, body)) in scenarios.into_iter().enumerate() {
        proxy.set_rules(rules);
        let key = h.key(&format!("transient-{i}"));
        let outcome = h.run(&h.message(&format!("/files/{file}"), &key)).await;
        assert!(
            matches!(outcome, Ok(CopyOutcome::Copied { .. })),
            "{name}: {outcome:?}"
        );
        assert!(proxy.injected() > 0, "{name}: no fault was injected");
        assert_invariants(&h, &direct, &key, body, true).await;
    }
}

#[tokio::test]
async fn s3_lasting_faults_fail_retryably_and_leave_nothing() {
    let (h, proxy, direct) = behind_proxy(&[]).await;
    let small = bytes(300_000);
    let large = bytes(11 * MIB);
    h.server.add("small", small.clone(), &[]);
    h.server.add("large", large.clone(), &[]);
    let scenarios: Vec<(&str, Rule, &str, &Vec<u8>)> = vec![
        (
            "SlowDown on every PutObject",
            rule(Op::PutObject, 1, usize::MAX, Fault::Status(503, "SlowDown")),
            "small",
            &small,
        ),
        (
            "500 on every attempt of part 2",
            rule(
                Op::UploadPart,
                2,
                usize::MAX,
                Fault::Status(500, "InternalError"),
            ),
            "large",
            &large,
        ),
        (
            "resets on every CompleteMultipartUpload",
            rule(Op::CompleteMultipartUpload, 1, usize::MAX, Fault::Drop),
            "large",
            &large,
        ),
        (
            "409 on CompleteMultipartUpload",
            rule(
                Op::CompleteMultipartUpload,
                1,
                usize::MAX,
                Fault::Status(409, "ConditionalRequestConflict"),
            ),
            "large",
            &large,
        ),
    ];
    for (i, (name, lasting, file, body)) in scenarios.into_iter().enumerate() {
        proxy.set_rules(vec![lasting]);
        let key = h.key(&format!("lasting-{i}"));
        let message = h.message(&format!("/files/{file}"), &key);
        let err = h.run(&message).await.unwrap_err();
        assert!(err.is_retryable(), "{name}: {err}");
        assert_invariants(&h, &direct, &key, body, false).await;
        // The next delivery, once S3 recovers, completes the copy.
        proxy.set_rules(vec![]);
        let outcome = h.run(&message).await.unwrap();
        assert!(
            matches!(outcome, CopyOutcome::Copied { .. }),
            "{name}: {outcome:?}"
        );
        assert_invariants(&h, &direct, &key, body, true).await;
    }
}

#[tokio::test]
async fn a_copy_cut_by_the_deadline_completes_on_the_next_attempt() {
    // Both ways a 12 MiB body of known length goes in: parts, or one streamed PutObject.
    for (single_put_max, parts) in [("1048576", 3), ("67108864", 1)] {
        let h = Harness::start(&[
            ("ORIGIN_IDLE_TIMEOUT", "10s"),
            ("SINGLE_PUT_MAX", single_put_max),
        ])
        .await;
        let body = bytes(12 * MIB);
        h.server.add("long", body.clone(), &[]);
        let key = h.key("long");
        let cut = h
            .run_until(
                &h.message("/stall/3000/long", &key),
                Instant::now() + Duration::from_millis(1000),
            )
            .await
            .unwrap_err();
        assert!(matches!(cut, BackfillError::Deadline), "{cut}");
        assert!(h.object(&key).await.is_none(), "nothing partial is visible");
        assert_eq!(h.open_uploads().await, 0, "the abandoned upload is aborted");
        let outcome = h.run(&h.message("/files/long", &key)).await.unwrap();
        assert_eq!(
            outcome,
            CopyOutcome::Copied {
                bytes: body.len() as u64,
                parts
            }
        );
        assert!(h.object(&key).await.unwrap() == body);
    }
}

/// How late after its deadline a cut call may return, on a busy machine.
const TOLERANCE: Duration = Duration::from_millis(400);

/// Runs `message` until `deadline`, failing the test if it outlives it by far.
async fn run_bounded(
    h: &Harness,
    message: &str,
    deadline: Instant,
) -> Result<CopyOutcome, BackfillError> {
    tokio::time::timeout_at(
        deadline + Duration::from_secs(10),
        h.run_until(message, deadline),
    )
    .await
    .expect("the copy hangs past its deadline")
}

#[tokio::test]
async fn every_s3_call_held_by_s3_ends_by_the_deadline() {
    let (h, proxy, direct) = behind_proxy(&[]).await;
    // "tiny" is read whole, "small" streams, "large" goes in parts.
    let tiny = bytes(100_000);
    let small = bytes(400_000);
    let large = bytes(11 * MIB);
    h.server.add("tiny", tiny.clone(), &[]);
    h.server.add("small", small.clone(), &[]);
    h.server.add("large", large.clone(), &[]);
    let scenarios: [(Op, &str, &Vec<u8>); 6] = [
        (Op::HeadObject, "tiny", &tiny),
        (Op::PutObject, "tiny", &tiny),
        (Op::PutObject, "small", &small),
        (Op::CreateMultipartUpload, "large", &large),
        (Op::UploadPart, "large", &large),
        (Op::CompleteMultipartUpload, "large", &large),
    ];
    for (i, (op, file, body)) in scenarios.into_iter().enumerate() {
        proxy.set_rules(vec![Rule::always(op, Fault::Hold)]);
        let key = h.key(&format!("held-{i}"));
        let deadline = Instant::now() + Duration::from_millis(1000);
        let err = run_bounded(&h, &h.message(&format!("/files/{file}"), &key), deadline)
            .await
            .unwrap_err();
        let late = Instant::now().saturating_duration_since(deadline);
        assert!(
            matches!(err, BackfillError::Deadline),
            "{op:?} {file}: {err}"
        );
        assert!(err.is_retryable());
        assert!(
            late < TOLERANCE,
            "{op:?} {file}: {late:?} after the deadline"
        );
        assert!(proxy.injected() > 0, "{op:?} {file}: nothing was held");
        assert_invariants(&h, &direct, &key, body, false).await;
    }
}

#[tokio::test]
async fn an_abort_after_the_deadline_has_a_bounded_time_of_its_own() {
    let (h, proxy, direct) = behind_proxy(&[("DEADLINE_MARGIN", "1s")]).await;
    h.server.add("large", bytes(11 * MIB), &[]);
    proxy.set_rules(vec![
        Rule::always(Op::UploadPart, Fault::Hold),
        Rule::always(Op::AbortMultipartUpload, Fault::Hold),
    ]);
    let key = h.key("abort-held");
    let deadline = Instant::now() + Duration::from_millis(1000);
    let err = run_bounded(&h, &h.message("/files/large", &key), deadline)
        .await
        .unwrap_err();
    let late = Instant::now().saturating_duration_since(deadline);
    assert!(matches!(err, BackfillError::Deadline), "{err}");
    // Half the margin for the abort, the rest for the batch response.
    let abort_time = Duration::from_millis(500);
    assert!(
        late >= abort_time - Duration::from_millis(50) && late < abort_time + TOLERANCE,
        "{late:?} after the deadline"
    );
    assert_eq!(
        proxy.count(Op::AbortMultipartUpload),
        1,
        "the abort was tried"
    );
    // Left to the lifecycle rule; tidied here.
    let uploads = direct
        .list_multipart_uploads()
        .bucket(&h.bucket)
        .prefix(&h.prefix)
        .send()
        .await
        .unwrap();
    assert_eq!(uploads.uploads().len(), 1);
    for upload in uploads.uploads() {
        direct
            .abort_multipart_upload()
            .bucket(&h.bucket)
            .key(upload.key().unwrap())
            .upload_id(upload.upload_id().unwrap())
            .send()
            .await
            .unwrap();
    }
    assert_invariants(&h, &direct, &key, &[], false).await;
}

#[tokio::test]
async fn duplicate_deliveries_copy_once() {
    let h = Harness::start(&[]).await;
    let body = bytes(7 * MIB);
    h.server.add("dup", body.clone(), &[]);
    let key = h.key("dup");
    let message = h.message("/stall/400/dup", &key);
    // Both deliveries find the key absent and copy; the second's conditional complete comes after
    // the first's and must not overwrite it. (Staggered: moto's If-None-Match check is not atomic
    // with the write, as S3's is, so completes in the same instant could both pass it there.)
    let second = async {
        tokio::time::sleep(Duration::from_millis(200)).await;
        h.run(&message).await
    };
    let (first, second) = tokio::join!(h.run(&message), second);
    let outcomes = [first.unwrap(), second.unwrap()];
    assert_eq!(
        outcomes
            .iter()
            .filter(|o| matches!(o, CopyOutcome::Copied { .. }))
            .count(),
        1,
        "{outcomes:?}"
    );
    assert!(h.object(&key).await.unwrap() == body);
    assert_eq!(h.open_uploads().await, 0);
}

/// Resolves the test names: `metadata.test` to the instance metadata address only, `mixed.test` and
/// `localhost` to it and to the loopback where the test origin listens.
fn test_lookup() -> Lookup {
    Arc::new(|host: String| {
        Box::pin(async move {
            let metadata: SocketAddr = "169.254.169.254:0".parse().unwrap();
            let loopback: SocketAddr = "127.0.0.1:0".parse().unwrap();
            match host.as_str() {
                "metadata.test" => Ok(vec![metadata]),
                "mixed.test" | "localhost" => Ok(vec![metadata, loopback]),
                _ => Err(std::io::Error::other("unknown test name")),
            }
        })
    })
}

#[tokio::test]
async fn an_allowed_name_resolving_to_the_metadata_service_is_refused() {
    let h = Harness::start_full(&[], None, Some(test_lookup())).await;
    h.server.add("x.jpg", bytes(100), &[]);
    let port = h.server.addr.port();
    let err = h
        .run(&h.message_for("metadata.test", port, "/files/x.jpg", &h.key("x.jpg")))
        .await
        .unwrap_err();
    assert!(
        matches!(err, BackfillError::ForbiddenAddress { .. }),
        "{err}"
    );
    assert!(!err.is_retryable());
    assert!(h.server.requests().is_empty());
    // A name that resolves to the loopback (beside the metadata service) is refused: no entry
    // names the loopback as this host.
    let err = h
        .run(&h.message_for("mixed.test", port, "/files/x.jpg", &h.key("x.jpg")))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, BackfillError::ForbiddenAddress { address, .. } if address.contains("127.0.0.1")),
        "{err}"
    );
    assert!(h.server.requests().is_empty());
    // A name with a good address beside the forbidden one is fetched from the good one only
    // (`localhost` is on the allow-list, so its loopback address is good).
    let outcome = h
        .run(&h.message_for("localhost", port, "/files/x.jpg", &h.key("x.jpg")))
        .await
        .unwrap();
    assert_eq!(
        outcome,
        CopyOutcome::Copied {
            bytes: 100,
            parts: 1
        }
    );
}

/// A real queue with a DLQ (maxReceiveCount 2, short visibility) fed through the batch runner the
/// way the event source mapping does: the poison message ends in the DLQ, the rest is copied.
#[tokio::test]
async fn a_poison_message_reaches_the_dlq_and_the_rest_of_the_batch_succeeds() {
    let h = Harness::start(&[("RETRY_BASE", "1s"), ("RETRY_CAP", "1s")]).await;
    let sdk = shared::aws::load_config().await;
    let sqs = shared::aws::sqs_client(&sdk);
    let name = format!("faults-{}", fastrand::u32(..));
    let (dlq, dlq_arn) = create_queue(&sqs, &format!("{name}-dlq"), &[]).await;
    let (queue, _) = create_queue(
        &sqs,
        &name,
        &[
            (QueueAttributeName::VisibilityTimeout, "1".to_owned()),
            (
                QueueAttributeName::RedrivePolicy,
                format!(r#"{{"deadLetterTargetArn":"{dlq_arn}","maxReceiveCount":"2"}}"#),
            ),
        ],
    )
    .await;
    let arn = dlq_arn.trim_end_matches("-dlq").to_owned();
    for i in 0..4 {
        h.server.add(&format!("good-{i}"), bytes(1000 + i), &[]);
        sqs.send_message()
            .queue_url(&queue)
            .message_body(h.message(&format!("/files/good-{i}"), &h.key(&format!("good-{i}"))))
            .send()
            .await
            .unwrap();
    }
    sqs.send_message()
        .queue_url(&queue)
        .message_body(h.message("/status/500", &h.key("poison")))
        .send()
        .await
        .unwrap();
    let runner = BatchRunner::new(4, shared::metrics::Metrics::new("Test")).with_visibility(
        VisibilityExtender::new(
            sqs.clone(),
            Backoff::new(Duration::from_secs(1), Duration::from_secs(1)),
        ),
    );
    let started = Instant::now();
    let mut dead = 0;
    while started.elapsed() < Duration::from_secs(40) {
        let received = sqs
            .receive_message()
            .queue_url(&queue)
            .max_number_of_messages(10)
            .wait_time_seconds(1)
            .message_system_attribute_names(MessageSystemAttributeName::All)
            .send()
            .await
            .unwrap();
        let mut event = SqsEvent::default();
        for message in received.messages() {
            let mut record = SqsMessage::default();
            record.message_id = message.message_id.clone();
            record.receipt_handle = message.receipt_handle.clone();
            record.body = message.body.clone();
            record.event_source_arn = Some(arn.clone());
            for (k, v) in message.attributes().into_iter().flatten() {
                record.attributes.insert(k.as_str().to_owned(), v.clone());
            }
            event.records.push(record);
        }
        if !event.records.is_empty() {
            let records = event.records.clone();
            let deadline = Instant::now() + Duration::from_secs(30);
            let app = &h.app;
            let response = runner
                .run(event, |record| async move {
                    app.handle_record(record, deadline).await.map(drop)
                })
                .await
                .unwrap();
            let failed: Vec<&str> = response
                .batch_item_failures
                .iter()
                .map(|f| f.item_identifier.as_str())
                .collect();
            for record in records
                .iter()
                .filter(|r| !failed.contains(&r.message_id.as_deref().unwrap()))
            {
                sqs.delete_message()
                    .queue_url(&queue)
                    .receipt_handle(record.receipt_handle.as_deref().unwrap())
                    .send()
                    .await
                    .unwrap();
            }
        }
        dead = sqs
            .receive_message()
            .queue_url(&dlq)
            .visibility_timeout(0)
            .max_number_of_messages(10)
            .send()
            .await
            .unwrap()
            .messages()
            .len();
        if dead > 0 {
            break;
        }
    }
    assert_eq!(dead, 1, "the poison message is in the DLQ");
    for i in 0..4 {
        assert_eq!(
            h.object(&h.key(&format!("good-{i}"))).await.unwrap().len(),
            1000 + i as usize
        );
    }
    assert!(h.object(&h.key("poison")).await.is_none());
    sqs.delete_queue().queue_url(&queue).send().await.unwrap();
    sqs.delete_queue().queue_url(&dlq).send().await.unwrap();
}
