//! The backfill function's configuration, read once at cold start.

use std::time::Duration;

use http::{HeaderName, HeaderValue};
use shared::config::{error, ConfigError, Env};
use shared::key::KeyPrefix;
use shared::message::{is_bucket_name, Protocol};
use shared::retry::MAX_VISIBILITY;

const MIB: u64 = 1024 * 1024;
/// S3's multipart limits.
pub const MIN_PART_SIZE: u64 = 5 * MIB;
pub const MAX_PART_SIZE: u64 = 5 * 1024 * MIB;
pub const MAX_PARTS: u64 = 10_000;
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

#[derive(Debug, Clone)]
pub struct Config {
    /// The only bucket messages may name.
    pub bucket: String,
    pub allowed_origins: Vec<AllowedOrigin>,
    /// Put before the decoded URI to make the key, as the edge hook's `x-backfill-key-prefix`: a
    /// message's key must be exactly that.
    pub key_prefix: KeyPrefix,
    /// Extra request headers for the origin (a shared secret, say): sent, never logged.
    pub origin_headers: Vec<(HeaderName, HeaderValue)>,
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
        let origin_headers = parse_origin_headers(env.get("ORIGIN_HEADERS").as_deref())?;
        let size = |name, default| env.number_or(name, default, "a size in bytes");
        let config = Config {
            bucket,
            allowed_origins,
            key_prefix,
            origin_headers,
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
        };
        config.check()
    }

    fn check(self) -> Result<Self, ConfigError> {
        if !(MIN_PART_SIZE..=MAX_PART_SIZE).contains(&self.part_size) {
            return Err(error(
                "PART_SIZE",
                &format!("is {}", self.part_size),
                "a size from 5 MiB (5242880) to 5 GiB",
            ));
        }
        if self.part_size.saturating_mul(MAX_PARTS) < self.max_object_size {
            return Err(error(
                "MAX_OBJECT_SIZE",
                &format!(
                    "is {}, more than 10,000 parts of PART_SIZE {}",
                    self.max_object_size, self.part_size
                ),
                "at most PART_SIZE x 10000 (raise PART_SIZE)",
            ));
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
            let value = value
                .as_str()
                .and_then(|v| HeaderValue::from_str(v).ok())
                .ok_or_else(|| invalid(&format!("has an invalid value for {name:?}")))?;
            Ok((header, value))
        })
        .collect()
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

    #[test]
    fn bad_values_name_their_variable() {
        let cases: &[(&[(&str, &str)], &str)] = &[
            (&[("ALLOWED_ORIGINS", "ftp://x")], "ALLOWED_ORIGINS"),
            (&[("ALLOWED_ORIGINS", "https://user@x")], "ALLOWED_ORIGINS"),
            (&[("ALLOWED_ORIGINS", " ")], "ALLOWED_ORIGINS"),
            (&[("BUCKET", "Bad_Bucket")], "BUCKET"),
            (&[("PART_SIZE", "1024")], "PART_SIZE"),
            (
                &[("PART_SIZE", "5242880"), ("MAX_OBJECT_SIZE", "60000000000")],
                "MAX_OBJECT_SIZE",
            ),
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
}
