//! The command line.

use clap::{ArgGroup, Args, Parser, Subcommand};
use shared::message::{is_bucket_name, OriginLocation};

use crate::input::{parse_key_prefix, parse_origin};
use crate::queue::check_queue_url;
use crate::regional::{
    parse_function_name, parse_region, parse_regional, parse_since, RegionalStack, EDGE_REGIONS,
};

const AFTER_HELP: &str = "\
AWS access: the normal credential chain and region (AWS_PROFILE, AWS_REGION, ...). Set
AWS_ENDPOINT_URL to use a local stand-in (scripts/local-stack). A queue URL's own region is used
for its queue.

Exit codes: 0 all done; 1 something failed (the report says what); 2 bad command line.";

#[derive(Debug, Parser)]
#[command(
    name = "backfill-ctl",
    version,
    about = "Operate the overseas-origin backfill: pre-warm keys, announce refreshes and purges, read the queues and the freshness table, redrive dead letters, check objects.",
    after_help = AFTER_HELP
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    Prewarm(PrewarmArgs),
    /// Announce objects that changed at the origin, so that their overseas copies are revalidated.
    ///
    /// The backfill function revalidates each overseas copy (a conditional GET) and replaces it
    /// when the origin has a newer one, or deletes it when the origin answers 404 or 410.
    ///
    /// Keys come from --keys or --from-manifest (read as prewarm reads them: one decoded path a
    /// line), one message each; or --prefix alone names every object under a path, in one
    /// message (the function lists the bucket). The bucket is not asked first: a key it does not
    /// hold is reported by the function, as a no-op. On a FIFO queue a key's change goes in the
    /// message group of its copies, with a deduplication id of its own (a copy's id would make
    /// SQS drop a change sent within five minutes of the copy).
    ///
    /// The summary (stdout) counts sent and invalid keys; exit code 1 if any was invalid or
    /// failed.
    #[command(
        after_help = "Examples:\n  backfill-ctl refresh --keys changed.txt --bucket overseas-origin \\\n      --origin https://www.example.com --queue-url https://sqs.ap-southeast-1.amazonaws.com/123456789012/backfill\n  backfill-ctl refresh --prefix images/2026/covers/ --bucket overseas-origin ..."
    )]
    Refresh(ChangeArgs),
    /// Announce objects whose overseas copies must go.
    ///
    /// The backfill function deletes each overseas copy without asking the origin (the next
    /// viewer's miss copies it again if the origin still has it).
    ///
    /// Takes what refresh takes: --keys or --from-manifest (one message a key), or --prefix alone
    /// (one message; the function lists the bucket). The bucket is not asked first. On a FIFO
    /// queue a key's purge goes in the message group of its copies, with a deduplication id of its
    /// own.
    ///
    /// The summary (stdout) counts sent and invalid keys; exit code 1 if any was invalid or
    /// failed.
    #[command(
        after_help = "Examples:\n  echo video/withdrawn.mp4 | backfill-ctl purge --keys - --bucket overseas-origin \\\n      --origin https://www.example.com --queue-url https://sqs.ap-southeast-1.amazonaws.com/123456789012/backfill\n  backfill-ctl purge --prefix video/2019/ --bucket overseas-origin ..."
    )]
    Purge(ChangeArgs),
    Status(StatusArgs),
    Redrive(RedriveArgs),
    Check(CheckArgs),
}

/// Enqueue backfill messages for keys, so that the backfill function copies them from the
/// domestic origin before viewers ask.
///
/// Keys come from a key list (--keys) or from an origin manifest (--from-manifest), both UTF-8
/// text with one decoded key a line (images/café.jpg, not percent-encoded); surrounding spaces
/// are trimmed, a leading '/' is dropped, blank lines and lines starting with '#' are skipped,
/// repeated keys are sent once. Keys already in the bucket are skipped (one HeadObject each)
/// unless --no-check. Messages go out in SendMessageBatch calls of up to 10; entries that fail
/// for a passing reason are sent again with backoff. On a FIFO queue (URL ending in .fifo) each
/// message gets the message group and deduplication id the edge hook would give the same object.
///
/// The summary (stdout) counts sent, skipped and invalid keys, with a reason for each invalid or
/// failed one; exit code 1 if any key was invalid or failed.
#[derive(Debug, Args)]
#[command(
    group(ArgGroup::new("source").required(true).args(["keys", "from_manifest"])),
    after_help = "Examples:\n  backfill-ctl prewarm --keys top-1000.txt --bucket overseas-origin \\\n      --origin https://www.example.com --queue-url https://sqs.ap-southeast-1.amazonaws.com/123456789012/backfill\n  grep '^images/' keys.txt | backfill-ctl prewarm --keys - --rate 20 ...\n  backfill-ctl prewarm --from-manifest https://www.example.com/manifest.txt --prefix images/2026/ ..."
)]
pub struct PrewarmArgs {
    #[command(flatten)]
    pub list: KeyListArgs,
    /// Only the listed paths that start with this (for example images/2026/).
    #[arg(long)]
    pub prefix: Option<String>,
    #[command(flatten)]
    pub send: SendArgs,
    /// Send every key without asking the bucket whether it already has it.
    #[arg(long)]
    pub no_check: bool,
}

