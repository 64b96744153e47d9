//! The backfill function's configuration, read once at cold start.

use std::time::Duration;

use http::{HeaderName, HeaderValue};
use shared::config::{error, ConfigError, Env};
use shared::key::{KeyPrefix, RefusedPrefixes};
use shared::message::{is_bucket_name, Protocol};
use shared::origin_secret;
use shared::retry::MAX_VISIBILITY;

const MIB: u64 = 1024 * 1024;
/// S3's multipart limits.
pub const MIN_PART_SIZE: u64 = 5 * MIB;
pub const MAX_PART_SIZE: u64 = 5 * 1024 * MIB;
pub const MAX_PARTS: u64 = 10_000;
/// S3's largest object: 10,000 parts of 5 GiB (48.8 TiB).
pub const MAX_OBJECT_SIZE: u64 = MAX_PARTS * MAX_PART_SIZE;
/// S3's largest single PutObject.
pub const MAX_PUT_SIZE: u64 = 5 * 1024 * MIB;

/// The visibility backoff of a failed message. Sized against the backfill queue's redrive
/// (`maxReceiveCount` 5 in template.yaml): with equal jitter the four waits before the fifth and
/// last delivery add up to at least 2.5 + 5 + 10 + 20 = 37.5 minutes, so that a domestic-origin
/// outage of half an hour sends no message to the DLQ.
pub const DEFAULT_RETRY_BASE: Duration = Duration::from_secs(5 * 60);
pub const DEFAULT_RETRY_CAP: Duration = Duration::from_secs(60 * 60);

/// An origin the function may fetch from: protocol, host, port and origin path must all match.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllowedOrigin {
    pub protocol: Protocol,
    /// As the HTTP client's URL parser reads it: a domain lower-cased, an IPv4 address in any of
    /// its forms (`2130706433`, `0x7f.1`) made an address.
    pub host: url::Host<String>,
    pub port: u16,
    /// The one origin path allowed: "" (an entry written without a path) or "/static", no
    /// trailing slash.
    pub path: String,
}

impl AllowedOrigin {
    /// Whether the entry names a loopback host itself (`127.0.0.1`, `[::1]`, `localhost`): only
    /// then may a message reach the loopback.
    pub fn names_loopback(&self) -> bool {
        match &self.host {
            url::Host::Domain(name) => name == "localhost",
            url::Host::Ipv4(address) => address.is_loopback(),
            url::Host::Ipv6(address) => address.is_loopback(),
        }
    }
}

/// The Secrets Manager secret whose value goes to the origin under `header`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OriginSecretSource {
    pub arn: SecretArn,
    pub header: HeaderName,
    /// A version id; `None` reads the current version (AWSCURRENT).
    pub version: Option<String>,
}

/// A Secrets Manager secret's ARN: `arn:PARTITION:secretsmanager:REGION:ACCOUNT:secret:NAME`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretArn {
    arn: String,
    region: String,
}

/// GetSecretValue's limits on SecretId and VersionId (its API reference,
/// https://docs.aws.amazon.com/secretsmanager/latest/apireference/API_GetSecretValue.html).
const SECRET_ID_MAX: usize = 2048;
const VERSION_ID_LENGTH: std::ops::RangeInclusive<usize> = 32..=64;

impl SecretArn {
    pub fn parse(raw: &str) -> Option<Self> {
        if raw.len() > SECRET_ID_MAX {
            return None;
        }
        let arn = shared::aws::Arn::parse(raw).filter(|arn| arn.service == "secretsmanager")?;
        let (partition, region, account) = (arn.partition, arn.region, arn.account);
        let name = arn.resource.strip_prefix("secret:")?;
        let word = |text: &str| {
            !text.is_empty()
                && text
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        };
        // Secret names: letters, digits and /_+=.@- (CreateSecret's Name).
        let name_valid = !name.is_empty()
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"/_+=.@-".contains(&b));
        let account_valid = account.len() == 12 && account.bytes().all(|b| b.is_ascii_digit());
        (word(partition) && word(region) && account_valid && name_valid).then(|| SecretArn {
            arn: raw.to_owned(),
            region: region.to_owned(),
        })
    }

    pub fn as_str(&self) -> &str {
        &self.arn
    }

    /// The secret's region: it is read there, whatever the function's own.
    pub fn region(&self) -> &str {
        &self.region
    }
}

impl std::fmt::Display for SecretArn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.arn)
    }
}

