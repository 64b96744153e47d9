//! The change message: what the domestic side (an operator's `backfill-ctl refresh` / `purge`, or
//! the CMS itself) announces on the backfill queue when objects changed or went away at home.
//!
//! ```json
//! {"version": 1, "kind": "refresh", "bucket": "overseas-origin",
//!  "origin": {"protocol": "https", "host": "www.example.com", "port": 443, "path": ""},
//!  "key": "images/cat.jpg", "request_id": "cms-4711", "enqueued_at": "2026-12-05T08:00:00Z"}
//! ```
//!
//! - `kind`: `refresh` revalidates the overseas copy against the origin (a conditional GET:
//!   unchanged, replaced, or deleted when the origin answers 404 or 410); `purge` removes the
//!   overseas copy without asking the origin (the next viewer's miss copies it again if the
//!   origin still has it).
//! - Exactly one of `key` (one object; `uri`, its percent-encoded path at the origin, defaults to
//!   the key less the function's key prefix) or `prefix` (every object the bucket holds under
//!   that key prefix, listed by the function and announced one by one).
//! - `source`, `continuation` and `busy` are written by the function itself: whether a refresh
//!   comes from the revalidation schedule, where a prefix's listing goes on, and how many times a
//!   change was put back because another copy of its key was in flight.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use time::OffsetDateTime;

use crate::key::ObjectKey;
use crate::message::{
    is_bucket_name, versioned_object, BackfillMessage, MessageError, OriginLocation, Trigger,
    MESSAGE_VERSION,
};

/// The `kind` of a refresh.
pub const REFRESH: &str = "refresh";
/// The `kind` of a purge.
pub const PURGE: &str = "purge";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ChangeKind {
    Refresh,
    Purge,
}

impl ChangeKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ChangeKind::Refresh => REFRESH,
            ChangeKind::Purge => PURGE,
        }
    }
}

/// Who asked for the change.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ChangeSource {
    /// The domestic side announced it.
    #[default]
    Announced,
    /// The revalidation schedule picked the object.
    Schedule,
}