/// Where the keys of a run come from.
#[derive(Debug, Args)]
pub struct KeyListArgs {
    /// Key list file; `-` reads standard input.
    #[arg(long, value_name = "FILE|-", conflicts_with = "from_manifest")]
    pub keys: Option<String>,
    /// Origin manifest (same format as a key list), from an http(s) URL or a file.
    #[arg(long, value_name = "URL|FILE")]
    pub from_manifest: Option<String>,
}

/// Where the messages of a run go, what they name, and how fast they are sent.
#[derive(Debug, Args)]
pub struct SendArgs {
    /// The overseas bucket the backfill writes into.
    #[arg(long, value_parser = parse_bucket)]
    pub bucket: String,
    /// The domestic origin to copy from: http[s]://host[:port][/path]; the key's path is
    /// appended to the path.
    #[arg(long, value_name = "URL", value_parser = parse_origin)]
    pub origin: OriginLocation,
    /// The backfill queue.
    #[arg(long, value_name = "URL", value_parser = check_queue_url)]
    pub queue_url: String,
    /// Messages per second, at most.
    #[arg(long, value_name = "N", default_value_t = 50,
          value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub rate: u32,
    /// Put before each listed path to make its bucket key, as the edge hook's key prefix does
    /// (with mirror/, the object at /images/a.jpg goes to mirror/images/a.jpg).
    #[arg(long, value_name = "PREFIX", default_value = "", value_parser = parse_key_prefix)]
    pub key_prefix: String,
}

/// What `refresh` and `purge` take: keys (as `prewarm` reads them), or a prefix alone.
#[derive(Debug, Args)]
#[command(group(ArgGroup::new("scope").required(true).multiple(true)
    .args(["keys", "from_manifest", "prefix"])))]
pub struct ChangeArgs {
    #[command(flatten)]
    pub list: KeyListArgs,
    /// Alone: every object under this path (one message; the backfill function lists the
    /// bucket, with --key-prefix put before it). With --keys or --from-manifest: only the listed
    /// paths that start with it.
    #[arg(long)]
    pub prefix: Option<String>,
    #[command(flatten)]
    pub send: SendArgs,
}

