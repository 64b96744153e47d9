//! What the API signs, checked by a strict S3 (s3s-fs verifies signatures, POST policies and
//! checksums, where moto does not): the untouched request goes through; a tampered one, an
//! expired one, or one whose bytes are not the declared ones is refused and stores nothing.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use aws_sdk_s3::config::{Credentials, SharedCredentialsProvider};

use common::{bytes, Signer, Stack, ALICE, MIB};
use sha2::{Digest, Sha256};
use upload_api::api::{
    ChecksumSpec, CompleteRequest, CompletedPartRef, CreateMultipartRequest, PartToSign,
    SignPartsRequest, SingleUploadRequest, SingleUploadResponse, UploadMethod,
};
use upload_api::checksum::{Checksum, ChecksumAlgorithm};
use upload_api::client::{send_form, send_signed, ApiClient};
use upload_api::Error;

fn key(name: &str) -> String {
    format!("uploads/alice/strict-{:08x}-{name}", fastrand::u32(..))
}

fn sha256(data: &[u8]) -> ChecksumSpec {
    let digest: [u8; 32] = Sha256::digest(data).into();
    ChecksumSpec {
        algorithm: ChecksumAlgorithm::Sha256,
        value: Checksum::Sha256(digest).to_base64(),
    }
}

async fn sign(
    client: &ApiClient,
    key: &str,
    data: &[u8],
    method: UploadMethod,
    expires_in: Option<u64>,
) -> SingleUploadResponse {
    client
        .single_upload(&SingleUploadRequest {
            key: key.to_owned(),
            size: data.len() as u64,
            content_type: "image/jpeg".into(),
            checksum: sha256(data),
            method,
            expires_in,
        })
        .await
        .unwrap()
}

/// The S3 error of a refused transfer: status and the body's error code.
fn refused(result: Result<impl std::fmt::Debug, Error>) -> (u16, String) {
    match result {
        Err(Error::TransferRefused { status, message }) => (status, message),
        other => panic!("expected a refusal, got {other:?}"),
    }
}

fn assert_refused(result: Result<impl std::fmt::Debug, Error>, status: u16, code: &str) {
    let (got, message) = refused(result);
    assert_eq!(got, status, "{message}");
    assert!(message.contains(code), "expected {code}: {message}");
}

