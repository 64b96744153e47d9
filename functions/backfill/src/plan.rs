//! Pure decisions: what to fetch, what the origin's answer means, how to upload. No I/O here.

use std::net::IpAddr;
use std::time::{Duration, SystemTime};

use http::HeaderMap;
use shared::message::BackfillMessage;
use shared::ObjectKey;

use crate::config::Config;
use crate::error::BackfillError;

/// A message that passed every check: where to fetch from and where to write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fetch {
    pub url: String,
    pub bucket: String,
    pub key: String,
    /// What the write requires of the key: for a copy, that no object has it.
    pub condition: crate::store::WriteCondition,
}

/// Checks a message against the configuration. The message can name nothing the origin does not:
/// the bucket must be ours; the URL, read by the HTTP client's own parser (so `2852039166` is the
/// address 169.254.169.254), must not reach a forbidden address, nor the loopback unless an
/// allow-list entry names it; its protocol, host, port and origin path must be on the allow-list;
/// the key must be the one the shared key rules derive from the uri and the key prefix, and not
/// under a refused prefix (a caller's upload, a thumbnail).
pub fn plan(message: &BackfillMessage, config: &Config) -> Result<Fetch, BackfillError> {
    if message.bucket != config.bucket {
        return Err(BackfillError::WrongBucket(message.bucket.clone()));
    }
    let origin = &message.origin;
    let text = message.origin_url();
    let url = url::Url::parse(&text).map_err(|err| BackfillError::InvalidOriginUrl {
        url: text.clone(),
        reason: err.to_string(),
    })?;
    let (Some(host), Some(port)) = (url.host(), url.port_or_known_default()) else {
        return Err(BackfillError::InvalidOriginUrl {
            url: text,
            reason: "no host or port".into(),
        });
    };
    let host = host.to_owned();
    let address = match &host {
        url::Host::Ipv4(v4) => Some(IpAddr::V4(*v4)),
        url::Host::Ipv6(v6) => Some(IpAddr::V6(*v6)),
        url::Host::Domain(_) => None,
    };
    if let Some(address) = address.filter(|a| is_forbidden_address(*a)) {
        return Err(BackfillError::ForbiddenAddress {
            host: origin.host.clone(),
            address: address.to_string(),
        });
    }
    let named = format!("{}://{host}:{port}", origin.protocol);
    let entries: Vec<_> = config.entries_for(origin.protocol, &host, port).collect();
    if entries.is_empty() {
        return Err(BackfillError::OriginNotAllowed(named));
    }
    if !entries.iter().any(|entry| entry.path == origin.path) {
        return Err(BackfillError::OriginPathNotAllowed {
            origin: named,
            path: origin.path.clone(),
        });
    }
    let loopback = match &host {
        url::Host::Domain(name) => name == "localhost" || name.ends_with(".localhost"),
        _ => address.is_some_and(is_loopback),
    };
    if loopback && !entries.iter().any(|entry| entry.names_loopback()) {
        return Err(BackfillError::LoopbackNotAllowed {
            host: origin.host.clone(),
            address: host.to_string(),
        });
    }
    let derived = ObjectKey::from_cloudfront_uri(&message.uri, config.key_prefix.as_str())
        .map_err(|reason| BackfillError::UriNotAKey {
            uri: message.uri.clone(),
            reason,
        })?;
    if derived != message.key {
        return Err(BackfillError::KeyMismatch {
            key: message.key.as_str().to_owned(),
            derived: derived.into_string(),
        });
    }
    if let Some(prefix) = config.refused_prefixes.refusing(derived.as_str()) {
        return Err(BackfillError::RefusedPrefix {
            key: derived.into_string(),
            prefix: prefix.to_owned(),
        });
    }
    Ok(Fetch {
        url: url.into(),
        bucket: message.bucket.clone(),
        key: derived.into_string(),
        condition: crate::store::WriteCondition::Absent,
    })
}

