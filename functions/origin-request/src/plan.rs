//! The decision, with no I/O: a CloudFront event in; what to hand back to CloudFront and whether
//! to enqueue a backfill out.

use serde::Serialize;
use shared::cloudfront::{header_value, Cf, CustomOrigin, Event, EventType, Request, Response};
use shared::config::ConfigError;
use shared::key::KeyError;
use shared::message::{
    BackfillMessage, MessageError, ObservedResponse, OriginLocation, Protocol, Trigger,
    MESSAGE_VERSION,
};
use shared::ObjectKey;
use time::OffsetDateTime;

use crate::config::{self, EdgeConfig, QueueTarget};
use crate::error::EdgeError;

pub use shared::message::{FifoIds, FIFO_GROUPS};

/// What the trigger hands back to CloudFront: the request for origin-request (and viewer-request)
/// events, the response for response events.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Reply {
    Request(Box<Request>),
    Response(Box<Response>),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    pub reply: Reply,
    pub action: Action,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    Skip(SkipReason),
    Enqueue(Box<Backfill>),
}

/// A backfill to enqueue.
#[derive(Debug, Clone, PartialEq)]
pub struct Backfill {
    pub message: OutgoingMessage,
    pub bucket: String,
    pub key: ObjectKey,
    pub request_id: String,
    pub trigger: Trigger,
    pub send_budget: std::time::Duration,
    pub repeat_window: std::time::Duration,
}

impl Backfill {
    /// What identifies a repeat: the same object in the same bucket.
    pub fn repeat_key(&self) -> String {
        format!("{}/{}", self.bucket, self.key)
    }
}

/// An SQS message, ready to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutgoingMessage {
    pub queue: QueueTarget,
    pub body: String,
    /// Set for a FIFO queue.
    pub fifo: Option<FifoIds>,
}

/// Why a request was let through without a backfill.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SkipReason {
    /// A viewer trigger, or an event type this build does not know.
    NotAnOriginEvent,
    S3Origin,
    UnmarkedOrigin,
    BadConfig(ConfigError),
    Method(String),
    /// An origin-response event without a response.
    NoResponse,
    /// The domestic origin did not answer 2xx (origin-response).
    Status(String),
    InvalidKey(KeyError),
    /// The key is under a prefix the backfill never writes (`x-backfill-refused-prefixes`).
    RefusedPrefix(String),
    /// The custom origin's protocol is neither http nor https.
    InvalidOrigin(String),
    /// The message would not pass the backfill function's own checks.
    InvalidMessage(MessageError),
}

impl SkipReason {
    /// A short, stable label for logs and the metric's `Reason` dimension.
    pub fn label(&self) -> &'static str {
        match self {
            SkipReason::NotAnOriginEvent => "not_origin_event",
            SkipReason::S3Origin => "s3_origin",
            SkipReason::UnmarkedOrigin => "unmarked_origin",
            SkipReason::BadConfig(_) => "bad_config",
            SkipReason::Method(_) => "method",
            SkipReason::NoResponse => "no_response",
            SkipReason::Status(_) => "status",
            SkipReason::InvalidKey(_) => "invalid_key",
            SkipReason::RefusedPrefix(_) => "refused_prefix",
            SkipReason::InvalidOrigin(_) => "invalid_origin",
            SkipReason::InvalidMessage(_) => "invalid_message",
        }
    }

    /// Whether the skip points at something to fix (configuration, a bad URI) rather than
    /// ordinary traffic.
    pub fn is_anomaly(&self) -> bool {
        matches!(
            self,
            SkipReason::BadConfig(_)
                | SkipReason::NoResponse
                | SkipReason::InvalidKey(_)
                | SkipReason::InvalidOrigin(_)
                | SkipReason::InvalidMessage(_)
        )
    }
}

impl std::fmt::Display for SkipReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SkipReason::NotAnOriginEvent => {
                f.write_str("not an origin-request or origin-response event")
            }
            SkipReason::S3Origin => f.write_str("the request goes to the S3 origin"),
            SkipReason::UnmarkedOrigin => {
                f.write_str("the origin carries no backfill configuration")
            }
            SkipReason::BadConfig(err) => write!(f, "{err}"),
            SkipReason::Method(method) => write!(f, "method {method:?} is not GET or HEAD"),
            SkipReason::NoResponse => f.write_str("origin-response event without a response"),
            SkipReason::Status(status) => write!(f, "the origin answered {status:?}, not 2xx"),
            SkipReason::InvalidKey(err) => write!(f, "invalid key: {err}"),
            SkipReason::RefusedPrefix(prefix) => {
                write!(f, "the key is under the refused prefix {prefix:?}")
            }
            SkipReason::InvalidOrigin(protocol) => {
                write!(f, "origin protocol {protocol:?} is not http or https")
            }
            SkipReason::InvalidMessage(err) => write!(f, "{err}"),
        }
    }
}

