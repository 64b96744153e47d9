//! The SQS adapter. One client per queue region, built on first use and kept for the sandbox's
//! life. The SDK sends to its configured region's endpoint, not to the queue URL's host, so the
//! region comes from the queue URL; the SDK's own retries are off, since the send's budget and
//! its retries are the hook's (see [`crate::queue`]).
//!
//! Each SendMessage tells the hook when its request has been handed to the connection (its body
//! taken by the HTTP client, which only takes it from an established connection): from then on
//! SQS takes the message whether or not the sandbox runs again to read the answer.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use aws_config::retry::RetryConfig;
use aws_config::{BehaviorVersion, Region};
use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::context::BeforeTransmitInterceptorContextMut;
use aws_smithy_runtime_api::client::interceptors::Intercept;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::body::SdkBody;
use aws_smithy_types::config_bag::ConfigBag;
use bytes::Bytes;
use http_body::{Frame, SizeHint};
use tokio::sync::Mutex;

use crate::error::EdgeError;
use crate::plan::OutgoingMessage;
use crate::queue::{BackfillQueue, Progress};

/// The region for a queue URL that names none (a local stand-in's).
pub const FALLBACK_REGION: &str = "us-east-1";

pub struct SqsQueue {
    default_region: String,
    clients: Mutex<HashMap<String, aws_sdk_sqs::Client>>,
}

impl SqsQueue {
    /// `default_region` serves queue URLs without a region.
    pub fn new(default_region: impl Into<String>) -> Self {
        SqsQueue {
            default_region: default_region.into(),
            clients: Mutex::new(HashMap::new()),
        }
    }

    /// The default region from `AWS_REGION` (at the edge: the edge's own region, which only a
    /// local queue URL would fall back to), else us-east-1.
    pub fn from_env() -> Self {
        let region = ["AWS_REGION", "AWS_DEFAULT_REGION"]
            .iter()
            .find_map(|name| std::env::var(name).ok().filter(|v| !v.trim().is_empty()))
            .unwrap_or_else(|| FALLBACK_REGION.to_owned());
        SqsQueue::new(region)
    }

    async fn client(&self, region: &str) -> aws_sdk_sqs::Client {
        let mut clients = self.clients.lock().await;
        if let Some(client) = clients.get(region) {
            return client.clone();
        }
        // No SDK timeouts and no upload stall protection: their clock runs on while Lambda keeps
        // the sandbox frozen, so they would fire at the thaw and cut a handshake or a request
        // whose answer was already waiting in the socket. Each attempt is bounded by the time
        // the sandbox was awake instead (crate::queue); the stall protection would also lose
        // track of the body the written signal puts in place.
        let config = aws_config::defaults(BehaviorVersion::latest())
            .region(Region::new(region.to_owned()))
            .retry_config(RetryConfig::disabled())
            .timeout_config(aws_config::timeout::TimeoutConfig::disabled())
            .stalled_stream_protection(
                aws_config::stalled_stream_protection::StalledStreamProtectionConfig::disabled(),
            )
            .load()
            .await;
        let client = shared::aws::sqs_client(&config);
        clients.insert(region.to_owned(), client.clone());
        client
    }
}

/// Puts the request's body behind [`Signalling`], for one request.
#[derive(Debug)]
struct SignalWhenWritten(std::sync::Mutex<Option<Arc<Progress>>>);

impl SignalWhenWritten {
    fn new(progress: &Arc<Progress>) -> Self {
        SignalWhenWritten(std::sync::Mutex::new(Some(progress.clone())))
    }
}

impl Intercept for SignalWhenWritten {
    fn name(&self) -> &'static str {
        "SignalWhenWritten"
    }

    fn modify_before_transmit(
        &self,
        context: &mut BeforeTransmitInterceptorContextMut<'_>,
        _: &RuntimeComponents,
        _: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let signal = self
            .0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .take();
        let request = context.request_mut();
        // A SendMessage body is a small document in memory; anything else goes as it is.
        if let (Some(signal), Some(bytes)) = (signal, request.body().bytes()) {
            let body = Signalling {
                bytes: Some(Bytes::copy_from_slice(bytes)),
                signal: Some(signal),
            };
            *request.body_mut() = SdkBody::from_body_1_x(body);
        }
        Ok(())
    }
}

/// A body in memory that signals when the HTTP client takes it to write.
struct Signalling {
    bytes: Option<Bytes>,
    signal: Option<Arc<Progress>>,
}

impl http_body::Body for Signalling {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = self.get_mut();
        if let Some(progress) = this.signal.take() {
            progress.written.notify_one();
        }
        Poll::Ready(this.bytes.take().map(|bytes| Ok(Frame::data(bytes))))
    }

    fn is_end_stream(&self) -> bool {
        self.bytes.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.bytes.as_ref().map_or(0, |b| b.len() as u64))
    }
}

