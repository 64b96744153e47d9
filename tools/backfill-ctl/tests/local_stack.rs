//! The real `backfill-ctl` binary against the local AWS stand-ins (moto), every command and its
//! bad input. Run by `scripts/test`, which starts the stack and exports its environment.

mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use aws_sdk_dynamodb::types::AttributeValue;
use aws_sdk_sqs::types::{MessageAttributeValue, MessageSystemAttributeName};
use common::{ctl, serve, unique, QueuePair, Stack, TempFile};
use serde_json::Value;
use shared::change::{ChangeKind, ChangeMessage, Scope};
use shared::message::{BackfillMessage, FifoIds, Trigger};
use shared::ObjectKey;
use time::OffsetDateTime;

const ORIGIN: &str = "https://www.example.com:8443/static";

fn prewarm_args<'a>(bucket: &'a str, queue: &'a str) -> Vec<&'a str> {
    vec![
        "prewarm",
        "--bucket",
        bucket,
        "--origin",
        ORIGIN,
        "--queue-url",
        queue,
    ]
}

fn backfills(messages: &[aws_sdk_sqs::types::Message]) -> Vec<BackfillMessage> {
    messages
        .iter()
        .map(|m| BackfillMessage::parse(m.body().unwrap()).expect("a valid backfill message"))
        .collect()
}

fn keys_of(messages: &[BackfillMessage]) -> BTreeSet<String> {
    messages.iter().map(|m| m.key.to_string()).collect()
}

#[tokio::test]
async fn prewarm_sends_what_is_missing_and_reports_the_rest() {
    let stack = Stack::new().await;
    let queues = stack.queue_pair("prewarm", false).await;
    let bucket = stack.bucket().await;
    stack
        .put(&bucket, "pre/present.jpg", b"already here", "image/jpeg")
        .await;
    let list = TempFile::new(
        "# keys to warm\n\
         pre/a.jpg\n\
         pre/b c.jpg\n\
         /pre/present.jpg\n\
         pre/../etc/passwd\n\
         pre/a.jpg\n\
         \n\
         pre/café.png\n"
            .as_bytes(),
    );
    let mut args = prewarm_args(&bucket, &queues.url);
    args.extend(["--keys", list.path()]);
    let run = ctl(&args, None);
    run.assert_code(1)
        .stdout_has("5 keys listed, 1 repeated lines ignored\n")
        .stdout_has("sent: 3\n")
        .stdout_has("skipped (already in the bucket): 1\n")
        .stdout_has(
            "invalid: 1\n  line 5: \"pre/../etc/passwd\": key has a '.' or '..' path segment\n",
        )
        .stdout_has("failed: 0\n");
    let request_id = request_id_of(&run);

    let messages = backfills(&stack.receive_all(&queues.url).await);
    assert_eq!(
        keys_of(&messages),
        BTreeSet::from([
            "pre/a.jpg".into(),
            "pre/b c.jpg".into(),
            "pre/café.png".into()
        ])
    );
    for message in &messages {
        assert_eq!(message.trigger, Trigger::Operator);
        assert_eq!(message.bucket, bucket);
        assert_eq!(message.request_id, request_id);
        assert_eq!(message.uri, message.key.to_uri_path());
        assert_eq!(
            message.origin_url(),
            format!("https://www.example.com:8443/static{}", message.uri)
        );
    }
    stack.delete_queues(&queues).await;
    stack.delete_bucket(&bucket).await;
}

#[tokio::test]
async fn prewarm_reads_standard_input_and_keeps_the_rate() {
    let stack = Stack::new().await;
    let queues = stack.queue_pair("rate", false).await;
    let keys: String = (0..12).map(|i| format!("rate/{i}.jpg\n")).collect();
    // --no-check: the bucket is not asked, so it need not exist.
    let mut args = prewarm_args("no-such-bucket-for-ctl", &queues.url);
    args.extend(["--keys", "-", "--no-check", "--rate", "4"]);
    let started = Instant::now();
    let run = ctl(&args, Some(&keys));
    let elapsed = started.elapsed();
    run.assert_code(0).stdout_has("sent: 12\n");
    // Batches of 4 at 4 a second: the second and third wait a second each.
    assert!(elapsed >= Duration::from_secs(2), "{elapsed:?}");
    assert_eq!(stack.receive_all(&queues.url).await.len(), 12);
    stack.delete_queues(&queues).await;
}

#[tokio::test]
async fn prewarm_on_a_fifo_queue_uses_the_edge_hooks_ids() {
    let stack = Stack::new().await;
    let queues = stack.queue_pair("fifo", true).await;
    let list = TempFile::new(b"fifo/a.jpg\nfifo/b.jpg\nfifo/c.jpg\n");
    let mut args = prewarm_args("overseas-origin", &queues.url);
    args.extend(["--keys", list.path(), "--no-check"]);
    ctl(&args, None).assert_code(0).stdout_has("sent: 3\n");
    // Within five minutes the same objects are dropped as repeats.
    ctl(&args, None).assert_code(0).stdout_has("sent: 3\n");
    assert_eq!(stack.depth(&queues.url).await, (3, 0));
    let received = stack.receive_all(&queues.url).await;
    assert_eq!(received.len(), 3);
    for message in &received {
        let backfill = BackfillMessage::parse(message.body().unwrap()).unwrap();
        let ids = FifoIds::for_object("overseas-origin", &backfill.key);
        let attributes = message.attributes().unwrap();
        assert_eq!(
            attributes[&MessageSystemAttributeName::MessageGroupId],
            ids.group_id
        );
        assert_eq!(
            attributes[&MessageSystemAttributeName::MessageDeduplicationId],
            ids.deduplication_id
        );
    }
    stack.delete_queues(&queues).await;
}

