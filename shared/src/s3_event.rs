//! S3 event notifications as they arrive in an SQS message body: straight from S3, through an SNS
//! topic with raw delivery (the same body), or wrapped in an SNS notification. Parsed leniently:
//! only the fields consumers read, unknown ones ignored.

use serde::Deserialize;
use time::OffsetDateTime;

use crate::error::Error;

/// What one message body carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Body {
    /// The `s3:TestEvent` S3 sends when notifications are switched on: nothing to do.
    TestEvent,
    Notices(Vec<Notice>),
}

/// One S3 event record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notice {
    pub event_name: String,
    pub event_time: Option<OffsetDateTime>,
    pub bucket: String,
    /// The key as S3 sent it: form-encoded (see [`crate::ObjectKey::from_s3_event_key`]).
    pub raw_key: String,
    pub size: Option<u64>,
    /// Without the quotes some senders put around it.
    pub etag: Option<String>,
    /// `None` when the bucket is not versioned (S3 sends `"null"` or nothing).
    pub version_id: Option<String>,
    pub sequencer: Option<String>,
}

/// What an event did to its key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// A new object at the key: any `ObjectCreated:*`.
    Created,
    /// An object deleted for good: `ObjectRemoved:Delete` (on a versioned bucket, the version
    /// the event names), `LifecycleExpiration:Delete`, and removals S3 may name in the future.
    Deleted,
    /// The key's current object hidden by a delete marker (versioned buckets):
    /// `ObjectRemoved:DeleteMarkerCreated`, `LifecycleExpiration:DeleteMarkerCreated`.
    DeleteMarkerCreated,
    /// Anything else (restores, tagging, ACLs, replication, transitions...).
    Other,
}

impl Notice {
    pub fn is_object_created(&self) -> bool {
        self.change() == Change::Created
    }

    pub fn change(&self) -> Change {
        let name = self.event_name.as_str();
        if name.starts_with("ObjectCreated:") {
            Change::Created
        } else if name.ends_with(":DeleteMarkerCreated")
            && (name.starts_with("ObjectRemoved:") || name.starts_with("LifecycleExpiration:"))
        {
            Change::DeleteMarkerCreated
        } else if name.starts_with("ObjectRemoved:") || name == "LifecycleExpiration:Delete" {
            Change::Deleted
        } else {
            Change::Other
        }
    }
}

