//! CloudWatch Embedded Metric Format: one JSON line on stdout per set of metrics, which Lambda's
//! log pipeline turns into metrics without an API call.

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{json, Map, Value};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    Count,
    Bytes,
    Milliseconds,
    Seconds,
    Percent,
    None,
}

impl Unit {
    fn as_str(self) -> &'static str {
        match self {
            Unit::Count => "Count",
            Unit::Bytes => "Bytes",
            Unit::Milliseconds => "Milliseconds",
            Unit::Seconds => "Seconds",
            Unit::Percent => "Percent",
            Unit::None => "None",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Metric {
    pub name: &'static str,
    pub value: f64,
    pub unit: Unit,
}

impl Metric {
    pub fn count(name: &'static str, value: u64) -> Self {
        Metric {
            name,
            value: value as f64,
            unit: Unit::Count,
        }
    }

    pub fn bytes(name: &'static str, value: u64) -> Self {
        Metric {
            name,
            value: value as f64,
            unit: Unit::Bytes,
        }
    }

    pub fn millis(name: &'static str, value: f64) -> Self {
        Metric {
            name,
            value,
            unit: Unit::Milliseconds,
        }
    }
}

/// Writes metrics under one namespace, each line with the fixed dimensions (the function name)
/// plus the ones given at the call.
#[derive(Debug, Clone)]
pub struct Metrics {
    namespace: String,
    dimensions: Vec<(String, String)>,
    kept: Option<Captured>,
}

/// The documents a [`Metrics`] made by [`Metrics::capturing`] wrote, for tests that check what
/// a handler counts.
#[derive(Debug, Clone, Default)]
pub struct Captured(Arc<Mutex<Vec<Value>>>);

impl Captured {
    pub fn documents(&self) -> Vec<Value> {
        self.0.lock().expect("metrics lock").clone()
    }

    /// The sum of one metric over every document that has it.
    pub fn total(&self, name: &str) -> f64 {
        self.documents()
            .iter()
            .filter_map(|doc| doc.get(name).and_then(Value::as_f64))
            .sum()
    }
}

impl Metrics {
    pub fn new(namespace: impl Into<String>) -> Self {
        Metrics {
            namespace: namespace.into(),
            dimensions: Vec::new(),
            kept: None,
        }
    }

    /// The same metrics kept in memory instead of written to stdout.
    pub fn capturing(mut self) -> (Self, Captured) {
        let captured = Captured::default();
        self.kept = Some(captured.clone());
        (self, captured)
    }

    /// Namespace plus the `FunctionName` dimension from the Lambda environment, when present.
    pub fn for_function(namespace: impl Into<String>) -> Self {
        let metrics = Metrics::new(namespace);
        match std::env::var("AWS_LAMBDA_FUNCTION_NAME") {
            Ok(name) if !name.is_empty() => metrics.with_dimension("FunctionName", name),
            _ => metrics,
        }
    }

    pub fn with_dimension(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.dimensions.push((name.into(), value.into()));
        self
    }

    /// One EMF document.
    pub fn document(&self, dimensions: &[(&str, &str)], metrics: &[Metric]) -> Value {
        let timestamp = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or_default();
        let mut root = Map::new();
        let mut names = Vec::new();
        for (name, value) in self
            .dimensions
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .chain(dimensions.iter().copied())
        {
            if !root.contains_key(name) {
                names.push(Value::from(name));
            }
            root.insert(name.to_owned(), Value::from(value));
        }
        let definitions: Vec<Value> = metrics
            .iter()
            .map(|m| json!({"Name": m.name, "Unit": m.unit.as_str()}))
            .collect();
        for metric in metrics {
            root.insert(metric.name.to_owned(), json!(metric.value));
        }
        root.insert(
            "_aws".to_owned(),
            json!({
                "Timestamp": timestamp,
                "CloudWatchMetrics": [{
                    "Namespace": self.namespace,
                    "Dimensions": [names],
                    "Metrics": definitions,
                }],
            }),
        );
        Value::Object(root)
    }

    /// Writes one EMF line to `out`.
    pub fn write_to(
        &self,
        out: &mut impl Write,
        dimensions: &[(&str, &str)],
        metrics: &[Metric],
    ) -> std::io::Result<()> {
        let mut line = self.document(dimensions, metrics).to_string();
        line.push('\n');
        out.write_all(line.as_bytes())
    }

    /// Writes one EMF line to stdout, where Lambda picks it up.
    pub fn emit(&self, dimensions: &[(&str, &str)], metrics: &[Metric]) {
        if metrics.is_empty() {
            return;
        }
        if let Some(kept) = &self.kept {
            let document = self.document(dimensions, metrics);
            kept.0.lock().expect("metrics lock").push(document);
            return;
        }
        // A metric that cannot be written must not fail the work it describes.
        let _ = self.write_to(&mut std::io::stdout().lock(), dimensions, metrics);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_a_valid_emf_line() {
        let metrics = Metrics::new("OverseasOrigin").with_dimension("FunctionName", "backfill");
        let mut out = Vec::new();
        metrics
            .write_to(
                &mut out,
                &[("Outcome", "copied")],
                &[Metric::count("Objects", 1), Metric::bytes("Bytes", 4096)],
            )
            .unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(text.ends_with('\n') && text.matches('\n').count() == 1);
        let doc: Value = serde_json::from_str(&text).unwrap();
        let aws = &doc["_aws"];
        assert!(aws["Timestamp"].as_u64().unwrap() > 1_700_000_000_000);
        let directive = &aws["CloudWatchMetrics"][0];
        assert_eq!(directive["Namespace"], "OverseasOrigin");
        assert_eq!(
            directive["Dimensions"],
            json!([["FunctionName", "Outcome"]])
        );
        assert_eq!(
            directive["Metrics"],
            json!([{"Name": "Objects", "Unit": "Count"}, {"Name": "Bytes", "Unit": "Bytes"}])
        );
        // Every dimension and metric named in the directive has a value at the root.
        assert_eq!(doc["FunctionName"], "backfill");
        assert_eq!(doc["Outcome"], "copied");
        assert_eq!(doc["Objects"], 1.0);
        assert_eq!(doc["Bytes"], 4096.0);
    }

    #[test]
    fn a_call_dimension_overrides_a_fixed_one_once() {
        let metrics = Metrics::new("N").with_dimension("Stage", "a");
        let doc = metrics.document(&[("Stage", "b")], &[Metric::millis("Latency", 1.5)]);
        assert_eq!(
            doc["_aws"]["CloudWatchMetrics"][0]["Dimensions"],
            json!([["Stage"]])
        );
        assert_eq!(doc["Stage"], "b");
        assert_eq!(doc["Latency"], 1.5);
        assert_eq!(
            doc["_aws"]["CloudWatchMetrics"][0]["Metrics"][0]["Unit"],
            "Milliseconds"
        );
    }
}
