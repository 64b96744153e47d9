//! Every refusal of the "bad input" list, over HTTP as a client meets it: a 4xx status,
//! a machine-readable reason, the request id; and nothing half-uploaded becomes visible.

mod common;

use std::time::Duration;

use common::{bytes, Stack, ALICE, BOB, MIB};
use serde_json::{json, Value};
use upload_api::api::{
    ChecksumSpec, CompleteRequest, CompletedPartRef, CreateMultipartRequest, ErrorBody,
    MultipartUpload, PartToSign, SignPartsRequest,
};
use upload_api::checksum::{combine_crc32c, Checksum, ChecksumAlgorithm};
use upload_api::client::{send_signed, ApiClient};

/// A raw answer: status, request id header, retry-after header, body.
struct Answer {
    status: u16,
    request_id: Option<String>,
    retry_after: Option<String>,
    body: Value,
}

impl Answer {
    fn refusal(&self) -> ErrorBody {
        serde_json::from_value(self.body.clone())
            .unwrap_or_else(|e| panic!("not a refusal body ({e}): {}", self.body))
    }

    /// Checks the status and reason, and that the request id is in the header and the body.
    fn refused(&self, status: u16, reason: &str) -> ErrorBody {
        let body = self.refusal();
        assert_eq!(
            (self.status, body.reason.as_str()),
            (status, reason),
            "{}",
            self.body
        );
        let id = self.request_id.as_deref().expect("an x-request-id header");
        assert_eq!(body.request_id, id);
        body
    }
}

async fn call(
    base_url: &str,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> Answer {
    let http = reqwest::Client::new();
    let mut request = http.request(
        reqwest::Method::from_bytes(method.as_bytes()).unwrap(),
        format!("{base_url}{path}"),
    );
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    if let Some(body) = body {
        request = request
            .header("content-type", "application/json")
            .body(body.to_string());
    }
    let response = request.send().await.expect("the API answers");
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let (request_id, retry_after) = (header("x-request-id"), header("retry-after"));
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    Answer {
        status,
        request_id,
        retry_after,
        body: if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        },
    }
}

fn crc(data: &[u8]) -> String {
    Checksum::Crc32c(crc32c::crc32c(data)).to_base64()
}

fn single(key: &str, size: u64, content_type: &str) -> Value {
    json!({
        "key": key,
        "size": size,
        "content_type": content_type,
        "checksum": {"algorithm": "sha256", "value": "LPJNul+wow4m6DsqxbninhsWHlwfp0JecwQzYpOLmCQ="},
    })
}

#[tokio::test]
async fn callers_must_be_known() {
    let stack = Stack::start(&[]).await;
    call(&stack.base_url, "GET", "/me", None, None)
        .await
        .refused(401, "unauthenticated");
    call(&stack.base_url, "GET", "/me", Some("not-a-token"), None)
        .await
        .refused(401, "invalid_token");
    let answer = call(
        &stack.base_url,
        "GET",
        "/me",
        Some(&stack.tokens[ALICE]),
        None,
    )
    .await;
    assert_eq!(answer.status, 200);
    assert!(answer.request_id.is_some());
    call(
        &stack.base_url,
        "GET",
        "/nowhere",
        Some(&stack.tokens[ALICE]),
        None,
    )
    .await
    .refused(404, "no_route");
}

