//! CloudFront signed URLs and signed cookies, for uploads served with `UploadAccess=signed`: the
//! distribution's upload behaviours trust one key group, and only a URL or cookie signed with the
//! private key of its public key is served.
//!
//! The policy is the JSON statement CloudFront documents, without whitespace: a canned policy
//! names one URL exactly ("Create a signed URL using a canned policy"), a custom policy may end
//! in `*` ("Set signed cookies using a custom policy"). It is signed with RSASSA-PKCS1-v1_5 and
//! SHA-256, so every URL and cookie set carries `Hash-Algorithm=SHA256` (without it CloudFront
//! expects SHA-1); the signature and a custom policy go in CloudFront's URL-safe base64, whose
//! `+ = /` are `- _ ~`. CloudFront takes RSA 2048 and ECDSA P-256 keys for signed URLs (API
//! reference, PublicKey); this signer takes RSA 2048, the kind every example and SDK signer uses.

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::KeyPair;
use aws_lc_rs::signature::RSA_PKCS1_SHA256;
use aws_smithy_types::base64;
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};

use crate::config::SignedAccess;
use crate::error::Error;

/// What a key's path keeps unencoded: RFC 3986's unreserved characters and `/`, as S3 encodes a
/// key in a URL. Everything else is percent-encoded, so the URL a policy names is the URL sent.
const PATH: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~')
    .remove(b'/');

/// CloudFront's public key ids: upper-case letters and digits (`K2JCJMDEHXQW5F`).
const MAX_KEY_ID: usize = 64;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SigningKeyError {
    #[error("the signing key is not a PEM private key (-----BEGIN PRIVATE KEY----- or -----BEGIN RSA PRIVATE KEY-----)")]
    NotPem,
    #[error("the signing key is not an RSA private key: {0}")]
    NotRsa(String),
    #[error("the signing key has {0} bits: CloudFront's signed URLs take RSA 2048")]
    Size(usize),
    #[error("{0:?} is not a CloudFront public key id (upper-case letters and digits, such as K2JCJMDEHXQW5F)")]
    KeyId(String),
    #[error("{0:?} is not a distribution's domain name (such as d111111abcdef8.cloudfront.net, without a scheme)")]
    Domain(String),
}

/// Signs URLs and cookies for one distribution with one key of its trusted key group.
pub struct CloudFrontSigner {
    key: KeyPair,
    key_pair_id: String,
    domain: String,
}

impl std::fmt::Debug for CloudFrontSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CloudFrontSigner")
            .field("key_pair_id", &self.key_pair_id)
            .field("domain", &self.domain)
            .finish_non_exhaustive()
    }
}

/// One signed cookie set: the cookies to set for `path` on the distribution's domain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CookieSet {
    /// The path the cookies are for (`/uploads/alice/`).
    pub path: String,
    /// The URLs they open (`https://d111111abcdef8.cloudfront.net/uploads/alice/*`).
    pub resource: String,
    /// Name and value of each cookie, in the order CloudFront documents them.
    pub cookies: Vec<(String, String)>,
}

impl CookieSet {
    /// Each cookie as a `Set-Cookie` value for a server on the distribution's site: its path,
    /// `Secure; HttpOnly; SameSite=Lax`, no `Domain` and no `Expires` (a session cookie, as
    /// CloudFront advises).
    pub fn set_cookie_values(&self) -> Vec<String> {
        self.cookies
            .iter()
            .map(|(name, value)| {
                format!(
                    "{name}={value}; Path={}; Secure; HttpOnly; SameSite=Lax",
                    self.path
                )
            })
            .collect()
    }
}

impl CloudFrontSigner {
    /// The signer for `domain` with the private key in `pem` (PKCS#8 or PKCS#1) whose public key
    /// has the id `key_pair_id` in CloudFront.
    pub fn new(pem: &str, key_pair_id: &str, domain: &str) -> Result<Self, SigningKeyError> {
        let key = parse_private_key(pem)?;
        check_key_pair_id(key_pair_id)?;
        check_domain(domain)?;
        Ok(CloudFrontSigner {
            key,
            key_pair_id: key_pair_id.to_owned(),
            domain: domain.to_owned(),
        })
    }

    pub fn domain(&self) -> &str {
        &self.domain
    }

