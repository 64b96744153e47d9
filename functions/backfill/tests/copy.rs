//! The backfill against a real origin server and the local S3 (moto): every outcome the issue
//! names, with the invariants checked (object whole or absent, no upload left open).

mod common;

use std::time::Duration;

use aws_lambda_events::event::sqs::{SqsEvent, SqsMessage};
use aws_sdk_s3::primitives::ByteStream;
use backfill::copy::CopyOutcome;
use backfill::error::BackfillError;
use common::{bytes, Harness, MIB};
use lambda_runtime::{Context, LambdaEvent};
use shared::Failure;
use tokio::time::Instant;

#[tokio::test]
async fn small_object_is_copied_with_what_a_cdn_needs() {
    let h = Harness::start(&[]).await;
    let body = bytes(1000);
    h.server.add(
        "a b.jpg",
        body.clone(),
        &[
            ("content-type", "image/jpeg"),
            ("cache-control", "public, max-age=86400"),
            ("content-disposition", "inline"),
            ("content-language", "zh-CN"),
            ("etag", "\"v1\""),
            ("last-modified", "Wed, 21 Oct 2015 07:28:00 GMT"),
            ("set-cookie", "secret=1"),
        ],
    );
    let key = h.key("a b.jpg");
    let outcome = h.run(&h.message("/files/a%20b.jpg", &key)).await.unwrap();
    assert_eq!(
        outcome,
        CopyOutcome::Copied {
            bytes: 1000,
            parts: 1
        }
    );
    assert_eq!(h.object(&key).await.unwrap(), body);
    let head =
        h.s3.head_object()
            .bucket(&h.bucket)
            .key(&key)
            .send()
            .await
            .unwrap();
    assert_eq!(head.content_type(), Some("image/jpeg"));
    assert_eq!(head.cache_control(), Some("public, max-age=86400"));
    assert_eq!(head.content_disposition(), Some("inline"));
    assert_eq!(head.content_language(), Some("zh-CN"));
    let metadata = head.metadata().unwrap();
    assert_eq!(metadata["origin-etag"], "\"v1\"");
    assert_eq!(
        metadata["origin-last-modified"],
        "Wed, 21 Oct 2015 07:28:00 GMT"
    );
    assert!(!metadata.contains_key("set-cookie"));
}

#[tokio::test]
async fn large_object_goes_multipart_and_whole() {
    let h = Harness::start(&[]).await;
    let body = bytes(12 * MIB + 123);
    h.server
        .add("big.bin", body.clone(), &[("content-type", "video/mp4")]);
    let key = h.key("big.bin");
    let outcome = h.run(&h.message("/files/big.bin", &key)).await.unwrap();
    assert_eq!(
        outcome,
        CopyOutcome::Copied {
            bytes: body.len() as u64,
            parts: 3
        }
    );
    assert!(h.object(&key).await.unwrap() == body);
    assert_eq!(h.open_uploads().await, 0);
}

#[tokio::test]
async fn chunked_body_without_length() {
    let h = Harness::start(&[]).await;
    let big = bytes(11 * MIB);
    let small = bytes(300_000);
    h.server.add("big", big.clone(), &[]);
    h.server.add("small", small.clone(), &[]);
    h.server.add("empty", Vec::new(), &[]);
    let outcome = h
        .run(&h.message("/chunked/big", &h.key("big")))
        .await
        .unwrap();
    assert_eq!(
        outcome,
        CopyOutcome::Copied {
            bytes: big.len() as u64,
            parts: 3
        }
    );
    assert!(h.object(&h.key("big")).await.unwrap() == big);
    let outcome = h
        .run(&h.message("/chunked/small", &h.key("small")))
        .await
        .unwrap();
    assert_eq!(
        outcome,
        CopyOutcome::Copied {
            bytes: small.len() as u64,
            parts: 1
        }
    );
    assert!(h.object(&h.key("small")).await.unwrap() == small);
    let outcome = h
        .run(&h.message("/chunked/empty", &h.key("empty")))
        .await
        .unwrap();
    assert_eq!(outcome, CopyOutcome::Copied { bytes: 0, parts: 1 });
    assert_eq!(h.object(&h.key("empty")).await.unwrap(), Vec::<u8>::new());
    assert_eq!(h.open_uploads().await, 0);
}