impl BackfillQueue for SqsQueue {
    async fn send(
        &self,
        message: &OutgoingMessage,
        progress: &Arc<Progress>,
    ) -> Result<(), EdgeError> {
        let region = message
            .queue
            .region
            .as_deref()
            .unwrap_or(&self.default_region);
        let client = self.client(region).await;
        let mut request = client
            .send_message()
            .queue_url(&message.queue.url)
            .message_body(&message.body);
        if let Some(fifo) = &message.fifo {
            request = request
                .message_deduplication_id(&fifo.deduplication_id)
                .message_group_id(&fifo.group_id);
        }
        request
            .customize()
            .interceptor(SignalWhenWritten::new(progress))
            .send()
            .await
            .map_err(|err| shared::Error::aws("SendMessage", err))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    //! Against the local stack's SQS (scripts/local-stack up; its .local/env exported), on queues
    //! of their own so that other tests' consumers do not interfere.

    use super::*;
    use crate::config::QueueTarget;
    use crate::plan::FifoIds;
    use shared::{Failure, ObjectKey};

    /// The local stack's endpoint, or `None` (with a note) when it is not running.
    fn local_stack() -> Option<String> {
        let endpoint = std::env::var("AWS_ENDPOINT_URL")
            .ok()
            .filter(|v| !v.is_empty());
        if endpoint.is_none() {
            eprintln!("AWS_ENDPOINT_URL is not set: start scripts/local-stack and export .local/env to run this test");
        }
        endpoint
    }

    async fn admin() -> aws_sdk_sqs::Client {
        let config = aws_config::defaults(BehaviorVersion::latest())
            .region(Region::new(FALLBACK_REGION))
            .load()
            .await;
        aws_sdk_sqs::Client::new(&config)
    }

    async fn create_queue(admin: &aws_sdk_sqs::Client, fifo: bool) -> String {
        let suffix = if fifo { ".fifo" } else { "" };
        let name = format!("edge-adapter-test-{}{suffix}", unique_name());
        let mut request = admin.create_queue().queue_name(name);
        if fifo {
            request = request.attributes(aws_sdk_sqs::types::QueueAttributeName::FifoQueue, "true");
        }
        request.send().await.unwrap().queue_url.unwrap()
    }

    fn unique_name() -> String {
        format!(
            "{}-{}",
            std::process::id(),
            time::OffsetDateTime::now_utc().unix_timestamp_nanos()
        )
    }

    async fn receive_all(
        admin: &aws_sdk_sqs::Client,
        url: &str,
    ) -> Vec<aws_sdk_sqs::types::Message> {
        let output = admin
            .receive_message()
            .queue_url(url)
            .max_number_of_messages(10)
            .message_system_attribute_names(aws_sdk_sqs::types::MessageSystemAttributeName::All)
            .send()
            .await
            .unwrap();
        output.messages.unwrap_or_default()
    }

    #[tokio::test]
    async fn sends_to_a_standard_queue() {
        let Some(_) = local_stack() else { return };
        let admin = admin().await;
        let url = create_queue(&admin, false).await;
        let queue = SqsQueue::from_env();
        let message = OutgoingMessage {
            queue: QueueTarget::parse(&url).unwrap(),
            body: r#"{"hello":"edge"}"#.into(),
            fifo: None,
        };
        let progress = Arc::new(Progress::default());
        queue.send(&message, &progress).await.unwrap();
        // The request said when it was handed to the connection.
        tokio::time::timeout(
            std::time::Duration::from_millis(1),
            progress.written.notified(),
        )
        .await
        .expect("no written signal");
        let received = receive_all(&admin, &url).await;
        assert_eq!(received.len(), 1);
        assert_eq!(received[0].body(), Some(r#"{"hello":"edge"}"#));
        admin.delete_queue().queue_url(&url).send().await.unwrap();
    }

    #[tokio::test]
    async fn a_fifo_queue_drops_the_repeats_of_a_burst() {
        let Some(_) = local_stack() else { return };
        let admin = admin().await;
        let url = create_queue(&admin, true).await;
        let queue = SqsQueue::from_env();
        let key = ObjectKey::new("images/a b.jpg").unwrap();
        let fifo = FifoIds::for_object("overseas-origin", &key);
        for body in ["first", "second", "third"] {
            let message = OutgoingMessage {
                queue: QueueTarget::parse(&url).unwrap(),
                body: body.into(),
                fifo: Some(fifo.clone()),
            };
            queue.send(&message, &Arc::default()).await.unwrap();
        }
        let received = receive_all(&admin, &url).await;
        assert_eq!(received.len(), 1);
        assert_eq!(received[0].body(), Some("first"));
        let attributes = received[0].attributes.as_ref().unwrap();
        use aws_sdk_sqs::types::MessageSystemAttributeName as Name;
        assert_eq!(attributes[&Name::MessageGroupId], fifo.group_id);
        assert_eq!(
            attributes[&Name::MessageDeduplicationId],
            fifo.deduplication_id
        );
        admin.delete_queue().queue_url(&url).send().await.unwrap();
    }

    #[tokio::test]
    async fn a_missing_queue_is_a_refusal_not_a_retry() {
        let Some(endpoint) = local_stack() else {
            return;
        };
        let queue = SqsQueue::from_env();
        let message = OutgoingMessage {
            queue: QueueTarget::parse(&format!("{endpoint}/123456789012/edge-no-such-queue"))
                .unwrap(),
            body: "x".into(),
            fifo: None,
        };
        let err = queue.send(&message, &Arc::default()).await.unwrap_err();
        assert!(!err.is_retryable(), "{err}");
    }
}
