//! What a record asks of the backfill function: a copy (the backfill message the edge hook
//! sends), a change (a refresh or purge the domestic side announces), or one of the function's
//! own tasks: a part of a split copy, a restart, a revalidation sweep, paths to invalidate.
//!
//! A part task carries the copy message it belongs to, so that its origin URL and key go through
//! the same checks as the copy's, whoever wrote the task.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use shared::change::ChangeMessage;
use shared::message::{BackfillMessage, MessageError, MESSAGE_VERSION};
use time::OffsetDateTime;

use crate::invalidate::{Invalidation, INVALIDATE};
use crate::lease::Validator;

#[derive(Debug, Clone, PartialEq)]
pub enum Task {
    Copy(BackfillMessage),
    Part(PartTask),
    Restart(Restart),
    Change(ChangeMessage),
    Sweep(Sweep),
    Invalidate(Invalidation),
}

/// The revalidation schedule's tick (an EventBridge schedule sends it to the part queue, which
/// the function consumes): revalidate the objects due, within the budget of `period_seconds`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sweep {
    pub version: u64,
    /// Always `sweep`.
    pub kind: String,
    /// The schedule's period: the sweep spends that many seconds' worth of the budget.
    pub period_seconds: u64,
}

pub const SWEEP: &str = "sweep";

/// A copy enqueued again because the origin changed during its split copy; `restarts` bounds
/// how many times that may happen (an origin that keeps changing is given up).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Restart {
    pub version: u64,
    /// Always `restart`.
    pub kind: String,
    pub copy: BackfillMessage,
    pub restarts: u32,
}

