//! A client of the upload API, and the resumable upload built on it: the example CLI and the
//! integration tests use it.
//!
//! A resumable upload keeps its state in a small JSON file next to nothing else: the upload id,
//! the plan, the CRC32C of every part (computed in one pass before the upload starts), and the
//! ETag of every part S3 has acknowledged. After a crash or a lost connection the same call with
//! the same state file asks the API which parts S3 holds and sends only the others.

use std::collections::BTreeMap;
use std::io::SeekFrom;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, UNIX_EPOCH};

use futures::stream::{self, StreamExt, TryStreamExt};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use shared::Failure;
use tokio::io::{AsyncReadExt, AsyncSeekExt};

use crate::api::{
    ChangesResponse, ChecksumSpec, CompleteRequest, CompleteResponse, CompletedPartRef,
    CookiesResponse, CreateMultipartRequest, ErrorBody, FileResponse, ListPartsResponse,
    MeResponse, MultipartUpload, PartToSign, SignPartsRequest, SignPartsResponse,
    SingleUploadRequest, SingleUploadResponse, UploadMethod,
};
use crate::checksum::{combine_crc32c, Checksum, ChecksumAlgorithm};
use crate::error::Error;
use crate::plan::{PartPlan, MAX_OBJECT_BYTES, MAX_SIGN_BATCH};

/// Attempts per part before the upload gives up (it can be resumed later).
const PART_ATTEMPTS: u32 = 3;
const READ_BUFFER: usize = 1024 * 1024;

/// The API at `base_url`, as one caller.
#[derive(Debug, Clone)]
pub struct ApiClient {
    http: reqwest::Client,
    base_url: String,
    token: Option<String>,
}

