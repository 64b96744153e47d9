//! `prewarm`: asks the backfill function to copy a list of keys before viewers ask for them.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::io::IsTerminal;
use std::path::Path;
use std::time::{Duration, Instant};

use aws_config::SdkConfig;
use futures::future::join_all;
use indicatif::{ProgressBar, ProgressStyle};
use shared::message::{BackfillMessage, FifoIds, OriginLocation, Trigger, MESSAGE_VERSION};
use shared::ObjectKey;
use time::OffsetDateTime;

use crate::cli::PrewarmArgs;
use crate::error::{CtlError, Outcome};
use crate::input::{
    parse_key_list, read_manifest, read_text_file, InvalidEntry, KeyList, ListedPath,
};
use crate::queue::{send_with_retries, Outgoing, SqsQueue, MAX_BATCH, SEND_ATTEMPTS, SEND_BACKOFF};
use crate::store::{Bucket, Presence};

/// Keys whose presence is checked at once.
const CHECK_CONCURRENCY: usize = 16;

/// A key to pre-warm: where it goes in the bucket and the path to fetch it from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub line: usize,
    pub key: ObjectKey,
    /// Percent-encoded, with the leading '/': the origin path is put before it.
    pub uri: String,
}

/// The bucket key of each listed path: `key_prefix` + path, as the edge hook maps a URI.
pub fn targets(paths: &[ListedPath], key_prefix: &str) -> (Vec<Target>, Vec<InvalidEntry>) {
    let mut targets = Vec::with_capacity(paths.len());
    let mut invalid = Vec::new();
    for listed in paths {
        match ObjectKey::new(format!("{key_prefix}{}", listed.path)) {
            Ok(key) => targets.push(Target {
                line: listed.line,
                key,
                uri: listed.path.to_uri_path(),
            }),
            Err(err) => invalid.push(InvalidEntry {
                at: format!("line {}", listed.line),
                text: listed.path.to_string(),
                reason: format!("with the key prefix {key_prefix:?}: {err}"),
            }),
        }
    }
    (targets, invalid)
}

/// What every message of one run shares.
#[derive(Debug, Clone)]
pub struct MessageTemplate {
    pub bucket: String,
    pub origin: OriginLocation,
    /// One id for the run, to find its messages in the logs.
    pub request_id: String,
    pub fifo: bool,
}

impl MessageTemplate {
    /// The message for one target, refused with a reason if the backfill function would refuse
    /// it.
    pub fn message(&self, target: &Target, now: OffsetDateTime) -> Result<Outgoing, String> {
        let message = BackfillMessage {
            version: MESSAGE_VERSION,
            bucket: self.bucket.clone(),
            key: target.key.clone(),
            origin: self.origin.clone(),
            uri: target.uri.clone(),
            request_id: self.request_id.clone(),
            enqueued_at: now,
            trigger: Trigger::Operator,
            observed: None,
        };
        let body = message.to_json();
        BackfillMessage::parse(&body).map_err(|e| e.to_string())?;
        let fifo = self
            .fifo
            .then(|| FifoIds::for_object(&self.bucket, &target.key));
        Ok(Outgoing {
            label: target.key.to_string(),
            body,
            attributes: HashMap::new(),
            group_id: fifo.as_ref().map(|ids| ids.group_id.clone()),
            deduplication_id: fifo.map(|ids| ids.deduplication_id),
        })
    }
}

/// A run id: the time and a random part.
pub fn run_id(now: OffsetDateTime) -> String {
    format!(
        "backfill-ctl-{}-{:08x}",
        now.unix_timestamp(),
        fastrand::u32(..)
    )
}

/// Spreads sends over time: `rate` messages a second, the first batch at once.
#[derive(Debug)]
pub struct Pacer {
    per_message: Duration,
    next: Option<Instant>,
}

impl Pacer {
    pub fn new(rate: u32) -> Self {
        Pacer {
            per_message: Duration::from_secs(1) / rate.max(1),
            next: None,
        }
    }

    /// How long to wait, from `now`, before sending `messages`; books their share of the rate.
    pub fn wait(&mut self, now: Instant, messages: usize) -> Duration {
        let start = self.next.map_or(now, |next| next.max(now));
        self.next = Some(start + self.per_message * messages as u32);
        start - now
    }
}

/// Entries per batch: no more than a second's worth, so a low rate sends steadily.
pub fn batch_size(rate: u32) -> usize {
    (rate as usize).clamp(1, MAX_BATCH)
}

/// What a run did.
#[derive(Debug, Default)]
pub struct Summary {
    pub listed: usize,
    pub duplicates: usize,
    pub filtered_out: usize,
    pub sent: usize,
    pub skipped: usize,
    pub invalid: Vec<InvalidEntry>,
    /// Keys that could not be checked or sent, with the reason.
    pub failed: Vec<(String, String)>,
}

