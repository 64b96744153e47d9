//! The metadata writer: S3 ObjectCreated events (through SQS) in, a version record per uploaded
//! object and a message on the change topic out. What it records comes from S3 (HeadObject),
//! not from the client, so it holds even if a client lied about its upload or crashed before it
//! said it was done.
//!
//! Idempotent: a redelivered event finds its record and only publishes again if the first
//! attempt did not get as far (so a message may go out twice, never zero times).

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent, SqsMessage};
use lambda_runtime::LambdaEvent;
use shared::batch::BatchRunner;
use shared::metrics::{Metric, Metrics};
use shared::s3_event::{parse_body, Body, Notice};
use time::OffsetDateTime;

use crate::config::MetadataConfig;
use crate::error::Error;
use crate::record::{target, version_record, FileVersion, Ignored};
use crate::service::millis;
use crate::store::{ChangeNotifier, FileIndex, ObjectHeads, Recorded};

/// How one S3 event record ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Recorded {
        version: Box<FileVersion>,
        new: bool,
    },
    Ignored(Ignored),
}

pub struct MetadataWriter<H, F, N> {
    config: MetadataConfig,
    heads: H,
    files: F,
    notifier: N,
    metrics: Metrics,
}

impl<H, F, N> MetadataWriter<H, F, N>
where
    H: ObjectHeads,
    F: FileIndex,
    N: ChangeNotifier,
{
    pub fn new(config: MetadataConfig, heads: H, files: F, notifier: N, metrics: Metrics) -> Self {
        MetadataWriter {
            config,
            heads,
            files,
            notifier,
            metrics,
        }
    }

    /// Handles one SQS message: every S3 event record in its body.
    pub async fn process(&self, message: SqsMessage) -> Result<Vec<Outcome>, Error> {
        let body = message
            .body
            .as_deref()
            .ok_or_else(|| Error::InvalidEvent("message has no body".into()))?;
        let notices = match parse_body(body)? {
            Body::TestEvent => {
                tracing::info!("s3:TestEvent dropped");
                return Ok(Vec::new());
            }
            Body::Notices(notices) => notices,
        };
        let mut outcomes = Vec::with_capacity(notices.len());
        for notice in &notices {
            outcomes.push(self.notice(notice).await?);
        }
        Ok(outcomes)
    }

    async fn notice(&self, notice: &Notice) -> Result<Outcome, Error> {
        let span = tracing::Span::current();
        span.record("bucket", notice.bucket.as_str());
        span.record("key", notice.raw_key.as_str());
        let target = match target(notice, &self.config.upload_prefix)? {
            Ok(target) => target,
            Err(ignored) => return Ok(self.ignored(ignored)),
        };
        let head = self
            .heads
            .head(&target.bucket, &target.key, target.version_id.as_deref())
            .await?;
        let now_ms = millis(OffsetDateTime::now_utc());
        let version = match version_record(&target, head.as_ref(), now_ms) {
            Ok(version) => version,
            Err(ignored) => return Ok(self.ignored(ignored)),
        };
        let (version, new, notified) = match self.files.record(&version).await? {
            Recorded::New => (version, true, false),
            Recorded::Existing { stored, notified } => (*stored, false, notified),
        };
        if !notified {
            self.notifier.publish(&version).await?;
            self.files
                .mark_notified(&version.key, &version.version)
                .await?;
        }
        tracing::info!(version = %version.version, size = version.size, new, "version recorded");
        self.metrics.emit(
            &[("Outcome", if new { "recorded" } else { "duplicate" })],
            &[
                Metric::count("Versions", 1),
                Metric::bytes("VersionBytes", version.size),
            ],
        );
        Ok(Outcome::Recorded {
            version: Box::new(version),
            new,
        })
    }

    fn ignored(&self, ignored: Ignored) -> Outcome {
        tracing::info!(reason = ignored.as_str(), "event ignored");
        self.metrics.emit(
            &[("Outcome", "ignored"), ("Reason", ignored.as_str())],
            &[Metric::count("Versions", 1)],
        );
        Outcome::Ignored(ignored)
    }
}

/// The Lambda handler: the batch through the runner, with partial batch failures.
pub async fn handle<H, F, N>(
    writer: &MetadataWriter<H, F, N>,
    runner: &BatchRunner,
    event: LambdaEvent<SqsEvent>,
) -> Result<SqsBatchResponse, lambda_runtime::Diagnostic>
where
    H: ObjectHeads,
    F: FileIndex,
    N: ChangeNotifier,
{
    runner
        // Boxed: the nested futures' type is otherwise too deep for the compiler's layout.
        .run(event.payload, |record| {
            Box::pin(async move { writer.process(record).await.map(drop) })
        })
        .await
        .map_err(Into::into)
}
