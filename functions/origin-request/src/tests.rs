//! The hook's behaviour on the sample events in `events/`, with a scripted queue in place of SQS.

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};
use shared::cloudfront::Event;
use shared::key::KeyError;
use shared::message::{BackfillMessage, ObservedResponse, Protocol, Trigger};
use shared::metrics::Metrics;
use time::macros::datetime;
use time::OffsetDateTime;

use crate::error::EdgeError;
use crate::hook::{Hook, Outcome, MAX_DETACHED, REPLY_MARGIN, WRITE_GRACE};
use crate::plan::{plan, Action, Backfill, FifoIds, Plan, SkipReason, FIFO_GROUPS};
use crate::queue::fake::{Answer, FakeQueue};

const S3: &str = include_str!("../../../events/origin-request-s3.json");
const DOMESTIC: &str = include_str!("../../../events/origin-request-domestic.json");
const UNMARKED: &str = include_str!("../../../events/origin-request-unmarked.json");
const POST: &str = include_str!("../../../events/origin-request-post.json");
const ENCODED_KEY: &str = include_str!("../../../events/origin-request-encoded-key.json");
const TRAVERSAL: &str = include_str!("../../../events/origin-request-traversal.json");
const RESPONSE_200: &str = include_str!("../../../events/origin-response-200.json");
const RESPONSE_404: &str = include_str!("../../../events/origin-response-404.json");

const NOW: OffsetDateTime = datetime!(2026-11-25 08:00:00.5 UTC);

fn value(sample: &str) -> Value {
    serde_json::from_str(sample).unwrap()
}

fn event(value: &Value) -> Event {
    serde_json::from_value(value.clone()).unwrap()
}

fn cf(value: &Value) -> &Value {
    &value["Records"][0]["cf"]
}

fn custom_headers(value: &mut Value) -> &mut serde_json::Map<String, Value> {
    value["Records"][0]["cf"]["request"]["origin"]["custom"]["customHeaders"]
        .as_object_mut()
        .unwrap()
}

fn set_header(value: &mut Value, name: &str, header_value: &str) {
    custom_headers(value).insert(name.into(), json!([{"key": name, "value": header_value}]));
}

/// The request as it should reach the origin: as given, less the hook's headers.
fn stripped_request(value: &Value) -> Value {
    let mut value = value.clone();
    custom_headers(&mut value).retain(|name, _| !name.starts_with("x-backfill-"));
    cf(&value)["request"].clone()
}

fn planned(value: &Value) -> Plan {
    plan(event(value), NOW).unwrap()
}

fn reply_json(plan: &Plan) -> Value {
    serde_json::to_value(&plan.reply).unwrap()
}

fn enqueued(plan: &Plan) -> &Backfill {
    match &plan.action {
        Action::Enqueue(backfill) => backfill,
        Action::Skip(reason) => panic!("expected a backfill, got a skip: {reason}"),
    }
}

fn skipped(plan: &Plan) -> &SkipReason {
    match &plan.action {
        Action::Skip(reason) => reason,
        Action::Enqueue(backfill) => panic!("expected a skip, got a backfill of {}", backfill.key),
    }
}

fn message(backfill: &Backfill) -> BackfillMessage {
    BackfillMessage::parse(&backfill.message.body).unwrap()
}

#[test]
fn s3_attempt_passes_through_unchanged() {
    let sample = value(S3);
    let plan = planned(&sample);
    assert_eq!(skipped(&plan), &SkipReason::S3Origin);
    assert_eq!(reply_json(&plan), cf(&sample)["request"]);
}

#[test]
fn unmarked_custom_origin_passes_through_unchanged() {
    let sample = value(UNMARKED);
    let plan = planned(&sample);
    assert_eq!(skipped(&plan), &SkipReason::UnmarkedOrigin);
    assert_eq!(reply_json(&plan), cf(&sample)["request"]);
}

