//! CloudFront invalidations of what changed, batched.
//!
//! A refresh that replaced or deleted a copy sends its path to the invalidation queue. That queue
//! reaches this function in large batches (up to 1,000 messages gathered over a batching window),
//! and each batch is one CreateInvalidation: CloudFront allows 3,000 paths in progress per
//! distribution (15 with a wildcard) and charges for each path past the first 1,000 a month, so
//! paths are deduplicated, and a directory with many changed paths becomes one wildcard.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use shared::message::{MessageError, MESSAGE_VERSION};
use tokio::time::Instant;

use crate::error::BackfillError;

pub const INVALIDATE: &str = "invalidate";
/// Paths in one invalidation: a third of CloudFront's 3,000 in progress, so that three batches
/// may overlap.
pub const MAX_PATHS: usize = 1_000;
/// Wildcard paths in one invalidation: CloudFront allows 15 in progress.
pub const MAX_WILDCARDS: usize = 5;

/// Paths to invalidate (percent-encoded, as viewers ask for them).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Invalidation {
    pub version: u64,
    /// Always `invalidate`.
    pub kind: String,
    pub paths: Vec<String>,
}

impl Invalidation {
    pub fn new(paths: Vec<String>) -> Self {
        Invalidation {
            version: MESSAGE_VERSION,
            kind: INVALIDATE.to_owned(),
            paths,
        }
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("an invalidation always serializes")
    }

    pub fn parse(value: serde_json::Value) -> Result<Self, MessageError> {
        let invalidation: Invalidation = serde_json::from_value(value)
            .map_err(|e| MessageError::Invalid(format!("invalidation: {e}")))?;
        if invalidation.version != MESSAGE_VERSION {
            return Err(MessageError::UnsupportedVersion(
                invalidation.version.to_string(),
            ));
        }
        if let Some(bad) = invalidation.paths.iter().find(|p| !is_path(p)) {
            return Err(MessageError::Invalid(format!(
                "invalidation: {bad:?} is not a percent-encoded path starting with '/'"
            )));
        }
        Ok(invalidation)
    }
}

/// What CloudFront takes as one path: starts with `/`, printable ASCII (viewer paths are
/// percent-encoded), `*` only at its end, under 4,000 characters.
fn is_path(path: &str) -> bool {
    path.starts_with('/')
        && path.len() < 4_000
        && path.bytes().all(|b| b.is_ascii_graphic())
        && path.find('*').is_none_or(|at| at == path.len() - 1)
}

/// The paths of one invalidation: each once, in order. Wildcards (`dir/*`, a source's
/// renditions) beyond `max_wildcards` become one, over their common directory; a path a wildcard
/// covers goes. Past `max_paths`, the directories with the most changed paths become `dir/*` (as
/// many as wildcards are left), and if that is not enough, everything is `/*`.
pub fn batch_paths<'a>(
    paths: impl IntoIterator<Item = &'a str>,
    max_paths: usize,
    max_wildcards: usize,
) -> Vec<String> {
    let unique: BTreeSet<&str> = paths.into_iter().collect();
    let (wild, exact): (BTreeSet<&str>, BTreeSet<&str>) =
        unique.into_iter().partition(|path| path.ends_with('*'));
    let mut wildcards: BTreeSet<String> = wild.iter().map(|w| (*w).to_owned()).collect();
    if wildcards.len() > max_wildcards.max(1) {
        wildcards = BTreeSet::from([format!("{}*", common_directory(&wild))]);
    }
    let covered = |path: &str| {
        wildcards
            .iter()
            .any(|w| path.starts_with(w.trim_end_matches('*')))
    };
    let exact: Vec<&str> = exact.into_iter().filter(|p| !covered(p)).collect();
    if exact.len() + wildcards.len() <= max_paths {
        let mut batch: Vec<String> = wildcards.into_iter().collect();
        batch.extend(exact.into_iter().map(str::to_owned));
        batch.sort();
        return batch;
    }
    let mut by_directory: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for path in &exact {
        let directory = &path[..=path.rfind('/').expect("a path starts with '/'")];
        by_directory.entry(directory).or_default().push(path);
    }
    let mut largest: Vec<(&str, usize)> = by_directory
        .iter()
        .map(|(directory, paths)| (*directory, paths.len()))
        .collect();
    largest.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    let mut count = exact.len() + wildcards.len();
    let mut collapsed = BTreeSet::new();
    let left = max_wildcards.saturating_sub(wildcards.len());
    for (directory, paths) in largest.into_iter().take(left) {
        if count <= max_paths {
            break;
        }
        collapsed.insert(directory);
        count = count - paths + 1;
    }
    if count > max_paths {
        return vec!["/*".to_owned()];
    }
    let mut batch: Vec<String> = wildcards.into_iter().collect();
    batch.extend(collapsed.iter().map(|d| format!("{d}*")));
    batch.extend(
        by_directory
            .into_iter()
            .filter(|(directory, _)| !collapsed.contains(directory))
            .flat_map(|(_, paths)| paths)
            .map(str::to_owned),
    );
    batch.sort();
    batch
}

/// The longest directory (ending in `/`) every path is under.
fn common_directory(paths: &BTreeSet<&str>) -> String {
    let mut common = paths.first().copied().unwrap_or("/").to_owned();
    for path in paths {
        while !path.starts_with(&common) {
            common.pop();
        }
    }
    match common.rfind('/') {
        Some(at) => common[..=at].to_owned(),
        None => "/".to_owned(),
    }
}

