//! The copy itself: origin body streamed into S3, verified, never overwriting, nothing partial left
//! visible. Memory stays below about `part_size x (upload_concurrency + 2)` whatever the object's
//! size.

use std::collections::VecDeque;
use std::time::{Duration, SystemTime};

use bytes::{Bytes, BytesMut};
use futures::stream::FuturesUnordered;
use futures::StreamExt;
use shared::retry::Backoff;
use shared::Failure;
use tokio::time::{sleep_until, timeout_at, Instant};

use crate::config::Config;
use crate::error::BackfillError;
use crate::origin::{BodyStream, Origin, OriginResponse};
use crate::plan::{attributes_from, judge, upload_for, Fetch, Upload, Verdict};
use crate::store::{ObjectStore, Part, Target, Written};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CopyOutcome {
    Copied {
        bytes: u64,
        parts: u32,
    },
    /// The key was already in the bucket (found first, or written by a concurrent copy).
    AlreadyPresent,
    /// The origin answered 404 or 410.
    NotAtOrigin(u16),
    /// Another invocation holds the key's lease: its copy is under way, nothing was fetched.
    InFlight,
    /// Too large for one invocation: split into `parts` part tasks on the part queue.
    Split {
        parts: u32,
    },
    /// One part of a split copy uploaded.
    PartUploaded {
        part: u32,
        bytes: u64,
    },
    /// A part task of an upload no longer current (taken over, restarted or finished): dropped.
    PartStale,
    /// The origin changed during a split copy: the upload was aborted and the copy enqueued
    /// again.
    Restarted,
    /// A refresh: the origin answered 304 (or the same entity tag): the copy is current.
    Unchanged,
    /// A refresh: the copy was replaced by the origin's newer body (`bytes`), or, too large to
    /// copy in this invocation, deleted and a copy enqueued (`bytes` 0).
    Refreshed {
        bytes: u64,
    },
    /// A refresh: the origin answered 404 or 410 and the copy was deleted.
    Deleted(u16),
    /// A refresh: the origin answered 404 or 410 and the copy was kept (`ON_ORIGIN_GONE=keep`).
    Kept(u16),
    /// A purge deleted the copy.
    Purged,
    /// A change of a key with no copy in the bucket (none, or an object not copied from the
    /// origin, such as an upload): nothing to do.
    NoCopy,
    /// A change of a key whose copy is in flight, or whose object changed under it: put back on
    /// the queue, delayed.
    PutBack,
    /// A change of a prefix: `keys` changes announced, one a key.
    FannedOut {
        keys: usize,
    },
    /// The revalidation schedule's tick: `objects` refreshes sent.
    Swept {
        objects: usize,
    },
    /// One CloudFront invalidation of `paths` paths.
    Invalidated {
        paths: usize,
    },
}

