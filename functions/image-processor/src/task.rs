//! From an S3 notice to a task: which events are acted on, and the task's identity.

use std::cmp::Ordering;
use std::time::Duration;

use shared::s3_event::Change;
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
    /// Neither a creation nor a removal (restores, tagging...).
    OtherEvent,
    /// Our own output: acting on it would loop.
    OutputPrefix,
    OutsideInputPrefixes,
    NotAnImageSuffix,
}

impl Ignored {
    pub fn label(self) -> &'static str {
        match self {
            Ignored::OtherEvent => "other_event",
            Ignored::OutputPrefix => "output_prefix",
            Ignored::OutsideInputPrefixes => "outside_input_prefixes",
            Ignored::NotAnImageSuffix => "not_an_image_suffix",
        }
    }
}

/// What a task does with its source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Render the revision the event names.
    Render,
    /// The source was removed: delete its renditions made before the removal. `delete_marker`:
    /// the key's current object was hidden by a delete marker (versioned buckets), rather than
    /// an object or a version deleted for good.
    RemoveRenditions { delete_marker: bool },
}

/// One source image to render, or whose renditions to remove, identified by the event that
/// announced it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Task {
    pub id: String,
    pub action: Action,
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
    let action = match notice.change() {
        Change::Created => Action::Render,
        Change::Deleted => Action::RemoveRenditions {
            delete_marker: false,
        },
        Change::DeleteMarkerCreated => Action::RemoveRenditions {
            delete_marker: true,
        },
        Change::Other => return Ok(Decision::Ignore(Ignored::OtherEvent)),
    };
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
    let revision = notice.version_id.as_deref().or(notice.etag.as_deref());
    let id = match action {
        Action::Render => task_id(&notice.bucket, &key, revision, notice.sequencer.as_deref()),
        Action::RemoveRenditions { .. } => removal_id(notice, &key, revision),
    };
    Ok(Decision::Process(Task {
        id,
        action,
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

/// A removal's id: `bucket/key|removed:version-or-etag|sequencer`, apart from any creation's. An
/// event without a sequencer (not S3's own) is told apart by its time, so that a key deleted,
/// created again and deleted again is two removals, while a redelivery is still the same one.
fn removal_id(notice: &Notice, key: &ObjectKey, revision: Option<&str>) -> String {
    let order = notice.sequencer.clone().or_else(|| {
        notice
            .event_time
            .map(|time| format!("@{}", time.unix_timestamp_nanos() / 1_000_000))
    });
    task_id(
        &notice.bucket,
        key,
        Some(&format!("removed:{}", revision.unwrap_or("-"))),
        order.as_deref(),
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
                "ObjectRestore:Completed",
                "images/a.jpg",
                Ignored::OtherEvent,
            ),
            (
                "ObjectRemoved:Delete",
                "thumbnails/images/a.jpg/160.jpg",
                Ignored::OutputPrefix,
            ),
            (
                "ObjectRemoved:Delete",
                "other/a.jpg",
                Ignored::OutsideInputPrefixes,
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
    fn removals_of_images_remove_their_renditions() {
        let Decision::Process(task) = decide(
            &config(),
            &notice("ObjectRemoved:Delete", "images/caf%C3%A9+1.JPG"),
        )
        .unwrap() else {
            panic!("expected a task");
        };
        assert_eq!(
            task.action,
            Action::RemoveRenditions {
                delete_marker: false
            }
        );
        assert_eq!(task.key.as_str(), "images/café 1.JPG");
        // Apart from the creation of the same revision.
        assert_eq!(
            task.id,
            "overseas-origin/images/café 1.JPG|removed:abc|0055AED6DCD90281E5"
        );
        let mut marker = notice("ObjectRemoved:DeleteMarkerCreated", "uploads/a.png");
        marker.etag = None;
        marker.version_id = Some("3HL4kqtJlcpXroDTDmJ".into());
        let Decision::Process(task) = decide(&config(), &marker).unwrap() else {
            panic!("expected a task");
        };
        assert_eq!(
            task.action,
            Action::RemoveRenditions {
                delete_marker: true
            }
        );
        assert_eq!(
            task.id,
            "overseas-origin/uploads/a.png|removed:3HL4kqtJlcpXroDTDmJ|0055AED6DCD90281E5"
        );
        // Without a sequencer (moto's events), the event's time tells two removals apart.
        let mut unordered = notice("ObjectRemoved:Delete", "images/a.jpg");
        unordered.sequencer = None;
        unordered.event_time = Some(time::macros::datetime!(2025-10-01 08:00:00.123 UTC));
        let Decision::Process(task) = decide(&config(), &unordered).unwrap() else {
            panic!("expected a task");
        };
        assert_eq!(
            task.id,
            "overseas-origin/images/a.jpg|removed:abc|@1759305600123"
        );
        unordered.event_time = None;
        unordered.etag = None;
        let Decision::Process(task) = decide(&config(), &unordered).unwrap() else {
            panic!("expected a task");
        };
        assert_eq!(task.id, "overseas-origin/images/a.jpg|removed:-|-");
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
            (
                include_str!("../../../events/image-removed.json"),
                Some("images/summer 2024/café terrace.jpg"),
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
                    Decision::Process(task) => {
                        let removal = notices[0].event_name.starts_with("ObjectRemoved:");
                        assert_eq!(
                            task.action == Action::Render,
                            !removal,
                            "{}",
                            notices[0].event_name
                        );
                        Some(task.key.into_string())
                    }
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