impl ApiClient {
    pub fn new(base_url: impl Into<String>, token: Option<String>) -> Self {
        ApiClient {
            http: reqwest::Client::new(),
            base_url: base_url.into().trim_end_matches('/').to_owned(),
            token,
        }
    }

    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    async fn call<T: DeserializeOwned>(
        &self,
        method: reqwest::Method,
        path: &str,
        query: &[(&str, &str)],
        body: Option<serde_json::Value>,
    ) -> Result<T, Error> {
        let query: Vec<String> = query
            .iter()
            .map(|(name, value)| format!("{}={}", segment(name), segment(value)))
            .collect();
        let url = if query.is_empty() {
            format!("{}{path}", self.base_url)
        } else {
            format!("{}{path}?{}", self.base_url, query.join("&"))
        };
        let mut request = self.http.request(method, url);
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request
                .header("content-type", "application/json")
                .body(body.to_string());
        }
        let response = request.send().await.map_err(transfer)?;
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok())
            .map(Duration::from_secs);
        let bytes = response.bytes().await.map_err(transfer)?;
        if !(200..300).contains(&status) {
            let (reason, message) = match serde_json::from_slice::<ErrorBody>(&bytes) {
                Ok(body) => (body.reason, body.message),
                Err(_) => (
                    "unknown".to_owned(),
                    String::from_utf8_lossy(&bytes).into_owned(),
                ),
            };
            return Err(Error::Refused {
                status,
                reason,
                message,
                retry_after,
            });
        }
        let bytes = if bytes.is_empty() {
            &b"null"[..]
        } else {
            &bytes[..]
        };
        serde_json::from_slice(bytes)
            .map_err(|e| Error::Transfer(format!("unreadable answer from {path}: {e}")))
    }

    pub async fn me(&self) -> Result<MeResponse, Error> {
        self.call(reqwest::Method::GET, "/me", &[], None).await
    }

    pub async fn single_upload(
        &self,
        request: &SingleUploadRequest,
    ) -> Result<SingleUploadResponse, Error> {
        self.call(reqwest::Method::POST, "/uploads", &[], Some(json(request)?))
            .await
    }

    pub async fn create_multipart(
        &self,
        request: &CreateMultipartRequest,
    ) -> Result<MultipartUpload, Error> {
        self.call(
            reqwest::Method::POST,
            "/multipart",
            &[],
            Some(json(request)?),
        )
        .await
    }

    pub async fn sign_parts(
        &self,
        upload_id: &str,
        request: &SignPartsRequest,
    ) -> Result<SignPartsResponse, Error> {
        self.call(
            reqwest::Method::POST,
            &format!("/multipart/{}/parts", segment(upload_id)),
            &[],
            Some(json(request)?),
        )
        .await
    }

    pub async fn list_parts(&self, upload_id: &str) -> Result<ListPartsResponse, Error> {
        self.call(
            reqwest::Method::GET,
            &format!("/multipart/{}/parts", segment(upload_id)),
            &[],
            None,
        )
        .await
    }

    pub async fn complete(
        &self,
        upload_id: &str,
        request: &CompleteRequest,
    ) -> Result<CompleteResponse, Error> {
        self.call(
            reqwest::Method::POST,
            &format!("/multipart/{}/complete", segment(upload_id)),
            &[],
            Some(json(request)?),
        )
        .await
    }

    pub async fn abort(&self, upload_id: &str) -> Result<(), Error> {
        self.call::<Option<serde_json::Value>>(
            reqwest::Method::DELETE,
            &format!("/multipart/{}", segment(upload_id)),
            &[],
            None,
        )
        .await
        .map(drop)
    }

    /// The latest version of `key` (and every version with `all_versions`).
    pub async fn file(&self, key: &str, all_versions: bool) -> Result<FileResponse, Error> {
        let path: String = key.split('/').map(segment).collect::<Vec<_>>().join("/");
        let query: &[(&str, &str)] = if all_versions {
            &[("versions", "true")]
        } else {
            &[]
        };
        self.call(reqwest::Method::GET, &format!("/files/{path}"), query, None)
            .await
    }

    /// The latest version of `key` and a URL to read it with, living `expires_in` seconds (the
    /// API's default when `None`).
    pub async fn download(
        &self,
        key: &str,
        expires_in: Option<u64>,
    ) -> Result<FileResponse, Error> {
        let path: String = key.split('/').map(segment).collect::<Vec<_>>().join("/");
        let expires_in = expires_in.map(|s| s.to_string());
        let mut query = vec![("download", "true")];
        if let Some(expires_in) = &expires_in {
            query.push(("expires_in", expires_in.as_str()));
        }
        self.call(
            reqwest::Method::GET,
            &format!("/files/{path}"),
            &query,
            None,
        )
        .await
    }

    /// CloudFront signed cookies for the caller's uploads (`UploadAccess=signed`).
    pub async fn cookies(&self) -> Result<CookiesResponse, Error> {
        self.call(reqwest::Method::GET, "/cookies", &[], None).await
    }

    /// Changes under `prefix` after the cursor `since`.
    pub async fn changes(
        &self,
        prefix: Option<&str>,
        since: Option<&str>,
        limit: Option<usize>,
    ) -> Result<ChangesResponse, Error> {
        let limit = limit.map(|l| l.to_string());
        let mut query = Vec::new();
        if let Some(prefix) = prefix {
            query.push(("prefix", prefix));
        }
        if let Some(since) = since {
            query.push(("since", since));
        }
        if let Some(limit) = &limit {
            query.push(("limit", limit.as_str()));
        }
        self.call(reqwest::Method::GET, "/files", &query, None)
            .await
    }
}

fn json(value: &impl Serialize) -> Result<serde_json::Value, Error> {
    serde_json::to_value(value).map_err(|e| Error::InvalidRequest(e.to_string()))
}

fn transfer(err: reqwest::Error) -> Error {
    let mut text = err.to_string();
    let mut source = std::error::Error::source(&err);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    Error::Transfer(text)
}

/// One path segment, percent-encoded.
fn segment(raw: &str) -> String {
    percent_encoding::utf8_percent_encode(raw, percent_encoding::NON_ALPHANUMERIC).to_string()
}

