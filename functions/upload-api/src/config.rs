//! Configuration of the upload API and of the metadata writer, parsed once at cold start.

use std::time::Duration;

use shared::config::{error, ConfigError, Env};

use crate::auth::{parse_token_hashes, AuthMode};
use crate::cloudfront::{check_domain, check_key_pair_id};
use crate::plan::{MAX_OBJECT_BYTES, MAX_PART_BYTES, MIN_PART_BYTES};

const MIB: u64 = 1024 * 1024;
const GIB: u64 = 1024 * MIB;
/// SigV4 presigned URLs live at most a week.
const MAX_PRESIGN: Duration = Duration::from_secs(7 * 24 * 3600);

/// Content types accepted when `ALLOWED_CONTENT_TYPES` is unset.
pub const DEFAULT_CONTENT_TYPES: &[&str] = &[
    "image/jpeg",
    "image/png",
    "image/webp",
    "image/gif",
    "video/mp4",
    "application/pdf",
    "application/octet-stream",
];

/// Per-caller token bucket.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateLimit {
    /// Tokens added per second (`RATE_LIMIT_PER_SECOND`).
    pub per_second: f64,
    /// Most tokens held, which is the largest burst (`RATE_LIMIT_BURST`).
    pub burst: f64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ApiConfig {
    pub bucket: String,
    /// Every caller's keys are under `UPLOAD_PREFIX` + caller id + `/`.
    pub upload_prefix: String,
    pub auth: AuthMode,
    /// Exact, lower-case media types without parameters (`ALLOWED_CONTENT_TYPES`).
    pub allowed_content_types: Vec<String>,
    /// Largest object, single or multipart (`MAX_UPLOAD_BYTES`).
    pub max_object_bytes: u64,
    /// Part size of a multipart upload unless the client asks for another (`PART_SIZE`).
    pub part_size: u64,
    /// Life of a signed URL unless the client asks for less or more (`URL_EXPIRY`).
    pub url_expiry: Duration,
    /// Longest life a client may ask for (`MAX_URL_EXPIRY`).
    pub max_url_expiry: Duration,
    /// How long a multipart upload may stay open (`UPLOAD_TTL`); the bucket's lifecycle rule
    /// aborts what is left after a day.
    pub upload_ttl: Duration,
    /// Multipart sessions and rate buckets (`UPLOADS_TABLE`).
    pub uploads_table: String,
    /// Version records and the change feed (`FILES_TABLE`).
    pub files_table: String,
    pub rate_limit: RateLimit,
    /// Changes younger than this are not in the feed yet (`FEED_SETTLE`): a record written
    /// late with an earlier change time would otherwise fall behind a cursor already handed out.
    pub feed_settle: Duration,
    pub metrics_namespace: String,
    /// Who may read an upload through the distribution (`UPLOAD_ACCESS`).
    pub access: UploadAccess,
}

/// Who may read an upload through the distribution: the template's `UploadAccess`, whose bucket
/// policy and edge behaviours enforce it (docs/uploads.md, "Who can read an upload").
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UploadAccess {
    /// Nobody: the owner downloads from S3 with a presigned GET.
    Private,
    /// Anyone with the URL; the owner still gets a presigned GET (the API does not know the
    /// distribution's domain).
    Public,
    /// Whoever holds a URL or cookies the API signed for CloudFront.
    Signed(SignedAccess),
}

/// How the API signs for CloudFront.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedAccess {
    /// The distribution's domain name (`DOWNLOAD_DOMAIN`), such as d111111abcdef8.cloudfront.net.
    pub domain: String,
    /// The CloudFront id of the public key in the distribution's trusted key group
    /// (`SIGNING_KEY_ID`).
    pub key_pair_id: String,
    /// The Secrets Manager secret holding the matching private key, PEM (`SIGNING_KEY_SECRET`).
    pub key_secret_arn: String,
    /// Where the uploads' thumbnails are (`THUMBNAIL_PREFIX`): their cookies' path.
    pub thumbnail_prefix: String,
}

