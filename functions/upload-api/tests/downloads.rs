//! Owners read their uploads. With `UploadAccess=private` (or `public`) the API signs a GET from
//! the bucket, fetched here from moto; with `UploadAccess=signed` it signs CloudFront URLs and
//! cookies with the key it reads from Secrets Manager (moto's), checked against the public key,
//! against CloudFront's documented policy text, and against botocore's CloudFrontSigner, the
//! signer of the AWS SDK for Python, given the same key, URL and time.

mod common;

use aws_lc_rs::encoding::{AsDer, Pkcs8V1Der};
use aws_lc_rs::rsa::{KeyPair, KeySize};
use aws_lc_rs::signature::{KeyPair as _, UnparsedPublicKey, RSA_PKCS1_2048_8192_SHA256};
use aws_smithy_types::base64;
use common::{jpeg, temp_dir, Stack, ALICE, BOB};
use upload_api::api::UploadMethod;
use upload_api::client::{upload_single, ApiClient};
use upload_api::cloudfront::{decode_url_safe, signer_from_secret};
use upload_api::config::SignedAccess;
use upload_api::Error;

const DOMAIN: &str = "d111111abcdef8.cloudfront.net";
const KEY_ID: &str = "K2JCJMDEHXQW5F";

/// An RSA 2048 key as PKCS#8 PEM, and its public key (PKCS#1 DER).
fn rsa_key() -> (String, Vec<u8>) {
    let key = KeyPair::generate(KeySize::Rsa2048).unwrap();
    let der = AsDer::<Pkcs8V1Der>::as_der(&key).unwrap();
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
    (pem, key.public_key().as_ref().to_vec())
}

fn verifies(public: &[u8], policy: &str, signature: &str) -> bool {
    UnparsedPublicKey::new(&RSA_PKCS1_2048_8192_SHA256, public)
        .verify(policy.as_bytes(), &decode_url_safe(signature).unwrap())
        .is_ok()
}

fn refusal<T: std::fmt::Debug>(result: Result<T, Error>) -> (u16, String) {
    match result {
        Err(Error::Refused { status, reason, .. }) => (status, reason),
        other => panic!("expected a refusal, got {other:?}"),
    }
}

/// Uploads a photo as Alice through `client` and records its version; returns the bytes.
async fn uploaded(stack: &Stack, client: &ApiClient, key: &str) -> Vec<u8> {
    let photo = jpeg(64, 48);
    let dir = temp_dir("download");
    let path = dir.join("photo.jpg");
    std::fs::write(&path, &photo).unwrap();
    upload_single(client, &path, key, "image/jpeg", UploadMethod::Put)
        .await
        .unwrap();
    let events = stack.events_for(&[key]).await;
    stack.record(&events).await;
    photo
}

#[tokio::test]
async fn a_private_upload_is_read_by_its_owner_through_a_presigned_get() {
    let stack = Stack::start(&[]).await;
    let alice = stack.client(ALICE);
    let key = "uploads/alice/photos/cat on a mat.jpg";
    let photo = uploaded(&stack, &alice, key).await;

    let file = alice.download(key, Some(120)).await.unwrap();
    assert_eq!(file.latest.key, key);
    let download = file.download.expect("a download URL");
    assert_eq!(download.via, "s3");
    assert!(
        download.url.contains("X-Amz-Expires=120"),
        "{}",
        download.url
    );
    let answer = reqwest::get(&download.url).await.unwrap();
    assert_eq!(answer.status(), 200);
    assert_eq!(answer.bytes().await.unwrap(), photo);

    // Without download=true there is no URL.
    assert!(alice.file(key, false).await.unwrap().download.is_none());
    // Bob cannot have Alice's file signed for him.
    assert_eq!(
        refusal(stack.client(BOB).download(key, None).await),
        (403, "key_outside_prefix".into())
    );
    // Lifetimes are bounded as every signed URL's.
    assert_eq!(
        refusal(alice.download(key, Some(100_000)).await),
        (400, "expiry_not_allowed".into())
    );
    // No signed cookies unless the distribution takes them.
    assert_eq!(
        refusal(alice.cookies().await),
        (400, "invalid_request".into())
    );
}