/// Sends `body` with a presigned request; returns the ETag S3 answered with.
pub async fn send_signed(
    http: &reqwest::Client,
    method: &str,
    url: &str,
    headers: &BTreeMap<String, String>,
    body: Vec<u8>,
) -> Result<String, Error> {
    let method = reqwest::Method::from_bytes(method.as_bytes())
        .map_err(|_| Error::InvalidRequest(format!("method {method:?}")))?;
    let mut request = http.request(method, url);
    for (name, value) in headers {
        // The HTTP client writes these itself, with the same values.
        if name != "host" && name != "content-length" {
            request = request.header(name, value);
        }
    }
    let response = request.body(body).send().await.map_err(transfer)?;
    let status = response.status().as_u16();
    let etag = response
        .headers()
        .get("etag")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .trim_matches('"')
        .to_owned();
    if !(200..300).contains(&status) {
        let message = response.text().await.unwrap_or_default();
        return Err(Error::TransferRefused { status, message });
    }
    Ok(etag)
}

/// Sends a presigned POST form with the file last, as S3 requires.
pub async fn send_form(
    http: &reqwest::Client,
    url: &str,
    fields: &[(String, String)],
    file_name: &str,
    body: &[u8],
) -> Result<(), Error> {
    let boundary = format!(
        "----upload-{:016x}{:016x}",
        fastrand::u64(..),
        fastrand::u64(..)
    );
    let mut form = Vec::with_capacity(body.len() + 4096);
    for (name, value) in fields {
        form.extend_from_slice(
            format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n"
            )
            .as_bytes(),
        );
    }
    form.extend_from_slice(
        format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{}\"\r\n\r\n",
            file_name.replace(['"', '\r', '\n'], "_")
        )
        .as_bytes(),
    );
    form.extend_from_slice(body);
    form.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    let response = http
        .post(url)
        .header(
            "content-type",
            format!("multipart/form-data; boundary={boundary}"),
        )
        .body(form)
        .send()
        .await
        .map_err(transfer)?;
    let status = response.status().as_u16();
    if !(200..300).contains(&status) {
        let message = response.text().await.unwrap_or_default();
        return Err(Error::TransferRefused { status, message });
    }
    Ok(())
}

/// Progress of an upload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    /// The upload is planned: `total` bytes, `already` of them held by S3 from an earlier run.
    Started { total: u64, already: u64 },
    /// One more part is in S3.
    Part { number: u32, bytes: u64 },
}

#[derive(Debug, Clone)]
pub struct UploadOptions {
    /// Preferred part size (the plan raises it if the file needs more than 10,000 parts).
    pub part_size: u64,
    /// Parts in flight at once.
    pub concurrency: usize,
}

impl Default for UploadOptions {
    fn default() -> Self {
        UploadOptions {
            part_size: 8 * 1024 * 1024,
            concurrency: 4,
        }
    }
}

/// What a resumable upload keeps between runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResumeState {
    pub key: String,
    pub upload_id: String,
    pub file_len: u64,
    pub file_modified_ns: u128,
    pub part_size: u64,
    /// Base64 CRC32C of each part, in order.
    pub part_checksums: Vec<String>,
    /// ETags of parts S3 acknowledged, by part number.
    pub etags: BTreeMap<u32, String>,
}

/// How a resumable upload ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Uploaded {
    pub completed: CompleteResponse,
    /// Parts this run sent (the others were in S3 already).
    pub parts_sent: Vec<u32>,
    pub resumed: bool,
}