#[tokio::test]
async fn presigned_puts_are_checked_by_the_strict_s3() {
    let stack = Stack::start_with(Signer::StrictUnrecorded, &[]).await;
    let alice = stack.client(ALICE);
    let http = alice.http().clone();
    let data = bytes(300_000, 1);

    let target = key("put.jpg");
    let signed = sign(&alice, &target, &data, UploadMethod::Put, None).await;
    let put = |url: String, headers: BTreeMap<String, String>, body: Vec<u8>| {
        let http = http.clone();
        async move {
            // s3s-fs may answer a refusal and close the connection before it has read the body;
            // the client then sees the connection closed (or its write refused: a broken pipe,
            // a reset) instead of the answer. Send again.
            let mut attempt = 0;
            loop {
                let result = send_signed(&http, "PUT", &url, &headers, body.clone()).await;
                match &result {
                    Err(Error::Transfer(message))
                        if attempt < 8
                            && [
                                "connection closed before message completed",
                                "Broken pipe",
                                "Connection reset by peer",
                            ]
                            .iter()
                            .any(|cut| message.contains(cut)) =>
                    {
                        attempt += 1;
                    }
                    _ => return result,
                }
            }
        }
    };

    // Tampered URLs: another key, a longer life, another signature.
    let other_key = signed
        .url
        .replace("/uploads/alice/strict-", "/uploads/alice/strict-x");
    assert_ne!(other_key, signed.url);
    assert_refused(
        put(other_key, signed.headers.clone(), data.clone()).await,
        403,
        "SignatureDoesNotMatch",
    );
    let longer = signed
        .url
        .replace("X-Amz-Expires=900", "X-Amz-Expires=3600");
    assert_ne!(longer, signed.url);
    assert_refused(
        put(longer, signed.headers.clone(), data.clone()).await,
        403,
        "SignatureDoesNotMatch",
    );
    let signature = signed
        .url
        .split("X-Amz-Signature=")
        .nth(1)
        .unwrap()
        .to_owned();
    let flipped = format!(
        "{}{}",
        if signature.starts_with('0') { "1" } else { "0" },
        &signature[1..]
    );
    assert_refused(
        put(
            signed.url.replace(&signature, &flipped),
            signed.headers.clone(),
            data.clone(),
        )
        .await,
        403,
        "SignatureDoesNotMatch",
    );
    // How S3 and the CDN serve the object is signed, with the API's values: a caller can
    // neither change those headers nor add them unsigned.
    let signed_headers = signed
        .url
        .split_once("X-Amz-SignedHeaders=")
        .and_then(|(_, rest)| rest.split('&').next())
        .expect("X-Amz-SignedHeaders")
        .replace("%3B", ";");
    for (name, value) in [
        ("cache-control", "no-cache"),
        ("content-disposition", "inline"),
        ("content-encoding", "identity"),
        ("content-language", "und"),
        ("expires", "Thu, 01 Jan 1970 00:00:00 GMT"),
    ] {
        assert!(
            signed_headers.split(';').any(|h| h == name),
            "{name} is not in {signed_headers}"
        );
        assert_eq!(signed.headers[name], value);
    }
    for (name, value) in [
        (
            "content-disposition",
            "attachment; filename=\"invoice.html\"",
        ),
        ("content-encoding", "gzip"),
        ("cache-control", "public, max-age=31536000, immutable"),
        ("content-language", "en"),
        ("expires", "Fri, 01 Jan 2100 00:00:00 GMT"),
    ] {
        let mut served = signed.headers.clone();
        served.insert(name.into(), value.into());
        assert_refused(
            put(signed.url.clone(), served, data.clone()).await,
            403,
            "SignatureDoesNotMatch",
        );
    }
    // Tampered headers: another type, another checksum (both are signed).
    let mut html = signed.headers.clone();
    html.insert("content-type".into(), "text/html".into());
    assert_refused(
        put(signed.url.clone(), html, data.clone()).await,
        403,
        "SignatureDoesNotMatch",
    );
    let mut other_sum = signed.headers.clone();
    other_sum.insert("x-amz-checksum-sha256".into(), sha256(b"other bytes").value);
    assert_refused(
        put(signed.url.clone(), other_sum, data.clone()).await,
        403,
        "SignatureDoesNotMatch",
    );
    // Fewer bytes than the signed length fail the signature.
    let (status, _) = refused(
        put(
            signed.url.clone(),
            signed.headers.clone(),
            data[..1000].to_vec(),
        )
        .await,
    );
    assert!((400..500).contains(&status), "{status}");
    assert!(stack.object(&target).await.is_none(), "nothing was stored");
    // Other bytes of the signed length fail the checksum. (s3s-fs keeps the bytes it refuses
    // with BadDigest, where S3 stores nothing: the object is not looked at after this one.)
    let mut corrupted = data.clone();
    corrupted[1000] ^= 0xff;
    assert_refused(
        put(signed.url.clone(), signed.headers.clone(), corrupted).await,
        400,
        "BadDigest",
    );

    // The untouched request goes through.
    put(signed.url.clone(), signed.headers.clone(), data.clone())
        .await
        .unwrap();
    assert_eq!(stack.object(&target).await.as_deref(), Some(&data[..]));
    let head = stack
        .bucket_client
        .head_object()
        .bucket(&stack.bucket)
        .key(&target)
        .send()
        .await
        .unwrap();
    assert_eq!(head.cache_control(), Some("no-cache"));
    assert_eq!(head.content_disposition(), Some("inline"));

    // An expired URL is refused.
    let late = key("late.jpg");
    let short = sign(&alice, &late, &data, UploadMethod::Put, Some(1)).await;
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let (status, message) = refused(put(short.url, short.headers, data.clone()).await);
    assert_eq!(status, 403, "{message}");
    assert!(stack.object(&late).await.is_none());
}