#[tokio::test]
async fn signed_access_signs_cloudfront_urls_and_cookies_for_the_owners_prefix() {
    let stack = Stack::start(&[]).await;
    let (pem, public) = rsa_key();
    let secret = stack.secret(&pem).await;
    let signed_api = stack
        .another_api(&[
            ("UPLOAD_ACCESS", "signed"),
            ("DOWNLOAD_DOMAIN", DOMAIN),
            ("SIGNING_KEY_ID", KEY_ID),
            ("SIGNING_KEY_SECRET", &secret),
            ("THUMBNAIL_PREFIX", "thumbnails/"),
        ])
        .await;
    let alice = stack.client_of(&signed_api, ALICE);
    let key = "uploads/alice/photos/café au lait.jpg";
    uploaded(&stack, &alice, key).await;

    let download = alice
        .download(key, Some(300))
        .await
        .unwrap()
        .download
        .expect("a download URL");
    assert_eq!(download.via, "cloudfront");
    let url = format!("https://{DOMAIN}/uploads/alice/photos/caf%C3%A9%20au%20lait.jpg");
    let query = download
        .url
        .strip_prefix(&format!("{url}?"))
        .unwrap_or_else(|| panic!("{} is not a URL of {url}", download.url));
    let params: Vec<(&str, &str)> = query
        .split('&')
        .map(|p| p.split_once('=').unwrap())
        .collect();
    let names: Vec<&str> = params.iter().map(|(n, _)| *n).collect();
    assert_eq!(
        names,
        ["Expires", "Signature", "Key-Pair-Id", "Hash-Algorithm"]
    );
    let (expires, signature) = (params[0].1, params[1].1);
    assert_eq!((params[2].1, params[3].1), (KEY_ID, "SHA256"));
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let expires_at: u64 = expires.parse().unwrap();
    assert!(
        (now + 295..=now + 305).contains(&expires_at),
        "{expires_at} vs {now}"
    );
    // The canned policy CloudFront rebuilds from the URL, as its guide writes it.
    let policy = format!(
        r#"{{"Statement":[{{"Resource":"{url}","Condition":{{"DateLessThan":{{"AWS:EpochTime":{expires}}}}}}}]}}"#
    );
    assert!(verifies(&public, &policy, signature));
    // The AWS SDK for Python signs the same URL the same way (it leaves out the hash algorithm
    // parameter, which says SHA-256 to CloudFront).
    let botocore = botocore_signed_url(&pem, &url, expires_at);
    assert_eq!(
        format!("{}&Hash-Algorithm=SHA256", botocore.trim()),
        download.url
    );

    // Cookies: Alice's prefix and its thumbnails, each a custom policy ending in `*`.
    let cookies = alice.cookies().await.unwrap();
    assert_eq!(cookies.domain, DOMAIN);
    let paths: Vec<&str> = cookies.sets.iter().map(|s| s.path.as_str()).collect();
    assert_eq!(paths, ["/uploads/alice/", "/thumbnails/uploads/alice/"]);
    for set in &cookies.sets {
        assert_eq!(set.resource, format!("https://{DOMAIN}{}*", set.path));
        let policy =
            String::from_utf8(decode_url_safe(&set.cookies["CloudFront-Policy"]).unwrap()).unwrap();
        assert!(
            policy.starts_with(&format!(
                r#"{{"Statement":[{{"Resource":"{}","#,
                set.resource
            )),
            "{policy}"
        );
        assert!(verifies(
            &public,
            &policy,
            &set.cookies["CloudFront-Signature"]
        ));
        assert_eq!(set.cookies["CloudFront-Key-Pair-Id"], KEY_ID);
        assert_eq!(set.cookies["CloudFront-Hash-Algorithm"], "SHA256");
        assert_eq!(set.set_cookie.len(), 4);
        for line in &set.set_cookie {
            assert!(
                line.ends_with(&format!(
                    "; Path={}; Secure; HttpOnly; SameSite=Lax",
                    set.path
                )),
                "{line}"
            );
        }
    }
    // Bob's cookies open Bob's prefix only.
    let bob = stack.client_of(&signed_api, BOB).cookies().await.unwrap();
    assert_eq!(
        bob.sets[0].resource,
        format!("https://{DOMAIN}/uploads/bob/*")
    );
    assert_eq!(
        refusal(stack.client_of(&signed_api, BOB).download(key, None).await),
        (403, "key_outside_prefix".into())
    );
}

#[tokio::test]
async fn a_signing_key_secret_that_is_not_an_rsa_2048_key_fails_with_its_name() {
    let stack = Stack::start(&[]).await;
    let client = aws_sdk_secretsmanager::Client::new(&stack.sdk);
    let access = |arn: &str| SignedAccess {
        domain: DOMAIN.into(),
        key_pair_id: KEY_ID.into(),
        key_secret_arn: arn.into(),
        thumbnail_prefix: "thumbs/".into(),
    };
    let not_a_key = stack.secret("hunter2").await;
    let err = signer_from_secret(&client, &access(&not_a_key))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains(&not_a_key) && err.contains("not a PEM private key"),
        "{err}"
    );
    assert!(!err.contains("hunter2"), "the value shows: {err}");
    let missing = not_a_key.replace("signing-key", "no-such-key");
    let err = signer_from_secret(&client, &access(&missing))
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains(&missing), "{err}");
}

/// botocore's CloudFrontSigner's canned-policy URL for `url` until `expires`, its RSA signer
/// PKCS#1 v1.5 with SHA-256 (cryptography's).
fn botocore_signed_url(pem: &str, url: &str, expires: u64) -> String {
    let python = concat!(env!("CARGO_MANIFEST_DIR"), "/../../.venv/bin/python");
    let script = r#"
import datetime, sys
from botocore.signers import CloudFrontSigner
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding
key = serialization.load_pem_private_key(sys.stdin.read().encode(), password=None)
signer = CloudFrontSigner(sys.argv[1], lambda m: key.sign(m, padding.PKCS1v15(), hashes.SHA256()))
when = datetime.datetime.fromtimestamp(int(sys.argv[3]), datetime.timezone.utc)
print(signer.generate_presigned_url(sys.argv[2], date_less_than=when))
"#;
    use std::io::Write;
    let mut child = std::process::Command::new(python)
        .args(["-c", script, KEY_ID, url, &expires.to_string()])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("the project's Python (.venv, made by scripts/local-stack)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(pem.as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success(), "botocore failed");
    String::from_utf8(output.stdout).unwrap()
}