/// Uploads `path` to `key` as a multipart upload, resuming from `state_path` if it describes an
/// upload of this same file.
pub async fn upload_resumable(
    client: &ApiClient,
    path: &Path,
    key: &str,
    content_type: &str,
    state_path: &Path,
    options: &UploadOptions,
    progress: &(dyn Fn(Progress) + Send + Sync),
) -> Result<Uploaded, Error> {
    let (file_len, modified) = file_identity(path).await?;
    let saved = read_state(state_path).await?.filter(|state| {
        state.key == key && state.file_len == file_len && state.file_modified_ns == modified
    });
    let (state, listed, resumed) = match saved {
        Some(state) => match client.list_parts(&state.upload_id).await {
            Ok(listed) => (state, listed, true),
            // The saved upload is over (expired, aborted, completed or unknown): start afresh.
            Err(Error::Refused {
                status: 404 | 409 | 410,
                ..
            }) => {
                let state =
                    start_upload(client, path, key, content_type, state_path, options).await?;
                let listed = client.list_parts(&state.upload_id).await?;
                (state, listed, false)
            }
            Err(err) => return Err(err),
        },
        None => {
            let state = start_upload(client, path, key, content_type, state_path, options).await?;
            let listed = client.list_parts(&state.upload_id).await?;
            (state, listed, false)
        }
    };
    let plan = PartPlan {
        size: state.file_len,
        part_size: state.part_size,
        part_count: u32::try_from(state.part_checksums.len())
            .map_err(|_| Error::ResumeState("too many parts".into()))?,
    };
    let state = Mutex::new(state);
    {
        // Parts S3 holds whose acknowledgement the crash lost: S3's ETag stands in.
        let mut state = state.lock().expect("state lock");
        for part in &listed.parts {
            state
                .etags
                .entry(part.number)
                .or_insert_with(|| part.etag.clone());
        }
    }
    let already: u64 = (1..=plan.part_count)
        .filter(|n| !listed.missing.contains(n))
        .map(|n| plan.part_len(n))
        .sum();
    progress(Progress::Started {
        total: plan.size,
        already,
    });
    let mut sent = Vec::new();
    for batch in listed.missing.chunks(MAX_SIGN_BATCH) {
        let upload_id = state.lock().expect("state lock").upload_id.clone();
        let checksums = state.lock().expect("state lock").part_checksums.clone();
        let signed = client
            .sign_parts(
                &upload_id,
                &SignPartsRequest {
                    parts: batch
                        .iter()
                        .map(|n| PartToSign {
                            number: *n,
                            checksum: checksums[*n as usize - 1].clone(),
                        })
                        .collect(),
                    expires_in: None,
                },
            )
            .await?;
        let done: Vec<u32> = stream::iter(signed.parts)
            .map(|part| {
                let expected = checksums[part.number as usize - 1].clone();
                let state = &state;
                async move {
                    let body = read_part(path, &plan, part.number).await?;
                    if Checksum::Crc32c(crc32c::crc32c(&body)).to_base64() != expected {
                        return Err(Error::ResumeState(format!(
                            "part {} of {} changed since the upload started",
                            part.number,
                            path.display()
                        )));
                    }
                    let etag = send_with_retries(client.http(), &part, body).await?;
                    let snapshot = {
                        let mut state = state.lock().expect("state lock");
                        state.etags.insert(part.number, etag);
                        state.clone()
                    };
                    write_state(state_path, &snapshot).await?;
                    progress(Progress::Part {
                        number: part.number,
                        bytes: part.size,
                    });
                    Ok::<u32, Error>(part.number)
                }
            })
            .buffer_unordered(options.concurrency.max(1))
            .try_collect()
            .await?;
        sent.extend(done);
    }
    sent.sort_unstable();
    let state = state.into_inner().expect("state lock");
    let completed = client
        .complete(
            &state.upload_id,
            &CompleteRequest {
                parts: state
                    .etags
                    .iter()
                    .map(|(number, etag)| CompletedPartRef {
                        number: *number,
                        etag: etag.clone(),
                    })
                    .collect(),
            },
        )
        .await?;
    remove_state(state_path).await?;
    Ok(Uploaded {
        completed,
        parts_sent: sent,
        resumed,
    })
}

