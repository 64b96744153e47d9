//! `status`: depth, in-flight and dead-letter counts and the oldest message's age of the backfill
//! and image queues; and, from the freshness table, what the revalidation has to do and has done.

use std::time::Duration;

use aws_config::SdkConfig;
use aws_sdk_sqs::types::{Message, MessageSystemAttributeName};
use serde::Serialize;
use time::OffsetDateTime;

use crate::cli::StatusArgs;
use crate::error::{CtlError, Outcome};
use crate::freshness::{FreshnessReport, FreshnessTable};
use crate::queue::{QueueAttributes, SqsQueue};
use crate::regional::{CloudWatch, RegionalReport, Window};
use crate::table::{self, Align};

/// What is known of the oldest message's age.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Age {
    Seconds(u64),
    /// Nothing is waiting.
    Empty,
    /// Messages wait, but none was visible to peek at (all in flight or delayed).
    Unknown,
    NotAsked,
}

impl Age {
    fn seconds(self) -> Option<u64> {
        match self {
            Age::Seconds(s) => Some(s),
            _ => None,
        }
    }

    fn render(self) -> String {
        match self {
            Age::Seconds(s) => format_age(s),
            Age::Empty => "-".to_owned(),
            Age::Unknown => "unknown".to_owned(),
            Age::NotAsked => "not asked".to_owned(),
        }
    }
}

/// A short age: `42s`, `3m 05s`, `2h 03m`, `1d 04h`.
pub fn format_age(seconds: u64) -> String {
    match seconds {
        s if s < 60 => format!("{s}s"),
        s if s < 3600 => format!("{}m {:02}s", s / 60, s % 60),
        s if s < 86_400 => format!("{}h {:02}m", s / 3600, s % 3600 / 60),
        s => format!("{}d {:02}h", s / 86_400, s % 86_400 / 3600),
    }
}

/// The oldest `SentTimestamp` (milliseconds since the epoch) among peeked messages, as an age.
pub fn age_from_sent_timestamps(messages: &[Message], now_ms: u64) -> Option<u64> {
    messages
        .iter()
        .filter_map(|m| {
            m.attributes()?
                .get(&MessageSystemAttributeName::SentTimestamp)
        })
        .filter_map(|raw| raw.parse::<u64>().ok())
        .min()
        .map(|oldest| now_ms.saturating_sub(oldest) / 1000)
}

/// One row of the report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct QueueStatus {
    /// `backfill`, `backfill DLQ`, `image`, `image DLQ`.
    pub role: String,
    pub url: String,
    pub visible: u64,
    pub in_flight: u64,
    pub delayed: u64,
    pub oldest_age_seconds: Option<u64>,
    #[serde(skip)]
    pub age: Age,
    /// For a queue with a DLQ: receives before a message moves there.
    pub max_receive_count: Option<u32>,
}

pub fn render_table(rows: &[QueueStatus]) -> String {
    let cells: Vec<[String; 6]> = rows
        .iter()
        .map(|row| {
            [
                row.role.clone(),
                row.visible.to_string(),
                row.in_flight.to_string(),
                row.delayed.to_string(),
                row.age.render(),
                row.url.clone(),
            ]
        })
        .collect();
    use Align::{Left, Right};
    table::render(
        ["QUEUE", "VISIBLE", "IN FLIGHT", "DELAYED", "OLDEST", "URL"],
        [Left, Right, Right, Right, Left, Left],
        &cells,
    )
}

/// The JSON report with a freshness table or regional figures: the queues' rows, the table's
/// figures (`null` when it could not be read) when asked for, the regional report when asked for.
/// Without either, the JSON report is the rows alone.
#[derive(Debug, Serialize)]
struct JsonReport<'a> {
    queues: &'a [QueueStatus],
    #[serde(skip_serializing_if = "Option::is_none")]
    freshness: Option<Option<&'a FreshnessReport>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    regional: Option<&'a RegionalReport>,
}

