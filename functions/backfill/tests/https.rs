//! The write paths over HTTPS, as the deployed function talks to S3: the SDK frames a streamed
//! body by the endpoint's scheme (signed aws-chunked over http, `STREAMING-UNSIGNED-PAYLOAD-
//! TRAILER` over https), so the framing S3 sees in production is only seen here. The strict S3
//! sits behind the wire recorder's TLS endpoint, whose test CA the client trusts; every request
//! is checked against the wire contract, and what the strict S3 stored is read back with its
//! checksum.

mod common;

use aws_sdk_s3::types::ChecksumMode;
use backfill::copy::CopyOutcome;
use common::{bytes, var, Harness, MIB};
use test_support::wire::recorder::{https_sdk_config, Options, Recorder};

#[tokio::test]
async fn writes_over_https_carry_their_crc32c_and_the_strict_s3_keeps_it() {
    let recorder = Recorder::start(Options {
        upstream: var("STRICT_S3_ENDPOINT"),
        tls: true,
        keep: true,
        ..Options::default()
    })
    .await
    .unwrap();
    let sdk = https_sdk_config(
        &recorder,
        &var("STRICT_S3_ACCESS_KEY"),
        &var("STRICT_S3_SECRET_KEY"),
    )
    .await;
    let h = Harness::start_with(&[], Some(shared::aws::s3_client(&sdk))).await;
    // In the harness, up to 256 KiB is written from memory, up to 1 MiB streamed, then multipart.
    let cases = [
        ("small.jpg", bytes(200_000), 1),
        ("streamed.mp4", bytes(900_000), 1),
        ("large.mp4", bytes(11 * MIB + 3), 3),
    ];
    for (name, body, _) in &cases {
        h.server.add(name, body.clone(), &[]);
    }
    for (name, body, parts) in &cases {
        let key = h.key(name);
        let outcome = h.run(&h.message(&format!("/files/{name}"), &key)).await;
        assert_eq!(
            outcome.unwrap(),
            CopyOutcome::Copied {
                bytes: body.len() as u64,
                parts: *parts
            },
            "{name}"
        );
        let stored =
            h.s3.get_object()
                .bucket(&h.bucket)
                .key(&key)
                .checksum_mode(ChecksumMode::Enabled)
                .send()
                .await
                .unwrap();
        let crc = stored.checksum_crc32_c().map(str::to_owned);
        let data = stored.body.collect().await.unwrap().into_bytes();
        assert!(data == body[..], "{name}: the stored bytes differ");
        let whole = shared::checksum::crc32c_base64(body);
        if *parts == 1 {
            assert_eq!(
                crc.as_deref(),
                Some(whole.as_str()),
                "{name}: the strict S3 keeps the CRC32C that was sent"
            );
        } else {
            // s3s-fs 0.14 keeps no full-object checksum for a multipart upload (S3 does, and
            // checks it against the parts): what can be asserted is that the complete request
            // carried the whole object's CRC32C.
            let path = format!("/{}/{key}", h.bucket);
            let completed = recorder
                .exchanges()
                .into_iter()
                .find(|e| e.operation == "CompleteMultipartUpload" && e.path == path)
                .expect("the complete request was recorded");
            assert_eq!(
                completed.header("x-amz-checksum-crc32c"),
                Some(whole.as_str())
            );
        }
    }

    let exchanges = recorder.exchanges();
    let streamed_key = format!("/{}/{}", h.bucket, h.key("streamed.mp4"));
    let streamed = exchanges
        .iter()
        .find(|e| e.operation == "PutObject" && e.path == streamed_key)
        .expect("the streamed PutObject was recorded");
    assert_eq!(streamed.scheme, "https");
    assert_eq!(
        streamed.header("x-amz-trailer"),
        Some("x-amz-checksum-crc32c")
    );
    assert_eq!(
        streamed.header("x-amz-content-sha256"),
        Some("STREAMING-UNSIGNED-PAYLOAD-TRAILER")
    );
    assert_eq!(streamed.header("content-encoding"), Some("aws-chunked"));
    assert_eq!(
        streamed.header("x-amz-decoded-content-length"),
        Some("900000")
    );
    assert_eq!(streamed.header("if-none-match"), Some("*"));
    let framing = streamed.body.chunked.as_ref().expect("an aws-chunked body");
    assert!(framing.finished && framing.error.is_none(), "{framing:?}");
    assert_eq!(
        framing.trailer("x-amz-checksum-crc32c"),
        Some(shared::checksum::crc32c_base64(&cases[1].1).as_str())
    );
    // The writes from memory carry their CRC32C as a header, and never the algorithm alone.
    for exchange in exchanges
        .iter()
        .filter(|e| matches!(e.operation.as_str(), "PutObject" | "UploadPart"))
    {
        assert!(
            exchange.header("x-amz-checksum-crc32c").is_some()
                || exchange.header("x-amz-trailer").is_some(),
            "{}",
            exchange.describe()
        );
    }
    assert!(exchanges
        .iter()
        .any(|e| e.operation == "CompleteMultipartUpload"
            && e.header("x-amz-checksum-type") == Some("FULL_OBJECT")));
    assert_eq!(recorder.violations(), Vec::new());
}