#[tokio::test]
async fn prewarm_lists_a_prefix_from_a_manifest() {
    let stack = Stack::new().await;
    let queues = stack.queue_pair("manifest", false).await;
    let bucket = stack.bucket().await;
    let manifest = "# origin manifest\n/images/a.jpg\n/images/b b.jpg\n/video/c.mp4\n";
    let server = serve("/manifest.txt", manifest);
    let url = format!("{server}/manifest.txt");
    let mut args = prewarm_args(&bucket, &queues.url);
    args.extend([
        "--from-manifest",
        &url,
        "--prefix",
        "images/",
        "--key-prefix",
        "mirror/",
    ]);
    ctl(&args, None)
        .assert_code(0)
        .stdout_has("2 keys listed, 1 outside the prefix\n")
        .stdout_has("sent: 2\n");
    let messages = backfills(&stack.receive_all(&queues.url).await);
    assert_eq!(
        keys_of(&messages),
        BTreeSet::from(["mirror/images/a.jpg".into(), "mirror/images/b b.jpg".into()])
    );
    let uris: BTreeSet<&str> = messages.iter().map(|m| m.uri.as_str()).collect();
    assert_eq!(uris, BTreeSet::from(["/images/a.jpg", "/images/b%20b.jpg"]));

    let file = TempFile::new(manifest.as_bytes());
    let mut args = prewarm_args(&bucket, &queues.url);
    args.extend(["--from-manifest", file.path(), "--prefix", "video/"]);
    ctl(&args, None).assert_code(0).stdout_has("sent: 1\n");

    let missing = format!("{server}/no-such-manifest.txt");
    let mut args = prewarm_args(&bucket, &queues.url);
    args.extend(["--from-manifest", &missing]);
    ctl(&args, None).assert_code(1).stderr_has(&format!(
        "cannot fetch manifest {missing}: the server answered 404"
    ));
    stack.delete_queues(&queues).await;
    stack.delete_bucket(&bucket).await;
}

#[tokio::test]
async fn prewarm_refuses_bad_input_clearly() {
    let stack = Stack::new().await;
    let queues = stack.queue_pair("bad-input", false).await;
    let bucket = stack.bucket().await;
    let list = TempFile::new(b"bad/a.jpg\n");

    let mut args = prewarm_args(&bucket, &queues.url);
    args.extend(["--keys", "/nonexistent/keys.txt"]);
    ctl(&args, None)
        .assert_code(1)
        .stderr_has("cannot read key list /nonexistent/keys.txt: No such file or directory");

    let not_text = TempFile::new(b"bad/a.jpg\n\xff\xfe\n");
    let mut args = prewarm_args(&bucket, &queues.url);
    args.extend(["--keys", not_text.path()]);
    ctl(&args, None)
        .assert_code(1)
        .stderr_has("is not UTF-8 text");

    let missing_queue = format!("{}/123456789012/{}", stack.endpoint, unique("missing"));
    let mut args = prewarm_args(&bucket, &missing_queue);
    args.extend(["--keys", list.path()]);
    ctl(&args, None)
        .assert_code(1)
        .stderr_has(&format!("queue {missing_queue} does not exist"));

    let mut args = prewarm_args("no-such-bucket-for-ctl", &queues.url);
    args.extend(["--keys", list.path()]);
    ctl(&args, None)
        .assert_code(1)
        .stderr_has("bucket no-such-bucket-for-ctl does not exist");

    let invalid_only = TempFile::new(b"a/./b\n/\n");
    let mut args = prewarm_args(&bucket, &queues.url);
    args.extend(["--keys", invalid_only.path()]);
    ctl(&args, None)
        .assert_code(1)
        .stdout_has("sent: 0\n")
        .stdout_has("invalid: 2\n")
        .stdout_has("line 2: \"/\": key is empty");

    let bad_origin = [
        "prewarm",
        "--bucket",
        &bucket,
        "--origin",
        "ftp://www.example.com",
        "--queue-url",
        &queues.url,
        "--keys",
        list.path(),
    ];
    ctl(&bad_origin, None)
        .assert_code(2)
        .stderr_has("--origin")
        .stderr_has("the scheme must be http or https");
    ctl(&prewarm_args(&bucket, &queues.url), None)
        .assert_code(2)
        .stderr_has("--keys");

    assert_eq!(stack.depth(&queues.url).await, (0, 0));
    stack.delete_queues(&queues).await;
    stack.delete_bucket(&bucket).await;
}

fn status_rows(stdout: &str) -> Vec<Value> {
    serde_json::from_str::<Value>(stdout)
        .expect("status --json prints JSON")
        .as_array()
        .expect("an array of queues")
        .clone()
}

