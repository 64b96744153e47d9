//! One copy in flight per key across the fleet: a lease per key in DynamoDB.
//!
//! - `take` is one conditional UpdateItem: it succeeds when no lease exists or the one there has
//!   expired (`expires_at < now`; DynamoDB's TTL deletion is cleanup only, days late), and it
//!   raises the lease's `generation`. Every later write is conditional on that generation, so a
//!   holder whose lease was taken over can no longer record anything.
//! - A copy done in one invocation holds the lease until its deadline and deletes it at the end.
//! - A split copy (parts on the part queue) records its upload in the lease. Each part extends
//!   it and adds its number to the `done` set (`ADD` to a set is idempotent: a redelivered part is
//!   counted once); the part that completes the set completes the upload.
//! - A lease whose holder died expires, and the next copy message takes it over, with the upload
//!   recorded there, to finish it rather than start again. The holder's own copy message, back
//!   after its visibility timeout because the holder died before deleting it, takes it over at
//!   once: the lease names the message that holds it.

use std::collections::{BTreeSet, HashMap};
use std::future::Future;
use std::sync::Mutex;

use aws_sdk_dynamodb::error::ProvideErrorMetadata;
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue, ReturnValuesOnConditionCheckFailure};
use tokio::time::Instant;

use crate::error::BackfillError;

/// The validator a split copy's ranges are fetched under: every part is of this version only.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Validator {
    /// A strong entity tag, quotes included.
    Etag(String),
    /// An HTTP date, used only when the origin sends no strong tag.
    LastModified(String),
}

impl Validator {
    /// From an origin's answer: its strong ETag, else its Last-Modified. A weak tag cannot make
    /// a range request conditional (RFC 9110 §13.1.5), so it counts as none.
    pub fn from_headers(headers: &http::HeaderMap) -> Option<Validator> {
        let text = |name| {
            headers
                .get(name)
                .and_then(|v: &http::HeaderValue| v.to_str().ok())
                .map(str::trim)
                .filter(|v| !v.is_empty())
        };
        match text(http::header::ETAG) {
            Some(tag) if tag.starts_with('"') && tag.ends_with('"') && tag.len() >= 2 => {
                Some(Validator::Etag(tag.to_owned()))
            }
            _ => text(http::header::LAST_MODIFIED)
                .filter(|date| httpdate::parse_http_date(date).is_ok())
                .map(|date| Validator::LastModified(date.to_owned())),
        }
    }

    /// The request headers that make a ranged GET answer 206 only for this version: `If-Match`
    /// (or `If-Unmodified-Since`) refuses another version with 412 and no body; `If-Range` makes
    /// an origin that ignores those answer 200 (the whole new version) rather than a range of it.
    pub fn request_headers(&self) -> [(http::HeaderName, String); 2] {
        match self {
            Validator::Etag(tag) => [
                (http::header::IF_MATCH, tag.clone()),
                (http::header::IF_RANGE, tag.clone()),
            ],
            Validator::LastModified(date) => [
                (http::header::IF_UNMODIFIED_SINCE, date.clone()),
                (http::header::IF_RANGE, date.clone()),
            ],
        }
    }

    fn encode(&self) -> String {
        serde_json::to_string(self).expect("a validator serializes")
    }

    fn decode(text: &str) -> Option<Validator> {
        serde_json::from_str(text).ok()
    }
}

/// A split copy's multipart upload, as the lease records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadRecord {
    pub upload_id: String,
    pub validator: Validator,
    pub size: u64,
    pub part_size: u64,
    pub parts: u32,
}

/// A lease this invocation holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    /// The lease's id (`bucket/key`).
    pub id: String,
    pub generation: u64,
    /// The upload of a split copy whose lease this took over, to finish.
    pub upload: Option<UploadRecord>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Taken {
    Held(Lease),
    /// Another invocation's lease is live until `expires_at` (epoch seconds), taken for `purpose`
    /// at `taken_ms` (epoch milliseconds; 0 when the holder recorded none).
    Live {
        expires_at: u64,
        purpose: Purpose,
        taken_ms: u64,
    },
}