#[tokio::test]
async fn signed_post_policies_are_checked_by_the_strict_s3() {
    let stack = Stack::start_with(Signer::Strict, &[]).await;
    let alice = stack.client(ALICE);
    let http = alice.http().clone();
    let data = bytes(200_000, 2);
    let target = key("form.jpg");
    let signed = sign(&alice, &target, &data, UploadMethod::Post, None).await;
    assert!(
        signed.url.ends_with(&stack.bucket) || signed.url.contains(&format!("/{}", stack.bucket))
    );
    let with = |name: &str, value: &str| {
        signed
            .fields
            .iter()
            .map(|(n, v)| {
                if n == name {
                    (n.clone(), value.to_owned())
                } else {
                    (n.clone(), v.clone())
                }
            })
            .collect::<Vec<_>>()
    };
    let post = |fields: Vec<(String, String)>, body: Vec<u8>| {
        let http = http.clone();
        let url = signed.url.clone();
        async move { send_form(&http, &url, &fields, "form.jpg", &body).await }
    };

    // A field the policy pins, changed.
    let elsewhere = key("elsewhere.jpg");
    let (status, _) = refused(post(with("key", &elsewhere), data.clone()).await);
    assert!((400..500).contains(&status), "{status}");
    let (status, _) = refused(post(with("Content-Type", "text/html"), data.clone()).await);
    assert!((400..500).contains(&status), "{status}");
    // The policy itself, widened: its signature no longer matches.
    let policy = &signed.fields.iter().find(|(n, _)| n == "policy").unwrap().1;
    let document = String::from_utf8(aws_smithy_types::base64::decode(policy).unwrap()).unwrap();
    let widened = document.replace(
        &format!("[\"content-length-range\",{0},{0}]", data.len()),
        "[\"content-length-range\",0,1000000000]",
    );
    assert_ne!(widened, document);
    assert_refused(
        post(
            with("policy", &aws_smithy_types::base64::encode(&widened)),
            data.clone(),
        )
        .await,
        403,
        "SignatureDoesNotMatch",
    );
    // More bytes than the policy's length range.
    let mut longer = data.clone();
    longer.extend_from_slice(b"more");
    let (status, _) = refused(post(signed.fields.clone(), longer).await);
    assert!((400..500).contains(&status), "{status}");
    assert!(stack.object(&target).await.is_none());
    assert!(stack.object(&elsewhere).await.is_none());
    // Bytes that are not the declared ones (s3s-fs keeps what it refuses with BadDigest, where
    // S3 stores nothing).
    let mut corrupted = data.clone();
    corrupted[7] ^= 0xff;
    assert_refused(
        post(signed.fields.clone(), corrupted).await,
        400,
        "BadDigest",
    );

    post(signed.fields.clone(), data.clone()).await.unwrap();
    assert_eq!(stack.object(&target).await.as_deref(), Some(&data[..]));
}

#[tokio::test]
async fn signed_requests_end_before_their_credentials_expire() {
    let stack = Stack::start_with(Signer::Strict, &[]).await;
    let expiring = |access_key: &str, in_s: u64| {
        SharedCredentialsProvider::new(Credentials::new(
            access_key,
            common::var("STRICT_S3_SECRET_KEY"),
            None,
            Some(SystemTime::now() + Duration::from_secs(in_s)),
            "expiring",
        ))
    };
    // Credentials that expire in 5 minutes give an hour's request 4 (a minute's margin).
    let near = stack
        .api_signing_with(expiring(&common::var("STRICT_S3_ACCESS_KEY"), 300), &[])
        .await;
    let alice = ApiClient::new(&near, Some(stack.tokens[ALICE].clone()));
    let http = alice.http().clone();
    let lifetime = |expires_at: &str| {
        let at =
            time::OffsetDateTime::parse(expires_at, &time::format_description::well_known::Rfc3339)
                .unwrap();
        (at - time::OffsetDateTime::now_utc()).whole_seconds()
    };
    let url_expires = |url: &str| -> u64 {
        let (_, rest) = url.split_once("X-Amz-Expires=").expect("X-Amz-Expires");
        rest.split('&').next().unwrap().parse().unwrap()
    };
    let data = bytes(3_000, 4);
    for method in [UploadMethod::Put, UploadMethod::Post] {
        let target = key("near-expiry.jpg");
        let signed = sign(&alice, &target, &data, method, Some(3600)).await;
        let left = lifetime(&signed.expires_at);
        assert!((230..=240).contains(&left), "{method:?}: {left} s");
        if method == UploadMethod::Put {
            assert!(
                (230..=240).contains(&url_expires(&signed.url)),
                "{}",
                signed.url
            );
            send_signed(&http, "PUT", &signed.url, &signed.headers, data.clone())
                .await
                .unwrap();
        } else {
            let policy = &signed.fields.iter().find(|(n, _)| n == "policy").unwrap().1;
            let document: serde_json::Value =
                serde_json::from_slice(&aws_smithy_types::base64::decode(policy).unwrap()).unwrap();
            assert_eq!(
                document["expiration"].as_str().unwrap(),
                signed.expires_at.as_str()
            );
            send_form(&http, &signed.url, &signed.fields, "near.jpg", &data)
                .await
                .unwrap();
        }
        assert_eq!(stack.object(&target).await.as_deref(), Some(&data[..]));
    }
    // Part URLs too.
    let crc = Checksum::Crc32c(crc32c::crc32c(&data)).to_base64();
    let upload = alice
        .create_multipart(&CreateMultipartRequest {
            key: key("near-expiry.mp4"),
            size: data.len() as u64,
            content_type: "video/mp4".into(),
            checksum: ChecksumSpec {
                algorithm: ChecksumAlgorithm::Crc32c,
                value: crc.clone(),
            },
            part_size: Some(5 * MIB as u64),
        })
        .await
        .unwrap();
    let parts = alice
        .sign_parts(
            &upload.upload_id,
            &SignPartsRequest {
                parts: vec![PartToSign {
                    number: 1,
                    checksum: crc,
                }],
                expires_in: Some(3600),
            },
        )
        .await
        .unwrap();
    assert!((230..=240).contains(&url_expires(&parts.parts[0].url)));
    assert!((230..=240).contains(&lifetime(&parts.expires_at)));
    alice.abort(&upload.upload_id).await.unwrap();

    // The request is signed with the credentials whose expiry was read, not another copy.
    let other = stack
        .api_signing_with(expiring("ASIANEAREXPIRY", 3 * 3600), &[])
        .await;
    let other = ApiClient::new(&other, Some(stack.tokens[ALICE].clone()));
    let signed = sign(&other, &key("x.jpg"), &data, UploadMethod::Put, Some(3600)).await;
    assert!(
        signed.url.contains("X-Amz-Credential=ASIANEAREXPIRY"),
        "{}",
        signed.url
    );
    assert_eq!(url_expires(&signed.url), 3600, "{}", signed.url);

    // Credentials within the margin of their expiry sign nothing: retry (once refreshed).
    let gone = stack
        .api_signing_with(expiring(&common::var("STRICT_S3_ACCESS_KEY"), 30), &[])
        .await;
    let gone = ApiClient::new(&gone, Some(stack.tokens[ALICE].clone()));
    for method in [UploadMethod::Put, UploadMethod::Post] {
        let result = gone
            .single_upload(&SingleUploadRequest {
                key: key("gone.jpg"),
                size: data.len() as u64,
                content_type: "image/jpeg".into(),
                checksum: sha256(&data),
                method,
                expires_in: None,
            })
            .await;
        match result {
            Err(Error::Refused { status, reason, .. }) => {
                assert_eq!((status, reason.as_str()), (503, "credentials"))
            }
            other => panic!("{other:?}"),
        }
    }
}