#[test]
fn domestic_attempt_is_enqueued_and_loses_the_hooks_headers() {
    let sample = value(DOMESTIC);
    let plan = planned(&sample);
    let backfill = enqueued(&plan);
    let message = message(backfill);
    assert_eq!(message.bucket, "overseas-origin");
    assert_eq!(message.key.as_str(), "images/cat.jpg");
    assert_eq!(message.uri, "/images/cat.jpg");
    assert_eq!(message.origin.protocol, Protocol::Https);
    assert_eq!(message.origin.host, "www.example.com");
    assert_eq!(message.origin.port, 443);
    assert_eq!(message.origin.path, "");
    assert_eq!(
        message.origin_url(),
        "https://www.example.com:443/images/cat.jpg"
    );
    assert_eq!(message.request_id, cf(&sample)["config"]["requestId"]);
    assert_eq!(message.enqueued_at, NOW);
    assert_eq!(message.trigger, Trigger::OriginRequest);
    assert_eq!(message.observed, None);
    assert_eq!(
        backfill.message.queue.url,
        "https://sqs.us-east-1.amazonaws.com/123456789012/backfill"
    );
    assert_eq!(backfill.message.queue.region.as_deref(), Some("us-east-1"));
    assert_eq!(backfill.message.fifo, None);

    let reply = reply_json(&plan);
    assert_eq!(reply, stripped_request(&sample));
    // The origin's own headers stay; every other field is handed back as it came.
    let headers = &reply["origin"]["custom"]["customHeaders"];
    assert_eq!(headers.as_object().unwrap().len(), 1);
    assert_eq!(
        headers["x-origin-verify"][0]["value"],
        "shared-secret-for-the-alb"
    );
    assert_eq!(reply["origin"]["custom"]["readTimeout"], 30);
    assert_eq!(reply["headers"], cf(&sample)["request"]["headers"]);
}

#[test]
fn head_is_enqueued_and_post_is_not() {
    let mut sample = value(DOMESTIC);
    sample["Records"][0]["cf"]["request"]["method"] = json!("HEAD");
    enqueued(&planned(&sample));

    let sample = value(POST);
    let plan = planned(&sample);
    assert_eq!(skipped(&plan), &SkipReason::Method("POST".into()));
    assert!(!skipped(&plan).is_anomaly());
    assert_eq!(reply_json(&plan), stripped_request(&sample));
}

#[test]
fn encoded_uri_gives_the_decoded_key_and_the_query_string_is_ignored() {
    let sample = value(ENCODED_KEY);
    let plan = planned(&sample);
    let message = message(enqueued(&plan));
    assert_eq!(message.key.as_str(), "images/café au lait+1%/寿司 2.jpg");
    assert_eq!(message.uri, cf(&sample)["request"]["uri"]);
    assert!(!message.uri.contains('?'));
    assert_eq!(reply_json(&plan)["querystring"], "w=200&v=%2F3");
}

#[test]
fn traversal_is_refused_and_counted_as_an_anomaly() {
    let sample = value(TRAVERSAL);
    let plan = planned(&sample);
    assert_eq!(
        skipped(&plan),
        &SkipReason::InvalidKey(KeyError::DotSegment)
    );
    assert!(skipped(&plan).is_anomaly());
    assert_eq!(reply_json(&plan), stripped_request(&sample));
}

#[test]
fn key_prefix_and_origin_path_are_applied() {
    let mut sample = value(DOMESTIC);
    set_header(&mut sample, "x-backfill-key-prefix", "/mirror/");
    sample["Records"][0]["cf"]["request"]["origin"]["custom"]["path"] = json!("/static");
    let plan = planned(&sample);
    let message = message(enqueued(&plan));
    // The key is what CloudFront asks the bucket for (the S3 origin's path), the URL what it
    // asks the domestic origin for (its own origin path).
    assert_eq!(message.key.as_str(), "mirror/images/cat.jpg");
    assert_eq!(message.origin.path, "/static");
    assert_eq!(
        message.origin_url(),
        "https://www.example.com:443/static/images/cat.jpg"
    );
    assert_eq!(reply_json(&plan), stripped_request(&sample));
}

