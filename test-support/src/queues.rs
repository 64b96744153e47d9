//! Queues and what arrives in them.

use aws_sdk_sqs::types::QueueAttributeName;
use shared::s3_event::{parse_body, Body};
use shared::ObjectKey;

/// Creates a queue with `attributes`; returns its URL and ARN.
pub async fn create_queue(
    sqs: &aws_sdk_sqs::Client,
    name: &str,
    attributes: &[(QueueAttributeName, String)],
) -> (String, String) {
    let mut request = sqs.create_queue().queue_name(name);
    for (attribute, value) in attributes {
        request = request.attributes(attribute.clone(), value);
    }
    let url = request.send().await.unwrap().queue_url.unwrap();
    let arn = sqs
        .get_queue_attributes()
        .queue_url(&url)
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await
        .unwrap()
        .attributes
        .unwrap()[&QueueAttributeName::QueueArn]
        .clone();
    (url, arn)
}

/// The decoded keys an S3 event notification body names (none for anything else).
pub fn notified_keys(body: &str) -> Vec<String> {
    match parse_body(body) {
        Ok(Body::Notices(notices)) => notices
            .iter()
            .filter_map(|notice| ObjectKey::from_s3_event_key(&notice.raw_key).ok())
            .map(ObjectKey::into_string)
            .collect(),
        _ => Vec::new(),
    }
}
