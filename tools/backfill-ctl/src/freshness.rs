//! The backfill function's freshness table (DynamoDB), as `status` reads it.
//!
//! The function writes it: one item per object it copied (`pk` = `bucket/key`, with `due_at`, the
//! time it is due for revalidation, and `shard`, one of `due#0`..`due#3`), indexed by `due`
//! (hash `shard`, range `due_at`); and one item of counters a day (`pk` = `stats#YYYY-MM-DD`,
//! UTC). Only what the index gives cheaply is read: counts of a shard (all, or those due by now)
//! and its earliest `due_at`; the time of the last revalidation is not indexed.

use std::collections::HashMap;
use std::fmt::Write as _;

use aws_config::SdkConfig;
use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::types::{AttributeValue, Select};
use futures::future::try_join_all;
use serde::Serialize;
use time::macros::format_description;
use time::{Date, OffsetDateTime};

use crate::error::CtlError;
use crate::status::format_age;

/// The index the revalidation schedule walks, and its shards (always four).
pub const DUE_INDEX: &str = "due";
pub const SHARDS: [&str; 4] = ["due#0", "due#1", "due#2", "due#3"];

/// One day's counters (UTC); a counter the function has not written is 0.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct DailyStats {
    /// `YYYY-MM-DD`.
    pub date: String,
    /// Conditional GETs the origin answered.
    pub revalidated: u64,
    /// Answered 304.
    pub unchanged: u64,
    /// Replaced by a newer body.
    pub refreshed: u64,
    /// Gone at the origin (404, 410): the copy was deleted.
    pub deleted: u64,
    /// Gone at the origin, kept as configured.
    pub kept: u64,
    pub purged: u64,
    /// Every request sent to the origin for refresh work.
    pub origin_requests: u64,
    pub invalidated_paths: u64,
}

impl DailyStats {
    /// The counters of a `stats#` item (`None`: no item, all 0).
    pub fn from_item(
        date: &str,
        item: Option<&HashMap<String, AttributeValue>>,
    ) -> Result<Self, String> {
        let count = |name: &str| -> Result<u64, String> {
            match item.and_then(|item| item.get(name)) {
                None => Ok(0),
                Some(AttributeValue::N(raw)) => raw.parse().map_err(|_| {
                    format!("stats#{date}: counter {name} is {raw:?}, not a whole number")
                }),
                Some(other) => Err(format!(
                    "stats#{date}: counter {name} is not a number: {other:?}"
                )),
            }
        };
        Ok(DailyStats {
            date: date.to_owned(),
            revalidated: count("revalidated")?,
            unchanged: count("unchanged")?,
            refreshed: count("refreshed")?,
            deleted: count("deleted")?,
            kept: count("kept")?,
            purged: count("purged")?,
            origin_requests: count("origin_requests")?,
            invalidated_paths: count("invalidated_paths")?,
        })
    }

    /// The counters, named as the text report names them, in its order.
    fn rows(&self) -> [(&'static str, u64); 8] {
        [
            ("revalidated", self.revalidated),
            ("unchanged", self.unchanged),
            ("refreshed", self.refreshed),
            ("deleted", self.deleted),
            ("kept", self.kept),
            ("purged", self.purged),
            ("origin requests", self.origin_requests),
            ("invalidated paths", self.invalidated_paths),
        ]
    }
}

/// What one shard of the index holds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ShardCounts {
    pub tracked: u64,
    /// Items whose `due_at` has come.
    pub due: u64,
    /// The earliest `due_at` that has come (epoch seconds).
    pub oldest_due_at: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FreshnessReport {
    pub table: String,
    pub objects_tracked: u64,
    pub due_now: u64,
    /// How long the longest-waiting due object has been due.
    pub oldest_overdue_seconds: Option<u64>,
    pub today: DailyStats,
    pub yesterday: DailyStats,
}

impl FreshnessReport {
    pub fn new(
        table: &str,
        shards: &[ShardCounts],
        now: i64,
        today: DailyStats,
        yesterday: DailyStats,
    ) -> Self {
        let oldest = shards.iter().filter_map(|s| s.oldest_due_at).min();
        FreshnessReport {
            table: table.to_owned(),
            objects_tracked: shards.iter().map(|s| s.tracked).sum(),
            due_now: shards.iter().map(|s| s.due).sum(),
            oldest_overdue_seconds: oldest.map(|due_at| now.saturating_sub(due_at).max(0) as u64),
            today,
            yesterday,
        }
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "freshness table: {}", self.table);
        let _ = writeln!(out, "objects tracked: {}", self.objects_tracked);
        match self.oldest_overdue_seconds {
            Some(age) if self.due_now > 0 => {
                let _ = writeln!(
                    out,
                    "due now: {} (the oldest due for {})",
                    self.due_now,
                    format_age(age)
                );
            }
            _ => {
                let _ = writeln!(out, "due now: {}", self.due_now);
            }
        }
        let today = self.today.rows();
        let yesterday = self.yesterday.rows();
        let width = today.iter().map(|(name, _)| name.len()).max().unwrap_or(0);
        let column = |date: &str, values: &[(&str, u64)]| {
            values
                .iter()
                .map(|(_, n)| n.to_string().len())
                .chain([date.len()])
                .max()
                .unwrap_or(0)
        };
        let (w1, w2) = (
            column(&self.today.date, &today),
            column(&self.yesterday.date, &yesterday),
        );
        let _ = writeln!(
            out,
            "{:<width$}  {:>w1$}  {:>w2$}",
            "UTC DAY", self.today.date, self.yesterday.date
        );
        for ((name, now), (_, before)) in today.iter().zip(&yesterday) {
            let _ = writeln!(out, "{name:<width$}  {now:>w1$}  {before:>w2$}");
        }
        out
    }
}

