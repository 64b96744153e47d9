//! Presigned POST (browser uploads): the policy document and its SigV4 signature.
//!
//! The SDK presigns requests but not POST policies, so this builds both: a policy whose conditions
//! pin every form field (bucket, key, exact content type, the checksum S3 verifies the file
//! against, the length range, and the signing fields), then the SigV4 HMAC-SHA256 chain over its
//! base64. S3 refuses a form whose fields break a condition, a policy changed after signing, and
//! one past its expiration.

use hmac::{Hmac, KeyInit, Mac};
use serde_json::{json, Value};
use sha2::Sha256;
use time::macros::format_description;
use time::OffsetDateTime;

use crate::checksum::Checksum;
use crate::plan::{CACHE_CONTROL, CONTENT_DISPOSITION, CONTENT_ENCODING, EXPIRES_EPOCH_S};

pub const ALGORITHM: &str = "AWS4-HMAC-SHA256";

/// The credentials a policy is signed with.
#[derive(Clone, PartialEq, Eq)]
pub struct SigningCredentials {
    pub access_key_id: String,
    pub secret_access_key: String,
    pub session_token: Option<String>,
}

impl std::fmt::Debug for SigningCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningCredentials")
            .field("access_key_id", &self.access_key_id)
            .finish_non_exhaustive()
    }
}

/// What one signed form allows.
#[derive(Debug, Clone)]
pub struct PostPolicy<'a> {
    pub bucket: &'a str,
    pub key: &'a str,
    pub content_type: &'a str,
    pub checksum: Checksum,
    /// Inclusive bounds of the file's length.
    pub length_range: (u64, u64),
    pub now: OffsetDateTime,
    pub expires_at: OffsetDateTime,
    pub region: &'a str,
}

/// The form fields of a signed POST, in the order they are sent (the file goes after them).
pub fn sign_post(
    policy: &PostPolicy<'_>,
    credentials: &SigningCredentials,
) -> Vec<(String, String)> {
    let date = policy
        .now
        .to_offset(time::UtcOffset::UTC)
        .format(format_description!("[year][month][day]"))
        .expect("a UTC date formats");
    let amz_date = format!(
        "{date}T{}Z",
        policy
            .now
            .to_offset(time::UtcOffset::UTC)
            .format(format_description!("[hour][minute][second]"))
            .expect("a UTC time formats")
    );
    let credential = format!(
        "{}/{date}/{}/s3/aws4_request",
        credentials.access_key_id, policy.region
    );
    let document = policy_document(policy, &credential, &amz_date, credentials);
    let encoded = aws_smithy_types::base64::encode(document.to_string());
    let signature = hex(&hmac(
        &signing_key(&credentials.secret_access_key, &date, policy.region, "s3"),
        encoded.as_bytes(),
    ));
    let mut fields = vec![
        ("key".to_owned(), policy.key.to_owned()),
        ("Content-Type".to_owned(), policy.content_type.to_owned()),
    ];
    fields.extend(
        served_as()
            .into_iter()
            .map(|(name, value)| (name.to_owned(), value)),
    );
    fields.extend([
        // The algorithm beside its value, as a PutObject names both and as minio-go's POST
        // policies do: S3's POST Object reference documents only Content-MD5 for integrity, so
        // which of the two real S3 needs is unproven (docs/uploads.md).
        (
            "x-amz-checksum-algorithm".to_owned(),
            policy.checksum.algorithm().s3_name().to_owned(),
        ),
        (
            policy.checksum.algorithm().header().to_owned(),
            policy.checksum.to_base64(),
        ),
        ("x-amz-algorithm".to_owned(), ALGORITHM.to_owned()),
        ("x-amz-credential".to_owned(), credential),
        ("x-amz-date".to_owned(), amz_date),
    ]);
    if let Some(token) = &credentials.session_token {
        fields.push(("x-amz-security-token".to_owned(), token.clone()));
    }
    fields.push(("policy".to_owned(), encoded));
    fields.push(("x-amz-signature".to_owned(), signature));
    fields
}

