//! Logs: JSON lines through `tracing` by default, text when Lambda's `AWS_LAMBDA_LOG_FORMAT` says
//! `Text`. The level comes from `AWS_LAMBDA_LOG_LEVEL` (Lambda's advanced logging controls), else
//! `RUST_LOG`, else INFO.

use tracing_subscriber::EnvFilter;

/// The filter directive for the given variables' values.
pub fn level_directive(lambda_level: Option<&str>, rust_log: Option<&str>) -> String {
    if let Some(level) = lambda_level.filter(|l| !l.trim().is_empty()) {
        let level = match level.trim().to_ascii_uppercase().as_str() {
            "TRACE" => "trace",
            "DEBUG" => "debug",
            "WARN" => "warn",
            "ERROR" | "FATAL" => "error",
            _ => "info",
        };
        return level.to_owned();
    }
    rust_log
        .filter(|l| !l.trim().is_empty())
        .unwrap_or("info")
        .to_owned()
}

/// Whether logs should be JSON.
pub fn wants_json(log_format: Option<&str>) -> bool {
    !log_format.is_some_and(|f| f.trim().eq_ignore_ascii_case("text"))
}

/// Installs the global subscriber. Harmless when one is already installed.
pub fn init() {
    let directive = level_directive(
        std::env::var("AWS_LAMBDA_LOG_LEVEL").ok().as_deref(),
        std::env::var("RUST_LOG").ok().as_deref(),
    );
    let filter = EnvFilter::try_new(&directive).unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(false)
        .with_target(false)
        .with_writer(std::io::stdout);
    let installed = if wants_json(std::env::var("AWS_LAMBDA_LOG_FORMAT").ok().as_deref()) {
        builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .try_init()
    } else {
        builder.try_init()
    };
    // The only failure is "already installed", which is what we want.
    drop(installed);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lambda_level_wins_over_rust_log() {
        assert_eq!(level_directive(Some("DEBUG"), Some("warn")), "debug");
        assert_eq!(level_directive(Some("FATAL"), None), "error");
        assert_eq!(level_directive(Some("whatever"), None), "info");
        assert_eq!(
            level_directive(None, Some("backfill=trace")),
            "backfill=trace"
        );
        assert_eq!(level_directive(Some(""), None), "info");
        assert_eq!(level_directive(None, None), "info");
    }

    #[test]
    fn json_unless_text() {
        assert!(wants_json(None));
        assert!(wants_json(Some("JSON")));
        assert!(!wants_json(Some("Text")));
    }
}