/// Plans the upload, checksums every part, starts the upload and saves its state.
async fn start_upload(
    client: &ApiClient,
    path: &Path,
    key: &str,
    content_type: &str,
    state_path: &Path,
    options: &UploadOptions,
) -> Result<ResumeState, Error> {
    let (file_len, modified) = file_identity(path).await?;
    let plan = PartPlan::new(file_len, None, options.part_size, MAX_OBJECT_BYTES)?;
    let crcs = part_crcs(path, &plan).await?;
    let whole = combine_crc32c(
        crcs.iter()
            .enumerate()
            .map(|(i, crc)| (*crc, plan.part_len(i as u32 + 1))),
    );
    let upload = client
        .create_multipart(&CreateMultipartRequest {
            key: key.to_owned(),
            size: file_len,
            content_type: content_type.to_owned(),
            checksum: ChecksumSpec {
                algorithm: ChecksumAlgorithm::Crc32c,
                value: Checksum::Crc32c(whole).to_base64(),
            },
            part_size: Some(plan.part_size),
        })
        .await?;
    let state = ResumeState {
        key: key.to_owned(),
        upload_id: upload.upload_id,
        file_len,
        file_modified_ns: modified,
        part_size: upload.part_size,
        part_checksums: crcs
            .iter()
            .map(|c| Checksum::Crc32c(*c).to_base64())
            .collect(),
        etags: BTreeMap::new(),
    };
    write_state(state_path, &state).await?;
    Ok(state)
}

async fn send_with_retries(
    http: &reqwest::Client,
    part: &crate::api::SignedPart,
    body: Vec<u8>,
) -> Result<String, Error> {
    let mut attempt = 1;
    loop {
        match send_signed(http, "PUT", &part.url, &part.headers, body.clone()).await {
            Ok(etag) => return Ok(etag),
            Err(err) if err.is_retryable() && attempt < PART_ATTEMPTS => {
                tokio::time::sleep(Duration::from_millis(200 * u64::from(attempt))).await;
                attempt += 1;
            }
            Err(err) => return Err(err),
        }
    }
}

/// Uploads a small file in one signed request (PUT or POST), with its SHA-256.
pub async fn upload_single(
    client: &ApiClient,
    path: &Path,
    key: &str,
    content_type: &str,
    method: UploadMethod,
) -> Result<SingleUploadResponse, Error> {
    let body = tokio::fs::read(path).await.map_err(|e| local(path, e))?;
    let digest: [u8; 32] = Sha256::digest(&body).into();
    let signed = client
        .single_upload(&SingleUploadRequest {
            key: key.to_owned(),
            size: body.len() as u64,
            content_type: content_type.to_owned(),
            checksum: ChecksumSpec {
                algorithm: ChecksumAlgorithm::Sha256,
                value: Checksum::Sha256(digest).to_base64(),
            },
            method,
            expires_in: None,
        })
        .await?;
    match method {
        UploadMethod::Put => {
            send_signed(
                client.http(),
                &signed.method,
                &signed.url,
                &signed.headers,
                body,
            )
            .await?;
        }
        UploadMethod::Post => {
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            send_form(client.http(), &signed.url, &signed.fields, &name, &body).await?;
        }
    }
    Ok(signed)
}

fn local(path: &Path, source: std::io::Error) -> Error {
    Error::LocalFile {
        path: path.display().to_string(),
        source,
    }
}

async fn file_identity(path: &Path) -> Result<(u64, u128), Error> {
    let metadata = tokio::fs::metadata(path)
        .await
        .map_err(|e| local(path, e))?;
    let modified = metadata
        .modified()
        .ok()
        .and_then(|m| m.duration_since(UNIX_EPOCH).ok())
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    Ok((metadata.len(), modified))
}