/// Plans the hook's work for one event. Only an event without a record, which leaves nothing to
/// hand back, is an error.
pub fn plan(event: Event, now: OffsetDateTime) -> Result<Plan, EdgeError> {
    let mut cf = event.into_single().ok_or(EdgeError::NoRecord)?;
    let trigger = match cf.config.event_type() {
        EventType::OriginRequest => Trigger::OriginRequest,
        EventType::OriginResponse => Trigger::OriginResponse,
        EventType::ViewerRequest | EventType::ViewerResponse | EventType::Unknown => {
            return Ok(skip(reply_of(cf), SkipReason::NotAnOriginEvent));
        }
    };
    let action = match decide(&cf, trigger, now) {
        Ok(backfill) => Action::Enqueue(Box::new(backfill)),
        Err(reason) => Action::Skip(reason),
    };
    if trigger == Trigger::OriginRequest {
        if let Some(custom) = cf.request.origin.as_mut().and_then(|o| o.custom.as_mut()) {
            config::strip(&mut custom.custom_headers);
        }
    }
    Ok(Plan {
        reply: reply_of(cf),
        action,
    })
}

fn skip(reply: Reply, reason: SkipReason) -> Plan {
    Plan {
        reply,
        action: Action::Skip(reason),
    }
}

fn reply_of(cf: Cf) -> Reply {
    let wants_response = matches!(
        cf.config.event_type(),
        EventType::OriginResponse | EventType::ViewerResponse
    );
    match cf.response {
        Some(response) if wants_response => Reply::Response(Box::new(response)),
        _ => Reply::Request(Box::new(cf.request)),
    }
}

fn decide(cf: &Cf, trigger: Trigger, now: OffsetDateTime) -> Result<Backfill, SkipReason> {
    let origin = cf.request.origin.as_ref();
    let Some(custom) = origin.and_then(|o| o.custom.as_ref()) else {
        return Err(if origin.is_some_and(|o| o.s3.is_some()) {
            SkipReason::S3Origin
        } else {
            SkipReason::UnmarkedOrigin
        });
    };
    let config = EdgeConfig::from_headers(&custom.custom_headers)
        .map_err(SkipReason::BadConfig)?
        .ok_or(SkipReason::UnmarkedOrigin)?;
    let method = cf.request.method.as_str();
    if !method.eq_ignore_ascii_case("GET") && !method.eq_ignore_ascii_case("HEAD") {
        return Err(SkipReason::Method(method.to_owned()));
    }
    let observed = match trigger {
        Trigger::OriginResponse => {
            let response = cf.response.as_ref().ok_or(SkipReason::NoResponse)?;
            Some(observe(response)?)
        }
        Trigger::OriginRequest | Trigger::Operator => None,
    };
    let key = ObjectKey::from_cloudfront_uri(&cf.request.uri, &config.key_prefix)
        .map_err(SkipReason::InvalidKey)?;
    if let Some(prefix) = config.refused_prefixes.refusing(key.as_str()) {
        return Err(SkipReason::RefusedPrefix(prefix.to_owned()));
    }
    let origin = origin_location(custom)?;
    let message = BackfillMessage {
        version: MESSAGE_VERSION,
        bucket: config.bucket.clone(),
        key: key.clone(),
        origin,
        uri: cf.request.uri.clone(),
        request_id: cf.config.request_id.clone(),
        enqueued_at: now,
        trigger,
        observed,
    };
    let body = message.to_json();
    // The consumer parses with these rules: a message it would refuse is not worth sending.
    BackfillMessage::parse(&body).map_err(SkipReason::InvalidMessage)?;
    let fifo = config
        .queue
        .fifo
        .then(|| FifoIds::for_object(&config.bucket, &key));
    Ok(Backfill {
        message: OutgoingMessage {
            queue: config.queue,
            body,
            fifo,
        },
        bucket: config.bucket,
        key,
        request_id: cf.config.request_id.clone(),
        trigger,
        send_budget: config.send_budget,
        repeat_window: config.repeat_window,
    })
}

fn observe(response: &Response) -> Result<ObservedResponse, SkipReason> {
    let status = response
        .status_code()
        .filter(|status| (200..300).contains(status))
        .ok_or_else(|| SkipReason::Status(response.status.clone()))?;
    let headers = &response.headers;
    // A 206 answers a range: its Content-Length is the part's; the whole object's length is the
    // total in Content-Range, when the origin knows it.
    let content_length = if status == 206 {
        header_value(headers, "content-range")
            .and_then(|range| range.rsplit_once('/'))
            .and_then(|(_, total)| total.trim().parse().ok())
    } else {
        header_value(headers, "content-length").and_then(|v| v.trim().parse().ok())
    };
    Ok(ObservedResponse {
        status,
        content_length,
        etag: header_value(headers, "etag").map(str::to_owned),
        content_type: header_value(headers, "content-type").map(str::to_owned),
    })
}

fn origin_location(custom: &CustomOrigin) -> Result<OriginLocation, SkipReason> {
    let protocol = Protocol::parse(&custom.protocol)
        .ok_or_else(|| SkipReason::InvalidOrigin(custom.protocol.clone()))?;
    let port = match (custom.port, protocol) {
        (0, Protocol::Http) => 80,
        (0, Protocol::Https) => 443,
        (port, _) => port,
    };
    Ok(OriginLocation {
        protocol,
        host: custom.domain_name.clone(),
        port,
        path: custom.path.trim_end_matches('/').to_owned(),
    })
}