impl UploadAccess {
    pub fn name(&self) -> &'static str {
        match self {
            UploadAccess::Private => "private",
            UploadAccess::Public => "public",
            UploadAccess::Signed(_) => "signed",
        }
    }

    fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let access = match env.get("UPLOAD_ACCESS").as_deref().map(str::trim) {
            None | Some("private") => UploadAccess::Private,
            Some("public") => UploadAccess::Public,
            Some("signed") => {
                let domain = env.required(
                    "DOWNLOAD_DOMAIN",
                    "the distribution's domain name (UPLOAD_ACCESS is signed)",
                )?;
                check_domain(&domain).map_err(|e| {
                    error(
                        "DOWNLOAD_DOMAIN",
                        &e.to_string(),
                        "such as d111111abcdef8.cloudfront.net",
                    )
                })?;
                let key_pair_id = env.required(
                    "SIGNING_KEY_ID",
                    "the CloudFront public key id of the trusted key group (UPLOAD_ACCESS is signed)",
                )?;
                check_key_pair_id(&key_pair_id).map_err(|e| {
                    error("SIGNING_KEY_ID", &e.to_string(), "such as K2JCJMDEHXQW5F")
                })?;
                let key_secret_arn = env.required(
                    "SIGNING_KEY_SECRET",
                    "the Secrets Manager secret of the private key (UPLOAD_ACCESS is signed)",
                )?;
                if shared::aws::Arn::parse(&key_secret_arn)
                    .filter(|arn| {
                        arn.service == "secretsmanager"
                            && !arn.region.is_empty()
                            && !arn.account.is_empty()
                            && arn.resource.len() > "secret:".len()
                            && arn.resource.starts_with("secret:")
                    })
                    .is_none()
                {
                    return Err(error(
                        "SIGNING_KEY_SECRET",
                        &format!("is {key_secret_arn:?}"),
                        "a Secrets Manager secret's ARN, arn:PARTITION:secretsmanager:REGION:ACCOUNT:secret:NAME",
                    ));
                }
                let thumbnail_prefix = env
                    .get("THUMBNAIL_PREFIX")
                    .unwrap_or_else(|| "thumbs/".to_owned());
                if !thumbnail_prefix.ends_with('/')
                    || shared::ObjectKey::new(thumbnail_prefix.trim_end_matches('/')).is_err()
                {
                    return Err(error(
                        "THUMBNAIL_PREFIX",
                        &format!("is {thumbnail_prefix:?}"),
                        "a key prefix ending with a slash, such as thumbs/",
                    ));
                }
                UploadAccess::Signed(SignedAccess {
                    domain,
                    key_pair_id,
                    key_secret_arn,
                    thumbnail_prefix,
                })
            }
            Some(other) => {
                return Err(error(
                    "UPLOAD_ACCESS",
                    &format!("is {other:?}"),
                    "private, public or signed",
                ))
            }
        };
        Ok(access)
    }
}