#[tokio::test]
async fn keys_outside_the_callers_prefix_are_refused() {
    let stack = Stack::start(&[]).await;
    let token = Some(stack.tokens[ALICE].as_str());
    let cases = [
        ("uploads/bob/a.jpg", 403, "key_outside_prefix"),
        ("thumbnails/a.jpg", 403, "key_outside_prefix"),
        ("uploads/alice/../bob/a.jpg", 400, "invalid_key"),
        ("uploads/alice/./a.jpg", 400, "invalid_key"),
        ("uploads/alice/a\u{7}.jpg", 400, "invalid_key"),
        ("/uploads/alice/a.jpg", 400, "invalid_key"),
        ("uploads/alice/dir/", 400, "invalid_key"),
        ("uploads/alice//a.jpg", 400, "invalid_key"),
    ];
    for (key, status, reason) in cases {
        for path in ["/uploads", "/multipart"] {
            let mut body = single(key, 10, "image/jpeg");
            if path == "/multipart" {
                body["checksum"] = json!({"algorithm": "crc32c", "value": crc(b"x")});
            }
            let refusal = call(&stack.base_url, "POST", path, token, Some(body))
                .await
                .refused(status, reason);
            if reason == "key_outside_prefix" {
                assert_eq!(refusal.details.unwrap()["prefix"], "uploads/alice/");
            }
        }
    }
    // Reading is held to the prefix too.
    call(
        &stack.base_url,
        "GET",
        "/files/uploads/bob/a.jpg",
        token,
        None,
    )
    .await
    .refused(403, "key_outside_prefix");
    call(
        &stack.base_url,
        "GET",
        "/files?prefix=uploads/bob/",
        token,
        None,
    )
    .await
    .refused(403, "key_outside_prefix");
    call(
        &stack.base_url,
        "GET",
        "/files/uploads/alice/none.jpg",
        token,
        None,
    )
    .await
    .refused(404, "file_not_found");
}

#[tokio::test]
async fn sizes_types_checksums_and_expiries_are_checked() {
    let stack = Stack::start(&[]).await;
    let token = Some(stack.tokens[ALICE].as_str());
    let key = "uploads/alice/a.jpg";
    let post = |body: Value, path: &'static str| {
        let base = stack.base_url.clone();
        async move { call(&base, "POST", path, token, Some(body)).await }
    };
    // The test configuration allows 64 MiB.
    post(single(key, 64 * MIB as u64 + 1, "image/jpeg"), "/uploads")
        .await
        .refused(413, "size_not_allowed");
    post(single(key, 10, "text/html"), "/uploads")
        .await
        .refused(415, "type_not_allowed");
    post(single(key, 10, "image/jpeg; charset=binary"), "/uploads")
        .await
        .refused(415, "type_not_allowed");
    let mut bad_checksum = single(key, 10, "image/jpeg");
    bad_checksum["checksum"]["value"] = json!("AAAA");
    post(bad_checksum, "/uploads")
        .await
        .refused(400, "invalid_checksum");
    let mut no_checksum = single(key, 10, "image/jpeg");
    no_checksum.as_object_mut().unwrap().remove("checksum");
    post(no_checksum, "/uploads")
        .await
        .refused(400, "invalid_request");
    let mut long = single(key, 10, "image/jpeg");
    long["expires_in"] = json!(7200);
    post(long, "/uploads")
        .await
        .refused(400, "expiry_not_allowed");
    let mut typo = single(key, 10, "image/jpeg");
    typo["sise"] = json!(10);
    post(typo, "/uploads").await.refused(400, "invalid_request");

    let multipart = |size: u64, algorithm: &str, part_size: Option<u64>| {
        let mut body = json!({
            "key": key,
            "size": size,
            "content_type": "image/jpeg",
            "checksum": {"algorithm": algorithm, "value": if algorithm == "crc32c" { crc(b"x") } else { "LPJNul+wow4m6DsqxbninhsWHlwfp0JecwQzYpOLmCQ=".to_owned() }},
        });
        if let Some(part_size) = part_size {
            body["part_size"] = json!(part_size);
        }
        body
    };
    post(multipart(64 * MIB as u64 + 1, "crc32c", None), "/multipart")
        .await
        .refused(413, "size_not_allowed");
    post(multipart(0, "crc32c", None), "/multipart")
        .await
        .refused(413, "size_not_allowed");
    post(multipart(10 * MIB as u64, "sha256", None), "/multipart")
        .await
        .refused(400, "invalid_checksum");
    post(
        multipart(10 * MIB as u64, "crc32c", Some(MIB as u64)),
        "/multipart",
    )
    .await
    .refused(400, "part_size_not_allowed");
    // Nothing was signed, nothing is in the bucket.
    assert!(stack.keys_under("uploads/").await.is_empty());
}