/// What a lease is held for: a copy, or a change of the key's copy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    Copy,
    Refresh,
    Purge,
}

impl Purpose {
    /// The lease's `state` while it is taken (a split copy's becomes `uploading`).
    fn state(self) -> &'static str {
        match self {
            Purpose::Copy => "copying",
            Purpose::Refresh => "refresh",
            Purpose::Purge => "purge",
        }
    }

    fn from_state(state: Option<&str>) -> Purpose {
        match state {
            Some("refresh") => Purpose::Refresh,
            Some("purge") => Purpose::Purge,
            _ => Purpose::Copy,
        }
    }
}

/// Now, in epoch milliseconds.
pub fn epoch_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or_default()
}

/// Every call ends by its `deadline`. Times are epoch seconds.
pub trait Leases: Send + Sync {
    #[allow(clippy::too_many_arguments)]
    fn take(
        &self,
        id: &str,
        holder: &str,
        purpose: Purpose,
        now: u64,
        expires_at: u64,
        deadline: Instant,
    ) -> impl Future<Output = Result<Taken, BackfillError>> + Send;

    /// Records a split copy's upload, with the parts already done; `false` if the lease was lost.
    fn start_upload(
        &self,
        lease: &Lease,
        upload: &UploadRecord,
        done: &BTreeSet<u32>,
        expires_at: u64,
        deadline: Instant,
    ) -> impl Future<Output = Result<bool, BackfillError>> + Send;

    /// A part worker starts: extends the lease if it is still this generation's and upload's.
    fn extend(
        &self,
        id: &str,
        generation: u64,
        upload_id: &str,
        expires_at: u64,
        deadline: Instant,
    ) -> impl Future<Output = Result<bool, BackfillError>> + Send;

    /// Adds `part` (and its CRC32C) to the parts done; the number now done, or `None` if the
    /// lease is no longer this generation's and upload's.
    #[allow(clippy::too_many_arguments)]
    fn part_done(
        &self,
        id: &str,
        generation: u64,
        upload_id: &str,
        part: u32,
        crc32c: u32,
        expires_at: u64,
        deadline: Instant,
    ) -> impl Future<Output = Result<Option<usize>, BackfillError>> + Send;

    /// The CRC32C of each part done, by part number (a consistent read).
    fn checksums(
        &self,
        id: &str,
        deadline: Instant,
    ) -> impl Future<Output = Result<HashMap<u32, u32>, BackfillError>> + Send;

    /// Deletes the lease if it is still `generation`'s (and, given an upload, still that
    /// upload's); `false` if it was not. A released key's next lease counts its generation from
    /// 1 again, so a part task always names its upload: a task of an earlier upload of the key
    /// must never release the lease of a later one.
    fn release(
        &self,
        id: &str,
        generation: u64,
        upload_id: Option<&str>,
        deadline: Instant,
    ) -> impl Future<Output = Result<bool, BackfillError>> + Send;
}

/// The lease table in DynamoDB: partition key `pk` (string), TTL attribute `ttl`.
pub struct DynamoLeases {
    client: aws_sdk_dynamodb::Client,
    table: String,
}

/// How long an expired lease stays in the table before DynamoDB's TTL may delete it: it keeps
/// the generation counting for the next holder in the meantime.
const TTL_AFTER_EXPIRY: u64 = 24 * 3600;

impl DynamoLeases {
    pub fn new(client: aws_sdk_dynamodb::Client, table: String) -> Self {
        DynamoLeases { client, table }
    }

    fn until(&self, deadline: Instant) -> Result<aws_sdk_dynamodb::config::Builder, BackfillError> {
        dynamo_until(&self.client, deadline)
    }