#[tokio::test]
async fn status_counts_waiting_in_flight_and_dead_letters() {
    let stack = Stack::new().await;
    let backfill = stack.queue_pair("status-backfill", false).await;
    let image = stack.queue_pair("status-image", false).await;
    for i in 0..3 {
        stack.send(&backfill.url, &format!("waiting {i}")).await;
    }
    stack.send(&backfill.dlq_url, "dead").await;
    stack.send(&image.dlq_url, "dead").await;
    stack.send(&image.dlq_url, "dead too").await;
    // One message in flight.
    stack
        .sqs
        .receive_message()
        .queue_url(&backfill.url)
        .visibility_timeout(300)
        .send()
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;

    let run = ctl(
        &[
            "status",
            "--backfill-queue-url",
            &backfill.url,
            "--image-queue-url",
            &image.url,
            "--json",
        ],
        None,
    );
    run.assert_code(0);
    let rows = status_rows(&run.stdout);
    let roles: Vec<&str> = rows.iter().map(|r| r["role"].as_str().unwrap()).collect();
    assert_eq!(roles, ["backfill", "backfill DLQ", "image", "image DLQ"]);
    let counts = |row: &Value| {
        (
            row["visible"].as_u64().unwrap(),
            row["in_flight"].as_u64().unwrap(),
        )
    };
    assert_eq!(counts(&rows[0]), (2, 1));
    assert_eq!(rows[0]["max_receive_count"], 5);
    assert!(
        rows[0]["oldest_age_seconds"].as_u64().unwrap() >= 1,
        "{rows:?}"
    );
    assert_eq!(counts(&rows[1]), (1, 0));
    assert_eq!(rows[1]["url"], backfill.dlq_url.as_str());
    assert_eq!(counts(&rows[2]), (0, 0));
    assert_eq!(rows[2]["oldest_age_seconds"], Value::Null);
    assert_eq!(counts(&rows[3]), (2, 0));
    assert!(rows[3]["oldest_age_seconds"].as_u64().unwrap() >= 1);

    let table = ctl(&["status", "--backfill-queue-url", &backfill.url], None);
    table
        .assert_code(0)
        .stdout_has("QUEUE         VISIBLE  IN FLIGHT  DELAYED  OLDEST")
        .stdout_has("backfill DLQ ");
    let quiet = ctl(
        &[
            "status",
            "--backfill-queue-url",
            &backfill.url,
            "--no-age",
            "--json",
        ],
        None,
    );
    let rows = status_rows(&quiet.assert_code(0).stdout);
    assert_eq!(rows[0]["oldest_age_seconds"], Value::Null);
    // The peeks left the messages where they were.
    assert_eq!(stack.depth(&backfill.url).await, (2, 1));
    stack.delete_queues(&backfill).await;
    stack.delete_queues(&image).await;
}

/// A CloudWatch client of `region` on the local stack (moto keeps each region's metrics apart by
/// the region signed).
async fn cloudwatch(region: &str) -> aws_sdk_cloudwatch::Client {
    let config = shared::aws::load_config().await;
    aws_sdk_cloudwatch::Client::from_conf(
        aws_sdk_cloudwatch::config::Builder::from(&config)
            .region(aws_config::Region::new(region.to_owned()))
            .build(),
    )
}

/// Puts one datapoint, `minutes_ago`, with the dimensions in the order the EMF line writes them.
async fn put_metric(
    region: &str,
    name: &str,
    dimensions: &[(&str, &str)],
    value: f64,
    minutes_ago: i64,
) {
    let timestamp = OffsetDateTime::now_utc().unix_timestamp() - minutes_ago * 60;
    let datum = aws_sdk_cloudwatch::types::MetricDatum::builder()
        .metric_name(name)
        .set_dimensions(Some(
            dimensions
                .iter()
                .map(|(n, v)| {
                    aws_sdk_cloudwatch::types::Dimension::builder()
                        .name(*n)
                        .value(*v)
                        .build()
                })
                .collect(),
        ))
        .value(value)
        .timestamp(aws_smithy_types::DateTime::from_secs(timestamp))
        .build();
    cloudwatch(region)
        .await
        .put_metric_data()
        .namespace("OverseasOrigin")
        .metric_data(datum)
        .send()
        .await
        .unwrap_or_else(|err| {
            panic!(
                "PutMetricData in {region}: {err:?}; a moto started before scripts/moto_server.py \
                 translated CloudWatch's CBOR protocol does not answer it: restart the local stack"
            )
        });
}

