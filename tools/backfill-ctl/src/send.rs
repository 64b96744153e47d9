//! What the commands that enqueue messages share (`prewarm`, `refresh`, `purge`): one run's
//! request id and message fields, batches sent at a steady rate with retries, the progress bar
//! and the summary.

use std::fmt::Write as _;
use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};
use shared::message::OriginLocation;
use time::OffsetDateTime;

use crate::cli::SendArgs;
use crate::error::{CtlError, Outcome};
use crate::input::{targets, InvalidEntry, KeyList, Target};
use crate::queue::{send_with_retries, Outgoing, SqsQueue, MAX_BATCH, SEND_ATTEMPTS, SEND_BACKOFF};

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
    /// The fields of a run sending to `queue`, with a new request id.
    pub fn for_run(args: &SendArgs, queue: &SqsQueue, now: OffsetDateTime) -> Self {
        MessageTemplate {
            bucket: args.bucket.clone(),
            origin: args.origin.clone(),
            request_id: run_id(now),
            fifo: queue.is_fifo(),
        }
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

/// The keys of a key list (`key_prefix` + path), and a summary that counts its lines.
pub fn plan(list: KeyList, key_prefix: &str) -> (Vec<Target>, Summary) {
    let (found, invalid) = targets(&list.paths, key_prefix);
    let mut summary = Summary {
        listed: list.paths.len() + list.invalid.len(),
        duplicates: list.duplicates,
        filtered_out: list.filtered_out,
        invalid: list.invalid,
        ..Summary::default()
    };
    summary.invalid.extend(invalid);
    (found, summary)
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
    /// For a change of every object under a key prefix, the prefix (and no key list).
    pub prefix: Option<String>,
    pub listed: usize,
    pub duplicates: usize,
    pub filtered_out: usize,
    pub sent: usize,
    /// Keys already in the bucket; `None` where the bucket is not asked.
    pub skipped: Option<usize>,
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
        match &self.prefix {
            Some(prefix) => {
                let _ = writeln!(out, "every object under the key prefix {prefix:?}");
            }
            None => {
                let mut read = format!("{} keys listed", self.listed);
                if self.duplicates > 0 {
                    let _ = write!(read, ", {} repeated lines ignored", self.duplicates);
                }
                if self.filtered_out > 0 {
                    let _ = write!(read, ", {} outside the prefix", self.filtered_out);
                }
                let _ = writeln!(out, "{read}");
            }
        }
        let _ = writeln!(out, "sent: {}", self.sent);
        if let Some(skipped) = self.skipped {
            let _ = writeln!(out, "skipped (already in the bucket): {skipped}");
        }
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

    fn progress(&self) -> String {
        match self.skipped {
            Some(skipped) => format!(
                "({} sent, {skipped} skipped, {} failed)",
                self.sent,
                self.failures()
            ),
            None => format!("({} sent, {} failed)", self.sent, self.failures()),
        }
    }
}

/// Prints the run's request id and summary (whatever `result` is), then ends the run: with the
/// error that stopped it, or with failures when some key was invalid or failed.
pub fn finish(
    template: &MessageTemplate,
    summary: &Summary,
    result: Result<(), CtlError>,
) -> Result<Outcome, CtlError> {
    println!("request id: {}", template.request_id);
    print!("{}", summary.render());
    result?;
    Ok(Outcome::from_failures(summary.failures()))
}

/// A bar on stderr when it is a terminal, hidden otherwise.
pub fn progress_bar(len: usize) -> ProgressBar {
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

/// Sends a run's messages: gathered into batches, at most `rate` a second, each batch with
/// retries of its failed entries; what became of them is counted in the summary.
pub struct Sender<'a> {
    queue: &'a SqsQueue,
    pacer: Pacer,
    batch: usize,
    pending: Vec<Outgoing>,
    pub progress: &'a ProgressBar,
}

impl<'a> Sender<'a> {
    pub fn new(queue: &'a SqsQueue, rate: u32, progress: &'a ProgressBar) -> Self {
        Sender {
            queue,
            pacer: Pacer::new(rate),
            batch: batch_size(rate),
            pending: Vec::new(),
            progress,
        }
    }

    /// Queues a message; sends a batch once one is full.
    pub async fn push(&mut self, message: Outgoing, summary: &mut Summary) -> Result<(), CtlError> {
        self.pending.push(message);
        if self.pending.len() >= self.batch {
            let batch = std::mem::take(&mut self.pending);
            self.send(batch, summary).await?;
        }
        Ok(())
    }

    /// Queues a message, or records why it was refused (`at`: where `text`, what it names, came
    /// from).
    pub async fn offer(
        &mut self,
        message: Result<Outgoing, String>,
        at: String,
        text: String,
        summary: &mut Summary,
    ) -> Result<(), CtlError> {
        match message {
            Ok(message) => self.push(message, summary).await,
            Err(reason) => {
                summary.invalid.push(InvalidEntry { at, text, reason });
                self.pass();
                Ok(())
            }
        }
    }

    /// Sends what is left.
    pub async fn flush(&mut self, summary: &mut Summary) -> Result<(), CtlError> {
        let batch = std::mem::take(&mut self.pending);
        if batch.is_empty() {
            return Ok(());
        }
        self.send(batch, summary).await
    }

    /// Counts a key that is not sent (skipped, invalid, failed before sending).
    pub fn pass(&self) {
        self.progress.inc(1);
    }

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
        self.progress.set_message(summary.progress());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::input::parse_key_list;

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
    fn a_plan_counts_every_line() {
        let long = "x".repeat(1020);
        let text = format!("a.jpg\na.jpg\n../b\nc.jpg\nd/e.jpg\nd/e.jpg\nd/{long}\n");
        let list = parse_key_list(&text, Some("d/"));
        let (found, summary) = plan(list, "mirror/");
        let keys: Vec<&str> = found.iter().map(|t| t.key.as_str()).collect();
        assert_eq!(keys, ["mirror/d/e.jpg"]);
        assert_eq!(summary.listed, 2);
        assert_eq!(summary.duplicates, 1);
        assert_eq!(summary.filtered_out, 4);
        assert_eq!(summary.invalid.len(), 1);
        assert!(summary.invalid[0].reason.contains("with the key prefix"));
    }

    #[test]
    fn summaries_list_what_went_wrong() {
        let summary = Summary {
            listed: 6,
            duplicates: 1,
            sent: 3,
            skipped: Some(1),
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
        assert_eq!(summary.progress(), "(3 sent, 1 skipped, 2 failed)");
    }

    #[test]
    fn a_summary_without_a_bucket_check_or_of_a_prefix_says_so() {
        let unchecked = Summary {
            listed: 2,
            sent: 2,
            ..Summary::default()
        };
        assert_eq!(
            unchecked.render(),
            "2 keys listed\nsent: 2\ninvalid: 0\nfailed: 0\n"
        );
        assert_eq!(unchecked.progress(), "(2 sent, 0 failed)");
        let prefix = Summary {
            prefix: Some("mirror/images/".into()),
            sent: 1,
            ..Summary::default()
        };
        assert_eq!(
            prefix.render(),
            "every object under the key prefix \"mirror/images/\"\nsent: 1\ninvalid: 0\nfailed: 0\n"
        );
    }
}
