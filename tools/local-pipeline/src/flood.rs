//! The token flood (issue 21): many connections send requests with bad tokens to the upload API's
//! public URL while the backfill copies a batch of objects, on an account whose concurrency is
//! modelled ([`crate::concurrency`]): a limit shared by the upload API and the backfill's event
//! source mapping, with the upload API's reservation carved out as Lambda does. Each request the
//! model lets through runs the real upload API (its built binary in a Runtime Interface Emulator,
//! one emulator per execution environment); one it throttles is answered 429, as Lambda answers a
//! function URL past its concurrency, without running the function. The backfill runs the same way,
//! its pollers backing off when throttled.
//!
//! Three cases, interleaved round after round: no flood; the flood with the upload API's
//! reservation; the flood without one (the counter-case: the flood takes the pool the backfill
//! needs). The invariants are checked in every round: every bad-token request answered 401 or 429,
//! never anything else; every object of the batch copied whole, nothing in the DLQ; with the
//! reservation, the upload API never holds more than its reservation nor any of the unreserved
//! pool, and the backfill is never throttled. The throughput figures are the benchmark's.

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::concurrency::{Account, Function};
use crate::esm;
use crate::load::{seeded_file, send_backfills, wait_below};

const UPLOAD_API: &str = "upload-api";
const BACKFILL: &str = "backfill";
const PREFIX: &str = "flood/";
/// Each connection sends its next request one round trip after the last answer: a client 10 ms
/// from the URL. (Without it a throttled connection would spin on this machine's CPU, which an
/// attacker's 429s, answered by Lambda without running the function, never take from the account.)
const CLIENT_ROUND_TRIP: Duration = Duration::from_millis(10);
/// After a round's pollers stop, this long passes before the next round sends its batch: a long
/// poll of theirs still open at moto (1 s) would take messages for no one.
const POLLS_SETTLE: Duration = Duration::from_secs(2);
/// The flood runs this long before the batch is sent, so that the batch meets it in full.
const FLOOD_LEAD: Duration = Duration::from_millis(300);

pub struct FloodRun {
    pub sqs: aws_sdk_sqs::Client,
    pub s3: aws_sdk_s3::Client,
    pub bucket: String,
    pub queue_url: String,
    pub dlq_url: String,
    pub origin_port: u16,
    /// Invocation URLs of the backfill's execution environments (one poller each).
    pub backfill_sandboxes: Vec<String>,
    /// Invocation URLs of the upload API's execution environments (at least the account limit).
    pub upload_api_sandboxes: Vec<String>,
    pub account_limit: usize,
    pub min_unreserved: usize,
    pub reservation: usize,
    pub connections: usize,
    pub objects: usize,
    pub object_bytes: usize,
    pub rounds: usize,
    /// The longest a round's batch is timed: past it the round's throughput is what was copied so
    /// far (a starved backfill may copy nothing), and the rest is copied after the flood stops.
    pub round_cap: Duration,
}

#[derive(Clone, Copy, PartialEq)]
enum Case {
    NoFlood,
    FloodReserved,
    FloodUnreserved,
}

impl Case {
    const ALL: [Case; 3] = [Case::NoFlood, Case::FloodReserved, Case::FloodUnreserved];

    fn name(self) -> &'static str {
        match self {
            Case::NoFlood => "no flood",
            Case::FloodReserved => "flood, reservation",
            Case::FloodUnreserved => "flood, no reservation",
        }
    }

    fn flood(self) -> bool {
        self != Case::NoFlood
    }

    /// The upload API has its reservation (token mode's default) except in the counter-case.
    fn reserved(self) -> bool {
        self != Case::FloodUnreserved
    }
}

/// What the flood's connections were answered.
#[derive(Default)]
struct Tally {
    requests: AtomicU64,
    unauthenticated: AtomicU64,
    throttled: AtomicU64,
    /// Any other status, by status: none is allowed.
    others: Mutex<Vec<String>>,
    /// Upload API invocations running at once, counted at the emulators.
    in_flight: AtomicUsize,
    peak_in_flight: AtomicUsize,
}

