//! File versions and the change feed, as pure functions: which S3 events make a version record,
//! what the record says (S3's word, read back with HeadObject, never the client's), and the
//! cursor positions of the feed.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use shared::s3_event::Notice;
use shared::ObjectKey;
use time::macros::format_description;
use time::OffsetDateTime;

use crate::auth::Caller;
use crate::error::Error;

/// A checksum as S3 reports it for a stored object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredChecksum {
    /// `sha256`, `crc32c`, or another algorithm S3 reports.
    pub algorithm: String,
    pub value: String,
    /// `FULL_OBJECT` or `COMPOSITE` (a checksum of the parts' checksums), when S3 says.
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
}

/// What HeadObject says of an object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectHead {
    pub size: u64,
    pub etag: String,
    pub content_type: Option<String>,
    pub checksum: Option<StoredChecksum>,
    pub version_id: Option<String>,
    pub last_modified: Option<OffsetDateTime>,
}

/// One version of one file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileVersion {
    pub key: String,
    /// The caller whose prefix holds the key, who uploaded it.
    pub owner: String,
    /// Sorts versions of a key in upload order and names one write: the S3 event's time (to the
    /// millisecond) and its sequencer. A sender without sequencers (moto) may announce one write
    /// twice, at two event times: then the object's Last-Modified and ETag name the write.
    pub version: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub s3_version_id: Option<String>,
    pub size: u64,
    pub etag: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub checksum: Option<StoredChecksum>,
    pub content_type: String,
    pub uploaded_at: String,
    pub recorded_at_ms: u64,
    /// The version's position in the owner's change feed.
    pub change: String,
}

/// Why an event makes no record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ignored {
    NotCreated,
    OutsideUploads,
    /// The object is gone (deleted after the event).
    Gone,
    /// The key holds a newer object than this event's (an unversioned bucket keeps only the
    /// latest; its own event records it).
    Superseded,
}

impl Ignored {
    pub fn as_str(self) -> &'static str {
        match self {
            Ignored::NotCreated => "not_created",
            Ignored::OutsideUploads => "outside_uploads",
            Ignored::Gone => "gone",
            Ignored::Superseded => "superseded",
        }
    }
}

/// An object an event says was created under the upload prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub bucket: String,
    pub key: ObjectKey,
    pub owner: String,
    pub event_time: OffsetDateTime,
    pub etag: Option<String>,
    pub version_id: Option<String>,
    pub sequencer: Option<String>,
}

/// Decides whether an S3 event is about an upload.
pub fn target(notice: &Notice, upload_prefix: &str) -> Result<Result<Target, Ignored>, Error> {
    if !notice.is_object_created() {
        return Ok(Err(Ignored::NotCreated));
    }
    let key = ObjectKey::from_s3_event_key(&notice.raw_key)?;
    let Some(owner) = key
        .as_str()
        .strip_prefix(upload_prefix)
        .and_then(|rest| rest.split_once('/'))
        .filter(|(_, name)| !name.is_empty())
        .and_then(|(owner, _)| Caller::new(owner))
    else {
        return Ok(Err(Ignored::OutsideUploads));
    };
    let event_time = notice
        .event_time
        .ok_or_else(|| Error::InvalidEvent("ObjectCreated record without eventTime".into()))?;
    Ok(Ok(Target {
        bucket: notice.bucket.clone(),
        key,
        owner: owner.id().to_owned(),
        event_time,
        etag: notice.etag.clone(),
        version_id: notice.version_id.clone(),
        sequencer: notice.sequencer.clone(),
    }))
}

/// The record of `target` from what S3 holds now; `None` when S3 no longer holds it.
pub fn version_record(
    target: &Target,
    head: Option<&ObjectHead>,
    now_ms: u64,
) -> Result<FileVersion, Ignored> {
    let head = head.ok_or(Ignored::Gone)?;
    let head_etag = head.etag.trim_matches('"');
    if target.version_id.is_none()
        && target
            .etag
            .as_deref()
            .is_some_and(|etag| etag.trim_matches('"') != head_etag)
    {
        return Err(Ignored::Superseded);
    }
    let uploaded_at = timestamp(target.event_time);
    let version = match &target.sequencer {
        Some(sequencer) => format!("{uploaded_at}/{sequencer}"),
        None => format!(
            "{}/{head_etag}",
            timestamp(head.last_modified.unwrap_or(target.event_time))
        ),
    };
    Ok(FileVersion {
        key: target.key.to_string(),
        owner: target.owner.clone(),
        change: change_id(now_ms, target.key.as_str(), &version),
        version,
        s3_version_id: head
            .version_id
            .clone()
            .or_else(|| target.version_id.clone()),
        size: head.size,
        etag: head_etag.to_owned(),
        checksum: head.checksum.clone(),
        content_type: head
            .content_type
            .clone()
            .unwrap_or_else(|| "application/octet-stream".to_owned()),
        uploaded_at,
        recorded_at_ms: now_ms,
    })
}