/// The loopback: 127.0.0.0/8, `::1`, and either as an IPv4-mapped IPv6 address.
pub fn is_loopback(address: IpAddr) -> bool {
    match address {
        IpAddr::V4(v4) => v4.is_loopback(),
        IpAddr::V6(v6) => {
            v6.is_loopback() || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
        }
    }
}

/// Addresses no origin may resolve to, whatever the allow-list says: link-local (the instance
/// metadata service at 169.254.169.254 among them), AWS's IPv6 metadata address, unspecified,
/// multicast and broadcast.
pub fn is_forbidden_address(address: IpAddr) -> bool {
    match address {
        IpAddr::V4(v4) => {
            v4.is_link_local() || v4.is_unspecified() || v4.is_multicast() || v4.is_broadcast()
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_forbidden_address(IpAddr::V4(v4));
            }
            let first = v6.segments()[0];
            v6.is_unspecified()
                || v6.is_multicast()
                || (first & 0xffc0) == 0xfe80
                || v6
                    == "fd00:ec2::254"
                        .parse::<std::net::Ipv6Addr>()
                        .expect("a valid address")
        }
    }
}

/// What the origin's status means for the message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// 200: copy the body.
    Copy,
    /// 404 or 410: a normal, permanent outcome.
    NotAtOrigin(u16),
}

pub fn judge(status: u16, headers: &HeaderMap, now: SystemTime) -> Result<Verdict, BackfillError> {
    match status {
        200 => Ok(Verdict::Copy),
        404 | 410 => Ok(Verdict::NotAtOrigin(status)),
        300..=399 => Err(BackfillError::RedirectRefused { status }),
        429 | 500..=599 => Err(BackfillError::OriginUnavailable {
            status,
            retry_after: headers
                .get(http::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| parse_retry_after(v, now)),
        }),
        408 => Err(BackfillError::OriginUnavailable {
            status,
            retry_after: None,
        }),
        // Other 2xx (206, 204) are not a whole object; other 4xx will not change by retrying.
        _ => Err(BackfillError::OriginRefused { status }),
    }
}

/// `Retry-After` as seconds or an HTTP date; capped at an hour.
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    let wait = match value.parse::<u64>() {
        Ok(seconds) => Duration::from_secs(seconds),
        Err(_) => httpdate::parse_http_date(value)
            .ok()?
            .duration_since(now)
            .unwrap_or_default(),
    };
    Some(wait.min(Duration::from_secs(3600)))
}

/// How the object goes into S3.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Upload {
    /// Known length up to [`BUFFERED_PUT_MAX`]: read it whole, one PutObject (which the SDK can
    /// send again without asking the origin).
    Single { length: u64 },
    /// Known length above that, up to `SINGLE_PUT_MAX`: one PutObject streamed from the origin,
    /// its CRC32C as a trailer. The origin's bytes go on to S3 as they arrive: nothing is held,
    /// and there is nothing to abort.
    Stream { length: u64 },
    /// Larger, or unknown length: parts of `part_size`, started once a first part is full (an
    /// unknown-length body that ends before that goes in one PutObject after all).
    Multipart { length: Option<u64>, part_size: u64 },
}

/// Bodies this small are read whole before they are written: holding them costs nothing, and a
/// throttled write is sent again from memory.
pub const BUFFERED_PUT_MAX: u64 = 256 * 1024;

pub fn upload_for(length: Option<u64>, config: &Config) -> Result<Upload, BackfillError> {
    match length {
        Some(size) if size > config.max_object_size => Err(BackfillError::TooLarge {
            size,
            limit: config.max_object_size,
        }),
        Some(length) if length <= config.single_put_max.min(BUFFERED_PUT_MAX) => {
            Ok(Upload::Single { length })
        }
        Some(length) if length <= config.single_put_max => Ok(Upload::Stream { length }),
        length => Ok(Upload::Multipart {
            length,
            part_size: part_size_for(config.part_size, length),
        }),
    }
}

