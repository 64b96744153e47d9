//! The object store the processor reads sources from and writes renditions to, behind a narrow
//! trait, with its S3 adapter.

use std::collections::HashMap;
use std::future::Future;

use aws_sdk_s3::primitives::ByteStream;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;
use bytes::{Bytes, BytesMut};
use shared::ObjectKey;
use tokio::time::{timeout_at, Instant};

use crate::error::Error;
use crate::rendition::SourceStamp;
use crate::task::Task;

/// The source as read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fetched {
    Object {
        bytes: Bytes,
    },
    /// Deleted, or overwritten since the event (the revision it names is gone): nothing to render.
    Gone,
}

/// A rendition to write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenditionWrite {
    pub bucket: String,
    pub key: ObjectKey,
    pub body: Bytes,
    pub content_type: &'static str,
    pub cache_control: String,
    pub stamp: SourceStamp,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Put {
    Created,
    /// Something is already at the key; nothing was written.
    Exists,
}

/// A rendition that is already there: its ETag and the source it was made from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Existing {
    pub etag: String,
    pub stamp: SourceStamp,
}

/// Which write of a key an object is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Revision {
    /// Without quotes, as S3 events carry it.
    pub etag: String,
    pub version_id: Option<String>,
}

/// What a conditional delete did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Deleted {
    Deleted,
    /// The object is no longer the one with the ETag given (412, or 409 for a write in flight):
    /// nothing was deleted.
    Changed,
    /// Nothing at the key (404): already gone.
    Gone,
}

/// Every call ends by its `deadline`: one cut there fails with [`Error::Deadline`].
pub trait ObjectStore: Send + Sync {
    /// Reads the revision of the source that `task` names, refusing more than `max_bytes`.
    fn fetch(
        &self,
        task: &Task,
        max_bytes: u64,
        deadline: Instant,
    ) -> impl Future<Output = Result<Fetched, Error>> + Send;

    /// Writes the rendition unless something is at its key already.
    fn put_if_absent(
        &self,
        write: &RenditionWrite,
        deadline: Instant,
    ) -> impl Future<Output = Result<Put, Error>> + Send;

    /// The rendition at `key`, if any.
    fn existing(
        &self,
        bucket: &str,
        key: &ObjectKey,
        deadline: Instant,
    ) -> impl Future<Output = Result<Option<Existing>, Error>> + Send;

    /// Overwrites the rendition only if it is still the one with `etag`; `Put::Exists` otherwise.
    fn replace(
        &self,
        write: &RenditionWrite,
        etag: &str,
        deadline: Instant,
    ) -> impl Future<Output = Result<Put, Error>> + Send;

    /// The key's current object, if any (a delete marker is none).
    fn current(
        &self,
        bucket: &str,
        key: &ObjectKey,
        deadline: Instant,
    ) -> impl Future<Output = Result<Option<Revision>, Error>> + Send;

    /// The keys right under `prefix` (not those under a further `/`).
    fn keys_under(
        &self,
        bucket: &str,
        prefix: &str,
        deadline: Instant,
    ) -> impl Future<Output = Result<Vec<ObjectKey>, Error>> + Send;

    /// Deletes the object at `key` only if it is still the one with `etag`.
    fn delete_if_match(
        &self,
        bucket: &str,
        key: &ObjectKey,
        etag: &str,
        deadline: Instant,
    ) -> impl Future<Output = Result<Deleted, Error>> + Send;
}

#[derive(Debug, Clone)]
pub struct S3Store {
    client: aws_sdk_s3::Client,
}

impl S3Store {
    pub fn new(client: aws_sdk_s3::Client) -> Self {
        S3Store { client }
    }

    /// HeadObject; `None` for a 404 (no object, or a delete marker, which answers 404 too with
    /// `x-amz-delete-marker: true`).
    async fn head(
        &self,
        bucket: &str,
        key: &ObjectKey,
        deadline: Instant,
    ) -> Result<Option<aws_sdk_s3::operation::head_object::HeadObjectOutput>, Error> {
        match self
            .client
            .head_object()
            .bucket(bucket)
            .key(key.as_str())
            .customize()
            .config_override(until(&self.client, deadline)?)
            .send()
            .await
        {
            Ok(output) => Ok(Some(output)),
            Err(err) if matches!(status_of(&err), Some(404)) => Ok(None),
            Err(err) => Err(Error::aws("HeadObject", err)),
        }
    }