#[tokio::test]
async fn zero_byte_object() {
    let h = Harness::start(&[]).await;
    h.server
        .add("zero", Vec::new(), &[("content-type", "text/plain")]);
    let outcome = h
        .run(&h.message("/files/zero", &h.key("zero")))
        .await
        .unwrap();
    assert_eq!(outcome, CopyOutcome::Copied { bytes: 0, parts: 1 });
    assert_eq!(h.object(&h.key("zero")).await.unwrap(), Vec::<u8>::new());
}

#[tokio::test]
async fn existing_object_is_never_touched() {
    let h = Harness::start(&[]).await;
    let key = h.key("existing.jpg");
    h.s3.put_object()
        .bucket(&h.bucket)
        .key(&key)
        .body(ByteStream::from_static(b"already here"))
        .send()
        .await
        .unwrap();
    h.server.add("existing.jpg", bytes(100), &[]);
    let outcome = h
        .run(&h.message("/files/existing.jpg", &key))
        .await
        .unwrap();
    assert_eq!(outcome, CopyOutcome::AlreadyPresent);
    assert_eq!(h.object(&key).await.unwrap(), b"already here");
    assert_eq!(
        h.server.hits("/files/existing.jpg"),
        0,
        "the origin is not even asked"
    );
}

#[tokio::test]
async fn twenty_concurrent_copies_of_one_key_end_with_one_whole_object() {
    for (name, size) in [("one-put", 600_000), ("multipart", 6 * MIB)] {
        let h = Harness::start(&[]).await;
        let body = bytes(size);
        h.server.add(name, body.clone(), &[]);
        let key = h.key(name);
        let message = h.message(&format!("/files/{name}"), &key);
        let outcomes = futures::future::join_all((0..20).map(|_| h.run(&message))).await;
        let mut copied = 0;
        for outcome in outcomes {
            match outcome.unwrap() {
                CopyOutcome::Copied { .. } => copied += 1,
                CopyOutcome::AlreadyPresent => {}
                other => panic!("unexpected {other:?}"),
            }
        }
        // On S3 exactly one conditional write wins. moto checks If-None-Match apart from the write,
        // so completes in the same instant may both pass there (the 412 path is tested,
        // deterministically, in faults.rs): what must hold everywhere is one whole object.
        assert!(copied >= 1, "{name}: someone copied it");
        assert!(h.object(&key).await.unwrap() == body, "{name}: whole");
        assert_eq!(h.open_uploads().await, 0, "{name}: no upload left open");
    }
}

#[tokio::test]
async fn not_at_origin_is_a_normal_outcome() {
    let h = Harness::start(&[]).await;
    let outcome = h
        .run(&h.message("/files/missing.jpg", &h.key("missing.jpg")))
        .await
        .unwrap();
    assert_eq!(outcome, CopyOutcome::NotAtOrigin(404));
    let outcome = h
        .run(&h.message("/status/410", &h.key("gone.jpg")))
        .await
        .unwrap();
    assert_eq!(outcome, CopyOutcome::NotAtOrigin(410));
    assert!(h.object(&h.key("missing.jpg")).await.is_none());
}

#[tokio::test]
async fn server_errors_are_retried_then_succeed() {
    let h = Harness::start(&[]).await;
    let body = bytes(2000);
    h.server.add("flaky.jpg", body.clone(), &[]);
    let message = h.message("/flaky/1/flaky.jpg", &h.key("flaky.jpg"));
    let err = h.run(&message).await.unwrap_err();
    assert!(err.is_retryable(), "{err}");
    assert!(
        matches!(err, BackfillError::OriginUnavailable { status: 503, .. }),
        "{err}"
    );
    let outcome = h.run(&message).await.unwrap();
    assert_eq!(
        outcome,
        CopyOutcome::Copied {
            bytes: 2000,
            parts: 1
        }
    );
    assert_eq!(h.object(&h.key("flaky.jpg")).await.unwrap(), body);
}

#[tokio::test]
async fn throttling_carries_retry_after() {
    let h = Harness::start(&[]).await;
    let err = h
        .run(&h.message("/status/429", &h.key("t")))
        .await
        .unwrap_err();
    assert!(err.is_retryable());
    assert_eq!(err.retry_after(), Some(Duration::from_secs(7)));
    let err = h
        .run(&h.message("/status/403", &h.key("t")))
        .await
        .unwrap_err();
    assert!(
        !err.is_retryable(),
        "a 403 from the origin does not change by retrying"
    );
}

