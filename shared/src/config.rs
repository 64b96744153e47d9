//! Typed configuration from environment variables, parsed once at cold start. A bad value fails the
//! init with a message naming the variable and the form it should have.

use std::collections::HashMap;
use std::str::FromStr;
use std::time::Duration;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("configuration variable {variable} {problem}; expected {expected}")]
pub struct ConfigError {
    pub variable: String,
    pub problem: String,
    pub expected: String,
}

/// Where variables come from: the process environment, or a fixed set in tests.
#[derive(Debug, Clone)]
pub struct Env {
    fixed: Option<HashMap<String, String>>,
}

impl Env {
    pub fn process() -> Self {
        Env { fixed: None }
    }

    pub fn from_pairs<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        Env {
            fixed: Some(
                pairs
                    .into_iter()
                    .map(|(k, v)| (k.to_owned(), v.to_owned()))
                    .collect(),
            ),
        }
    }

    /// The variable's value; an empty value counts as unset.
    pub fn get(&self, name: &str) -> Option<String> {
        let value = match &self.fixed {
            Some(map) => map.get(name).cloned(),
            None => std::env::var(name).ok(),
        };
        value.filter(|v| !v.trim().is_empty())
    }

    pub fn required(&self, name: &str, expected: &str) -> Result<String, ConfigError> {
        self.get(name)
            .ok_or_else(|| error(name, "is not set", expected))
    }

    /// Parses the variable with `parse`, or returns `default` when it is unset.
    pub fn parse_or<T>(
        &self,
        name: &str,
        default: T,
        expected: &str,
        parse: impl FnOnce(&str) -> Option<T>,
    ) -> Result<T, ConfigError> {
        match self.get(name) {
            None => Ok(default),
            Some(raw) => {
                parse(raw.trim()).ok_or_else(|| error(name, &format!("is {raw:?}"), expected))
            }
        }
    }

    /// A number (or anything `FromStr`) with a default.
    pub fn number_or<T: FromStr>(
        &self,
        name: &str,
        default: T,
        expected: &str,
    ) -> Result<T, ConfigError> {
        self.parse_or(name, default, expected, |raw| raw.parse().ok())
    }

    /// A duration such as `250ms`, `5s`, `2m` or `1h`.
    pub fn duration_or(&self, name: &str, default: Duration) -> Result<Duration, ConfigError> {
        self.parse_or(
            name,
            default,
            "a duration such as 250ms, 5s, 2m or 1h",
            parse_duration,
        )
    }

    pub fn bool_or(&self, name: &str, default: bool) -> Result<bool, ConfigError> {
        self.parse_or(name, default, "true or false", |raw| {
            match raw.to_ascii_lowercase().as_str() {
                "true" | "1" | "yes" => Some(true),
                "false" | "0" | "no" => Some(false),
                _ => None,
            }
        })
    }

    /// A comma-separated list (items trimmed, empty items dropped), or `default` when unset.
    pub fn list_or(&self, name: &str, default: &[&str]) -> Vec<String> {
        match self.get(name) {
            None => default.iter().map(|s| (*s).to_owned()).collect(),
            Some(raw) => split_list(&raw),
        }
    }
}

/// Builds the error for variable `name`.
pub fn error(name: &str, problem: &str, expected: &str) -> ConfigError {
    ConfigError {
        variable: name.to_owned(),
        problem: problem.to_owned(),
        expected: expected.to_owned(),
    }
}

pub fn split_list(raw: &str) -> Vec<String> {
    raw.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

pub fn parse_duration(raw: &str) -> Option<Duration> {
    let raw = raw.trim();
    let digits = raw.find(|c: char| !c.is_ascii_digit()).unwrap_or(raw.len());
    let (number, unit) = raw.split_at(digits);
    let number: u64 = number.parse().ok()?;
    match unit.trim() {
        "ms" => Some(Duration::from_millis(number)),
        "s" => Some(Duration::from_secs(number)),
        "m" => Some(Duration::from_secs(number.checked_mul(60)?)),
        "h" => Some(Duration::from_secs(number.checked_mul(3600)?)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn required_names_the_variable() {
        let env = Env::from_pairs([("EMPTY", " ")]);
        let err = env.required("BUCKET", "an S3 bucket name").unwrap_err();
        assert_eq!(
            err.to_string(),
            "configuration variable BUCKET is not set; expected an S3 bucket name"
        );
        assert!(env.required("EMPTY", "x").is_err());
    }

    #[test]
    fn bad_values_fail_with_the_expected_form() {
        let env = Env::from_pairs([("CONCURRENCY", "ten"), ("TIMEOUT", "5 parsecs")]);
        let err = env
            .number_or("CONCURRENCY", 4usize, "a whole number")
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "configuration variable CONCURRENCY is \"ten\"; expected a whole number"
        );
        let err = env
            .duration_or("TIMEOUT", Duration::from_secs(1))
            .unwrap_err();
        assert_eq!(err.variable, "TIMEOUT");
        assert!(err.expected.contains("250ms"));
    }

    #[test]
    fn defaults_and_values() {
        let env = Env::from_pairs([
            ("N", "7"),
            ("T", "250ms"),
            ("B", "TRUE"),
            ("L", " a, b ,,c "),
        ]);
        assert_eq!(env.number_or("N", 1u32, "n").unwrap(), 7);
        assert_eq!(env.number_or("MISSING", 1u32, "n").unwrap(), 1);
        assert_eq!(
            env.duration_or("T", Duration::ZERO).unwrap(),
            Duration::from_millis(250)
        );
        assert!(env.bool_or("B", false).unwrap());
        assert_eq!(env.list_or("L", &[]), ["a", "b", "c"]);
        assert_eq!(env.list_or("MISSING", &["x"]), ["x"]);
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("2m"), Some(Duration::from_secs(120)));
        assert_eq!(parse_duration("1h"), Some(Duration::from_secs(3600)));
        assert_eq!(parse_duration("30 s"), Some(Duration::from_secs(30)));
        assert_eq!(parse_duration("s"), None);
        assert_eq!(parse_duration("-1s"), None);
        assert_eq!(parse_duration("10"), None);
    }
}