/// Free execution environments of the upload API: an invocation takes one and gives it back.
struct Sandboxes(Mutex<Vec<String>>);

impl Sandboxes {
    fn take(&self) -> Option<String> {
        self.0.lock().unwrap().pop()
    }

    fn give_back(&self, url: String) {
        self.0.lock().unwrap().push(url);
    }
}

pub fn catalogue(dir: &Path, objects: usize, bytes: usize) -> Result<()> {
    std::fs::create_dir_all(dir.join(PREFIX))?;
    for i in 0..objects {
        seeded_file(&dir.join(key(i)), bytes, i as u64)?;
    }
    Ok(())
}

fn key(i: usize) -> String {
    format!("{PREFIX}object-{i:05}.bin")
}

impl FloodRun {
    pub async fn play(&self, catalogue: &Path) -> Result<Value> {
        let most_held = self.account_limit;
        if self.upload_api_sandboxes.len() < most_held {
            bail!("{} upload API environments: without a reservation it may hold the whole account ({most_held})",
                self.upload_api_sandboxes.len());
        }
        if self.backfill_sandboxes.len() + self.reservation > self.account_limit {
            bail!(
                "{} backfill pollers do not fit the unreserved pool",
                self.backfill_sandboxes.len()
            );
        }
        let mut rounds = Vec::new();
        for round in 0..self.rounds {
            for case in Case::ALL {
                let report = self.round(case, catalogue).await.with_context(|| {
                    format!("round {} of {}, {}", round + 1, self.rounds, case.name())
                })?;
                eprintln!("flood: round {} {}: {report}", round + 1, case.name());
                rounds.push(json!({"round": round + 1, "case": case.name(), "figures": report}));
            }
        }
        let cases: Vec<Value> = Case::ALL
            .iter()
            .map(|case| {
                let of_case: Vec<&Value> = rounds
                    .iter()
                    .filter(|r| r["case"] == case.name())
                    .map(|r| &r["figures"])
                    .collect();
                let mut rates: Vec<f64> = of_case
                    .iter()
                    .filter_map(|f| f["objects_per_second"].as_f64())
                    .collect();
                rates.sort_by(f64::total_cmp);
                let sum =
                    |field: &str| -> u64 { of_case.iter().filter_map(|f| f[field].as_u64()).sum() };
                let max = |field: &str| -> u64 {
                    of_case
                        .iter()
                        .filter_map(|f| f[field].as_u64())
                        .max()
                        .unwrap_or(0)
                };
                json!({
                    "case": case.name(),
                    "objects_per_second": {
                        "median": rates.get(rates.len() / 2),
                        "min": rates.first(),
                        "max": rates.last(),
                    },
                    "flood_requests": sum("flood_requests"),
                    "answered_401": sum("answered_401"),
                    "answered_429": sum("answered_429"),
                    "upload_api_peak": max("upload_api_peak"),
                    "upload_api_peak_in_unreserved_pool": max("upload_api_peak_in_unreserved_pool"),
                    "capped_rounds": of_case.iter().filter(|f| f["capped"] == true).count(),
                    "backfill_throttles": sum("backfill_throttles"),
                    "backfill_invocations": sum("backfill_invocations"),
                })
            })
            .collect();
        Ok(json!({
            "account": {
                "limit": self.account_limit,
                "min_unreserved": self.min_unreserved,
                "upload_api_reservation": self.reservation,
                "backfill_environments": self.backfill_sandboxes.len(),
                "upload_api_environments": self.upload_api_sandboxes.len(),
            },
            "connections": self.connections,
            "objects": self.objects,
            "object_bytes": self.object_bytes,
            "rounds": self.rounds,
            "round_cap_seconds": self.round_cap.as_secs_f64(),
            "client_round_trip_ms": CLIENT_ROUND_TRIP.as_millis() as u64,
            "cases": cases,
            "per_round": rounds,
        }))
    }