/// A fixed-width UTC timestamp with milliseconds, so that text order is time order.
pub fn timestamp(at: OffsetDateTime) -> String {
    at.to_offset(time::UtcOffset::UTC)
        .format(format_description!(
            "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
        ))
        .expect("a UTC time formats")
}

/// A feed position: the time the record was written, then a hash that keeps positions unique.
pub fn change_id(recorded_ms: u64, key: &str, version: &str) -> String {
    let digest = Sha256::digest(format!("{key}\n{version}").as_bytes());
    let suffix: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
    format!("{recorded_ms:013}-{suffix}")
}

/// The last feed position a reader may see now: changes younger than `settle_ms` wait.
pub fn feed_horizon(now_ms: u64, settle_ms: u64) -> String {
    format!("{:013}-ffffffffffffffff", now_ms.saturating_sub(settle_ms))
}

/// Whether a cursor is past the horizon: handed out by an invocation whose clock is ahead, or
/// before `FEED_SETTLE` grew. Nothing after it is readable yet (and a DynamoDB `BETWEEN` whose
/// lower bound is above its upper one is an invalid query, not an empty one).
pub fn past_horizon(cursor: Option<&str>, horizon: &str) -> bool {
    cursor.is_some_and(|cursor| cursor > horizon)
}

/// A cursor a client sent back, if it is one the feed handed out.
pub fn check_cursor(raw: &str) -> Result<String, Error> {
    let valid = raw.len() == 30
        && raw.as_bytes()[13] == b'-'
        && raw[..13].bytes().all(|b| b.is_ascii_digit())
        && raw[14..]
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    if valid {
        Ok(raw.to_owned())
    } else {
        Err(Error::InvalidCursor(raw.to_owned()))
    }
}

