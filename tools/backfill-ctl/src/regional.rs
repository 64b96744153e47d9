//! `status` per bucket region: the share of origin fetches the regional bucket served, the fallback
//! rate and the bytes backfilled, from CloudWatch.
//!
//! The edge hook writes, per origin attempt, `RegionalRequests` (an S3-origin attempt) or
//! `RegionalFallbacks` (an attempt on the marked domestic origin), dimensions `FunctionName`
//! (`us-east-1.NAME` on every replica) and `BucketRegion` (docs/edge.md). A replica's metrics land
//! in the region that ran it, so each edge region is read and the figures summed. Cache hits never
//! reach an origin: the share served by the bucket is 1 − fallbacks/fetches. Bytes backfilled are
//! the regional backfill function's `Bytes` (dimensions `FunctionName`, `Outcome`), in its own
//! region.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_config::SdkConfig;
use aws_sdk_cloudwatch::types::{Dimension, Metric, MetricDataQuery, MetricStat};
use aws_smithy_types::DateTime;
use futures::future::join_all;
use serde::Serialize;

use crate::error::CtlError;
use crate::status::format_age;
use crate::table::{self, Align};

/// The regions with a CloudFront regional edge cache, where Lambda@Edge origin triggers run.
pub const EDGE_REGIONS: [&str; 13] = [
    "us-east-1",
    "us-east-2",
    "us-west-1",
    "us-west-2",
    "ap-south-1",
    "ap-northeast-1",
    "ap-northeast-2",
    "ap-southeast-1",
    "ap-southeast-2",
    "eu-central-1",
    "eu-west-1",
    "eu-west-2",
    "sa-east-1",
];

/// The namespace of the hook's and the backfill's metrics (the backfill's METRICS_NAMESPACE default).
pub const NAMESPACE: &str = "OverseasOrigin";

/// The backfill outcomes whose `Bytes` are bytes copied into the bucket: the backfill function
/// writes `Bytes` for `copied` only (a multipart copy's whole size comes with its completion; its
/// parts' `PartBytes` are not added again).
pub const BYTES_OUTCOMES: [&str; 1] = ["copied"];

/// GetMetricData takes at most 500 MetricDataQuery structures per call.
pub const MAX_QUERIES: usize = 500;

/// CloudWatch keeps metrics for 15 months.
const MAX_SINCE: Duration = Duration::from_secs(455 * 86_400);

/// A regional stack: its bucket's region and its backfill function.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegionalStack {
    pub region: String,
    pub backfill_function: String,
}

/// `REGION=BACKFILL_FUNCTION_NAME`.
pub fn parse_regional(raw: &str) -> Result<RegionalStack, String> {
    let (region, function) = raw.split_once('=').ok_or_else(|| {
        format!("{raw:?} is not REGION=BACKFILL_FUNCTION_NAME (such as ap-southeast-1=overseas-backfill)")
    })?;
    Ok(RegionalStack {
        region: parse_region(region.trim())?,
        backfill_function: parse_function_name(function.trim())?,
    })
}

/// An AWS region name such as `ap-southeast-1` or `us-gov-west-1`.
pub fn parse_region(raw: &str) -> Result<String, String> {
    let parts: Vec<&str> = raw.split('-').collect();
    let valid = parts.len() >= 3
        && parts[..parts.len() - 1]
            .iter()
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_lowercase()))
        && parts[parts.len() - 1].bytes().all(|b| b.is_ascii_digit())
        && !parts[parts.len() - 1].is_empty();
    if valid {
        Ok(raw.to_owned())
    } else {
        Err(format!(
            "{raw:?} is not an AWS region name such as ap-southeast-1"
        ))
    }
}

/// A Lambda function name (not an ARN, no qualifier): 1 to 64 of `A-Z a-z 0-9 - _`.
pub fn parse_function_name(raw: &str) -> Result<String, String> {
    let valid = (1..=64).contains(&raw.len())
        && raw
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_'));
    if valid {
        Ok(raw.to_owned())
    } else {
        Err(format!(
            "{raw:?} is not a Lambda function name (1 to 64 letters, digits, '-' or '_'; no ARN, no version)"
        ))
    }
}