    async fn round(&self, case: Case, catalogue: &Path) -> Result<Value> {
        self.clear_objects().await?;
        let reservations: &[(&'static str, usize)] = if case.reserved() {
            &[(UPLOAD_API, self.reservation)]
        } else {
            &[]
        };
        let account = Account::new(self.account_limit, self.min_unreserved, reservations)?;
        let api = account.function(UPLOAD_API);
        let backfill = account.function(BACKFILL);
        let mut pollers = Vec::new();
        let mut deliveries = Vec::new();
        for url in &self.backfill_sandboxes {
            let (task, delivered) = esm::start(esm::Mapping {
                name: "backfill",
                sqs: self.sqs.clone(),
                queue_url: self.queue_url.clone(),
                function_url: url.clone(),
                batch_size: 10,
                batching_window: Duration::ZERO,
                sandbox: esm::Sandbox::default(),
                concurrency: Some(backfill.clone()),
            })
            .await?;
            pollers.push(task);
            deliveries.push(delivered);
        }
        let stop = Arc::new(AtomicBool::new(false));
        let tally = Arc::new(Tally::default());
        let sandboxes = Arc::new(Sandboxes(Mutex::new(self.upload_api_sandboxes.clone())));
        let mut connections = Vec::new();
        if case.flood() {
            let client = reqwest::Client::new();
            for n in 0..self.connections {
                connections.push(tokio::spawn(connection(
                    n,
                    api.clone(),
                    sandboxes.clone(),
                    client.clone(),
                    stop.clone(),
                    tally.clone(),
                )));
            }
            tokio::time::sleep(FLOOD_LEAD).await;
        }

        let started = Instant::now();
        self.send_batch().await?;
        let drained =
            tokio::time::timeout(self.round_cap, wait_below(&self.sqs, &self.queue_url, 1)).await;
        let elapsed = started.elapsed();
        let capped = drained.is_err();
        let copied: usize = deliveries.iter().map(|d| d.snapshot().2).sum();
        stop.store(true, Ordering::SeqCst);
        for connection in connections {
            connection.await.context("a flood connection failed")?;
        }
        // Past the cap, the rest of the batch is copied now, untimed: nothing may be lost.
        match drained {
            Ok(result) => result?,
            Err(_) => wait_below(&self.sqs, &self.queue_url, 1).await?,
        }
        for poller in &pollers {
            poller.abort();
        }
        tokio::time::sleep(POLLS_SETTLE).await;
        self.check_copies(catalogue).await?;

        let others = tally.others.lock().unwrap().clone();
        let figures = json!({
            "seconds": (elapsed.as_secs_f64() * 1000.0).round() / 1000.0,
            "capped": capped,
            "copied_in_time": copied.min(self.objects),
            "objects_per_second": (copied.min(self.objects) as f64 / elapsed.as_secs_f64() * 10.0).round() / 10.0,
            "mb_per_second": ((copied.min(self.objects) * self.object_bytes) as f64 / 1e6 / elapsed.as_secs_f64() * 100.0).round() / 100.0,
            "flood_requests": tally.requests.load(Ordering::SeqCst),
            "answered_401": tally.unauthenticated.load(Ordering::SeqCst),
            "answered_429": tally.throttled.load(Ordering::SeqCst),
            "answered_otherwise": others.len(),
            "upload_api_invocations": api.invocations(),
            "upload_api_peak": tally.peak_in_flight.load(Ordering::SeqCst),
            "upload_api_pool": {"limit": api.pool().limit, "peak": api.pool().peak()},
            "unreserved_pool": {"limit": account.unreserved.limit, "peak": account.unreserved.peak()},
            "upload_api_peak_in_unreserved_pool": account.unreserved.peak_of(UPLOAD_API),
            "backfill_throttles": backfill.throttles(),
            "backfill_invocations": backfill.invocations(),
            "backfill_peak": account.unreserved.peak_of(BACKFILL),
        });
        if !others.is_empty() {
            bail!(
                "bad-token requests answered otherwise than 401 or 429: {:?}",
                &others[..others.len().min(5)]
            );
        }
        check_round(case.reserved().then_some(self.reservation), &figures)?;
        Ok(figures)
    }

    /// Sends the batch's backfill messages (the queue is empty once each is deleted after its
    /// copy, or moved to the DLQ, which [`Self::check_copies`] refuses).
    async fn send_batch(&self) -> Result<()> {
        let keys: Vec<String> = (0..self.objects).map(key).collect();
        send_backfills(
            &self.sqs,
            &self.queue_url,
            &self.bucket,
            self.origin_port,
            &keys,
            "token-flood",
        )
        .await
    }

    /// Every object of the batch in the bucket, byte for byte the origin's; nothing in the DLQ.
    async fn check_copies(&self, catalogue: &Path) -> Result<()> {
        let mut lost = Vec::new();
        for i in 0..self.objects {
            let expected = std::fs::read(catalogue.join(key(i)))?;
            let stored = match self
                .s3
                .get_object()
                .bucket(&self.bucket)
                .key(key(i))
                .send()
                .await
            {
                Ok(object) => object.body.collect().await?.into_bytes(),
                Err(err) if err.as_service_error().is_some_and(|e| e.is_no_such_key()) => {
                    lost.push(key(i));
                    continue;
                }
                Err(err) => return Err(err).context("reading back a copy"),
            };
            if Sha256::digest(&stored) != Sha256::digest(&expected) {
                lost.push(format!("{} (not whole)", key(i)));
            }
        }
        let dead = self
            .sqs
            .receive_message()
            .queue_url(&self.dlq_url)
            .max_number_of_messages(10)
            .send()
            .await?
            .messages()
            .len();
        if !lost.is_empty() || dead > 0 {
            bail!("lost copies {lost:?}, {dead} messages in the DLQ");
        }
        Ok(())
    }

    async fn clear_objects(&self) -> Result<()> {
        for i in 0..self.objects {
            self.s3
                .delete_object()
                .bucket(&self.bucket)
                .key(key(i))
                .send()
                .await?;
        }
        Ok(())
    }
}

/// A round's invariants, from its figures: every request answered 401 or 429; with a
/// reservation, the upload API held at most it, none of the unreserved pool, and the backfill
/// (alone in that pool) was never throttled.
fn check_round(reservation: Option<usize>, figures: &Value) -> Result<()> {
    let count = |field: &str| figures[field].as_u64().unwrap_or(u64::MAX);
    if count("answered_401") + count("answered_429") != count("flood_requests") {
        bail!("bad-token requests answered otherwise than 401 or 429: {figures}");
    }
    if let Some(reservation) = reservation {
        let peak = count("upload_api_peak");
        if peak > reservation as u64 {
            bail!("the upload API held {peak} executions, past its reservation of {reservation}");
        }
        if count("upload_api_peak_in_unreserved_pool") > 0 || count("backfill_throttles") > 0 {
            bail!("the upload API reached the pipeline's pool: {figures}");
        }
    }
    Ok(())
}

/// One attacker's connection: requests with bad credentials, one after another, until stopped.
async fn connection(
    n: usize,
    api: Function,
    sandboxes: Arc<Sandboxes>,
    client: reqwest::Client,
    stop: Arc<AtomicBool>,
    tally: Arc<Tally>,
) {
    let mut i = 0usize;
    while !stop.load(Ordering::SeqCst) {
        i += 1;
        tally.requests.fetch_add(1, Ordering::SeqCst);
        tokio::time::sleep(CLIENT_ROUND_TRIP).await;
        let Some(execution) = api.try_invoke() else {
            tally.throttled.fetch_add(1, Ordering::SeqCst);
            continue;
        };
        let Some(url) = sandboxes.take() else {
            tally
                .others
                .lock()
                .unwrap()
                .push("no free execution environment".into());
            continue;
        };
        let running = tally.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        tally.peak_in_flight.fetch_max(running, Ordering::SeqCst);
        let answer = invoke(&client, &url, &bad_request(n, i)).await;
        tally.in_flight.fetch_sub(1, Ordering::SeqCst);
        sandboxes.give_back(url);
        drop(execution);
        match answer {
            Ok(401) => {
                tally.unauthenticated.fetch_add(1, Ordering::SeqCst);
            }
            Ok(status) => tally
                .others
                .lock()
                .unwrap()
                .push(format!("status {status}")),
            Err(err) => tally
                .others
                .lock()
                .unwrap()
                .push(format!("invocation failed: {err:#}")),
        }
    }
}

/// The status the function answered an invocation with.
async fn invoke(client: &reqwest::Client, url: &str, event: &Value) -> Result<u64> {
    let reply = client
        .post(url)
        .json(event)
        .timeout(Duration::from_secs(30))
        .send()
        .await?;
    let body: Value = reply.json().await?;
    body["statusCode"]
        .as_u64()
        .with_context(|| format!("no statusCode in {body}"))
}

/// A function URL event (payload 2.0) with bad credentials: a made-up bearer token mostly, some
/// with none and some of another scheme; on the API's routes.
fn bad_request(connection: usize, i: usize) -> Value {
    let authorization = match i % 4 {
        0 => None,
        1 => Some("Basic YWxpY2U6c2VjcmV0".to_owned()),
        _ => Some(format!(
            "Bearer {:016x}{:016x}",
            fastrand::u64(..),
            fastrand::u64(..)
        )),
    };
    let (method, path, body) = if i.is_multiple_of(2) {
        ("GET", "/me", None)
    } else {
        (
            "POST",
            "/uploads",
            Some(r#"{"key":"photos/cat.jpg","size":1024,"content_type":"image/jpeg"}"#),
        )
    };
    let source_ip = format!("198.51.100.{}", connection % 250 + 1);
    let mut headers = json!({
        "host": "abcdefghijklmnopqrstuvwxyz012345.lambda-url.us-east-1.on.aws",
        "user-agent": "flood/1",
        "x-forwarded-proto": "https",
        "x-forwarded-for": source_ip,
    });
    if let Some(value) = authorization {
        headers["authorization"] = json!(value);
    }
    if body.is_some() {
        headers["content-type"] = json!("application/json");
    }
    json!({
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": path,
        "rawQueryString": "",
        "headers": headers,
        "requestContext": {
            "accountId": "anonymous",
            "apiId": "abcdefghijklmnopqrstuvwxyz012345",
            "domainName": "abcdefghijklmnopqrstuvwxyz012345.lambda-url.us-east-1.on.aws",
            "domainPrefix": "abcdefghijklmnopqrstuvwxyz012345",
            "http": {
                "method": method,
                "path": path,
                "protocol": "HTTP/1.1",
                "sourceIp": source_ip,
                "userAgent": "flood/1",
            },
            "requestId": format!("flood-{connection}-{i}"),
            "routeKey": "$default",
            "stage": "$default",
            "time": "01/Jun/2024:12:00:00 +0000",
            "timeEpoch": 1717243200000u64,
        },
        "body": body,
        "isBase64Encoded": false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn figures(answered: (u64, u64), peak: u64, in_unreserved: u64, throttles: u64) -> Value {
        json!({
            "flood_requests": answered.0 + answered.1,
            "answered_401": answered.0,
            "answered_429": answered.1,
            "upload_api_peak": peak,
            "upload_api_peak_in_unreserved_pool": in_unreserved,
            "backfill_throttles": throttles,
        })
    }

    #[test]
    fn a_round_within_its_reservation_passes() {
        check_round(Some(4), &figures((10, 90), 4, 0, 0)).unwrap();
        check_round(None, &figures((10, 90), 12, 12, 30)).unwrap();
    }

    #[test]
    fn broken_invariants_fail_the_round() {
        let mut other = figures((10, 90), 4, 0, 0);
        other["flood_requests"] = json!(101);
        assert!(
            check_round(Some(4), &other).is_err(),
            "an answer neither 401 nor 429"
        );
        assert!(check_round(None, &other).is_err());
        assert!(
            check_round(Some(4), &figures((10, 90), 5, 0, 0)).is_err(),
            "past the reservation"
        );
        assert!(
            check_round(Some(4), &figures((10, 90), 4, 1, 0)).is_err(),
            "in the pipeline's pool"
        );
        assert!(
            check_round(Some(4), &figures((10, 90), 4, 0, 1)).is_err(),
            "the backfill throttled"
        );
    }
}
