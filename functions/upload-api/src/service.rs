//! The API's operations: authenticate, rate-limit, route, decide (with `plan`), then sign or
//! read through the store traits.

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use http::HeaderMap;
use serde::de::DeserializeOwned;
use serde_json::Value;
use shared::metrics::{Metric, Metrics};
use shared::{Failure, ObjectKey};
use time::OffsetDateTime;

use crate::api::{
    ChangesResponse, ChecksumSpec, CompleteRequest, CompleteResponse, CookieSetView,
    CookiesResponse, CreateMultipartRequest, Download, FileResponse, ListPartsResponse, MeResponse,
    MultipartUpload, PartView, SignPartsRequest, SignPartsResponse, SignedPart,
    SingleUploadRequest, SingleUploadResponse, UploadMethod,
};
use crate::auth::{authenticate, Caller, IamPrincipal};
use crate::checksum::{Checksum, ChecksumAlgorithm};
use crate::cloudfront::CloudFrontSigner;
use crate::config::{ApiConfig, UploadAccess};
use crate::error::Error;
use crate::plan::{
    authorize_key, authorize_prefix, check_complete, check_content_type, check_part_list,
    check_sign_batch, check_single_size, missing_parts, signed_lifetime, url_expiry, ClaimedPart,
    PartPlan, MAX_SINGLE_BYTES,
};
use crate::post_policy::{sign_post, PostPolicy};
use crate::ratelimit::Decision;
use crate::record::{check_cursor, feed_horizon, past_horizon, timestamp};
use crate::routes::{route, Route};
use crate::store::{
    CompleteOutcome, FileIndex, ObjectStore, RateLimiter, Session, SessionState, Sessions,
};

/// Most versions `GET /files/{key}?versions=true` returns.
pub const MAX_VERSIONS: usize = 100;
/// Changes per page of the feed unless the client asks for fewer.
pub const DEFAULT_FEED_PAGE: usize = 100;
pub const MAX_FEED_PAGE: usize = 1000;

/// A request as the function URL delivers it, decoded.
#[derive(Debug, Clone, Default)]
pub struct HttpRequest {
    pub method: String,
    pub raw_path: String,
    pub query: HashMap<String, String>,
    pub headers: HeaderMap,
    pub body: Option<Vec<u8>>,
    pub iam: Option<IamPrincipal>,
}

/// A successful answer.
#[derive(Debug, Clone, PartialEq)]
pub struct Answer {
    pub status: u16,
    pub body: Option<Value>,
}

impl Answer {
    fn ok(body: impl serde::Serialize) -> Result<Self, Error> {
        Self::with_status(200, body)
    }

    fn with_status(status: u16, body: impl serde::Serialize) -> Result<Self, Error> {
        Ok(Answer {
            status,
            body: Some(
                serde_json::to_value(body)
                    .map_err(|e| Error::CorruptRecord(format!("answer: {e}")))?,
            ),
        })
    }
}

/// The metric counting requests refused authentication (template.yaml's alarm names it).
pub const AUTHENTICATION_REFUSED: &str = "AuthenticationRefused";

/// What happened to one request, for its log line and metric.
#[derive(Debug)]
pub struct Served {
    pub route: &'static str,
    pub caller: Option<String>,
    pub result: Result<Answer, Error>,
}

/// The upload API over its stores. Build once per sandbox.
pub struct Api<O, S, F, R> {
    config: ApiConfig,
    objects: O,
    sessions: S,
    files: F,
    rate: R,
    metrics: Metrics,
    /// With `UploadAccess=signed`: what signs the distribution's URLs and cookies.
    cloudfront: Option<CloudFrontSigner>,
}