/// Show queue depths, in-flight and dead-letter counts, the oldest message's age, and the
/// freshness table's figures.
///
/// For the backfill and image queues and their dead-letter queues: messages waiting (visible),
/// in flight (received, not yet deleted) and delayed. Each queue's DLQ is found from its RedrivePolicy. SQS has no attribute for the oldest
/// message's age, so it is read by peeking: up to 10 visible messages are received with a
/// visibility timeout of 0 (they stay available to consumers) and their SentTimestamp read. This
/// works on AWS and on local stand-ins alike (CloudWatch's ApproximateAgeOfOldestMessage exists
/// only on AWS). On a standard queue it is the oldest of a sample, not always the very oldest;
/// and a peek counts as a receive towards maxReceiveCount for the messages it sees, so do not run
/// it in a tight loop against a live queue, or give --no-age.
///
/// With --freshness-table, also what the backfill function's freshness table says: the objects
/// it tracks and those due for revalidation now (counted on the table's 'due' index, in its four
/// shards), how long the oldest has been overdue, and today's and yesterday's counters (UTC):
/// revalidated, unchanged, refreshed, deleted, kept, purged, origin requests, invalidated paths.
///
/// With --regional (one per regional stack) and --edge-function, also per bucket region, from
/// CloudWatch over --since: origin fetches (the edge hook's RegionalRequests: cache hits never
/// reach an origin), those served by the regional bucket and their share, fallbacks to the
/// domestic origin (RegionalFallbacks) and their rate, and the bytes the region's backfill
/// function copied (its Bytes, Outcome=copied, read in the bucket's region). The hook's replicas
/// write their metrics in the region that ran them: each --edge-regions region is read (one
/// GetMetricData call each) and the figures summed. A region that cannot be read (an opt-in region
/// not enabled, access denied) is named in a warning, the rest still shown, exit code 1.
#[derive(Debug, Args)]
#[command(
    group(ArgGroup::new("sources").required(true).multiple(true)
        .args(["backfill_queue_url", "image_queue_url", "freshness_table", "regional"])),
    after_help = "Examples:\n  backfill-ctl status --backfill-queue-url https://sqs.ap-southeast-1.amazonaws.com/123456789012/backfill \\\n      --image-queue-url https://sqs.ap-southeast-1.amazonaws.com/123456789012/image-tasks\n  AWS_REGION=ap-southeast-1 backfill-ctl status --freshness-table backfill-freshness --json\n  backfill-ctl status --edge-function overseas-origin-request \\\n      --regional ap-southeast-1=overseas-backfill --regional eu-west-1=overseas-backfill --since 7d"
)]
pub struct StatusArgs {
    /// The backfill queue.
    #[arg(long, value_name = "URL", value_parser = check_queue_url)]
    pub backfill_queue_url: Option<String>,
    /// The image processor's queue.
    #[arg(long, value_name = "URL", value_parser = check_queue_url)]
    pub image_queue_url: Option<String>,
    /// The backfill function's freshness table (DynamoDB, in AWS_REGION).
    #[arg(long, value_name = "NAME", value_parser = parse_table_name)]
    pub freshness_table: Option<String>,
    /// Do not peek at messages for the oldest message's age.
    #[arg(long)]
    pub no_age: bool,
    /// A regional stack: its bucket's region and its backfill function's name (repeat for each).
    #[arg(long, value_name = "REGION=BACKFILL_FUNCTION_NAME", value_parser = parse_regional,
          requires = "edge_function")]
    pub regional: Vec<RegionalStack>,
    /// The edge hook's function name (its replicas' metrics carry FunctionName us-east-1.NAME).
    #[arg(long, value_name = "NAME", value_parser = parse_function_name, requires = "regional")]
    pub edge_function: Option<String>,
    /// The regions whose edge caches run the hook (comma-separated).
    #[arg(long, value_name = "LIST", value_delimiter = ',', value_parser = parse_region,
          default_values = EDGE_REGIONS)]
    pub edge_regions: Vec<String>,
    /// The window the regional figures cover: 90m, 24h, 7d (1m to 455d).
    #[arg(long, value_name = "DURATION", value_parser = parse_since, default_value = "24h")]
    pub since: std::time::Duration,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// Move dead letters back to the queue they failed on, so that they are tried again.
///
/// Each message is received from the DLQ (hidden for 60 s), sent to the source queue with the
/// same body and message attributes, and deleted from the DLQ only once the send succeeded; on
/// FIFO queues it keeps its message group and gets a deduplication id made from its DLQ message
/// id. A message that could not be sent stays in the DLQ (visible again after 60 s). --dry-run
/// lists what would move and makes the messages visible again at once (on a FIFO DLQ it sees at
/// most 10 messages of each message group).
#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  backfill-ctl redrive --queue-url https://sqs.ap-southeast-1.amazonaws.com/123456789012/backfill --dry-run\n  backfill-ctl redrive --queue-url https://sqs.ap-southeast-1.amazonaws.com/123456789012/backfill --max 100"
)]
pub struct RedriveArgs {
    /// The source queue; its DLQ is read from its RedrivePolicy.
    #[arg(long, value_name = "URL", value_parser = check_queue_url)]
    pub queue_url: String,
    /// The DLQ, when the source queue's RedrivePolicy does not name it.
    #[arg(long, value_name = "URL", value_parser = check_queue_url)]
    pub dlq_url: Option<String>,
    /// Move at most N messages (default: all).
    #[arg(long, value_name = "N", value_parser = parse_positive)]
    pub max: Option<usize>,
    /// List what would move; move nothing.
    #[arg(long)]
    pub dry_run: bool,
}