/// The caller reference of a batch: the same records give the same reference, so a batch
/// delivered again after CloudFront took it is the same invalidation, not a second one.
pub fn caller_reference<'a>(message_ids: impl IntoIterator<Item = &'a str>) -> String {
    let ids: BTreeSet<&str> = message_ids.into_iter().collect();
    let mut digest = Sha256::new();
    for id in ids {
        digest.update(id.as_bytes());
        digest.update([0u8]);
    }
    let digest = digest.finalize();
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("backfill-{}", &hex[..40])
}

pub struct CloudFront {
    client: aws_sdk_cloudfront::Client,
    distribution_id: String,
}

impl CloudFront {
    pub fn new(client: aws_sdk_cloudfront::Client, distribution_id: String) -> Self {
        CloudFront {
            client,
            distribution_id,
        }
    }

    /// Creates the invalidation; its id. CloudFront's TooManyInvalidationsInProgress and
    /// throttling are retryable (the batch comes back after its visibility timeout).
    pub async fn invalidate(
        &self,
        paths: Vec<String>,
        caller_reference: String,
        deadline: Instant,
    ) -> Result<String, BackfillError> {
        use aws_sdk_cloudfront::types::{InvalidationBatch, Paths};
        let timeouts = shared::aws::timeouts_until(self.client.config().timeout_config(), deadline)
            .ok_or(BackfillError::Deadline)?;
        let quantity = paths.len() as i32;
        let batch = InvalidationBatch::builder()
            .paths(
                Paths::builder()
                    .quantity(quantity)
                    .set_items(Some(paths))
                    .build()
                    .map_err(|e| invalid_request(e.to_string()))?,
            )
            .caller_reference(caller_reference)
            .build()
            .map_err(|e| invalid_request(e.to_string()))?;
        let created = self
            .client
            .create_invalidation()
            .distribution_id(&self.distribution_id)
            .invalidation_batch(batch)
            .customize()
            .config_override(
                aws_sdk_cloudfront::config::Builder::default().timeout_config(timeouts),
            )
            .send()
            .await
            .map_err(|err| {
                if let aws_sdk_cloudfront::error::SdkError::TimeoutError(_) = err {
                    return BackfillError::Deadline;
                }
                BackfillError::Aws(shared::Error::aws("CreateInvalidation", err))
            })?;
        Ok(created
            .invalidation
            .map(|invalidation| invalidation.id)
            .unwrap_or_default())
    }
}

fn invalid_request(message: String) -> BackfillError {
    BackfillError::Aws(shared::Error::Aws {
        operation: "CreateInvalidation",
        message,
        retryable: false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_sent_once_and_crowded_directories_become_wildcards() {
        let paths = ["/a/1.jpg", "/a/1.jpg", "/b/2.jpg"];
        assert_eq!(batch_paths(paths, 10, 5), ["/a/1.jpg", "/b/2.jpg"]);
        let many: Vec<String> = (0..8)
            .map(|i| format!("/a/{i}.jpg"))
            .chain((0..3).map(|i| format!("/b/{i}.jpg")))
            .chain(["/c.jpg".to_owned()])
            .collect();
        let batch = batch_paths(many.iter().map(String::as_str), 6, 5);
        assert_eq!(
            batch,
            ["/a/*", "/b/0.jpg", "/b/1.jpg", "/b/2.jpg", "/c.jpg"]
        );
        // Too many directories for the wildcards allowed: everything.
        let spread: Vec<String> = (0..20).map(|i| format!("/d{i}/x.jpg")).collect();
        assert_eq!(
            batch_paths(spread.iter().map(String::as_str), 10, 5),
            ["/*"]
        );
    }

    #[test]
    fn renditions_wildcards_beyond_the_limit_become_one() {
        let paths = [
            "/a.jpg",
            "/thumbnails/a.jpg/*",
            "/thumbnails/b.jpg/*",
            "/thumbnails/b.jpg/160.jpg",
        ];
        assert_eq!(
            batch_paths(paths, 10, 5),
            ["/a.jpg", "/thumbnails/a.jpg/*", "/thumbnails/b.jpg/*"]
        );
        let many: Vec<String> = (0..8)
            .map(|i| format!("/thumbnails/images/{i}.jpg/*"))
            .chain(["/images/0.jpg".to_owned()])
            .collect();
        assert_eq!(
            batch_paths(many.iter().map(String::as_str), 10, 5),
            ["/images/0.jpg", "/thumbnails/images/*"]
        );
    }

    #[test]
    fn one_set_of_records_is_one_caller_reference() {
        let a = caller_reference(["m2", "m1"]);
        assert_eq!(a, caller_reference(["m1", "m2", "m1"]));
        assert_ne!(a, caller_reference(["m1"]));
        assert!(a.len() < 128);
    }

    #[test]
    fn invalidations_round_trip_and_bad_paths_are_refused() {
        let invalidation = Invalidation::new(vec!["/images/caf%C3%A9.jpg".into()]);
        let value: serde_json::Value = serde_json::from_str(&invalidation.to_json()).unwrap();
        assert_eq!(Invalidation::parse(value).unwrap(), invalidation);
        for bad in ["images/a.jpg", "/a b.jpg", "/a/*.jpg"] {
            let value = serde_json::json!({"version": 1, "kind": "invalidate", "paths": [bad]});
            assert!(Invalidation::parse(value).is_err(), "{bad}");
        }
    }
}