#[tokio::test]
async fn status_reads_the_regional_figures_from_cloudwatch() {
    let stack = Stack::new().await;
    let edge = unique("edge");
    let replica = format!("us-east-1.{edge}");
    let (sg, sa) = (unique("backfill-sg"), unique("backfill-sa"));
    let hook = |bucket_region: &'static str| {
        [
            ("FunctionName", replica.clone()),
            ("BucketRegion", bucket_region.to_owned()),
        ]
    };
    let put_hook = |region: &'static str,
                    name: &'static str,
                    bucket_region: &'static str,
                    value: f64,
                    minutes_ago: i64| {
        let dimensions = hook(bucket_region);
        async move {
            let dimensions: Vec<(&str, &str)> =
                dimensions.iter().map(|(n, v)| (*n, v.as_str())).collect();
            put_metric(region, name, &dimensions, value, minutes_ago).await;
        }
    };
    // Two edge regions' replicas, for two bucket regions.
    put_hook("eu-west-1", "RegionalRequests", "ap-southeast-1", 400.0, 5).await;
    put_hook(
        "eu-west-1",
        "RegionalRequests",
        "ap-southeast-1",
        200.0,
        120,
    )
    .await;
    put_hook("eu-west-1", "RegionalFallbacks", "ap-southeast-1", 30.0, 5).await;
    put_hook("eu-west-1", "RegionalRequests", "sa-east-1", 100.0, 5).await;
    put_hook("ap-south-1", "RegionalRequests", "ap-southeast-1", 400.0, 5).await;
    put_hook("ap-south-1", "RegionalFallbacks", "ap-southeast-1", 20.0, 5).await;
    put_hook("ap-south-1", "RegionalFallbacks", "sa-east-1", 25.0, 5).await;
    // Outside the window, in an edge region not read, and an unknown bucket region: not counted.
    put_hook(
        "eu-west-1",
        "RegionalRequests",
        "ap-southeast-1",
        9000.0,
        26 * 60,
    )
    .await;
    put_hook("us-east-1", "RegionalRequests", "ap-southeast-1", 9000.0, 5).await;
    put_hook("eu-west-1", "RegionalRequests", "unknown", 9000.0, 5).await;
    // The backfill functions' bytes, in their buckets' regions; other outcomes are not copies.
    put_metric(
        "ap-southeast-1",
        "Bytes",
        &[("FunctionName", &sg), ("Outcome", "copied")],
        1024.0 * 1024.0 * 1024.0,
        5,
    )
    .await;
    put_metric(
        "ap-southeast-1",
        "Bytes",
        &[("FunctionName", &sg), ("Outcome", "copied")],
        512.0 * 1024.0 * 1024.0,
        60,
    )
    .await;
    put_metric(
        "ap-southeast-1",
        "PartBytes",
        &[("FunctionName", &sg), ("Outcome", "part_uploaded")],
        7.0,
        5,
    )
    .await;
    put_metric(
        "ap-southeast-1",
        "Bytes",
        &[("FunctionName", &sg), ("Outcome", "refreshed")],
        7.0,
        5,
    )
    .await;
    put_metric(
        "sa-east-1",
        "Bytes",
        &[("FunctionName", &sa), ("Outcome", "copied")],
        2048.0,
        5,
    )
    .await;

    let regional_sg = format!("ap-southeast-1={sg}");
    let regional_sa = format!("sa-east-1={sa}");
    let args = |edge_regions: &'static str, json: bool| {
        let mut args = vec![
            "status".to_owned(),
            "--edge-function".to_owned(),
            edge.clone(),
            "--edge-regions".to_owned(),
            edge_regions.to_owned(),
            "--regional".to_owned(),
            regional_sg.clone(),
            "--regional".to_owned(),
            regional_sa.clone(),
            "--since".to_owned(),
            "24h".to_owned(),
        ];
        if json {
            args.push("--json".to_owned());
        }
        args
    };
    let run_with = |args: Vec<String>| {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        ctl(&args, None)
    };

    let run = run_with(args("eu-west-1,ap-south-1", true));
    run.assert_code(0);
    let report: Value = serde_json::from_str(&run.stdout).expect("status --json prints JSON");
    assert_eq!(report["queues"], serde_json::json!([]));
    assert!(report.get("freshness").is_none(), "{report}");
    let regional = &report["regional"];
    assert_eq!(regional["edge_function"], replica.as_str());
    assert_eq!(regional["since_seconds"], 86_400);
    assert_eq!(
        regional["edge_regions_read"],
        serde_json::json!(["eu-west-1", "ap-south-1"])
    );
    let row = |i: usize| {
        let row = &regional["regions"][i];
        (
            row["region"].as_str().unwrap().to_owned(),
            row["origin_fetches"].as_u64(),
            row["served_by_bucket"].as_u64(),
            row["served_share"].as_f64(),
            row["fallbacks"].as_u64(),
            row["fallback_rate"].as_f64(),
            row["bytes_backfilled"].as_u64(),
        )
    };
    assert_eq!(
        row(0),
        (
            "ap-southeast-1".into(),
            Some(1000),
            Some(950),
            Some(0.95),
            Some(50),
            Some(0.05),
            Some(1536 << 20)
        )
    );
    assert_eq!(
        row(1),
        (
            "sa-east-1".into(),
            Some(100),
            Some(75),
            Some(0.75),
            Some(25),
            Some(0.25),
            Some(2048)
        )
    );

    let table = run_with(args("eu-west-1,ap-south-1", false));
    table
        .assert_code(0)
        .stdout_has(
            "REGION          ORIGIN FETCHES  SERVED BY BUCKET   FALLBACKS  BYTES BACKFILLED",
        )
        .stdout_has(
            "ap-southeast-1            1000       950 (95.0%)   50 (5.0%)           1.5 GiB",
        )
        .stdout_has(
            "sa-east-1                  100        75 (75.0%)  25 (25.0%)           2.0 KiB",
        )
        .stdout_has("2 of 2 edge regions read");

    // A region moto cannot serve stands for one that is not enabled: named, the rest shown.
    let partial = run_with(args("eu-west-1,xx-nowhere-1,ap-south-1", true));
    partial
        .assert_code(1)
        .stderr_has("backfill-ctl: warning: edge region xx-nowhere-1 could not be read");
    let report: Value = serde_json::from_str(&partial.stdout).expect("JSON despite the warning");
    assert_eq!(report["regional"]["regions"][0]["origin_fetches"], 1000);
    assert_eq!(
        report["regional"]["unreadable"][0]["region"],
        "xx-nowhere-1"
    );

    // With a queue: the queue's rows as before, the regional report beside them.
    let queues = stack.queue_pair("status-regional", false).await;
    let mut with_queue = args("eu-west-1", true);
    with_queue.extend([
        "--backfill-queue-url".to_owned(),
        queues.url.clone(),
        "--no-age".to_owned(),
    ]);
    let run = run_with(with_queue);
    let report: Value = serde_json::from_str(&run.assert_code(0).stdout).unwrap();
    assert_eq!(report["queues"][0]["role"], "backfill");
    assert_eq!(report["regional"]["regions"][0]["origin_fetches"], 600);
    stack.delete_queues(&queues).await;
}

#[tokio::test]
async fn status_names_a_missing_queue() {
    let stack = Stack::new().await;
    let queues = stack.queue_pair("status-missing", false).await;
    let missing = format!("{}/123456789012/{}", stack.endpoint, unique("missing"));
    let run = ctl(
        &[
            "status",
            "--backfill-queue-url",
            &queues.url,
            "--image-queue-url",
            &missing,
        ],
        None,
    );
    run.assert_code(1)
        .stdout_has("backfill DLQ")
        .stderr_has(&format!("queue {missing} does not exist"));
    ctl(&["status"], None)
        .assert_code(2)
        .stderr_has("--backfill-queue-url");
    stack.delete_queues(&queues).await;
}