impl ChangeSource {
    pub fn as_str(self) -> &'static str {
        match self {
            ChangeSource::Announced => "announced",
            ChangeSource::Schedule => "schedule",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChangeMessage {
    pub version: u64,
    pub kind: ChangeKind,
    pub bucket: String,
    pub origin: OriginLocation,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<ObjectKey>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uri: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    #[serde(default)]
    pub request_id: String,
    #[serde(with = "time::serde::rfc3339")]
    pub enqueued_at: OffsetDateTime,
    #[serde(default)]
    pub source: ChangeSource,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub continuation: Option<String>,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub busy: u32,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// What a change is about.
#[derive(Debug, Clone, PartialEq)]
pub enum Scope<'a> {
    Key(&'a ObjectKey),
    Prefix(&'a str),
}

impl ChangeMessage {
    /// A change of one key.
    pub fn for_key(
        kind: ChangeKind,
        bucket: &str,
        origin: &OriginLocation,
        key: ObjectKey,
        request_id: &str,
        now: OffsetDateTime,
    ) -> Self {
        ChangeMessage {
            version: MESSAGE_VERSION,
            kind,
            bucket: bucket.to_owned(),
            origin: origin.clone(),
            key: Some(key),
            uri: None,
            prefix: None,
            request_id: request_id.to_owned(),
            enqueued_at: now,
            source: ChangeSource::Announced,
            continuation: None,
            busy: 0,
        }
    }

    /// A change of every object under `prefix`.
    pub fn for_prefix(
        kind: ChangeKind,
        bucket: &str,
        origin: &OriginLocation,
        prefix: &str,
        request_id: &str,
        now: OffsetDateTime,
    ) -> Self {
        ChangeMessage {
            key: None,
            prefix: Some(prefix.to_owned()),
            ..ChangeMessage::for_key(
                kind,
                bucket,
                origin,
                ObjectKey::new("k").expect("a valid key"),
                request_id,
                now,
            )
        }
    }

    /// Whether a message body is a change message (its `kind` says so).
    pub fn is_change(value: &Value) -> bool {
        matches!(
            value.get("kind").and_then(Value::as_str),
            Some(REFRESH | PURGE)
        )
    }

    /// Parses and validates a message body.
    pub fn parse(body: &str) -> Result<Self, MessageError> {
        let value = versioned_object(body)?;
        let message: ChangeMessage = serde_json::from_value(value)
            .map_err(|e| MessageError::Invalid(format!("change: {e}")))?;
        message.validate()?;
        Ok(message)
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("a change message always serializes")
    }

    pub fn scope(&self) -> Scope<'_> {
        match (&self.key, &self.prefix) {
            (Some(key), _) => Scope::Key(key),
            (None, Some(prefix)) => Scope::Prefix(prefix),
            (None, None) => unreachable!("validated: a key or a prefix"),
        }
    }

    /// The copy message of a key's change, as the edge hook would have written it, `key_prefix`
    /// taken off the key to make its path when the message names no `uri`. `None` for a prefix.
    pub fn copy(&self, key_prefix: &str) -> Result<Option<BackfillMessage>, MessageError> {
        let Some(key) = &self.key else {
            return Ok(None);
        };
        let uri = match &self.uri {
            Some(uri) => uri.clone(),
            None => {
                let path = key.as_str().strip_prefix(key_prefix).ok_or_else(|| {
                    MessageError::Invalid(format!(
                        "change: the key {:?} is not under the key prefix {key_prefix:?}",
                        key.as_str()
                    ))
                })?;
                ObjectKey::new(path)
                    .map_err(|e| MessageError::Invalid(format!("change: {e}")))?
                    .to_uri_path()
            }
        };
        let copy = BackfillMessage {
            version: MESSAGE_VERSION,
            bucket: self.bucket.clone(),
            key: key.clone(),
            origin: self.origin.clone(),
            uri,
            request_id: self.request_id.clone(),
            enqueued_at: self.enqueued_at,
            trigger: Trigger::Operator,
            observed: None,
        };
        // The copy goes through every check a copy message does.
        BackfillMessage::parse(&copy.to_json())?;
        Ok(Some(copy))
    }

    fn validate(&self) -> Result<(), MessageError> {
        let invalid = |reason: &str| Err(MessageError::Invalid(format!("change: {reason}")));
        if !is_bucket_name(&self.bucket) {
            return invalid("bucket is not a valid S3 bucket name");
        }
        match (&self.key, &self.prefix) {
            (Some(_), Some(_)) | (None, None) => {
                return invalid("give exactly one of \"key\" and \"prefix\"")
            }
            (None, Some(prefix)) if prefix.len() > 1024 => {
                return invalid("prefix is longer than 1,024 bytes")
            }
            (None, Some(_)) if self.uri.is_some() => {
                return invalid("\"uri\" names one object: it goes with \"key\", not \"prefix\"")
            }
            _ => {}
        }
        if self.request_id.len() > 256 {
            return invalid("request_id is longer than 256 characters");
        }
        // The origin's checks are the copy message's.
        let probe = BackfillMessage {
            version: MESSAGE_VERSION,
            bucket: self.bucket.clone(),
            key: ObjectKey::new("k").expect("a valid key"),
            origin: self.origin.clone(),
            uri: self.uri.clone().unwrap_or_else(|| "/k".to_owned()),
            request_id: String::new(),
            enqueued_at: self.enqueued_at,
            trigger: Trigger::Operator,
            observed: None,
        };
        BackfillMessage::parse(&probe.to_json())
            .map_err(|e| MessageError::Invalid(format!("change: {e}")))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(extra: Value) -> String {
        let mut message = serde_json::json!({
            "version": 1,
            "kind": "refresh",
            "bucket": "overseas-origin",
            "origin": {"protocol": "https", "host": "www.example.com", "port": 443, "path": ""},
            "key": "mirror/images/café au lait.jpg",
            "enqueued_at": "2026-12-05T08:00:00Z",
        });
        for (name, value) in extra.as_object().unwrap() {
            if value.is_null() {
                message.as_object_mut().unwrap().remove(name);
            } else {
                message[name] = value.clone();
            }
        }
        message.to_string()
    }

    #[test]
    fn a_key_refresh_becomes_the_copy_the_edge_would_have_sent() {
        let change = ChangeMessage::parse(&body(serde_json::json!({}))).unwrap();
        assert_eq!(change.kind, ChangeKind::Refresh);
        assert_eq!(change.source, ChangeSource::Announced);
        let copy = change.copy("mirror/").unwrap().unwrap();
        assert_eq!(copy.uri, "/images/caf%C3%A9%20au%20lait.jpg");
        assert_eq!(copy.key.as_str(), "mirror/images/café au lait.jpg");
        let err = change.copy("other/").unwrap_err().to_string();
        assert!(err.contains("not under the key prefix"), "{err}");
        // A uri given is taken as it is, after the copy's own checks.
        let change = ChangeMessage::parse(&body(serde_json::json!({"uri": "/a%20b.jpg"}))).unwrap();
        assert_eq!(change.copy("").unwrap().unwrap().uri, "/a%20b.jpg");
        assert_eq!(ChangeMessage::parse(&change.to_json()).unwrap(), change);
    }

    #[test]
    fn a_prefix_purge_round_trips_and_has_no_copy() {
        let change = ChangeMessage::parse(&body(
            serde_json::json!({"kind": "purge", "key": null, "prefix": "images/", "continuation": "t", "busy": 2}),
        ))
        .unwrap();
        assert_eq!(change.scope(), Scope::Prefix("images/"));
        assert_eq!(change.copy("").unwrap(), None);
        assert_eq!(ChangeMessage::parse(&change.to_json()).unwrap(), change);
        let built = ChangeMessage::for_prefix(
            ChangeKind::Purge,
            "overseas-origin",
            &change.origin,
            "images/",
            "",
            change.enqueued_at,
        );
        assert_eq!(built.scope(), Scope::Prefix("images/"));
        assert!(ChangeMessage::is_change(
            &serde_json::from_str(&built.to_json()).unwrap()
        ));
    }

    #[test]
    fn bad_changes_are_refused_with_a_reason() {
        let refused = |extra: Value| ChangeMessage::parse(&body(extra)).unwrap_err().to_string();
        assert!(refused(serde_json::json!({"prefix": "a/"})).contains("exactly one"));
        assert!(refused(serde_json::json!({"key": null})).contains("exactly one"));
        assert!(refused(serde_json::json!({"kind": "evict"})).contains("change"));
        assert!(refused(serde_json::json!({"bucket": "Bad_Bucket"})).contains("bucket"));
        assert!(refused(serde_json::json!({"uri": "no-slash"})).contains("uri"));
        assert!(refused(serde_json::json!({"key": "../x"})).contains("change"));
        assert!(refused(
            serde_json::json!({"origin": {"protocol": "ftp", "host": "h", "port": 1}})
        )
        .contains("change"));
        assert!(refused(serde_json::json!({"version": 2})).contains('2'));
        assert!(
            refused(serde_json::json!({"key": null, "prefix": "a/", "uri": "/a"})).contains("uri")
        );
    }
}