#[derive(Deserialize)]
struct RawBody {
    #[serde(rename = "Records")]
    records: Option<Vec<RawRecord>>,
    #[serde(rename = "Event")]
    event: Option<String>,
    #[serde(rename = "Type")]
    kind: Option<String>,
    #[serde(rename = "Message")]
    message: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawRecord {
    event_name: Option<String>,
    event_time: Option<String>,
    s3: Option<RawS3>,
}

#[derive(Deserialize)]
struct RawS3 {
    bucket: Option<RawBucket>,
    object: Option<RawObject>,
}

#[derive(Deserialize)]
struct RawBucket {
    name: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawObject {
    key: Option<String>,
    size: Option<u64>,
    e_tag: Option<String>,
    version_id: Option<String>,
    sequencer: Option<String>,
}

/// Parses a message body; SNS-wrapped bodies are unwrapped once.
pub fn parse_body(body: &str) -> Result<Body, Error> {
    parse(body, true)
}

fn parse(body: &str, unwrap_sns: bool) -> Result<Body, Error> {
    let raw: RawBody = serde_json::from_str(body)
        .map_err(|e| Error::InvalidEvent(format!("body is not an S3 event notification: {e}")))?;
    if raw.event.as_deref() == Some("s3:TestEvent") {
        return Ok(Body::TestEvent);
    }
    if let Some(records) = raw.records {
        return records
            .into_iter()
            .enumerate()
            .map(|(i, record)| {
                notice(record).map_err(|e| Error::InvalidEvent(format!("record {i}: {e}")))
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Body::Notices);
    }
    match (raw.kind.as_deref(), raw.message) {
        (Some("Notification"), Some(message)) if unwrap_sns => parse(&message, false),
        _ => Err(Error::InvalidEvent(
            "body has neither Records nor an s3:TestEvent".into(),
        )),
    }
}

fn notice(record: RawRecord) -> Result<Notice, String> {
    let s3 = record.s3.ok_or("no s3 field")?;
    let object = s3.object.ok_or("no s3.object field")?;
    let event_time = match record.event_time {
        Some(raw) => Some(
            OffsetDateTime::parse(&raw, &time::format_description::well_known::Rfc3339)
                .map_err(|e| format!("eventTime {raw:?}: {e}"))?,
        ),
        None => None,
    };
    Ok(Notice {
        event_name: record.event_name.ok_or("no eventName")?,
        event_time,
        bucket: s3.bucket.and_then(|b| b.name).ok_or("no s3.bucket.name")?,
        raw_key: object.key.ok_or("no s3.object.key")?,
        size: object.size,
        etag: object
            .e_tag
            .map(|e| e.trim_matches('"').to_owned())
            .filter(|e| !e.is_empty()),
        version_id: object.version_id.filter(|v| !v.is_empty() && v != "null"),
        sequencer: object.sequencer.filter(|s| !s.is_empty()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const AWS_BODY: &str = r#"{"Records":[{"eventVersion":"2.1","eventSource":"aws:s3",
        "awsRegion":"us-east-1","eventTime":"2024-05-01T12:00:00.123Z",
        "eventName":"ObjectCreated:Put","userIdentity":{"principalId":"X"},
        "s3":{"s3SchemaVersion":"1.0","configurationId":"uploads",
        "bucket":{"name":"overseas-origin","arn":"arn:aws:s3:::overseas-origin"},
        "object":{"key":"uploads/alice/caf%C3%A9+au+lait.jpg","size":1024,
        "eTag":"d41d8cd98f00b204e9800998ecf8427e","versionId":"v1","sequencer":"0055AED6DCD90281E5"},
        "somethingNew":true}}]}"#;

    #[test]
    fn reads_an_s3_notification() {
        let Body::Notices(notices) = parse_body(AWS_BODY).unwrap() else {
            panic!("expected notices");
        };
        assert_eq!(notices.len(), 1);
        let notice = &notices[0];
        assert!(notice.is_object_created());
        assert_eq!(notice.bucket, "overseas-origin");
        assert_eq!(notice.raw_key, "uploads/alice/caf%C3%A9+au+lait.jpg");
        assert_eq!(notice.size, Some(1024));
        assert_eq!(
            notice.etag.as_deref(),
            Some("d41d8cd98f00b204e9800998ecf8427e")
        );
        assert_eq!(notice.version_id.as_deref(), Some("v1"));
        assert_eq!(notice.sequencer.as_deref(), Some("0055AED6DCD90281E5"));
        assert_eq!(
            notice.event_time.unwrap().unix_timestamp_nanos(),
            1_714_564_800_123_000_000
        );
    }

    #[test]
    fn unwraps_sns_once() {
        let wrapped = serde_json::json!({
            "Type": "Notification",
            "MessageId": "1",
            "TopicArn": "arn:aws:sns:us-east-1:123456789012:uploads",
            "Message": AWS_BODY,
        })
        .to_string();
        assert_eq!(parse_body(&wrapped).unwrap(), parse_body(AWS_BODY).unwrap());
        let twice = serde_json::json!({"Type": "Notification", "Message": wrapped}).to_string();
        assert!(parse_body(&twice).is_err());
    }

    #[test]
    fn test_event_and_quoted_etags() {
        let body = r#"{"Service":"Amazon S3","Event":"s3:TestEvent","Bucket":"b"}"#;
        assert_eq!(parse_body(body).unwrap(), Body::TestEvent);
        let body = r#"{"Records":[{"eventName":"ObjectRemoved:Delete",
            "s3":{"bucket":{"name":"b"},"object":{"key":"k","versionId":"null","eTag":"\"abc\""}}}]}"#;
        let Body::Notices(notices) = parse_body(body).unwrap() else {
            panic!("expected notices");
        };
        assert!(!notices[0].is_object_created());
        assert_eq!(notices[0].version_id, None);
        assert_eq!(notices[0].etag.as_deref(), Some("abc"));
    }