    fn key(id: &str) -> HashMap<String, AttributeValue> {
        HashMap::from([("pk".to_owned(), s(id))])
    }
}

/// A configuration for one call that ends it by `deadline`; none when the deadline has passed.
pub(crate) fn dynamo_until(
    client: &aws_sdk_dynamodb::Client,
    deadline: Instant,
) -> Result<aws_sdk_dynamodb::config::Builder, BackfillError> {
    let timeouts = shared::aws::timeouts_until(client.config().timeout_config(), deadline)
        .ok_or(BackfillError::Deadline)?;
    Ok(aws_sdk_dynamodb::config::Builder::default().timeout_config(timeouts))
}

pub(crate) fn s(text: &str) -> AttributeValue {
    AttributeValue::S(text.to_owned())
}

pub(crate) fn n(value: u64) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

pub(crate) fn number(item: &HashMap<String, AttributeValue>, name: &str) -> Option<u64> {
    item.get(name)?.as_n().ok()?.parse().ok()
}

pub(crate) fn text<'a>(item: &'a HashMap<String, AttributeValue>, name: &str) -> Option<&'a str> {
    item.get(name)?.as_s().ok().map(String::as_str)
}

/// The upload a lease item records, if it records a whole one.
fn upload_of(item: &HashMap<String, AttributeValue>) -> Option<UploadRecord> {
    Some(UploadRecord {
        upload_id: text(item, "upload_id")?.to_owned(),
        validator: Validator::decode(text(item, "validator")?)?,
        size: number(item, "size")?,
        part_size: number(item, "part_size")?,
        parts: u32::try_from(number(item, "parts")?).ok()?,
    })
}

/// Whether an UpdateItem or DeleteItem failed on its condition.
pub(crate) fn condition_failed<E: ProvideErrorMetadata>(
    err: &aws_sdk_dynamodb::error::SdkError<E>,
) -> bool {
    err.as_service_error()
        .and_then(ProvideErrorMetadata::code)
        .is_some_and(|code| code == "ConditionalCheckFailedException")
}

pub(crate) fn dynamo_error<E, R>(
    operation: &'static str,
    err: aws_sdk_dynamodb::error::SdkError<E, R>,
) -> BackfillError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug + shared::error::HttpStatus,
{
    if let aws_sdk_dynamodb::error::SdkError::TimeoutError(_) = err {
        return BackfillError::Deadline;
    }
    BackfillError::Aws(shared::Error::aws(operation, err))
}

/// The condition of every write after the take: the lease is still this generation's (and, for
/// a part, this upload's).
const HELD: &str = "#generation = :generation";
const HELD_UPLOAD: &str = "#generation = :generation AND #upload_id = :upload_id";