impl CopyOutcome {
    pub fn label(&self) -> &'static str {
        match self {
            CopyOutcome::Copied { .. } => "copied",
            CopyOutcome::AlreadyPresent => "already_present",
            CopyOutcome::NotAtOrigin(_) => "not_at_origin",
            CopyOutcome::InFlight => "in_flight",
            CopyOutcome::Split { .. } => "split",
            CopyOutcome::PartUploaded { .. } => "part_uploaded",
            CopyOutcome::PartStale => "part_stale",
            CopyOutcome::Restarted => "restarted",
            CopyOutcome::Unchanged => "unchanged",
            CopyOutcome::Refreshed { .. } => "refreshed",
            CopyOutcome::Deleted(_) => "deleted",
            CopyOutcome::Kept(_) => "kept",
            CopyOutcome::Purged => "purged",
            CopyOutcome::NoCopy => "no_copy",
            CopyOutcome::PutBack => "put_back",
            CopyOutcome::FannedOut { .. } => "fanned_out",
            CopyOutcome::Swept { .. } => "swept",
            CopyOutcome::Invalidated { .. } => "invalidated",
        }
    }

    /// What the outcome means, for the log line of a record that copied nothing itself.
    pub fn summary(&self) -> &'static str {
        match self {
            CopyOutcome::Copied { .. } => "backfilled",
            CopyOutcome::AlreadyPresent => "already in the bucket: nothing to copy",
            CopyOutcome::NotAtOrigin(_) => "not at the origin: nothing to copy",
            CopyOutcome::InFlight => "another copy of the key is in flight: nothing to copy",
            CopyOutcome::Split { .. } => "split into part tasks",
            CopyOutcome::PartUploaded { .. } => "part uploaded",
            CopyOutcome::PartStale => "part of an upload no longer current: dropped",
            CopyOutcome::Restarted => "the origin changed mid-copy: restarted",
            CopyOutcome::Unchanged => "revalidated: the copy is current",
            CopyOutcome::Refreshed { .. } => {
                "revalidated: the copy was replaced by the origin's newer version"
            }
            CopyOutcome::Deleted(_) => "revalidated: gone at the origin, the copy was deleted",
            CopyOutcome::Kept(_) => "revalidated: gone at the origin, the copy was kept",
            CopyOutcome::Purged => "purged: the copy was deleted",
            CopyOutcome::NoCopy => "no copy of the key in the bucket: nothing to change",
            CopyOutcome::PutBack => "the key's copy is in flight or changed meanwhile: put back",
            CopyOutcome::FannedOut { .. } => "a prefix's changes announced key by key",
            CopyOutcome::Swept { .. } => "revalidations due sent",
            CopyOutcome::Invalidated { .. } => "CloudFront invalidation created",
        }
    }
}

pub async fn copy<O: Origin, S: ObjectStore>(
    origin: &O,
    store: &S,
    config: &Config,
    fetch: &Fetch,
    deadline: Instant,
) -> Result<CopyOutcome, BackfillError> {
    if store.exists(&fetch.bucket, &fetch.key, deadline).await? {
        return Ok(CopyOutcome::AlreadyPresent);
    }
    let response = timeout_at(deadline, origin.get(&fetch.url))
        .await
        .map_err(|_| BackfillError::Deadline)??;
    copy_response(origin, store, config, fetch, response, deadline).await
}

/// The copy of an origin's answer already received (a whole body, or a probe's whole range).
pub async fn copy_response<O: Origin, S: ObjectStore>(
    origin: &O,
    store: &S,
    config: &Config,
    fetch: &Fetch,
    response: OriginResponse,
    deadline: Instant,
) -> Result<CopyOutcome, BackfillError> {
    if let Verdict::NotAtOrigin(status) =
        judge(response.status, &response.headers, SystemTime::now())?
    {
        return Ok(CopyOutcome::NotAtOrigin(status));
    }
    let target = Target {
        bucket: fetch.bucket.clone(),
        key: fetch.key.clone(),
        attributes: attributes_from(&response.headers),
        condition: fetch.condition.clone(),
    };
    match upload_for(response.content_length, config)? {
        Upload::Single { length } => {
            let body = timeout_at(deadline, read_whole(response.body, length))
                .await
                .map_err(|_| BackfillError::Deadline)??;
            let crc = crc32c::crc32c(&body);
            Ok(one_put(
                store.put(&target, body, crc, deadline).await?,
                length,
            ))
        }
        Upload::Stream { length } => {
            let written =
                put_streamed(origin, store, fetch, &target, response, length, deadline).await?;
            Ok(one_put(written, length))
        }
        Upload::Multipart { length, part_size } => {
            let mut upload_id = None;
            let streamed = timeout_at(
                deadline,
                stream_parts(
                    store,
                    config,
                    &target,
                    response.body,
                    length,
                    part_size,
                    &mut upload_id,
                    deadline,
                ),
            )
            .await
            .unwrap_or(Err(BackfillError::Deadline));
            let finished = match streamed {
                Ok(Streamed::Small(body)) => {
                    let bytes = body.len() as u64;
                    let crc = crc32c::crc32c(&body);
                    return Ok(one_put(
                        store.put(&target, body, crc, deadline).await?,
                        bytes,
                    ));
                }
                Ok(Streamed::Parts {
                    upload_id: id,
                    parts,
                    crc,
                    bytes,
                }) => {
                    let count = parts.len() as u32;
                    match store
                        .complete_multipart(&target, &id, parts, crc, deadline)
                        .await
                    {
                        Ok(Written::Created) => {
                            return Ok(CopyOutcome::Copied {
                                bytes,
                                parts: count,
                            })
                        }
                        Ok(Written::AlreadyExists) => Ok(CopyOutcome::AlreadyPresent),
                        Err(err) => Err(err),
                    }
                }
                Err(err) => Err(err),
            };
            // Not completed: abort, so that no upload is left behind to be billed. Past the
            // deadline too, within a part of the margin kept before the invocation's end.
            if let Some(id) = upload_id {
                let abort_by = Instant::now().max(deadline) + config.deadline_margin / 2;
                if let Err(abort) = store.abort_multipart(&target, &id, abort_by).await {
                    tracing::warn!(error = %abort, upload_id = %id, "could not abort the multipart upload; the lifecycle rule will");
                }
            }
            finished
        }
    }
}

