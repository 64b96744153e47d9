//! Property-based fuzzing of the parsers that take input from outside: CloudFront events, keys and
//! backfill messages. Bounded here (the test command); longer on demand:
//! `PROPTEST_CASES=200000 cargo test -p shared --test fuzz --release`.
//! A failure found becomes a regression case in `proptest-regressions/`, kept in the repository.

use proptest::prelude::*;
use serde_json::{json, Value};
use shared::cloudfront::Event;
use shared::message::BackfillMessage;
use shared::ObjectKey;
use test_support::json::mutate;

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: std::env::var("PROPTEST_CASES")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(3000),
        ..ProptestConfig::default()
    }
}

/// Arbitrary JSON, nested a few levels.
fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        ".{0,20}".prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 64, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::from),
            prop::collection::btree_map("[a-zA-Z]{1,12}", inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn sample_event() -> Value {
    json!({"Records": [{"cf": {
        "config": {"eventType": "origin-request", "requestId": "r"},
        "request": {"clientIp": "203.0.113.1", "headers": {"host": [{"key": "Host", "value": "a"}]},
                    "method": "GET", "querystring": "", "uri": "/a.jpg",
                    "origin": {"custom": {"customHeaders": {}, "domainName": "example.org", "path": "",
                               "port": 443, "protocol": "https"}}}
    }}]})
}

fn sample_message() -> Value {
    json!({"version": 1, "bucket": "overseas-origin", "key": "a/b.jpg",
           "origin": {"protocol": "https", "host": "example.org", "port": 443, "path": ""},
           "uri": "/a/b.jpg", "request_id": "r", "enqueued_at": "2026-11-25T08:00:00Z",
           "trigger": "origin-request"})
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn cloudfront_parser_never_panics(text in ".{0,200}", value in any_json()) {
        let _ = serde_json::from_str::<Event>(&text);
        let _ = serde_json::from_value::<Event>(value);
    }

    #[test]
    fn mutated_cloudfront_events_parse_or_fail_cleanly_and_round_trip(path in prop::collection::vec(any::<usize>(), 0..6), replacement in any_json()) {
        let mut event = sample_event();
        mutate(&mut event, &path, replacement);
        if let Ok(parsed) = serde_json::from_value::<Event>(event) {
            // What parses re-serializes and parses to the same thing.
            let again: Event = serde_json::from_value(serde_json::to_value(&parsed).unwrap()).unwrap();
            prop_assert_eq!(again, parsed);
        }
    }

    #[test]
    fn message_parser_never_panics(text in ".{0,300}") {
        let _ = BackfillMessage::parse(&text);
    }

    #[test]
    fn mutated_messages_are_refused_with_a_reason_or_valid(path in prop::collection::vec(any::<usize>(), 0..4), replacement in any_json()) {
        let mut message = sample_message();
        mutate(&mut message, &path, replacement);
        match BackfillMessage::parse(&message.to_string()) {
            Ok(parsed) => {
                prop_assert!(shared::message::is_bucket_name(&parsed.bucket));
                prop_assert!(parsed.uri.starts_with('/'));
                prop_assert_eq!(BackfillMessage::parse(&parsed.to_json()).unwrap(), parsed);
            }
            Err(err) => prop_assert!(!err.to_string().is_empty()),
        }
    }

    #[test]
    fn key_rules_never_panic_and_accept_only_valid_keys(raw in prop::collection::vec(any::<u8>(), 0..1100)) {
        let text = String::from_utf8_lossy(&raw).into_owned();
        let results = [
            ObjectKey::from_s3_event_key(&text),
            ObjectKey::from_cloudfront_uri(&format!("/{text}"), ""),
            ObjectKey::new(text.clone()),
        ];
        for key in results.into_iter().flatten() {
            let key = key.as_str();
            prop_assert!(!key.is_empty() && key.len() <= shared::key::MAX_KEY_BYTES);
            prop_assert!(!key.starts_with('/'));
            prop_assert!(!key.chars().any(char::is_control));
            prop_assert!(!key.split('/').any(|s| s == "." || s == ".."));
        }
    }
}