impl Leases for DynamoLeases {
    async fn take(
        &self,
        id: &str,
        holder: &str,
        purpose: Purpose,
        now: u64,
        expires_at: u64,
        deadline: Instant,
    ) -> Result<Taken, BackfillError> {
        let taken = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(Self::key(id)))
            .update_expression(
                "SET #generation = if_not_exists(#generation, :zero) + :one, #holder = :holder, \
                 #expires_at = :expires_at, #ttl = :ttl, #state = :state, #taken_ms = :taken_ms",
            )
            .condition_expression(
                "attribute_not_exists(#pk) OR #expires_at < :now OR #holder = :holder",
            )
            .expression_attribute_names("#pk", "pk")
            .expression_attribute_names("#generation", "generation")
            .expression_attribute_names("#holder", "holder")
            .expression_attribute_names("#expires_at", "expires_at")
            .expression_attribute_names("#ttl", "ttl")
            .expression_attribute_names("#state", "state")
            .expression_attribute_names("#taken_ms", "taken_ms")
            .expression_attribute_values(":zero", n(0))
            .expression_attribute_values(":one", n(1))
            .expression_attribute_values(":holder", s(holder))
            .expression_attribute_values(":expires_at", n(expires_at))
            .expression_attribute_values(":ttl", n(expires_at + TTL_AFTER_EXPIRY))
            .expression_attribute_values(":state", s(purpose.state()))
            .expression_attribute_values(":taken_ms", n(epoch_ms()))
            .expression_attribute_values(":now", n(now))
            .return_values(ReturnValue::AllNew)
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .customize()
            .config_override(self.until(deadline)?)
            .send()
            .await;
        match taken {
            Ok(output) => {
                let item = output.attributes.unwrap_or_default();
                Ok(Taken::Held(Lease {
                    id: id.to_owned(),
                    generation: number(&item, "generation").unwrap_or(1),
                    upload: upload_of(&item),
                }))
            }
            Err(err) if condition_failed(&err) => {
                let item = err.as_service_error().and_then(|e| match e {
                    aws_sdk_dynamodb::operation::update_item::UpdateItemError::ConditionalCheckFailedException(e) => e.item.as_ref(),
                    _ => None,
                });
                Ok(Taken::Live {
                    expires_at: item
                        .and_then(|item| number(item, "expires_at"))
                        .unwrap_or(expires_at),
                    purpose: Purpose::from_state(item.and_then(|item| text(item, "state"))),
                    taken_ms: item
                        .and_then(|item| number(item, "taken_ms"))
                        .unwrap_or_default(),
                })
            }
            Err(err) => Err(dynamo_error("UpdateItem", err)),
        }
    }

    async fn start_upload(
        &self,
        lease: &Lease,
        upload: &UploadRecord,
        done: &BTreeSet<u32>,
        expires_at: u64,
        deadline: Instant,
    ) -> Result<bool, BackfillError> {
        let set = "#state = :uploading, #upload_id = :upload_id, #validator = :validator, \
                   #size = :size, #part_size = :part_size, #parts = :parts, \
                   #expires_at = :expires_at, #ttl = :ttl";
        // A set cannot be empty in DynamoDB: no part done is no attribute.
        // A fresh upload starts its checksums afresh; one taken over keeps those of its parts.
        let update = if done.is_empty() {
            format!("SET {set}, #crcs = :no_crcs REMOVE #done")
        } else {
            format!("SET {set}, #done = :done, #crcs = if_not_exists(#crcs, :no_crcs)")
        };
        let mut request = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(Self::key(&lease.id)))
            .update_expression(update)
            .condition_expression(HELD)
            .expression_attribute_names("#generation", "generation")
            .expression_attribute_names("#state", "state")
            .expression_attribute_names("#upload_id", "upload_id")
            .expression_attribute_names("#validator", "validator")
            .expression_attribute_names("#size", "size")
            .expression_attribute_names("#part_size", "part_size")
            .expression_attribute_names("#parts", "parts")
            .expression_attribute_names("#expires_at", "expires_at")
            .expression_attribute_names("#ttl", "ttl")
            .expression_attribute_names("#done", "done")
            .expression_attribute_names("#crcs", "crcs")
            .expression_attribute_values(":no_crcs", AttributeValue::M(HashMap::new()))
            .expression_attribute_values(":generation", n(lease.generation))
            .expression_attribute_values(":uploading", s("uploading"))
            .expression_attribute_values(":upload_id", s(&upload.upload_id))
            .expression_attribute_values(":validator", s(&upload.validator.encode()))
            .expression_attribute_values(":size", n(upload.size))
            .expression_attribute_values(":part_size", n(upload.part_size))
            .expression_attribute_values(":parts", n(upload.parts.into()))
            .expression_attribute_values(":expires_at", n(expires_at))
            .expression_attribute_values(":ttl", n(expires_at + TTL_AFTER_EXPIRY));
        if !done.is_empty() {
            let numbers = done.iter().map(u32::to_string).collect();
            request = request.expression_attribute_values(":done", AttributeValue::Ns(numbers));
        }
        self.updated("UpdateItem", request, deadline).await
    }

    async fn extend(
        &self,
        id: &str,
        generation: u64,
        upload_id: &str,
        expires_at: u64,
        deadline: Instant,
    ) -> Result<bool, BackfillError> {
        let request = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(Self::key(id)))
            .update_expression("SET #expires_at = :expires_at, #ttl = :ttl")
            .condition_expression(HELD_UPLOAD)
            .expression_attribute_names("#generation", "generation")
            .expression_attribute_names("#upload_id", "upload_id")
            .expression_attribute_names("#expires_at", "expires_at")
            .expression_attribute_names("#ttl", "ttl")
            .expression_attribute_values(":generation", n(generation))
            .expression_attribute_values(":upload_id", s(upload_id))
            .expression_attribute_values(":expires_at", n(expires_at))
            .expression_attribute_values(":ttl", n(expires_at + TTL_AFTER_EXPIRY));
        self.updated("UpdateItem", request, deadline).await
    }

    async fn part_done(
        &self,
        id: &str,
        generation: u64,
        upload_id: &str,
        part: u32,
        crc32c: u32,
        expires_at: u64,
        deadline: Instant,
    ) -> Result<Option<usize>, BackfillError> {
        let updated = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(Self::key(id)))
            .update_expression(
                "ADD #done :part SET #crcs.#part = :crc, #expires_at = :expires_at, #ttl = :ttl",
            )
            .condition_expression(HELD_UPLOAD)
            .expression_attribute_names("#crcs", "crcs")
            .expression_attribute_names("#part", part.to_string())
            .expression_attribute_values(":crc", n(crc32c.into()))
            .expression_attribute_names("#generation", "generation")
            .expression_attribute_names("#upload_id", "upload_id")
            .expression_attribute_names("#done", "done")
            .expression_attribute_names("#expires_at", "expires_at")
            .expression_attribute_names("#ttl", "ttl")
            .expression_attribute_values(":generation", n(generation))
            .expression_attribute_values(":upload_id", s(upload_id))
            .expression_attribute_values(":part", AttributeValue::Ns(vec![part.to_string()]))
            .expression_attribute_values(":expires_at", n(expires_at))
            .expression_attribute_values(":ttl", n(expires_at + TTL_AFTER_EXPIRY))
            .return_values(ReturnValue::UpdatedNew)
            .customize()
            .config_override(self.until(deadline)?)
            .send()
            .await;
        match updated {
            Ok(output) => Ok(Some(
                output
                    .attributes
                    .as_ref()
                    .and_then(|item| item.get("done"))
                    .and_then(|done| done.as_ns().ok())
                    .map_or(0, Vec::len),
            )),
            Err(err) if condition_failed(&err) => Ok(None),
            Err(err) => Err(dynamo_error("UpdateItem", err)),
        }
    }

    async fn checksums(
        &self,
        id: &str,
        deadline: Instant,
    ) -> Result<HashMap<u32, u32>, BackfillError> {
        let item = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(Self::key(id)))
            .consistent_read(true)
            .projection_expression("#crcs")
            .expression_attribute_names("#crcs", "crcs")
            .customize()
            .config_override(self.until(deadline)?)
            .send()
            .await
            .map_err(|e| dynamo_error("GetItem", e))?
            .item
            .unwrap_or_default();
        let crcs = item.get("crcs").and_then(|v| v.as_m().ok());
        Ok(crcs
            .into_iter()
            .flatten()
            .filter_map(|(part, crc)| {
                let crc = crc.as_n().ok()?.parse().ok()?;
                Some((part.parse().ok()?, crc))
            })
            .collect())
    }

    async fn release(
        &self,
        id: &str,
        generation: u64,
        upload_id: Option<&str>,
        deadline: Instant,
    ) -> Result<bool, BackfillError> {
        let mut request = self
            .client
            .delete_item()
            .table_name(&self.table)
            .set_key(Some(Self::key(id)))
            .condition_expression(HELD)
            .expression_attribute_names("#generation", "generation")
            .expression_attribute_values(":generation", n(generation));
        if let Some(upload_id) = upload_id {
            request = request
                .condition_expression(HELD_UPLOAD)
                .expression_attribute_names("#upload_id", "upload_id")
                .expression_attribute_values(":upload_id", s(upload_id));
        }
        let deleted = request
            .customize()
            .config_override(self.until(deadline)?)
            .send()
            .await;
        match deleted {
            Ok(_) => Ok(true),
            Err(err) if condition_failed(&err) => Ok(false),
            Err(err) => Err(dynamo_error("DeleteItem", err)),
        }
    }
}