async fn send_dead_letter(stack: &Stack, queues: &QueuePair, body: &str, fifo_group: Option<&str>) {
    let mut request = stack
        .sqs
        .send_message()
        .queue_url(&queues.dlq_url)
        .message_body(body)
        .message_attributes(
            "origin",
            MessageAttributeValue::builder()
                .data_type("String")
                .string_value("edge")
                .build()
                .unwrap(),
        );
    if let Some(group) = fifo_group {
        request = request
            .message_group_id(group)
            .message_deduplication_id(format!("{group}-{body}"));
    }
    request.send().await.unwrap();
}

#[tokio::test]
async fn redrive_moves_dead_letters_back_after_a_dry_run() {
    let stack = Stack::new().await;
    let queues = stack.queue_pair("redrive", false).await;
    for body in ["one", "two", "three"] {
        send_dead_letter(&stack, &queues, body, None).await;
    }

    let run = ctl(&["redrive", "--queue-url", &queues.url, "--dry-run"], None);
    run.assert_code(0)
        .stdout_has(&format!(
            "dry run: would move from {} (3 waiting) to {}",
            queues.dlq_url, queues.url
        ))
        .stdout_has("would move: 3\n")
        .stdout_has("\"two\"");
    assert_eq!(run.stdout.matches("  sent ").count(), 3, "{run:?}");
    assert_eq!(stack.depth(&queues.dlq_url).await, (3, 0));
    assert_eq!(stack.depth(&queues.url).await, (0, 0));

    ctl(&["redrive", "--queue-url", &queues.url, "--max", "2"], None)
        .assert_code(0)
        .stdout_has("moved: 2\n");
    assert_eq!(stack.depth(&queues.url).await, (2, 0));
    assert_eq!(stack.depth(&queues.dlq_url).await, (1, 0));

    ctl(&["redrive", "--queue-url", &queues.url], None)
        .assert_code(0)
        .stdout_has("moved: 1\n");
    assert_eq!(stack.depth(&queues.dlq_url).await, (0, 0));
    let moved = stack.receive_all(&queues.url).await;
    let bodies: BTreeSet<&str> = moved.iter().map(|m| m.body().unwrap()).collect();
    assert_eq!(bodies, BTreeSet::from(["one", "two", "three"]));
    for message in &moved {
        let attribute = &message.message_attributes().unwrap()["origin"];
        assert_eq!(attribute.string_value(), Some("edge"));
    }
    stack.delete_queues(&queues).await;
}

#[tokio::test]
async fn redrive_keeps_fifo_message_groups() {
    let stack = Stack::new().await;
    let queues = stack.queue_pair("redrive-fifo", true).await;
    send_dead_letter(&stack, &queues, "first", Some("backfill-01")).await;
    send_dead_letter(&stack, &queues, "second", Some("backfill-02")).await;
    ctl(&["redrive", "--queue-url", &queues.url], None)
        .assert_code(0)
        .stdout_has("moved: 2\n");
    let moved = stack.receive_all(&queues.url).await;
    let groups: BTreeSet<(&str, &str)> = moved
        .iter()
        .map(|m| {
            (
                m.body().unwrap(),
                m.attributes().unwrap()[&MessageSystemAttributeName::MessageGroupId].as_str(),
            )
        })
        .collect();
    assert_eq!(
        groups,
        BTreeSet::from([("first", "backfill-01"), ("second", "backfill-02")])
    );
    for message in &moved {
        let dedup =
            &message.attributes().unwrap()[&MessageSystemAttributeName::MessageDeduplicationId];
        assert!(dedup.starts_with("redrive-"), "{dedup}");
    }
    stack.delete_queues(&queues).await;
}

#[tokio::test]
async fn redrive_names_what_is_missing() {
    let stack = Stack::new().await;
    let lonely = stack.queue(&unique("no-dlq"), false, None).await;
    ctl(&["redrive", "--queue-url", &lonely], None)
        .assert_code(1)
        .stderr_has("has no RedrivePolicy naming its DLQ: give --dlq-url");
    let missing = format!("{}/123456789012/{}", stack.endpoint, unique("missing"));
    ctl(&["redrive", "--queue-url", &missing], None)
        .assert_code(1)
        .stderr_has(&format!("queue {missing} does not exist"));
    ctl(
        &["redrive", "--queue-url", &lonely, "--dlq-url", &missing],
        None,
    )
    .assert_code(1)
    .stderr_has(&format!("queue {missing} does not exist"));
    let _ = stack.sqs.delete_queue().queue_url(&lonely).send().await;
}

