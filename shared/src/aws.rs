//! AWS clients, built once per sandbox. An endpoint override (`AWS_ENDPOINT_URL`, or a
//! service-specific `AWS_ENDPOINT_URL_<SERVICE>`) points them at the local stand-ins; otherwise
//! the normal AWS chain (region, credentials) applies.

use aws_config::{BehaviorVersion, SdkConfig};
use aws_smithy_types::timeout::TimeoutConfig;
use std::time::Duration;

use tokio::time::Instant;

/// Loads the shared SDK configuration from the environment.
pub async fn load_config() -> SdkConfig {
    aws_config::defaults(BehaviorVersion::latest()).load().await
}

/// Whether S3 requests go to a local stand-in, which needs path-style addressing.
pub fn s3_endpoint_overridden(config: &SdkConfig) -> bool {
    config.endpoint_url().is_some()
        || std::env::var("AWS_ENDPOINT_URL_S3").is_ok_and(|v| !v.is_empty())
}

pub fn sqs_client(config: &SdkConfig) -> aws_sdk_sqs::Client {
    aws_sdk_sqs::Client::new(config)
}

/// S3 client. Checksums are computed by the SDK only where an operation requires one: our writers
/// send their own full-object checksums, and a streamed body of unknown size cannot be checksummed
/// by the SDK ahead of sending.
#[cfg(feature = "s3")]
pub fn s3_client(config: &SdkConfig) -> aws_sdk_s3::Client {
    use aws_sdk_s3::config::{RequestChecksumCalculation, ResponseChecksumValidation};
    let s3_config = aws_sdk_s3::config::Builder::from(config)
        .force_path_style(s3_endpoint_overridden(config))
        .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
        .response_checksum_validation(ResponseChecksumValidation::WhenRequired)
        .build();
    aws_sdk_s3::Client::from_conf(s3_config)
}

#[cfg(feature = "dynamodb")]
pub fn dynamodb_client(config: &SdkConfig) -> aws_sdk_dynamodb::Client {
    aws_sdk_dynamodb::Client::new(config)
}

/// The timeouts of one call that must end by `deadline`: the client's own (`base`: connect and the
/// rest, which a per-call override would otherwise drop) with an operation timeout, retries
/// included, of the time left. `None` once the deadline has passed. The SDK sets no operation
/// timeout of its own: without one a call may outlast the invocation.
pub fn timeouts_until(base: Option<&TimeoutConfig>, deadline: Instant) -> Option<TimeoutConfig> {
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        return None;
    }
    Some(timeouts_within(base, left))
}

/// The client's own timeouts (`base`) with an operation timeout, retries included, of `limit`.
pub fn timeouts_within(base: Option<&TimeoutConfig>, limit: Duration) -> TimeoutConfig {
    let builder = base.map(TimeoutConfig::to_builder).unwrap_or_default();
    builder.operation_timeout(limit).build()
}

/// The fields of an ARN (`arn:PARTITION:SERVICE:REGION:ACCOUNT:RESOURCE`; the resource may hold
/// colons).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Arn<'a> {
    pub partition: &'a str,
    pub service: &'a str,
    pub region: &'a str,
    pub account: &'a str,
    pub resource: &'a str,
}

impl<'a> Arn<'a> {
    pub fn parse(arn: &'a str) -> Option<Self> {
        let mut parts = arn.splitn(6, ':');
        let (
            Some("arn"),
            Some(partition),
            Some(service),
            Some(region),
            Some(account),
            Some(resource),
        ) = (
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
        )
        else {
            return None;
        };
        Some(Arn {
            partition,
            service,
            region,
            account,
            resource,
        })
    }
}

/// The parts of an SQS queue ARN (`arn:aws:sqs:REGION:ACCOUNT:NAME`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueArn {
    pub region: String,
    pub account: String,
    pub name: String,
}

impl QueueArn {
    pub fn parse(arn: &str) -> Option<Self> {
        let arn = Arn::parse(arn).filter(|arn| arn.service == "sqs")?;
        if arn.region.is_empty() || arn.account.is_empty() || arn.resource.is_empty() {
            return None;
        }
        Some(QueueArn {
            region: arn.region.to_owned(),
            account: arn.account.to_owned(),
            name: arn.resource.to_owned(),
        })
    }

    pub fn is_fifo(&self) -> bool {
        self.name.ends_with(".fifo")
    }
}

/// The region a queue URL names (`https://sqs.REGION.amazonaws.com/...`, or the legacy
/// `https://REGION.queue.amazonaws.com/...`). The SDK sends to its configured endpoint, not to the
/// URL's host, so a client for a queue in another region must be built for that region.
pub fn region_of_queue_url(url: &str) -> Option<String> {
    let host = url.split("://").nth(1)?.split(['/', ':']).next()?;
    let labels: Vec<&str> = host.split('.').collect();
    match labels.as_slice() {
        ["sqs", region, ..] if region.contains('-') => Some((*region).to_owned()),
        [region, "queue", ..] if region.contains('-') => Some((*region).to_owned()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_call_gets_the_time_left_and_keeps_the_clients_other_timeouts() {
        let base = TimeoutConfig::builder()
            .connect_timeout(Duration::from_millis(3100))
            .build();
        let deadline = Instant::now() + Duration::from_secs(5);
        let timeouts = timeouts_until(Some(&base), deadline).unwrap();
        assert_eq!(timeouts.operation_timeout(), Some(Duration::from_secs(5)));
        assert_eq!(
            timeouts.connect_timeout(),
            Some(Duration::from_millis(3100))
        );
        tokio::time::advance(Duration::from_secs(4)).await;
        let timeouts = timeouts_until(None, deadline).unwrap();
        assert_eq!(timeouts.operation_timeout(), Some(Duration::from_secs(1)));
        tokio::time::advance(Duration::from_secs(1)).await;
        assert_eq!(timeouts_until(Some(&base), deadline), None);
    }

    #[test]
    fn queue_arns() {
        let arn = QueueArn::parse("arn:aws:sqs:eu-west-1:123456789012:backfill.fifo").unwrap();
        assert_eq!(arn.region, "eu-west-1");
        assert_eq!(arn.account, "123456789012");
        assert_eq!(arn.name, "backfill.fifo");
        assert!(arn.is_fifo());
        assert!(QueueArn::parse("arn:aws:sns:eu-west-1:123456789012:topic").is_none());
        assert!(QueueArn::parse("arn:aws:sqs:eu-west-1:123456789012").is_none());
        assert!(QueueArn::parse("arn:aws:sqs::123456789012:q").is_none());
    }

    #[test]
    fn regions_of_queue_urls() {
        assert_eq!(
            region_of_queue_url("https://sqs.ap-southeast-1.amazonaws.com/123456789012/backfill")
                .as_deref(),
            Some("ap-southeast-1")
        );
        assert_eq!(
            region_of_queue_url("https://eu-west-1.queue.amazonaws.com/123456789012/q").as_deref(),
            Some("eu-west-1")
        );
        assert_eq!(
            region_of_queue_url("https://sqs.cn-north-1.amazonaws.com.cn/1/q").as_deref(),
            Some("cn-north-1")
        );
        assert_eq!(
            region_of_queue_url("http://127.0.0.1:5000/123456789012/q"),
            None
        );
    }
}