impl DynamoLeases {
    /// Sends a conditional UpdateItem: `true` if it applied, `false` if its condition failed.
    async fn updated(
        &self,
        operation: &'static str,
        request: aws_sdk_dynamodb::operation::update_item::builders::UpdateItemFluentBuilder,
        deadline: Instant,
    ) -> Result<bool, BackfillError> {
        match request
            .customize()
            .config_override(self.until(deadline)?)
            .send()
            .await
        {
            Ok(_) => Ok(true),
            Err(err) if condition_failed(&err) => Ok(false),
            Err(err) => Err(dynamo_error(operation, err)),
        }
    }
}

/// Leases in memory, with the same rules: for tests without a network, and for a function with
/// no lease table (which can then neither coalesce copies nor split them).
#[derive(Default)]
pub struct MemoryLeases {
    items: Mutex<HashMap<String, MemoryLease>>,
}

#[derive(Debug, Clone)]
struct MemoryLease {
    holder: String,
    purpose: Purpose,
    taken_ms: u64,
    generation: u64,
    expires_at: u64,
    upload: Option<UploadRecord>,
    done: BTreeSet<u32>,
    crcs: HashMap<u32, u32>,
}

impl MemoryLeases {
    fn with<T>(&self, f: impl FnOnce(&mut HashMap<String, MemoryLease>) -> T) -> T {
        f(&mut self.items.lock().expect("not poisoned"))
    }