#[tokio::test]
async fn part_urls_are_checked_by_the_strict_s3() {
    let stack = Stack::start_with(Signer::Strict, &[]).await;
    let alice = stack.client(ALICE);
    let http = alice.http().clone();
    let data = bytes(5 * MIB + 4321, 3);
    let target = key("parts.mp4");
    let crc = |d: &[u8]| Checksum::Crc32c(crc32c::crc32c(d)).to_base64();
    let upload = alice
        .create_multipart(&CreateMultipartRequest {
            key: target.clone(),
            size: data.len() as u64,
            content_type: "video/mp4".into(),
            checksum: ChecksumSpec {
                algorithm: ChecksumAlgorithm::Crc32c,
                value: crc(&data),
            },
            part_size: Some(5 * MIB as u64),
        })
        .await
        .unwrap();
    let chunks: Vec<&[u8]> = data.chunks(5 * MIB).collect();
    let signed = alice
        .sign_parts(
            &upload.upload_id,
            &SignPartsRequest {
                parts: chunks
                    .iter()
                    .enumerate()
                    .map(|(i, c)| PartToSign {
                        number: i as u32 + 1,
                        checksum: crc(c),
                    })
                    .collect(),
                expires_in: None,
            },
        )
        .await
        .unwrap();
    // The short last part's URL (a refusal of a 5 MiB body comes before the body is read, and
    // the client sees a closed connection instead of the answer).
    let last = &signed.parts[1];
    // Used as part 1: its part number is signed.
    assert_refused(
        send_signed(
            &http,
            "PUT",
            &last.url.replace("partNumber=2", "partNumber=1"),
            &last.headers,
            chunks[1].to_vec(),
        )
        .await,
        403,
        "SignatureDoesNotMatch",
    );
    // Its checksum header is signed too.
    let mut other_sum = last.headers.clone();
    other_sum.insert("x-amz-checksum-crc32c".into(), crc(b"other"));
    assert_refused(
        send_signed(&http, "PUT", &last.url, &other_sum, chunks[1].to_vec()).await,
        403,
        "SignatureDoesNotMatch",
    );
    let listed = alice.list_parts(&upload.upload_id).await.unwrap();
    assert!(listed.parts.is_empty(), "{listed:?}");
    let mut parts = Vec::new();
    for (part, chunk) in signed.parts.iter().zip(&chunks) {
        let etag = send_signed(&http, "PUT", &part.url, &part.headers, chunk.to_vec())
            .await
            .unwrap();
        parts.push(CompletedPartRef {
            number: part.number,
            etag,
        });
    }
    let listed = alice.list_parts(&upload.upload_id).await.unwrap();
    assert!(listed.missing.is_empty(), "{listed:?}");
    let completed = alice
        .complete(&upload.upload_id, &CompleteRequest { parts })
        .await
        .unwrap();
    assert_eq!(completed.size, data.len() as u64);
    assert_eq!(stack.object(&target).await.as_deref(), Some(&data[..]));
}