impl Summary {
    pub fn failures(&self) -> usize {
        self.invalid.len() + self.failed.len()
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        let mut read = format!("{} keys listed", self.listed);
        if self.duplicates > 0 {
            let _ = write!(read, ", {} repeated lines ignored", self.duplicates);
        }
        if self.filtered_out > 0 {
            let _ = write!(read, ", {} outside the prefix", self.filtered_out);
        }
        let _ = writeln!(out, "{read}");
        let _ = writeln!(out, "sent: {}", self.sent);
        let _ = writeln!(out, "skipped (already in the bucket): {}", self.skipped);
        let _ = writeln!(out, "invalid: {}", self.invalid.len());
        for entry in &self.invalid {
            let _ = writeln!(out, "  {entry}");
        }
        let _ = writeln!(out, "failed: {}", self.failed.len());
        for (key, reason) in &self.failed {
            let _ = writeln!(out, "  {key}: {reason}");
        }
        out
    }
}

fn progress_bar(len: usize) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(len as u64);
    bar.set_style(
        ProgressStyle::with_template("{elapsed_precise} [{bar:30}] {pos}/{len} keys {msg}")
            .expect("the template is valid")
            .progress_chars("=> "),
    );
    bar
}

async fn read_list(args: &PrewarmArgs) -> Result<KeyList, CtlError> {
    let text = match (&args.keys, &args.from_manifest) {
        (Some(path), None) => read_text_file(Path::new(path), "key list")?,
        (None, Some(source)) => read_manifest(source).await?,
        _ => {
            return Err(CtlError::Usage(
                "give exactly one of --keys or --from-manifest".into(),
            ))
        }
    };
    Ok(parse_key_list(&text, args.prefix.as_deref()))
}

pub async fn run(args: PrewarmArgs, config: &SdkConfig) -> Result<Outcome, CtlError> {
    let list = read_list(&args).await?;
    let (targets, invalid) = targets(&list.paths, &args.key_prefix);
    let mut summary = Summary {
        listed: list.paths.len() + list.invalid.len(),
        duplicates: list.duplicates,
        filtered_out: list.filtered_out,
        invalid: list.invalid,
        ..Summary::default()
    };
    summary.invalid.extend(invalid);

    let queue = SqsQueue::new(config, &args.queue_url);
    queue.attributes().await?;
    let bucket = if args.no_check {
        None
    } else {
        let bucket = Bucket::new(config, &args.bucket);
        bucket.check_exists().await?;
        Some(bucket)
    };
    let now = OffsetDateTime::now_utc();
    let template = MessageTemplate {
        bucket: args.bucket.clone(),
        origin: args.origin.clone(),
        request_id: run_id(now),
        fifo: queue.is_fifo(),
    };
    let progress = progress_bar(targets.len());
    let mut sender = Sender {
        queue: &queue,
        pacer: Pacer::new(args.rate),
        batch: batch_size(args.rate),
        progress: &progress,
    };
    let result = prewarm(
        &targets,
        bucket.as_ref(),
        &template,
        &mut sender,
        &mut summary,
    )
    .await;
    progress.finish_and_clear();
    println!("request id: {}", template.request_id);
    print!("{}", summary.render());
    result?;
    Ok(Outcome::from_failures(summary.failures()))
}

async fn prewarm(
    targets: &[Target],
    bucket: Option<&Bucket>,
    template: &MessageTemplate,
    sender: &mut Sender<'_>,
    summary: &mut Summary,
) -> Result<(), CtlError> {
    let batch = sender.batch;
    let mut pending: Vec<Outgoing> = Vec::new();
    for chunk in targets.chunks(CHECK_CONCURRENCY) {
        let presence = match bucket {
            Some(bucket) => join_all(chunk.iter().map(|t| bucket.presence(&t.key))).await,
            None => chunk.iter().map(|_| Ok(Presence::Absent)).collect(),
        };
        for (target, presence) in chunk.iter().zip(presence) {
            match presence {
                Ok(Presence::Present) => {
                    summary.skipped += 1;
                    sender.progress.inc(1);
                }
                Ok(Presence::Absent) => match template.message(target, OffsetDateTime::now_utc()) {
                    Ok(message) => pending.push(message),
                    Err(reason) => {
                        summary.invalid.push(InvalidEntry {
                            at: format!("line {}", target.line),
                            text: target.key.to_string(),
                            reason,
                        });
                        sender.progress.inc(1);
                    }
                },
                Err(reason) => {
                    summary.failed.push((target.key.to_string(), reason));
                    sender.progress.inc(1);
                }
            }
        }
        while pending.len() >= batch {
            let next: Vec<Outgoing> = pending.drain(..batch).collect();
            sender.send(next, summary).await?;
        }
    }
    if !pending.is_empty() {
        sender.send(pending, summary).await?;
    }
    Ok(())
}

struct Sender<'a> {
    queue: &'a SqsQueue,
    pacer: Pacer,
    batch: usize,
    progress: &'a ProgressBar,
}