    /// Makes a lease look expired, as if its holder had died.
    pub fn expire(&self, id: &str) {
        self.with(|items| {
            if let Some(item) = items.get_mut(id) {
                item.expires_at = 0;
            }
        });
    }

    pub fn is_held(&self, id: &str) -> bool {
        self.with(|items| items.contains_key(id))
    }
}

impl Leases for MemoryLeases {
    async fn take(
        &self,
        id: &str,
        holder: &str,
        purpose: Purpose,
        now: u64,
        expires_at: u64,
        _: Instant,
    ) -> Result<Taken, BackfillError> {
        Ok(self.with(|items| match items.get_mut(id) {
            Some(item) if item.expires_at >= now && item.holder != holder => Taken::Live {
                expires_at: item.expires_at,
                purpose: item.purpose,
                taken_ms: item.taken_ms,
            },
            Some(item) => {
                item.generation += 1;
                item.expires_at = expires_at;
                item.holder = holder.to_owned();
                item.purpose = purpose;
                item.taken_ms = epoch_ms();
                Taken::Held(Lease {
                    id: id.to_owned(),
                    generation: item.generation,
                    upload: item.upload.clone(),
                })
            }
            None => {
                items.insert(
                    id.to_owned(),
                    MemoryLease {
                        holder: holder.to_owned(),
                        purpose,
                        taken_ms: epoch_ms(),
                        generation: 1,
                        expires_at,
                        upload: None,
                        done: BTreeSet::new(),
                        crcs: HashMap::new(),
                    },
                );
                Taken::Held(Lease {
                    id: id.to_owned(),
                    generation: 1,
                    upload: None,
                })
            }
        }))
    }