#[tokio::test]
async fn truncated_or_reset_bodies_leave_nothing() {
    let h = Harness::start(&[]).await;
    h.server.add("small", bytes(800_000), &[]);
    h.server.add("large", bytes(12 * MIB), &[]);
    for route in ["truncated", "reset"] {
        for name in ["small", "large"] {
            let key = h.key(&format!("{route}-{name}"));
            let err = h
                .run(&h.message(&format!("/{route}/{name}"), &key))
                .await
                .unwrap_err();
            assert!(err.is_retryable(), "{route}/{name}: {err}");
            assert!(
                matches!(err, BackfillError::Truncated { .. }),
                "{route}/{name}: {err}"
            );
            assert!(
                h.object(&key).await.is_none(),
                "{route}/{name}: nothing visible"
            );
        }
    }
    assert_eq!(h.open_uploads().await, 0);
}

#[tokio::test]
async fn redirects_stay_on_the_origin() {
    let h = Harness::start(&[]).await;
    let body = bytes(500);
    h.server.add("r.jpg", body.clone(), &[]);
    let err = h
        .run(&h.message("/redirect-away/r.jpg", &h.key("away")))
        .await
        .unwrap_err();
    assert!(
        matches!(err, BackfillError::RedirectRefused { status: 302 }),
        "{err}"
    );
    assert!(!err.is_retryable());
    assert_eq!(
        h.server.hits("/files/r.jpg"),
        0,
        "the other host was never asked"
    );
    let err = h
        .run(&h.message("/redirect-loop", &h.key("loop")))
        .await
        .unwrap_err();
    assert!(
        matches!(err, BackfillError::RedirectRefused { .. }),
        "{err}"
    );
    let outcome = h
        .run(&h.message("/redirect-here/r.jpg", &h.key("here")))
        .await
        .unwrap();
    assert_eq!(
        outcome,
        CopyOutcome::Copied {
            bytes: 500,
            parts: 1
        }
    );
    assert_eq!(h.object(&h.key("here")).await.unwrap(), body);
}

#[tokio::test]
async fn origins_outside_the_allow_list_are_never_fetched() {
    let h = Harness::start(&[]).await;
    h.server.add("x.jpg", bytes(10), &[]);
    let port = h.server.addr.port();
    for (host, port) in [
        ("localhost", port + 1),
        ("127.0.0.1", port + 1),
        ("2130706433", port + 1),
        ("169.254.169.254", 80),
    ] {
        let err = h
            .run(&h.message_for(host, port, "/files/x.jpg", &h.key("x.jpg")))
            .await
            .unwrap_err();
        // The metadata service's address is refused before the allow-list is looked at.
        assert!(
            matches!(
                err,
                BackfillError::OriginNotAllowed(_) | BackfillError::ForbiddenAddress { .. }
            ),
            "{host}:{port}: {err}"
        );
        assert!(!err.is_retryable());
    }
    assert!(h.server.requests().is_empty());
}

#[tokio::test]
async fn invalid_messages_are_permanent_with_a_reason() {
    let h = Harness::start(&[]).await;
    let good: serde_json::Value =
        serde_json::from_str(&h.message("/files/x", &h.key("x"))).unwrap();
    let mut v2 = good.clone();
    v2["version"] = 2.into();
    let mut no_key = good.clone();
    no_key.as_object_mut().unwrap().remove("key");
    let mut traversal = good.clone();
    traversal["key"] = "a/../../etc/passwd".into();
    let mut other_bucket = good.clone();
    other_bucket["bucket"] = "someone-elses-bucket".into();
    for (body, reason) in [
        ("not json".to_owned(), "invalid_message"),
        (v2.to_string(), "invalid_message"),
        (no_key.to_string(), "invalid_message"),
        (traversal.to_string(), "invalid_message"),
        (other_bucket.to_string(), "wrong_bucket"),
    ] {
        let err = h.run(&body).await.unwrap_err();
        assert!(!err.is_retryable(), "{body}: {err}");
        assert_eq!(err.reason(), reason, "{body}: {err}");
    }
    assert!(h.server.requests().is_empty());
}

