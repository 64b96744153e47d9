#![allow(dead_code)]
//! What the backfill integration tests share: a real origin server and the S3 under test.

pub mod origin_server;

use aws_lambda_events::event::sqs::SqsMessage;
use aws_sdk_s3::Client;
use backfill::config::Config;
use backfill::copy::CopyOutcome;
use backfill::error::BackfillError;
use backfill::handler::Backfill;
use backfill::origin::HttpOrigin;
use backfill::store::S3Store;
use origin_server::OriginServer;
use shared::config::Env;
use test_support::fault_proxy::FaultProxy;
use tokio::time::{Duration, Instant};

pub const MIB: usize = 1024 * 1024;

pub fn var(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!("{name} is not set: run the tests through scripts/test, which starts the local AWS stack")
    })
}

pub struct Harness {
    pub server: OriginServer,
    pub app: Backfill<HttpOrigin, S3Store>,
    pub s3: Client,
    pub bucket: String,
    /// A key prefix of this test's own.
    pub prefix: String,
}

/// Random bytes that compress badly, so nothing in the path can cheat.
pub fn bytes(len: usize) -> Vec<u8> {
    let mut rng = fastrand::Rng::with_seed(len as u64);
    (0..len).map(|_| rng.u8(..)).collect()
}

impl Harness {
    /// A harness against the S3 at `endpoint` (moto when `None`) with extra configuration.
    pub async fn start(extra: &[(&str, &str)]) -> Harness {
        Self::start_with(extra, None).await
    }

    pub async fn start_with(extra: &[(&str, &str)], s3: Option<Client>) -> Harness {
        Self::start_full(extra, s3, None).await
    }

    /// With an S3 client of the caller's and a name resolution of the caller's.
    pub async fn start_full(
        extra: &[(&str, &str)],
        s3: Option<Client>,
        lookup: Option<backfill::origin::Lookup>,
    ) -> Harness {
        let server = OriginServer::start().await;
        let port = server.addr.port();
        let allowed = format!(
            "http://127.0.0.1:{port},http://metadata.test:{port},http://mixed.test:{port},\
             http://localhost:{port}"
        );
        let bucket = var("BUCKET");
        let mut pairs: Vec<(&str, &str)> = vec![
            ("BUCKET", &bucket),
            ("ALLOWED_ORIGINS", &allowed),
            ("PART_SIZE", "5242880"),
            ("SINGLE_PUT_MAX", "1048576"),
            ("MAX_OBJECT_SIZE", "1073741824"),
            ("ORIGIN_FIRST_BYTE_TIMEOUT", "2s"),
            ("ORIGIN_IDLE_TIMEOUT", "2s"),
        ];
        pairs.extend_from_slice(extra);
        let mut config = Config::from_env(&Env::from_pairs(pairs)).unwrap();
        let sdk = shared::aws::load_config().await;
        backfill::secret::add_origin_secret(&mut config, &sdk)
            .await
            .unwrap();
        let s3 = match s3 {
            Some(client) => client,
            None => shared::aws::s3_client(&sdk),
        };
        let origin = match lookup {
            Some(lookup) => HttpOrigin::with_lookup(&config, lookup).unwrap(),
            None => HttpOrigin::new(&config).unwrap(),
        };
        let app = Backfill::new(config, origin, S3Store::new(s3.clone()));
        Harness {
            server,
            app,
            s3,
            prefix: format!("backfill-test/{}/", fastrand::u64(..)),
            bucket,
        }
    }

    pub fn key(&self, name: &str) -> String {
        format!("{}{name}", self.prefix)
    }

    /// A version 1 backfill message writing `key` with what the origin answers at `uri`. The
    /// message's uri is the key's own (the backfill refuses any other), which the test origin
    /// serves as `uri`.
    pub fn message(&self, uri: &str, key: &str) -> String {
        self.message_for("127.0.0.1", self.server.addr.port(), uri, key)
    }