    async fn start_upload(
        &self,
        lease: &Lease,
        upload: &UploadRecord,
        done: &BTreeSet<u32>,
        expires_at: u64,
        _: Instant,
    ) -> Result<bool, BackfillError> {
        Ok(self.with(|items| match items.get_mut(&lease.id) {
            Some(item) if item.generation == lease.generation => {
                if done.is_empty() {
                    item.crcs.clear();
                }
                item.upload = Some(upload.clone());
                item.done = done.clone();
                item.expires_at = expires_at;
                true
            }
            _ => false,
        }))
    }

    async fn extend(
        &self,
        id: &str,
        generation: u64,
        upload_id: &str,
        expires_at: u64,
        _: Instant,
    ) -> Result<bool, BackfillError> {
        Ok(self.with(|items| match items.get_mut(id) {
            Some(item) if item.is_upload(generation, upload_id) => {
                item.expires_at = expires_at;
                true
            }
            _ => false,
        }))
    }

    async fn part_done(
        &self,
        id: &str,
        generation: u64,
        upload_id: &str,
        part: u32,
        crc32c: u32,
        expires_at: u64,
        _: Instant,
    ) -> Result<Option<usize>, BackfillError> {
        Ok(self.with(|items| match items.get_mut(id) {
            Some(item) if item.is_upload(generation, upload_id) => {
                item.done.insert(part);
                item.crcs.insert(part, crc32c);
                item.expires_at = expires_at;
                Some(item.done.len())
            }
            _ => None,
        }))
    }

    async fn checksums(&self, id: &str, _: Instant) -> Result<HashMap<u32, u32>, BackfillError> {
        Ok(self.with(|items| {
            items
                .get(id)
                .map(|item| item.crcs.clone())
                .unwrap_or_default()
        }))
    }

    async fn release(
        &self,
        id: &str,
        generation: u64,
        upload_id: Option<&str>,
        _: Instant,
    ) -> Result<bool, BackfillError> {
        Ok(self.with(|items| match items.get(id) {
            Some(item)
                if item.generation == generation
                    && upload_id.is_none_or(|upload_id| {
                        item.upload
                            .as_ref()
                            .is_some_and(|upload| upload.upload_id == upload_id)
                    }) =>
            {
                items.remove(id);
                true
            }
            _ => false,
        }))
    }
}

