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
    // The client stops at the body's Content-Length: the body is whole, so the rules that read
    // it (checksum values, documents) see it.
    assert!(put.body.complete, "{:?}", put.body);
    assert_eq!(put.body.wire_length, 4096);
    let rules: Vec<_> = recorder.violations().into_iter().map(|v| v.rule).collect();
    assert_eq!(rules, vec!["s3.checksum-announced"]);
    s3.delete_object()
        .bucket(var("BUCKET"))
        .key(&key)
        .send()
        .await
        .unwrap();
}

/// The requests of a split copy and its lease, as the SDK sends them: recorded, each classified,
/// and none breaking a rule. Needs the local stack's copy lease table and part queue.
#[tokio::test]
async fn the_split_copy_requests_are_classified_and_pass() {
    use aws_sdk_dynamodb::types::{
        AttributeValue, ReturnValue, ReturnValuesOnConditionCheckFailure,
    };
    use aws_sdk_sqs::types::SendMessageBatchRequestEntry;

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
    let (bucket, table) = (var("BUCKET"), var("LEASE_TABLE"));
    let key = format!("wire-test/{}/split.bin", fastrand::u64(..));

    // Take the lease, record a part done, release it.
    let dynamodb = aws_sdk_dynamodb::Client::new(&sdk);
    let pk = AttributeValue::S(format!("{bucket}/{key}"));
    dynamodb
        .update_item()
        .table_name(&table)
        .key("pk", pk.clone())
        .update_expression("SET generation = if_not_exists(generation, :zero) + :one, holder = :me, expires_at = :until")
        .condition_expression("attribute_not_exists(pk) OR expires_at < :now")
        .expression_attribute_values(":zero", AttributeValue::N("0".into()))
        .expression_attribute_values(":one", AttributeValue::N("1".into()))
        .expression_attribute_values(":me", AttributeValue::S("wire-test".into()))
        .expression_attribute_values(":until", AttributeValue::N("4102444800".into()))
        .expression_attribute_values(":now", AttributeValue::N("1800000000".into()))
        .return_values(ReturnValue::AllNew)
        .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
        .send()
        .await
        .unwrap();
    dynamodb
        .update_item()
        .table_name(&table)
        .key("pk", pk.clone())
        .update_expression("ADD done :part")
        .condition_expression("generation = :g")
        .expression_attribute_values(":part", AttributeValue::Ns(vec!["2".into()]))
        .expression_attribute_values(":g", AttributeValue::N("1".into()))
        .return_values(ReturnValue::AllNew)
        .send()
        .await
        .unwrap();
    dynamodb
        .delete_item()
        .table_name(&table)
        .key("pk", pk)
        .condition_expression("generation = :g")
        .expression_attribute_values(":g", AttributeValue::N("1".into()))
        .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
        .send()
        .await
        .unwrap();

    // Part tasks: one batch of ten, then taken off the queue again.
    let sqs = aws_sdk_sqs::Client::new(&sdk);
    let part_queue = var("PART_QUEUE_URL");
    let entries = (2..12)
        .map(|part| {
            SendMessageBatchRequestEntry::builder()
                .id(format!("part-{part}"))
                .message_body(format!(r#"{{"version":1,"kind":"part","part":{part}}}"#))
                .build()
                .unwrap()
        })
        .collect();
    let sent = sqs
        .send_message_batch()
        .queue_url(&part_queue)
        .set_entries(Some(entries))
        .send()
        .await
        .unwrap();
    assert_eq!(sent.successful().len(), 10);
    let mut left = 10;
    while left > 0 {
        let received = sqs
            .receive_message()
            .queue_url(&part_queue)
            .max_number_of_messages(10)
            .wait_time_seconds(1)
            .send()
            .await
            .unwrap();
        let messages = received.messages();
        if messages.is_empty() {
            break;
        }
        for message in messages {
            sqs.delete_message()
                .queue_url(&part_queue)
                .receipt_handle(message.receipt_handle().unwrap())
                .send()
                .await
                .unwrap();
            left -= 1;
        }
    }

    // A part streamed with its CRC32C as a trailer, listed, the upload aborted.
    let s3 = aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(&sdk)
            .force_path_style(true)
            .build(),
    );
    let upload = s3
        .create_multipart_upload()
        .bucket(&bucket)
        .key(&key)
        .checksum_algorithm(ChecksumAlgorithm::Crc32C)
        .checksum_type(aws_sdk_s3::types::ChecksumType::FullObject)
        .send()
        .await
        .unwrap();
    let upload_id = upload.upload_id().unwrap();
    let chunks = futures::stream::iter(
        (0..4).map(|i| Ok::<_, std::io::Error>(bytes::Bytes::from(vec![i as u8; 64 * 1024]))),
    );
    let body = ByteStream::from_body_1_x(http_body_util::StreamBody::new(futures::StreamExt::map(
        chunks,
        |chunk| chunk.map(hyper::body::Frame::data),
    )));
    s3.upload_part()
        .bucket(&bucket)
        .key(&key)
        .upload_id(upload_id)
        .part_number(1)
        .content_length(256 * 1024)
        .checksum_algorithm(ChecksumAlgorithm::Crc32C)
        .body(body)
        .send()
        .await
        .unwrap();
    // moto 5.2.5 names the answer's root element ListPartsResponse where S3 and the SDK's
    // deserializer say ListPartsResult (functions/upload-api/tests/common/moto.rs renames it): the
    // request is what is checked here, so the answer may fail to parse.
    let listed = s3
        .list_parts()
        .bucket(&bucket)
        .key(&key)
        .upload_id(upload_id)
        .max_parts(1000)
        .part_number_marker("0")
        .send()
        .await;
    if let Ok(listed) = listed {
        assert_eq!(listed.parts().len(), 1);
    }
    s3.abort_multipart_upload()
        .bucket(&bucket)
        .key(&key)
        .upload_id(upload_id)
        .send()
        .await
        .unwrap();

    let operations: Vec<String> = recorder
        .exchanges()
        .into_iter()
        .map(|e| e.operation)
        .collect();
    for operation in [
        "UpdateItem",
        "DeleteItem",
        "SendMessageBatch",
        "CreateMultipartUpload",
        "UploadPart",
        "ListParts",
        "AbortMultipartUpload",
    ] {
        assert!(
            operations.iter().any(|o| o == operation),
            "{operation} not recorded: {operations:?}"
        );
    }
    let listing = recorder
        .exchanges()
        .into_iter()
        .find(|e| e.operation == "ListParts")
        .unwrap();
    assert_eq!(listing.status, 200);
    assert_eq!(listing.query_param("max-parts").as_deref(), Some("1000"));
    let part = recorder
        .exchanges()
        .into_iter()
        .find(|e| e.operation == "UploadPart")
        .unwrap();
    assert!(
        part.body.chunked.is_some(),
        "the streamed part was not aws-chunked: {:?}",
        part.headers
    );
    assert_eq!(part.header("x-amz-trailer"), Some("x-amz-checksum-crc32c"));
    let violations: Vec<String> = recorder
        .violations()
        .into_iter()
        .map(|v| v.to_string())
        .collect();
    assert_eq!(violations, Vec::<String>::new());
}