/// A part size of at least `preferred` that fits an object of `length` in 10,000 parts, in whole
/// MiB. An unknown length gets `preferred`: such a body fails once it outgrows 10,000 of them.
pub fn part_size_for(preferred: u64, length: Option<u64>) -> u64 {
    const MIB: u64 = 1024 * 1024;
    let needed = length.map_or(0, |length| length.div_ceil(crate::config::MAX_PARTS));
    preferred
        .max(needed.div_ceil(MIB) * MIB)
        .min(crate::config::MAX_PART_SIZE)
}

/// Headers a CDN needs kept on the object, as S3 stores them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ObjectAttributes {
    pub content_type: Option<String>,
    pub cache_control: Option<String>,
    pub content_encoding: Option<String>,
    pub content_disposition: Option<String>,
    pub content_language: Option<String>,
    /// User metadata: when the copy was made, the origin's ETag and Last-Modified.
    pub metadata: Vec<(String, String)>,
}

/// The metadata naming when an object was copied from the origin (RFC 3339).
pub const BACKFILLED_AT: &str = "backfilled-at";
/// The metadata keeping the origin's ETag and Last-Modified, the validators of a revalidation.
pub const ORIGIN_ETAG: &str = "origin-etag";
pub const ORIGIN_LAST_MODIFIED: &str = "origin-last-modified";