#[tokio::test]
async fn check_reports_objects_metadata_and_thumbnails() {
    let stack = Stack::new().await;
    let bucket = stack.bucket().await;
    stack
        .put_with_metadata(
            &bucket,
            "images/a b.jpg",
            &[1; 2048],
            "image/jpeg",
            &[("origin-etag", "\"abc\"")],
        )
        .await;
    for rendition in ["160.jpg", "320.jpg"] {
        stack
            .put(
                &bucket,
                &format!("thumbnails/images/a b.jpg/{rendition}"),
                &[2; 100],
                "image/jpeg",
            )
            .await;
    }
    // Another source's renditions, sharing the first characters.
    stack
        .put(
            &bucket,
            "thumbnails/images/a b.jpg2/160.jpg",
            b"x",
            "image/jpeg",
        )
        .await;

    ctl(&["check", "--bucket", &bucket, "images/a b.jpg"], None)
        .assert_code(0)
        .stdout_has("images/a b.jpg: in the bucket\n  size: 2048 bytes\n  content type: image/jpeg\n")
        .stdout_has("  metadata:\n    origin-etag: \"abc\"\n")
        .stdout_has("  thumbnails under thumbnails/images/a b.jpg/: 2\n    thumbnails/images/a b.jpg/160.jpg  100 bytes\n    thumbnails/images/a b.jpg/320.jpg  100 bytes\n");

    let run = ctl(
        &[
            "check",
            "--bucket",
            &bucket,
            "--json",
            "/images/a b.jpg",
            "images/missing.jpg",
            "a/../b",
        ],
        None,
    );
    run.assert_code(1);
    let reports: Value = serde_json::from_str(&run.stdout).unwrap();
    let reports = reports.as_array().unwrap();
    assert_eq!(reports.len(), 3);
    assert_eq!(reports[0]["key"], "a/../b");
    assert!(reports[0]["error"]
        .as_str()
        .unwrap()
        .starts_with("invalid key: key has a '.' or '..' path segment"));
    assert_eq!(reports[1]["present"], true);
    assert_eq!(reports[1]["object"]["size"], 2048);
    assert_eq!(reports[1]["object"]["metadata"]["origin-etag"], "\"abc\"");
    assert_eq!(reports[1]["thumbnails"].as_array().unwrap().len(), 2);
    assert_eq!(reports[2]["present"], false);

    ctl(
        &[
            "check",
            "--bucket",
            &bucket,
            "--thumbnail-prefix",
            "renditions/",
            "images/missing.jpg",
        ],
        None,
    )
    .assert_code(1)
    .stdout_has("images/missing.jpg: not in the bucket\n  thumbnails under renditions/images/missing.jpg/: none\n");

    ctl(
        &["check", "--bucket", "no-such-bucket-for-ctl", "a.jpg"],
        None,
    )
    .assert_code(1)
    .stderr_has("bucket no-such-bucket-for-ctl does not exist");
    ctl(&["check", "--bucket", &bucket], None)
        .assert_code(2)
        .stderr_has("<KEY>");
    stack.delete_bucket(&bucket).await;
}

fn change_args<'a>(command: &'a str, bucket: &'a str, queue: &'a str) -> Vec<&'a str> {
    let mut args = prewarm_args(bucket, queue);
    args[0] = command;
    args
}

fn changes(messages: &[aws_sdk_sqs::types::Message]) -> Vec<ChangeMessage> {
    messages
        .iter()
        .map(|m| ChangeMessage::parse(m.body().unwrap()).expect("a valid change message"))
        .collect()
}

fn request_id_of(run: &common::Run) -> String {
    run.stdout
        .lines()
        .find_map(|l| l.strip_prefix("request id: "))
        .expect("the run id is printed")
        .to_owned()
}

#[tokio::test]
async fn refresh_sends_a_change_a_key_and_purge_one_for_a_prefix() {
    let stack = Stack::new().await;
    let queues = stack.queue_pair("refresh", false).await;
    // The bucket is not asked: it need not exist.
    let bucket = "no-such-bucket-for-ctl";
    let list = TempFile::new(
        "# changed at home\n/chg/a.jpg\nchg/b c.jpg\nchg/../etc/passwd\nchg/a.jpg\nother/d.jpg\n"
            .as_bytes(),
    );
    let mut args = change_args("refresh", bucket, &queues.url);
    args.extend([
        "--keys",
        list.path(),
        "--key-prefix",
        "mirror/",
        "--prefix",
        "chg/",
    ]);
    let run = ctl(&args, None);
    run.assert_code(1)
        .stdout_has("3 keys listed, 1 repeated lines ignored, 1 outside the prefix\n")
        .stdout_has("sent: 2\n")
        .stdout_has(
            "invalid: 1\n  line 4: \"chg/../etc/passwd\": key has a '.' or '..' path segment\n",
        )
        .stdout_has("failed: 0\n");
    assert!(!run.stdout.contains("skipped"), "{run:?}");
    let request_id = request_id_of(&run);
    let sent = changes(&stack.receive_all(&queues.url).await);
    let mut keys: Vec<(&str, Option<&str>)> = sent
        .iter()
        .map(|c| {
            let Scope::Key(key) = c.scope() else {
                panic!("a key change: {c:?}")
            };
            (key.as_str(), c.uri.as_deref())
        })
        .collect();
    keys.sort();
    assert_eq!(
        keys,
        [
            ("mirror/chg/a.jpg", Some("/chg/a.jpg")),
            ("mirror/chg/b c.jpg", Some("/chg/b%20c.jpg"))
        ]
    );
    for change in &sent {
        assert_eq!(change.kind, ChangeKind::Refresh);
        assert_eq!(change.bucket, bucket);
        assert_eq!(change.request_id, request_id);
        let copy = change.copy("mirror/").unwrap().unwrap();
        assert!(
            copy.origin_url()
                .starts_with("https://www.example.com:8443/static/chg/"),
            "{}",
            copy.origin_url()
        );
    }

    let mut args = change_args("purge", bucket, &queues.url);
    args.extend(["--prefix", "/chg/", "--key-prefix", "mirror/"]);
    let run = ctl(&args, None);
    run.assert_code(0)
        .stdout_has("every object under the key prefix \"mirror/chg/\"\nsent: 1\n");
    let sent = changes(&stack.receive_all(&queues.url).await);
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].kind, ChangeKind::Purge);
    assert_eq!(sent[0].scope(), Scope::Prefix("mirror/chg/"));
    assert_eq!(sent[0].uri, None);
    assert_eq!(sent[0].request_id, request_id_of(&run));

    let mut args = change_args("purge", bucket, &queues.url);
    args.extend(["--keys", "-"]);
    ctl(&args, Some("gone/x.mp4\ngone/y.mp4\n"))
        .assert_code(0)
        .stdout_has("2 keys listed\nsent: 2\n");
    let sent = changes(&stack.receive_all(&queues.url).await);
    assert!(sent.iter().all(|c| c.kind == ChangeKind::Purge));
    assert_eq!(sent.len(), 2);
    stack.delete_queues(&queues).await;
}

