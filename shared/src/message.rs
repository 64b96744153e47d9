//! The backfill message: what the edge hook (or an operator) asks the backfill function to copy.
//!
//! Versioned JSON. A consumer refuses a version it does not know, and a message missing a field,
//! as permanent failures with a reason: retrying them could never succeed.

use std::fmt;
use std::fmt::Write as _;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};
use time::OffsetDateTime;

use crate::key::ObjectKey;

/// The schema version this build writes and reads.
pub const MESSAGE_VERSION: u64 = 1;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BackfillMessage {
    pub version: u64,
    /// The overseas bucket to write into.
    pub bucket: String,
    /// The key to write.
    pub key: ObjectKey,
    /// The domestic origin to fetch from.
    pub origin: OriginLocation,
    /// The percent-encoded request path the viewer asked for (no query string); the object is
    /// fetched from `origin.path` followed by this.
    pub uri: String,
    /// CloudFront's request id (or an operator's run id), to follow one miss through the logs.
    pub request_id: String,
    #[serde(with = "time::serde::rfc3339")]
    pub enqueued_at: OffsetDateTime,
    pub trigger: Trigger,
    /// What the origin answered, when the origin-response trigger saw it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed: Option<ObservedResponse>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OriginLocation {
    pub protocol: Protocol,
    pub host: String,
    pub port: u16,
    /// The origin path CloudFront prepends ("" or "/something", no trailing slash).
    #[serde(default)]
    pub path: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    Http,
    Https,
}

impl Protocol {
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Http => "http",
            Protocol::Https => "https",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        match value.to_ascii_lowercase().as_str() {
            "http" => Some(Protocol::Http),
            "https" => Some(Protocol::Https),
            _ => None,
        }
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which trigger enqueued the message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Trigger {
    OriginRequest,
    OriginResponse,
    /// An operator's pre-warm.
    Operator,
}

impl Trigger {
    pub fn as_str(self) -> &'static str {
        match self {
            Trigger::OriginRequest => "origin-request",
            Trigger::OriginResponse => "origin-response",
            Trigger::Operator => "operator",
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObservedResponse {
    pub status: u16,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_length: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub etag: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_type: Option<String>,
}

/// FIFO message groups a backfill queue's messages are spread over. A key always lands in the same
/// group; different keys are processed in parallel up to this many groups.
pub const FIFO_GROUPS: u8 = 32;

/// The FIFO queue ids of a backfill message, derived from the object alone: the edge hook and an
/// operator's pre-warm make the same ids for the same object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FifoIds {
    /// The same for every request of one object, so SQS drops the repeats of a burst (for five
    /// minutes) across all edge locations.
    pub deduplication_id: String,
    pub group_id: String,
}

impl FifoIds {
    pub fn for_object(bucket: &str, key: &ObjectKey) -> Self {
        let mut digest = Sha256::new();
        digest.update(bucket.as_bytes());
        // A byte no bucket name holds, so that ("a", "b/c") and ("a/b", "c") differ.
        digest.update([0u8]);
        digest.update(key.as_str().as_bytes());
        let digest = digest.finalize();
        let mut deduplication_id = String::with_capacity(64);
        for byte in digest.iter() {
            // Writing to a String cannot fail.
            let _ = write!(deduplication_id, "{byte:02x}");
        }
        FifoIds {
            deduplication_id,
            group_id: format!("backfill-{:02}", digest[0] % FIFO_GROUPS),
        }
    }
}

/// Why a message body was refused. Always permanent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MessageError {
    #[error("message body is not JSON: {0}")]
    NotJson(String),
    #[error("message body is not a JSON object")]
    NotAnObject,
    #[error("message has no \"version\" field")]
    MissingVersion,
    #[error("message version {0} is not supported (this build reads version {MESSAGE_VERSION})")]
    UnsupportedVersion(String),
    #[error("invalid version {MESSAGE_VERSION} message: {0}")]
    Invalid(String),
}

impl BackfillMessage {
    /// Parses and validates a message body.
    pub fn parse(body: &str) -> Result<Self, MessageError> {
        let value = versioned_object(body)?;
        let message: BackfillMessage =
            serde_json::from_value(value).map_err(|e| MessageError::Invalid(e.to_string()))?;
        message.validate()?;
        Ok(message)
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("a backfill message always serializes")
    }