/// `30m`, `24h`, `7d` (or `s`): at least a minute, at most CloudWatch's 15 months.
pub fn parse_since(raw: &str) -> Result<Duration, String> {
    let raw = raw.trim();
    let parsed = match raw.strip_suffix('d') {
        Some(days) => days
            .parse::<u64>()
            .ok()
            .and_then(|d| d.checked_mul(86_400))
            .map(Duration::from_secs),
        None => shared::config::parse_duration(raw),
    };
    match parsed {
        Some(since) if (Duration::from_secs(60)..=MAX_SINCE).contains(&since) => Ok(since),
        _ => Err(format!(
            "{raw:?} is not a duration from 1m to 455d (such as 90m, 24h or 7d)"
        )),
    }
}

/// The period, in seconds, of one datapoint covering the whole window. A period must be a multiple
/// of 60 (and of 300 when the window starts over 15 days ago, of 3600 over 63 days ago, where
/// CloudWatch keeps coarser data): the window is rounded up to one.
pub fn period_seconds(since: Duration) -> i32 {
    let seconds = since.as_secs().max(60);
    let step = match seconds {
        s if s > 63 * 86_400 => 3600,
        s if s > 15 * 86_400 => 300,
        _ => 60,
    };
    i32::try_from(seconds.div_ceil(step) * step).unwrap_or(i32::MAX / 3600 * 3600)
}

/// The window read: `[start, end)`, whole minutes, its length the period.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub start: i64,
    pub end: i64,
    pub period: i32,
}

impl Window {
    /// The window of length `since` (rounded up to a valid period) ending at the end of the minute
    /// `now` is in, so that what was written a moment ago is counted.
    pub fn ending(now: SystemTime, since: Duration) -> Self {
        let now = now.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs() as i64;
        let end = now - now % 60 + 60;
        let period = period_seconds(since);
        Window {
            start: end - i64::from(period),
            end,
            period,
        }
    }
}

/// What a query counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Figure {
    /// Origin fetches from the bucket (the hook's `RegionalRequests`).
    Fetches,
    /// Fetches that fell back to the domestic origin (`RegionalFallbacks`).
    Fallbacks,
    /// Bytes the backfill copied into the bucket (`Bytes`).
    Bytes,
}

/// One metric summed over the window, with exact dimensions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetricQuery {
    /// The bucket region it counts for.
    pub bucket_region: String,
    pub figure: Figure,
    pub metric_name: &'static str,
    /// In the order the metric's EMF line writes them.
    pub dimensions: Vec<(&'static str, String)>,
}

/// The queries of one region: one GetMetricData call (more only past [`MAX_QUERIES`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegionCall {
    pub region: String,
    /// Whether the hook's metrics are read here.
    pub edge: bool,
    pub queries: Vec<MetricQuery>,
}

/// The calls that make the report: in each edge region the hook's two metrics for every bucket
/// region; in each bucket region its backfill function's bytes (in the same call when the bucket
/// region is an edge region too). The hook's replicas are named `us-east-1.NAME`.
pub fn plan(
    edge_function: &str,
    edge_regions: &[String],
    stacks: &[RegionalStack],
) -> Vec<RegionCall> {
    let replica = format!("us-east-1.{edge_function}");
    let mut calls: Vec<RegionCall> = Vec::new();
    for edge in edge_regions {
        let index = call_index(&mut calls, edge);
        let call = &mut calls[index];
        if call.edge {
            continue;
        }
        call.edge = true;
        for stack in stacks {
            for (figure, metric_name) in [
                (Figure::Fetches, "RegionalRequests"),
                (Figure::Fallbacks, "RegionalFallbacks"),
            ] {
                call.queries.push(MetricQuery {
                    bucket_region: stack.region.clone(),
                    figure,
                    metric_name,
                    dimensions: vec![
                        ("FunctionName", replica.clone()),
                        ("BucketRegion", stack.region.clone()),
                    ],
                });
            }
        }
    }
    for stack in stacks {
        let index = call_index(&mut calls, &stack.region);
        for outcome in BYTES_OUTCOMES {
            calls[index].queries.push(MetricQuery {
                bucket_region: stack.region.clone(),
                figure: Figure::Bytes,
                metric_name: "Bytes",
                dimensions: vec![
                    ("FunctionName", stack.backfill_function.clone()),
                    ("Outcome", outcome.to_owned()),
                ],
            });
        }
    }
    calls
}

