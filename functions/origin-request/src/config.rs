//! The hook's configuration. Lambda@Edge has no environment variables, so it travels on the
//! domestic origin's custom headers (set in the template): their presence marks the origin whose
//! attempts are backfilled, and they are removed before the request goes to that origin.
//!
//! The SQS endpoint is the exception: `AWS_ENDPOINT_URL` / `AWS_ENDPOINT_URL_SQS`, honoured by the
//! SDK, point a local run at the stand-in queue. At the edge they are never set.

use std::time::Duration;

use shared::cloudfront::{header_value, Headers};
use shared::config::{error, parse_duration, ConfigError};
use shared::key::RefusedPrefixes;
use shared::message::is_bucket_name;

/// Every header of the hook's configuration starts with this; all of them are removed.
pub const HEADER_PREFIX: &str = shared::cloudfront::HOOK_HEADER_PREFIX;
/// Required; its presence marks the origin. The backfill queue's URL.
pub const QUEUE_URL: &str = "x-backfill-queue-url";
/// Required. The overseas bucket the object is written to.
pub const BUCKET: &str = "x-backfill-bucket";
/// Optional. Prepended to the request path to make the key: the S3 origin's origin path, so the
/// key is the one CloudFront asks the bucket for.
pub const KEY_PREFIX: &str = "x-backfill-key-prefix";
/// Optional. How long the hook may take when it sends, retry included (`300ms`, `1s`): when SQS
/// is slow or down, the request goes on after this long, without a backfill.
pub const SEND_BUDGET: &str = "x-backfill-send-budget";
/// Optional. How long a key just enqueued is not enqueued again by the same sandbox (`0s` turns
/// the suppression off).
pub const REPEAT_WINDOW: &str = "x-backfill-repeat-window";
/// Optional. Comma-separated key prefixes never enqueued (the upload prefix, the thumbnails),
/// compared with the whole key: the domestic origin may answer there, but a copy would land on
/// a caller's upload or the image processor's output.
pub const REFUSED_PREFIXES: &str = "x-backfill-refused-prefixes";

pub const DEFAULT_SEND_BUDGET: Duration = Duration::from_millis(300);
pub const DEFAULT_REPEAT_WINDOW: Duration = Duration::from_secs(60);
/// Origin-request triggers time out at 30 s; leave the viewer's request time to go on.
pub const MAX_SEND_BUDGET: Duration = Duration::from_secs(5);
/// Less leaves no time for even a local send.
pub const MIN_SEND_BUDGET: Duration = Duration::from_millis(10);
/// SQS accepts at most 80 characters in a queue name; with scheme, host and account a URL stays
/// well under this.
const MAX_QUEUE_URL_LEN: usize = 512;

/// What a marked origin's headers say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EdgeConfig {
    pub queue: QueueTarget,
    pub bucket: String,
    /// Without a leading '/'; empty or ending with '/'.
    pub key_prefix: String,
    pub send_budget: Duration,
    pub repeat_window: Duration,
    pub refused_prefixes: RefusedPrefixes,
}

/// Where a backfill message goes.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct QueueTarget {
    pub url: String,
    /// From the URL's host; `None` for a URL that names no region (a local stand-in).
    pub region: Option<String>,
    pub fifo: bool,
}

impl QueueTarget {
    pub fn parse(url: &str) -> Option<Self> {
        let url = url.trim();
        let rest = url
            .strip_prefix("https://")
            .or_else(|| url.strip_prefix("http://"))?;
        let (host, path) = rest.split_once('/')?;
        let mut segments = path.split('/');
        let (Some(account), Some(name), None) = (segments.next(), segments.next(), segments.next())
        else {
            return None;
        };
        let host_ok = !host.is_empty()
            && host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':'));
        let name_ok = !name.is_empty()
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
        if !host_ok || account.is_empty() || !name_ok || url.len() > MAX_QUEUE_URL_LEN {
            return None;
        }
        Some(QueueTarget {
            url: url.to_owned(),
            region: shared::aws::region_of_queue_url(url),
            fifo: name.ends_with(".fifo"),
        })
    }
}