impl ApiConfig {
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let upload_prefix = upload_prefix(env)?;
        let auth = match env.get("AUTH_MODE").as_deref().map(str::trim) {
            None | Some("token") => AuthMode::Token(env.parse_or(
                "AUTH_TOKENS",
                Vec::new(),
                "comma-separated caller:sha256-hex pairs, such as alice:9f86d08188...",
                parse_token_hashes,
            )?),
            Some("iam") => AuthMode::Iam,
            Some(other) => {
                return Err(error("AUTH_MODE", &format!("is {other:?}"), "token or iam"))
            }
        };
        if auth == AuthMode::Token(Vec::new()) {
            return Err(error(
                "AUTH_TOKENS",
                "is not set (AUTH_MODE is token)",
                "comma-separated caller:sha256-hex pairs, such as alice:9f86d08188...",
            ));
        }
        let allowed_content_types = env
            .list_or("ALLOWED_CONTENT_TYPES", DEFAULT_CONTENT_TYPES)
            .into_iter()
            .map(|t| t.to_ascii_lowercase())
            .collect::<Vec<_>>();
        if allowed_content_types
            .iter()
            .any(|t| !is_media_type(t) || t.contains(';'))
        {
            return Err(error(
                "ALLOWED_CONTENT_TYPES",
                "has an entry that is not a type/subtype",
                "comma-separated media types without parameters, such as image/jpeg,video/mp4",
            ));
        }
        let max_object_bytes = env.parse_or(
            "MAX_UPLOAD_BYTES",
            5 * GIB,
            "a number of bytes from 1 to 5 TiB",
            |raw| {
                raw.parse()
                    .ok()
                    .filter(|n| (1..=MAX_OBJECT_BYTES).contains(n))
            },
        )?;
        let part_size = env.parse_or(
            "PART_SIZE",
            8 * MIB,
            "a number of bytes from 5 MiB to 5 GiB",
            |raw| {
                raw.parse()
                    .ok()
                    .filter(|n| (MIN_PART_BYTES..=MAX_PART_BYTES).contains(n))
            },
        )?;
        let max_url_expiry = env.duration_or("MAX_URL_EXPIRY", Duration::from_secs(3600))?;
        if max_url_expiry.is_zero() || max_url_expiry > MAX_PRESIGN {
            return Err(error(
                "MAX_URL_EXPIRY",
                &format!("is {max_url_expiry:?}"),
                "a duration from 1s to 168h (SigV4's limit)",
            ));
        }
        let url_expiry = env.duration_or("URL_EXPIRY", Duration::from_secs(15 * 60))?;
        if url_expiry.as_secs() == 0 || url_expiry > max_url_expiry {
            return Err(error(
                "URL_EXPIRY",
                &format!("is {url_expiry:?}"),
                "a duration of at least 1s and at most MAX_URL_EXPIRY",
            ));
        }
        let upload_ttl = env.duration_or("UPLOAD_TTL", Duration::from_secs(24 * 3600))?;
        if upload_ttl.as_secs() == 0 {
            return Err(error(
                "UPLOAD_TTL",
                "is 0",
                "a duration of at least 1s, such as 24h",
            ));
        }
        let positive = |raw: &str| {
            raw.parse::<f64>()
                .ok()
                .filter(|n| n.is_finite() && *n > 0.0)
        };
        let rate_limit = RateLimit {
            per_second: env.parse_or(
                "RATE_LIMIT_PER_SECOND",
                10.0,
                "a positive number",
                positive,
            )?,
            burst: env.parse_or(
                "RATE_LIMIT_BURST",
                40.0,
                "a number of requests of at least 1",
                |raw| positive(raw).filter(|n| *n >= 1.0),
            )?,
        };
        Ok(ApiConfig {
            bucket: env.required("BUCKET", "the S3 bucket clients upload into")?,
            upload_prefix,
            auth,
            allowed_content_types,
            max_object_bytes,
            part_size,
            url_expiry,
            max_url_expiry,
            upload_ttl,
            uploads_table: env.required(
                "UPLOADS_TABLE",
                "the DynamoDB table of multipart sessions and rate buckets",
            )?,
            files_table: env.required(
                "FILES_TABLE",
                "the DynamoDB table of file versions and the change feed",
            )?,
            rate_limit,
            feed_settle: env.duration_or("FEED_SETTLE", Duration::from_secs(2))?,
            metrics_namespace: metrics_namespace(env),
            access: UploadAccess::from_env(env)?,
        })
    }
}

/// The metadata writer's configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetadataConfig {
    pub upload_prefix: String,
    pub files_table: String,
    /// Where a message per new version goes (`CHANGES_TOPIC_ARN`).
    pub changes_topic_arn: String,
    /// Records of one batch handled at once (`BATCH_CONCURRENCY`).
    pub batch_concurrency: usize,
    pub metrics_namespace: String,
}

impl MetadataConfig {
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        Ok(MetadataConfig {
            upload_prefix: upload_prefix(env)?,
            files_table: env.required(
                "FILES_TABLE",
                "the DynamoDB table of file versions and the change feed",
            )?,
            changes_topic_arn: env.required(
                "CHANGES_TOPIC_ARN",
                "the ARN of the SNS topic of new file versions",
            )?,
            batch_concurrency: env.parse_or(
                "BATCH_CONCURRENCY",
                8,
                "a whole number of at least 1",
                |raw| raw.parse().ok().filter(|n| *n > 0),
            )?,
            metrics_namespace: metrics_namespace(env),
        })
    }
}