impl MemoryLease {
    fn is_upload(&self, generation: u64, upload_id: &str) -> bool {
        self.generation == generation
            && self
                .upload
                .as_ref()
                .is_some_and(|upload| upload.upload_id == upload_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn later() -> Instant {
        Instant::now() + std::time::Duration::from_secs(5)
    }

    #[test]
    fn validators_come_from_a_strong_tag_or_a_date() {
        let headers = |pairs: &[(&'static str, &'static str)]| {
            let mut map = http::HeaderMap::new();
            for (name, value) in pairs {
                map.insert(*name, value.parse().unwrap());
            }
            map
        };
        let date = "Tue, 01 Dec 2026 08:00:00 GMT";
        assert_eq!(
            Validator::from_headers(&headers(&[("etag", "\"5d41\""), ("last-modified", date)])),
            Some(Validator::Etag("\"5d41\"".into()))
        );
        assert_eq!(
            Validator::from_headers(&headers(&[("etag", "W/\"5d41\""), ("last-modified", date)])),
            Some(Validator::LastModified(date.into())),
            "a weak tag cannot make a range conditional"
        );
        assert_eq!(
            Validator::from_headers(&headers(&[("last-modified", "yesterday")])),
            None
        );
        let [(first, _), (second, _)] = Validator::LastModified(date.into()).request_headers();
        assert_eq!(
            (first, second),
            (http::header::IF_UNMODIFIED_SINCE, http::header::IF_RANGE)
        );
        let encoded = Validator::Etag("\"a\"".into()).encode();
        assert_eq!(encoded, r#"{"etag":"\"a\""}"#);
        assert_eq!(
            Validator::decode(&encoded),
            Some(Validator::Etag("\"a\"".into()))
        );
    }

    #[tokio::test]
    async fn a_live_lease_refuses_a_second_holder_and_an_expired_one_is_taken_over() {
        let leases = MemoryLeases::default();
        let Taken::Held(_) = leases
            .take("b/k", "one", Purpose::Copy, 100, 200, later())
            .await
            .unwrap()
        else {
            panic!("free")
        };
        assert!(matches!(
            leases
                .take("b/k", "two", Purpose::Refresh, 150, 250, later())
                .await
                .unwrap(),
            Taken::Live {
                expires_at: 200,
                purpose: Purpose::Copy,
                ..
            }
        ));
        let Taken::Held(first) = leases
            .take("b/k", "one", Purpose::Copy, 150, 200, later())
            .await
            .unwrap()
        else {
            panic!("the holder's own message, back after the holder died, takes it over")
        };
        assert_eq!(first.generation, 2);
        let upload = UploadRecord {
            upload_id: "u".into(),
            validator: Validator::Etag("\"v\"".into()),
            size: 30,
            part_size: 10,
            parts: 3,
        };
        assert!(leases
            .start_upload(&first, &upload, &BTreeSet::new(), 200, later())
            .await
            .unwrap());
        assert_eq!(
            leases
                .part_done("b/k", 2, "u", 2, 7, 300, later())
                .await
                .unwrap(),
            Some(1)
        );
        assert_eq!(
            leases
                .part_done("b/k", 2, "u", 2, 7, 300, later())
                .await
                .unwrap(),
            Some(1),
            "a redelivered part counts once"
        );
        let Taken::Held(second) = leases
            .take("b/k", "two", Purpose::Copy, 301, 400, later())
            .await
            .unwrap()
        else {
            panic!("expired")
        };
        assert_eq!(second.generation, 3);
        assert_eq!(second.upload, Some(upload));
        assert_eq!(
            leases
                .part_done("b/k", 2, "u", 3, 7, 500, later())
                .await
                .unwrap(),
            None,
            "the old generation can record nothing"
        );
        assert!(!leases.release("b/k", 2, None, later()).await.unwrap());
        assert!(leases.release("b/k", 3, None, later()).await.unwrap());
    }

    #[tokio::test]
    async fn a_task_of_an_earlier_upload_cannot_release_a_later_one() {
        let leases = MemoryLeases::default();
        let upload = |id: &str| UploadRecord {
            upload_id: id.into(),
            validator: Validator::Etag("\"v\"".into()),
            size: 30,
            part_size: 10,
            parts: 3,
        };
        let Taken::Held(first) = leases
            .take("b/k", "one", Purpose::Copy, 100, 200, later())
            .await
            .unwrap()
        else {
            panic!("free")
        };
        assert!(leases
            .start_upload(&first, &upload("u1"), &BTreeSet::new(), 200, later())
            .await
            .unwrap());
        // The origin changed: the copy restarted, its lease released.
        assert!(leases
            .release("b/k", first.generation, Some("u1"), later())
            .await
            .unwrap());
        // The restart's lease counts from 1 again: the generation alone cannot tell them apart.
        let Taken::Held(second) = leases
            .take("b/k", "two", Purpose::Copy, 110, 210, later())
            .await
            .unwrap()
        else {
            panic!("released")
        };
        assert_eq!(second.generation, first.generation);
        assert!(leases
            .start_upload(&second, &upload("u2"), &BTreeSet::new(), 210, later())
            .await
            .unwrap());
        assert!(
            !leases
                .release("b/k", first.generation, Some("u1"), later())
                .await
                .unwrap(),
            "a late task of the first upload"
        );
        assert!(leases
            .release("b/k", second.generation, Some("u2"), later())
            .await
            .unwrap());
    }
}