impl EdgeConfig {
    /// `Ok(None)` when the origin is not marked (no queue URL header).
    pub fn from_headers(headers: &Headers) -> Result<Option<Self>, ConfigError> {
        let Some(raw_url) = header_value(headers, QUEUE_URL) else {
            return Ok(None);
        };
        let queue = QueueTarget::parse(raw_url).ok_or_else(|| {
            error(
                QUEUE_URL,
                &format!("is {raw_url:?}"),
                "an SQS queue URL such as https://sqs.eu-west-1.amazonaws.com/123456789012/backfill",
            )
        })?;
        let bucket = header_value(headers, BUCKET)
            .map(str::trim)
            .ok_or_else(|| error(BUCKET, "is not set", "an S3 bucket name"))?;
        if !is_bucket_name(bucket) {
            return Err(error(
                BUCKET,
                &format!("is {bucket:?}"),
                "an S3 bucket name",
            ));
        }
        let key_prefix = match header_value(headers, KEY_PREFIX) {
            None => String::new(),
            Some(raw) => shared::key::KeyPrefix::parse(raw)
                .ok_or_else(|| {
                    error(
                        KEY_PREFIX,
                        &format!("is {:?}", raw.trim()),
                        "a key prefix such as mirror/ (no empty, '.' or '..' segments)",
                    )
                })?
                .as_str()
                .to_owned(),
        };
        let send_budget = duration(headers, SEND_BUDGET, DEFAULT_SEND_BUDGET)?;
        if !(MIN_SEND_BUDGET..=MAX_SEND_BUDGET).contains(&send_budget) {
            return Err(error(
                SEND_BUDGET,
                &format!("is {send_budget:?}"),
                "a duration from 10ms to 5s",
            ));
        }
        let repeat_window = duration(headers, REPEAT_WINDOW, DEFAULT_REPEAT_WINDOW)?;
        let refused_prefixes = match header_value(headers, REFUSED_PREFIXES) {
            None => RefusedPrefixes::default(),
            Some(raw) => RefusedPrefixes::parse(raw).ok_or_else(|| {
                error(
                    REFUSED_PREFIXES,
                    &format!("is {:?}", raw.trim()),
                    RefusedPrefixes::EXPECTED,
                )
            })?,
        };
        Ok(Some(EdgeConfig {
            queue,
            bucket: bucket.to_owned(),
            key_prefix,
            send_budget,
            repeat_window,
            refused_prefixes,
        }))
    }
}

fn duration(headers: &Headers, name: &str, default: Duration) -> Result<Duration, ConfigError> {
    match header_value(headers, name) {
        None => Ok(default),
        Some(raw) => parse_duration(raw).ok_or_else(|| {
            error(
                name,
                &format!("is {raw:?}"),
                "a duration such as 250ms, 5s, 2m or 1h",
            )
        }),
    }
}

/// Removes the hook's headers, so the origin never sees them.
pub fn strip(headers: &mut Headers) {
    headers.retain(|name, _| !name.starts_with(HEADER_PREFIX));
}

#[cfg(test)]
mod tests {
    use super::*;
    use shared::cloudfront::Header;

    fn headers(pairs: &[(&str, &str)]) -> Headers {
        pairs
            .iter()
            .map(|(name, value)| (name.to_string(), vec![Header::new(*name, *value)]))
            .collect()
    }

    const QUEUE: &str = "https://sqs.ap-southeast-1.amazonaws.com/123456789012/backfill";

    #[test]
    fn unmarked_origin_has_no_config() {
        assert_eq!(
            EdgeConfig::from_headers(&headers(&[("x-other", "1")])),
            Ok(None)
        );
    }

    #[test]
    fn marked_origin_with_defaults() {
        let config =
            EdgeConfig::from_headers(&headers(&[(QUEUE_URL, QUEUE), (BUCKET, "overseas-origin")]))
                .unwrap()
                .unwrap();
        assert_eq!(
            config,
            EdgeConfig {
                queue: QueueTarget {
                    url: QUEUE.into(),
                    region: Some("ap-southeast-1".into()),
                    fifo: false,
                },
                bucket: "overseas-origin".into(),
                key_prefix: String::new(),
                send_budget: DEFAULT_SEND_BUDGET,
                repeat_window: DEFAULT_REPEAT_WINDOW,
                refused_prefixes: RefusedPrefixes::default(),
            }
        );
    }