/// The outcome of a copy written in one PutObject of `bytes`.
fn one_put(written: Written, bytes: u64) -> CopyOutcome {
    match written {
        Written::Created => CopyOutcome::Copied { bytes, parts: 1 },
        Written::AlreadyExists => CopyOutcome::AlreadyPresent,
    }
}

/// Attempts at a streamed PutObject. The SDK cannot send a streamed body again, so a transient
/// S3 failure (503 SlowDown, 500, a reset) is retried here, with a fresh origin response.
const STREAM_ATTEMPTS: u32 = 3;
const STREAM_BACKOFF: Backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(5));

async fn put_streamed<O: Origin, S: ObjectStore>(
    origin: &O,
    store: &S,
    fetch: &Fetch,
    target: &Target,
    first: OriginResponse,
    length: u64,
    deadline: Instant,
) -> Result<Written, BackfillError> {
    let etag = first.headers.get(http::header::ETAG).cloned();
    let mut response = first;
    let mut attempt = 1;
    loop {
        let sent = store
            .put_stream(target, response.body, length, deadline)
            .await;
        // Only S3's transient failures are worth a fresh body; the origin's speak for themselves.
        let err = match sent {
            Err(err @ BackfillError::Aws(_)) if err.is_retryable() && attempt < STREAM_ATTEMPTS => {
                err
            }
            done => return done,
        };
        tracing::info!(error = %err, attempt, "streamed PutObject failed; fetching again");
        sleep_until((Instant::now() + STREAM_BACKOFF.full_jitter(attempt - 1)).min(deadline)).await;
        response = timeout_at(deadline, origin.get(&fetch.url))
            .await
            .map_err(|_| BackfillError::Deadline)??;
        // Only the very same object is sent again; anything else is the next delivery's to plan.
        let same = response.status == 200
            && response.content_length == Some(length)
            && response.headers.get(http::header::ETAG).cloned() == etag;
        if !same {
            return Err(err);
        }
        attempt += 1;
    }
}

/// Reads a body of known length whole.
async fn read_whole(mut body: BodyStream, length: u64) -> Result<Bytes, BackfillError> {
    let mut buffer = BytesMut::with_capacity(length as usize);
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|err| err.in_body(buffer.len() as u64, Some(length)))?;
        buffer.extend_from_slice(&chunk);
        if buffer.len() as u64 > length {
            return Err(BackfillError::longer_than(length));
        }
    }
    check_length(buffer.len() as u64, Some(length))?;
    Ok(buffer.freeze())
}

fn check_length(received: u64, expected: Option<u64>) -> Result<(), BackfillError> {
    match expected {
        Some(expected) if received != expected => {
            Err(BackfillError::Truncated { received, expected })
        }
        _ => Ok(()),
    }
}