/// The UTC day `now` falls in and the one before, as `YYYY-MM-DD`.
pub fn today_and_yesterday(now: OffsetDateTime) -> (String, String) {
    let format = |date: Date| {
        date.format(format_description!("[year]-[month]-[day]"))
            .expect("a date formats")
    };
    let today = now.to_offset(time::UtcOffset::UTC).date();
    let yesterday = today.previous_day().unwrap_or(today);
    (format(today), format(yesterday))
}

/// The table, through the AWS SDK.
#[derive(Debug, Clone)]
pub struct FreshnessTable {
    client: aws_sdk_dynamodb::Client,
    pub name: String,
}

impl FreshnessTable {
    pub fn new(config: &SdkConfig, name: &str) -> Self {
        FreshnessTable {
            client: shared::aws::dynamodb_client(config),
            name: name.to_owned(),
        }
    }

    pub async fn report(&self, now: OffsetDateTime) -> Result<FreshnessReport, CtlError> {
        let now_s = now.unix_timestamp();
        let (today, yesterday) = today_and_yesterday(now);
        let shards = try_join_all(SHARDS.iter().map(|shard| self.shard(shard, now_s)));
        let days = futures::future::try_join(self.daily(&today), self.daily(&yesterday));
        let (shards, (today, yesterday)) = futures::future::try_join(shards, days).await?;
        Ok(FreshnessReport::new(
            &self.name, &shards, now_s, today, yesterday,
        ))
    }

    async fn shard(&self, shard: &str, now: i64) -> Result<ShardCounts, CtlError> {
        let (tracked, due, oldest_due_at) = futures::future::try_join3(
            self.count(shard, None),
            self.count(shard, Some(now)),
            self.oldest_due(shard, now),
        )
        .await?;
        Ok(ShardCounts {
            tracked,
            due,
            oldest_due_at,
        })
    }