#[derive(Debug, Clone)]
pub struct Config {
    /// The only bucket messages may name.
    pub bucket: String,
    pub allowed_origins: Vec<AllowedOrigin>,
    /// Put before the decoded URI to make the key, as the edge hook's `x-backfill-key-prefix`: a
    /// message's key must be exactly that.
    pub key_prefix: KeyPrefix,
    /// Keys never written, whatever a message says (the upload prefix, the thumbnails): as the
    /// edge hook's `x-backfill-refused-prefixes`, compared with the whole key.
    pub refused_prefixes: RefusedPrefixes,
    /// Extra request headers for the origin: sent, never logged (their values are marked
    /// sensitive). The origin secret joins them once read.
    pub origin_headers: Vec<(HeaderName, HeaderValue)>,
    /// Where the origin secret is kept, read once at cold start.
    pub origin_secret: Option<OriginSecretSource>,
    pub max_object_size: u64,
    /// Objects of a known length up to this go in one PutObject (read whole up to
    /// `plan::BUFFERED_PUT_MAX`, streamed above); larger or of unknown length, multipart.
    pub single_put_max: u64,
    pub part_size: u64,
    /// Parts of one object uploaded at once.
    pub upload_concurrency: usize,
    /// Records (so origin fetches) of one batch at once.
    pub record_concurrency: usize,
    pub connect_timeout: Duration,
    pub first_byte_timeout: Duration,
    pub idle_timeout: Duration,
    /// Consecutive origin failures that open the circuit breaker, and how long it stays open.
    pub breaker_threshold: u32,
    pub breaker_cooldown: Duration,
    /// Visibility backoff for a failed message: base and cap.
    pub retry_base: Duration,
    pub retry_cap: Duration,
    /// Work stops this long before the invocation's deadline, to abort cleanly.
    pub deadline_margin: Duration,
    /// A record starts only with at least this long left before the margin; later ones are handed
    /// back at once with a short visibility.
    pub min_record_time: Duration,
    pub metrics_namespace: String,
    /// The lease table (one copy in flight per key). Without it, copies of one key are not
    /// coalesced and none is split.
    pub lease_table: Option<String>,
    /// The queue of part tasks. Without it, a copy is never split across invocations.
    pub part_queue_url: Option<String>,
    /// The part queue mapping's maximum concurrency: how many parts are fetched at once.
    pub part_workers: u32,
    /// Bytes of the first GET read to measure the origin's rate before deciding to split.
    pub probe_bytes: u64,
    /// The time a part should take; by default a third of the invocation's time, at most 120 s.
    pub part_seconds: Option<Duration>,
    /// How long a split copy's lease lives after its last part started or finished: a copy
    /// message arriving later takes the copy over and finishes it.
    pub lease_grace: Duration,
    /// Days an unfinished multipart upload may live (the bucket's lifecycle rule, 1 in
    /// template.yaml): a split copy that could not finish within them is refused.
    pub upload_days: u32,
    pub freshness: Freshness,
}