/// Starts a 3-part upload (5, 5 and 1 MiB + 3) of `data`; returns its session.
async fn start(
    client: &ApiClient,
    key: &str,
    data: &[u8],
    declared: Option<&str>,
) -> MultipartUpload {
    let whole = crc(data);
    client
        .create_multipart(&CreateMultipartRequest {
            key: key.to_owned(),
            size: data.len() as u64,
            content_type: "video/mp4".into(),
            checksum: ChecksumSpec {
                algorithm: ChecksumAlgorithm::Crc32c,
                value: declared.map_or(whole, str::to_owned),
            },
            part_size: Some(5 * MIB as u64),
        })
        .await
        .unwrap()
}

/// Signs and sends parts `numbers`; returns their ETags.
async fn send_parts(
    client: &ApiClient,
    upload: &MultipartUpload,
    data: &[u8],
    numbers: &[u32],
) -> Vec<CompletedPartRef> {
    let chunk = |n: u32| {
        let start = (n as usize - 1) * upload.part_size as usize;
        &data[start..(start + upload.part_size as usize).min(data.len())]
    };
    let signed = client
        .sign_parts(
            &upload.upload_id,
            &SignPartsRequest {
                parts: numbers
                    .iter()
                    .map(|n| PartToSign {
                        number: *n,
                        checksum: crc(chunk(*n)),
                    })
                    .collect(),
                expires_in: None,
            },
        )
        .await
        .unwrap();
    let mut refs = Vec::new();
    for part in signed.parts {
        let etag = send_signed(
            client.http(),
            "PUT",
            &part.url,
            &part.headers,
            chunk(part.number).to_vec(),
        )
        .await
        .unwrap();
        refs.push(CompletedPartRef {
            number: part.number,
            etag,
        });
    }
    refs
}

fn complete_body(parts: &[CompletedPartRef]) -> Value {
    serde_json::to_value(CompleteRequest {
        parts: parts.to_vec(),
    })
    .unwrap()
}