/// The index of `region`'s call, added when it has none yet.
fn call_index(calls: &mut Vec<RegionCall>, region: &str) -> usize {
    match calls.iter().position(|c| c.region == region) {
        Some(index) => index,
        None => {
            calls.push(RegionCall {
                region: region.to_owned(),
                edge: false,
                queries: Vec::new(),
            });
            calls.len() - 1
        }
    }
}

/// Where the sums come from: CloudWatch, or a fake in tests.
pub trait MetricSums {
    /// Each query's sum over the window in `region` (0 when it has no datapoint), in order.
    async fn sums(
        &self,
        region: &str,
        queries: &[MetricQuery],
        window: Window,
    ) -> Result<Vec<f64>, CtlError>;
}

/// A region whose metrics could not be read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Unreadable {
    pub region: String,
    /// Whether the hook's metrics were to be read there (its viewers' fetches are left out).
    pub edge: bool,
    /// The bucket regions whose bytes were to be read there (shown as unknown).
    pub bytes_of: Vec<String>,
    pub error: String,
}

/// One bucket region's row. Counts are `None` when no edge region could be read, bytes when the
/// bucket's region could not.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RegionRow {
    pub region: String,
    pub backfill_function: String,
    pub origin_fetches: Option<u64>,
    pub served_by_bucket: Option<u64>,
    /// Served by the bucket / origin fetches, 0 to 1 (`None` without fetches).
    pub served_share: Option<f64>,
    pub fallbacks: Option<u64>,
    /// Fallbacks / origin fetches (`None` without fetches).
    pub fallback_rate: Option<f64>,
    pub bytes_backfilled: Option<u64>,
}