pub async fn run(args: StatusArgs, config: &SdkConfig) -> Result<Outcome, CtlError> {
    let named = [
        ("backfill", args.backfill_queue_url.as_deref()),
        ("image", args.image_queue_url.as_deref()),
    ];
    let mut rows = Vec::new();
    let mut errors = Vec::new();
    for (role, url) in named {
        let Some(url) = url else { continue };
        if let Err(err) = queue_rows(config, role, url, !args.no_age, &mut rows).await {
            errors.push(err);
        }
    }
    let mut freshness = None;
    if let Some(name) = &args.freshness_table {
        match FreshnessTable::new(config, name)
            .report(OffsetDateTime::now_utc())
            .await
        {
            Ok(report) => freshness = Some(report),
            Err(err) => errors.push(err),
        }
    }
    let mut warnings = Vec::new();
    let mut regional = None;
    if let Some(edge_function) = &args.edge_function {
        let window = Window::ending(std::time::SystemTime::now(), args.since);
        let report = crate::regional::report(
            &CloudWatch::new(config),
            edge_function,
            &args.edge_regions,
            &args.regional,
            window,
        )
        .await;
        warnings = report.warnings();
        regional = Some(report);
    }
    if args.json {
        let json = match (&args.freshness_table, &regional) {
            (None, None) => serde_json::to_string_pretty(&rows),
            (table, regional) => serde_json::to_string_pretty(&JsonReport {
                queues: &rows,
                freshness: table.as_ref().map(|_| freshness.as_ref()),
                regional: regional.as_ref(),
            }),
        };
        println!("{}", json.expect("a status report serializes"));
    } else {
        let mut sections = Vec::new();
        if !rows.is_empty() {
            sections.push(render_table(&rows));
        }
        sections.extend(freshness.as_ref().map(FreshnessReport::render));
        sections.extend(regional.as_ref().map(RegionalReport::render));
        print!("{}", sections.join("\n"));
    }
    for err in &errors {
        eprintln!("backfill-ctl: error: {err}");
    }
    for warning in &warnings {
        eprintln!("backfill-ctl: warning: {warning}");
    }
    Ok(Outcome::from_failures(errors.len() + warnings.len()))
}

/// The queue's row and, when it has one, its DLQ's.
async fn queue_rows(
    config: &SdkConfig,
    role: &str,
    url: &str,
    peek: bool,
    rows: &mut Vec<QueueStatus>,
) -> Result<(), CtlError> {
    let queue = SqsQueue::new(config, url);
    let attributes = queue.attributes().await?;
    let mut main = row(role.to_owned(), &queue, &attributes, peek).await?;
    main.max_receive_count = attributes.redrive.as_ref().map(|r| r.max_receive_count);
    rows.push(main);
    if let Some(redrive) = &attributes.redrive {
        let dlq = SqsQueue::new(
            config,
            &SqsQueue::url_of(config, &redrive.dead_letter_queue).await?,
        );
        let dlq_attributes = dlq.attributes().await?;
        rows.push(row(format!("{role} DLQ"), &dlq, &dlq_attributes, peek).await?);
    }
    Ok(())
}

async fn row(
    role: String,
    queue: &SqsQueue,
    attributes: &QueueAttributes,
    peek: bool,
) -> Result<QueueStatus, CtlError> {
    let age = if !peek {
        Age::NotAsked
    } else if attributes.visible + attributes.in_flight + attributes.delayed == 0 {
        Age::Empty
    } else if attributes.visible == 0 {
        Age::Unknown
    } else {
        let peeked = queue
            .receive(10, Duration::ZERO, Duration::from_secs(1))
            .await?;
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_millis() as u64;
        age_from_sent_timestamps(&peeked, now_ms).map_or(Age::Unknown, Age::Seconds)
    };
    Ok(QueueStatus {
        role,
        url: queue.url.clone(),
        visible: attributes.visible,
        in_flight: attributes.in_flight,
        delayed: attributes.delayed,
        oldest_age_seconds: age.seconds(),
        age,
        max_receive_count: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_read_short() {
        assert_eq!(format_age(0), "0s");
        assert_eq!(format_age(59), "59s");
        assert_eq!(format_age(125), "2m 05s");
        assert_eq!(format_age(7_380), "2h 03m");
        assert_eq!(format_age(100_800), "1d 04h");
    }

    #[test]
    fn the_oldest_sent_timestamp_wins() {
        let message = |sent: &str| {
            Message::builder()
                .attributes(MessageSystemAttributeName::SentTimestamp, sent)
                .build()
        };
        let messages = [message("1000000"), message("990000"), message("bogus")];
        assert_eq!(age_from_sent_timestamps(&messages, 1_050_000), Some(60));
        assert_eq!(age_from_sent_timestamps(&[], 1_050_000), None);
    }

    #[test]
    fn the_table_lines_up() {
        let row = |role: &str, visible: u64, age: Age| QueueStatus {
            role: role.into(),
            url: format!("http://127.0.0.1:5000/1/{role}"),
            visible,
            in_flight: 1,
            delayed: 0,
            oldest_age_seconds: age.seconds(),
            age,
            max_receive_count: None,
        };
        let table = render_table(&[
            row("backfill", 1234, Age::Seconds(125)),
            row("backfill DLQ", 0, Age::Empty),
        ]);
        assert_eq!(
            table,
            "QUEUE         VISIBLE  IN FLIGHT  DELAYED  OLDEST  URL\n\
             backfill         1234          1        0  2m 05s  http://127.0.0.1:5000/1/backfill\n\
             backfill DLQ        0          1        0  -       http://127.0.0.1:5000/1/backfill DLQ\n"
        );
    }
}