/// Say whether keys are in the bucket, with their size, metadata and thumbnails.
///
/// For each key: size, content type, ETag, last modified, and user metadata (origin-etag and
/// origin-last-modified on a backfilled object). Keys are decoded keys (images/café.jpg), a leading '/' dropped. Thumbnails are the objects
/// under THUMBNAIL_PREFIX + key + '/', where the image processor writes each rendition as
/// {width}.{ext}. Exit code 1 if any key is missing, invalid or could not be checked.
#[derive(Debug, Args)]
#[command(
    after_help = "Example:\n  backfill-ctl check --bucket overseas-origin images/cat.jpg 'images/café au lait.png'"
)]
pub struct CheckArgs {
    /// The overseas bucket.
    #[arg(long, value_parser = parse_bucket)]
    pub bucket: String,
    /// Where the image processor writes renditions (its OUTPUT_PREFIX).
    #[arg(long, value_name = "PREFIX", default_value = "thumbnails/")]
    pub thumbnail_prefix: String,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
    /// The keys to check.
    #[arg(required = true, value_name = "KEY")]
    pub keys: Vec<String>,
}

fn parse_bucket(raw: &str) -> Result<String, String> {
    if is_bucket_name(raw) {
        Ok(raw.to_owned())
    } else {
        Err(format!("{raw:?} is not an S3 bucket name"))
    }
}

/// A DynamoDB table name: 3 to 255 of `A-Z a-z 0-9 _ - .`.
fn parse_table_name(raw: &str) -> Result<String, String> {
    let valid = (3..=255).contains(&raw.len())
        && raw
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
    if valid {
        Ok(raw.to_owned())
    } else {
        Err(format!(
            "{raw:?} is not a DynamoDB table name (3 to 255 letters, digits, '_', '-' or '.')"
        ))
    }
}

