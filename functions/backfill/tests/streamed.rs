//! Objects of a known length above a part, up to `SINGLE_PUT_MAX`, go into S3 in one PutObject
//! streamed from the origin with a trailing CRC32C: whole and byte-identical, or nothing at all.
//! Against moto, and through the fault proxy for what S3 does wrong.

mod common;

use aws_sdk_s3::types::ChecksumMode;
use backfill::copy::CopyOutcome;
use backfill::error::BackfillError;
use backfill::store::{ObjectStore, S3Store, Target, Written};
use common::{a_minute, behind_proxy, bytes, object_in, Harness, MIB};
use futures::StreamExt;
use shared::Failure;
use test_support::fault_proxy::{Fault, FaultProxy, Op, Rule};

/// Streams everything from a part (5 MiB) up to 64 MiB.
const STREAMING: &[(&str, &str)] = &[("SINGLE_PUT_MAX", "67108864")];

async fn streaming() -> Harness {
    Harness::start(STREAMING).await
}

/// A streaming harness whose S3 requests go through a fault proxy in front of moto.
async fn streaming_behind_proxy() -> (Harness, FaultProxy) {
    streaming_behind_proxy_with(&[]).await
}

async fn streaming_behind_proxy_with(extra: &[(&str, &str)]) -> (Harness, FaultProxy) {
    let (h, proxy, _direct) = behind_proxy(&[STREAMING, extra].concat()).await;
    (h, proxy)
}

/// Reads through a client that bypasses any proxy.
async fn stored(h: &Harness, key: &str) -> Option<Vec<u8>> {
    let direct = shared::aws::s3_client(&shared::aws::load_config().await);
    object_in(&direct, &h.bucket, key).await
}

#[tokio::test]
async fn a_large_object_of_known_length_is_one_streamed_put_with_its_checksum() {
    let h = streaming().await;
    let body = bytes(12 * MIB + 3);
    h.server.add(
        "film.mp4",
        body.clone(),
        &[
            ("content-type", "video/mp4"),
            ("cache-control", "public, max-age=600"),
            ("etag", "\"f1\""),
        ],
    );
    let key = h.key("film.mp4");
    let outcome = h.run(&h.message("/files/film.mp4", &key)).await.unwrap();
    assert_eq!(
        outcome,
        CopyOutcome::Copied {
            bytes: body.len() as u64,
            parts: 1
        }
    );
    assert!(h.object(&key).await.unwrap() == body, "stored bytes differ");
    let head =
        h.s3.head_object()
            .bucket(&h.bucket)
            .key(&key)
            .checksum_mode(ChecksumMode::Enabled)
            .send()
            .await
            .unwrap();
    assert_eq!(head.content_type(), Some("video/mp4"));
    assert_eq!(head.cache_control(), Some("public, max-age=600"));
    assert_eq!(head.metadata().unwrap()["origin-etag"], "\"f1\"");
    assert_eq!(
        head.checksum_crc32_c(),
        Some(backfill::store::crc32c_header(crc32c::crc32c(&body)).as_str()),
        "the full-object CRC32C is kept"
    );
    assert_eq!(h.open_uploads().await, 0, "no multipart upload was used");
}

#[tokio::test]
async fn a_streamed_body_cut_short_leaves_nothing() {
    let h = streaming().await;
    h.server.add("large", bytes(12 * MIB), &[]);
    for route in ["truncated", "reset"] {
        let key = h.key(route);
        let err = h
            .run(&h.message(&format!("/{route}/large"), &key))
            .await
            .unwrap_err();
        assert!(
            matches!(err, BackfillError::Truncated { expected, .. } if expected == 12 * MIB as u64),
            "{route}: {err}"
        );
        assert!(err.is_retryable());
        assert!(h.object(&key).await.is_none(), "{route}: nothing visible");
    }
    assert_eq!(h.open_uploads().await, 0);
}