#[tokio::test]
async fn configured_origin_headers_are_sent() {
    let h = Harness::start(&[("ORIGIN_HEADERS", r#"{"X-Origin-Secret": "s3cr3t"}"#)]).await;
    h.server.add("s.jpg", bytes(10), &[]);
    h.run(&h.message("/files/s.jpg", &h.key("s.jpg")))
        .await
        .unwrap();
    let requests = h.server.requests();
    let (_, headers) = &requests[0];
    assert!(headers.contains(&("x-origin-secret".to_owned(), "s3cr3t".to_owned())));
    assert!(
        !headers.iter().any(|(name, _)| name == "accept-encoding"),
        "the identity body is stored"
    );
}

#[tokio::test]
async fn slow_origins_time_out_and_leave_nothing() {
    let h = Harness::start(&[
        ("ORIGIN_FIRST_BYTE_TIMEOUT", "300ms"),
        ("ORIGIN_IDLE_TIMEOUT", "300ms"),
    ])
    .await;
    h.server.add("slow", bytes(6 * MIB), &[]);
    let err = h
        .run(&h.message("/slow-first-byte/1000/slow", &h.key("first")))
        .await
        .unwrap_err();
    assert!(matches!(err, BackfillError::FirstByteTimeout(_)), "{err}");
    let err = h
        .run(&h.message("/stall/1000/slow", &h.key("idle")))
        .await
        .unwrap_err();
    assert!(matches!(err, BackfillError::IdleTimeout(_)), "{err}");
    assert!(err.is_retryable());
    assert!(h.object(&h.key("idle")).await.is_none());
    let outcome = h
        .run(&h.message("/stall/100/slow", &h.key("brief")))
        .await
        .unwrap();
    assert!(
        matches!(outcome, CopyOutcome::Copied { parts: 2, .. }),
        "{outcome:?}"
    );
    assert_eq!(h.open_uploads().await, 0);
}

#[tokio::test]
async fn objects_over_the_limit_are_refused() {
    let h = Harness::start(&[("MAX_OBJECT_SIZE", "3000000")]).await;
    h.server.add("huge", bytes(4_000_000), &[]);
    for route in ["files", "chunked"] {
        let key = h.key(route);
        let err = h
            .run(&h.message(&format!("/{route}/huge"), &key))
            .await
            .unwrap_err();
        assert!(
            matches!(
                err,
                BackfillError::TooLarge {
                    limit: 3_000_000,
                    ..
                }
            ),
            "{route}: {err}"
        );
        assert!(!err.is_retryable());
        assert!(h.object(&key).await.is_none());
    }
    assert_eq!(h.open_uploads().await, 0);
}

#[tokio::test]
async fn deadline_abandons_the_copy_and_aborts_the_upload() {
    let h = Harness::start(&[("ORIGIN_IDLE_TIMEOUT", "10s")]).await;
    h.server.add("long", bytes(12 * MIB), &[]);
    let key = h.key("long");
    let deadline = Instant::now() + Duration::from_millis(1500);
    let err = h
        .run_until(&h.message("/stall/5000/long", &key), deadline)
        .await
        .unwrap_err();
    assert!(matches!(err, BackfillError::Deadline), "{err}");
    assert!(err.is_retryable());
    assert!(h.object(&key).await.is_none());
    assert_eq!(h.open_uploads().await, 0, "the abandoned upload is aborted");
}

#[tokio::test]
async fn breaker_fails_fast_after_repeated_origin_failures() {
    let h = Harness::start(&[("BREAKER_THRESHOLD", "2"), ("BREAKER_COOLDOWN", "1m")]).await;
    h.server.add("ok.jpg", bytes(10), &[]);
    for _ in 0..2 {
        let err = h
            .run(&h.message("/status/503", &h.key("down")))
            .await
            .unwrap_err();
        assert!(matches!(err, BackfillError::OriginUnavailable { .. }));
    }
    let err = h
        .run(&h.message("/files/ok.jpg", &h.key("ok.jpg")))
        .await
        .unwrap_err();
    assert!(matches!(err, BackfillError::CircuitOpen(_)), "{err}");
    // The time left until the breaker closes: at most the cooldown.
    let left = err.retry_after().unwrap();
    assert!(
        left <= Duration::from_secs(60) && left > Duration::from_secs(55),
        "{left:?}"
    );
    assert_eq!(h.server.hits("/files/ok.jpg"), 0);
}

#[tokio::test]
async fn a_batch_reports_only_its_retryable_failures() {
    let h = Harness::start(&[]).await;
    h.server.add("ok.jpg", bytes(10), &[]);
    let bodies = [
        h.message("/files/ok.jpg", &h.key("ok.jpg")),
        h.message("/files/missing.jpg", &h.key("missing.jpg")),
        h.message("/status/503", &h.key("busy.jpg")),
        "garbage".to_owned(),
    ];
    let mut event = SqsEvent::default();
    event.records = bodies
        .iter()
        .enumerate()
        .map(|(i, body)| {
            let mut record = SqsMessage::default();
            record.message_id = Some(format!("m{i}"));
            record.body = Some(body.clone());
            record.event_source_arn = Some("arn:aws:sqs:us-east-1:123456789012:backfill".into());
            record
        })
        .collect();
    let mut context = Context::default();
    context.deadline = (std::time::SystemTime::now() + Duration::from_secs(60))
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let runner = shared::batch::BatchRunner::new(4, shared::metrics::Metrics::new("Test"));
    let response =
        backfill::handler::handle_batch(&h.app, &runner, LambdaEvent::new(event, context))
            .await
            .unwrap();
    let failed: Vec<_> = response
        .batch_item_failures
        .iter()
        .map(|f| f.item_identifier.as_str())
        .collect();
    assert_eq!(failed, ["m2"]);
    assert!(h.object(&h.key("ok.jpg")).await.is_some());
}

/// A caller's upload or a thumbnail is never written by the backfill, whatever the domestic origin
/// has there: such a message is dropped as permanent (`refused_prefix`) before the origin or S3
/// is asked, and the batch reports no failure for it.
#[tokio::test]
async fn keys_under_a_refused_prefix_are_dropped_before_the_origin_is_asked() {
    let h = Harness::start(&[("REFUSED_PREFIXES", "uploads/,thumbnails/")]).await;
    h.server.add("x.jpg", bytes(10), &[]);
    let upload = format!("uploads/{}", h.key("x.jpg"));
    let thumbnail = format!("thumbnails/{}", h.key("x.jpg"));
    let kept = h.key("x.jpg");
    let bodies = [
        h.message("/files/x.jpg", &upload),
        h.message("/files/x.jpg", &thumbnail),
        h.message("/files/x.jpg", &kept),
    ];
    for body in &bodies[..2] {
        let err = h.run(body).await.unwrap_err();
        assert!(matches!(err, BackfillError::RefusedPrefix { .. }), "{err}");
        assert!(!err.is_retryable());
        assert_eq!(err.reason(), "refused_prefix");
    }
    assert!(h.server.requests().is_empty());

    let mut event = SqsEvent::default();
    event.records = bodies
        .iter()
        .enumerate()
        .map(|(i, body)| {
            let mut record = SqsMessage::default();
            record.message_id = Some(format!("m{i}"));
            record.body = Some(body.clone());
            record.event_source_arn = Some("arn:aws:sqs:us-east-1:123456789012:backfill".into());
            record
        })
        .collect();
    let mut context = Context::default();
    context.deadline = (std::time::SystemTime::now() + Duration::from_secs(60))
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let (metrics, captured) = shared::metrics::Metrics::new("Test").capturing();
    let runner = shared::batch::BatchRunner::new(4, metrics);
    let response =
        backfill::handler::handle_batch(&h.app, &runner, LambdaEvent::new(event, context))
            .await
            .unwrap();
    assert!(
        response.batch_item_failures.is_empty(),
        "a refused key is not retried"
    );
    let refused: f64 = captured
        .documents()
        .iter()
        .filter(|doc| doc["Outcome"] == "permanent" && doc["Reason"] == "refused_prefix")
        .map(|doc| doc["Records"].as_f64().unwrap())
        .sum();
    assert_eq!(refused, 2.0);
    // Only the allowed key reached the origin, and only it is in the bucket.
    assert_eq!(h.server.requests().len(), 1);
    assert!(h.object(&kept).await.is_some());
    assert!(h.object(&upload).await.is_none());
    assert!(h.object(&thumbnail).await.is_none());
}