    fn put(
        &self,
        write: &RenditionWrite,
    ) -> aws_sdk_s3::operation::put_object::builders::PutObjectFluentBuilder {
        let metadata: HashMap<String, String> = write
            .stamp
            .to_metadata()
            .into_iter()
            .map(|(name, value)| (name.to_owned(), value))
            .collect();
        self.client
            .put_object()
            .bucket(&write.bucket)
            .key(write.key.as_str())
            .body(ByteStream::from(write.body.clone()))
            .content_type(write.content_type)
            .cache_control(&write.cache_control)
            .set_metadata(Some(metadata))
            // The body is in memory: its CRC32C goes in the `x-amz-checksum-crc32c` header, which
            // S3 checks the body against. Naming only the algorithm would not do: the shared
            // client computes no checksum S3 does not require, and S3 refuses an algorithm
            // header with no checksum beside it (400 InvalidRequest).
            .checksum_crc32_c(shared::checksum::crc32c_base64(&write.body))
    }
}

/// A configuration for one call that ends it by `deadline`; none when the deadline has passed.
fn until(
    client: &aws_sdk_s3::Client,
    deadline: Instant,
) -> Result<aws_sdk_s3::config::Builder, Error> {
    let timeouts = shared::aws::timeouts_until(client.config().timeout_config(), deadline)
        .ok_or(Error::Deadline)?;
    Ok(aws_sdk_s3::config::Builder::default().timeout_config(timeouts))
}

/// An ETag as HTTP conditions want it: quoted (S3 events carry it bare).
fn quoted(etag: &str) -> String {
    if etag.starts_with('"') {
        etag.to_owned()
    } else {
        format!("\"{etag}\"")
    }
}

fn status_of<E>(
    err: &aws_sdk_s3::error::SdkError<E, aws_sdk_s3::config::http::HttpResponse>,
) -> Option<u16> {
    err.raw_response().map(|r| r.status().as_u16())
}

fn precondition_failed<E: ProvideErrorMetadata>(
    err: &aws_sdk_s3::error::SdkError<E, aws_sdk_s3::config::http::HttpResponse>,
) -> bool {
    status_of(err) == Some(412) || err.code() == Some("PreconditionFailed")
}

impl ObjectStore for S3Store {
    async fn fetch(
        &self,
        task: &Task,
        max_bytes: u64,
        deadline: Instant,
    ) -> Result<Fetched, Error> {
        let mut request = self
            .client
            .get_object()
            .bucket(&task.bucket)
            .key(task.key.as_str());
        if let Some(version) = &task.version_id {
            request = request.version_id(version);
        } else if let Some(etag) = &task.etag {
            request = request.if_match(quoted(etag));
        }
        let output = match request
            .customize()
            .config_override(until(&self.client, deadline)?)
            .send()
            .await
        {
            Ok(output) => output,
            Err(err) if precondition_failed(&err) || matches!(status_of(&err), Some(404)) => {
                return Ok(Fetched::Gone)
            }
            Err(err) => return Err(Error::aws("GetObject", err)),
        };
        let length = output.content_length.unwrap_or_default().max(0) as u64;
        if length > max_bytes {
            return Err(Error::TooLarge {
                size: length,
                limit: max_bytes,
            });
        }
        // The operation ends with the answer's head: the body is read within the deadline here.
        let mut body = output.body;
        let mut bytes = BytesMut::with_capacity(length as usize);
        while let Some(chunk) = timeout_at(deadline, body.try_next())
            .await
            .map_err(|_| Error::Deadline)??
        {
            bytes.extend_from_slice(&chunk);
            if bytes.len() as u64 > max_bytes {
                return Err(Error::TooLarge {
                    size: bytes.len() as u64,
                    limit: max_bytes,
                });
            }
        }
        if length > 0 && bytes.len() as u64 != length {
            return Err(Error::from(shared::Error::Aws {
                operation: "GetObject body",
                message: format!("read {} bytes of {length}", bytes.len()),
                retryable: true,
            }));
        }
        Ok(Fetched::Object {
            bytes: bytes.freeze(),
        })
    }