#[tokio::test]
async fn a_stalled_streamed_body_times_out_and_leaves_nothing() {
    let h = Harness::start(&[
        ("SINGLE_PUT_MAX", "67108864"),
        ("ORIGIN_IDLE_TIMEOUT", "300ms"),
    ])
    .await;
    h.server.add("slow", bytes(6 * MIB), &[]);
    let key = h.key("idle");
    // The pause starts once the origin's first half is in the socket buffers, which a loaded
    // machine may take seconds to drain into S3: a pause far past the timeout keeps the wait for
    // the origin longer than 300 ms however long the drain (the error ends the test, not the pause).
    let err = h
        .run(&h.message("/stall/20000/slow", &key))
        .await
        .unwrap_err();
    assert!(matches!(err, BackfillError::IdleTimeout(_)), "{err}");
    assert!(h.object(&key).await.is_none());
    let key = h.key("brief");
    let outcome = h.run(&h.message("/stall/100/slow", &key)).await.unwrap();
    assert!(
        matches!(outcome, CopyOutcome::Copied { parts: 1, .. }),
        "{outcome:?}"
    );
}

/// The SDK's upload stall protection (5 s grace) would fail a PutObject whose body waits for the
/// origin; the origin's idle timeout alone decides how long a pause may be.
#[tokio::test]
async fn origin_pauses_shorter_than_the_idle_timeout_never_fail_a_streamed_put() {
    let (h, proxy) = streaming_behind_proxy_with(&[("ORIGIN_IDLE_TIMEOUT", "15s")]).await;
    let body = bytes(MIB);
    h.server.add("paused", body.clone(), &[]);
    proxy.set_rules(vec![]);
    let key = h.key("paused");
    let outcome = h
        .run(&h.message("/stall/6000,12000/paused", &key))
        .await
        .unwrap();
    assert_eq!(
        outcome,
        CopyOutcome::Copied {
            bytes: body.len() as u64,
            parts: 1
        }
    );
    assert_eq!(proxy.count(Op::PutObject), 1, "one attempt");
    assert_eq!(
        h.server.hits("/stall/6000,12000/paused"),
        1,
        "one origin GET"
    );
    assert!(
        stored(&h, &key).await.unwrap() == body,
        "the object is whole"
    );
}

#[tokio::test]
async fn an_origin_pause_longer_than_the_idle_timeout_fails_a_streamed_put() {
    let (h, proxy) = streaming_behind_proxy_with(&[("ORIGIN_IDLE_TIMEOUT", "2s")]).await;
    h.server.add("paused", bytes(MIB), &[]);
    proxy.set_rules(vec![]);
    let key = h.key("paused");
    let err = h
        .run(&h.message("/stall/3000/paused", &key))
        .await
        .unwrap_err();
    assert_eq!(err.reason(), "origin_idle_timeout", "{err}");
    assert_eq!(h.server.hits("/stall/3000/paused"), 1, "not fetched again");
    assert!(stored(&h, &key).await.is_none());
}

#[tokio::test]
async fn a_streamed_put_never_overwrites() {
    let h = streaming().await;
    let key = h.key("taken");
    h.s3.put_object()
        .bucket(&h.bucket)
        .key(&key)
        .body(b"already here".to_vec().into())
        .send()
        .await
        .unwrap();
    // Straight to the store (no HEAD first): the conditional write itself must refuse.
    let store = S3Store::new(h.s3.clone());
    let target = Target {
        bucket: h.bucket.clone(),
        key: key.clone(),
        attributes: Default::default(),
        condition: Default::default(),
    };
    let body = bytes(6 * MIB);
    let stream = futures::stream::iter(
        body.chunks(64 * 1024)
            .map(|chunk| Ok(bytes::Bytes::copy_from_slice(chunk)))
            .collect::<Vec<_>>(),
    )
    .boxed();
    let written = store
        .put_stream(&target, stream, body.len() as u64, a_minute())
        .await
        .unwrap();
    assert_eq!(written, Written::AlreadyExists);
    assert_eq!(h.object(&key).await.unwrap(), b"already here");
}