/// The headers S3 serves the object with, as form fields ([`crate::plan::CACHE_CONTROL`] and
/// the rest). Content-Language is not a POST Object form field; S3 refuses a form field that no
/// condition names, so a caller cannot add it (nor any other).
fn served_as() -> [(&'static str, String); 4] {
    [
        ("Cache-Control", CACHE_CONTROL.to_owned()),
        ("Content-Disposition", CONTENT_DISPOSITION.to_owned()),
        ("Content-Encoding", CONTENT_ENCODING.to_owned()),
        (
            "Expires",
            aws_smithy_types::DateTime::from_secs(EXPIRES_EPOCH_S)
                .fmt(aws_smithy_types::date_time::Format::HttpDate)
                .expect("the epoch formats"),
        ),
    ]
}

/// The policy document: every form field but the file, the policy and the signature has a
/// condition, as S3 requires.
pub fn policy_document(
    policy: &PostPolicy<'_>,
    credential: &str,
    amz_date: &str,
    credentials: &SigningCredentials,
) -> Value {
    let expiration = policy
        .expires_at
        .to_offset(time::UtcOffset::UTC)
        .format(format_description!(
            "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
        ))
        .expect("a UTC time formats");
    let mut conditions = vec![
        json!({ "bucket": policy.bucket }),
        json!(["eq", "$key", policy.key]),
        json!(["eq", "$Content-Type", policy.content_type]),
    ];
    conditions.extend(
        served_as()
            .into_iter()
            .map(|(name, value)| json!(["eq", format!("${name}"), value])),
    );
    conditions.extend([
        json!([
            "content-length-range",
            policy.length_range.0,
            policy.length_range.1
        ]),
        json!({ "x-amz-checksum-algorithm": policy.checksum.algorithm().s3_name() }),
        json!({ policy.checksum.algorithm().header(): policy.checksum.to_base64() }),
        json!({ "x-amz-algorithm": ALGORITHM }),
        json!({ "x-amz-credential": credential }),
        json!({ "x-amz-date": amz_date }),
    ]);
    if let Some(token) = &credentials.session_token {
        conditions.push(json!({ "x-amz-security-token": token }));
    }
    json!({ "expiration": expiration, "conditions": conditions })
}

/// SigV4's signing key: HMAC-SHA256 chained over the date, region, service and terminator.
pub fn signing_key(secret: &str, date: &str, region: &str, service: &str) -> [u8; 32] {
    let k_date = hmac(format!("AWS4{secret}").as_bytes(), date.as_bytes());
    let k_region = hmac(&k_date, region.as_bytes());
    let k_service = hmac(&k_region, service.as_bytes());
    hmac(&k_service, b"aws4_request")
}

fn hmac(key: &[u8], data: &[u8]) -> [u8; 32] {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes a key of any length");
    mac.update(data);
    mac.finalize().into_bytes().into()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};
    use time::macros::datetime;

    fn credentials(token: Option<&str>) -> SigningCredentials {
        SigningCredentials {
            access_key_id: "AKIAIOSFODNN7EXAMPLE".into(),
            secret_access_key: "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY".into(),
            session_token: token.map(str::to_owned),
        }
    }

    fn policy() -> PostPolicy<'static> {
        PostPolicy {
            bucket: "overseas-origin",
            key: "uploads/alice/a b.jpg",
            content_type: "image/jpeg",
            checksum: Checksum::Crc32c(0x9a71_bb4c),
            length_range: (5, 5),
            now: datetime!(2015-12-29 00:00:00 UTC),
            expires_at: datetime!(2015-12-29 00:15:00 UTC),
            region: "us-east-1",
        }
    }

    #[test]
    fn signing_key_matches_the_published_example() {
        // AWS's SigV4 documentation: secret wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY,
        // 20120215, us-east-1, iam.
        let key = signing_key(
            "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
            "20120215",
            "us-east-1",
            "iam",
        );
        assert_eq!(
            hex(&key),
            "f4780e2d9f65fa895f9c67b32ce1baf0b0d8a43505a000a1a9e090d414db404d"
        );
    }

    #[test]
    fn signature_matches_the_sdk_signer() {
        let fields = sign_post(&policy(), &credentials(None));
        let field = |name: &str| {
            fields
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.clone())
                .unwrap_or_else(|| panic!("no {name}"))
        };
        // The SDK's own SigV4 primitives, as an independent implementation.
        let time = UNIX_EPOCH + Duration::from_secs(1_451_347_200);
        let key = aws_sigv4::sign::v4::generate_signing_key(
            "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
            time,
            "us-east-1",
            "s3",
        );
        let expected = aws_sigv4::sign::v4::calculate_signature(key, field("policy").as_bytes());
        assert_eq!(field("x-amz-signature"), expected);
        assert_eq!(field("x-amz-date"), "20151229T000000Z");
        assert_eq!(
            field("x-amz-credential"),
            "AKIAIOSFODNN7EXAMPLE/20151229/us-east-1/s3/aws4_request"
        );
        assert_eq!(field("x-amz-checksum-crc32c"), "mnG7TA==");
        let names: Vec<&str> = fields.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names.last(), Some(&"x-amz-signature"));
        assert!(!names.contains(&"x-amz-security-token"));
    }

    #[test]
    fn the_policy_pins_every_field() {
        let fields = sign_post(&policy(), &credentials(Some("session-token")));
        let encoded = &fields.iter().find(|(n, _)| n == "policy").unwrap().1;
        let document: Value =
            serde_json::from_slice(&aws_smithy_types::base64::decode(encoded).unwrap()).unwrap();
        assert_eq!(document["expiration"], "2015-12-29T00:15:00.000Z");
        let conditions = document["conditions"].as_array().unwrap();
        assert!(conditions.contains(&json!({"bucket": "overseas-origin"})));
        assert!(conditions.contains(&json!(["eq", "$key", "uploads/alice/a b.jpg"])));
        assert!(conditions.contains(&json!(["eq", "$Content-Type", "image/jpeg"])));
        assert!(conditions.contains(&json!(["content-length-range", 5, 5])));
        assert!(conditions.contains(&json!({"x-amz-checksum-crc32c": "mnG7TA=="})));
        assert!(conditions.contains(&json!({"x-amz-checksum-algorithm": "CRC32C"})));
        for (name, value) in [
            ("Cache-Control", "no-cache"),
            ("Content-Disposition", "inline"),
            ("Content-Encoding", "identity"),
            ("Expires", "Thu, 01 Jan 1970 00:00:00 GMT"),
        ] {
            assert!(conditions.contains(&json!(["eq", format!("${name}"), value])));
            assert!(fields.contains(&(name.to_owned(), value.to_owned())));
        }
        assert!(fields.contains(&("x-amz-checksum-algorithm".into(), "CRC32C".into())));
        assert!(conditions.contains(&json!({"x-amz-security-token": "session-token"})));
        // Every form field but the policy and the signature has a condition on it.
        let conditioned = document.to_string().to_ascii_lowercase();
        for (name, _) in &fields {
            if name != "policy" && name != "x-amz-signature" {
                assert!(
                    conditioned.contains(&name.to_ascii_lowercase()),
                    "{name} has no condition"
                );
            }
        }
    }

    #[test]
    fn debug_hides_the_secret() {
        let text = format!("{:?}", credentials(Some("tok")));
        assert!(
            !text.contains("EXAMPLEKEY") && !text.contains("tok\""),
            "{text}"
        );
    }
}
