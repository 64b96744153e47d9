//! The shared AWS clients against the local AWS stand-ins (moto), through the real SDK.
//! Run by `scripts/test`, which starts the stack and exports its environment.

use aws_sdk_dynamodb::types::AttributeValue;
use aws_sdk_s3::primitives::ByteStream;
use shared::aws;
use shared::error::{Error, Failure};

fn var(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!("{name} is not set: run the tests through scripts/test, which starts the local AWS stack")
    })
}

#[tokio::test]
async fn s3_write_and_read() {
    let config = aws::load_config().await;
    let s3 = aws::s3_client(&config);
    let bucket = var("BUCKET");
    let key = format!("shared-test/{}/a b+c é.bin", fastrand::u64(..));
    let body: Vec<u8> = (0..70_000u32).map(|i| (i % 251) as u8).collect();
    s3.put_object()
        .bucket(&bucket)
        .key(&key)
        .content_type("application/octet-stream")
        .body(ByteStream::from(body.clone()))
        .send()
        .await
        .unwrap();
    let got = s3
        .get_object()
        .bucket(&bucket)
        .key(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(got.content_type(), Some("application/octet-stream"));
    assert_eq!(got.body.collect().await.unwrap().into_bytes(), body);

    let missing = s3
        .head_object()
        .bucket(&bucket)
        .key(format!("{key}.missing"))
        .send()
        .await
        .unwrap_err();
    let err = Error::aws("HeadObject", missing);
    assert!(!err.is_retryable(), "{err}");
    s3.delete_object()
        .bucket(&bucket)
        .key(&key)
        .send()
        .await
        .unwrap();
}

#[tokio::test]
async fn sqs_send_and_receive() {
    let config = aws::load_config().await;
    let sqs = aws::sqs_client(&config);
    let created = sqs
        .create_queue()
        .queue_name(format!("shared-test-{}", fastrand::u64(..)))
        .send()
        .await
        .unwrap();
    let queue = created.queue_url().unwrap().to_owned();
    sqs.send_message()
        .queue_url(&queue)
        .message_body(r#"{"hello":"world"}"#)
        .send()
        .await
        .unwrap();
    let received = sqs
        .receive_message()
        .queue_url(&queue)
        .max_number_of_messages(10)
        .wait_time_seconds(1)
        .send()
        .await
        .unwrap();
    let messages = received.messages();
    assert_eq!(messages.len(), 1);
    assert_eq!(messages[0].body(), Some(r#"{"hello":"world"}"#));
    sqs.delete_queue().queue_url(&queue).send().await.unwrap();

    let missing = sqs
        .get_queue_url()
        .queue_name("no-such-queue-here")
        .send()
        .await
        .unwrap_err();
    assert!(!Error::aws("GetQueueUrl", missing).is_retryable());
}

#[tokio::test]
async fn dynamodb_conditional_put() {
    let config = aws::load_config().await;
    let dynamodb = aws::dynamodb_client(&config);
    let table = var("TASK_TABLE");
    let id = format!("shared-test-{}", fastrand::u64(..));
    let claim = || {
        dynamodb
            .put_item()
            .table_name(&table)
            .item("id", AttributeValue::S(id.clone()))
            .item("status", AttributeValue::S("IN_PROGRESS".into()))
            .condition_expression("attribute_not_exists(id)")
            .send()
    };
    claim().await.unwrap();
    let second = claim().await.unwrap_err();
    assert!(
        second
            .as_service_error()
            .is_some_and(|e| e.is_conditional_check_failed_exception()),
        "{second:?}"
    );
    let err = Error::aws("PutItem", second);
    assert!(!err.is_retryable());
    assert!(err.to_string().contains("ConditionalCheckFailed"), "{err}");
    dynamodb
        .delete_item()
        .table_name(&table)
        .key("id", AttributeValue::S(id))
        .send()
        .await
        .unwrap();
}