    /// The distribution's URL of `key`, percent-encoded as it is sent.
    pub fn object_url(&self, key: &str) -> String {
        format!("https://{}/{}", self.domain, utf8_percent_encode(key, PATH))
    }

    /// A URL for `key` that CloudFront serves until `expires` (seconds since the epoch): a canned
    /// policy for exactly this URL.
    pub fn signed_url(&self, key: &str, expires: u64) -> String {
        let url = self.object_url(key);
        let signature = self.sign(&policy(&url, expires));
        format!(
            "{url}?Expires={expires}&Signature={signature}&Key-Pair-Id={}&Hash-Algorithm=SHA256",
            self.key_pair_id
        )
    }

    /// The cookies that open every URL under `prefix` (a key prefix ending in `/`) until
    /// `expires`: a custom policy whose resource ends in `*`, for the path of the prefix.
    pub fn cookies(&self, prefix: &str, expires: u64) -> CookieSet {
        let path = format!("/{}", utf8_percent_encode(prefix, PATH));
        let resource = format!("https://{}{path}*", self.domain);
        let statement = policy(&resource, expires);
        let signature = self.sign(&statement);
        CookieSet {
            path,
            resource,
            cookies: vec![
                (
                    "CloudFront-Policy".into(),
                    url_safe(&base64::encode(&statement)),
                ),
                ("CloudFront-Signature".into(), signature),
                ("CloudFront-Key-Pair-Id".into(), self.key_pair_id.clone()),
                ("CloudFront-Hash-Algorithm".into(), "SHA256".into()),
            ],
        }
    }

    /// RSASSA-PKCS1-v1_5 with SHA-256 over `policy`, in CloudFront's URL-safe base64.
    fn sign(&self, policy: &str) -> String {
        let mut signature = vec![0; self.key.public_modulus_len()];
        // Signing with a key that parsed and was checked cannot fail but for a broken library.
        self.key
            .sign(
                &RSA_PKCS1_SHA256,
                &SystemRandom::new(),
                policy.as_bytes(),
                &mut signature,
            )
            .expect("RSA PKCS#1 v1.5 signing with a validated key");
        url_safe(&base64::encode(&signature))
    }
}

/// The signer `signed` describes, its private key read from Secrets Manager (a SecretString
/// holding the PEM). Read once, at cold start: a failure names the secret and why, and the
/// function does not start.
pub async fn signer_from_secret(
    client: &aws_sdk_secretsmanager::Client,
    signed: &SignedAccess,
) -> Result<CloudFrontSigner, Error> {
    let failed = |why: String| {
        Error::Credentials(format!(
            "the CloudFront signing key {}: {why}",
            signed.key_secret_arn
        ))
    };
    let answer = client
        .get_secret_value()
        .secret_id(&signed.key_secret_arn)
        .send()
        .await
        .map_err(|err| failed(shared::error::sdk_error_message(&err)))?;
    let pem = answer
        .secret_string()
        .ok_or_else(|| failed("the secret has no SecretString (a PEM private key)".into()))?;
    CloudFrontSigner::new(pem, &signed.key_pair_id, &signed.domain)
        .map_err(|e| failed(e.to_string()))
}

/// The policy statement for `resource` until `expires`. As a canned policy (a URL's exact text)
/// it is what CloudFront rebuilds from the URL; as a custom policy it is sent whole, and its
/// resource may hold `*` (any characters).
pub fn policy(resource: &str, expires: u64) -> String {
    format!(
        r#"{{"Statement":[{{"Resource":"{resource}","Condition":{{"DateLessThan":{{"AWS:EpochTime":{expires}}}}}}}]}}"#
    )
}

/// CloudFront's URL-safe base64: `+` `=` `/` become `-` `_` `~`.
pub fn url_safe(standard: &str) -> String {
    standard
        .chars()
        .map(|c| match c {
            '+' => '-',
            '=' => '_',
            '/' => '~',
            c => c,
        })
        .collect()
}

/// The bytes of CloudFront's URL-safe base64 (a signature, a custom policy); `None` if it is not.
pub fn decode_url_safe(value: &str) -> Option<Vec<u8>> {
    let standard: String = value
        .chars()
        .map(|c| match c {
            '-' => '+',
            '_' => '=',
            '~' => '/',
            c => c,
        })
        .collect();
    base64::decode(standard).ok()
}