#[tokio::test]
async fn changes_on_a_fifo_queue_follow_the_copies_of_their_key() {
    let stack = Stack::new().await;
    let queues = stack.queue_pair("change-fifo", true).await;
    let list = TempFile::new(b"fifo-change/a.jpg\n");
    let bucket = "overseas-origin";
    let mut prewarm = prewarm_args(bucket, &queues.url);
    prewarm.extend(["--keys", list.path(), "--no-check"]);
    ctl(&prewarm, None).assert_code(0).stdout_has("sent: 1\n");
    // Each within five minutes of the copy and of one another: none is dropped as a repeat.
    for command in ["refresh", "purge", "refresh"] {
        let mut args = change_args(command, bucket, &queues.url);
        args.extend(["--keys", list.path()]);
        ctl(&args, None).assert_code(0).stdout_has("sent: 1\n");
    }
    let mut whole = change_args("refresh", bucket, &queues.url);
    whole.extend(["--prefix", "fifo-change/"]);
    ctl(&whole, None).assert_code(0).stdout_has("sent: 1\n");
    assert_eq!(stack.depth(&queues.url).await, (5, 0));

    let received = stack.drain(&queues.url).await;
    let key = ObjectKey::new("fifo-change/a.jpg").unwrap();
    let copy_ids = FifoIds::for_object(bucket, &key);
    let attribute =
        |message: &aws_sdk_sqs::types::Message, name| message.attributes().unwrap()[&name].clone();
    let mut of_key = Vec::new();
    let mut deduplication_ids = BTreeSet::new();
    for message in &received {
        deduplication_ids.insert(attribute(
            message,
            MessageSystemAttributeName::MessageDeduplicationId,
        ));
        let body = message.body().unwrap();
        if let Ok(copy) = BackfillMessage::parse(body) {
            assert_eq!(copy.key, key);
            of_key.push("copy");
        } else {
            let change = ChangeMessage::parse(body).unwrap();
            match change.scope() {
                Scope::Key(changed) => {
                    assert_eq!(changed, &key);
                    of_key.push(change.kind.as_str());
                }
                Scope::Prefix(prefix) => {
                    assert_eq!(prefix, "fifo-change/");
                    continue;
                }
            }
        }
        assert_eq!(
            attribute(message, MessageSystemAttributeName::MessageGroupId),
            copy_ids.group_id
        );
    }
    // The key's messages share a group: delivered in the order sent.
    assert_eq!(of_key, ["copy", "refresh", "purge", "refresh"]);
    assert_eq!(deduplication_ids.len(), 5);
    assert!(deduplication_ids.contains(&copy_ids.deduplication_id));
    stack.delete_queues(&queues).await;
}

#[tokio::test]
async fn changes_refuse_bad_input_clearly() {
    let stack = Stack::new().await;
    let queues = stack.queue_pair("change-bad", false).await;
    let bucket = "overseas-origin";
    let list = TempFile::new(b"bad/a.jpg\n");
    for command in ["refresh", "purge"] {
        ctl(&change_args(command, bucket, &queues.url), None)
            .assert_code(2)
            .stderr_has("--keys <FILE|->|--from-manifest <URL|FILE>|--prefix <PREFIX>");
        for (prefix, reason) in [
            ("", "is empty: give the path prefix"),
            ("/", "is empty: give the path prefix"),
            ("bad/../x/", "key has a '.' or '..' path segment"),
        ] {
            let mut args = change_args(command, bucket, &queues.url);
            args.extend(["--prefix", prefix]);
            ctl(&args, None)
                .assert_code(2)
                .stderr_has(&format!("--prefix {prefix:?}"))
                .stderr_has(reason);
        }
        let mut args = change_args(command, bucket, &queues.url);
        args.extend(["--keys", list.path(), "--from-manifest", list.path()]);
        ctl(&args, None)
            .assert_code(2)
            .stderr_has("cannot be used with");
        let mut args = change_args(command, bucket, &queues.url);
        args.extend(["--keys", "/nonexistent/keys.txt"]);
        ctl(&args, None)
            .assert_code(1)
            .stderr_has("cannot read key list /nonexistent/keys.txt");
        let missing = format!("{}/123456789012/{}", stack.endpoint, unique("missing"));
        let mut args = change_args(command, bucket, &missing);
        args.extend(["--prefix", "bad/"]);
        ctl(&args, None)
            .assert_code(1)
            .stderr_has(&format!("queue {missing} does not exist"));
    }
    assert_eq!(stack.depth(&queues.url).await, (0, 0));
    stack.delete_queues(&queues).await;
}

fn number(n: i64) -> AttributeValue {
    AttributeValue::N(n.to_string())
}

fn text(s: &str) -> AttributeValue {
    AttributeValue::S(s.to_owned())
}

