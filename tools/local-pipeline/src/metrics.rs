//! A stand-in for CloudWatch's extraction of Embedded Metric Format lines from function logs: each
//! EMF line of a log becomes PutMetricData datapoints (one per metric and dimension set) in the
//! region whose CloudWatch the real service would record them in (the region that ran the
//! function).
//!
//! `backfill-ctl status` reads whole minutes up to the current one. So that a read right after
//! the demo covers all of it, each datapoint is filed one minute before its EMF timestamp.

use std::collections::BTreeSet;
use std::path::PathBuf;

use anyhow::{Context, Result};
use aws_sdk_cloudwatch::primitives::DateTime;
use aws_sdk_cloudwatch::types::{Dimension, MetricDatum, StandardUnit};
use serde_json::Value;

/// Where the stand-in files a datapoint, before its EMF timestamp.
const FILED_EARLY_MS: i64 = 60_000;

/// PutMetricData takes at most 1,000 datapoints a call.
const MAX_DATA: usize = 1000;

/// One metric value of an EMF line.
#[derive(Debug, Clone, PartialEq)]
pub struct Datum {
    pub namespace: String,
    pub name: String,
    pub unit: Option<String>,
    pub dimensions: Vec<(String, String)>,
    pub value: f64,
    pub timestamp_ms: i64,
}

/// The datapoints of one log line: nothing unless it is an EMF line (a JSON object, possibly after
/// a runtime's prefix, with `_aws.CloudWatchMetrics`).
pub fn data(line: &str) -> Vec<Datum> {
    let Some(start) = line.find('{') else {
        return vec![];
    };
    let Ok(record) = serde_json::from_str::<Value>(&line[start..]) else {
        return vec![];
    };
    let Some(timestamp_ms) = record["_aws"]["Timestamp"].as_i64() else {
        return vec![];
    };
    let mut found = vec![];
    for directive in record["_aws"]["CloudWatchMetrics"]
        .as_array()
        .into_iter()
        .flatten()
    {
        let namespace = directive["Namespace"].as_str().unwrap_or_default();
        for set in directive["Dimensions"].as_array().into_iter().flatten() {
            let Some(dimensions) = set
                .as_array()
                .into_iter()
                .flatten()
                .map(|name| {
                    let name = name.as_str()?;
                    Some((name.to_owned(), record[name].as_str()?.to_owned()))
                })
                .collect::<Option<Vec<_>>>()
            else {
                continue;
            };
            for metric in directive["Metrics"].as_array().into_iter().flatten() {
                let Some(name) = metric["Name"].as_str() else {
                    continue;
                };
                let Some(value) = record[name].as_f64() else {
                    continue;
                };
                found.push(Datum {
                    namespace: namespace.to_owned(),
                    name: name.to_owned(),
                    unit: metric["Unit"].as_str().map(str::to_owned),
                    dimensions: dimensions.clone(),
                    value,
                    timestamp_ms,
                });
            }
        }
    }
    found
}

/// A function's log and the region its metrics belong to.
pub struct FunctionLog {
    pub path: PathBuf,
    pub region: String,
}

/// What was forwarded from one log.
pub struct Forwarded {
    pub datapoints: usize,
    /// The `FunctionName` dimensions seen.
    pub function_names: BTreeSet<String>,
}

/// Files every EMF datapoint of `log` in its region's CloudWatch (`cloudwatch`: the local
/// stack's configuration; the region is the log's).
pub async fn forward(
    cloudwatch: &aws_sdk_cloudwatch::config::Builder,
    log: &FunctionLog,
) -> Result<Forwarded> {
    let text = tokio::fs::read_to_string(&log.path)
        .await
        .with_context(|| format!("reading {}", log.path.display()))?;
    let all: Vec<Datum> = text.lines().flat_map(data).collect();
    let function_names = all
        .iter()
        .flat_map(|d| &d.dimensions)
        .filter(|(name, _)| name == "FunctionName")
        .map(|(_, value)| value.clone())
        .collect();
    let client = aws_sdk_cloudwatch::Client::from_conf(
        cloudwatch
            .clone()
            .region(aws_sdk_cloudwatch::config::Region::new(log.region.clone()))
            .build(),
    );
    let namespaces: BTreeSet<&str> = all.iter().map(|d| d.namespace.as_str()).collect();
    for namespace in namespaces {
        let of_namespace: Vec<&Datum> = all.iter().filter(|d| d.namespace == namespace).collect();
        for chunk in of_namespace.chunks(MAX_DATA) {
            let metric_data = chunk
                .iter()
                .map(|d| {
                    MetricDatum::builder()
                        .metric_name(&d.name)
                        .set_dimensions(Some(
                            d.dimensions
                                .iter()
                                .map(|(name, value)| {
                                    Dimension::builder().name(name).value(value).build()
                                })
                                .collect(),
                        ))
                        .value(d.value)
                        .set_unit(d.unit.as_deref().map(StandardUnit::from))
                        .timestamp(DateTime::from_millis(d.timestamp_ms - FILED_EARLY_MS))
                        .build()
                })
                .collect();
            client
                .put_metric_data()
                .namespace(namespace)
                .set_metric_data(Some(metric_data))
                .send()
                .await
                .with_context(|| {
                    format!(
                        "PutMetricData in {} (an answer that is no CBOR: a moto server started before \
                         scripts/moto_server.py spoke CloudWatch's protocol; scripts/local-stack up warns of it)",
                        log.region
                    )
                })?;
        }
    }
    Ok(Forwarded {
        datapoints: all.len(),
        function_names,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_emf_line_gives_one_datapoint_per_metric_and_dimension_set() {
        let line = r#"{"Bytes":25523.0,"Duration":101.5,"FunctionName":"backfill-2","Outcome":"copied","_aws":{"CloudWatchMetrics":[{"Dimensions":[["FunctionName","Outcome"],["FunctionName"]],"Metrics":[{"Name":"Duration","Unit":"Milliseconds"},{"Name":"Bytes","Unit":"Bytes"}],"Namespace":"OverseasOrigin"}],"Timestamp":1796499174830}}"#;
        let found = data(line);
        assert_eq!(found.len(), 4);
        assert_eq!(
            found[1],
            Datum {
                namespace: "OverseasOrigin".into(),
                name: "Bytes".into(),
                unit: Some("Bytes".into()),
                dimensions: vec![
                    ("FunctionName".into(), "backfill-2".into()),
                    ("Outcome".into(), "copied".into())
                ],
                value: 25523.0,
                timestamp_ms: 1796499174830,
            }
        );
        assert_eq!(found[3].dimensions.len(), 1);
    }

    #[test]
    fn other_lines_give_nothing() {
        assert!(data("").is_empty());
        assert!(data("START RequestId: 1 Version: $LATEST").is_empty());
        assert!(data(r#"{"level":"INFO","message":"copied"}"#).is_empty());
        // A metric whose value or dimension is missing is skipped, as CloudWatch skips it.
        let line = r#"{"FunctionName":"f","_aws":{"Timestamp":1,"CloudWatchMetrics":[{"Namespace":"N","Dimensions":[["FunctionName","Missing"]],"Metrics":[{"Name":"X"}]}]}}"#;
        assert!(data(line).is_empty());
        // After a runtime's prefix.
        let prefixed = r#"2026-12-05T19:00:00Z	id	INFO	{"X":1,"_aws":{"Timestamp":1,"CloudWatchMetrics":[{"Namespace":"N","Dimensions":[[]],"Metrics":[{"Name":"X"}]}]}}"#;
        assert_eq!(data(prefixed).len(), 1);
    }
}