    pub fn message_for(&self, host: &str, port: u16, uri: &str, key: &str) -> String {
        let uri = match shared::ObjectKey::new(key) {
            Ok(key) => {
                let own = key.to_uri_path();
                self.server.alias(&own, uri);
                own
            }
            Err(_) => uri.to_owned(),
        };
        serde_json::json!({
            "version": 1,
            "bucket": self.bucket,
            "key": key,
            "origin": {"protocol": "http", "host": host, "port": port, "path": ""},
            "uri": uri,
            "request_id": "test-request",
            "enqueued_at": "2026-11-25T08:00:00Z",
            "trigger": "origin-request",
        })
        .to_string()
    }

    pub async fn run(&self, body: &str) -> Result<CopyOutcome, BackfillError> {
        self.run_until(body, a_minute()).await
    }

    pub async fn run_until(
        &self,
        body: &str,
        deadline: Instant,
    ) -> Result<CopyOutcome, BackfillError> {
        let mut record = SqsMessage::default();
        record.message_id = Some("m".into());
        record.body = Some(body.to_owned());
        self.app.handle_record(record, deadline).await
    }

    pub async fn object(&self, key: &str) -> Option<Vec<u8>> {
        object_in(&self.s3, &self.bucket, key).await
    }

    /// Multipart uploads still open under this test's prefix.
    pub async fn open_uploads(&self) -> usize {
        let listed = self
            .s3
            .list_multipart_uploads()
            .bucket(&self.bucket)
            .prefix(&self.prefix)
            .send()
            .await
            .unwrap();
        listed.uploads().len()
    }
}

/// A client of the strict S3 stand-in (s3s-fs: checks signatures and checksums).
pub fn strict_client() -> aws_sdk_s3::Client {
    let config = aws_sdk_s3::Config::builder()
        .behavior_version(aws_sdk_s3::config::BehaviorVersion::latest())
        .endpoint_url(var("STRICT_S3_ENDPOINT"))
        .region(aws_sdk_s3::config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_s3::config::Credentials::new(
            var("STRICT_S3_ACCESS_KEY"),
            var("STRICT_S3_SECRET_KEY"),
            None,
            None,
            "strict-s3",
        ))
        .force_path_style(true)
        .request_checksum_calculation(aws_sdk_s3::config::RequestChecksumCalculation::WhenRequired)
        .response_checksum_validation(aws_sdk_s3::config::ResponseChecksumValidation::WhenRequired)
        .build();
    aws_sdk_s3::Client::from_conf(config)
}

/// The deadline of a test that is not about deadlines.
pub fn a_minute() -> Instant {
    Instant::now() + Duration::from_secs(60)
}

/// A harness whose S3 requests go through a fault proxy in front of moto.
pub async fn behind_proxy(extra: &[(&str, &str)]) -> (Harness, FaultProxy, aws_sdk_s3::Client) {
    let sdk = shared::aws::load_config().await;
    let direct = shared::aws::s3_client(&sdk);
    let proxy = FaultProxy::start(var("AWS_ENDPOINT_URL")).await;
    let proxied = aws_sdk_s3::Client::from_conf(
        direct
            .config()
            .to_builder()
            .endpoint_url(proxy.endpoint())
            .build(),
    );
    let h = Harness::start_with(extra, Some(proxied)).await;
    (h, proxy, direct)
}

/// The object's bytes through `s3`, or `None` when there is no such key.
pub async fn object_in(s3: &Client, bucket: &str, key: &str) -> Option<Vec<u8>> {
    match s3.get_object().bucket(bucket).key(key).send().await {
        Ok(object) => Some(object.body.collect().await.unwrap().into_bytes().to_vec()),
        Err(err) if err.as_service_error().is_some_and(|e| e.is_no_such_key()) => None,
        Err(err) => panic!("GetObject {key}: {err:?}"),
    }
}