#[tokio::test]
async fn concurrent_streamed_copies_of_one_key_end_with_one_whole_object() {
    let h = streaming().await;
    let body = bytes(7 * MIB);
    h.server.add("same", body.clone(), &[]);
    let key = h.key("same");
    let message = h.message("/files/same", &key);
    let outcomes = futures::future::join_all((0..8).map(|_| h.run(&message))).await;
    let mut copied = 0;
    for outcome in outcomes {
        match outcome.unwrap() {
            CopyOutcome::Copied { .. } => copied += 1,
            CopyOutcome::AlreadyPresent => {}
            other => panic!("{other:?}"),
        }
    }
    assert!(copied >= 1);
    assert!(h.object(&key).await.unwrap() == body, "one whole object");
}

#[tokio::test]
async fn s3_faults_on_a_streamed_put_are_retried_with_a_fresh_origin_body() {
    let (h, proxy) = streaming_behind_proxy().await;
    let body = bytes(6 * MIB + 11);
    h.server.add("video", body.clone(), &[("etag", "\"v7\"")]);
    let transient = [
        ("503 SlowDown", Fault::Status(503, "SlowDown")),
        ("500", Fault::Status(500, "InternalError")),
        ("connection reset", Fault::Drop),
    ];
    for (i, (name, fault)) in transient.into_iter().enumerate() {
        proxy.set_rules(vec![Rule::first(Op::PutObject, 1, fault)]);
        let key = h.key(&format!("transient-{i}"));
        let before = h.server.hits("/files/video");
        let outcome = h.run(&h.message("/files/video", &key)).await;
        assert!(
            matches!(outcome, Ok(CopyOutcome::Copied { parts: 1, .. })),
            "{name}: {outcome:?}"
        );
        assert_eq!(proxy.injected(), 1, "{name}: the fault was injected");
        assert_eq!(
            h.server.hits("/files/video") - before,
            2,
            "{name}: the body was fetched again for the second attempt"
        );
        assert!(stored(&h, &key).await.unwrap() == body, "{name}");
    }

    // A fault that lasts: three attempts, then a retryable failure and nothing in S3; the next
    // delivery, once S3 recovers, copies.
    proxy.set_rules(vec![Rule::always(
        Op::PutObject,
        Fault::Status(503, "SlowDown"),
    )]);
    let key = h.key("lasting");
    let before = h.server.hits("/files/video");
    let err = h.run(&h.message("/files/video", &key)).await.unwrap_err();
    assert!(err.is_retryable(), "{err}");
    assert!(matches!(err, BackfillError::Aws(_)), "{err}");
    assert_eq!(h.server.hits("/files/video") - before, 3);
    assert!(stored(&h, &key).await.is_none());
    proxy.set_rules(vec![]);
    let outcome = h.run(&h.message("/files/video", &key)).await.unwrap();
    assert!(matches!(outcome, CopyOutcome::Copied { .. }), "{outcome:?}");
    assert!(stored(&h, &key).await.unwrap() == body);

    // 412 from the conditional write: another writer won, which is done.
    proxy.set_rules(vec![Rule::always(
        Op::PutObject,
        Fault::Status(412, "PreconditionFailed"),
    )]);
    let outcome = h
        .run(&h.message("/files/video", &h.key("raced")))
        .await
        .unwrap();
    assert_eq!(outcome, CopyOutcome::AlreadyPresent);

    // 409 (a concurrent conditional write in flight) is retried by the next delivery.
    proxy.set_rules(vec![Rule::always(
        Op::PutObject,
        Fault::Status(409, "ConditionalRequestConflict"),
    )]);
    let err = h
        .run(&h.message("/files/video", &h.key("conflict")))
        .await
        .unwrap_err();
    assert!(matches!(err, BackfillError::WriteConflict), "{err}");
    assert!(err.is_retryable());
}