impl Sender<'_> {
    async fn send(&mut self, batch: Vec<Outgoing>, summary: &mut Summary) -> Result<(), CtlError> {
        let wait = self.pacer.wait(Instant::now(), batch.len());
        tokio::time::sleep(wait).await;
        let count = batch.len() as u64;
        let report = send_with_retries(self.queue, batch, SEND_BACKOFF, SEND_ATTEMPTS).await?;
        summary.sent += report.sent.len();
        summary.failed.extend(
            report
                .failed
                .into_iter()
                .map(|(message, reason)| (message.label, reason)),
        );
        self.progress.inc(count);
        self.progress.set_message(format!(
            "({} sent, {} skipped, {} failed)",
            summary.sent,
            summary.skipped,
            summary.failures()
        ));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shared::message::Protocol;

    fn template(fifo: bool) -> MessageTemplate {
        MessageTemplate {
            bucket: "overseas-origin".into(),
            origin: OriginLocation {
                protocol: Protocol::Https,
                host: "www.example.com".into(),
                port: 443,
                path: "/static".into(),
            },
            request_id: "backfill-ctl-1-0".into(),
            fifo,
        }
    }

    fn listed(line: usize, path: &str) -> ListedPath {
        ListedPath {
            line,
            path: ObjectKey::new(path).unwrap(),
        }
    }

    #[test]
    fn targets_take_the_key_prefix_and_keep_the_uri() {
        let (found, invalid) = targets(&[listed(3, "images/café au lait.jpg")], "mirror/");
        assert!(invalid.is_empty());
        assert_eq!(found[0].key.as_str(), "mirror/images/café au lait.jpg");
        assert_eq!(found[0].uri, "/images/caf%C3%A9%20au%20lait.jpg");
        let long = "a".repeat(1020);
        let (found, invalid) = targets(&[listed(1, &long)], "mirror/");
        assert!(found.is_empty());
        assert_eq!(invalid[0].at, "line 1");
        assert!(
            invalid[0].reason.contains("1027 bytes long"),
            "{:?}",
            invalid
        );
    }

    #[test]
    fn messages_are_what_the_backfill_function_reads() {
        let (found, _) = targets(&[listed(1, "images/a b.jpg")], "");
        let now = OffsetDateTime::from_unix_timestamp(1_795_000_000).unwrap();
        let outgoing = template(false).message(&found[0], now).unwrap();
        let message = BackfillMessage::parse(&outgoing.body).unwrap();
        assert_eq!(message.trigger, Trigger::Operator);
        assert_eq!(message.key.as_str(), "images/a b.jpg");
        assert_eq!(
            message.origin_url(),
            "https://www.example.com:443/static/images/a%20b.jpg"
        );
        assert_eq!(message.request_id, "backfill-ctl-1-0");
        assert_eq!(message.enqueued_at, now);
        assert_eq!(outgoing.label, "images/a b.jpg");
        assert_eq!(outgoing.group_id, None);

        let fifo = template(true).message(&found[0], now).unwrap();
        let ids = FifoIds::for_object("overseas-origin", &found[0].key);
        assert_eq!(fifo.group_id, Some(ids.group_id));
        assert_eq!(fifo.deduplication_id, Some(ids.deduplication_id));
    }

    #[test]
    fn the_pacer_keeps_the_rate() {
        let start = Instant::now();
        let mut pacer = Pacer::new(4);
        assert_eq!(pacer.wait(start, 4), Duration::ZERO);
        assert_eq!(pacer.wait(start, 4), Duration::from_secs(1));
        assert_eq!(
            pacer.wait(start + Duration::from_millis(1500), 2),
            Duration::from_millis(500)
        );
        // Idle time is not saved up for a burst.
        let later = start + Duration::from_secs(60);
        assert_eq!(pacer.wait(later, 4), Duration::ZERO);
        assert_eq!(pacer.wait(later, 1), Duration::from_secs(1));
        assert_eq!(batch_size(1), 1);
        assert_eq!(batch_size(4), 4);
        assert_eq!(batch_size(500), 10);
    }

    #[test]
    fn summaries_list_what_went_wrong() {
        let summary = Summary {
            listed: 6,
            duplicates: 1,
            sent: 3,
            skipped: 1,
            invalid: vec![InvalidEntry {
                at: "line 4".into(),
                text: "a/../b".into(),
                reason: "key has a '.' or '..' path segment".into(),
            }],
            failed: vec![("images/x.jpg".into(), "InternalError: boom".into())],
            ..Summary::default()
        };
        assert_eq!(
            summary.render(),
            "6 keys listed, 1 repeated lines ignored\n\
             sent: 3\n\
             skipped (already in the bucket): 1\n\
             invalid: 1\n\
             \x20 line 4: \"a/../b\": key has a '.' or '..' path segment\n\
             failed: 1\n\
             \x20 images/x.jpg: InternalError: boom\n"
        );
        assert_eq!(summary.failures(), 2);
    }
}