impl<O, S, F, R> Api<O, S, F, R>
where
    O: ObjectStore,
    S: Sessions,
    F: FileIndex,
    R: RateLimiter,
{
    pub fn new(
        config: ApiConfig,
        objects: O,
        sessions: S,
        files: F,
        rate: R,
        metrics: Metrics,
    ) -> Self {
        Api {
            config,
            objects,
            sessions,
            files,
            rate,
            metrics,
            cloudfront: None,
        }
    }

    /// Signs downloads for the distribution (`UploadAccess=signed`) with `signer`.
    pub fn with_cloudfront(mut self, signer: CloudFrontSigner) -> Self {
        self.cloudfront = Some(signer);
        self
    }

    pub fn config(&self) -> &ApiConfig {
        &self.config
    }

    /// Serves one request at `now`.
    pub async fn serve(&self, request: &HttpRequest, now: OffsetDateTime) -> Served {
        let route = match route(&request.method, &request.raw_path) {
            Ok(route) => route,
            Err(err) => {
                return Served {
                    route: "none",
                    caller: None,
                    result: Err(err),
                }
            }
        };
        let name = route.name();
        let caller = match authenticate(&self.config.auth, &request.headers, request.iam.as_ref()) {
            Ok(caller) => caller,
            Err(err) => {
                // Before the token bucket (no caller to charge): counted on its own, with the
                // function's dimension alone, for the alarm on a flood of bad tokens.
                self.metrics
                    .emit(&[], &[Metric::count(AUTHENTICATION_REFUSED, 1)]);
                return Served {
                    route: name,
                    caller: None,
                    result: Err(err),
                };
            }
        };
        tracing::Span::current().record("caller", caller.id());
        let result = match self.admit(&caller, now).await {
            Ok(()) => self.dispatch(route, &caller, request, now).await,
            Err(err) => Err(err),
        };
        let outcome = match &result {
            Ok(_) => "ok",
            Err(err) => err.reason(),
        };
        self.metrics.emit(
            &[("Route", name), ("Outcome", outcome)],
            &[Metric::count("Requests", 1)],
        );
        Served {
            route: name,
            caller: Some(caller.id().to_owned()),
            result,
        }
    }

    async fn admit(&self, caller: &Caller, now: OffsetDateTime) -> Result<(), Error> {
        match self.rate.acquire(caller.id(), millis(now)).await? {
            Decision::Allow(_) => Ok(()),
            Decision::Deny { retry_after } => Err(Error::RateLimited { retry_after }),
        }
    }

    async fn dispatch(
        &self,
        route: Route,
        caller: &Caller,
        request: &HttpRequest,
        now: OffsetDateTime,
    ) -> Result<Answer, Error> {
        match route {
            Route::Me => self.me(caller),
            Route::SingleUpload => self.single_upload(caller, body(request)?, now).await,
            Route::CreateMultipart => self.create_multipart(caller, body(request)?, now).await,
            Route::SignParts(id) => self.sign_parts(caller, &id, body(request)?, now).await,
            Route::ListParts(id) => self.list_parts(caller, &id, now).await,
            Route::Complete(id) => self.complete(caller, &id, body(request)?, now).await,
            Route::Abort(id) => self.abort(caller, &id).await,
            Route::ListChanges => self.list_changes(caller, &request.query, now).await,
            Route::GetFile(key) => self.get_file(caller, &key, &request.query, now).await,
            Route::Cookies => self.cookies(caller, &request.query, now),
        }
    }

    fn prefix(&self, caller: &Caller) -> String {
        caller.prefix(&self.config.upload_prefix)
    }

    fn me(&self, caller: &Caller) -> Result<Answer, Error> {
        Answer::ok(MeResponse {
            caller: caller.id().to_owned(),
            prefix: self.prefix(caller),
            max_object_bytes: self.config.max_object_bytes,
            max_single_bytes: self.config.max_object_bytes.min(MAX_SINGLE_BYTES),
            part_size: self.config.part_size,
            allowed_content_types: self.config.allowed_content_types.clone(),
        })
    }

    async fn single_upload(
        &self,
        caller: &Caller,
        request: SingleUploadRequest,
        now: OffsetDateTime,
    ) -> Result<Answer, Error> {
        let key = authorize_key(&self.prefix(caller), &request.key)?;
        let content_type =
            check_content_type(&self.config.allowed_content_types, &request.content_type)?;
        check_single_size(request.size, self.config.max_object_bytes)?;
        let checksum = Checksum::parse(request.checksum.algorithm, &request.checksum.value)?;
        let expires_in = url_expiry(
            request.expires_in,
            self.config.url_expiry,
            self.config.max_url_expiry,
        )?;
        let response = match request.method {
            UploadMethod::Put => {
                let signed = self
                    .objects
                    .presign_put(&key, &content_type, request.size, checksum, expires_in)
                    .await?;
                SingleUploadResponse {
                    key: key.to_string(),
                    method: signed.method,
                    url: signed.url,
                    headers: signed.headers,
                    fields: Vec::new(),
                    expires_at: timestamp(now + signed.expires_in),
                }
            }
            UploadMethod::Post => {
                let target = self.objects.post_target().await?;
                let lifetime =
                    signed_lifetime(expires_in, SystemTime::from(now), target.credentials_expiry)?;
                let expires_at = now + lifetime;
                let fields = sign_post(
                    &PostPolicy {
                        bucket: self.objects.bucket(),
                        key: key.as_str(),
                        content_type: &content_type,
                        checksum,
                        length_range: (request.size, request.size),
                        now,
                        expires_at,
                        region: &target.region,
                    },
                    &target.credentials,
                );
                SingleUploadResponse {
                    key: key.to_string(),
                    method: "POST".into(),
                    url: target.url,
                    headers: Default::default(),
                    fields,
                    expires_at: timestamp(expires_at),
                }
            }
        };
        tracing::info!(key = %key, size = request.size, method = %response.method, "signed a single upload");
        Answer::ok(response)
    }

    async fn create_multipart(
        &self,
        caller: &Caller,
        request: CreateMultipartRequest,
        now: OffsetDateTime,
    ) -> Result<Answer, Error> {
        let key = authorize_key(&self.prefix(caller), &request.key)?;
        let content_type =
            check_content_type(&self.config.allowed_content_types, &request.content_type)?;
        if request.checksum.algorithm != ChecksumAlgorithm::Crc32c {
            return Err(Error::InvalidChecksum(
                "a multipart upload declares the CRC32C of the whole object (S3 verifies a multipart \
                 object's full CRC32C, not its SHA-256)"
                    .into(),
            ));
        }
        let crc32c = Checksum::parse(ChecksumAlgorithm::Crc32c, &request.checksum.value)?
            .crc32c()
            .unwrap_or_default();
        let plan = PartPlan::new(
            request.size,
            request.part_size,
            self.config.part_size,
            self.config.max_object_bytes,
        )?;
        let upload_id = self.objects.create_multipart(&key, &content_type).await?;
        let session = Session {
            upload_id,
            owner: caller.id().to_owned(),
            key: key.to_string(),
            plan,
            content_type,
            crc32c,
            created_at_ms: millis(now),
            expires_at_ms: millis(now + self.config.upload_ttl),
            state: SessionState::Open,
            signed: Default::default(),
        };
        if let Err(err) = self.sessions.create(&session).await {
            // Without its session nobody could use (or complete) the upload: do not leave it.
            if let Err(abort) = self.objects.abort(&key, &session.upload_id).await {
                tracing::warn!(error = %abort, upload_id = %session.upload_id, "could not abort an upload without a session");
            }
            return Err(err);
        }
        tracing::info!(key = %key, upload_id = %session.upload_id, parts = plan.part_count, "started a multipart upload");
        Answer::with_status(201, upload_view(&session))
    }

    /// The caller's open, unexpired session.
    async fn open_session(
        &self,
        caller: &Caller,
        upload_id: &str,
        now: OffsetDateTime,
    ) -> Result<Session, Error> {
        let session = self.owned_session(caller, upload_id).await?;
        if session.state != SessionState::Open {
            return Err(Error::UploadFinished {
                upload_id: upload_id.to_owned(),
                state: session.state.as_str().to_ascii_lowercase(),
            });
        }
        if millis(now) >= session.expires_at_ms {
            return Err(Error::UploadExpired(upload_id.to_owned()));
        }
        Ok(session)
    }

    async fn owned_session(&self, caller: &Caller, upload_id: &str) -> Result<Session, Error> {
        match self.sessions.get(upload_id).await? {
            // Another caller's upload is as unknown as one that never was.
            Some(session) if session.owner == caller.id() => Ok(session),
            _ => Err(Error::UploadNotFound(upload_id.to_owned())),
        }
    }

    async fn sign_parts(
        &self,
        caller: &Caller,
        upload_id: &str,
        request: SignPartsRequest,
        now: OffsetDateTime,
    ) -> Result<Answer, Error> {
        let session = self.open_session(caller, upload_id, now).await?;
        let numbers: Vec<u32> = request.parts.iter().map(|p| p.number).collect();
        check_sign_batch(&session.plan, &numbers)?;
        let checksums = request
            .parts
            .iter()
            .map(|p| {
                Checksum::parse(ChecksumAlgorithm::Crc32c, &p.checksum)
                    .map(|c| (p.number, c.crc32c().unwrap_or_default()))
            })
            .collect::<Result<Vec<(u32, u32)>, Error>>()?;
        let requested = url_expiry(
            request.expires_in,
            self.config.url_expiry,
            self.config.max_url_expiry,
        )?;
        // A part URL is no use once its upload has expired.
        let remaining = Duration::from_millis(session.expires_at_ms.saturating_sub(millis(now)));
        let expires_in = requested.min(remaining).max(Duration::from_secs(1));
        if !self.sessions.record_signed(upload_id, &checksums).await? {
            return Err(self.explain_closed(upload_id).await);
        }
        let key = ObjectKey::new(session.key.clone())?;
        let mut parts = Vec::with_capacity(checksums.len());
        // The credentials may give a part's URL less than asked for: the answer says the least.
        let mut lifetime = expires_in;
        for (number, crc32c) in checksums {
            let size = session.plan.part_len(number);
            let signed = self
                .objects
                .presign_part(&key, upload_id, number, size, crc32c, expires_in)
                .await?;
            lifetime = lifetime.min(signed.expires_in);
            parts.push(SignedPart {
                number,
                size,
                url: signed.url,
                headers: signed.headers,
            });
        }
        Answer::ok(SignPartsResponse {
            upload_id: upload_id.to_owned(),
            parts,
            expires_at: timestamp(now + lifetime),
        })
    }

    /// Why a session that was open a moment ago no longer is.
    async fn explain_closed(&self, upload_id: &str) -> Error {
        match self.sessions.get(upload_id).await {
            Ok(Some(session)) => Error::UploadFinished {
                upload_id: upload_id.to_owned(),
                state: session.state.as_str().to_ascii_lowercase(),
            },
            Ok(None) => Error::UploadNotFound(upload_id.to_owned()),
            Err(err) => err,
        }
    }

    async fn list_parts(
        &self,
        caller: &Caller,
        upload_id: &str,
        now: OffsetDateTime,
    ) -> Result<Answer, Error> {
        let session = self.open_session(caller, upload_id, now).await?;
        let key = ObjectKey::new(session.key.clone())?;
        let uploaded = self
            .objects
            .list_parts(&key, upload_id)
            .await?
            .ok_or_else(|| Error::UploadExpired(upload_id.to_owned()))?;
        Answer::ok(ListPartsResponse {
            upload: upload_view(&session),
            missing: missing_parts(&session.plan, &uploaded),
            parts: uploaded
                .into_iter()
                .map(|p| PartView {
                    number: p.number,
                    size: p.size,
                    etag: p.etag.trim_matches('"').to_owned(),
                })
                .collect(),
        })
    }

    async fn complete(
        &self,
        caller: &Caller,
        upload_id: &str,
        request: CompleteRequest,
        now: OffsetDateTime,
    ) -> Result<Answer, Error> {
        check_part_list(request.parts.iter().map(|p| p.etag.as_str()))?;
        let session = self.open_session(caller, upload_id, now).await?;
        let key = ObjectKey::new(session.key.clone())?;
        let uploaded = self
            .objects
            .list_parts(&key, upload_id)
            .await?
            .ok_or_else(|| Error::UploadExpired(upload_id.to_owned()))?;
        let claimed: Vec<ClaimedPart> = request
            .parts
            .iter()
            .map(|p| ClaimedPart {
                number: p.number,
                etag: p.etag.clone(),
            })
            .collect();
        let parts = check_complete(
            &session.plan,
            session.crc32c,
            &claimed,
            &uploaded,
            &session.signed,
        )?;
        match self
            .objects
            .complete(&key, upload_id, &parts, session.crc32c)
            .await?
        {
            CompleteOutcome::Completed { etag, version_id } => {
                // A concurrent complete of the same upload may have closed it first: S3 made
                // one object either way.
                self.sessions
                    .finish(upload_id, SessionState::Completed)
                    .await?;
                tracing::info!(key = %key, upload_id, parts = parts.len(), "completed a multipart upload");
                Answer::ok(CompleteResponse {
                    key: key.to_string(),
                    etag,
                    size: session.plan.size,
                    checksum: ChecksumSpec {
                        algorithm: ChecksumAlgorithm::Crc32c,
                        value: Checksum::Crc32c(session.crc32c).to_base64(),
                    },
                    s3_version_id: version_id,
                })
            }
            CompleteOutcome::NoSuchUpload => match self.sessions.get(upload_id).await? {
                Some(s) if s.state != SessionState::Open => Err(Error::UploadFinished {
                    upload_id: upload_id.to_owned(),
                    state: s.state.as_str().to_ascii_lowercase(),
                }),
                _ => Err(Error::UploadExpired(upload_id.to_owned())),
            },
        }
    }

    async fn abort(&self, caller: &Caller, upload_id: &str) -> Result<Answer, Error> {
        let session = self.owned_session(caller, upload_id).await?;
        if session.state != SessionState::Open {
            return Err(Error::UploadFinished {
                upload_id: upload_id.to_owned(),
                state: session.state.as_str().to_ascii_lowercase(),
            });
        }
        let key = ObjectKey::new(session.key.clone())?;
        self.objects.abort(&key, upload_id).await?;
        if !self
            .sessions
            .finish(upload_id, SessionState::Aborted)
            .await?
        {
            return Err(self.explain_closed(upload_id).await);
        }
        tracing::info!(key = %key, upload_id, "aborted a multipart upload");
        Ok(Answer {
            status: 204,
            body: None,
        })
    }

    async fn get_file(
        &self,
        caller: &Caller,
        key: &str,
        query: &HashMap<String, String>,
        now: OffsetDateTime,
    ) -> Result<Answer, Error> {
        let key = authorize_key(&self.prefix(caller), key)?;
        let all = flag(query, "versions")?;
        let download = flag(query, "download")?;
        let expires_in = expires_in(query)?;
        if expires_in.is_some() && !download {
            return Err(Error::InvalidRequest(
                "expires_in is for download=true".into(),
            ));
        }
        let mut versions = self
            .files
            .versions(key.as_str(), if all { MAX_VERSIONS } else { 1 })
            .await?;
        if versions.is_empty() {
            return Err(Error::FileNotFound(key.to_string()));
        }
        let latest = versions[0].clone();
        if !all {
            versions.clear();
        }
        let download = if download {
            Some(self.download(&key, expires_in, now).await?)
        } else {
            None
        };
        Answer::ok(FileResponse {
            latest,
            versions,
            download,
        })
    }

    /// A URL the owner reads `key` with: through the distribution when it serves uploads with
    /// signed URLs, else a presigned GET from the bucket.
    async fn download(
        &self,
        key: &ObjectKey,
        expires_in: Option<u64>,
        now: OffsetDateTime,
    ) -> Result<Download, Error> {
        let lifetime = url_expiry(
            expires_in,
            self.config.url_expiry,
            self.config.max_url_expiry,
        )?;
        let download = match &self.config.access {
            UploadAccess::Signed(_) => {
                let signer = self.signer()?;
                let expires_at = now + lifetime;
                Download {
                    url: signer.signed_url(key.as_str(), epoch_seconds(expires_at)),
                    via: "cloudfront".into(),
                    expires_at: timestamp(expires_at),
                }
            }
            UploadAccess::Private | UploadAccess::Public => {
                let signed = self.objects.presign_get(key, lifetime).await?;
                Download {
                    url: signed.url,
                    via: "s3".into(),
                    expires_at: timestamp(now + signed.expires_in),
                }
            }
        };
        tracing::info!(key = %key, via = %download.via, "signed a download");
        Ok(download)
    }

    fn signer(&self) -> Result<&CloudFrontSigner, Error> {
        // main builds the signer whenever the configuration says signed.
        self.cloudfront.as_ref().ok_or_else(|| {
            Error::Credentials(
                "UPLOAD_ACCESS is signed but no CloudFront signing key was loaded".into(),
            )
        })
    }

    /// Signed cookies for the caller's uploads and their thumbnails on the distribution.
    fn cookies(
        &self,
        caller: &Caller,
        query: &HashMap<String, String>,
        now: OffsetDateTime,
    ) -> Result<Answer, Error> {
        let UploadAccess::Signed(signed) = &self.config.access else {
            return Err(Error::InvalidRequest(format!(
                "uploads are {} (UploadAccess): the distribution takes no signed cookies",
                self.config.access.name()
            )));
        };
        let signer = self.signer()?;
        let lifetime = url_expiry(
            expires_in(query)?,
            self.config.url_expiry,
            self.config.max_url_expiry,
        )?;
        let expires_at = now + lifetime;
        let prefix = self.prefix(caller);
        let sets = [
            prefix.clone(),
            format!("{}{prefix}", signed.thumbnail_prefix),
        ]
        .iter()
        .map(|prefix| {
            let set = signer.cookies(prefix, epoch_seconds(expires_at));
            CookieSetView {
                set_cookie: set.set_cookie_values(),
                cookies: set.cookies.into_iter().collect(),
                path: set.path,
                resource: set.resource,
            }
        })
        .collect();
        Answer::ok(CookiesResponse {
            domain: signer.domain().to_owned(),
            expires_at: timestamp(expires_at),
            sets,
        })
    }

    async fn list_changes(
        &self,
        caller: &Caller,
        query: &HashMap<String, String>,
        now: OffsetDateTime,
    ) -> Result<Answer, Error> {
        let prefix = authorize_prefix(
            &self.prefix(caller),
            query.get("prefix").map(String::as_str),
        )?;
        let since = query
            .get("since")
            .filter(|s| !s.is_empty())
            .map(|s| check_cursor(s))
            .transpose()?;
        let limit = match query.get("limit") {
            None => DEFAULT_FEED_PAGE,
            Some(raw) => raw
                .parse::<usize>()
                .ok()
                .filter(|n| (1..=MAX_FEED_PAGE).contains(n))
                .ok_or_else(|| {
                    Error::InvalidRequest(format!("limit is {raw:?}: 1 to {MAX_FEED_PAGE}"))
                })?,
        };
        let horizon = feed_horizon(millis(now), self.config.feed_settle.as_millis() as u64);
        if past_horizon(since.as_deref(), &horizon) {
            return Answer::ok(ChangesResponse {
                changes: Vec::new(),
                cursor: since,
                more: false,
            });
        }
        let page = self
            .files
            .changes(caller.id(), &prefix, since.as_deref(), &horizon, limit)
            .await?;
        Answer::ok(ChangesResponse {
            cursor: page.last_read.or(since),
            changes: page.changes,
            more: page.more,
        })
    }
}

