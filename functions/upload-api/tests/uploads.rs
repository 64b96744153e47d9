//! Uploads end to end on the local stack: a client signs through the API (over HTTP, as through
//! the function URL) and sends the bytes to S3 with a plain HTTP client; S3's own events feed the
//! metadata writer and the image processor; the API then serves the versions and the change feed,
//! and the change topic carries a message per version.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{bytes, jpeg, role_session, temp_dir, Stack, ALICE, BOB, MIB};
use sha2::{Digest, Sha256};
use upload_api::api::{ChecksumSpec, CreateMultipartRequest, SingleUploadRequest, UploadMethod};
use upload_api::auth::IamPrincipal;
use upload_api::checksum::{Checksum, ChecksumAlgorithm};
use upload_api::client::{upload_resumable, upload_single, Progress, UploadOptions};
use upload_api::metadata::Outcome;

fn sha256_b64(data: &[u8]) -> String {
    let digest: [u8; 32] = Sha256::digest(data).into();
    Checksum::Sha256(digest).to_base64()
}

fn crc32c_b64(data: &[u8]) -> String {
    Checksum::Crc32c(crc32c::crc32c(data)).to_base64()
}

fn recorded(outcomes: &[Outcome]) -> Vec<&upload_api::record::FileVersion> {
    outcomes
        .iter()
        .filter_map(|o| match o {
            Outcome::Recorded { version, new: true } => Some(version.as_ref()),
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn a_signed_put_becomes_a_version_a_change_and_thumbnails() {
    let stack = Stack::start(&[]).await;
    let alice = stack.client(ALICE);
    let me = alice.me().await.unwrap();
    assert_eq!(me.caller, ALICE);
    assert_eq!(me.prefix, "uploads/alice/");

    let photo = jpeg(800, 600);
    let dir = temp_dir("put");
    let path = dir.join("cat.jpg");
    std::fs::write(&path, &photo).unwrap();
    let key = "uploads/alice/photos/cat on a mat.jpg";
    let signed = upload_single(&alice, &path, key, "image/jpeg", UploadMethod::Put)
        .await
        .unwrap();
    assert_eq!(signed.method, "PUT");
    // What S3 checks is signed in: the length, the type and the checksum.
    assert_eq!(signed.headers["content-type"], "image/jpeg");
    assert_eq!(signed.headers["x-amz-checksum-sha256"], sha256_b64(&photo));
    let signed_headers = signed
        .url
        .split("X-Amz-SignedHeaders=")
        .nth(1)
        .unwrap()
        .split('&')
        .next()
        .unwrap()
        .to_owned();
    for header in ["content-length", "content-type", "x-amz-checksum-sha256"] {
        assert!(
            signed_headers.contains(header),
            "{header} not in {signed_headers}"
        );
    }
    assert_eq!(stack.object(key).await.as_deref(), Some(&photo[..]));

    let events = stack.events_for(&[key]).await;
    let outcomes = stack.record(&events).await;
    let versions = recorded(&outcomes);
    assert_eq!(versions.len(), 1, "{outcomes:?}");
    let version = versions[0];
    assert_eq!(version.key, key);
    assert_eq!(version.owner, ALICE);
    assert_eq!(version.size, photo.len() as u64);
    assert_eq!(version.content_type, "image/jpeg");
    let checksum = version.checksum.as_ref().expect("S3 reports the checksum");
    assert_eq!(
        (checksum.algorithm.as_str(), checksum.value.as_str()),
        ("sha256", sha256_b64(&photo).as_str())
    );

    // The latest version, as a syncing client asks for it.
    let file = alice.file(key, false).await.unwrap();
    assert_eq!(&file.latest, version);
    // The change feed from the beginning, then from its cursor.
    let changes = alice.changes(None, None, None).await.unwrap();
    assert_eq!(changes.changes, vec![version.clone()]);
    let cursor = changes.cursor.expect("a cursor");
    let later = alice.changes(None, Some(&cursor), None).await.unwrap();
    assert!(later.changes.is_empty() && !later.more, "{later:?}");
    assert_eq!(later.cursor.as_deref(), Some(cursor.as_str()));
    // Bob sees nothing of Alice's.
    let bob = stack.client(BOB);
    assert!(bob
        .changes(None, None, None)
        .await
        .unwrap()
        .changes
        .is_empty());

    // One message on the change topic, with attributes subscribers can filter on.
    let messages = stack.change_messages(1).await;
    assert_eq!(messages[0]["type"], "file.version");
    assert_eq!(messages[0]["key"], key);
    assert_eq!(messages[0]["version"], version.version);
    assert_eq!(messages[0]["_attributes"]["owner"]["Value"], ALICE);

    // The same events delivered again change nothing and announce nothing.
    let again = stack.record(&events).await;
    assert!(recorded(&again).is_empty(), "{again:?}");
    assert_eq!(
        stack.change_messages_within(Duration::from_secs(2)).await,
        0
    );

    // The image processor makes thumbnails of the upload from the same events.
    let processor = stack.image_processor();
    let mut batch = aws_lambda_events::event::sqs::SqsEvent::default();
    batch.records = events;
    let mut context = lambda_runtime::Context::default();
    context.deadline = (std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis()
        + 60_000) as u64;
    let response = image_processor::handle(
        &processor,
        &shared::batch::BatchRunner::new(2, shared::metrics::Metrics::new("UploadApiTest")),
        lambda_runtime::LambdaEvent::new(batch, context),
    )
    .await
    .unwrap();
    assert!(response.batch_item_failures.is_empty());
    let thumbnails = stack.keys_under(&format!("thumbnails/{key}/")).await;
    let expected: Vec<String> = ["1280", "160", "320", "640"]
        .iter()
        .map(|width| format!("thumbnails/{key}/{width}.jpg"))
        .collect();
    assert_eq!(thumbnails, expected);
    // Thumbnails are outside the upload prefix: their events make no versions.
    let thumbnail_events = stack.events_for(&[thumbnails[0].as_str()]).await;
    let outcomes = stack.record(&thumbnail_events).await;
    assert!(recorded(&outcomes).is_empty(), "{outcomes:?}");
}

#[tokio::test]
async fn a_signed_post_form_uploads_and_is_recorded() {
    let stack = Stack::start(&[]).await;
    let alice = stack.client(ALICE);
    let data = bytes(70_000, 3);
    let dir = temp_dir("post");
    let path = dir.join("notes.bin");
    std::fs::write(&path, &data).unwrap();
    let key = "uploads/alice/notes.bin";
    let signed = upload_single(
        &alice,
        &path,
        key,
        "application/octet-stream",
        UploadMethod::Post,
    )
    .await
    .unwrap();
    assert_eq!(signed.method, "POST");
    let names: Vec<&str> = signed.fields.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "key",
            "Content-Type",
            "Cache-Control",
            "Content-Disposition",
            "Content-Encoding",
            "Expires",
            "x-amz-checksum-algorithm",
            "x-amz-checksum-sha256",
            "x-amz-algorithm",
            "x-amz-credential",
            "x-amz-date",
            "policy",
            "x-amz-signature"
        ]
    );
    assert_eq!(stack.object(key).await.as_deref(), Some(&data[..]));
    let outcomes = stack.record(&stack.events_for(&[key]).await).await;
    let versions = recorded(&outcomes);
    assert_eq!(versions.len(), 1);
    assert_eq!(versions[0].size, data.len() as u64);
}

#[tokio::test]
async fn a_multipart_upload_resumes_after_a_crash() {
    let stack = Stack::start(&[]).await;
    let alice = stack.client(ALICE);
    // 4 parts of 5 MiB, the last one short.
    let data = bytes(15 * MIB + 123_457, 7);
    let dir = temp_dir("resume");
    let path = dir.join("video.mp4");
    std::fs::write(&path, &data).unwrap();
    let state = dir.join("video.mp4.upload.json");
    let key = "uploads/alice/videos/holiday.mp4";
    let options = UploadOptions {
        part_size: 5 * MIB as u64,
        concurrency: 1,
    };

    // First run: killed after its second part, like a process that dies mid-upload.
    let parts_done = Arc::new(AtomicUsize::new(0));
    let (first, second) = {
        let alice = alice.clone();
        let path = path.clone();
        let state = state.clone();
        let options = options.clone();
        let parts_done = parts_done.clone();
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let run = tokio::spawn(async move {
            let progress = move |p: Progress| {
                if let Progress::Part { number, .. } = p {
                    parts_done.fetch_add(1, Ordering::SeqCst);
                    let _ = tx.send(number);
                }
            };
            upload_resumable(&alice, &path, key, "video/mp4", &state, &options, &progress).await
        });
        let (Some(first), Some(second)) = (rx.recv().await, rx.recv().await) else {
            panic!("the first run ended early: {:?}", run.await);
        };
        run.abort();
        let _ = run.await;
        (first, second)
    };
    assert_eq!((first, second), (1, 2));
    assert!(state.exists(), "the crashed run left its state");
    assert!(stack.object(key).await.is_none(), "nothing is visible yet");
    let saved: upload_api::client::ResumeState =
        serde_json::from_slice(&std::fs::read(&state).unwrap()).unwrap();
    let listed = alice.list_parts(&saved.upload_id).await.unwrap();
    assert_eq!(listed.upload.part_count, 4);
    assert!(listed.missing.contains(&4), "{:?}", listed.missing);
    assert!(!listed.missing.contains(&1) && !listed.missing.contains(&2));

    // Second run: the same call resumes, sending only what S3 lacks.
    let started = std::sync::Mutex::new(None);
    let uploaded = upload_resumable(&alice, &path, key, "video/mp4", &state, &options, &|p| {
        if let Progress::Started { already, .. } = p {
            *started.lock().unwrap() = Some(already);
        }
    })
    .await
    .unwrap();
    assert!(uploaded.resumed);
    assert_eq!(uploaded.parts_sent, listed.missing);
    assert!(started.lock().unwrap().unwrap() >= 10 * MIB as u64);
    assert_eq!(uploaded.completed.size, data.len() as u64);
    assert_eq!(uploaded.completed.checksum.value, crc32c_b64(&data));
    assert!(!state.exists(), "a finished upload forgets its state");
    assert_eq!(stack.object(key).await.as_deref(), Some(&data[..]));

    // The version record holds S3's full-object CRC32C, which is the client's.
    let outcomes = stack.record(&stack.events_for(&[key]).await).await;
    let versions = recorded(&outcomes);
    assert_eq!(versions.len(), 1, "{outcomes:?}");
    let checksum = versions[0].checksum.clone().expect("a checksum");
    assert_eq!(checksum.algorithm, "crc32c");
    assert_eq!(
        checksum.value,
        crc32c_b64(&data),
        "S3's full-object CRC32C differs (moto computes CRC32 instead unless the Python crc32c \
         package is installed: scripts/tools.sh installs moto[s3crc32c])"
    );
    assert_eq!(checksum.kind.as_deref(), Some("FULL_OBJECT"));
    assert_eq!(versions[0].content_type, "video/mp4");
}

#[tokio::test]
async fn versions_are_kept_and_the_feed_moves_on() {
    let stack = Stack::start(&[]).await;
    let alice = stack.client(ALICE);
    let dir = temp_dir("versions");
    let key = "uploads/alice/doc.bin";
    let mut contents = Vec::new();
    let mut cursor: Option<String> = None;
    for round in 0..3u8 {
        let data = bytes(1000 + usize::from(round), round);
        let path = dir.join(format!("doc-{round}.bin"));
        std::fs::write(&path, &data).unwrap();
        upload_single(
            &alice,
            &path,
            key,
            "application/octet-stream",
            UploadMethod::Put,
        )
        .await
        .unwrap();
        let outcomes = stack.record(&stack.events_for(&[key]).await).await;
        assert_eq!(recorded(&outcomes).len(), 1, "{outcomes:?}");
        contents.push(data);
        // Each read of the feed from the last cursor shows exactly the new version.
        let page = alice.changes(None, cursor.as_deref(), None).await.unwrap();
        assert_eq!(page.changes.len(), 1, "round {round}: {page:?}");
        assert_eq!(page.changes[0].size, 1000 + u64::from(round));
        cursor = page.cursor;
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let file = alice.file(key, true).await.unwrap();
    assert_eq!(file.versions.len(), 3);
    // Newest first; the latest checksum is the last upload's.
    let sizes: Vec<u64> = file.versions.iter().map(|v| v.size).collect();
    assert_eq!(sizes, [1002, 1001, 1000]);
    assert_eq!(file.latest, file.versions[0]);
    assert_eq!(
        file.latest.checksum.as_ref().unwrap().value,
        sha256_b64(&contents[2])
    );
    // A prefix narrows the feed.
    let other = dir.join("other.bin");
    std::fs::write(&other, bytes(10, 9)).unwrap();
    let other_key = "uploads/alice/sub/other.bin";
    upload_single(
        &alice,
        &other,
        other_key,
        "application/octet-stream",
        UploadMethod::Put,
    )
    .await
    .unwrap();
    stack.record(&stack.events_for(&[other_key]).await).await;
    let narrowed = alice
        .changes(Some("uploads/alice/sub/"), None, None)
        .await
        .unwrap();
    let keys: Vec<&str> = narrowed.changes.iter().map(|c| c.key.as_str()).collect();
    assert_eq!(keys, [other_key]);
    let all = alice.changes(None, None, Some(2)).await.unwrap();
    assert_eq!(all.changes.len(), 2);
    assert!(all.more);
    let rest = alice
        .changes(None, all.cursor.as_deref(), None)
        .await
        .unwrap();
    assert_eq!(rest.changes.len(), 2);
    assert_eq!(stack.change_messages(4).await.len(), 4);
}

#[tokio::test]
async fn the_writer_handler_reports_nothing_for_good_batches() {
    let stack = Stack::start(&[]).await;
    let alice = stack.client(ALICE);
    let dir = temp_dir("batch");
    let key = "uploads/alice/a.png";
    let path = dir.join("a.png");
    std::fs::write(&path, bytes(500, 1)).unwrap();
    upload_single(&alice, &path, key, "image/png", UploadMethod::Put)
        .await
        .unwrap();
    let mut events = stack.events_for(&[key]).await;
    // A message that is not an S3 event is dropped as permanent, not retried.
    let mut junk = events[0].clone();
    junk.message_id = Some("junk".into());
    junk.body = Some("not json".into());
    events.push(junk);
    assert!(stack.record_batch(events).await.is_empty());
    assert_eq!(alice.file(key, false).await.unwrap().latest.size, 500);
}

#[tokio::test]
async fn a_saved_upload_that_is_over_starts_afresh() {
    let stack = Stack::start(&[]).await;
    let alice = stack.client(ALICE);
    let data = bytes(6 * MIB, 11);
    let dir = temp_dir("afresh");
    let path = dir.join("big.bin");
    std::fs::write(&path, &data).unwrap();
    let state = dir.join("big.bin.upload.json");
    let key = "uploads/alice/big.bin";
    let options = UploadOptions {
        part_size: 5 * MIB as u64,
        concurrency: 1,
    };
    // A state file left behind by a run whose upload is over (aborted, expired, unknown).
    let stale = upload_api::client::ResumeState {
        key: key.to_owned(),
        upload_id: "an-upload-that-is-gone".into(),
        file_len: data.len() as u64,
        file_modified_ns: std::fs::metadata(&path)
            .unwrap()
            .modified()
            .unwrap()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos(),
        part_size: 5 * MIB as u64,
        part_checksums: vec![crc32c_b64(&data[..5 * MIB]), crc32c_b64(&data[5 * MIB..])],
        etags: Default::default(),
    };
    std::fs::write(&state, serde_json::to_vec(&stale).unwrap()).unwrap();
    let second = upload_resumable(
        &alice,
        &path,
        key,
        "application/octet-stream",
        &state,
        &options,
        &|_| {},
    )
    .await
    .unwrap();
    assert!(!second.resumed);
    assert_eq!(second.parts_sent, [1, 2]);
    assert_eq!(stack.object(key).await.as_deref(), Some(&data[..]));
}

/// The status and reason of a refusal by the API.
fn refusal<T: std::fmt::Debug>(result: Result<T, upload_api::Error>) -> (u16, String, String) {
    match result {
        Err(upload_api::Error::Refused {
            status,
            reason,
            message,
            ..
        }) => (status, reason, message),
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[tokio::test]
async fn iam_callers_are_principals_not_the_session_names_they_pick() {
    let stack = Stack::start(&[("AUTH_MODE", "iam")]).await;
    let account = "111122223333";
    let alice = stack
        .iam_client(role_session(
            account,
            "Uploaders",
            "AROAUPLOADERSROLE0001",
            "alice",
        ))
        .await;
    let owner = "111122223333:AROAUPLOADERSROLE0001:alice";
    let prefix = format!("uploads/{owner}/");
    let me = alice.me().await.unwrap();
    assert_eq!(
        (me.caller.as_str(), me.prefix.as_str()),
        (owner, prefix.as_str())
    );

    // Alice uploads a file, which is recorded as hers, and leaves a multipart upload open.
    let photo = jpeg(320, 240);
    let dir = temp_dir("iam");
    let path = dir.join("cat.jpg");
    std::fs::write(&path, &photo).unwrap();
    let key = format!("{prefix}photos/cat.jpg");
    upload_single(&alice, &path, &key, "image/jpeg", UploadMethod::Put)
        .await
        .unwrap();
    let outcomes = stack.record(&stack.events_for(&[&key]).await).await;
    let versions = recorded(&outcomes);
    assert_eq!(versions.len(), 1, "{outcomes:?}");
    let version = versions[0].clone();
    assert_eq!(version.owner, owner);
    let video = bytes(12 * MIB, 5);
    let open = alice
        .create_multipart(&CreateMultipartRequest {
            key: format!("{prefix}videos/holiday.mp4"),
            size: video.len() as u64,
            content_type: "video/mp4".into(),
            checksum: ChecksumSpec {
                algorithm: ChecksumAlgorithm::Crc32c,
                value: crc32c_b64(&video),
            },
            part_size: None,
        })
        .await
        .unwrap();

    // Principals that name their session "alice" too: another role of the account, the role
    // deleted and created again under its name, a role of the same name in another account.
    let others = [
        role_session(account, "Intruders", "AROAINTRUDERSROLE0002", "alice"),
        role_session(account, "Uploaders", "AROAUPLOADERSROLE0003", "alice"),
        role_session(
            "444455556666",
            "Uploaders",
            "AROAUPLOADERSROLE0001",
            "alice",
        ),
    ];
    for principal in others {
        let who = principal.user_arn.clone().unwrap();
        let other = stack.iam_client(principal).await;
        let their = other.me().await.unwrap();
        assert_ne!(their.caller, owner, "{who}");
        assert!(
            !their.prefix.starts_with(&prefix),
            "{who}: {}",
            their.prefix
        );

        // Alice's file, its versions, her feed: refused, naming the caller's own prefix.
        for refused in [
            refusal(other.file(&key, false).await),
            refusal(other.file(&key, true).await),
            refusal(other.changes(Some(&prefix), None, None).await),
            refusal(
                other
                    .single_upload(&SingleUploadRequest {
                        key: key.clone(),
                        size: 5,
                        content_type: "image/jpeg".into(),
                        checksum: ChecksumSpec {
                            algorithm: ChecksumAlgorithm::Sha256,
                            value: sha256_b64(b"hello"),
                        },
                        method: UploadMethod::Put,
                        expires_in: None,
                    })
                    .await,
            ),
        ] {
            let (status, reason, message) = refused;
            assert_eq!(
                (status, reason.as_str()),
                (403, "key_outside_prefix"),
                "{who}"
            );
            assert!(message.contains(&their.prefix), "{who}: {message}");
        }
        // Its own feed has nothing of hers; her open upload is unknown to it.
        assert!(other
            .changes(None, None, None)
            .await
            .unwrap()
            .changes
            .is_empty());
        for refused in [
            refusal(other.list_parts(&open.upload_id).await),
            refusal(other.abort(&open.upload_id).await),
        ] {
            assert_eq!(
                (refused.0, refused.1.as_str()),
                (404, "upload_not_found"),
                "{who}"
            );
        }
    }

    // Nothing of Alice's is lost: her bytes, her versions, her feed, her open upload.
    assert_eq!(stack.object(&key).await.as_deref(), Some(&photo[..]));
    let file = alice.file(&key, true).await.unwrap();
    assert_eq!(
        (file.latest, file.versions),
        (version.clone(), vec![version.clone()])
    );
    assert_eq!(
        alice.changes(None, None, None).await.unwrap().changes,
        vec![version]
    );
    assert!(alice
        .list_parts(&open.upload_id)
        .await
        .unwrap()
        .parts
        .is_empty());
    alice.abort(&open.upload_id).await.unwrap();

    // Root and federated users have no prefix: a 403 that says why.
    for (arn, user_id, why) in [
        (
            "arn:aws:iam::111122223333:root",
            "111122223333",
            "root user is not accepted",
        ),
        (
            "arn:aws:sts::111122223333:federated-user/alice",
            "111122223333:alice",
            "GetFederationToken",
        ),
    ] {
        let refused = stack
            .iam_client(IamPrincipal {
                user_arn: Some(arn.into()),
                user_id: Some(user_id.into()),
                account_id: Some(account.into()),
            })
            .await;
        let (status, reason, message) = refusal(refused.me().await);
        assert_eq!((status, reason.as_str()), (403, "unknown_caller"), "{arn}");
        assert!(message.contains(arn) && message.contains(why), "{message}");
    }
}

#[tokio::test]
async fn an_identity_center_user_uploads_under_its_own_prefix() {
    let stack = Stack::start(&[("AUTH_MODE", "iam")]).await;
    // Identity Center names the session after the user: `@` and `+` reach the key.
    let user = stack
        .iam_client(role_session(
            "111122223333",
            "AWSReservedSSO_Uploaders_0123456789abcdef",
            "AROASSOUPLOADERS00001",
            "alice+ops@example.com",
        ))
        .await;
    let me = user.me().await.unwrap();
    let owner = "111122223333:AROASSOUPLOADERS00001:alice+ops@example.com";
    assert_eq!(me.caller, owner);
    let data = bytes(70_000, 9);
    let dir = temp_dir("sso");
    let path = dir.join("notes.bin");
    std::fs::write(&path, &data).unwrap();
    let key = format!("{}notes/a b.bin", me.prefix);
    upload_single(
        &user,
        &path,
        &key,
        "application/octet-stream",
        UploadMethod::Post,
    )
    .await
    .unwrap();
    assert_eq!(stack.object(&key).await.as_deref(), Some(&data[..]));
    let outcomes = stack.record(&stack.events_for(&[&key]).await).await;
    let versions = recorded(&outcomes);
    assert_eq!(versions.len(), 1, "{outcomes:?}");
    assert_eq!(versions[0].owner, owner);
    assert_eq!(&user.file(&key, false).await.unwrap().latest, versions[0]);
    let changes = user.changes(Some(&me.prefix), None, None).await.unwrap();
    assert_eq!(changes.changes.len(), 1);
    let messages = stack.change_messages(1).await;
    assert_eq!(messages[0]["_attributes"]["owner"]["Value"], owner);
}