fn parse_positive(raw: &str) -> Result<usize, String> {
    raw.parse::<usize>()
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(|| format!("{raw:?} is not a whole number of at least 1"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("backfill-ctl").chain(args.iter().copied()))
    }

    #[test]
    fn prewarm_needs_one_source() {
        let common = [
            "--bucket",
            "overseas-origin",
            "--origin",
            "https://www.example.com",
            "--queue-url",
            "http://127.0.0.1:5000/123456789012/backfill",
        ];
        let with = |extra: &[&str]| {
            let mut args = vec!["prewarm"];
            args.extend_from_slice(&common);
            args.extend_from_slice(extra);
            parse(&args)
        };
        assert!(with(&[]).is_err());
        assert!(with(&["--keys", "a", "--from-manifest", "b"]).is_err());
        let Command::Prewarm(args) = with(&["--keys", "-"]).unwrap().command else {
            panic!("not prewarm");
        };
        assert_eq!(args.send.rate, 50);
        assert_eq!(args.send.origin.port, 443);
        assert!(with(&["--keys", "-", "--rate", "0"]).is_err());
        assert!(with(&["--keys", "-", "--key-prefix", "a//b"]).is_err());
    }

    #[test]
    fn changes_take_keys_or_a_prefix() {
        for command in ["refresh", "purge"] {
            let with = |extra: &[&str]| {
                let mut args = vec![
                    command,
                    "--bucket",
                    "overseas-origin",
                    "--origin",
                    "https://www.example.com",
                    "--queue-url",
                    "http://127.0.0.1:5000/123456789012/backfill",
                ];
                args.extend_from_slice(extra);
                parse(&args)
            };
            let err = with(&[]).unwrap_err();
            assert_eq!(err.exit_code(), 2);
            assert!(err.to_string().contains("--keys"), "{err}");
            let err = with(&["--keys", "a", "--from-manifest", "b"]).unwrap_err();
            assert!(err.to_string().contains("cannot be used with"), "{err}");
            let args = match (command, with(&["--prefix", "images/"]).unwrap().command) {
                ("refresh", Command::Refresh(args)) | ("purge", Command::Purge(args)) => args,
                (_, other) => panic!("{command}: {other:?}"),
            };
            assert_eq!(args.prefix.as_deref(), Some("images/"));
            assert_eq!(args.list.keys, None);
            assert_eq!(args.send.rate, 50);
            assert!(with(&["--keys", "-", "--prefix", "images/"]).is_ok());
            assert!(with(&["--from-manifest", "m.txt", "--key-prefix", "mirror/"]).is_ok());
            assert!(with(&["--prefix", "a/", "--no-check"]).is_err());
        }
    }

    #[test]
    fn status_takes_queues_or_a_freshness_table() {
        let Command::Status(args) = parse(&["status", "--freshness-table", "freshness"])
            .unwrap()
            .command
        else {
            panic!("not status");
        };
        assert_eq!(args.freshness_table.as_deref(), Some("freshness"));
        assert!(parse(&[
            "status",
            "--backfill-queue-url",
            "http://127.0.0.1:5000/1/q",
            "--freshness-table",
            "backfill-Freshness_1.v2",
            "--json",
        ])
        .is_ok());
        for bad in ["ab", "fresh ness", "table/x", &"t".repeat(256)] {
            let err = parse(&["status", "--freshness-table", bad]).unwrap_err();
            assert_eq!(err.exit_code(), 2);
            assert!(
                err.to_string().contains("is not a DynamoDB table name"),
                "{err}"
            );
        }
    }

    #[test]
    fn status_per_region_needs_the_stacks_and_the_edge_function() {
        let Command::Status(args) = parse(&[
            "status",
            "--edge-function",
            "origin-request",
            "--regional",
            "ap-southeast-1=backfill-sg",
            "--regional",
            "eu-west-1=backfill-ie",
        ])
        .unwrap()
        .command
        else {
            panic!("not status");
        };
        assert_eq!(args.edge_function.as_deref(), Some("origin-request"));
        assert_eq!(args.regional.len(), 2);
        assert_eq!(args.regional[1].backfill_function, "backfill-ie");
        assert_eq!(args.edge_regions, EDGE_REGIONS);
        assert_eq!(args.since, std::time::Duration::from_secs(86_400));
        assert_eq!(args.backfill_queue_url, None);
        let Command::Status(args) = parse(&[
            "status",
            "--backfill-queue-url",
            "http://127.0.0.1:5000/1/q",
            "--edge-function",
            "hook",
            "--regional",
            "eu-west-1=b",
            "--edge-regions",
            "eu-west-1,me-central-1",
            "--since",
            "7d",
        ])
        .unwrap()
        .command
        else {
            panic!("not status");
        };
        assert_eq!(args.edge_regions, ["eu-west-1", "me-central-1"]);
        assert_eq!(args.since, std::time::Duration::from_secs(7 * 86_400));
        for bad in [
            &["status", "--regional", "eu-west-1=b"][..],
            &[
                "status",
                "--edge-function",
                "hook",
                "--freshness-table",
                "fresh",
            ],
            &[
                "status",
                "--edge-function",
                "hook",
                "--regional",
                "eu-west-1",
            ],
            &[
                "status",
                "--edge-function",
                "hook",
                "--regional",
                "eu-west-1=b",
                "--since",
                "1w",
            ],
            &[
                "status",
                "--edge-function",
                "hook",
                "--regional",
                "eu-west-1=b",
                "--edge-regions",
                "EU",
            ],
            &[
                "status",
                "--edge-function",
                "arn:aws:lambda:us-east-1:1:function:h",
                "--regional",
                "eu-west-1=b",
            ],
        ] {
            let err = parse(bad).unwrap_err();
            assert_eq!(err.exit_code(), 2, "{bad:?}: {err}");
        }
    }

    #[test]
    fn bad_values_are_usage_errors() {
        let err = parse(&["check", "--bucket", "Bad_Bucket", "a.jpg"]).unwrap_err();
        assert_eq!(err.exit_code(), 2);
        assert!(err.to_string().contains("not an S3 bucket name"), "{err}");
        let err = parse(&["status"]).unwrap_err();
        assert_eq!(err.exit_code(), 2);
        let err = parse(&["status", "--backfill-queue-url", "backfill"]).unwrap_err();
        assert!(err.to_string().contains("not an SQS queue URL"), "{err}");
        let err = parse(&[
            "redrive",
            "--queue-url",
            "http://127.0.0.1:5000/1/q",
            "--max",
            "0",
        ])
        .unwrap_err();
        assert!(err.to_string().contains("at least 1"), "{err}");
    }
}