#[test]
fn bad_configuration_is_skipped_but_still_stripped() {
    let mut sample = value(DOMESTIC);
    set_header(&mut sample, "x-backfill-bucket", "Not_A_Bucket");
    let plan = planned(&sample);
    match skipped(&plan) {
        SkipReason::BadConfig(err) => assert_eq!(err.variable, "x-backfill-bucket"),
        other => panic!("{other}"),
    }
    assert_eq!(reply_json(&plan), stripped_request(&sample));
}

#[test]
fn a_miss_under_a_refused_prefix_is_not_enqueued_but_still_stripped() {
    for (uri, prefix) in [
        ("/uploads/bob/x.jpg", "uploads/"),
        // The key is the decoded path: an escaped letter names the same key.
        ("/%75ploads/bob/x.jpg", "uploads/"),
        ("/thumbnails/images/cat.jpg/160.jpg", "thumbnails/"),
    ] {
        let mut sample = value(DOMESTIC);
        set_header(
            &mut sample,
            "x-backfill-refused-prefixes",
            "uploads/,thumbnails/",
        );
        sample["Records"][0]["cf"]["request"]["uri"] = json!(uri);
        let plan = planned(&sample);
        assert_eq!(
            skipped(&plan),
            &SkipReason::RefusedPrefix(prefix.into()),
            "{uri}"
        );
        // A miss on an upload that is not there is ordinary traffic, not a fault.
        assert!(!skipped(&plan).is_anomaly());
        assert_eq!(reply_json(&plan), stripped_request(&sample), "{uri}");
    }
    for uri in [
        "/images/cat.jpg",
        "/uploads-old/x.jpg",
        "/images/uploads/x.jpg",
    ] {
        let mut sample = value(DOMESTIC);
        set_header(
            &mut sample,
            "x-backfill-refused-prefixes",
            "uploads/,thumbnails/",
        );
        sample["Records"][0]["cf"]["request"]["uri"] = json!(uri);
        enqueued(&planned(&sample));
    }
}

#[test]
fn refused_prefixes_are_compared_with_the_whole_key() {
    let mut sample = value(DOMESTIC);
    set_header(
        &mut sample,
        "x-backfill-refused-prefixes",
        "mirror/uploads/",
    );
    set_header(&mut sample, "x-backfill-key-prefix", "mirror/");
    sample["Records"][0]["cf"]["request"]["uri"] = json!("/uploads/bob/x.jpg");
    assert_eq!(
        skipped(&planned(&sample)),
        &SkipReason::RefusedPrefix("mirror/uploads/".into())
    );
    // Behind a key prefix, /uploads/... is written under it, not among the callers' files.
    set_header(&mut sample, "x-backfill-refused-prefixes", "uploads/");
    assert_eq!(
        message(enqueued(&planned(&sample))).key.as_str(),
        "mirror/uploads/bob/x.jpg"
    );
}

#[test]
fn a_bad_refused_prefix_list_is_bad_configuration() {
    let mut sample = value(DOMESTIC);
    set_header(&mut sample, "x-backfill-refused-prefixes", "uploads/,,");
    let plan = planned(&sample);
    match skipped(&plan) {
        SkipReason::BadConfig(err) => assert_eq!(err.variable, "x-backfill-refused-prefixes"),
        other => panic!("{other}"),
    }
    assert_eq!(reply_json(&plan), stripped_request(&sample));
}

#[test]
fn fifo_queue_gets_ids_from_bucket_and_key() {
    let mut sample = value(DOMESTIC);
    set_header(
        &mut sample,
        "x-backfill-queue-url",
        "https://sqs.ap-southeast-1.amazonaws.com/123456789012/backfill.fifo",
    );
    let first = planned(&sample);
    let backfill = enqueued(&first);
    let fifo = backfill.message.fifo.as_ref().unwrap();
    assert_eq!(
        backfill.message.queue.region.as_deref(),
        Some("ap-southeast-1")
    );
    assert_eq!(fifo, &FifoIds::for_object("overseas-origin", &backfill.key));
    assert_eq!(fifo.deduplication_id.len(), 64);
    assert!(fifo.deduplication_id.bytes().all(|b| b.is_ascii_hexdigit()));
    // A later viewer (another request id, another time) makes the same ids.
    sample["Records"][0]["cf"]["config"]["requestId"] = json!("another-request");
    let later = plan(event(&sample), NOW + Duration::from_secs(90)).unwrap();
    assert_eq!(enqueued(&later).message.fifo.as_ref(), Some(fifo));
    assert_ne!(enqueued(&later).message.body, backfill.message.body);
}