impl Restart {
    pub fn new(copy: BackfillMessage, restarts: u32) -> Self {
        Restart {
            version: MESSAGE_VERSION,
            kind: RESTART.to_owned(),
            copy,
            restarts,
        }
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("a restart always serializes")
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PartTask {
    pub version: u64,
    /// Always `part`.
    pub kind: String,
    pub copy: BackfillMessage,
    pub upload_id: String,
    /// The lease generation that planned the upload: a task of another generation is dropped.
    pub generation: u64,
    /// From 1.
    pub part: u32,
    pub parts: u32,
    /// Every part's size but the last's.
    pub part_size: u64,
    /// The part's first and last byte (inclusive), as in `Range: bytes=first-last`.
    pub first: u64,
    pub last: u64,
    /// The whole object's size.
    pub size: u64,
    pub validator: Validator,
    /// Restarts of the copy so far.
    #[serde(default)]
    pub restarts: u32,
}

pub const PART: &str = "part";
pub const RESTART: &str = "restart";

impl PartTask {
    /// The part's size in bytes.
    pub fn bytes(&self) -> u64 {
        self.last - self.first + 1
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("a part task always serializes")
    }

    fn check(&self) -> Result<(), MessageError> {
        let invalid = |what: &str| Err(MessageError::Invalid(format!("part task: {what}")));
        if self.version != MESSAGE_VERSION {
            return Err(MessageError::UnsupportedVersion(self.version.to_string()));
        }
        if self.upload_id.is_empty() || self.upload_id.len() > 1024 {
            return invalid("upload_id is empty or too long");
        }
        if self.part == 0 || self.part > self.parts || self.parts > crate::config::MAX_PARTS as u32
        {
            return invalid("part is not within 1..=parts (at most 10,000)");
        }
        if self.first > self.last || self.last >= self.size {
            return invalid("the range is not within the object");
        }
        let expected = u64::from(self.part - 1).checked_mul(self.part_size);
        if self.part_size == 0 || expected != Some(self.first) {
            return invalid("the range does not start at (part - 1) x part_size");
        }
        Ok(())
    }
}

impl Task {
    pub fn parse(body: &str) -> Result<Task, MessageError> {
        let value: Value =
            serde_json::from_str(body).map_err(|e| MessageError::NotJson(e.to_string()))?;
        match value.get("kind").and_then(Value::as_str) {
            None => Ok(Task::Copy(BackfillMessage::parse(body)?)),
            Some(PART) => {
                let copy = value
                    .get("copy")
                    .ok_or_else(|| MessageError::Invalid("part task: no copy".into()))?;
                // The copy goes through every check a copy message does.
                BackfillMessage::parse(&copy.to_string())?;
                let task: PartTask = serde_json::from_value(value)
                    .map_err(|e| MessageError::Invalid(format!("part task: {e}")))?;
                task.check()?;
                Ok(Task::Part(task))
            }
            Some(RESTART) => {
                let copy = value
                    .get("copy")
                    .ok_or_else(|| MessageError::Invalid("restart: no copy".into()))?;
                BackfillMessage::parse(&copy.to_string())?;
                let restart: Restart = serde_json::from_value(value)
                    .map_err(|e| MessageError::Invalid(format!("restart: {e}")))?;
                if restart.version != MESSAGE_VERSION {
                    return Err(MessageError::UnsupportedVersion(
                        restart.version.to_string(),
                    ));
                }
                Ok(Task::Restart(restart))
            }
            Some(shared::change::REFRESH | shared::change::PURGE) => {
                Ok(Task::Change(ChangeMessage::parse(body)?))
            }
            Some(SWEEP) => {
                let sweep: Sweep = serde_json::from_value(value)
                    .map_err(|e| MessageError::Invalid(format!("sweep: {e}")))?;
                if sweep.version != MESSAGE_VERSION {
                    return Err(MessageError::UnsupportedVersion(sweep.version.to_string()));
                }
                if !(1..=86_400).contains(&sweep.period_seconds) {
                    return Err(MessageError::Invalid(
                        "sweep: period_seconds is not within 1..=86400".into(),
                    ));
                }
                Ok(Task::Sweep(sweep))
            }
            Some(INVALIDATE) => Ok(Task::Invalidate(Invalidation::parse(value)?)),
            Some(other) => Err(MessageError::Invalid(format!(
                "unknown kind {other:?} (this function reads copies, parts, restarts, \
                 refreshes, purges, sweeps and invalidations)"
            ))),
        }
    }

    /// The copy message the record belongs to, if it is about one object's copy.
    pub fn copy(&self) -> Option<&BackfillMessage> {
        match self {
            Task::Copy(copy) => Some(copy),
            Task::Part(part) => Some(&part.copy),
            Task::Restart(restart) => Some(&restart.copy),
            Task::Change(_) | Task::Sweep(_) | Task::Invalidate(_) => None,
        }
    }

    /// When the message was first written, where it says.
    pub fn enqueued_at(&self) -> Option<OffsetDateTime> {
        match self {
            Task::Change(change) => Some(change.enqueued_at),
            _ => self.copy().map(|copy| copy.enqueued_at),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn copy() -> Value {
        serde_json::json!({
            "version": 1,
            "bucket": "overseas-origin",
            "key": "video/a.mp4",
            "origin": {"protocol": "https", "host": "www.example.com", "port": 443, "path": ""},
            "uri": "/video/a.mp4",
            "request_id": "r",
            "enqueued_at": "2026-12-05T08:00:00Z",
            "trigger": "origin-request",
        })
    }

    fn part() -> Value {
        serde_json::json!({
            "version": 1, "kind": "part", "copy": copy(), "upload_id": "u1", "generation": 3,
            "part": 2, "parts": 3, "part_size": 10, "first": 10, "last": 19, "size": 25,
            "validator": {"etag": "\"abc\""},
        })
    }

    #[test]
    fn a_copy_and_a_part_parse_and_a_part_round_trips() {
        assert!(matches!(
            Task::parse(&copy().to_string()),
            Ok(Task::Copy(_))
        ));
        let Task::Part(task) = Task::parse(&part().to_string()).unwrap() else {
            panic!("a part")
        };
        assert_eq!((task.part, task.bytes()), (2, 10));
        assert_eq!(task.validator, Validator::Etag("\"abc\"".into()));
        assert_eq!(
            Task::parse(&task.to_json()).unwrap(),
            Task::Part(task.clone())
        );
        let restart = Restart::new(task.copy, 2);
        assert_eq!(
            Task::parse(&restart.to_json()).unwrap(),
            Task::Restart(restart)
        );
    }

    #[test]
    fn bad_parts_are_refused_with_a_reason() {
        let with = |field: &str, value: Value| {
            let mut task = part();
            task[field] = value;
            Task::parse(&task.to_string()).unwrap_err().to_string()
        };
        assert!(with("part", 0.into()).contains("1..=parts"));
        assert!(with("part", 4.into()).contains("1..=parts"));
        assert!(with("last", 25.into()).contains("within the object"));
        assert!(with("first", 11.into()).contains("part_size"));
        assert!(with("kind", "complete".into()).contains("unknown kind"));
        let sweep = |period: u64| {
            Task::parse(
                &serde_json::json!({"version": 1, "kind": "sweep", "period_seconds": period})
                    .to_string(),
            )
        };
        assert!(matches!(sweep(60), Ok(Task::Sweep(_))));
        assert!(sweep(0).unwrap_err().to_string().contains("period_seconds"));
        let mut refresh = copy();
        refresh["kind"] = "refresh".into();
        refresh.as_object_mut().unwrap().remove("uri");
        assert!(matches!(
            Task::parse(&refresh.to_string()),
            Ok(Task::Change(_))
        ));
        let mut bad_copy = copy();
        bad_copy["version"] = 9.into();
        assert!(with("copy", bad_copy).contains('9'));
        assert!(with("validator", serde_json::json!({"md5": "x"})).contains("part task"));
    }
}