/// Keeping copies fresh: refreshes, purges and the revalidation schedule.
#[derive(Debug, Clone)]
pub struct Freshness {
    /// What the function copied and when each copy is next due. Without it nothing is
    /// revalidated on a schedule (announced changes still are).
    pub table: Option<String>,
    /// Where the function sends its own changes: a change of a key whose copy is in flight is
    /// put back there (delayed), a prefix's keys are announced there, and the schedule's sweep
    /// sends its refreshes there. A standard queue the function consumes (the part queue in
    /// template.yaml: a FIFO backfill queue takes neither per-message delays nor messages
    /// without a deduplication id). Without it, change messages are refused.
    pub queue_url: Option<String>,
    /// Where changed paths wait to be invalidated in CloudFront, in batches.
    pub invalidation_queue_url: Option<String>,
    /// The distribution to invalidate; without it, paths are reported and dropped.
    pub distribution_id: Option<String>,
    /// Where the image processor writes an image's renditions (`{prefix}{key}/...`): a changed
    /// image's renditions are invalidated with it. None: only the object's own path is.
    pub thumbnail_prefix: Option<String>,
    /// When the origin answers 404 or 410 for a copy: delete it (default) or keep it.
    pub on_origin_gone: OnOriginGone,
    /// No copy goes longer than this without a revalidation, given the budget for it.
    pub max_staleness: Duration,
    /// Nor is one revalidated more often than this.
    pub min_revalidation: Duration,
    /// Origin requests the schedule may spend a minute.
    pub revalidation_budget: u32,
    /// A new body up to this size replaces the copy in this invocation; a larger one deletes the
    /// copy (conditionally) and enqueues a copy, which may be split across invocations.
    pub replace_in_place_max: u64,
    /// The first delay of a change put back because its key's copy is in flight (doubling, up to
    /// a minute).
    pub busy_delay: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnOriginGone {
    Delete,
    Keep,
}

impl Config {
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let bucket = env.required("BUCKET", "the overseas S3 bucket name")?;
        if !is_bucket_name(&bucket) {
            return Err(error(
                "BUCKET",
                &format!("is {bucket:?}"),
                "an S3 bucket name",
            ));
        }
        let expected_origins = "a comma-separated list of origins such as https://www.example.com, http://10.0.0.5:8080 or https://www.example.com/static (scheme, host, optional port and origin path; no user, query or '.' segments)";
        let allowed_origins = env
            .list_or("ALLOWED_ORIGINS", &[])
            .iter()
            .map(|raw| {
                parse_allowed_origin(raw).ok_or_else(|| {
                    error("ALLOWED_ORIGINS", &format!("has {raw:?}"), expected_origins)
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        if allowed_origins.is_empty() {
            return Err(error("ALLOWED_ORIGINS", "is not set", expected_origins));
        }
        let key_prefix =
            KeyPrefix::parse(&env.get("KEY_PREFIX").unwrap_or_default()).ok_or_else(|| {
                error(
                    "KEY_PREFIX",
                    "is not a key prefix",
                    "empty, or a key prefix such as mirror/ (no empty, '.' or '..' segments)",
                )
            })?;
        let refused_prefixes = env.parse_or(
            "REFUSED_PREFIXES",
            RefusedPrefixes::default(),
            RefusedPrefixes::EXPECTED,
            RefusedPrefixes::parse,
        )?;
        let origin_headers = parse_origin_headers(env.get("ORIGIN_HEADERS").as_deref())?;
        let origin_secret = parse_origin_secret(env)?;
        if let Some(secret) = &origin_secret {
            if origin_headers
                .iter()
                .any(|(name, _)| *name == secret.header)
            {
                return Err(error(
                    "ORIGIN_HEADERS",
                    &format!("also names ORIGIN_SECRET_HEADER {}", secret.header),
                    "other headers than the secret's, which comes from ORIGIN_SECRET_ARN only",
                ));
            }
        }
        let size = |name, default| env.number_or(name, default, "a size in bytes");
        let config = Config {
            bucket,
            allowed_origins,
            key_prefix,
            refused_prefixes,
            origin_headers,
            origin_secret,
            max_object_size: size("MAX_OBJECT_SIZE", 50 * 1024 * MIB)?,
            single_put_max: size("SINGLE_PUT_MAX", MAX_PUT_SIZE)?,
            part_size: size("PART_SIZE", 8 * MIB)?,
            upload_concurrency: env.number_or(
                "UPLOAD_CONCURRENCY",
                4,
                "a whole number from 1 to 64",
            )?,
            record_concurrency: env.number_or(
                "RECORD_CONCURRENCY",
                4,
                "a whole number from 1 to 64",
            )?,
            connect_timeout: env.duration_or("ORIGIN_CONNECT_TIMEOUT", Duration::from_secs(3))?,
            first_byte_timeout: env
                .duration_or("ORIGIN_FIRST_BYTE_TIMEOUT", Duration::from_secs(15))?,
            idle_timeout: env.duration_or("ORIGIN_IDLE_TIMEOUT", Duration::from_secs(15))?,
            breaker_threshold: env.number_or(
                "BREAKER_THRESHOLD",
                5,
                "a whole number of failures",
            )?,
            breaker_cooldown: env.duration_or("BREAKER_COOLDOWN", Duration::from_secs(60))?,
            retry_base: env.duration_or("RETRY_BASE", DEFAULT_RETRY_BASE)?,
            retry_cap: env.duration_or("RETRY_CAP", DEFAULT_RETRY_CAP)?,
            deadline_margin: env.duration_or("DEADLINE_MARGIN", Duration::from_secs(3))?,
            min_record_time: env.duration_or("MIN_RECORD_TIME", Duration::from_secs(5))?,
            metrics_namespace: env
                .get("METRICS_NAMESPACE")
                .unwrap_or_else(|| "OverseasOrigin".to_owned()),
            lease_table: env.get("LEASE_TABLE").filter(|v| !v.is_empty()),
            part_queue_url: env.get("PART_QUEUE_URL").filter(|v| !v.is_empty()),
            part_workers: env.number_or("PART_WORKERS", 8, "a whole number from 1 to 1000")?,
            probe_bytes: size("PROBE_BYTES", 8 * MIB)?,
            part_seconds: env
                .get("PART_SECONDS")
                .map(|_| env.duration_or("PART_SECONDS", Duration::ZERO))
                .transpose()?,
            lease_grace: env.duration_or("LEASE_GRACE", Duration::from_secs(15 * 60))?,
            upload_days: env.number_or("UPLOAD_DAYS", 1, "a whole number of days")?,
            freshness: Freshness::from_env(env)?,
        };
        config.check()
    }

    fn check(self) -> Result<Self, ConfigError> {
        self.freshness.check()?;
        if !(MIN_PART_SIZE..=MAX_PART_SIZE).contains(&self.part_size) {
            return Err(error(
                "PART_SIZE",
                &format!("is {}", self.part_size),
                "a size from 5 MiB (5242880) to 5 GiB",
            ));
        }
        if self.max_object_size > MAX_OBJECT_SIZE {
            return Err(error(
                "MAX_OBJECT_SIZE",
                &format!("is {}", self.max_object_size),
                "at most 53687091200000 (48.8 TiB, S3's largest object)",
            ));
        }
        if self.part_queue_url.is_some() && self.lease_table.is_none() {
            return Err(error(
                "LEASE_TABLE",
                "is not set, but PART_QUEUE_URL is",
                "the lease table, which a split copy records its parts in",
            ));
        }
        if !(1..=1000).contains(&self.part_workers) {
            return Err(error(
                "PART_WORKERS",
                &format!("is {}", self.part_workers),
                "a whole number from 1 to 1000 (the part queue's maximum concurrency)",
            ));
        }
        if !(64 * 1024..=MAX_PART_SIZE).contains(&self.probe_bytes) {
            return Err(error(
                "PROBE_BYTES",
                &format!("is {}", self.probe_bytes),
                "a size from 64 KiB to 5 GiB",
            ));
        }
        if self
            .part_seconds
            .is_some_and(|s| s < Duration::from_secs(1))
        {
            return Err(error(
                "PART_SECONDS",
                "is under a second",
                "a duration such as 120s",
            ));
        }
        if self.upload_days == 0 {
            return Err(error("UPLOAD_DAYS", "is 0", "a whole number of days"));
        }
        if self.single_put_max > MAX_PUT_SIZE {
            return Err(error(
                "SINGLE_PUT_MAX",
                &format!("is {}", self.single_put_max),
                "at most 5 GiB",
            ));
        }
        if self.retry_base.is_zero() || self.retry_cap < self.retry_base {
            return Err(error(
                "RETRY_CAP",
                &format!(
                    "is {:?} with RETRY_BASE {:?}",
                    self.retry_cap, self.retry_base
                ),
                "a RETRY_BASE above zero and a RETRY_CAP at least as long",
            ));
        }
        if self.retry_cap > MAX_VISIBILITY {
            return Err(error(
                "RETRY_CAP",
                &format!("is {:?}", self.retry_cap),
                "at most 12h, SQS's longest visibility timeout",
            ));
        }
        for (name, value) in [
            ("UPLOAD_CONCURRENCY", self.upload_concurrency),
            ("RECORD_CONCURRENCY", self.record_concurrency),
        ] {
            if !(1..=64).contains(&value) {
                return Err(error(
                    name,
                    &format!("is {value}"),
                    "a whole number from 1 to 64",
                ));
            }
        }
        Ok(self)
    }

    /// The allow-list's entries for an origin (protocol, parsed host and port), whatever their
    /// path.
    pub fn entries_for<'a>(
        &'a self,
        protocol: Protocol,
        host: &'a url::Host<String>,
        port: u16,
    ) -> impl Iterator<Item = &'a AllowedOrigin> + 'a {
        self.allowed_origins.iter().filter(move |allowed| {
            allowed.protocol == protocol && allowed.port == port && allowed.host == *host
        })
    }

    /// The host names (not addresses) of the entries that name the loopback: the only names the
    /// resolver lets resolve to it.
    pub fn loopback_names(&self) -> Vec<String> {
        self.allowed_origins
            .iter()
            .filter(|allowed| allowed.names_loopback())
            .filter_map(|allowed| match &allowed.host {
                url::Host::Domain(name) => Some(name.clone()),
                _ => None,
            })
            .collect()
    }
}

/// `https://host`, `http://host:8080`, `https://host/static`: read by the HTTP client's URL
/// parser; the default port follows the protocol; no path (or `/`) allows only the empty origin
/// path.
pub fn parse_allowed_origin(raw: &str) -> Option<AllowedOrigin> {
    let raw = raw.trim();
    let url = url::Url::parse(raw).ok()?;
    let protocol = Protocol::parse(url.scheme())?;
    if !url.username().is_empty()
        || url.password().is_some()
        || url.query().is_some()
        || url.fragment().is_some()
    {
        return None;
    }
    let host = url.host()?.to_owned();
    let port = url.port_or_known_default().filter(|port| *port != 0)?;
    let path = url.path().trim_end_matches('/');
    // The path as written, without the parser's normalisation ('.' segments resolved, characters
    // escaped): what is allowed is what the entry says.
    let written = raw
        .split_once("://")
        .and_then(|(_, rest)| rest.find('/').map(|at| &rest[at..]))
        .unwrap_or("")
        .trim_end_matches('/');
    if path != written || path.split('/').skip(1).any(str::is_empty) {
        return None;
    }
    Some(AllowedOrigin {
        protocol,
        host,
        port,
        path: path.to_owned(),
    })
}

/// `ORIGIN_SECRET_ARN`, with `ORIGIN_SECRET_HEADER` (required with it, refused without it) and
/// `ORIGIN_SECRET_VERSION` (optional).
fn parse_origin_secret(env: &Env) -> Result<Option<OriginSecretSource>, ConfigError> {
    let arn = env.get("ORIGIN_SECRET_ARN");
    let header = env.get("ORIGIN_SECRET_HEADER");
    let version = env.get("ORIGIN_SECRET_VERSION");
    let Some(arn) = arn else {
        for (name, value) in [
            ("ORIGIN_SECRET_HEADER", &header),
            ("ORIGIN_SECRET_VERSION", &version),
        ] {
            if value.is_some() {
                return Err(error(
                    name,
                    "is set without ORIGIN_SECRET_ARN",
                    "ORIGIN_SECRET_ARN set too, or neither",
                ));
            }
        }
        return Ok(None);
    };
    let arn = SecretArn::parse(arn.trim()).ok_or_else(|| {
        error(
            "ORIGIN_SECRET_ARN",
            &format!("is {arn:?}"),
            "a Secrets Manager secret's ARN, arn:PARTITION:secretsmanager:REGION:ACCOUNT:secret:NAME",
        )
    })?;
    let header = header.ok_or_else(|| {
        error(
            "ORIGIN_SECRET_HEADER",
            "is not set, and ORIGIN_SECRET_ARN is",
            origin_secret::NAME_FORM,
        )
    })?;
    let header = header.trim();
    if let Some(problem) = origin_secret::name_problem(header) {
        return Err(error(
            "ORIGIN_SECRET_HEADER",
            &problem,
            origin_secret::NAME_FORM,
        ));
    }
    let header = HeaderName::from_bytes(header.as_bytes()).map_err(|_| {
        error(
            "ORIGIN_SECRET_HEADER",
            &format!("is {header:?}"),
            origin_secret::NAME_FORM,
        )
    })?;
    let version = version.map(|v| v.trim().to_owned());
    if let Some(version) = &version {
        let valid = VERSION_ID_LENGTH.contains(&version.len())
            && version.bytes().all(|b| b.is_ascii_graphic());
        if !valid {
            return Err(error(
                "ORIGIN_SECRET_VERSION",
                &format!("is {version:?}"),
                "empty (the current version), or a version id of 32 to 64 characters",
            ));
        }
    }
    Ok(Some(OriginSecretSource {
        arn,
        header,
        version,
    }))
}

/// `ORIGIN_HEADERS` is a JSON object of header names to values.
fn parse_origin_headers(raw: Option<&str>) -> Result<Vec<(HeaderName, HeaderValue)>, ConfigError> {
    let expected =
        r#"a JSON object of header names to string values, e.g. {"X-Origin-Secret": "..."}"#;
    let Some(raw) = raw else {
        return Ok(Vec::new());
    };
    // The value may hold a secret: never echo it in the error.
    let invalid = |problem: &str| error("ORIGIN_HEADERS", problem, expected);
    let map: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(raw).map_err(|_| invalid("is not a JSON object"))?;
    map.into_iter()
        .map(|(name, value)| {
            let header = HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| invalid(&format!("has an invalid header name {name:?}")))?;
            let mut value = value
                .as_str()
                .and_then(|v| HeaderValue::from_str(v).ok())
                .ok_or_else(|| invalid(&format!("has an invalid value for {name:?}")))?;
            value.set_sensitive(true);
            Ok((header, value))
        })
        .collect()
}

impl Freshness {
    fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let set = |name| env.get(name).filter(|v: &String| !v.is_empty());
        let on_origin_gone = match set("ON_ORIGIN_GONE").as_deref() {
            None | Some("delete") => OnOriginGone::Delete,
            Some("keep") => OnOriginGone::Keep,
            Some(other) => {
                return Err(error(
                    "ON_ORIGIN_GONE",
                    &format!("is {other:?}"),
                    "delete or keep",
                ))
            }
        };
        Ok(Freshness {
            table: set("FRESHNESS_TABLE"),
            queue_url: set("CHANGE_QUEUE_URL"),
            invalidation_queue_url: set("INVALIDATION_QUEUE_URL"),
            distribution_id: set("DISTRIBUTION_ID"),
            thumbnail_prefix: set("THUMBNAIL_PREFIX"),
            on_origin_gone,
            max_staleness: env.duration_or("MAX_STALENESS", Duration::from_secs(86_400))?,
            min_revalidation: env.duration_or("MIN_REVALIDATION", Duration::from_secs(300))?,
            revalidation_budget: env.number_or(
                "REVALIDATION_BUDGET",
                60,
                "origin requests a minute, a whole number",
            )?,
            replace_in_place_max: env.number_or(
                "REPLACE_IN_PLACE_MAX",
                1024 * MIB,
                "a size in bytes",
            )?,
            busy_delay: env.duration_or("BUSY_DELAY", Duration::from_secs(5))?,
        })
    }