    async fn put_if_absent(&self, write: &RenditionWrite, deadline: Instant) -> Result<Put, Error> {
        match self
            .put(write)
            .if_none_match("*")
            .customize()
            .config_override(until(&self.client, deadline)?)
            .send()
            .await
        {
            Ok(_) => Ok(Put::Created),
            Err(err) if precondition_failed(&err) => Ok(Put::Exists),
            Err(err) => Err(Error::aws("PutObject", err)),
        }
    }

    async fn existing(
        &self,
        bucket: &str,
        key: &ObjectKey,
        deadline: Instant,
    ) -> Result<Option<Existing>, Error> {
        Ok(self.head(bucket, key, deadline).await?.map(|output| {
            let metadata = output.metadata.unwrap_or_default();
            Existing {
                etag: output.e_tag.unwrap_or_default(),
                stamp: SourceStamp::from_metadata(|name| metadata.get(name).map(String::as_str)),
            }
        }))
    }

    async fn replace(
        &self,
        write: &RenditionWrite,
        etag: &str,
        deadline: Instant,
    ) -> Result<Put, Error> {
        match self
            .put(write)
            .if_match(quoted(etag))
            .customize()
            .config_override(until(&self.client, deadline)?)
            .send()
            .await
        {
            Ok(_) => Ok(Put::Created),
            Err(err) if precondition_failed(&err) || matches!(status_of(&err), Some(404)) => {
                Ok(Put::Exists)
            }
            Err(err) => Err(Error::aws("PutObject", err)),
        }
    }

    async fn current(
        &self,
        bucket: &str,
        key: &ObjectKey,
        deadline: Instant,
    ) -> Result<Option<Revision>, Error> {
        Ok(self
            .head(bucket, key, deadline)
            .await?
            .map(|output| Revision {
                etag: output
                    .e_tag
                    .unwrap_or_default()
                    .trim_matches('"')
                    .to_owned(),
                version_id: output.version_id.filter(|v| v != "null"),
            }))
    }

    async fn keys_under(
        &self,
        bucket: &str,
        prefix: &str,
        deadline: Instant,
    ) -> Result<Vec<ObjectKey>, Error> {
        let mut keys = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let page = self
                .client
                .list_objects_v2()
                .bucket(bucket)
                .prefix(prefix)
                .delimiter("/")
                .set_continuation_token(token.take())
                .customize()
                .config_override(until(&self.client, deadline)?)
                .send()
                .await
                .map_err(|e| Error::aws("ListObjectsV2", e))?;
            for object in page.contents() {
                if let Some(key) = object.key().filter(|k| k.len() > prefix.len()) {
                    keys.push(ObjectKey::new(key)?);
                }
            }
            match page.next_continuation_token {
                Some(next) if page.is_truncated == Some(true) => token = Some(next),
                _ => return Ok(keys),
            }
        }
    }

    async fn delete_if_match(
        &self,
        bucket: &str,
        key: &ObjectKey,
        etag: &str,
        deadline: Instant,
    ) -> Result<Deleted, Error> {
        match self
            .client
            .delete_object()
            .bucket(bucket)
            .key(key.as_str())
            .if_match(quoted(etag))
            .customize()
            .config_override(until(&self.client, deadline)?)
            .send()
            .await
        {
            Ok(_) => Ok(Deleted::Deleted),
            Err(err) if precondition_failed(&err) || matches!(status_of(&err), Some(409)) => {
                Ok(Deleted::Changed)
            }
            Err(err) if matches!(status_of(&err), Some(404)) => Ok(Deleted::Gone),
            Err(err) => Err(Error::aws("DeleteObject", err)),
        }
    }
}