#[tokio::test]
async fn status_reads_the_freshness_table() {
    let stack = Stack::new().await;
    let table = stack.freshness_table().await;
    let queues = stack.queue_pair("status-freshness", false).await;
    // The counters of "today" are read at the run: not across midnight (UTC).
    let mut now = OffsetDateTime::now_utc();
    let to_midnight = 86_400 - now.unix_timestamp().rem_euclid(86_400);
    if to_midnight < 30 {
        tokio::time::sleep(Duration::from_secs(to_midnight as u64 + 1)).await;
        now = OffsetDateTime::now_utc();
    }
    let date = |t: OffsetDateTime| {
        let d = t.date();
        format!("{}-{:02}-{:02}", d.year(), u8::from(d.month()), d.day())
    };
    let (today, yesterday) = (date(now), date(now - time::Duration::days(1)));
    let now = now.unix_timestamp();
    // (shard, due_at): 3 of 5 objects due, the oldest an hour ago.
    let objects = [
        ("due#0", now - 3_600),
        ("due#0", now - 100),
        ("due#0", now + 86_400),
        ("due#1", now + 600),
        ("due#2", now - 50),
    ];
    for (i, (shard, due_at)) in objects.into_iter().enumerate() {
        let copy = format!(r#"{{"key":"fresh/{i}.jpg"}}"#);
        stack
            .put_item(
                &table,
                &[
                    ("pk", text(&format!("overseas-origin/fresh/{i}.jpg"))),
                    ("copy", text(&copy)),
                    ("backfilled_at", number(now - 7_200)),
                    ("changed_at", number(now - 7_200)),
                    ("validated_at", number(now - 7_200)),
                    ("due_at", number(due_at)),
                    ("shard", text(shard)),
                ],
            )
            .await;
    }
    stack
        .put_item(
            &table,
            &[
                ("pk", text(&format!("stats#{today}"))),
                ("revalidated", number(7)),
                ("unchanged", number(5)),
                ("refreshed", number(1)),
                ("deleted", number(1)),
                ("origin_requests", number(9)),
            ],
        )
        .await;
    stack
        .put_item(
            &table,
            &[
                ("pk", text(&format!("stats#{yesterday}"))),
                ("purged", number(2)),
                ("invalidated_paths", number(2)),
            ],
        )
        .await;

    let run = ctl(&["status", "--freshness-table", &table, "--json"], None);
    run.assert_code(0);
    let report: Value = serde_json::from_str(&run.stdout).expect("JSON");
    assert_eq!(report["queues"], serde_json::json!([]));
    let freshness = &report["freshness"];
    assert_eq!(freshness["table"], table.as_str());
    assert_eq!(freshness["objects_tracked"], 5);
    assert_eq!(freshness["due_now"], 3);
    let overdue = freshness["oldest_overdue_seconds"].as_u64().unwrap();
    assert!((3_600..3_700).contains(&overdue), "{overdue}");
    assert_eq!(
        freshness["today"],
        serde_json::json!({"date": today, "revalidated": 7, "unchanged": 5, "refreshed": 1,
            "deleted": 1, "kept": 0, "purged": 0, "origin_requests": 9, "invalidated_paths": 0})
    );
    assert_eq!(freshness["yesterday"]["date"], yesterday.as_str());
    assert_eq!(freshness["yesterday"]["purged"], 2);
    assert_eq!(freshness["yesterday"]["revalidated"], 0);

    let run = ctl(
        &[
            "status",
            "--backfill-queue-url",
            &queues.url,
            "--freshness-table",
            &table,
        ],
        None,
    );
    run.assert_code(0)
        .stdout_has("QUEUE ")
        .stdout_has("backfill DLQ ")
        .stdout_has(&format!(
            "\nfreshness table: {table}\nobjects tracked: 5\ndue now: 3 (the oldest due for 1h 0"
        ))
        .stdout_has(&format!("UTC DAY            {today}  {yesterday}\n"))
        .stdout_has("revalidated                 7           0\n")
        .stdout_has("origin requests             9           0\n");
    // With queues, the JSON report is an object; without a freshness table, the rows alone.
    let run = ctl(
        &[
            "status",
            "--backfill-queue-url",
            &queues.url,
            "--freshness-table",
            &table,
            "--json",
        ],
        None,
    );
    let report: Value = serde_json::from_str(&run.assert_code(0).stdout).unwrap();
    assert_eq!(report["queues"].as_array().unwrap().len(), 2);
    assert_eq!(report["freshness"]["objects_tracked"], 5);

    // The local stack's own table, which the backfill suites write: read, whatever it holds.
    let shared_table = common::var("FRESHNESS_TABLE");
    let run = ctl(
        &["status", "--freshness-table", &shared_table, "--json"],
        None,
    );
    let report: Value = serde_json::from_str(&run.assert_code(0).stdout).unwrap();
    assert!(report["freshness"]["objects_tracked"].is_u64(), "{report}");

    let missing = unique("no-such-table");
    let run = ctl(
        &[
            "status",
            "--backfill-queue-url",
            &queues.url,
            "--freshness-table",
            &missing,
            "--json",
        ],
        None,
    );
    run.assert_code(1)
        .stderr_has(&format!("table {missing} does not exist"));
    let report: Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(report["queues"].as_array().unwrap().len(), 2);
    assert_eq!(report["freshness"], Value::Null);
    stack.delete_table(&table).await;
    stack.delete_queues(&queues).await;
}

#[test]
fn every_command_has_help() {
    ctl(&["--help"], None)
        .assert_code(0)
        .stdout_has("prewarm")
        .stdout_has("Exit codes:");
    for (command, option) in [
        ("prewarm", "--from-manifest"),
        ("refresh", "--prefix"),
        ("purge", "--prefix"),
        ("status", "--freshness-table"),
        ("redrive", "--dry-run"),
        ("check", "--thumbnail-prefix"),
    ] {
        ctl(&[command, "--help"], None)
            .assert_code(0)
            .stdout_has(&format!("Usage: backfill-ctl {command}"))
            .stdout_has(option)
            .stdout_has("Example");
    }
}