enum Streamed {
    /// An unknown-length body that ended before filling one part.
    Small(Bytes),
    Parts {
        upload_id: String,
        parts: Vec<Part>,
        crc: u32,
        bytes: u64,
    },
}

/// Streams the body into parts, uploading up to `upload_concurrency` at once. The upload is
/// created once the first part is full; its id is left in `upload_id` so that the caller can
/// abort it whatever happens here (an error, or this future dropped at the deadline).
#[allow(clippy::too_many_arguments)]
async fn stream_parts<S: ObjectStore>(
    store: &S,
    config: &Config,
    target: &Target,
    mut body: BodyStream,
    length: Option<u64>,
    part_size: u64,
    upload_id: &mut Option<String>,
    deadline: Instant,
) -> Result<Streamed, BackfillError> {
    let part_size = part_size as usize;
    // Each part is filled in an allocation of exactly its size and frozen whole: no buffer grows,
    // and no part shares an allocation with the next, so a part's memory goes as soon as it is
    // uploaded.
    let mut filling = BytesMut::new();
    let mut full: VecDeque<Bytes> = VecDeque::new();
    let mut received: u64 = 0;
    let mut crc: u32 = 0;
    let mut next_number: i32 = 1;
    let mut parts = Vec::new();
    let mut in_flight = FuturesUnordered::new();
    let mut body_done = false;
    loop {
        // Start uploads of full parts (and, once the body is done, the last one) while there is room.
        while in_flight.len() < config.upload_concurrency {
            let part = match full.pop_front() {
                Some(part) => part,
                None if body_done && !filling.is_empty() && upload_id.is_some() => {
                    std::mem::take(&mut filling).freeze()
                }
                None => break,
            };
            let part_crc = crc32c::crc32c(&part);
            crc = crc32c::crc32c_combine(crc, part_crc, part.len());
            let id = match upload_id {
                Some(id) => id.clone(),
                None => upload_id
                    .insert(store.create_multipart(target, deadline).await?)
                    .clone(),
            };
            let number = next_number;
            next_number += 1;
            in_flight.push(async move {
                store
                    .upload_part(target, &id, number, part, part_crc, deadline)
                    .await
            });
        }
        if body_done
            && in_flight.is_empty()
            && full.is_empty()
            && (filling.is_empty() || upload_id.is_none())
        {
            break;
        }
        let want_body = !body_done && full.is_empty();
        tokio::select! {
            Some(uploaded) = in_flight.next(), if !in_flight.is_empty() => parts.push(uploaded?),
            chunk = body.next(), if want_body => match chunk {
                Some(Ok(mut chunk)) => {
                    received += chunk.len() as u64;
                    let limit = config.max_object_size.min(part_size as u64 * crate::config::MAX_PARTS);
                    if received > limit {
                        return Err(BackfillError::TooLarge { size: received, limit });
                    }
                    if let Some(expected) = length.filter(|&expected| received > expected) {
                        return Err(BackfillError::longer_than(expected));
                    }
                    while !chunk.is_empty() {
                        if filling.capacity() == 0 {
                            filling = BytesMut::with_capacity(part_size);
                        }
                        let take = (part_size - filling.len()).min(chunk.len());
                        filling.extend_from_slice(&chunk.split_to(take));
                        if filling.len() == part_size {
                            full.push_back(std::mem::take(&mut filling).freeze());
                        }
                    }
                }
                Some(Err(err)) => return Err(err.in_body(received, length)),
                None => body_done = true,
            },
        }
    }
    check_length(received, length)?;
    match upload_id {
        None => Ok(Streamed::Small(filling.freeze())),
        Some(id) => {
            parts.sort_by_key(|part: &Part| part.number);
            Ok(Streamed::Parts {
                upload_id: id.clone(),
                parts,
                crc,
                bytes: received,
            })
        }
    }
}