#[tokio::test]
async fn part_numbers_and_part_lists_are_checked() {
    let stack = Stack::start(&[]).await;
    let alice = stack.client(ALICE);
    let token = Some(stack.tokens[ALICE].as_str());
    let data = bytes(11 * MIB + 3, 5);
    let key = "uploads/alice/parts.mp4";
    let upload = start(&alice, key, &data, None).await;
    assert_eq!(upload.part_count, 3);
    let parts_path = format!("/multipart/{}/parts", upload.upload_id);
    let complete_path = format!("/multipart/{}/complete", upload.upload_id);

    for numbers in [vec![0], vec![4], vec![1, 10_001]] {
        let body = json!({"parts": numbers.iter().map(|n| json!({"number": n, "checksum": crc(b"x")})).collect::<Vec<_>>()});
        let refusal = call(&stack.base_url, "POST", &parts_path, token, Some(body))
            .await
            .refused(400, "part_number_out_of_range");
        assert_eq!(refusal.details.unwrap()["part_count"], 3);
    }
    let bad_part_checksum = json!({"parts": [{"number": 1, "checksum": "nope"}]});
    call(
        &stack.base_url,
        "POST",
        &parts_path,
        token,
        Some(bad_part_checksum),
    )
    .await
    .refused(400, "invalid_checksum");

    let mut parts = send_parts(&alice, &upload, &data, &[1, 2]).await;
    // Part 3 was never uploaded.
    let mut claimed = parts.clone();
    claimed.push(CompletedPartRef {
        number: 3,
        etag: "\"whatever\"".into(),
    });
    let refusal = call(
        &stack.base_url,
        "POST",
        &complete_path,
        token,
        Some(complete_body(&claimed)),
    )
    .await
    .refused(400, "parts_missing");
    assert_eq!(refusal.details.unwrap()["parts"], json!([3]));
    parts.extend(send_parts(&alice, &upload, &data, &[3]).await);
    // The client's list leaves a part out.
    let refusal = call(
        &stack.base_url,
        "POST",
        &complete_path,
        token,
        Some(complete_body(&parts[..2])),
    )
    .await
    .refused(400, "parts_missing");
    assert_eq!(refusal.details.unwrap()["parts"], json!([3]));
    // An ETag that is not the uploaded part's.
    let mut wrong = parts.clone();
    wrong[1].etag = "0123456789abcdef0123456789abcdef".into();
    let refusal = call(
        &stack.base_url,
        "POST",
        &complete_path,
        token,
        Some(complete_body(&wrong)),
    )
    .await
    .refused(400, "part_mismatch");
    assert_eq!(refusal.details.unwrap()["part"], 2);
    // Out of order.
    let mut unordered = parts.clone();
    unordered.swap(0, 1);
    call(
        &stack.base_url,
        "POST",
        &complete_path,
        token,
        Some(complete_body(&unordered)),
    )
    .await
    .refused(400, "invalid_request");
    assert!(stack.object(key).await.is_none(), "nothing is visible");

    // A part S3 holds at another size than planned (moto does not check the signed length; S3
    // would refuse the upload itself).
    let resent = alice
        .sign_parts(
            &upload.upload_id,
            &SignPartsRequest {
                parts: vec![PartToSign {
                    number: 2,
                    checksum: crc(&data[..MIB]),
                }],
                expires_in: None,
            },
        )
        .await
        .unwrap();
    let short_etag = send_signed(
        alice.http(),
        "PUT",
        &resent.parts[0].url,
        &resent.parts[0].headers,
        data[..MIB].to_vec(),
    )
    .await
    .unwrap();
    let mut short = parts.clone();
    short[1].etag = short_etag;
    let refusal = call(
        &stack.base_url,
        "POST",
        &complete_path,
        token,
        Some(complete_body(&short)),
    )
    .await
    .refused(400, "part_mismatch");
    assert!(refusal.message.contains("plan says"), "{}", refusal.message);
    assert!(stack.object(key).await.is_none(), "nothing is visible");

    // Put part 2 right, and the same upload completes.
    let fixed = send_parts(&alice, &upload, &data, &[2]).await;
    parts[1] = fixed[0].clone();
    let answer = call(
        &stack.base_url,
        "POST",
        &complete_path,
        token,
        Some(complete_body(&parts)),
    )
    .await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(stack.object(key).await.as_deref(), Some(&data[..]));
}

