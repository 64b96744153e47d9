//! From an S3 notice to a task: which events are acted on, and the task's identity.

use std::cmp::Ordering;
use std::time::Duration;

use shared::ObjectKey;
use time::OffsetDateTime;

use crate::config::Config;
use crate::error::Error;
use crate::event::Notice;

/// Source suffixes the processor reads, compared without regard to case.
const IMAGE_SUFFIXES: [&str; 5] = [".jpg", ".jpeg", ".png", ".webp", ".gif"];

/// Why a notice needs no work.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ignored {
    NotObjectCreated,
    /// Our own output: acting on it would loop.
    OutputPrefix,
    OutsideInputPrefixes,
    NotAnImageSuffix,
}

impl Ignored {
    pub fn label(self) -> &'static str {
        match self {
            Ignored::NotObjectCreated => "not_object_created",
            Ignored::OutputPrefix => "output_prefix",
            Ignored::OutsideInputPrefixes => "outside_input_prefixes",
            Ignored::NotAnImageSuffix => "not_an_image_suffix",
        }
    }
}

/// One source image to render, identified by the event that announced it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Task {
    pub id: String,
    pub bucket: String,
    pub key: ObjectKey,
    pub size: Option<u64>,
    pub etag: Option<String>,
    pub version_id: Option<String>,
    pub sequencer: Option<String>,
    pub event_time: Option<OffsetDateTime>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Ignore(Ignored),
    Process(Task),
}

/// Decides what a notice asks for. Errors are permanent: a key that cannot be decoded.
pub fn decide(config: &Config, notice: &Notice) -> Result<Decision, Error> {
    if !notice.is_object_created() {
        return Ok(Decision::Ignore(Ignored::NotObjectCreated));
    }
    let key = ObjectKey::from_s3_event_key(&notice.raw_key)?;
    if key.as_str().starts_with(&config.output_prefix) {
        return Ok(Decision::Ignore(Ignored::OutputPrefix));
    }
    if !config
        .input_prefixes
        .iter()
        .any(|prefix| key.as_str().starts_with(prefix.as_str()))
    {
        return Ok(Decision::Ignore(Ignored::OutsideInputPrefixes));
    }
    if !has_image_suffix(key.as_str()) {
        return Ok(Decision::Ignore(Ignored::NotAnImageSuffix));
    }
    Ok(Decision::Process(Task {
        id: task_id(
            &notice.bucket,
            &key,
            notice.version_id.as_deref().or(notice.etag.as_deref()),
            notice.sequencer.as_deref(),
        ),
        bucket: notice.bucket.clone(),
        key,
        size: notice.size,
        etag: notice.etag.clone(),
        version_id: notice.version_id.clone(),
        sequencer: notice.sequencer.clone(),
        event_time: notice.event_time,
    }))
}

fn has_image_suffix(key: &str) -> bool {
    let lower = key.to_lowercase();
    IMAGE_SUFFIXES.iter().any(|suffix| lower.ends_with(suffix))
}

/// `bucket/key|version-or-etag|sequencer`. The bucket has no `/` and the last two parts no `|`,
/// so the id reads back unambiguously whatever the key holds.
pub fn task_id(
    bucket: &str,
    key: &ObjectKey,
    revision: Option<&str>,
    sequencer: Option<&str>,
) -> String {
    format!(
        "{bucket}/{key}|{}|{}",
        revision.unwrap_or("-"),
        sequencer.unwrap_or("-")
    )
}

/// Orders two S3 sequencers of the same key: the shorter is right-padded with zeros, then the
/// hexadecimal strings compare as text (S3's documented rule).
pub fn compare_sequencers(a: &str, b: &str) -> Ordering {
    let width = a.len().max(b.len());
    let pad = |s: &str| format!("{:0<width$}", s.to_ascii_uppercase());
    pad(a).cmp(&pad(b))
}

/// How long a claim on a task lasts: until this invocation's deadline, when there is one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lease {
    /// Milliseconds since the epoch.
    pub until_ms: u64,
}

/// Lease used when the context carries no deadline (a local invocation): Lambda's longest timeout.
const LEASE_WITHOUT_DEADLINE: Duration = Duration::from_secs(15 * 60);