/// The message published for a new version. Subscribers deduplicate on `key` + `version`:
/// delivery is at least once.
pub fn change_message(version: &FileVersion) -> serde_json::Value {
    serde_json::json!({
        "type": "file.version",
        "key": version.key,
        "owner": version.owner,
        "version": version.version,
        "s3_version_id": version.s3_version_id,
        "size": version.size,
        "etag": version.etag,
        "checksum": version.checksum,
        "content_type": version.content_type,
        "uploaded_at": version.uploaded_at,
        "change": version.change,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    fn notice(event: &str, raw_key: &str) -> Notice {
        Notice {
            event_name: event.into(),
            event_time: Some(datetime!(2024-05-01 12:00:00.123 UTC)),
            bucket: "overseas-origin".into(),
            raw_key: raw_key.into(),
            size: Some(5),
            etag: Some("abc".into()),
            version_id: None,
            sequencer: Some("0055AED6DCD90281E5".into()),
        }
    }

    fn head(etag: &str) -> ObjectHead {
        ObjectHead {
            size: 5,
            etag: format!("\"{etag}\""),
            content_type: Some("image/jpeg".into()),
            checksum: Some(StoredChecksum {
                algorithm: "crc32c".into(),
                value: "mnG7TA==".into(),
                kind: Some("FULL_OBJECT".into()),
            }),
            version_id: None,
            last_modified: Some(datetime!(2024-05-01 12:00:00 UTC)),
        }
    }

    #[test]
    fn uploads_are_targets() {
        let target = target(
            &notice("ObjectCreated:Put", "uploads%2Falice%2Fa+b.jpg"),
            "uploads/",
        )
        .unwrap()
        .unwrap();
        assert_eq!(target.key.as_str(), "uploads/alice/a b.jpg");
        assert_eq!(target.owner, "alice");
        // An IAM caller's prefix, as S3 encodes it in the event (`:` `+` `@` escaped).
        let iam = super::target(
            &notice(
                "ObjectCreated:Put",
                "uploads/111122223333%3AAROAXXXXXXXXXXXXXXXXX%3Aalice%2Bops%40example.com/a.jpg",
            ),
            "uploads/",
        )
        .unwrap()
        .unwrap();
        assert_eq!(
            iam.owner,
            "111122223333:AROAXXXXXXXXXXXXXXXXX:alice+ops@example.com"
        );
    }

    #[test]
    fn other_events_are_ignored() {
        let cases = [
            (
                "ObjectRemoved:Delete",
                "uploads/alice/a.jpg",
                Ignored::NotCreated,
            ),
            ("ObjectCreated:Put", "images/a.jpg", Ignored::OutsideUploads),
            (
                "ObjectCreated:Put",
                "uploads/a.jpg",
                Ignored::OutsideUploads,
            ),
            (
                "ObjectCreated:Put",
                "uploads/alice/",
                Ignored::OutsideUploads,
            ),
            (
                "ObjectCreated:Put",
                "uploads/a%20b/c.jpg",
                Ignored::OutsideUploads,
            ),
        ];
        for (event, key, expected) in cases {
            assert_eq!(
                target(&notice(event, key), "uploads/").unwrap(),
                Err(expected),
                "{event} {key}"
            );
        }
        let mut timeless = notice("ObjectCreated:Put", "uploads/alice/a.jpg");
        timeless.event_time = None;
        assert!(matches!(
            target(&timeless, "uploads/"),
            Err(Error::InvalidEvent(_))
        ));
        assert!(matches!(
            target(
                &notice("ObjectCreated:Put", "uploads/alice/%2E%2E/x"),
                "uploads/"
            ),
            Err(Error::InvalidKey(_))
        ));
    }

    #[test]
    fn records_say_what_s3_holds() {
        let target = target(
            &notice("ObjectCreated:Put", "uploads/alice/a.jpg"),
            "uploads/",
        )
        .unwrap()
        .unwrap();
        let record = version_record(&target, Some(&head("abc")), 1_714_564_801_000).unwrap();
        assert_eq!(
            record.version,
            "2024-05-01T12:00:00.123Z/0055AED6DCD90281E5"
        );
        assert_eq!(record.etag, "abc");
        assert_eq!(record.content_type, "image/jpeg");
        assert_eq!(record.checksum.as_ref().unwrap().value, "mnG7TA==");
        assert_eq!(record.uploaded_at, "2024-05-01T12:00:00.123Z");
        assert!(record.change.starts_with("1714564801000-"));
        assert!(check_cursor(&record.change).is_ok());
        assert_eq!(
            version_record(&target, Some(&head("newer")), 0),
            Err(Ignored::Superseded)
        );
        assert_eq!(version_record(&target, None, 0), Err(Ignored::Gone));
        // A versioned bucket's head is of the event's own version, whatever the key holds now.
        let versioned = Target {
            version_id: Some("v1".into()),
            ..target.clone()
        };
        let record = version_record(&versioned, Some(&head("other")), 0).unwrap();
        assert_eq!(record.s3_version_id.as_deref(), Some("v1"));
    }

    #[test]
    fn without_sequencers_one_write_is_one_version() {
        // moto announces a completed multipart upload twice, a millisecond apart.
        let mut put = notice("ObjectCreated:Put", "uploads/alice/a.jpg");
        put.sequencer = None;
        let mut complete = put.clone();
        complete.event_name = "ObjectCreated:CompleteMultipartUpload".into();
        complete.event_time = Some(datetime!(2024-05-01 12:00:00.124 UTC));
        let versions: Vec<String> = [put, complete]
            .iter()
            .map(|n| {
                let target = target(n, "uploads/").unwrap().unwrap();
                version_record(&target, Some(&head("abc")), 0)
                    .unwrap()
                    .version
            })
            .collect();
        assert_eq!(versions[0], versions[1]);
        assert_eq!(versions[0], "2024-05-01T12:00:00.000Z/abc");
    }

    #[test]
    fn versions_sort_by_upload_time() {
        let earlier = timestamp(datetime!(2024-05-01 09:59:59.999 UTC));
        let later = timestamp(datetime!(2024-05-01 10:00:00.001 UTC));
        assert!(earlier < later);
        assert_eq!(later, "2024-05-01T10:00:00.001Z");
        assert_eq!(
            timestamp(datetime!(2024-05-01 12:00:00 +02:00)),
            "2024-05-01T10:00:00.000Z"
        );
    }

    #[test]
    fn feed_positions() {
        let a = change_id(1_000, "k", "v1");
        let b = change_id(1_000, "k", "v2");
        assert_ne!(a, b);
        assert!(a < change_id(1_001, "k", "v1"));
        let horizon = feed_horizon(3_000, 2_000);
        assert!(a <= horizon && b <= horizon);
        assert!(change_id(1_001, "k", "v") > horizon);
        assert_eq!(feed_horizon(5, 10), "0000000000000-ffffffffffffffff");
        // A cursor inside the settle window, or from a clock ahead, is past the horizon.
        assert!(past_horizon(Some(&change_id(2_500, "k", "v")), &horizon));
        assert!(past_horizon(
            Some("9999999999999-0000000000000000"),
            &horizon
        ));
        assert!(!past_horizon(Some(&a), &horizon));
        assert!(!past_horizon(Some(&horizon), &horizon));
        assert!(!past_horizon(None, &horizon));
        for bad in [
            "",
            "123",
            "0000000001000-XYZ",
            "0000000001000_0123456789abcdef",
        ] {
            assert!(check_cursor(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn change_messages_carry_the_version() {
        let target = target(
            &notice("ObjectCreated:Put", "uploads/alice/a.jpg"),
            "uploads/",
        )
        .unwrap()
        .unwrap();
        let record = version_record(&target, Some(&head("abc")), 7).unwrap();
        let message = change_message(&record);
        assert_eq!(message["type"], "file.version");
        assert_eq!(message["key"], "uploads/alice/a.jpg");
        assert_eq!(message["version"], record.version);
        assert_eq!(message["checksum"]["type"], "FULL_OBJECT");
    }
}