    /// The URL to fetch the object from.
    pub fn origin_url(&self) -> String {
        let origin = &self.origin;
        format!(
            "{}://{}:{}{}{}",
            origin.protocol, origin.host, origin.port, origin.path, self.uri
        )
    }

    fn validate(&self) -> Result<(), MessageError> {
        let invalid = |reason: &str| Err(MessageError::Invalid(reason.to_owned()));
        if !is_bucket_name(&self.bucket) {
            return invalid("bucket is not a valid S3 bucket name");
        }
        if !is_host_name(&self.origin.host) {
            return invalid("origin host is not a host name");
        }
        if self.origin.port == 0 {
            return invalid("origin port is 0");
        }
        let path = &self.origin.path;
        if !path.is_empty() && (!path.starts_with('/') || path.ends_with('/')) {
            return invalid("origin path must be empty or start with '/' and not end with '/'");
        }
        if !self.uri.starts_with('/') || self.uri.contains(['?', '#']) || !is_uri_text(&self.uri) {
            return invalid("uri must be a percent-encoded path starting with '/'");
        }
        if self.request_id.len() > 256 {
            return invalid("request_id is longer than 256 characters");
        }
        Ok(())
    }
}

/// A message body as a JSON object of this build's version, or why not.
pub fn versioned_object(body: &str) -> Result<Value, MessageError> {
    let value: Value =
        serde_json::from_str(body).map_err(|e| MessageError::NotJson(e.to_string()))?;
    let object = value.as_object().ok_or(MessageError::NotAnObject)?;
    match object.get("version") {
        None => Err(MessageError::MissingVersion),
        Some(Value::Number(n)) if n.as_u64() == Some(MESSAGE_VERSION) => Ok(value),
        Some(other) => Err(MessageError::UnsupportedVersion(other.to_string())),
    }
}

/// S3's bucket naming rules (general purpose buckets).
pub fn is_bucket_name(name: &str) -> bool {
    (3..=63).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-')
        && name.as_bytes()[0].is_ascii_alphanumeric()
        && name.as_bytes()[name.len() - 1].is_ascii_alphanumeric()
        && !name.contains("..")
}

/// A DNS name or an IPv4 literal: letters, digits, '-' and '.', nothing that could smuggle a
/// user-info part, a port or a path into a URL.
pub fn is_host_name(host: &str) -> bool {
    !host.is_empty()
        && host.len() <= 253
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
        && !host.starts_with(['.', '-'])
}

fn is_uri_text(uri: &str) -> bool {
    uri.bytes().all(|b| b.is_ascii_graphic())
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    fn sample() -> BackfillMessage {
        BackfillMessage {
            version: MESSAGE_VERSION,
            bucket: "overseas-origin".into(),
            key: ObjectKey::new("images/a b.jpg").unwrap(),
            origin: OriginLocation {
                protocol: Protocol::Https,
                host: "www.example.com".into(),
                port: 443,
                path: "/static".into(),
            },
            uri: "/images/a%20b.jpg".into(),
            request_id: "4TyzHTaYWb1GX1qTfsHhEqV6HUDd_BzoBZnwfnvQc_1oF26ClkoUSEQ==".into(),
            enqueued_at: datetime!(2026-11-25 08:00:00.123 UTC),
            trigger: Trigger::OriginRequest,
            observed: None,
        }
    }

    #[test]
    fn round_trips_and_reads_as_documented() {
        let message = sample();
        let json = message.to_json();
        assert_eq!(BackfillMessage::parse(&json).unwrap(), message);
        let value: Value = serde_json::from_str(&json).unwrap();
        assert_eq!(value["version"], 1);
        assert_eq!(value["enqueued_at"], "2026-11-25T08:00:00.123Z");
        assert_eq!(value["trigger"], "origin-request");
        assert_eq!(value["origin"]["protocol"], "https");
        assert!(value.get("observed").is_none());
        assert_eq!(
            message.origin_url(),
            "https://www.example.com:443/static/images/a%20b.jpg"
        );
    }

    #[test]
    fn observed_response_round_trips() {
        let mut message = sample();
        message.trigger = Trigger::OriginResponse;
        message.observed = Some(ObservedResponse {
            status: 200,
            content_length: Some(12),
            etag: Some("\"abc\"".into()),
            content_type: Some("image/jpeg".into()),
        });
        assert_eq!(BackfillMessage::parse(&message.to_json()).unwrap(), message);
    }

    #[test]
    fn unknown_fields_are_tolerated() {
        let mut value = serde_json::to_value(sample()).unwrap();
        value["added_later"] = Value::from(true);
        assert!(BackfillMessage::parse(&value.to_string()).is_ok());
    }

    fn refusal(edit: impl FnOnce(&mut Value)) -> MessageError {
        let mut value = serde_json::to_value(sample()).unwrap();
        edit(&mut value);
        BackfillMessage::parse(&value.to_string()).unwrap_err()
    }

    #[test]
    fn versions_are_checked() {
        assert_eq!(
            refusal(|v| {
                v.as_object_mut().unwrap().remove("version");
            }),
            MessageError::MissingVersion
        );
        assert_eq!(
            refusal(|v| v["version"] = Value::from(2)),
            MessageError::UnsupportedVersion("2".into())
        );
        assert_eq!(
            refusal(|v| v["version"] = Value::from("1")),
            MessageError::UnsupportedVersion("\"1\"".into())
        );
    }

    #[test]
    fn missing_and_bad_fields_name_the_reason() {
        let missing = refusal(|v| {
            v.as_object_mut().unwrap().remove("bucket");
        });
        assert!(
            missing.to_string().contains("missing field `bucket`"),
            "{missing}"
        );
        let bad_key = refusal(|v| v["key"] = Value::from("a/../b"));
        assert!(bad_key.to_string().contains("'..'"), "{bad_key}");
        let bad_time = refusal(|v| v["enqueued_at"] = Value::from("yesterday"));
        assert!(matches!(bad_time, MessageError::Invalid(_)));
        let checks: &[(&str, Value)] = &[
            ("bucket", Value::from("Not_A_Bucket")),
            ("uri", Value::from("images/a.jpg")),
            ("uri", Value::from("/a.jpg?x=1")),
            ("uri", Value::from("/a b.jpg")),
        ];
        for (field, bad) in checks {
            let err = refusal(|v| v[*field] = bad.clone());
            assert!(matches!(err, MessageError::Invalid(_)), "{field}: {err}");
        }
        for host in ["user@evil.example", "evil.example:80", "a/b", "", "-x"] {
            let err = refusal(|v| v["origin"]["host"] = Value::from(host));
            assert!(matches!(err, MessageError::Invalid(_)), "{host}: {err}");
        }
        let err = refusal(|v| v["origin"]["protocol"] = Value::from("ftp"));
        assert!(matches!(err, MessageError::Invalid(_)));
        let err = refusal(|v| v["origin"]["path"] = Value::from("static/"));
        assert!(matches!(err, MessageError::Invalid(_)));
    }

    #[test]
    fn non_json_and_non_objects_are_refused() {
        assert!(matches!(
            BackfillMessage::parse("not json"),
            Err(MessageError::NotJson(_))
        ));
        assert_eq!(
            BackfillMessage::parse("[1]").unwrap_err(),
            MessageError::NotAnObject
        );
    }

    #[test]
    fn fifo_ids_depend_on_the_object_only() {
        let key = ObjectKey::new("images/1.jpg").unwrap();
        let ids = FifoIds::for_object("overseas-origin", &key);
        assert_eq!(ids, FifoIds::for_object("overseas-origin", &key));
        assert_eq!(ids.deduplication_id.len(), 64);
        assert!(ids.deduplication_id.bytes().all(|b| b.is_ascii_hexdigit()));
        assert!(ids.group_id.starts_with("backfill-"));
        let split_differently =
            FifoIds::for_object("overseas-origin/images", &ObjectKey::new("1.jpg").unwrap());
        assert_ne!(ids.deduplication_id, split_differently.deduplication_id);
    }

    #[test]
    fn bucket_names() {
        for good in ["abc", "overseas-origin", "a.b-c.1"] {
            assert!(is_bucket_name(good), "{good}");
        }
        for bad in ["ab", "ABC", "a_b", "-ab", "ab-", "a..b", &"a".repeat(64)] {
            assert!(!is_bucket_name(bad), "{bad}");
        }
    }
}