fn upload_prefix(env: &Env) -> Result<String, ConfigError> {
    let prefix = env
        .get("UPLOAD_PREFIX")
        .unwrap_or_else(|| "uploads/".to_owned());
    let valid = prefix.ends_with('/')
        && shared::ObjectKey::new(prefix.trim_end_matches('/')).is_ok()
        && !prefix.contains("//");
    if !valid {
        return Err(error(
            "UPLOAD_PREFIX",
            &format!("is {prefix:?}"),
            "a key prefix ending with one slash, such as uploads/",
        ));
    }
    Ok(prefix)
}

fn metrics_namespace(env: &Env) -> String {
    env.get("METRICS_NAMESPACE")
        .unwrap_or_else(|| "OverseasOrigin".to_owned())
}

/// `type/subtype` with the characters RFC 6838 allows.
pub fn is_media_type(value: &str) -> bool {
    let restricted = |s: &str| {
        !s.is_empty()
            && s.len() <= 127
            && s.bytes().all(|b| {
                b.is_ascii_alphanumeric()
                    || matches!(
                        b,
                        b'!' | b'#' | b'$' | b'&' | b'-' | b'^' | b'_' | b'.' | b'+'
                    )
            })
    };
    matches!(value.split_once('/'), Some((kind, sub)) if restricted(kind) && restricted(sub))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::token_hash_hex;

    fn api(pairs: &[(&str, &str)]) -> Result<ApiConfig, ConfigError> {
        let tokens = format!("alice:{}", token_hash_hex("t"));
        let mut all = vec![
            ("BUCKET", "overseas-origin"),
            ("UPLOADS_TABLE", "uploads"),
            ("FILES_TABLE", "files"),
            ("AUTH_TOKENS", tokens.as_str()),
        ];
        all.extend_from_slice(pairs);
        ApiConfig::from_env(&Env::from_pairs(all))
    }

    #[test]
    fn defaults() {
        let config = api(&[]).unwrap();
        assert_eq!(config.upload_prefix, "uploads/");
        assert_eq!(config.part_size, 8 * MIB);
        assert_eq!(config.max_object_bytes, 5 * GIB);
        assert_eq!(config.url_expiry, Duration::from_secs(900));
        assert_eq!(config.max_url_expiry, Duration::from_secs(3600));
        assert!(config
            .allowed_content_types
            .contains(&"image/jpeg".to_owned()));
        assert!(matches!(config.auth, AuthMode::Token(ref h) if h.len() == 1));
    }

    #[test]
    fn iam_mode_needs_no_tokens() {
        let config = ApiConfig::from_env(&Env::from_pairs([
            ("BUCKET", "b"),
            ("UPLOADS_TABLE", "u"),
            ("FILES_TABLE", "f"),
            ("AUTH_MODE", "iam"),
        ]))
        .unwrap();
        assert_eq!(config.auth, AuthMode::Iam);
        let err = ApiConfig::from_env(&Env::from_pairs([
            ("BUCKET", "b"),
            ("UPLOADS_TABLE", "u"),
            ("FILES_TABLE", "f"),
        ]))
        .unwrap_err();
        assert_eq!(err.variable, "AUTH_TOKENS");
    }

    #[test]
    fn bad_values_name_their_variable() {
        for (name, value) in [
            ("AUTH_MODE", "none"),
            ("AUTH_TOKENS", "alice"),
            ("UPLOAD_PREFIX", "uploads"),
            ("UPLOAD_PREFIX", "/uploads/"),
            ("UPLOAD_PREFIX", "a/../b/"),
            (
                "ALLOWED_CONTENT_TYPES",
                "image/jpeg,text/html; charset=utf-8",
            ),
            ("ALLOWED_CONTENT_TYPES", "jpeg"),
            ("MAX_UPLOAD_BYTES", "0"),
            ("PART_SIZE", "1048576"),
            ("MAX_URL_EXPIRY", "200h"),
            ("URL_EXPIRY", "2h"),
            ("UPLOAD_TTL", "0s"),
            ("RATE_LIMIT_PER_SECOND", "-1"),
            ("RATE_LIMIT_BURST", "0.5"),
        ] {
            let err = api(&[(name, value)]).unwrap_err();
            assert_eq!(err.variable, name, "{name}={value}: {err}");
        }
        let err = ApiConfig::from_env(&Env::from_pairs([])).unwrap_err();
        assert_eq!(err.variable, "AUTH_TOKENS");
    }

    #[test]
    fn upload_access_and_what_signed_access_needs() {
        assert_eq!(api(&[]).unwrap().access, UploadAccess::Private);
        assert_eq!(
            api(&[("UPLOAD_ACCESS", "public")]).unwrap().access,
            UploadAccess::Public
        );
        let secret =
            "arn:aws:secretsmanager:eu-central-1:123456789012:secret:upload-signing-AbC123";
        let signed = [
            ("UPLOAD_ACCESS", "signed"),
            ("DOWNLOAD_DOMAIN", "d111111abcdef8.cloudfront.net"),
            ("SIGNING_KEY_ID", "K2JCJMDEHXQW5F"),
            ("SIGNING_KEY_SECRET", secret),
            ("THUMBNAIL_PREFIX", "renditions/"),
        ];
        assert_eq!(
            api(&signed).unwrap().access,
            UploadAccess::Signed(SignedAccess {
                domain: "d111111abcdef8.cloudfront.net".into(),
                key_pair_id: "K2JCJMDEHXQW5F".into(),
                key_secret_arn: secret.into(),
                thumbnail_prefix: "renditions/".into(),
            })
        );
        // Each of signed mode's settings is required and checked.
        for (name, bad) in [
            ("DOWNLOAD_DOMAIN", "https://d111111abcdef8.cloudfront.net"),
            ("SIGNING_KEY_ID", "k2jc"),
            ("SIGNING_KEY_SECRET", "arn:aws:s3:::bucket"),
            ("THUMBNAIL_PREFIX", "thumbs"),
        ] {
            let missing: Vec<_> = signed.iter().copied().filter(|(n, _)| *n != name).collect();
            match api(&missing) {
                // The image processor's default.
                Ok(config) if name == "THUMBNAIL_PREFIX" => assert!(matches!(
                    config.access,
                    UploadAccess::Signed(SignedAccess { ref thumbnail_prefix, .. }) if thumbnail_prefix == "thumbs/"
                )),
                Ok(_) => panic!("signed access without {name}"),
                Err(err) => assert_eq!(err.variable, name, "without {name}: {err}"),
            }
            let mut wrong = missing.clone();
            wrong.push((name, bad));
            assert_eq!(api(&wrong).unwrap_err().variable, name, "{name}={bad}");
        }
        assert_eq!(
            api(&[("UPLOAD_ACCESS", "open")]).unwrap_err().variable,
            "UPLOAD_ACCESS"
        );
    }

    #[test]
    fn metadata_writer_configuration() {
        let config = MetadataConfig::from_env(&Env::from_pairs([
            ("FILES_TABLE", "files"),
            (
                "CHANGES_TOPIC_ARN",
                "arn:aws:sns:us-east-1:123456789012:changes",
            ),
        ]))
        .unwrap();
        assert_eq!(config.upload_prefix, "uploads/");
        assert_eq!(config.batch_concurrency, 8);
        let err = MetadataConfig::from_env(&Env::from_pairs([("FILES_TABLE", "f")])).unwrap_err();
        assert_eq!(err.variable, "CHANGES_TOPIC_ARN");
    }

    #[test]
    fn media_types() {
        assert!(is_media_type("image/svg+xml"));
        assert!(is_media_type("application/vnd.ms-excel"));
        assert!(!is_media_type("image/"));
        assert!(!is_media_type("image/jpeg/x"));
        assert!(!is_media_type("text/html; charset=utf-8"));
    }
}