pub fn attributes_from(headers: &HeaderMap) -> ObjectAttributes {
    let text = |name: http::HeaderName| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .map(str::to_owned)
    };
    // Marks the object as a copy of the origin's: only such objects are revalidated or purged
    // (an upload under the same prefix never is).
    let mut metadata = vec![(
        BACKFILLED_AT.to_owned(),
        time::OffsetDateTime::now_utc()
            .replace_nanosecond(0)
            .expect("0 is a valid nanosecond")
            .format(&time::format_description::well_known::Rfc3339)
            .expect("a time formats"),
    )];
    if let Some(etag) = text(http::header::ETAG) {
        metadata.push((ORIGIN_ETAG.to_owned(), etag));
    }
    if let Some(modified) = text(http::header::LAST_MODIFIED) {
        metadata.push((ORIGIN_LAST_MODIFIED.to_owned(), modified));
    }
    ObjectAttributes {
        content_type: text(http::header::CONTENT_TYPE),
        cache_control: text(http::header::CACHE_CONTROL),
        content_encoding: text(http::header::CONTENT_ENCODING),
        content_disposition: text(http::header::CONTENT_DISPOSITION),
        content_language: text(http::header::CONTENT_LANGUAGE),
        metadata,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shared::config::Env;
    use shared::message::{OriginLocation, Protocol, Trigger, MESSAGE_VERSION};
    use shared::ObjectKey;

    fn config() -> Config {
        Config::from_env(&Env::from_pairs([
            ("BUCKET", "overseas-origin"),
            (
                "ALLOWED_ORIGINS",
                "https://www.example.com,https://www.example.com/static,http://169.254.169.254,\
                 http://127.0.0.1:8080,http://app.localhost",
            ),
            ("SINGLE_PUT_MAX", "1000"),
            ("MAX_OBJECT_SIZE", "100000000"),
        ]))
        .unwrap()
    }

    fn message(host: &str, protocol: Protocol, port: u16) -> BackfillMessage {
        BackfillMessage {
            version: MESSAGE_VERSION,
            bucket: "overseas-origin".into(),
            key: ObjectKey::new("images/a b.jpg").unwrap(),
            origin: OriginLocation {
                protocol,
                host: host.into(),
                port,
                path: String::new(),
            },
            uri: "/images/a%20b.jpg".into(),
            request_id: "r".into(),
            enqueued_at: time::OffsetDateTime::now_utc(),
            trigger: Trigger::OriginRequest,
            observed: None,
        }
    }

    #[test]
    fn allowed_message_is_planned() {
        let fetch = plan(&message("www.example.com", Protocol::Https, 443), &config()).unwrap();
        assert_eq!(fetch.url, "https://www.example.com/images/a%20b.jpg");
        assert_eq!(fetch.key, "images/a b.jpg");
        let mut under_path = message("WWW.Example.com", Protocol::Https, 443);
        under_path.origin.path = "/static".into();
        let fetch = plan(&under_path, &config()).unwrap();
        assert_eq!(fetch.url, "https://www.example.com/static/images/a%20b.jpg");
    }

    /// The origin is asked for the URI the viewer asked for, `+` and all; the object is written
    /// at the key S3 looks up for that URI.
    #[test]
    fn a_plus_is_fetched_as_sent_and_written_where_s3_looks() {
        for (uri, key) in [
            ("/images/a+b.jpg", "images/a b.jpg"),
            ("/images/a%2Bb.jpg", "images/a+b.jpg"),
            ("/images/a%20b.jpg", "images/a b.jpg"),
        ] {
            let mut message = message("www.example.com", Protocol::Https, 443);
            message.uri = uri.into();
            message.key = ObjectKey::new(key).unwrap();
            let fetch = plan(&message, &config()).unwrap();
            assert_eq!(fetch.url, format!("https://www.example.com{uri}"), "{uri}");
            assert_eq!(fetch.key, key, "{uri}");
        }
    }

    fn refusal(edit: impl FnOnce(&mut BackfillMessage)) -> BackfillError {
        let mut message = message("www.example.com", Protocol::Https, 443);
        edit(&mut message);
        let err = plan(&message, &config()).unwrap_err();
        assert!(!shared::Failure::is_retryable(&err), "{err}");
        err
    }

    #[test]
    fn the_key_must_be_the_one_the_uri_names() {
        let err = refusal(|m| m.key = ObjectKey::new("images/other.jpg").unwrap());
        assert!(matches!(err, BackfillError::KeyMismatch { .. }), "{err}");
        assert_eq!(shared::Failure::reason(&err), "key_mismatch");
        // S3 reads '+' in a request path as a space: the key of "/images/a+b.jpg" is
        // "images/a b.jpg", and "images/a+b.jpg" is "/images/a%2Bb.jpg".
        let err = refusal(|m| m.uri = "/images/a%2Bb.jpg".into());
        assert!(matches!(err, BackfillError::KeyMismatch { .. }), "{err}");
        let err = refusal(|m| m.uri = "/images/%2E%2E/secret".into());
        assert!(matches!(err, BackfillError::UriNotAKey { .. }), "{err}");
        assert_eq!(shared::Failure::reason(&err), "uri_not_a_key");
        let err = refusal(|m| m.uri = "/images/a%2Fb.jpg".into());
        assert!(matches!(err, BackfillError::UriNotAKey { .. }), "{err}");
    }

    #[test]
    fn the_key_takes_the_configured_prefix() {
        let config = Config::from_env(&Env::from_pairs([
            ("BUCKET", "overseas-origin"),
            ("ALLOWED_ORIGINS", "https://www.example.com"),
            ("KEY_PREFIX", "mirror/"),
        ]))
        .unwrap();
        let mut prefixed = message("www.example.com", Protocol::Https, 443);
        let err = plan(&prefixed, &config).unwrap_err();
        assert!(matches!(err, BackfillError::KeyMismatch { .. }), "{err}");
        prefixed.key = ObjectKey::new("mirror/images/a b.jpg").unwrap();
        assert_eq!(
            plan(&prefixed, &config).unwrap().key,
            "mirror/images/a b.jpg"
        );
    }

    #[test]
    fn keys_under_a_refused_prefix_are_refused() {
        let config = Config::from_env(&Env::from_pairs([
            ("BUCKET", "overseas-origin"),
            ("ALLOWED_ORIGINS", "https://www.example.com"),
            ("REFUSED_PREFIXES", "uploads/,thumbnails/"),
        ]))
        .unwrap();
        for (uri, key, prefix) in [
            ("/uploads/bob/x.jpg", "uploads/bob/x.jpg", "uploads/"),
            ("/%75ploads/bob/x.jpg", "uploads/bob/x.jpg", "uploads/"),
            (
                "/thumbnails/a.jpg/160.jpg",
                "thumbnails/a.jpg/160.jpg",
                "thumbnails/",
            ),
        ] {
            let mut refused = message("www.example.com", Protocol::Https, 443);
            refused.uri = uri.into();
            refused.key = ObjectKey::new(key).unwrap();
            let err = plan(&refused, &config).unwrap_err();
            match &err {
                BackfillError::RefusedPrefix { key: k, prefix: p } => {
                    assert_eq!((k.as_str(), p.as_str()), (key, prefix), "{uri}")
                }
                other => panic!("{uri}: {other}"),
            }
            assert!(!shared::Failure::is_retryable(&err));
            assert_eq!(shared::Failure::reason(&err), "refused_prefix");
        }
        let mut beside = message("www.example.com", Protocol::Https, 443);
        beside.uri = "/uploads-old/x.jpg".into();
        beside.key = ObjectKey::new("uploads-old/x.jpg").unwrap();
        assert!(plan(&beside, &config).is_ok());
        assert!(plan(&message("www.example.com", Protocol::Https, 443), &config).is_ok());
    }

    #[test]
    fn the_origin_path_must_be_on_the_allow_list() {
        for path in ["/other", "/static/sub", "/STATIC"] {
            let err = refusal(|m| m.origin.path = path.into());
            assert!(
                matches!(err, BackfillError::OriginPathNotAllowed { .. }),
                "{path}: {err}"
            );
            assert_eq!(shared::Failure::reason(&err), "origin_path_not_allowed");
        }
        // An entry without a path allows only the empty path.
        let err = plan(
            &{
                let mut m = message("127.0.0.1", Protocol::Http, 8080);
                m.origin.path = "/static".into();
                m
            },
            &config(),
        )
        .unwrap_err();
        assert!(
            matches!(err, BackfillError::OriginPathNotAllowed { .. }),
            "{err}"
        );
    }

    #[test]
    fn addresses_are_read_as_the_http_client_reads_them() {
        // Decimal, hex, octal and short forms of the metadata service's address.
        for host in [
            "2852039166",
            "0xA9FEA9FE",
            "0251.0376.0251.0376",
            "169.254.43518",
        ] {
            let err = plan(&message(host, Protocol::Http, 80), &config()).unwrap_err();
            match &err {
                BackfillError::ForbiddenAddress { address, .. } => {
                    assert_eq!(address, "169.254.169.254", "{host}")
                }
                other => panic!("{host}: {other}"),
            }
        }
        // The loopback, in another form, is the address the allow-list names.
        let fetch = plan(&message("2130706433", Protocol::Http, 8080), &config()).unwrap();
        assert_eq!(fetch.url, "http://127.0.0.1:8080/images/a%20b.jpg");
        // A number too large for an address does not parse.
        let err = plan(&message("99999999999", Protocol::Http, 80), &config()).unwrap_err();
        assert!(
            matches!(err, BackfillError::InvalidOriginUrl { .. }),
            "{err}"
        );
        assert_eq!(shared::Failure::reason(&err), "invalid_origin_url");
    }

    #[test]
    fn the_loopback_only_where_an_entry_names_it() {
        assert!(plan(&message("127.0.0.1", Protocol::Http, 8080), &config()).is_ok());
        for (host, port) in [("localhost", 8080), ("127.0.0.2", 8080), ("127.0.0.1", 80)] {
            let err = plan(&message(host, Protocol::Http, port), &config()).unwrap_err();
            assert!(
                matches!(err, BackfillError::OriginNotAllowed(_)),
                "{host}:{port}: {err}"
            );
        }
        // On the list, but a name under .localhost is the loopback all the same.
        let err = plan(&message("app.localhost", Protocol::Http, 80), &config()).unwrap_err();
        assert!(
            matches!(err, BackfillError::LoopbackNotAllowed { .. }),
            "{err}"
        );
        assert_eq!(shared::Failure::reason(&err), "loopback_not_allowed");
        for loopback in ["127.0.0.1", "127.1.2.3", "::1", "::ffff:127.0.0.1"] {
            assert!(is_loopback(loopback.parse().unwrap()), "{loopback}");
        }
        assert!(!is_loopback("10.0.0.1".parse().unwrap()));
    }

    #[test]
    fn origins_outside_the_allow_list_are_refused() {
        for (host, protocol, port) in [
            ("evil.example", Protocol::Https, 443),
            ("www.example.com", Protocol::Http, 443),
            ("www.example.com", Protocol::Https, 8443),
        ] {
            let err = plan(&message(host, protocol, port), &config()).unwrap_err();
            assert!(matches!(err, BackfillError::OriginNotAllowed(_)), "{err}");
        }
    }

    #[test]
    fn metadata_address_is_refused_even_when_allowed() {
        let err = plan(&message("169.254.169.254", Protocol::Http, 80), &config()).unwrap_err();
        assert!(
            matches!(err, BackfillError::ForbiddenAddress { .. }),
            "{err}"
        );
    }

    #[test]
    fn other_buckets_are_refused() {
        let mut other = message("www.example.com", Protocol::Https, 443);
        other.bucket = "someone-elses".into();
        assert!(matches!(
            plan(&other, &config()),
            Err(BackfillError::WrongBucket(_))
        ));
    }

    #[test]
    fn forbidden_addresses() {
        for forbidden in [
            "169.254.169.254",
            "169.254.0.1",
            "0.0.0.0",
            "224.0.0.1",
            "255.255.255.255",
            "fe80::1",
            "fd00:ec2::254",
            "::ffff:169.254.169.254",
            "::",
        ] {
            assert!(
                is_forbidden_address(forbidden.parse().unwrap()),
                "{forbidden}"
            );
        }
        for allowed in [
            "10.0.0.5",
            "127.0.0.1",
            "93.184.216.34",
            "2001:db8::1",
            "::1",
        ] {
            assert!(!is_forbidden_address(allowed.parse().unwrap()), "{allowed}");
        }
    }

    #[test]
    fn statuses() {
        let now = SystemTime::now();
        let empty = HeaderMap::new();
        assert_eq!(judge(200, &empty, now).unwrap(), Verdict::Copy);
        assert_eq!(judge(404, &empty, now).unwrap(), Verdict::NotAtOrigin(404));
        assert_eq!(judge(410, &empty, now).unwrap(), Verdict::NotAtOrigin(410));
        for status in [301, 302, 307] {
            assert!(matches!(
                judge(status, &empty, now),
                Err(BackfillError::RedirectRefused { .. })
            ));
        }
        for status in [403, 400, 206, 204] {
            assert!(matches!(
                judge(status, &empty, now),
                Err(BackfillError::OriginRefused { .. })
            ));
        }
        for status in [408, 429, 500, 502, 503, 504] {
            assert!(matches!(
                judge(status, &empty, now),
                Err(BackfillError::OriginUnavailable { .. })
            ));
        }
        let mut headers = HeaderMap::new();
        headers.insert(http::header::RETRY_AFTER, "120".parse().unwrap());
        let err = judge(429, &headers, now).unwrap_err();
        assert_eq!(
            shared::Failure::retry_after(&err),
            Some(Duration::from_secs(120))
        );
    }

    #[test]
    fn retry_after_forms() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        assert_eq!(parse_retry_after("30", now), Some(Duration::from_secs(30)));
        let later = httpdate::fmt_http_date(now + Duration::from_secs(90));
        assert_eq!(
            parse_retry_after(&later, now),
            Some(Duration::from_secs(90))
        );
        let earlier = httpdate::fmt_http_date(now - Duration::from_secs(90));
        assert_eq!(parse_retry_after(&earlier, now), Some(Duration::ZERO));
        assert_eq!(
            parse_retry_after("99999", now),
            Some(Duration::from_secs(3600))
        );
        assert_eq!(parse_retry_after("soon", now), None);
    }

    #[test]
    fn upload_modes() {
        let config = config();
        assert_eq!(
            upload_for(Some(0), &config).unwrap(),
            Upload::Single { length: 0 }
        );
        assert_eq!(
            upload_for(Some(1000), &config).unwrap(),
            Upload::Single { length: 1000 }
        );
        assert!(matches!(
            upload_for(Some(1001), &config).unwrap(),
            Upload::Multipart {
                length: Some(1001),
                ..
            }
        ));
        assert!(matches!(
            upload_for(None, &config).unwrap(),
            Upload::Multipart { length: None, .. }
        ));
        assert!(matches!(
            upload_for(Some(100_000_001), &config),
            Err(BackfillError::TooLarge {
                size: 100_000_001,
                ..
            })
        ));
    }

    #[test]
    fn known_lengths_stream_into_one_put_up_to_the_limit() {
        const MIB: u64 = 1024 * 1024;
        let config = Config::from_env(&Env::from_pairs([
            ("BUCKET", "overseas-origin"),
            ("ALLOWED_ORIGINS", "https://www.example.com"),
            ("PART_SIZE", "8388608"),
            ("SINGLE_PUT_MAX", "1073741824"),
        ]))
        .unwrap();
        assert_eq!(
            upload_for(Some(BUFFERED_PUT_MAX), &config).unwrap(),
            Upload::Single {
                length: BUFFERED_PUT_MAX
            }
        );
        assert_eq!(
            upload_for(Some(BUFFERED_PUT_MAX + 1), &config).unwrap(),
            Upload::Stream {
                length: BUFFERED_PUT_MAX + 1
            }
        );
        assert_eq!(
            upload_for(Some(1024 * MIB), &config).unwrap(),
            Upload::Stream { length: 1024 * MIB }
        );
        assert!(matches!(
            upload_for(Some(1024 * MIB + 1), &config).unwrap(),
            Upload::Multipart { .. }
        ));
        assert!(matches!(
            upload_for(None, &config).unwrap(),
            Upload::Multipart { length: None, .. }
        ));
    }

    #[test]
    fn attributes_keep_what_a_cdn_needs() {
        let mut headers = HeaderMap::new();
        for (name, value) in [
            ("content-type", "image/jpeg"),
            ("cache-control", "public, max-age=86400"),
            ("content-encoding", "gzip"),
            ("content-disposition", "inline"),
            ("content-language", "zh-CN"),
            ("etag", "\"abc\""),
            ("last-modified", "Wed, 21 Oct 2015 07:28:00 GMT"),
            ("set-cookie", "session=1"),
        ] {
            headers.insert(http::HeaderName::from_static(name), value.parse().unwrap());
        }
        let attributes = attributes_from(&headers);
        assert_eq!(attributes.content_type.as_deref(), Some("image/jpeg"));
        assert_eq!(
            attributes.cache_control.as_deref(),
            Some("public, max-age=86400")
        );
        assert_eq!(attributes.content_encoding.as_deref(), Some("gzip"));
        assert_eq!(attributes.content_disposition.as_deref(), Some("inline"));
        assert_eq!(attributes.content_language.as_deref(), Some("zh-CN"));
        let (name, at) = &attributes.metadata[0];
        assert_eq!(name, BACKFILLED_AT);
        let at = time::OffsetDateTime::parse(at, &time::format_description::well_known::Rfc3339)
            .unwrap();
        assert!((time::OffsetDateTime::now_utc() - at).whole_seconds() < 60);
        assert_eq!(
            attributes.metadata[1..],
            [
                ("origin-etag".to_owned(), "\"abc\"".to_owned()),
                (
                    "origin-last-modified".to_owned(),
                    "Wed, 21 Oct 2015 07:28:00 GMT".to_owned()
                )
            ]
        );
    }
}