#[test]
fn fifo_groups_spread_keys() {
    let groups: std::collections::BTreeSet<String> = (0..500)
        .map(|i| {
            let key = shared::ObjectKey::new(format!("images/{i}.jpg")).unwrap();
            FifoIds::for_object("overseas-origin", &key).group_id
        })
        .collect();
    assert_eq!(groups.len(), usize::from(FIFO_GROUPS));
    let other_bucket = FifoIds::for_object(
        "overseas-origin-2",
        &shared::ObjectKey::new("images/1.jpg").unwrap(),
    );
    let same_key = FifoIds::for_object(
        "overseas-origin",
        &shared::ObjectKey::new("images/1.jpg").unwrap(),
    );
    assert_ne!(other_bucket.deduplication_id, same_key.deduplication_id);
}

#[test]
fn origin_response_2xx_is_enqueued_with_what_the_origin_said() {
    let sample = value(RESPONSE_200);
    let plan = planned(&sample);
    let message = message(enqueued(&plan));
    assert_eq!(message.trigger, Trigger::OriginResponse);
    assert_eq!(
        message.observed,
        Some(ObservedResponse {
            status: 200,
            content_length: Some(48213),
            etag: Some("\"9b2cf535f27731c974343645a3985328\"".into()),
            content_type: Some("image/jpeg".into()),
        })
    );
    // A response trigger hands back the response, untouched.
    assert_eq!(reply_json(&plan), cf(&sample)["response"]);
}

#[test]
fn origin_response_404_is_not_enqueued() {
    let sample = value(RESPONSE_404);
    let plan = planned(&sample);
    assert_eq!(skipped(&plan), &SkipReason::Status("404".into()));
    assert!(!skipped(&plan).is_anomaly());
    assert_eq!(reply_json(&plan), cf(&sample)["response"]);
}

#[test]
fn partial_content_reports_the_whole_objects_length() {
    let mut sample = value(RESPONSE_200);
    let response = &mut sample["Records"][0]["cf"]["response"];
    response["status"] = json!("206");
    response["headers"]["content-length"] = json!([{"key": "Content-Length", "value": "100"}]);
    response["headers"]["content-range"] =
        json!([{"key": "Content-Range", "value": "bytes 0-99/48213"}]);
    let observed = message(enqueued(&planned(&sample))).observed.unwrap();
    assert_eq!(observed.status, 206);
    assert_eq!(observed.content_length, Some(48213));

    sample["Records"][0]["cf"]["response"]["headers"]["content-range"] =
        json!([{"key": "Content-Range", "value": "bytes 0-99/*"}]);
    let observed = message(enqueued(&planned(&sample))).observed.unwrap();
    assert_eq!(observed.content_length, None);
}

#[test]
fn viewer_events_are_not_the_hooks_business() {
    let mut sample = value(DOMESTIC);
    sample["Records"][0]["cf"]["config"]["eventType"] = json!("viewer-request");
    let plan = planned(&sample);
    assert_eq!(skipped(&plan), &SkipReason::NotAnOriginEvent);
    assert_eq!(reply_json(&plan), cf(&sample)["request"]);
}

#[test]
fn unknown_fields_are_handed_back() {
    let mut sample = value(DOMESTIC);
    let request = &mut sample["Records"][0]["cf"]["request"];
    request["body"] =
        json!({"action": "read-only", "data": "", "encoding": "base64", "inputTruncated": false});
    request["origin"]["custom"]["someFutureField"] = json!({"nested": [1, 2]});
    let plan = planned(&sample);
    enqueued(&plan);
    assert_eq!(reply_json(&plan), stripped_request(&sample));
}