fn upload_view(session: &Session) -> MultipartUpload {
    MultipartUpload {
        upload_id: session.upload_id.clone(),
        key: session.key.clone(),
        size: session.plan.size,
        part_size: session.plan.part_size,
        part_count: session.plan.part_count,
        content_type: session.content_type.clone(),
        checksum: ChecksumSpec {
            algorithm: ChecksumAlgorithm::Crc32c,
            value: Checksum::Crc32c(session.crc32c).to_base64(),
        },
        expires_at: timestamp(
            OffsetDateTime::from_unix_timestamp_nanos(
                i128::from(session.expires_at_ms) * 1_000_000,
            )
            .unwrap_or(OffsetDateTime::UNIX_EPOCH),
        ),
    }
}

/// A `true`/`false` query parameter, false when absent.
fn flag(query: &HashMap<String, String>, name: &str) -> Result<bool, Error> {
    match query.get(name).map(String::as_str) {
        None | Some("false") => Ok(false),
        Some("true") => Ok(true),
        Some(other) => Err(Error::InvalidRequest(format!(
            "{name} is {other:?}: true or false"
        ))),
    }
}

/// The `expires_in` query parameter: seconds.
fn expires_in(query: &HashMap<String, String>) -> Result<Option<u64>, Error> {
    query
        .get("expires_in")
        .map(|raw| {
            raw.parse::<u64>().map_err(|_| {
                Error::InvalidRequest(format!("expires_in is {raw:?}: a number of seconds"))
            })
        })
        .transpose()
}

fn epoch_seconds(at: OffsetDateTime) -> u64 {
    u64::try_from(at.unix_timestamp()).unwrap_or(0)
}

fn body<T: DeserializeOwned>(request: &HttpRequest) -> Result<T, Error> {
    let bytes = request
        .body
        .as_deref()
        .filter(|b| !b.is_empty())
        .ok_or_else(|| Error::InvalidRequest("a JSON body is required".into()))?;
    serde_json::from_slice(bytes).map_err(|e| Error::InvalidRequest(format!("body: {e}")))
}

pub fn millis(at: OffsetDateTime) -> u64 {
    u64::try_from(at.unix_timestamp_nanos() / 1_000_000).unwrap_or(0)
}