    fn check(&self) -> Result<(), ConfigError> {
        if self.min_revalidation < Duration::from_secs(1)
            || self.max_staleness < self.min_revalidation
        {
            return Err(error(
                "MAX_STALENESS",
                &format!(
                    "is {:?} with MIN_REVALIDATION {:?}",
                    self.max_staleness, self.min_revalidation
                ),
                "a MIN_REVALIDATION of at least 1s and a MAX_STALENESS at least as long",
            ));
        }
        if self.busy_delay < Duration::from_secs(1) || self.busy_delay > Duration::from_secs(60) {
            return Err(error(
                "BUSY_DELAY",
                &format!("is {:?}", self.busy_delay),
                "a duration from 1s to 60s",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(extra: &[(&str, &str)]) -> Env {
        let mut pairs = vec![
            ("BUCKET", "overseas-origin"),
            (
                "ALLOWED_ORIGINS",
                "https://www.example.com, http://origin.internal:8080",
            ),
        ];
        pairs.extend_from_slice(extra);
        Env::from_pairs(pairs)
    }

    #[test]
    fn defaults() {
        let config = Config::from_env(&env(&[])).unwrap();
        assert_eq!(config.bucket, "overseas-origin");
        assert_eq!(config.part_size, 8 * MIB);
        assert_eq!(config.single_put_max, MAX_PUT_SIZE);
        let allows = |protocol, host: &str, port| {
            let host = url::Host::parse(host).unwrap();
            config.entries_for(protocol, &host, port).count() > 0
        };
        assert!(allows(Protocol::Https, "WWW.example.com", 443));
        assert!(allows(Protocol::Http, "origin.internal", 8080));
        assert!(!allows(Protocol::Http, "www.example.com", 443));
        assert!(!allows(Protocol::Https, "www.example.com", 8443));
        assert!(!allows(Protocol::Https, "evil.example", 443));
        assert!(config.origin_headers.is_empty());
        assert_eq!(config.key_prefix.as_str(), "");
        assert!(config.loopback_names().is_empty());
    }

    #[test]
    fn origin_headers_are_parsed_and_never_echoed() {
        let config = Config::from_env(&env(&[(
            "ORIGIN_HEADERS",
            r#"{"X-Origin-Secret": "s3cr3t"}"#,
        )]))
        .unwrap();
        assert_eq!(config.origin_headers[0].0, "x-origin-secret");
        assert_eq!(config.origin_headers[0].1, "s3cr3t");
        let err = Config::from_env(&env(&[(
            "ORIGIN_HEADERS",
            r#"{"X-Origin-Secret": "s3cr3t\n"}"#,
        )]))
        .unwrap_err();
        assert!(!err.to_string().contains("s3cr3t"), "{err}");
        let err = Config::from_env(&env(&[("ORIGIN_HEADERS", "s3cr3t")])).unwrap_err();
        assert!(!err.to_string().contains("s3cr3t"), "{err}");
        assert_eq!(err.variable, "ORIGIN_HEADERS");
    }

    const SECRET_ARN: &str =
        "arn:aws:secretsmanager:ap-southeast-1:123456789012:secret:origin/verify-AbC123";

    #[test]
    fn the_origin_secret_is_named_by_its_arn_header_and_version() {
        let config = Config::from_env(&env(&[])).unwrap();
        assert_eq!(config.origin_secret, None);
        let version = "EXAMPLE1-90ab-cdef-fedc-ba987EXAMPLE";
        let config = Config::from_env(&env(&[
            ("ORIGIN_SECRET_ARN", SECRET_ARN),
            ("ORIGIN_SECRET_HEADER", "X-Origin-Verify"),
            ("ORIGIN_SECRET_VERSION", version),
            ("ORIGIN_HEADERS", r#"{"X-Tenant": "overseas"}"#),
        ]))
        .unwrap();
        let source = config.origin_secret.unwrap();
        assert_eq!(source.arn.as_str(), SECRET_ARN);
        assert_eq!(source.arn.region(), "ap-southeast-1");
        assert_eq!(source.header, "x-origin-verify");
        assert_eq!(source.version.as_deref(), Some(version));
        assert_eq!(config.origin_headers.len(), 1);
        // An empty version is the current one: what the template passes when it has none.
        let config = Config::from_env(&env(&[
            ("ORIGIN_SECRET_ARN", SECRET_ARN),
            ("ORIGIN_SECRET_HEADER", "X-Origin-Verify"),
            ("ORIGIN_SECRET_VERSION", ""),
        ]))
        .unwrap();
        assert_eq!(config.origin_secret.unwrap().version, None);
    }

    #[test]
    fn secret_arns() {
        for good in [
            SECRET_ARN,
            // The local stand-in's, and other partitions'.
            "arn:aws:secretsmanager:us-east-1:123456789012:secret:test-secret-aBcDeF",
            "arn:aws-cn:secretsmanager:cn-north-1:123456789012:secret:a",
            "arn:aws-us-gov:secretsmanager:us-gov-west-1:123456789012:secret:x/y_z+w=v.u@t",
        ] {
            assert!(SecretArn::parse(good).is_some(), "{good}");
        }
        for bad in [
            "",
            "origin/verify",
            "arn:aws:secretsmanager:us-east-1:123456789012:secret:",
            "arn:aws:secretsmanager:us-east-1:12345678901:secret:a",
            "arn:aws:secretsmanager:us-east-1:1234567890123:secret:a",
            "arn:aws:secretsmanager::123456789012:secret:a",
            "arn:aws:secretsmanager:US-EAST-1:123456789012:secret:a",
            "arn:aws:ssm:us-east-1:123456789012:parameter/a",
            "arn:aws:secretsmanager:us-east-1:123456789012:key:a",
            "arn:aws:secretsmanager:us-east-1:123456789012:secret:a b",
            "arn:aws:secretsmanager:us-east-1:123456789012:secret:a:b",
            &format!(
                "arn:aws:secretsmanager:us-east-1:123456789012:secret:{}",
                "a".repeat(2000)
            ),
        ] {
            assert!(SecretArn::parse(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn origin_secret_settings_are_refused_with_their_variable() {
        fn with_arn<'a>(extra: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
            let mut pairs = vec![("ORIGIN_SECRET_ARN", SECRET_ARN)];
            pairs.extend_from_slice(extra);
            pairs
        }
        let long_version = "v".repeat(65);
        let cases: Vec<(Vec<(&str, &str)>, &str)> = vec![
            (
                vec![("ORIGIN_SECRET_HEADER", "X-Origin-Verify")],
                "ORIGIN_SECRET_HEADER",
            ),
            (
                vec![(
                    "ORIGIN_SECRET_VERSION",
                    "EXAMPLE1-90ab-cdef-fedc-ba987EXAMPLE",
                )],
                "ORIGIN_SECRET_VERSION",
            ),
            (with_arn(&[]), "ORIGIN_SECRET_HEADER"),
            (
                vec![
                    ("ORIGIN_SECRET_ARN", "origin/verify"),
                    ("ORIGIN_SECRET_HEADER", "X-Origin-Verify"),
                ],
                "ORIGIN_SECRET_ARN",
            ),
            (
                with_arn(&[("ORIGIN_SECRET_HEADER", "X_Origin")]),
                "ORIGIN_SECRET_HEADER",
            ),
            (
                with_arn(&[
                    ("ORIGIN_SECRET_HEADER", "X-Origin-Verify"),
                    ("ORIGIN_SECRET_VERSION", "v1"),
                ]),
                "ORIGIN_SECRET_VERSION",
            ),
            (
                with_arn(&[
                    ("ORIGIN_SECRET_HEADER", "X-Origin-Verify"),
                    ("ORIGIN_SECRET_VERSION", &long_version),
                ]),
                "ORIGIN_SECRET_VERSION",
            ),
            (
                with_arn(&[
                    ("ORIGIN_SECRET_HEADER", "X-Origin-Verify"),
                    ("ORIGIN_HEADERS", r#"{"x-origin-VERIFY": "plain text"}"#),
                ]),
                "ORIGIN_HEADERS",
            ),
        ];
        for (pairs, variable) in cases {
            let err = Config::from_env(&env(&pairs)).unwrap_err();
            assert_eq!(err.variable, variable, "{pairs:?}: {err}");
            assert!(!err.to_string().contains("plain text"), "{err}");
        }
    }

    #[test]
    fn every_name_the_origin_secret_cannot_have_is_refused() {
        use shared::origin_secret::{CLOUDFRONT_REFUSED, SET_BY_BACKFILL};
        let refused = CLOUDFRONT_REFUSED
            .iter()
            .chain(&SET_BY_BACKFILL)
            .copied()
            .chain([
                "X-Amz-Cf-Id",
                "x-edge-origin",
                "X-Backfill-Bucket",
                "Upgrade",
            ]);
        for name in refused {
            let err = Config::from_env(&env(&[
                ("ORIGIN_SECRET_ARN", SECRET_ARN),
                ("ORIGIN_SECRET_HEADER", name),
            ]))
            .unwrap_err();
            assert_eq!(err.variable, "ORIGIN_SECRET_HEADER", "{name}: {err}");
            assert!(err.expected.contains("CloudFront"), "{err}");
        }
    }

    #[test]
    fn bad_values_name_their_variable() {
        let cases: &[(&[(&str, &str)], &str)] = &[
            (&[("ALLOWED_ORIGINS", "ftp://x")], "ALLOWED_ORIGINS"),
            (&[("ALLOWED_ORIGINS", "https://user@x")], "ALLOWED_ORIGINS"),
            (&[("ALLOWED_ORIGINS", " ")], "ALLOWED_ORIGINS"),
            (&[("BUCKET", "Bad_Bucket")], "BUCKET"),
            (&[("PART_SIZE", "1024")], "PART_SIZE"),
            (&[("MAX_OBJECT_SIZE", "60000000000000")], "MAX_OBJECT_SIZE"),
            (
                &[(
                    "PART_QUEUE_URL",
                    "https://sqs.us-east-1.amazonaws.com/1/parts",
                )],
                "LEASE_TABLE",
            ),
            (&[("PART_WORKERS", "0")], "PART_WORKERS"),
            (&[("PROBE_BYTES", "10")], "PROBE_BYTES"),
            (&[("PART_SECONDS", "10ms")], "PART_SECONDS"),
            (&[("UPLOAD_CONCURRENCY", "0")], "UPLOAD_CONCURRENCY"),
            (&[("ORIGIN_IDLE_TIMEOUT", "soon")], "ORIGIN_IDLE_TIMEOUT"),
            (&[("RETRY_BASE", "2m"), ("RETRY_CAP", "1m")], "RETRY_CAP"),
            (&[("RETRY_CAP", "13h")], "RETRY_CAP"),
        ];
        for (extra, variable) in cases {
            let err = Config::from_env(&env(extra)).unwrap_err();
            assert_eq!(err.variable, *variable, "{err}");
        }
        let err = Config::from_env(&Env::from_pairs([])).unwrap_err();
        assert_eq!(err.variable, "BUCKET");
    }

    /// The value of `name:` on the first line that sets it after the line `  {resource}:` of
    /// template.yaml.
    fn template_value(resource: &str, name: &str) -> String {
        let template = include_str!("../../../template.yaml");
        let start = template
            .find(&format!("\n  {resource}:\n"))
            .unwrap_or_else(|| panic!("template.yaml has no resource {resource}"));
        template[start..]
            .lines()
            .find_map(|line| line.trim().strip_prefix(&format!("{name}:")))
            .unwrap_or_else(|| panic!("{resource} sets no {name}"))
            .trim()
            .to_owned()
    }

    #[test]
    fn a_half_hour_outage_sends_no_message_to_the_dlq() {
        use shared::retry::{min_time_to_last_receive, Backoff};
        let half_hour = Duration::from_secs(30 * 60);
        let max_receive_count: u32 = template_value("BackfillQueue", "maxReceiveCount")
            .parse()
            .unwrap();
        let template = Config::from_env(&env(&[
            (
                "RETRY_BASE",
                &template_value("BackfillFunction", "RETRY_BASE"),
            ),
            (
                "RETRY_CAP",
                &template_value("BackfillFunction", "RETRY_CAP"),
            ),
        ]))
        .unwrap();
        let defaults = Config::from_env(&env(&[])).unwrap();
        for config in [template, defaults] {
            let backoff = Backoff::new(config.retry_base, config.retry_cap);
            let least = min_time_to_last_receive(&backoff, max_receive_count);
            assert!(least > half_hour, "{least:?} with {backoff:?}");
        }
    }

    #[test]
    fn allowed_origin_forms() {
        let origin = parse_allowed_origin("http://127.0.0.1:8080/").unwrap();
        assert_eq!(
            (origin.protocol, origin.host.to_string(), origin.port),
            (Protocol::Http, "127.0.0.1".to_owned(), 8080)
        );
        assert_eq!(origin.path, "");
        assert!(origin.names_loopback());
        let origin = parse_allowed_origin("https://A.example").unwrap();
        assert_eq!(
            (origin.host.to_string(), origin.port),
            ("a.example".into(), 443)
        );
        assert!(!origin.names_loopback());
        // The template's form: the default port written out, then the origin path.
        let origin = parse_allowed_origin("https://www.example.com:443/static").unwrap();
        assert_eq!((origin.port, origin.path.as_str()), (443, "/static"));
        assert_eq!(
            parse_allowed_origin("https://www.example.com/a/b/")
                .unwrap()
                .path,
            "/a/b"
        );
        // The URL parser's reading of an address.
        assert_eq!(
            parse_allowed_origin("http://2130706433").unwrap().host,
            url::Host::<String>::Ipv4(std::net::Ipv4Addr::LOCALHOST)
        );
        assert!(parse_allowed_origin("http://localhost:8080")
            .unwrap()
            .names_loopback());
        for bad in [
            "a.example",
            "https://a.example:0",
            "https://a.example:http",
            "https://user@a.example",
            "https://a.example/?x=1",
            "https://a.example/#top",
            "https://a.example/a/../b",
            "https://a.example/a//b",
            "https://a.example/a b",
            "ftp://a.example",
        ] {
            assert!(parse_allowed_origin(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn the_key_prefix_reads_as_the_edge_hooks() {
        let config = Config::from_env(&env(&[("KEY_PREFIX", "/mirror/v1")])).unwrap();
        assert_eq!(config.key_prefix.as_str(), "mirror/v1/");
        let err = Config::from_env(&env(&[("KEY_PREFIX", "a/../b")])).unwrap_err();
        assert_eq!(err.variable, "KEY_PREFIX");
    }

    #[test]
    fn refused_prefixes_read_as_the_edge_hooks() {
        assert!(Config::from_env(&env(&[]))
            .unwrap()
            .refused_prefixes
            .is_empty());
        let config =
            Config::from_env(&env(&[("REFUSED_PREFIXES", "uploads/,thumbnails/")])).unwrap();
        assert_eq!(
            config.refused_prefixes.refusing("uploads/bob/x.jpg"),
            Some("uploads/")
        );
        for bad in ["uploads/,,thumbnails/", "/", "a/../b/"] {
            let err = Config::from_env(&env(&[("REFUSED_PREFIXES", bad)])).unwrap_err();
            assert_eq!(err.variable, "REFUSED_PREFIXES", "{bad}");
        }
    }
}