fn parse_private_key(pem: &str) -> Result<KeyPair, SigningKeyError> {
    let (label, der) = pem_body(pem).ok_or(SigningKeyError::NotPem)?;
    let key = match label.as_str() {
        "PRIVATE KEY" => KeyPair::from_pkcs8(&der),
        "RSA PRIVATE KEY" => KeyPair::from_der(&der),
        _ => return Err(SigningKeyError::NotPem),
    }
    .map_err(|e| SigningKeyError::NotRsa(e.to_string()))?;
    let bits = key.public_modulus_len() * 8;
    if bits != 2048 {
        return Err(SigningKeyError::Size(bits));
    }
    Ok(key)
}

/// The label and DER bytes of the first PEM block in `pem`.
fn pem_body(pem: &str) -> Option<(String, Vec<u8>)> {
    let start = pem.find("-----BEGIN ")?;
    let rest = &pem[start + "-----BEGIN ".len()..];
    let label_end = rest.find("-----")?;
    let label = rest[..label_end].to_owned();
    let body = &rest[label_end + "-----".len()..];
    let end = body.find(&format!("-----END {label}-----"))?;
    let base64_text: String = body[..end]
        .chars()
        .filter(|c| !c.is_ascii_whitespace())
        .collect();
    let der = base64::decode(&base64_text).ok()?;
    (!der.is_empty()).then_some((label, der))
}

pub fn check_key_pair_id(id: &str) -> Result<(), SigningKeyError> {
    let valid = !id.is_empty()
        && id.len() <= MAX_KEY_ID
        && id
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit());
    if valid {
        Ok(())
    } else {
        Err(SigningKeyError::KeyId(id.to_owned()))
    }
}