    #[test]
    fn every_setting_is_read() {
        let config = EdgeConfig::from_headers(&headers(&[
            (
                QUEUE_URL,
                "https://sqs.eu-west-1.amazonaws.com/123456789012/backfill.fifo",
            ),
            (BUCKET, "overseas-origin"),
            (KEY_PREFIX, "/mirror/v1/"),
            (SEND_BUDGET, "150ms"),
            (REPEAT_WINDOW, "0s"),
            (REFUSED_PREFIXES, "uploads/,thumbnails/"),
        ]))
        .unwrap()
        .unwrap();
        assert!(config.queue.fifo);
        assert_eq!(config.queue.region.as_deref(), Some("eu-west-1"));
        assert_eq!(config.key_prefix, "mirror/v1/");
        assert_eq!(config.send_budget, Duration::from_millis(150));
        assert_eq!(config.repeat_window, Duration::ZERO);
        assert_eq!(
            config.refused_prefixes,
            RefusedPrefixes::parse("uploads/,thumbnails/").unwrap()
        );
    }

    #[test]
    fn local_queue_url_has_no_region() {
        let target = QueueTarget::parse("http://127.0.0.1:5000/123456789012/backfill").unwrap();
        assert_eq!(target.region, None);
        assert!(!target.fifo);
    }

    #[test]
    fn bad_settings_name_the_header() {
        let cases: &[(&[(&str, &str)], &str)] = &[
            (&[(QUEUE_URL, "backfill")], QUEUE_URL),
            (
                &[(QUEUE_URL, "https://sqs.eu-west-1.amazonaws.com/backfill")],
                QUEUE_URL,
            ),
            (
                &[(QUEUE_URL, "https://user@evil/1/q"), (BUCKET, "b-1")],
                QUEUE_URL,
            ),
            (&[(QUEUE_URL, QUEUE)], BUCKET),
            (&[(QUEUE_URL, QUEUE), (BUCKET, "Not_A_Bucket")], BUCKET),
            (
                &[(QUEUE_URL, QUEUE), (BUCKET, "b-1"), (KEY_PREFIX, "a/../b")],
                KEY_PREFIX,
            ),
            (
                &[(QUEUE_URL, QUEUE), (BUCKET, "b-1"), (KEY_PREFIX, "a//b")],
                KEY_PREFIX,
            ),
            (
                &[(QUEUE_URL, QUEUE), (BUCKET, "b-1"), (SEND_BUDGET, "soon")],
                SEND_BUDGET,
            ),
            (
                &[(QUEUE_URL, QUEUE), (BUCKET, "b-1"), (SEND_BUDGET, "5ms")],
                SEND_BUDGET,
            ),
            (
                &[(QUEUE_URL, QUEUE), (BUCKET, "b-1"), (SEND_BUDGET, "30s")],
                SEND_BUDGET,
            ),
            (
                &[
                    (QUEUE_URL, QUEUE),
                    (BUCKET, "b-1"),
                    (REPEAT_WINDOW, "1 week"),
                ],
                REPEAT_WINDOW,
            ),
            (
                &[
                    (QUEUE_URL, QUEUE),
                    (BUCKET, "b-1"),
                    (REFUSED_PREFIXES, "uploads/,,thumbnails/"),
                ],
                REFUSED_PREFIXES,
            ),
            (
                &[(QUEUE_URL, QUEUE), (BUCKET, "b-1"), (REFUSED_PREFIXES, "/")],
                REFUSED_PREFIXES,
            ),
        ];
        for (pairs, header) in cases {
            let err = EdgeConfig::from_headers(&headers(pairs)).unwrap_err();
            assert_eq!(err.variable, *header, "{pairs:?}: {err}");
        }
    }

    #[test]
    fn strip_removes_only_the_hooks_headers() {
        let mut marked = headers(&[
            (QUEUE_URL, QUEUE),
            (BUCKET, "overseas-origin"),
            (REFUSED_PREFIXES, "uploads/"),
            ("x-origin-secret", "s3cr3t"),
        ]);
        strip(&mut marked);
        assert_eq!(marked.keys().collect::<Vec<_>>(), ["x-origin-secret"]);
        strip(&mut marked);
        assert_eq!(marked.len(), 1);
    }
}