/// The CRC32C of every part, in one pass over the file.
async fn part_crcs(path: &Path, plan: &PartPlan) -> Result<Vec<u32>, Error> {
    let mut file = tokio::fs::File::open(path)
        .await
        .map_err(|e| local(path, e))?;
    let mut buffer = vec![0u8; READ_BUFFER];
    let mut crcs = Vec::with_capacity(plan.part_count as usize);
    for number in 1..=plan.part_count {
        let mut left = plan.part_len(number);
        let mut crc = 0u32;
        while left > 0 {
            let want = buffer
                .len()
                .min(usize::try_from(left).unwrap_or(usize::MAX));
            file.read_exact(&mut buffer[..want])
                .await
                .map_err(|e| local(path, e))?;
            crc = crc32c::crc32c_append(crc, &buffer[..want]);
            left -= want as u64;
        }
        crcs.push(crc);
    }
    Ok(crcs)
}

async fn read_part(path: &Path, plan: &PartPlan, number: u32) -> Result<Vec<u8>, Error> {
    let mut file = tokio::fs::File::open(path)
        .await
        .map_err(|e| local(path, e))?;
    file.seek(SeekFrom::Start(u64::from(number - 1) * plan.part_size))
        .await
        .map_err(|e| local(path, e))?;
    let mut body = vec![0u8; usize::try_from(plan.part_len(number)).unwrap_or(usize::MAX)];
    file.read_exact(&mut body)
        .await
        .map_err(|e| local(path, e))?;
    Ok(body)
}

async fn read_state(path: &Path) -> Result<Option<ResumeState>, Error> {
    match tokio::fs::read(path).await {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| Error::ResumeState(format!("{}: {e}", path.display()))),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(err) => Err(local(path, err)),
    }
}

/// Writes the state through a temporary file and a rename, so a crash leaves the old or the new.
async fn write_state(path: &Path, state: &ResumeState) -> Result<(), Error> {
    let mut temporary = PathBuf::from(path);
    temporary.set_extension(format!("tmp{:08x}", fastrand::u32(..)));
    let bytes = serde_json::to_vec_pretty(state).map_err(|e| Error::ResumeState(e.to_string()))?;
    tokio::fs::write(&temporary, bytes)
        .await
        .map_err(|e| local(&temporary, e))?;
    tokio::fs::rename(&temporary, path)
        .await
        .map_err(|e| local(path, e))
}

async fn remove_state(path: &Path) -> Result<(), Error> {
    match tokio::fs::remove_file(path).await {
        Ok(()) => Ok(()),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(err) => Err(local(path, err)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn part_checksums_cover_the_file() {
        let dir = std::env::temp_dir().join(format!("upload-client-{:08x}", fastrand::u32(..)));
        tokio::fs::create_dir_all(&dir).await.unwrap();
        let path = dir.join("data.bin");
        let data: Vec<u8> = (0..(5 * 1024 * 1024 + 12_345u32))
            .map(|i| (i % 249) as u8)
            .collect();
        tokio::fs::write(&path, &data).await.unwrap();
        let plan = PartPlan {
            size: data.len() as u64,
            part_size: 2 * 1024 * 1024,
            part_count: 3,
        };
        let crcs = part_crcs(&path, &plan).await.unwrap();
        let expected: Vec<u32> = data.chunks(2 * 1024 * 1024).map(crc32c::crc32c).collect();
        assert_eq!(crcs, expected);
        assert_eq!(
            read_part(&path, &plan, 3).await.unwrap(),
            data[4 * 1024 * 1024..]
        );
        let state = ResumeState {
            key: "k".into(),
            upload_id: "u".into(),
            file_len: 1,
            file_modified_ns: 2,
            part_size: 3,
            part_checksums: vec!["AAAAAA==".into()],
            etags: BTreeMap::from([(1, "e".into())]),
        };
        let state_path = dir.join("state.json");
        write_state(&state_path, &state).await.unwrap();
        assert_eq!(read_state(&state_path).await.unwrap(), Some(state));
        remove_state(&state_path).await.unwrap();
        assert_eq!(read_state(&state_path).await.unwrap(), None);
        tokio::fs::remove_dir_all(&dir).await.unwrap();
    }
}