#[tokio::test]
async fn huge_part_lists_are_refused_and_refusals_stay_small() {
    let stack = Stack::start(&[]).await;
    let token = Some(stack.tokens[ALICE].as_str());
    let part = |n: u32| json!({"number": n, "etag": "\"0123456789abcdef0123456789abcdef\""});
    // More parts than S3 allows: refused before the upload is even looked up.
    let too_many = json!({"parts": (1..=10_001).map(part).collect::<Vec<_>>()});
    let refusal = call(
        &stack.base_url,
        "POST",
        "/multipart/no-such-upload/complete",
        token,
        Some(too_many),
    )
    .await
    .refused(400, "invalid_request");
    assert!(
        refusal.message.contains("at most 10000 parts"),
        "{}",
        refusal.message
    );

    // 10,000 part numbers out of a 3-part upload's range, and 10,000 parts missing from a
    // 10,000-part upload: a few named, and a count.
    let alice = stack.client(ALICE);
    let data = bytes(11 * MIB + 3, 6);
    let small = start(&alice, "uploads/alice/many-bad.mp4", &data, None).await;
    let out_of_range = json!({"parts": (4..10_004).map(part).collect::<Vec<_>>()});
    let large_api = stack
        .another_api(&[("MAX_UPLOAD_BYTES", &(10_000 * 5 * MIB).to_string())])
        .await;
    let large: MultipartUpload = serde_json::from_value(
        call(
            &large_api,
            "POST",
            "/multipart",
            token,
            Some(json!({
                "key": "uploads/alice/many-missing.mp4",
                "size": 10_000 * 5 * MIB,
                "part_size": 5 * MIB,
                "content_type": "video/mp4",
                "checksum": {"algorithm": "crc32c", "value": crc(b"")},
            })),
        )
        .await
        .body,
    )
    .unwrap();
    assert_eq!(large.part_count, 10_000);
    for (base_url, upload_id, body, reason) in [
        (
            &stack.base_url,
            &small.upload_id,
            out_of_range,
            "part_number_out_of_range",
        ),
        (
            &large_api,
            &large.upload_id,
            json!({"parts": []}),
            "parts_missing",
        ),
    ] {
        let path = format!("/multipart/{upload_id}/complete");
        let answer = call(base_url, "POST", &path, token, Some(body)).await;
        let refusal = answer.refused(400, reason);
        assert!(
            refusal.message.contains("and 9,997 more are"),
            "{}",
            refusal.message
        );
        let details = refusal.details.unwrap();
        assert_eq!(details["count"], 10_000);
        assert_eq!(details["parts"].as_array().unwrap().len(), 10);
        // The whole answer (and the log line, whose error is the message) stays small.
        assert!(answer.body.to_string().len() < 512, "{}", answer.body);
    }
}

#[tokio::test]
async fn s3s_own_words_stay_out_of_answers() {
    use upload_api::plan::CompletePart;
    use upload_api::store::{ObjectStore, S3Uploads};

    let stack = Stack::start(&[]).await;
    let key = shared::ObjectKey::new("uploads/alice/refused-by-s3.mp4").unwrap();
    let objects = S3Uploads::new(
        stack.bucket_client.clone(),
        &stack.bucket,
        stack.sdk.credentials_provider().unwrap(),
        "us-east-1",
    );
    let upload_id = objects.create_multipart(&key, "video/mp4").await.unwrap();
    // A part S3 never received: CompleteMultipartUpload is refused with S3's InvalidPart.
    let ghost = CompletePart {
        number: 1,
        etag: "\"0123456789abcdef0123456789abcdef\"".into(),
        crc32c: 0,
    };
    let s3_says = stack
        .bucket_client
        .complete_multipart_upload()
        .bucket(&stack.bucket)
        .key(key.as_str())
        .upload_id(&upload_id)
        .multipart_upload(
            aws_sdk_s3::types::CompletedMultipartUpload::builder()
                .parts(
                    aws_sdk_s3::types::CompletedPart::builder()
                        .part_number(1)
                        .e_tag(&ghost.etag)
                        .build(),
                )
                .build(),
        )
        .send()
        .await
        .expect_err("S3 refuses a part it does not hold");
    let s3_message = aws_sdk_s3::error::ProvideErrorMetadata::message(&s3_says)
        .expect("S3 says why")
        .to_owned();
    let err = objects
        .complete(&key, &upload_id, &[ghost], 0)
        .await
        .expect_err("refused");
    let response = upload_api::function_url::respond(Err(err), "req-s3");
    assert_eq!(response.status_code, 400);
    let body = response.body.unwrap();
    assert!(
        !body.contains(&s3_message),
        "{body} repeats S3's {s3_message:?}"
    );
    assert!(!body.contains("InvalidPart"), "{body}");
    let refusal: ErrorBody = serde_json::from_str(&body).unwrap();
    assert_eq!(refusal.reason, "invalid_request");
    assert!(
        refusal.message.contains("not one S3 holds"),
        "{}",
        refusal.message
    );
    objects.abort(&key, &upload_id).await.unwrap();
}