    #[test]
    fn removals_as_s3_sends_them() {
        // S3's own removal records carry the key, the sequencer and, on a versioned bucket, the
        // version id (of the deleted version, or of the delete marker): no size, no ETag.
        let body = r#"{"Records":[{"eventVersion":"2.1","eventSource":"aws:s3",
            "awsRegion":"ap-southeast-1","eventTime":"2025-10-01T08:00:00.000Z",
            "eventName":"ObjectRemoved:Delete","userIdentity":{"principalId":"X"},
            "requestParameters":{"sourceIPAddress":"10.0.0.1"},"responseElements":{},
            "s3":{"s3SchemaVersion":"1.0","configurationId":"image-removals",
            "bucket":{"name":"overseas-origin","arn":"arn:aws:s3:::overseas-origin"},
            "object":{"key":"images/a+b.jpg","sequencer":"0055AED6DCD90281E6"}}},
            {"eventName":"ObjectRemoved:DeleteMarkerCreated","eventTime":"2025-10-01T08:00:01Z",
            "s3":{"bucket":{"name":"overseas-origin"},"object":{"key":"images/c.jpg",
            "versionId":"3HL4kqtJlcpXroDTDmJ","sequencer":"0055AED6DCD90281E7"}}}]}"#;
        let Body::Notices(notices) = parse_body(body).unwrap() else {
            panic!("expected notices");
        };
        assert_eq!(notices[0].change(), Change::Deleted);
        assert!(!notices[0].is_object_created());
        assert_eq!(notices[0].sequencer.as_deref(), Some("0055AED6DCD90281E6"));
        assert_eq!((notices[0].size, notices[0].etag.as_ref()), (None, None));
        assert_eq!(notices[1].change(), Change::DeleteMarkerCreated);
        assert_eq!(
            notices[1].version_id.as_deref(),
            Some("3HL4kqtJlcpXroDTDmJ")
        );
    }

    #[test]
    fn event_names_map_to_changes() {
        let change = |name: &str| {
            let body = format!(
                r#"{{"Records":[{{"eventName":"{name}","s3":{{"bucket":{{"name":"b"}},"object":{{"key":"k"}}}}}}]}}"#
            );
            let Body::Notices(notices) = parse_body(&body).unwrap() else {
                panic!("expected notices");
            };
            notices[0].change()
        };
        for (name, expected) in [
            ("ObjectCreated:Put", Change::Created),
            ("ObjectCreated:CompleteMultipartUpload", Change::Created),
            ("ObjectRemoved:Delete", Change::Deleted),
            (
                "ObjectRemoved:DeleteMarkerCreated",
                Change::DeleteMarkerCreated,
            ),
            ("LifecycleExpiration:Delete", Change::Deleted),
            (
                "LifecycleExpiration:DeleteMarkerCreated",
                Change::DeleteMarkerCreated,
            ),
            // A removal S3 may add later is still a removal.
            ("ObjectRemoved:Purge", Change::Deleted),
            ("ObjectRestore:Completed", Change::Other),
            ("ObjectTagging:Delete", Change::Other),
            ("LifecycleTransition", Change::Other),
        ] {
            assert_eq!(change(name), expected, "{name}");
        }
    }

    #[test]
    fn null_version_and_missing_fields() {
        let body = r#"{"Records":[{"eventName":"ObjectRemoved:Delete",
            "s3":{"bucket":{"name":"b"},"object":{"key":"k","versionId":"null"}}}]}"#;
        let Body::Notices(notices) = parse_body(body).unwrap() else {
            panic!("expected notices");
        };
        assert!(!notices[0].is_object_created());
        assert_eq!(notices[0].version_id, None);
        assert_eq!(notices[0].event_time, None);
    }

    #[test]
    fn garbage_is_an_invalid_event() {
        for body in [
            "not json",
            "{}",
            r#"{"Records":[{"eventName":"ObjectCreated:Put"}]}"#,
            r#"{"Records":[{"eventName":"ObjectCreated:Put","eventTime":"yesterday","s3":{"bucket":{"name":"b"},"object":{"key":"k"}}}]}"#,
        ] {
            let err = parse_body(body).unwrap_err();
            assert!(matches!(err, Error::InvalidEvent(_)), "{body}: {err}");
        }
    }
}
