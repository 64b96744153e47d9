//! `check`: whether keys are in the bucket, what they carry, and their thumbnails.

use std::fmt::Write as _;

use aws_config::SdkConfig;
use serde::Serialize;
use shared::ObjectKey;

use crate::cli::CheckArgs;
use crate::error::{CtlError, Outcome};
use crate::input::parse_key_args;
use crate::store::{Bucket, Listed, ObjectInfo};

/// Where the image processor writes a source's renditions: it names each
/// `{output prefix}{source key}/{width}.{ext}`, so all of them share this prefix.
pub fn thumbnails_prefix(output_prefix: &str, key: &ObjectKey) -> String {
    format!("{output_prefix}{key}/")
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KeyReport {
    pub key: String,
    pub present: bool,
    pub object: Option<ObjectInfo>,
    pub thumbnails_prefix: Option<String>,
    pub thumbnails: Vec<Listed>,
    /// Why the key could not be checked (invalid, or S3 refused).
    pub error: Option<String>,
}

impl KeyReport {
    fn failed(key: String, error: String) -> Self {
        KeyReport {
            key,
            present: false,
            object: None,
            thumbnails_prefix: None,
            thumbnails: Vec::new(),
            error: Some(error),
        }
    }

    /// Missing, invalid or not checked.
    pub fn is_failure(&self) -> bool {
        !self.present || self.error.is_some()
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        if let Some(error) = &self.error {
            let _ = writeln!(out, "{}: {error}", self.key);
            return out;
        }
        match &self.object {
            None => {
                let _ = writeln!(out, "{}: not in the bucket", self.key);
            }
            Some(object) => {
                let _ = writeln!(out, "{}: in the bucket", self.key);
                let fields = [
                    ("size", object.size.map(|s| format!("{s} bytes"))),
                    ("content type", object.content_type.clone()),
                    ("etag", object.etag.clone()),
                    ("last modified", object.last_modified.clone()),
                    ("cache control", object.cache_control.clone()),
                    ("content encoding", object.content_encoding.clone()),
                ];
                for (name, value) in fields {
                    if let Some(value) = value {
                        let _ = writeln!(out, "  {name}: {value}");
                    }
                }
                if object.metadata.is_empty() {
                    let _ = writeln!(out, "  metadata: none");
                } else {
                    let _ = writeln!(out, "  metadata:");
                    for (name, value) in &object.metadata {
                        let _ = writeln!(out, "    {name}: {value}");
                    }
                }
            }
        }
        if let Some(prefix) = &self.thumbnails_prefix {
            if self.thumbnails.is_empty() {
                let _ = writeln!(out, "  thumbnails under {prefix}: none");
            } else {
                let _ = writeln!(
                    out,
                    "  thumbnails under {prefix}: {}",
                    self.thumbnails.len()
                );
                for thumbnail in &self.thumbnails {
                    let size = thumbnail
                        .size
                        .map_or_else(|| "? bytes".to_owned(), |s| format!("{s} bytes"));
                    let _ = writeln!(out, "    {}  {size}", thumbnail.key);
                }
            }
        }
        out
    }
}

pub async fn run(args: CheckArgs, config: &SdkConfig) -> Result<Outcome, CtlError> {
    let (keys, invalid) = parse_key_args(&args.keys);
    let bucket = Bucket::new(config, &args.bucket);
    bucket.check_exists().await?;
    let mut reports: Vec<KeyReport> = invalid
        .into_iter()
        .map(|entry| KeyReport::failed(entry.text, format!("invalid key: {}", entry.reason)))
        .collect();
    for key in keys {
        reports.push(check_key(&bucket, &key, &args.thumbnail_prefix).await);
    }
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&reports).expect("a check report serializes")
        );
    } else {
        for report in &reports {
            print!("{}", report.render());
        }
    }
    Ok(Outcome::from_failures(
        reports.iter().filter(|r| r.is_failure()).count(),
    ))
}

async fn check_key(bucket: &Bucket, key: &ObjectKey, thumbnail_prefix: &str) -> KeyReport {
    let object = match bucket.head(key).await {
        Ok(object) => object,
        Err(error) => return KeyReport::failed(key.to_string(), error),
    };
    let prefix = thumbnails_prefix(thumbnail_prefix, key);
    let (thumbnails, error) = match bucket.list(&prefix).await {
        Ok(listed) => (listed, None),
        Err(error) => (Vec::new(), Some(error)),
    };
    KeyReport {
        key: key.to_string(),
        present: object.is_some(),
        object,
        thumbnails_prefix: Some(prefix),
        thumbnails,
        error,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn thumbnails_sit_under_the_whole_source_key() {
        let key = ObjectKey::new("images/a b.png").unwrap();
        assert_eq!(
            thumbnails_prefix("thumbnails/", &key),
            "thumbnails/images/a b.png/"
        );
    }

    #[test]
    fn reports_read_plainly() {
        let present = KeyReport {
            key: "images/a.jpg".into(),
            present: true,
            object: Some(ObjectInfo {
                size: Some(1234),
                content_type: Some("image/jpeg".into()),
                etag: Some("\"e\"".into()),
                metadata: BTreeMap::from([("origin-etag".into(), "\"o\"".into())]),
                ..ObjectInfo::default()
            }),
            thumbnails_prefix: Some("thumbnails/images/a.jpg/".into()),
            thumbnails: vec![Listed {
                key: "thumbnails/images/a.jpg/160.jpg".into(),
                size: Some(99),
            }],
            error: None,
        };
        assert!(!present.is_failure());
        assert_eq!(
            present.render(),
            "images/a.jpg: in the bucket\n\
             \x20 size: 1234 bytes\n\
             \x20 content type: image/jpeg\n\
             \x20 etag: \"e\"\n\
             \x20 metadata:\n\
             \x20   origin-etag: \"o\"\n\
             \x20 thumbnails under thumbnails/images/a.jpg/: 1\n\
             \x20   thumbnails/images/a.jpg/160.jpg  99 bytes\n"
        );
        let absent = KeyReport {
            key: "images/b.jpg".into(),
            present: false,
            object: None,
            thumbnails_prefix: Some("thumbnails/images/b.jpg/".into()),
            thumbnails: Vec::new(),
            error: None,
        };
        assert!(absent.is_failure());
        assert_eq!(
            absent.render(),
            "images/b.jpg: not in the bucket\n  thumbnails under thumbnails/images/b.jpg/: none\n"
        );
        let invalid = KeyReport::failed("a/../b".into(), "invalid key: nope".into());
        assert_eq!(invalid.render(), "a/../b: invalid key: nope\n");
    }
}