#[tokio::test]
async fn a_whole_object_checksum_mismatch_is_refused_and_nothing_shows() {
    let stack = Stack::start(&[]).await;
    let alice = stack.client(ALICE);
    let token = Some(stack.tokens[ALICE].as_str());
    let data = bytes(11 * MIB + 3, 6);
    let key = "uploads/alice/liar.mp4";
    // The client declares the checksum of other bytes.
    let declared = crc(&bytes(11 * MIB + 3, 7));
    let upload = start(&alice, key, &data, Some(&declared)).await;
    let parts = send_parts(&alice, &upload, &data, &[1, 2, 3]).await;
    let refusal = call(
        &stack.base_url,
        "POST",
        &format!("/multipart/{}/complete", upload.upload_id),
        token,
        Some(complete_body(&parts)),
    )
    .await
    .refused(400, "checksum_mismatch");
    let details = refusal.details.unwrap();
    assert_eq!(details["declared"], declared);
    let actual = combine_crc32c(
        data.chunks(5 * MIB)
            .map(|c| (crc32c::crc32c(c), c.len() as u64)),
    );
    assert_eq!(details["actual"], Checksum::Crc32c(actual).to_base64());
    assert!(stack.object(key).await.is_none(), "nothing is visible");
    // The upload is still open; the client gives up on it.
    alice.abort(&upload.upload_id).await.unwrap();
    assert!(stack.object(key).await.is_none());
}

#[tokio::test]
async fn upload_ids_cannot_be_reused_borrowed_or_used_late() {
    let stack = Stack::start(&[]).await;
    let alice = stack.client(ALICE);
    let token = Some(stack.tokens[ALICE].as_str());
    let data = bytes(5 * MIB + 10, 8);
    let key = "uploads/alice/once.mp4";
    let upload = start(&alice, key, &data, None).await;
    let parts = send_parts(&alice, &upload, &data, &[1, 2]).await;
    let complete_path = format!("/multipart/{}/complete", upload.upload_id);
    let parts_path = format!("/multipart/{}/parts", upload.upload_id);

    // Bob cannot see or use Alice's upload.
    let bob = Some(stack.tokens[BOB].as_str());
    call(&stack.base_url, "GET", &parts_path, bob, None)
        .await
        .refused(404, "upload_not_found");
    call(
        &stack.base_url,
        "POST",
        &complete_path,
        bob,
        Some(complete_body(&parts)),
    )
    .await
    .refused(404, "upload_not_found");
    call(
        &stack.base_url,
        "DELETE",
        &format!("/multipart/{}", upload.upload_id),
        bob,
        None,
    )
    .await
    .refused(404, "upload_not_found");
    call(
        &stack.base_url,
        "GET",
        "/multipart/no-such-upload/parts",
        token,
        None,
    )
    .await
    .refused(404, "upload_not_found");

    let answer = call(
        &stack.base_url,
        "POST",
        &complete_path,
        token,
        Some(complete_body(&parts)),
    )
    .await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    // Completed: a second complete, more parts or an abort are refused.
    let refusal = call(
        &stack.base_url,
        "POST",
        &complete_path,
        token,
        Some(complete_body(&parts)),
    )
    .await
    .refused(409, "upload_finished");
    assert_eq!(refusal.details.unwrap()["state"], "completed");
    let sign = json!({"parts": [{"number": 1, "checksum": crc(b"x")}]});
    call(
        &stack.base_url,
        "POST",
        &parts_path,
        token,
        Some(sign.clone()),
    )
    .await
    .refused(409, "upload_finished");
    call(
        &stack.base_url,
        "DELETE",
        &format!("/multipart/{}", upload.upload_id),
        token,
        None,
    )
    .await
    .refused(409, "upload_finished");

    // Aborted: nothing more.
    let aborted = start(&alice, "uploads/alice/dropped.mp4", &data, None).await;
    let answer = call(
        &stack.base_url,
        "DELETE",
        &format!("/multipart/{}", aborted.upload_id),
        token,
        None,
    )
    .await;
    assert_eq!(answer.status, 204);
    call(
        &stack.base_url,
        "POST",
        &format!("/multipart/{}/parts", aborted.upload_id),
        token,
        Some(sign.clone()),
    )
    .await
    .refused(409, "upload_finished");

    // Expired: an API whose uploads live one second.
    let short_lived = stack.another_api(&[("UPLOAD_TTL", "1s")]).await;
    let late = start(
        &ApiClient::new(&short_lived, Some(stack.tokens[ALICE].clone())),
        "uploads/alice/late.mp4",
        &data,
        None,
    )
    .await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    for (method, path, body) in [
        (
            "POST",
            format!("/multipart/{}/parts", late.upload_id),
            Some(sign.clone()),
        ),
        ("GET", format!("/multipart/{}/parts", late.upload_id), None),
        (
            "POST",
            format!("/multipart/{}/complete", late.upload_id),
            Some(complete_body(&[])),
        ),
    ] {
        call(&short_lived, method, &path, token, body)
            .await
            .refused(410, "upload_expired");
    }
}