/// A host name: dot-separated labels of lower-case letters, digits and hyphens.
pub fn check_domain(domain: &str) -> Result<(), SigningKeyError> {
    let valid = domain.len() <= 253
        && domain.contains('.')
        && domain.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        });
    if valid {
        Ok(())
    } else {
        Err(SigningKeyError::Domain(domain.to_owned()))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use aws_lc_rs::encoding::AsDer;
    use aws_lc_rs::rsa::KeySize;
    use aws_lc_rs::signature::{UnparsedPublicKey, RSA_PKCS1_2048_8192_SHA256};

    /// A fresh RSA 2048 key as PKCS#8 PEM, and its public key (PKCS#1 DER).
    pub(crate) fn test_key() -> (String, Vec<u8>) {
        let key = KeyPair::generate(KeySize::Rsa2048).unwrap();
        let der = AsDer::<aws_lc_rs::encoding::Pkcs8V1Der>::as_der(&key).unwrap();
        let body = base64::encode(der.as_ref());
        let lines: Vec<&str> = body
            .as_bytes()
            .chunks(64)
            .map(|c| std::str::from_utf8(c).unwrap())
            .collect();
        let pem = format!(
            "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
            lines.join("\n")
        );
        use aws_lc_rs::signature::KeyPair as _;
        let public = key.public_key().as_ref().to_vec();
        (pem, public)
    }

    fn verify(public_pkcs1: &[u8], message: &str, signature: &str) -> bool {
        UnparsedPublicKey::new(&RSA_PKCS1_2048_8192_SHA256, public_pkcs1)
            .verify(message.as_bytes(), &decode_url_safe(signature).unwrap())
            .is_ok()
    }

    fn query(url: &str) -> Vec<(String, String)> {
        url.split_once('?')
            .unwrap()
            .1
            .split('&')
            .map(|pair| {
                let (k, v) = pair.split_once('=').unwrap();
                (k.to_owned(), v.to_owned())
            })
            .collect()
    }

    #[test]
    fn a_signed_url_carries_a_canned_policy_signature_for_exactly_its_url() {
        let (pem, public) = test_key();
        let signer =
            CloudFrontSigner::new(&pem, "K2JCJMDEHXQW5F", "d111111abcdef8.cloudfront.net").unwrap();
        let url = signer.signed_url(
            "uploads/123456789012:AROA:alice/café au lait.jpg",
            1767290400,
        );
        let base = "https://d111111abcdef8.cloudfront.net/uploads/123456789012%3AAROA%3Aalice/caf%C3%A9%20au%20lait.jpg";
        assert!(
            url.starts_with(&format!("{base}?Expires=1767290400&Signature=")),
            "{url}"
        );
        let params = query(&url);
        let names: Vec<&str> = params.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            names,
            ["Expires", "Signature", "Key-Pair-Id", "Hash-Algorithm"]
        );
        assert_eq!(params[2].1, "K2JCJMDEHXQW5F");
        assert_eq!(params[3].1, "SHA256");
        let signature = &params[1].1;
        assert!(!signature.contains(['+', '=', '/']), "{signature}");
        let policy = format!(
            r#"{{"Statement":[{{"Resource":"{base}","Condition":{{"DateLessThan":{{"AWS:EpochTime":1767290400}}}}}}]}}"#
        );
        assert!(verify(&public, &policy, signature));
        // Another URL, or another time, is not what was signed.
        assert!(!verify(&public, &policy.replace("alice", "bob"), signature));
        assert!(!verify(
            &public,
            &policy.replace("1767290400", "1767290401"),
            signature
        ));
    }

    #[test]
    fn cookies_carry_a_custom_policy_for_everything_under_the_prefix() {
        let (pem, public) = test_key();
        let signer = CloudFrontSigner::new(&pem, "K2JCJMDEHXQW5F", "cdn.example.com").unwrap();
        let set = signer.cookies("thumbs/uploads/alice/", 1767290400);
        assert_eq!(set.path, "/thumbs/uploads/alice/");
        assert_eq!(
            set.resource,
            "https://cdn.example.com/thumbs/uploads/alice/*"
        );
        let names: Vec<&str> = set.cookies.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            [
                "CloudFront-Policy",
                "CloudFront-Signature",
                "CloudFront-Key-Pair-Id",
                "CloudFront-Hash-Algorithm"
            ]
        );
        let policy = String::from_utf8(decode_url_safe(&set.cookies[0].1).unwrap()).unwrap();
        assert_eq!(
            policy,
            r#"{"Statement":[{"Resource":"https://cdn.example.com/thumbs/uploads/alice/*","Condition":{"DateLessThan":{"AWS:EpochTime":1767290400}}}]}"#
        );
        assert!(verify(&public, &policy, &set.cookies[1].1));
        assert_eq!(set.cookies[3].1, "SHA256");
    }

    #[test]
    fn url_safe_base64_replaces_exactly_the_three_characters() {
        assert_eq!(url_safe("ab+c/d=="), "ab-c~d__");
        assert_eq!(url_safe("plain"), "plain");
        assert_eq!(
            decode_url_safe("-~8_").unwrap(),
            base64::decode("+/8=").unwrap()
        );
        assert_eq!(decode_url_safe("not base64!"), None);
    }

    #[test]
    fn refuses_keys_ids_and_domains_cloudfront_would_not_take() {
        let (pem, _) = test_key();
        let domain = "d111111abcdef8.cloudfront.net";
        assert_eq!(
            CloudFrontSigner::new("not a key", "K1", domain).unwrap_err(),
            SigningKeyError::NotPem
        );
        let public_pem = pem.replace("PRIVATE KEY", "PUBLIC KEY");
        assert_eq!(
            CloudFrontSigner::new(&public_pem, "K1", domain).unwrap_err(),
            SigningKeyError::NotPem
        );
        let small = KeyPair::generate(KeySize::Rsa3072).unwrap();
        let der = AsDer::<aws_lc_rs::encoding::Pkcs8V1Der>::as_der(&small).unwrap();
        let small_pem = format!(
            "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
            base64::encode(der.as_ref())
        );
        assert_eq!(
            CloudFrontSigner::new(&small_pem, "K1", domain).unwrap_err(),
            SigningKeyError::Size(3072)
        );
        for id in ["", "k2jc", "K2J-C", &"K".repeat(65)] {
            assert!(matches!(
                CloudFrontSigner::new(&pem, id, domain),
                Err(SigningKeyError::KeyId(_))
            ));
        }
        for bad in [
            "https://d1.cloudfront.net",
            "localhost",
            "D1.cloudfront.net",
            "a..b",
            "-a.b",
            "a.b/",
        ] {
            assert!(
                matches!(
                    CloudFrontSigner::new(&pem, "K1", bad),
                    Err(SigningKeyError::Domain(_))
                ),
                "{bad}"
            );
        }
    }
}
