//! The recorder against a real stand-in: a request the stand-in accepts and S3 refuses is
//! recorded as sent and caught by the wire contract.

use aws_sdk_s3::config::RequestChecksumCalculation;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::ChecksumAlgorithm;
use test_support::wire::recorder::{Options, Recorder};

fn var(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("{name} is not set: run through scripts/test"))
}

#[tokio::test]
async fn the_algorithm_header_alone_passes_the_stand_in_and_is_caught() {
    // Straight to moto: under scripts/test, AWS_ENDPOINT_URL is the suite's own recorder, which
    // would report this request as the violation it is.
    let upstream =
        std::env::var("WIRE_UPSTREAM_AWS_ENDPOINT_URL").unwrap_or_else(|_| var("AWS_ENDPOINT_URL"));
    let recorder = Recorder::start(Options {
        upstream,
        keep: true,
        ..Options::default()
    })
    .await
    .unwrap();
    let sdk = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .endpoint_url(recorder.endpoint())
        .load()
        .await;
    // The setting the shared client has; naming the algorithm without a checksum is the
    // PutObject real S3 refused with 400 InvalidRequest.
    let config = aws_sdk_s3::config::Builder::from(&sdk)
        .force_path_style(true)
        .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
        .build();
    let s3 = aws_sdk_s3::Client::from_conf(config);
    let key = format!("wire-test/{}/refused-by-s3.bin", fastrand::u64(..));
    s3.put_object()
        .bucket(var("BUCKET"))
        .key(&key)
        .checksum_algorithm(ChecksumAlgorithm::Crc32C)
        .body(ByteStream::from(vec![7u8; 4096]))
        .send()
        .await
        .expect("the stand-in accepts what S3 refuses");
    let put = recorder
        .exchanges()
        .into_iter()
        .find(|e| e.operation == "PutObject")
        .expect("the PutObject was recorded");
    assert_eq!(put.status, 200);
    assert_eq!(put.header("x-amz-sdk-checksum-algorithm"), Some("CRC32C"));
    assert_eq!(put.header("x-amz-checksum-crc32c"), None);
    let rules: Vec<_> = recorder.violations().into_iter().map(|v| v.rule).collect();
    assert_eq!(rules, vec!["s3.checksum-announced"]);
    s3.delete_object()
        .bucket(var("BUCKET"))
        .key(&key)
        .send()
        .await
        .unwrap();
}