#[test]
fn an_event_without_a_record_is_an_error() {
    let err = plan(event(&json!({"Records": []})), NOW).unwrap_err();
    assert!(matches!(err, EdgeError::NoRecord));
}

/// EMF lines, as the hook writes them.
#[derive(Clone, Default)]
struct Lines(Arc<Mutex<Vec<u8>>>);

impl Write for Lines {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Lines {
    fn documents(&self) -> Vec<Value> {
        String::from_utf8(self.0.lock().unwrap().clone())
            .unwrap()
            .lines()
            .map(|line| serde_json::from_str(line).unwrap())
            .collect()
    }

    /// The metric names each EMF line declares, with its `Reason` when it has one.
    fn metrics(&self) -> Vec<(String, Option<String>)> {
        self.documents()
            .iter()
            .map(|doc| {
                let name = doc["_aws"]["CloudWatchMetrics"][0]["Metrics"][0]["Name"]
                    .as_str()
                    .unwrap()
                    .to_owned();
                (name, doc["Reason"].as_str().map(str::to_owned))
            })
            .collect()
    }
}

fn hook(queue: FakeQueue) -> (Hook<FakeQueue>, Lines) {
    let lines = Lines::default();
    let hook = Hook::new(queue, Metrics::new("Test"), Box::new(lines.clone()));
    (hook, lines)
}

#[tokio::test(start_paused = true)]
async fn a_burst_of_one_key_is_sent_once_per_window() {
    let (hook, lines) = hook(FakeQueue::default());
    let sample = value(DOMESTIC);
    let (reply, outcome) = hook.handle(event(&sample)).await.unwrap();
    assert!(matches!(outcome, Outcome::Enqueued { .. }), "{outcome:?}");
    assert_eq!(
        serde_json::to_value(reply).unwrap(),
        stripped_request(&sample)
    );
    for _ in 0..5 {
        let (reply, outcome) = hook.handle(event(&sample)).await.unwrap();
        assert!(matches!(outcome, Outcome::SuppressedRepeat), "{outcome:?}");
        assert_eq!(
            serde_json::to_value(reply).unwrap(),
            stripped_request(&sample)
        );
    }
    // Another key is not a repeat.
    let mut other = sample.clone();
    other["Records"][0]["cf"]["request"]["uri"] = json!("/images/dog.jpg");
    let (_, outcome) = hook.handle(event(&other)).await.unwrap();
    assert!(matches!(outcome, Outcome::Enqueued { .. }), "{outcome:?}");

    let sent = hook_queue_keys(&hook);
    assert_eq!(sent, ["images/cat.jpg", "images/dog.jpg"]);
    let metrics = lines.metrics();
    assert_eq!(metrics.len(), 7);
    assert_eq!(metrics[0], ("BackfillEnqueued".into(), None));
    assert!(metrics[1..6]
        .iter()
        .all(|m| m == &("BackfillSuppressedRepeat".to_owned(), None)));
    let first = &lines.documents()[0];
    assert!(first["BackfillSendLatency"].as_f64().unwrap() >= 0.0);
}

fn hook_queue_keys(hook: &Hook<FakeQueue>) -> Vec<String> {
    hook.queue()
        .accepted()
        .iter()
        .map(|m| BackfillMessage::parse(&m.body).unwrap().key.into_string())
        .collect()
}

#[tokio::test(start_paused = true)]
async fn the_window_is_configurable_and_expires() {
    let (hook, _) = hook(FakeQueue::default());
    let mut sample = value(DOMESTIC);
    set_header(&mut sample, "x-backfill-repeat-window", "10s");
    hook.handle(event(&sample)).await.unwrap();
    // The repeat filter uses the wall clock's monotonic time, which the paused runtime does not
    // move: wait for real.
    std::thread::sleep(Duration::from_millis(30));
    set_header(&mut sample, "x-backfill-repeat-window", "20ms");
    let (_, outcome) = hook.handle(event(&sample)).await.unwrap();
    assert!(matches!(outcome, Outcome::Enqueued { .. }), "{outcome:?}");
    set_header(&mut sample, "x-backfill-repeat-window", "0s");
    let (_, outcome) = hook.handle(event(&sample)).await.unwrap();
    assert!(matches!(outcome, Outcome::Enqueued { .. }), "{outcome:?}");
    assert_eq!(hook.queue().accepted().len(), 3);
}

#[tokio::test(start_paused = true)]
async fn a_failed_send_lets_the_request_through_and_is_tried_again_next_time() {
    let refused = Answer::Fail {
        retryable: false,
        after: Duration::from_millis(3),
    };
    let (hook, lines) = hook(FakeQueue::answering(&[refused]));
    let sample = value(DOMESTIC);
    let (reply, outcome) = hook.handle(event(&sample)).await.unwrap();
    match &outcome {
        Outcome::SendFailed { error, .. } => assert!(matches!(error, EdgeError::Queue(_))),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        serde_json::to_value(reply).unwrap(),
        stripped_request(&sample)
    );
    // A failure is not remembered as a send: the next viewer's miss tries again.
    let (_, outcome) = hook.handle(event(&sample)).await.unwrap();
    assert!(matches!(outcome, Outcome::Enqueued { .. }), "{outcome:?}");
    assert_eq!(
        lines.metrics(),
        [
            ("BackfillSendFailed".into(), Some("queue_refused".into())),
            ("BackfillEnqueued".into(), None)
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn a_slow_queue_costs_the_budget_and_the_send_goes_on() {
    let (hook, lines) = hook(FakeQueue::answering(&[Answer::Hang(Duration::from_secs(
        2,
    ))]));
    let mut sample = value(DOMESTIC);
    set_header(&mut sample, "x-backfill-send-budget", "120ms");
    let started = tokio::time::Instant::now();
    let (reply, outcome) = hook.handle(event(&sample)).await.unwrap();
    // The whole call fits in the budget, the reply's margin included.
    assert_eq!(started.elapsed(), Duration::from_millis(120) - REPLY_MARGIN);
    assert!(matches!(outcome, Outcome::Detached { .. }), "{outcome:?}");
    assert_eq!(
        serde_json::to_value(reply).unwrap(),
        stripped_request(&sample)
    );
    assert_eq!(lines.metrics(), [("BackfillSendDetached".into(), None)]);
    // A viewer missing the same key meanwhile adds no send.
    let (_, outcome) = hook.handle(event(&sample)).await.unwrap();
    assert!(matches!(outcome, Outcome::SuppressedRepeat), "{outcome:?}");
    assert_eq!(hook.in_flight(), 1);
    // The send ends on its own, and says so.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(hook.in_flight(), 0);
    assert_eq!(hook.queue().accepted().len(), 1);
    let metrics = lines.metrics();
    assert_eq!(metrics.len(), 3);
    let late = &lines.documents()[2];
    assert_eq!(late["BackfillEnqueued"].as_f64(), Some(1.0));
    assert_eq!(late["BackfillEnqueuedLate"].as_f64(), Some(1.0));
    // Its time since the miss may span freezes: not a send latency.
    assert!(late.get("BackfillSendLatency").is_none(), "{late}");
}

#[tokio::test(start_paused = true)]
async fn the_viewer_waits_until_the_request_is_on_its_way_not_for_the_answer() {
    let far = Answer::Unanswered(Duration::from_millis(220));
    let (hook, lines) = hook(FakeQueue::answering(&[far]));
    let sample = value(DOMESTIC);
    let started = tokio::time::Instant::now();
    let (reply, outcome) = hook.handle(event(&sample)).await.unwrap();
    assert_eq!(started.elapsed(), WRITE_GRACE);
    assert!(matches!(outcome, Outcome::Written { .. }), "{outcome:?}");
    assert_eq!(
        serde_json::to_value(reply).unwrap(),
        stripped_request(&sample)
    );
    assert_eq!(lines.metrics(), [("BackfillViewerWait".into(), None)]);
    // SQS's answer, a round trip later, is read by the send's task.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(hook.in_flight(), 0);
    let confirmed = &lines.documents()[1];
    assert_eq!(confirmed["BackfillEnqueued"].as_f64(), Some(1.0));
    assert_eq!(confirmed["BackfillEnqueuedLate"].as_f64(), Some(1.0));
}

#[tokio::test(start_paused = true)]
async fn a_send_that_fails_after_the_budget_is_reported_and_forgotten() {
    let refused_late = Answer::Fail {
        retryable: false,
        after: Duration::from_secs(1),
    };
    let (hook, lines) = hook(FakeQueue::answering(&[refused_late]));
    let sample = value(DOMESTIC);
    let (_, outcome) = hook.handle(event(&sample)).await.unwrap();
    assert!(matches!(outcome, Outcome::Detached { .. }), "{outcome:?}");
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        lines.metrics(),
        [
            ("BackfillSendDetached".into(), None),
            ("BackfillSendFailed".into(), Some("queue_refused".into()))
        ]
    );
    // Not remembered as sent: the next miss sends it.
    let (_, outcome) = hook.handle(event(&sample)).await.unwrap();
    assert!(matches!(outcome, Outcome::Enqueued { .. }), "{outcome:?}");
}

#[tokio::test(start_paused = true)]
async fn an_unreachable_queue_is_waited_for_one_retry_not_the_budget() {
    let unreachable = Answer::Fail {
        retryable: true,
        after: Duration::from_millis(2),
    };
    let (hook, lines) = hook(FakeQueue::answering(&[unreachable; 4]));
    let started = tokio::time::Instant::now();
    let (_, outcome) = hook.handle(event(&value(DOMESTIC))).await.unwrap();
    // Two attempts and the pause between them (at most 20 ms), not the 300 ms budget.
    assert!(
        started.elapsed() < Duration::from_millis(30),
        "{:?}",
        started.elapsed()
    );
    assert!(matches!(outcome, Outcome::Detached { .. }), "{outcome:?}");
    assert_eq!(hook.queue().attempts(), 2);
    // The send goes on at the backoff's pace and gets through.
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(hook.queue().attempts(), 5);
    assert_eq!(hook.queue().accepted().len(), 1);
    assert_eq!(lines.metrics().last().unwrap().0, "BackfillEnqueued");
}

#[tokio::test(start_paused = true)]
async fn unwaited_sends_are_bounded() {
    let hang = Answer::Hang(Duration::from_secs(3600));
    // Enough hangs for every attempt: each unwaited send tries again every ATTEMPT_TIMEOUT.
    let (hook, lines) = hook(FakeQueue::answering(&vec![hang; 10_000]));
    let mut sample = value(DOMESTIC);
    for i in 0..=MAX_DETACHED {
        sample["Records"][0]["cf"]["request"]["uri"] = json!(format!("/images/{i}.jpg"));
        let (_, outcome) = hook.handle(event(&sample)).await.unwrap();
        if i < MAX_DETACHED {
            assert!(
                matches!(outcome, Outcome::Detached { .. }),
                "{i}: {outcome:?}"
            );
        } else {
            // One more ends with its budget.
            assert!(
                matches!(
                    outcome,
                    Outcome::SendFailed {
                        error: EdgeError::Timeout(_),
                        ..
                    }
                ),
                "{outcome:?}"
            );
        }
    }
    assert_eq!(hook.in_flight(), MAX_DETACHED);
    assert_eq!(
        lines.metrics().last().unwrap(),
        &("BackfillSendFailed".to_owned(), Some("timeout".to_owned()))
    );
}

#[tokio::test]
async fn skips_are_counted_by_reason() {
    let (hook, lines) = hook(FakeQueue::default());
    for sample in [POST, TRAVERSAL, RESPONSE_404, S3] {
        let (_, outcome) = hook.handle(event(&value(sample))).await.unwrap();
        assert!(matches!(outcome, Outcome::Skipped(_)), "{outcome:?}");
    }
    let reasons: Vec<_> = lines
        .metrics()
        .into_iter()
        .map(|(name, reason)| {
            assert_eq!(name, "BackfillSkipped");
            reason.unwrap()
        })
        .collect();
    assert_eq!(reasons, ["method", "invalid_key", "status", "s3_origin"]);
    assert_eq!(hook.queue().attempts(), 0);
}

#[tokio::test]
async fn a_refused_prefix_is_counted_and_never_sent() {
    let (hook, lines) = hook(FakeQueue::default());
    let mut sample = value(DOMESTIC);
    set_header(&mut sample, "x-backfill-refused-prefixes", "uploads/");
    sample["Records"][0]["cf"]["request"]["uri"] = json!("/uploads/bob/x.jpg");
    let (reply, outcome) = hook.handle(event(&sample)).await.unwrap();
    assert!(
        matches!(outcome, Outcome::Skipped(SkipReason::RefusedPrefix(_))),
        "{outcome:?}"
    );
    assert_eq!(
        serde_json::to_value(&reply).unwrap(),
        stripped_request(&sample)
    );
    assert_eq!(
        lines.metrics(),
        [(
            "BackfillSkipped".to_owned(),
            Some("refused_prefix".to_owned())
        )]
    );
    assert_eq!(hook.queue().attempts(), 0);
}

#[tokio::test]
async fn json_in_json_out() {
    let (hook, _) = hook(FakeQueue::default());
    let reply = hook.handle_json(DOMESTIC).await.unwrap();
    let reply: Value = serde_json::from_str(&reply).unwrap();
    assert_eq!(reply, stripped_request(&value(DOMESTIC)));
    for malformed in ["not json", "{}", r#"{"Records": [{"cf": {}}]}"#] {
        let err = hook.handle_json(malformed).await.unwrap_err();
        assert!(
            matches!(err, EdgeError::InvalidEvent(_)),
            "{malformed}: {err}"
        );
    }
}

#[tokio::test]
async fn viewer_secrets_never_reach_the_logs() {
    let logs = Lines::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .json()
        .with_current_span(true)
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || writer.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    // Tests on other threads (no subscriber) may have registered the hook's span and event
    // callsites as uninteresting while this one's subscriber was being set: cached, that would
    // drop the span that carries the key. Asked again now, every callsite sees this subscriber.
    // A test thread may still register a callsite in the moment between: the span that carries
    // the key is then missing from one pass. Up to three passes, each with the cache rebuilt; the
    // secrets are looked for in everything every pass wrote.
    let mut text = String::new();
    for _pass in 0..3 {
        tracing::callsite::rebuild_interest_cache();
        let (hook, _) = hook(FakeQueue::default());
        for sample in [
            DOMESTIC,
            DOMESTIC,
            POST,
            TRAVERSAL,
            RESPONSE_200,
            RESPONSE_404,
        ] {
            hook.handle(event(&value(sample))).await.unwrap();
        }
        text = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
        if text.contains("images/cat.jpg") {
            break;
        }
    }
    assert!(text.contains("backfill enqueued"), "{text}");
    assert!(text.contains("images/cat.jpg"), "{text}");
    for secret in [
        "viewer-secret",
        "viewer-token",
        "shared-secret-for-the-alb",
        "origin-session",
    ] {
        assert!(!text.contains(secret), "{secret} in logs: {text}");
    }
}

#[tokio::test]
async fn a_panic_in_the_core_becomes_an_error() {
    use futures::FutureExt;
    let panicked = std::panic::AssertUnwindSafe(async { panic!("core failure") })
        .catch_unwind()
        .await
        .unwrap_err();
    assert_eq!(
        crate::addon::panic_message(panicked.as_ref()),
        "core failure"
    );
    let formatted = std::panic::AssertUnwindSafe(async { panic!("{} failure", "formatted") })
        .catch_unwind()
        .await
        .unwrap_err();
    assert_eq!(
        crate::addon::panic_message(formatted.as_ref()),
        "formatted failure"
    );
}
