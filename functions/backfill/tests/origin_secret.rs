//! The origin secret read from Secrets Manager (the local stand-in) at cold start and sent to a
//! real origin: the current version or the one configured, refused when missing or unsafe, and
//! never in the logs.

mod common;

use std::io::Write;
use std::sync::{Arc, Mutex};

use aws_sdk_secretsmanager::primitives::Blob;
use backfill::config::Config;
use backfill::copy::CopyOutcome;
use backfill::error::BackfillError;
use backfill::secret::add_origin_secret;
use common::{bytes, var, Harness};
use shared::config::Env;

const HEADER: &str = "X-Origin-Verify";

async fn secrets() -> aws_sdk_secretsmanager::Client {
    aws_sdk_secretsmanager::Client::new(&shared::aws::load_config().await)
}

/// A secret of this test's own holding `value`: its ARN and version id.
async fn create_secret(value: &str) -> (String, String) {
    let created = secrets()
        .await
        .create_secret()
        .name(format!("backfill-test/origin-{}", fastrand::u64(..)))
        .secret_string(value)
        .send()
        .await
        .unwrap();
    (
        created.arn().unwrap().to_owned(),
        created.version_id().unwrap().to_owned(),
    )
}

/// The configuration's origin secret read the way the cold start reads it.
async fn read_secret(arn: &str) -> Result<Config, BackfillError> {
    let allowed = "http://127.0.0.1:8080".to_owned();
    let mut config = Config::from_env(&Env::from_pairs([
        ("BUCKET", var("BUCKET").as_str()),
        ("ALLOWED_ORIGINS", &allowed),
        ("ORIGIN_SECRET_ARN", arn),
        ("ORIGIN_SECRET_HEADER", HEADER),
    ]))
    .unwrap();
    add_origin_secret(&mut config, &shared::aws::load_config().await)
        .await
        .map(|()| config)
}

/// What the origin saw under the secret's header, per request.
fn secret_headers_seen(h: &Harness) -> Vec<String> {
    h.server
        .requests()
        .into_iter()
        .map(|(_, headers)| {
            headers
                .into_iter()
                .find(|(name, _)| name == "x-origin-verify")
                .map(|(_, value)| value)
                .unwrap_or_default()
        })
        .collect()
}

#[tokio::test]
async fn the_current_secret_goes_to_the_origin_and_never_to_the_logs() {
    let logs = Logs::capture();
    let value = "Zr4qPn8VtK2mXw9Lb6Jc3Hs7Df5Ga1Ye";
    let (arn, _) = create_secret(value).await;
    let h = Harness::start(&[
        ("ORIGIN_SECRET_ARN", &arn),
        ("ORIGIN_SECRET_HEADER", HEADER),
        ("ORIGIN_HEADERS", r#"{"X-Tenant": "overseas"}"#),
    ])
    .await;
    h.server.add("s.jpg", bytes(100), &[]);
    let outcome = h
        .run(&h.message("/files/s.jpg", &h.key("s.jpg")))
        .await
        .unwrap();
    assert_eq!(
        outcome,
        CopyOutcome::Copied {
            bytes: 100,
            parts: 1
        }
    );
    assert_eq!(secret_headers_seen(&h), [value]);
    let requests = h.server.requests();
    let (_, headers) = &requests[0];
    assert!(headers.contains(&("x-tenant".to_owned(), "overseas".to_owned())));
    // Every other header the fetch sends is one the secret's name may not be: a secret under it
    // would replace what the fetch needs.
    for (name, _) in headers {
        if name != "x-origin-verify" && name != "x-tenant" {
            assert!(
                shared::origin_secret::name_problem(name).is_some(),
                "the fetch sends {name}, which the secret's name rule takes"
            );
        }
    }
    tracing::info!(config = ?h.app.config, "the configuration as a log line would show it");
    let text = logs.text();
    assert!(text.contains("backfill"), "nothing was logged: {text}");
    assert!(text.contains("x-origin-verify"), "{text}");
    assert!(!text.contains(value), "the secret is in the logs: {text}");
}

#[tokio::test]
async fn a_version_id_reads_that_version() {
    let (old, new) = ("old-secret-0123456789abcdef", "new-secret-fedcba9876543210");
    let (arn, old_version) = create_secret(old).await;
    secrets()
        .await
        .put_secret_value()
        .secret_id(&arn)
        .secret_string(new)
        .send()
        .await
        .unwrap();
    for (version, expected) in [(Some(old_version.as_str()), old), (None, new)] {
        let mut extra = vec![
            ("ORIGIN_SECRET_ARN", arn.as_str()),
            ("ORIGIN_SECRET_HEADER", HEADER),
        ];
        extra.extend(version.map(|v| ("ORIGIN_SECRET_VERSION", v)));
        let h = Harness::start(&extra).await;
        h.server.add("v.jpg", bytes(10), &[]);
        h.run(&h.message("/files/v.jpg", &h.key("v.jpg")))
            .await
            .unwrap();
        assert_eq!(secret_headers_seen(&h), [expected], "version {version:?}");
    }
}

#[tokio::test]
async fn a_missing_secret_fails_the_init_with_the_arn_and_the_reason() {
    let (arn, _) = create_secret("Zr4qPn8VtK2mXw9Lb6Jc3Hs7Df5Ga1Ye").await;
    let missing = format!("{arn}x");
    let err = read_secret(&missing).await.unwrap_err();
    let text = err.to_string();
    assert!(text.contains(&missing), "{text}");
    assert!(text.contains("ResourceNotFoundException"), "{text}");
    assert!(matches!(err, BackfillError::OriginSecret { .. }), "{err:?}");
}

#[tokio::test]
async fn unsafe_values_are_refused_at_init_without_being_shown() {
    for value in [
        "short-secret-15",
        "a-long-enough-secret-value\nX-Injected: yes",
        "a long enough secret with spaces",
        &"x".repeat(257),
    ] {
        let (arn, _) = create_secret(value).await;
        let text = read_secret(&arn).await.unwrap_err().to_string();
        assert!(text.contains(&arn), "{text}");
        assert!(text.contains("16 to 256 characters"), "{text}");
        assert!(!text.contains(value), "the value is in the error: {text}");
    }
}

#[tokio::test]
async fn a_binary_secret_is_refused() {
    let created = secrets()
        .await
        .create_secret()
        .name(format!("backfill-test/binary-{}", fastrand::u64(..)))
        .secret_binary(Blob::new(b"Zr4qPn8VtK2mXw9Lb6Jc3Hs7Df5Ga1Ye".to_vec()))
        .send()
        .await
        .unwrap();
    let arn = created.arn().unwrap();
    let text = read_secret(arn).await.unwrap_err().to_string();
    assert!(text.contains(arn), "{text}");
    assert!(text.contains("SecretBinary"), "{text}");
}

/// Every log line of this test's thread, JSON as in Lambda, at every level (the SDK's traces
/// included).
#[derive(Clone, Default)]
struct Logs(Arc<Mutex<Vec<u8>>>);

impl Logs {
    fn capture() -> LogGuard {
        let logs = Logs::default();
        let writer = logs.clone();
        let subscriber = tracing_subscriber::fmt()
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_max_level(tracing::Level::TRACE)
            .with_writer(move || writer.clone())
            .finish();
        LogGuard {
            logs,
            _guard: tracing::subscriber::set_default(subscriber),
        }
    }
}

impl Write for Logs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

struct LogGuard {
    logs: Logs,
    _guard: tracing::subscriber::DefaultGuard,
}

impl LogGuard {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.logs.0.lock().unwrap()).into_owned()
    }
}
