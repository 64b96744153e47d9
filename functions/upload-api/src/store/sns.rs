//! The change topic: one message per new version, with the owner and the key as message
//! attributes so that subscriptions can filter on them.

use aws_sdk_sns::types::MessageAttributeValue;

use crate::error::Error;
use crate::record::{change_message, FileVersion};
use crate::store::ChangeNotifier;

#[derive(Debug, Clone)]
pub struct SnsNotifier {
    client: aws_sdk_sns::Client,
    topic_arn: String,
}

impl SnsNotifier {
    pub fn new(client: aws_sdk_sns::Client, topic_arn: impl Into<String>) -> Self {
        SnsNotifier {
            client,
            topic_arn: topic_arn.into(),
        }
    }
}

fn attribute(value: &str) -> Result<MessageAttributeValue, Error> {
    MessageAttributeValue::builder()
        .data_type("String")
        .string_value(value)
        .build()
        .map_err(|e| Error::InvalidEvent(format!("message attribute: {e}")))
}

impl ChangeNotifier for SnsNotifier {
    async fn publish(&self, version: &FileVersion) -> Result<(), Error> {
        self.client
            .publish()
            .topic_arn(&self.topic_arn)
            .subject("file version")
            .message(change_message(version).to_string())
            .message_attributes("owner", attribute(&version.owner)?)
            .message_attributes("key", attribute(&version.key)?)
            .message_attributes("content_type", attribute(&version.content_type)?)
            .send()
            .await
            .map_err(|e| Error::aws("Publish", e))?;
        Ok(())
    }
}