#[tokio::test]
async fn callers_are_rate_limited_with_retry_after() {
    let stack = Stack::start(&[]).await;
    let limited = stack
        .another_api(&[("RATE_LIMIT_BURST", "3"), ("RATE_LIMIT_PER_SECOND", "0.2")])
        .await;
    let alice = Some(stack.tokens[ALICE].as_str());
    for _ in 0..3 {
        assert_eq!(call(&limited, "GET", "/me", alice, None).await.status, 200);
    }
    let answer = call(&limited, "GET", "/me", alice, None).await;
    answer.refused(429, "rate_limited");
    let wait: u64 = answer.retry_after.expect("Retry-After").parse().unwrap();
    assert!((1..=5).contains(&wait), "{wait}");
    // Another caller has a bucket of its own.
    let bob = Some(stack.tokens[BOB].as_str());
    assert_eq!(call(&limited, "GET", "/me", bob, None).await.status, 200);
}

#[tokio::test]
async fn feed_cursors_and_bodies_are_checked() {
    let stack = Stack::start(&[]).await;
    let token = Some(stack.tokens[ALICE].as_str());
    for query in ["since=yesterday", "since=0000000001000-ZZZZZZZZZZZZZZZZ"] {
        call(
            &stack.base_url,
            "GET",
            &format!("/files?{query}"),
            token,
            None,
        )
        .await
        .refused(400, "invalid_cursor");
    }
    // Cursors past the feed's horizon (the last 2 s are not in the feed yet; a minute ahead, as
    // from a clock that runs ahead; the end of time) have nothing after them yet: an empty page
    // that hands the cursor back to read on from.
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    for at_ms in [now_ms - 500, now_ms + 60_000, 9_999_999_999_999] {
        let cursor = format!("{at_ms:013}-0123456789abcdef");
        let answer = call(
            &stack.base_url,
            "GET",
            &format!("/files?since={cursor}"),
            token,
            None,
        )
        .await;
        assert_eq!(answer.status, 200, "{}", answer.body);
        assert_eq!(
            answer.body,
            json!({"changes": [], "cursor": cursor, "more": false})
        );
    }
    for query in ["limit=0", "limit=lots", "limit=1001"] {
        call(
            &stack.base_url,
            "GET",
            &format!("/files?{query}"),
            token,
            None,
        )
        .await
        .refused(400, "invalid_request");
    }
    call(
        &stack.base_url,
        "GET",
        "/files/uploads/alice/a.jpg?versions=maybe",
        token,
        None,
    )
    .await
    .refused(400, "invalid_request");
    let http = reqwest::Client::new();
    let response = http
        .post(format!("{}/uploads", stack.base_url))
        .bearer_auth(&stack.tokens[ALICE])
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 400);
    call(&stack.base_url, "POST", "/uploads", token, None)
        .await
        .refused(400, "invalid_request");
}