impl Lease {
    pub fn for_deadline(deadline_ms: u64, now_ms: u64) -> Self {
        let until_ms = if deadline_ms > now_ms {
            deadline_ms
        } else {
            now_ms + LEASE_WITHOUT_DEADLINE.as_millis() as u64
        };
        Lease { until_ms }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shared::config::Env;

    fn config() -> Config {
        Config::from_env(&Env::from_pairs([
            ("TASK_TABLE", "t"),
            ("INPUT_PREFIXES", "images/,uploads/"),
            ("OUTPUT_PREFIX", "thumbnails/"),
        ]))
        .unwrap()
    }

    fn notice(event: &str, raw_key: &str) -> Notice {
        Notice {
            event_name: event.into(),
            event_time: None,
            bucket: "overseas-origin".into(),
            raw_key: raw_key.into(),
            size: Some(10),
            etag: Some("abc".into()),
            version_id: None,
            sequencer: Some("0055AED6DCD90281E5".into()),
        }
    }

    #[test]
    fn images_under_input_prefixes_are_processed() {
        let Decision::Process(task) = decide(
            &config(),
            &notice("ObjectCreated:Put", "images/caf%C3%A9+1%2B1.JPG"),
        )
        .unwrap() else {
            panic!("expected a task");
        };
        assert_eq!(task.key.as_str(), "images/café 1+1.JPG");
        assert_eq!(
            task.id,
            "overseas-origin/images/café 1+1.JPG|abc|0055AED6DCD90281E5"
        );
        assert!(matches!(
            decide(
                &config(),
                &notice("ObjectCreated:CompleteMultipartUpload", "uploads/a.webp")
            )
            .unwrap(),
            Decision::Process(_)
        ));
    }

    #[test]
    fn everything_else_is_ignored_with_a_reason() {
        let cases = [
            (
                "ObjectRemoved:Delete",
                "images/a.jpg",
                Ignored::NotObjectCreated,
            ),
            (
                "ObjectCreated:Put",
                "thumbnails/images/a.jpg/160.jpg",
                Ignored::OutputPrefix,
            ),
            (
                "ObjectCreated:Put",
                "thumbnails%2Fimages%2Fa.jpg%2F160.jpg",
                Ignored::OutputPrefix,
            ),
            (
                "ObjectCreated:Put",
                "other/a.jpg",
                Ignored::OutsideInputPrefixes,
            ),
            (
                "ObjectCreated:Put",
                "images/a.txt",
                Ignored::NotAnImageSuffix,
            ),
            ("ObjectCreated:Put", "images/jpg", Ignored::NotAnImageSuffix),
        ];
        for (event, key, expected) in cases {
            assert_eq!(
                decide(&config(), &notice(event, key)).unwrap(),
                Decision::Ignore(expected),
                "{event} {key}"
            );
        }
    }

    #[test]
    fn undecodable_keys_are_permanent_failures() {
        let err = decide(&config(), &notice("ObjectCreated:Put", "images/%zz.jpg")).unwrap_err();
        assert!(matches!(err, Error::InvalidKey(_)));
    }

    #[test]
    fn the_version_wins_over_the_etag_in_the_id() {
        let mut n = notice("ObjectCreated:Put", "images/a.png");
        n.version_id = Some("3HL4kqtJlcpXroDTDmJ".into());
        let Decision::Process(task) = decide(&config(), &n).unwrap() else {
            panic!("expected a task");
        };
        assert_eq!(
            task.id,
            "overseas-origin/images/a.png|3HL4kqtJlcpXroDTDmJ|0055AED6DCD90281E5"
        );
        n.etag = None;
        n.version_id = None;
        n.sequencer = None;
        let Decision::Process(task) = decide(&config(), &n).unwrap() else {
            panic!("expected a task");
        };
        assert_eq!(task.id, "overseas-origin/images/a.png|-|-");
    }

    #[test]
    fn sequencers_compare_after_right_padding() {
        assert_eq!(
            compare_sequencers("0055AED6DCD90281E5", "0055AED6DCD90281E6"),
            Ordering::Less
        );
        assert_eq!(
            compare_sequencers("0055AED6DCD90281E5", "0055AED6DCD90281E5"),
            Ordering::Equal
        );
        // "0055AED6DCD90281E5" padded is "0055AED6DCD90281E500", less than the longer one.
        assert_eq!(
            compare_sequencers("0055AED6DCD90281E5", "0055AED6DCD90281E501"),
            Ordering::Less
        );
        assert_eq!(
            compare_sequencers("0056", "0055AED6DCD90281E501"),
            Ordering::Greater
        );
        assert_eq!(compare_sequencers("00ab", "00AB"), Ordering::Equal);
    }

    #[test]
    fn lease_ends_at_the_deadline() {
        assert_eq!(Lease::for_deadline(10_000, 4_000).until_ms, 10_000);
        // No deadline (Context::default()): the longest Lambda timeout.
        assert_eq!(Lease::for_deadline(0, 4_000).until_ms, 4_000 + 900_000);
    }

    #[test]
    fn sample_events_decide_as_documented() {
        use crate::event::{parse_body, Body};
        use aws_lambda_events::event::sqs::SqsEvent;
        let samples = [
            (
                include_str!("../../../events/image-put.json"),
                Some("images/summer 2024/café terrace.jpg"),
            ),
            (
                include_str!("../../../events/image-sns.json"),
                Some("images/logo.png"),
            ),
            (include_str!("../../../events/image-test-event.json"), None),
            (include_str!("../../../events/image-own-output.json"), None),
        ];
        for (json, processed) in samples {
            let event: SqsEvent = serde_json::from_str(json).unwrap();
            let body = event.records[0].body.as_deref().unwrap();
            let decided = match parse_body(body).unwrap() {
                Body::TestEvent => None,
                Body::Notices(notices) => match decide(&config(), &notices[0]).unwrap() {
                    Decision::Process(task) => Some(task.key.into_string()),
                    Decision::Ignore(reason) => {
                        assert_eq!(reason, Ignored::OutputPrefix);
                        None
                    }
                },
            };
            assert_eq!(decided.as_deref(), processed);
        }
    }
}
