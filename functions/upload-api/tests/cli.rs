//! The example client as its users run it: the built `upload-client` binary against the API
//! (through the local function URL), finishing an upload that a crashed run left half done.

mod common;

use std::path::PathBuf;
use std::process::Output;

use common::{bytes, jpeg, temp_dir, Stack, ALICE, MIB};
use upload_api::client::{upload_resumable, Progress, UploadOptions};

fn client_binary() -> PathBuf {
    // target/<profile>/deps/cli-<hash> -> target/<profile>/examples/upload-client
    let exe = std::env::current_exe().unwrap();
    let binary = exe
        .parent()
        .and_then(|deps| deps.parent())
        .map(|profile| profile.join("examples").join("upload-client"))
        .unwrap();
    assert!(
        binary.exists(),
        "{} is missing: `cargo test -p upload-api` builds it (or `cargo build -p upload-api \
         --example upload-client`)",
        binary.display()
    );
    binary
}

async fn run(stack: &Stack, args: &[&str]) -> Output {
    let output = tokio::process::Command::new(client_binary())
        .arg("--api")
        .arg(&stack.base_url)
        .args(args)
        .env("UPLOAD_API_TOKEN", &stack.tokens[ALICE])
        .output()
        .await
        .expect("run upload-client");
    assert!(
        output.status.success(),
        "upload-client {args:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_client_finishes_what_a_crashed_run_left() {
    let stack = Stack::start(&[]).await;
    let alice = stack.client(ALICE);
    let dir = temp_dir("cli");
    let file = dir.join("trip.mp4");
    let data = bytes(12 * MIB + 5, 4);
    std::fs::write(&file, &data).unwrap();
    let state = dir.join("trip.mp4.upload.json");
    let key = "uploads/alice/videos/trip.mp4";

    // A run that dies after its first part.
    {
        let (alice, file, state) = (alice.clone(), file.clone(), state.clone());
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let crashed = tokio::spawn(async move {
            let progress = move |p: Progress| {
                if let Progress::Part { number, .. } = p {
                    let _ = tx.send(number);
                }
            };
            upload_resumable(
                &alice,
                &file,
                key,
                "video/mp4",
                &state,
                &UploadOptions {
                    part_size: 5 * MIB as u64,
                    concurrency: 1,
                },
                &progress,
            )
            .await
        });
        let Some(1) = rx.recv().await else {
            panic!("the first run ended early: {:?}", crashed.await);
        };
        crashed.abort();
        let _ = crashed.await;
    }
    assert!(state.exists());

    let output = run(
        &stack,
        &[
            "upload",
            file.to_str().unwrap(),
            "--name",
            "videos/trip.mp4",
            "--state",
            state.to_str().unwrap(),
            "--part-size",
            "5242880",
        ],
    )
    .await;
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains(&format!("uploaded {key}")), "{stdout}");
    assert!(stdout.contains("after resuming"), "{stdout}");
    assert!(!state.exists());
    assert_eq!(stack.object(key).await.as_deref(), Some(&data[..]));

    // A small file goes up in one request; the feed then shows both.
    let photo = dir.join("photo.jpg");
    std::fs::write(&photo, jpeg(64, 48)).unwrap();
    let output = run(&stack, &["upload", photo.to_str().unwrap()]).await;
    assert!(String::from_utf8_lossy(&output.stdout).contains("in one request"));
    let photo_key = "uploads/alice/photo.jpg";
    stack
        .record(&stack.events_for(&[key, photo_key]).await)
        .await;
    let output = run(&stack, &["changes"]).await;
    let changes: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let mut keys: Vec<&str> = changes["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["key"].as_str().unwrap())
        .collect();
    keys.sort_unstable();
    keys.dedup();
    assert_eq!(keys, [photo_key, key]);
    let output = run(&stack, &["info", "photo.jpg"]).await;
    let info: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(info["latest"]["content_type"], "image/jpeg");

    // Both come back down through the URLs the API signs, checked against S3's checksums: the
    // video's full-object CRC32C, the photo's SHA-256.
    for (name, expected) in [
        ("videos/trip.mp4", data.clone()),
        ("photo.jpg", jpeg(64, 48)),
    ] {
        let out = dir.join(format!("down-{}", name.replace('/', "-")));
        let output = run(&stack, &["download", name, "--out", out.to_str().unwrap()]).await;
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(stdout.contains("via s3, checksum verified"), "{stdout}");
        assert_eq!(std::fs::read(&out).unwrap(), expected, "{name}");
    }

    // Bytes that are not the recorded version's (replaced behind the API's back, the new
    // version not recorded yet) are refused, and nothing is written.
    stack
        .bucket_client
        .put_object()
        .bucket(&stack.bucket)
        .key(photo_key)
        .body(b"not the photo".to_vec().into())
        .send()
        .await
        .unwrap();
    let out = dir.join("stale-photo.jpg");
    let output = tokio::process::Command::new(client_binary())
        .args(["--api", &stack.base_url, "download", "photo.jpg", "--out"])
        .arg(&out)
        .env("UPLOAD_API_TOKEN", &stack.tokens[ALICE])
        .output()
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(stderr.contains("nothing written"), "{stderr}");
    assert!(!out.exists() && !dir.join("stale-photo.jpg.part").exists());
}
