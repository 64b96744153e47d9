//! The overseas bucket, through the AWS SDK: whether keys are there, what they carry, and what
//! lies under a prefix.

use std::collections::BTreeMap;

use aws_config::SdkConfig;
use aws_sdk_s3::error::SdkError;
use aws_smithy_types::date_time::Format;
use serde::Serialize;
use shared::ObjectKey;

use crate::error::CtlError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Presence {
    Present,
    Absent,
}

/// What HeadObject tells of an object.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ObjectInfo {
    pub size: Option<i64>,
    pub content_type: Option<String>,
    pub etag: Option<String>,
    pub last_modified: Option<String>,
    pub cache_control: Option<String>,
    pub content_encoding: Option<String>,
    /// User metadata (`x-amz-meta-*`): `origin-etag`, `origin-last-modified` for a backfilled
    /// object, `source-*` for a thumbnail.
    pub metadata: BTreeMap<String, String>,
}

/// An object listed under a prefix.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Listed {
    pub key: String,
    pub size: Option<i64>,
}

/// A 403 on HeadObject is also how S3 answers for a missing key to a reader without
/// s3:ListBucket.
const FORBIDDEN_HINT: &str =
    "S3 answers 403 for a missing key when these credentials lack s3:ListBucket on the bucket";

#[derive(Debug, Clone)]
pub struct Bucket {
    client: aws_sdk_s3::Client,
    pub name: String,
}

impl Bucket {
    pub fn new(config: &SdkConfig, name: &str) -> Self {
        Bucket {
            client: shared::aws::s3_client(config),
            name: name.to_owned(),
        }
    }

    /// A missing bucket answers HeadObject with 404 too: ask once, so that it is not read as
    /// every key missing.
    pub async fn check_exists(&self) -> Result<(), CtlError> {
        match self.client.head_bucket().bucket(&self.name).send().await {
            Ok(_) => Ok(()),
            Err(err) if err.as_service_error().is_some_and(|e| e.is_not_found()) => {
                Err(CtlError::MissingBucket {
                    bucket: self.name.clone(),
                    detail: shared::Error::aws("HeadBucket", err).to_string(),
                })
            }
            Err(err) => Err(shared::Error::aws("HeadBucket", err).into()),
        }
    }

    /// The object's attributes, or `None` when it is not there.
    pub async fn head(&self, key: &ObjectKey) -> Result<Option<ObjectInfo>, String> {
        let output = self
            .client
            .head_object()
            .bucket(&self.name)
            .key(key.as_str())
            .send()
            .await;
        let output = match output {
            Ok(output) => output,
            Err(err) if err.as_service_error().is_some_and(|e| e.is_not_found()) => {
                return Ok(None)
            }
            Err(err) => {
                let forbidden =
                    matches!(&err, SdkError::ServiceError(e) if e.raw().status().as_u16() == 403);
                let mut text = shared::Error::aws("HeadObject", err).to_string();
                if forbidden {
                    text.push_str(&format!(" ({FORBIDDEN_HINT})"));
                }
                return Err(text);
            }
        };
        Ok(Some(ObjectInfo {
            size: output.content_length(),
            content_type: output.content_type().map(str::to_owned),
            etag: output.e_tag().map(str::to_owned),
            last_modified: output
                .last_modified()
                .and_then(|t| t.fmt(Format::DateTime).ok()),
            cache_control: output.cache_control().map(str::to_owned),
            content_encoding: output.content_encoding().map(str::to_owned),
            metadata: output
                .metadata()
                .map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
                .unwrap_or_default(),
        }))
    }

    pub async fn presence(&self, key: &ObjectKey) -> Result<Presence, String> {
        Ok(match self.head(key).await? {
            Some(_) => Presence::Present,
            None => Presence::Absent,
        })
    }

    /// Every object under `prefix`, in key order.
    pub async fn list(&self, prefix: &str) -> Result<Vec<Listed>, String> {
        let mut pages = self
            .client
            .list_objects_v2()
            .bucket(&self.name)
            .prefix(prefix)
            .into_paginator()
            .send();
        let mut listed = Vec::new();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| shared::Error::aws("ListObjectsV2", e).to_string())?;
            listed.extend(page.contents().iter().map(|object| Listed {
                key: object.key().unwrap_or_default().to_owned(),
                size: object.size(),
            }));
        }
        Ok(listed)
    }
}