impl RegionRow {
    fn new(
        stack: &RegionalStack,
        fetches: Option<u64>,
        fallbacks: Option<u64>,
        bytes: Option<u64>,
    ) -> Self {
        let ratio = |part: u64, whole: u64| (whole > 0).then(|| part as f64 / whole as f64);
        let served = fetches.zip(fallbacks).map(|(f, b)| f.saturating_sub(b));
        RegionRow {
            region: stack.region.clone(),
            backfill_function: stack.backfill_function.clone(),
            origin_fetches: fetches,
            served_by_bucket: served,
            served_share: served.zip(fetches).and_then(|(s, f)| ratio(s, f)),
            fallbacks,
            fallback_rate: fallbacks.zip(fetches).and_then(|(b, f)| ratio(b, f)),
            bytes_backfilled: bytes,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RegionalReport {
    pub since_seconds: i64,
    /// The hook's replicas' `FunctionName`.
    pub edge_function: String,
    pub edge_regions_read: Vec<String>,
    pub unreadable: Vec<Unreadable>,
    pub regions: Vec<RegionRow>,
}

/// The report from each call's answer (`results[i]` answers `calls[i]`).
pub fn aggregate(
    edge_function: &str,
    stacks: &[RegionalStack],
    window: Window,
    calls: &[RegionCall],
    results: Vec<Result<Vec<f64>, String>>,
) -> RegionalReport {
    let mut sums: BTreeMap<(&str, u8), f64> = BTreeMap::new();
    let mut bytes_read: Vec<&str> = Vec::new();
    let mut edge_regions_read = Vec::new();
    let mut unreadable = Vec::new();
    for (call, result) in calls.iter().zip(results) {
        match result {
            Ok(values) => {
                if call.edge {
                    edge_regions_read.push(call.region.clone());
                }
                for (query, value) in call.queries.iter().zip(values) {
                    *sums
                        .entry((&query.bucket_region, query.figure as u8))
                        .or_default() += value;
                    if query.figure == Figure::Bytes {
                        bytes_read.push(&query.bucket_region);
                    }
                }
            }
            Err(error) => {
                let mut bytes_of: Vec<String> = call
                    .queries
                    .iter()
                    .filter(|q| q.figure == Figure::Bytes)
                    .map(|q| q.bucket_region.clone())
                    .collect();
                bytes_of.dedup();
                unreadable.push(Unreadable {
                    region: call.region.clone(),
                    edge: call.edge,
                    bytes_of,
                    error,
                });
            }
        }
    }
    let any_edge = !edge_regions_read.is_empty();
    let count = |region: &str, figure: Figure| any_edge.then(|| count_of(&sums, region, figure));
    let regions = stacks
        .iter()
        .map(|stack| {
            let bytes = bytes_read
                .contains(&stack.region.as_str())
                .then(|| count_of(&sums, &stack.region, Figure::Bytes));
            RegionRow::new(
                stack,
                count(&stack.region, Figure::Fetches),
                count(&stack.region, Figure::Fallbacks),
                bytes,
            )
        })
        .collect();
    RegionalReport {
        since_seconds: window.end - window.start,
        edge_function: format!("us-east-1.{edge_function}"),
        edge_regions_read,
        unreadable,
        regions,
    }
}

fn count_of(sums: &BTreeMap<(&str, u8), f64>, region: &str, figure: Figure) -> u64 {
    sums.get(&(region, figure as u8))
        .copied()
        .unwrap_or(0.0)
        .round() as u64
}

/// `512 B`, `1.5 KiB`, `2.0 GiB`.
pub fn format_bytes(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

fn percent(share: Option<f64>) -> String {
    share.map_or_else(|| "-".to_owned(), |s| format!("{:.1}%", s * 100.0))
}

impl RegionalReport {
    pub fn render(&self) -> String {
        let header = [
            "REGION",
            "ORIGIN FETCHES",
            "SERVED BY BUCKET",
            "FALLBACKS",
            "BYTES BACKFILLED",
        ];
        let unknown = || "unknown".to_owned();
        let cells: Vec<[String; 5]> = self
            .regions
            .iter()
            .map(|row| {
                [
                    row.region.clone(),
                    row.origin_fetches.map_or_else(unknown, |n| n.to_string()),
                    row.served_by_bucket
                        .map_or_else(unknown, |n| format!("{n} ({})", percent(row.served_share))),
                    row.fallbacks
                        .map_or_else(unknown, |n| format!("{n} ({})", percent(row.fallback_rate))),
                    row.bytes_backfilled.map_or_else(unknown, format_bytes),
                ]
            })
            .collect();
        let mut out = String::new();
        let _ = writeln!(
            out,
            "Per region, last {} (edge function {}, {} of {} edge regions read):",
            format_age(self.since_seconds.max(0) as u64),
            self.edge_function,
            self.edge_regions_read.len(),
            self.edge_regions_read.len() + self.unreadable.iter().filter(|u| u.edge).count(),
        );
        use Align::{Left, Right};
        out += &table::render(header, [Left, Right, Right, Right, Right], &cells);
        out
    }

    /// One line per region that could not be read, saying what is missing.
    pub fn warnings(&self) -> Vec<String> {
        self.unreadable
            .iter()
            .map(|u| {
                let mut missing = Vec::new();
                if u.edge {
                    missing
                        .push("the origin fetches and fallbacks leave out its viewers".to_owned());
                }
                if !u.bytes_of.is_empty() {
                    missing.push(format!(
                        "bytes backfilled unknown for {}",
                        u.bytes_of.join(", ")
                    ));
                }
                let role = if u.edge { "edge region" } else { "region" };
                format!(
                    "{role} {} could not be read ({}): {}",
                    u.region,
                    missing.join("; "),
                    u.error
                )
            })
            .collect()
    }
}

/// Reads the report: one call per region, all at once.
pub async fn report<S: MetricSums>(
    source: &S,
    edge_function: &str,
    edge_regions: &[String],
    stacks: &[RegionalStack],
    window: Window,
) -> RegionalReport {
    let calls = plan(edge_function, edge_regions, stacks);
    let results = join_all(calls.iter().map(|call| async {
        source
            .sums(&call.region, &call.queries, window)
            .await
            .map_err(|err| err.to_string())
    }))
    .await;
    aggregate(edge_function, stacks, window, &calls, results)
}

/// CloudWatch GetMetricData, a client per region (a replica's metrics are in the region that ran
/// it). Locally, AWS_ENDPOINT_URL serves every region; the region signed keeps them apart.
#[derive(Debug, Clone)]
pub struct CloudWatch {
    config: SdkConfig,
}

impl CloudWatch {
    pub fn new(config: &SdkConfig) -> Self {
        CloudWatch {
            config: config.clone(),
        }
    }

    fn client(&self, region: &str) -> aws_sdk_cloudwatch::Client {
        let config = aws_sdk_cloudwatch::config::Builder::from(&self.config)
            .region(aws_config::Region::new(region.to_owned()))
            .build();
        aws_sdk_cloudwatch::Client::from_conf(config)
    }
}

impl MetricSums for CloudWatch {
    async fn sums(
        &self,
        region: &str,
        queries: &[MetricQuery],
        window: Window,
    ) -> Result<Vec<f64>, CtlError> {
        let client = self.client(region);
        let mut sums = vec![0.0; queries.len()];
        // GetMetricData takes at most 500 queries a call. Sum with Period = the window (a multiple
        // of 60 s) gives one datapoint per metric, two when CloudWatch rounds the start down:
        // every value returned is added.
        for (chunk, part) in queries.chunks(MAX_QUERIES).enumerate() {
            let data_queries: Vec<MetricDataQuery> = part
                .iter()
                .enumerate()
                .map(|(i, query)| {
                    let dimensions = query
                        .dimensions
                        .iter()
                        .map(|(name, value)| Dimension::builder().name(*name).value(value).build())
                        .collect();
                    MetricDataQuery::builder()
                        .id(format!("q{i}"))
                        .metric_stat(
                            MetricStat::builder()
                                .metric(
                                    Metric::builder()
                                        .namespace(NAMESPACE)
                                        .metric_name(query.metric_name)
                                        .set_dimensions(Some(dimensions))
                                        .build(),
                                )
                                .period(window.period)
                                .stat("Sum")
                                .build(),
                        )
                        .return_data(true)
                        .build()
                })
                .collect();
            let mut next_token = None;
            loop {
                let output = client
                    .get_metric_data()
                    .set_metric_data_queries(Some(data_queries.clone()))
                    .start_time(DateTime::from_secs(window.start))
                    .end_time(DateTime::from_secs(window.end))
                    .set_next_token(next_token)
                    .send()
                    .await
                    .map_err(|err| shared::Error::aws("GetMetricData", err))?;
                for result in output.metric_data_results() {
                    let index = result
                        .id()
                        .and_then(|id| id.strip_prefix('q'))
                        .and_then(|i| i.parse::<usize>().ok())
                        .filter(|i| *i < part.len());
                    if let Some(index) = index {
                        sums[chunk * MAX_QUERIES + index] += result.values().iter().sum::<f64>();
                    }
                }
                next_token = output.next_token().map(str::to_owned);
                if next_token.is_none() {
                    break;
                }
            }
        }
        Ok(sums)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stacks() -> Vec<RegionalStack> {
        vec![
            parse_regional("ap-southeast-1=backfill-sg").unwrap(),
            parse_regional("eu-west-1=backfill-ie").unwrap(),
        ]
    }

    fn regions(list: &[&str]) -> Vec<String> {
        list.iter().map(|r| (*r).to_owned()).collect()
    }

    #[test]
    fn options_parse_strictly() {
        assert_eq!(
            parse_regional(" ap-southeast-1 = overseas_backfill-2 ").unwrap(),
            RegionalStack {
                region: "ap-southeast-1".into(),
                backfill_function: "overseas_backfill-2".into()
            }
        );
        assert_eq!(parse_region("us-gov-west-1").unwrap(), "us-gov-west-1");
        for bad in [
            "ap-southeast-1",
            "Ap-south-1=f",
            "ap-south=f",
            "ap-south-1=",
            "ap-south-1=arn:aws:lambda:x",
        ] {
            assert!(parse_regional(bad).is_err(), "{bad}");
        }
        for bad in ["", "eu", "eu-west-", "-west-1", "eu-West-1", "eu-west-1a"] {
            assert!(parse_region(bad).is_err(), "{bad}");
        }
        assert!(parse_function_name(&"f".repeat(64)).is_ok());
        assert!(parse_function_name(&"f".repeat(65)).is_err());
        assert!(parse_function_name("us-east-1.hook").is_err());
    }

    #[test]
    fn since_takes_minutes_to_fifteen_months() {
        assert_eq!(parse_since("24h").unwrap(), Duration::from_secs(86_400));
        assert_eq!(parse_since("7d").unwrap(), Duration::from_secs(7 * 86_400));
        assert_eq!(parse_since("90m").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse_since("60s").unwrap(), Duration::from_secs(60));
        for bad in ["59s", "0d", "456d", "1w", "", "h", "500ms"] {
            assert!(parse_since(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_period_is_the_window_in_valid_steps() {
        assert_eq!(period_seconds(Duration::from_secs(86_400)), 86_400);
        assert_eq!(period_seconds(Duration::from_secs(61)), 120);
        assert_eq!(
            period_seconds(Duration::from_secs(20 * 86_400 + 1)),
            20 * 86_400 + 300
        );
        assert_eq!(
            period_seconds(Duration::from_secs(90 * 86_400 + 1)),
            90 * 86_400 + 3600
        );
        let window = Window::ending(
            UNIX_EPOCH + Duration::from_secs(1_000_000_030),
            Duration::from_secs(3600),
        );
        assert_eq!(
            window,
            Window {
                start: 999_996_480,
                end: 1_000_000_080,
                period: 3600
            }
        );
    }

    #[test]
    fn the_plan_is_one_call_a_region_with_exact_dimensions() {
        let calls = plan(
            "edge-hook",
            &regions(&["us-east-1", "eu-west-1", "us-east-1"]),
            &stacks(),
        );
        let summary: Vec<(&str, bool, usize)> = calls
            .iter()
            .map(|c| (c.region.as_str(), c.edge, c.queries.len()))
            .collect();
        // eu-west-1 is an edge region and a bucket region: one call reads both.
        assert_eq!(
            summary,
            [
                ("us-east-1", true, 4),
                ("eu-west-1", true, 5),
                ("ap-southeast-1", false, 1)
            ]
        );
        assert_eq!(
            calls[0].queries[1],
            MetricQuery {
                bucket_region: "ap-southeast-1".into(),
                figure: Figure::Fallbacks,
                metric_name: "RegionalFallbacks",
                dimensions: vec![
                    ("FunctionName", "us-east-1.edge-hook".into()),
                    ("BucketRegion", "ap-southeast-1".into())
                ],
            }
        );
        assert_eq!(
            calls[2].queries[0],
            MetricQuery {
                bucket_region: "ap-southeast-1".into(),
                figure: Figure::Bytes,
                metric_name: "Bytes",
                dimensions: vec![
                    ("FunctionName", "backfill-sg".into()),
                    ("Outcome", "copied".into())
                ],
            }
        );
        let many: Vec<String> = EDGE_REGIONS.iter().map(|r| (*r).to_owned()).collect();
        assert_eq!(plan("h", &many, &stacks()).len(), 13);
    }

    const WINDOW: Window = Window {
        start: 0,
        end: 86_400,
        period: 86_400,
    };

    /// Answers from a table of (region, metric, bucket region) sums; the listed regions fail.
    struct Fake {
        sums: Vec<(&'static str, &'static str, &'static str, f64)>,
        failing: Vec<&'static str>,
    }

    impl MetricSums for Fake {
        async fn sums(
            &self,
            region: &str,
            queries: &[MetricQuery],
            _: Window,
        ) -> Result<Vec<f64>, CtlError> {
            if self.failing.contains(&region) {
                return Err(CtlError::Input(format!("AccessDenied in {region}")));
            }
            Ok(queries
                .iter()
                .map(|q| {
                    self.sums
                        .iter()
                        .filter(|(r, m, b, _)| {
                            *r == region && *m == q.metric_name && *b == q.bucket_region
                        })
                        .map(|s| s.3)
                        .sum()
                })
                .collect())
        }
    }

    #[tokio::test]
    async fn edge_regions_are_summed_and_shares_computed() {
        let fake = Fake {
            sums: vec![
                ("us-east-1", "RegionalRequests", "ap-southeast-1", 600.0),
                ("eu-west-1", "RegionalRequests", "ap-southeast-1", 400.0),
                ("us-east-1", "RegionalFallbacks", "ap-southeast-1", 30.0),
                ("eu-west-1", "RegionalFallbacks", "ap-southeast-1", 20.0),
                ("eu-west-1", "RegionalRequests", "eu-west-1", 10.0),
                (
                    "ap-southeast-1",
                    "Bytes",
                    "ap-southeast-1",
                    3.0 * 1024.0 * 1024.0 * 1024.0,
                ),
                ("eu-west-1", "Bytes", "eu-west-1", 1536.0),
            ],
            failing: vec![],
        };
        let report = report(
            &fake,
            "hook",
            &regions(&["us-east-1", "eu-west-1"]),
            &stacks(),
            WINDOW,
        )
        .await;
        assert!(report.unreadable.is_empty());
        assert_eq!(report.edge_regions_read, ["us-east-1", "eu-west-1"]);
        let sg = &report.regions[0];
        assert_eq!(
            (
                sg.origin_fetches,
                sg.served_by_bucket,
                sg.fallbacks,
                sg.bytes_backfilled
            ),
            (Some(1000), Some(950), Some(50), Some(3 << 30))
        );
        assert_eq!(
            (sg.served_share, sg.fallback_rate),
            (Some(0.95), Some(0.05))
        );
        let ie = &report.regions[1];
        assert_eq!(
            (ie.origin_fetches, ie.fallbacks, ie.fallback_rate),
            (Some(10), Some(0), Some(0.0))
        );
        assert_eq!(
            report.render(),
            "Per region, last 1d 00h (edge function us-east-1.hook, 2 of 2 edge regions read):\n\
             REGION          ORIGIN FETCHES  SERVED BY BUCKET  FALLBACKS  BYTES BACKFILLED\n\
             ap-southeast-1            1000       950 (95.0%)  50 (5.0%)           3.0 GiB\n\
             eu-west-1                   10       10 (100.0%)   0 (0.0%)           1.5 KiB\n"
        );
        let json = serde_json::to_value(&report).unwrap();
        assert_eq!(json["regions"][0]["served_share"], 0.95);
        assert_eq!(json["regions"][0]["bytes_backfilled"], 3u64 << 30);
        assert_eq!(json["edge_function"], "us-east-1.hook");
    }

    #[tokio::test]
    async fn an_unreadable_region_is_named_and_the_rest_shown() {
        let fake = Fake {
            sums: vec![
                ("us-east-1", "RegionalRequests", "ap-southeast-1", 5.0),
                ("eu-west-1", "RegionalFallbacks", "eu-west-1", 2.0),
            ],
            failing: vec!["eu-west-1"],
        };
        let report = report(
            &fake,
            "hook",
            &regions(&["us-east-1", "eu-west-1"]),
            &stacks(),
            WINDOW,
        )
        .await;
        assert_eq!(report.edge_regions_read, ["us-east-1"]);
        assert_eq!(report.regions[0].origin_fetches, Some(5));
        assert_eq!(report.regions[0].bytes_backfilled, Some(0));
        assert_eq!(report.regions[1].fallbacks, Some(0));
        assert_eq!(report.regions[1].bytes_backfilled, None);
        assert_eq!(
            report.warnings(),
            ["edge region eu-west-1 could not be read (the origin fetches and fallbacks leave out its \
              viewers; bytes backfilled unknown for eu-west-1): AccessDenied in eu-west-1"]
        );
        assert!(
            report.render().contains("1 of 2 edge regions read"),
            "{}",
            report.render()
        );
        assert!(report.render().contains("unknown"));
    }

    #[tokio::test]
    async fn no_edge_region_read_means_unknown_counts_not_zeros() {
        let fake = Fake {
            sums: vec![],
            failing: vec!["us-east-1"],
        };
        let report = report(&fake, "hook", &regions(&["us-east-1"]), &stacks(), WINDOW).await;
        let row = &report.regions[0];
        assert_eq!(
            (row.origin_fetches, row.fallbacks, row.served_share),
            (None, None, None)
        );
        assert_eq!(row.bytes_backfilled, Some(0));
    }

    #[test]
    fn shares_without_fetches_are_blank_and_more_fallbacks_than_fetches_show() {
        let stack = &stacks()[0];
        let none = RegionRow::new(stack, Some(0), Some(0), None);
        assert_eq!((none.served_share, none.fallback_rate), (None, None));
        let odd = RegionRow::new(stack, Some(2), Some(3), None);
        assert_eq!(
            (odd.served_by_bucket, odd.served_share, odd.fallback_rate),
            (Some(0), Some(0.0), Some(1.5))
        );
    }

    #[test]
    fn bytes_read_short() {
        assert_eq!(format_bytes(0), "0 B");
        assert_eq!(format_bytes(1023), "1023 B");
        assert_eq!(format_bytes(1536), "1.5 KiB");
        assert_eq!(format_bytes(5 * 1024 * 1024 * 1024 * 1024), "5.0 TiB");
    }
}
