//! CloudFront Lambda@Edge events and results (origin-request and origin-response).
//!
//! `aws_lambda_events` has no CloudFront types. These are lenient: every struct keeps the fields it
//! does not know in `extra`, so an event parses whatever CloudFront adds, and a request handed back
//! to CloudFront carries everything it came with.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// The event a Lambda@Edge trigger receives.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    #[serde(rename = "Records")]
    pub records: Vec<Record>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl Event {
    /// CloudFront sends exactly one record per invocation.
    pub fn into_single(self) -> Option<Cf> {
        self.records.into_iter().next().map(|record| record.cf)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    pub cf: Cf,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Cf {
    pub config: Config,
    pub request: Request,
    /// Present in origin-response (and viewer-response) events.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response: Option<Response>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Config {
    #[serde(default)]
    pub distribution_domain_name: String,
    #[serde(default)]
    pub distribution_id: String,
    /// Kept as sent; [`Config::event_type`] interprets it.
    #[serde(default, rename = "eventType")]
    pub event_type_name: String,
    #[serde(default)]
    pub request_id: String,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl Config {
    pub fn event_type(&self) -> EventType {
        match self.event_type_name.as_str() {
            "origin-request" => EventType::OriginRequest,
            "origin-response" => EventType::OriginResponse,
            "viewer-request" => EventType::ViewerRequest,
            "viewer-response" => EventType::ViewerResponse,
            _ => EventType::Unknown,
        }
    }
}

/// Which trigger fired.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    OriginRequest,
    OriginResponse,
    ViewerRequest,
    ViewerResponse,
    Unknown,
}

/// Every header of the edge hook's configuration, carried on the domestic origin's custom headers,
/// starts with this; the hook removes them all before the request reaches that origin.
pub const HOOK_HEADER_PREFIX: &str = "x-backfill-";

/// Header map as CloudFront shapes it: lower-case name to a list of `{key, value}`.
pub type Headers = BTreeMap<String, Vec<Header>>;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Header {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    pub value: String,
}

impl Header {
    pub fn new(key: impl Into<String>, value: impl Into<String>) -> Self {
        Header {
            key: Some(key.into()),
            value: value.into(),
        }
    }
}

/// The first value of a header, looked up by its lower-case name.
pub fn header_value<'a>(headers: &'a Headers, lower_case_name: &str) -> Option<&'a str> {
    headers
        .get(lower_case_name)
        .and_then(|values| values.first())
        .map(|header| header.value.as_str())
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Request {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub client_ip: String,
    #[serde(default)]
    pub headers: Headers,
    #[serde(default)]
    pub method: String,
    #[serde(default)]
    pub querystring: String,
    pub uri: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin: Option<Origin>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// The origin a request is about to go to: exactly one of `s3` or `custom`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Origin {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub s3: Option<S3Origin>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub custom: Option<CustomOrigin>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct S3Origin {
    #[serde(default)]
    pub domain_name: String,
    #[serde(default)]
    pub path: String,
    #[serde(default)]
    pub custom_headers: Headers,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CustomOrigin {
    #[serde(default)]
    pub domain_name: String,
    #[serde(default)]
    pub path: String,
    #[serde(default)]
    pub port: u16,
    #[serde(default)]
    pub protocol: String,
    #[serde(default)]
    pub custom_headers: Headers,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Response {
    #[serde(default)]
    pub headers: Headers,
    /// CloudFront sends the status as a string ("200").
    pub status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_description: Option<String>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl Response {
    /// The numeric status, if CloudFront's string holds one.
    pub fn status_code(&self) -> Option<u16> {
        self.status.trim().parse().ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // The documented sample events, as published in the CloudFront developer guide.
    const ORIGIN_REQUEST_CUSTOM: &str = r#"{
      "Records": [{"cf": {
        "config": {"distributionDomainName": "d111111abcdef8.cloudfront.net", "distributionId": "EDFDVBD6EXAMPLE",
                   "eventType": "origin-request", "requestId": "4TyzHTaYWb1GX1qTfsHhEqV6HUDd_BzoBZnwfnvQc_1oF26ClkoUSEQ=="},
        "request": {
          "clientIp": "203.0.113.178",
          "headers": {
            "x-forwarded-for": [{"key": "X-Forwarded-For", "value": "203.0.113.178"}],
            "user-agent": [{"key": "User-Agent", "value": "Amazon CloudFront"}],
            "via": [{"key": "Via", "value": "2.0 2afae0d44e2540f472c0635ab62c232b.cloudfront.net (CloudFront)"}],
            "host": [{"key": "Host", "value": "example.org"}],
            "cache-control": [{"key": "Cache-Control", "value": "no-cache"}]
          },
          "method": "GET",
          "origin": {"custom": {"customHeaders": {}, "domainName": "example.org", "keepaliveTimeout": 5,
                     "path": "", "port": 443, "protocol": "https", "readTimeout": 30,
                     "sslProtocols": ["TLSv1", "TLSv1.1", "TLSv1.2"]}},
          "querystring": "",
          "uri": "/"
        }
      }}]
    }"#;

    const ORIGIN_REQUEST_S3: &str = r#"{
      "Records": [{"cf": {
        "config": {"distributionDomainName": "d111111abcdef8.cloudfront.net", "distributionId": "EDFDVBD6EXAMPLE",
                   "eventType": "origin-request", "requestId": "4TyzHTaYWb1GX1qTfsHhEqV6HUDd_BzoBZnwfnvQc_1oF26ClkoUSEQ=="},
        "request": {
          "clientIp": "203.0.113.178",
          "headers": {"host": [{"key": "Host", "value": "amzn-s3-demo-bucket.s3.amazonaws.com"}]},
          "method": "GET",
          "origin": {"s3": {"authMethod": "origin-access-identity", "customHeaders": {},
                     "domainName": "amzn-s3-demo-bucket.s3.amazonaws.com", "path": "", "region": "us-east-1"}},
          "querystring": "",
          "uri": "/images/cat.jpg"
        }
      }}]
    }"#;

    const ORIGIN_RESPONSE: &str = r#"{
      "Records": [{"cf": {
        "config": {"distributionDomainName": "d111111abcdef8.cloudfront.net", "distributionId": "EDFDVBD6EXAMPLE",
                   "eventType": "origin-response", "requestId": "4TyzHTaYWb1GX1qTfsHhEqV6HUDd_BzoBZnwfnvQc_1oF26ClkoUSEQ=="},
        "request": {
          "clientIp": "203.0.113.178",
          "headers": {"host": [{"key": "Host", "value": "example.org"}]},
          "method": "GET",
          "origin": {"custom": {"customHeaders": {}, "domainName": "example.org", "keepaliveTimeout": 5,
                     "path": "", "port": 443, "protocol": "https", "readTimeout": 30,
                     "sslProtocols": ["TLSv1", "TLSv1.1", "TLSv1.2"]}},
          "querystring": "",
          "uri": "/"
        },
        "response": {
          "headers": {
            "content-length": [{"key": "Content-Length", "value": "9593"}],
            "content-type": [{"key": "Content-Type", "value": "text/html; charset=utf-8"}],
            "etag": [{"key": "ETag", "value": "\"2ce-4hUE-hOkQMTW3k4cW0WGLOCUsXw\""}]
          },
          "status": "200",
          "statusDescription": "OK"
        }
      }}]
    }"#;

    fn round_trip(sample: &str) -> Cf {
        let original: Value = serde_json::from_str(sample).unwrap();
        let event: Event = serde_json::from_value(original.clone()).unwrap();
        assert_eq!(serde_json::to_value(&event).unwrap(), original);
        event.into_single().unwrap()
    }

    #[test]
    fn custom_origin_request_round_trips() {
        let cf = round_trip(ORIGIN_REQUEST_CUSTOM);
        assert_eq!(cf.config.event_type(), EventType::OriginRequest);
        let origin = cf.request.origin.unwrap();
        let custom = origin.custom.unwrap();
        assert!(origin.s3.is_none());
        assert_eq!(custom.domain_name, "example.org");
        assert_eq!(custom.port, 443);
        assert_eq!(custom.extra["readTimeout"], 30);
        assert_eq!(
            header_value(&cf.request.headers, "user-agent"),
            Some("Amazon CloudFront")
        );
    }

    #[test]
    fn s3_origin_request_round_trips() {
        let cf = round_trip(ORIGIN_REQUEST_S3);
        let origin = cf.request.origin.unwrap();
        assert!(origin.custom.is_none());
        assert_eq!(
            origin.s3.unwrap().extra["authMethod"],
            "origin-access-identity"
        );
        assert_eq!(cf.request.uri, "/images/cat.jpg");
    }

    #[test]
    fn origin_response_round_trips() {
        let cf = round_trip(ORIGIN_RESPONSE);
        assert_eq!(cf.config.event_type(), EventType::OriginResponse);
        let response = cf.response.unwrap();
        assert_eq!(response.status_code(), Some(200));
        assert_eq!(
            header_value(&response.headers, "content-length"),
            Some("9593")
        );
    }

    #[test]
    fn unknown_fields_and_values_do_not_fail_parsing() {
        let sample = ORIGIN_REQUEST_CUSTOM
            .replace("\"origin-request\"", "\"origin-something-new\"")
            .replace("\"clientIp\"", "\"newField\": {\"a\": [1]}, \"clientIp\"");
        let original: Value = serde_json::from_str(&sample).unwrap();
        let event: Event = serde_json::from_value(original.clone()).unwrap();
        let cf = event.clone().into_single().unwrap();
        assert_eq!(cf.config.event_type(), EventType::Unknown);
        assert_eq!(cf.request.extra["newField"]["a"][0], 1);
    }

    #[test]
    fn header_without_key_is_accepted() {
        let headers: Headers =
            serde_json::from_str(r#"{"x-a": [{"value": "1"}, {"key": "X-A", "value": "2"}]}"#)
                .unwrap();
        assert_eq!(header_value(&headers, "x-a"), Some("1"));
        assert_eq!(header_value(&headers, "x-b"), None);
    }
}