    /// The items of a shard (those due by `due_by`, when given), a page of the index at a time.
    async fn count(&self, shard: &str, due_by: Option<i64>) -> Result<u64, CtlError> {
        let mut request = self
            .client
            .query()
            .table_name(&self.name)
            .index_name(DUE_INDEX)
            .select(Select::Count)
            .expression_attribute_names("#shard", "shard")
            .expression_attribute_values(":shard", AttributeValue::S(shard.to_owned()));
        request = match due_by {
            None => request.key_condition_expression("#shard = :shard"),
            Some(now) => request
                .key_condition_expression("#shard = :shard AND #due <= :now")
                .expression_attribute_names("#due", "due_at")
                .expression_attribute_values(":now", AttributeValue::N(now.to_string())),
        };
        let mut pages = request.into_paginator().send();
        let mut total = 0u64;
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| self.error("Query", e))?;
            total += page.count().max(0) as u64;
        }
        Ok(total)
    }

    /// The earliest `due_at` of a shard that has come.
    async fn oldest_due(&self, shard: &str, now: i64) -> Result<Option<i64>, CtlError> {
        let output = self
            .client
            .query()
            .table_name(&self.name)
            .index_name(DUE_INDEX)
            .key_condition_expression("#shard = :shard AND #due <= :now")
            .expression_attribute_names("#shard", "shard")
            .expression_attribute_names("#due", "due_at")
            .expression_attribute_values(":shard", AttributeValue::S(shard.to_owned()))
            .expression_attribute_values(":now", AttributeValue::N(now.to_string()))
            .projection_expression("#due")
            .scan_index_forward(true)
            .limit(1)
            .send()
            .await
            .map_err(|e| self.error("Query", e))?;
        Ok(output
            .items()
            .first()
            .and_then(|item| match item.get("due_at") {
                Some(AttributeValue::N(raw)) => raw.parse().ok(),
                _ => None,
            }))
    }

    async fn daily(&self, date: &str) -> Result<DailyStats, CtlError> {
        let output = self
            .client
            .get_item()
            .table_name(&self.name)
            .key("pk", AttributeValue::S(format!("stats#{date}")))
            .send()
            .await
            .map_err(|e| self.error("GetItem", e))?;
        DailyStats::from_item(date, output.item())
            .map_err(|e| CtlError::Input(format!("freshness table {}: {e}", self.name)))
    }

    fn error<E, R>(&self, operation: &'static str, err: SdkError<E, R>) -> CtlError
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
        R: std::fmt::Debug + shared::error::HttpStatus,
    {
        let missing = err
            .as_service_error()
            .and_then(ProvideErrorMetadata::code)
            .is_some_and(|code| code == "ResourceNotFoundException");
        let err = shared::Error::aws(operation, err);
        if missing {
            CtlError::MissingTable {
                table: self.name.clone(),
                detail: err.to_string(),
            }
        } else {
            err.into()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stats(date: &str, revalidated: u64, origin_requests: u64) -> DailyStats {
        DailyStats {
            date: date.into(),
            revalidated,
            unchanged: revalidated / 2,
            origin_requests,
            ..DailyStats::default()
        }
    }

    #[test]
    fn counters_absent_are_zero_and_others_must_be_counts() {
        let item = HashMap::from([
            (
                "pk".to_owned(),
                AttributeValue::S("stats#2026-12-05".into()),
            ),
            ("revalidated".to_owned(), AttributeValue::N("12".into())),
            ("origin_requests".to_owned(), AttributeValue::N("15".into())),
        ]);
        let day = DailyStats::from_item("2026-12-05", Some(&item)).unwrap();
        assert_eq!(
            day,
            DailyStats {
                date: "2026-12-05".into(),
                revalidated: 12,
                origin_requests: 15,
                ..DailyStats::default()
            }
        );
        assert_eq!(
            DailyStats::from_item("2026-12-04", None).unwrap(),
            DailyStats {
                date: "2026-12-04".into(),
                ..DailyStats::default()
            }
        );
        let bad = HashMap::from([("kept".to_owned(), AttributeValue::S("3".into()))]);
        let err = DailyStats::from_item("2026-12-05", Some(&bad)).unwrap_err();
        assert!(err.contains("counter kept is not a number"), "{err}");
        let fraction = HashMap::from([("purged".to_owned(), AttributeValue::N("1.5".into()))]);
        let err = DailyStats::from_item("2026-12-05", Some(&fraction)).unwrap_err();
        assert!(err.contains("not a whole number"), "{err}");
    }

    #[test]
    fn the_report_sums_the_shards() {
        let shards = [
            ShardCounts {
                tracked: 3,
                due: 1,
                oldest_due_at: Some(1_000),
            },
            ShardCounts {
                tracked: 2,
                due: 2,
                oldest_due_at: Some(400),
            },
            ShardCounts::default(),
            ShardCounts {
                tracked: 1,
                due: 0,
                oldest_due_at: None,
            },
        ];
        let report = FreshnessReport::new(
            "freshness",
            &shards,
            4_120,
            stats("2026-12-05", 120, 131),
            stats("2026-12-04", 4, 4),
        );
        assert_eq!(report.objects_tracked, 6);
        assert_eq!(report.due_now, 3);
        assert_eq!(report.oldest_overdue_seconds, Some(3_720));
        assert_eq!(
            report.render(),
            "freshness table: freshness\n\
             objects tracked: 6\n\
             due now: 3 (the oldest due for 1h 02m)\n\
             UTC DAY            2026-12-05  2026-12-04\n\
             revalidated               120           4\n\
             unchanged                  60           2\n\
             refreshed                   0           0\n\
             deleted                     0           0\n\
             kept                        0           0\n\
             purged                      0           0\n\
             origin requests           131           4\n\
             invalidated paths           0           0\n"
        );
        let json = serde_json::to_value(&report).unwrap();
        assert_eq!(json["oldest_overdue_seconds"], 3_720);
        assert_eq!(json["today"]["date"], "2026-12-05");
        assert_eq!(json["today"]["origin_requests"], 131);
        assert_eq!(json["yesterday"]["invalidated_paths"], 0);

        let idle = FreshnessReport::new(
            "freshness",
            &[ShardCounts::default(); 4],
            4_120,
            stats("2026-12-05", 0, 0),
            stats("2026-12-04", 0, 0),
        );
        assert_eq!(idle.oldest_overdue_seconds, None);
        assert!(
            idle.render().contains("\ndue now: 0\n"),
            "{}",
            idle.render()
        );
    }

    #[test]
    fn days_are_utc() {
        let late = OffsetDateTime::from_unix_timestamp(1_798_761_599) // 2026-12-31T23:59:59Z
            .unwrap()
            .to_offset(time::UtcOffset::from_hms(9, 0, 0).unwrap());
        assert_eq!(
            today_and_yesterday(late),
            ("2026-12-31".to_owned(), "2026-12-30".to_owned())
        );
        let new_year = OffsetDateTime::from_unix_timestamp(1_798_761_600).unwrap();
        assert_eq!(
            today_and_yesterday(new_year),
            ("2027-01-01".to_owned(), "2026-12-31".to_owned())
        );
    }
}
