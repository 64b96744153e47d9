//! The edge simulator: a local HTTP front that reproduces what matters of CloudFront here. An origin
//! group (the local S3 bucket first, the domestic origin second, failover on the configured statuses
//! and on connection errors), the real packaged edge hook invoked on each origin attempt with the
//! event CloudFront would send (the request it returns is the one fetched), an optional cache, and a
//! viewer header saying who served the response. Not a CloudFront clone: no TLS; two behaviours
//! (the thumbnails, served by the bucket alone, and the default one, served by the origin group).
//!
//! Multi-region: the distribution's origins are a table by id (slot 1's `overseas-bucket` and
//! `domestic`, slot N's `bucket-N` and `domestic-N`, `domestic-direct`), and the real viewer-request
//! CloudFront Function runs first on every request ([`crate::viewer`]): it picks an origin group or
//! one origin by id, as CloudFront's origin helpers do. The viewer's country comes from the demo's
//! `x-viewer-country` header, turned into the `cloudfront-viewer-country` CloudFront adds.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context, Result};
use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::{Request, Response};
use serde_json::{json, Map, Value};
use shared::ObjectKey;
use tokio_util::io::ReaderStream;

use crate::http::{self, Body};
use crate::viewer::{self, Decision, OriginChoice, ViewerFunction};

/// The viewer response header naming who served it: `s3:<bucket region>`, `domestic`, `cache`,
/// `edge` (a response the hook generated) or `function` (one the viewer-request function did).
pub const SERVED_BY: &str = "x-served-by";

/// The viewer's country, as the demo's clients say it (the simulator has no geolocation).
pub const VIEWER_COUNTRY: &str = "x-viewer-country";

/// The default behaviour's origin group, and the id of its first member (the thumbnails
/// behaviour's origin).
pub const DEFAULT_GROUP: [&str; 2] = ["overseas-bucket", "domestic"];

/// The viewer response header with the time the viewer-request function took in the simulator
/// (`viewer-function;dur=MILLISECONDS`): the call into its Node.js process and back, not
/// CloudFront's.
pub const SERVER_TIMING: &str = "server-timing";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    OriginRequest,
    OriginResponse,
}

pub struct EdgeConfig {
    /// Invocation URLs of the edge hook's sandboxes (each serves one invocation at a time); none:
    /// a distribution without the hook.
    pub hooks: Vec<String>,
    pub trigger: Trigger,
    /// The distribution's origins by id; [`DEFAULT_GROUP`]'s two at least.
    pub origins: HashMap<String, OriginConfig>,
    /// The default group's failover statuses.
    pub failover_statuses: Vec<u16>,
    /// Key prefix (no leading `/`) of the thumbnails behaviour; empty: no such behaviour.
    pub thumbnail_prefix: String,
    /// The viewer-request function of every behaviour, if any.
    pub viewer_function: Option<ViewerFunction>,
    pub cache: bool,
}

/// One origin of the distribution, and where it is on this machine.
pub enum OriginConfig {
    /// An S3 bucket (behind Origin Access Control), read from the local S3 of its region.
    Bucket {
        bucket: String,
        region: String,
        s3: aws_sdk_s3::Client,
    },
    /// The domestic origin (a custom origin), with its custom headers: the hook's configuration
    /// for one regional stack, or none.
    Domestic {
        host: String,
        port: u16,
        headers: Vec<(String, String)>,
    },
}

impl OriginConfig {
    fn served_by(&self) -> String {
        match self {
            OriginConfig::Bucket { region, .. } => format!("s3:{region}"),
            OriginConfig::Domestic { .. } => "domestic".into(),
        }
    }

    /// `cf.request.origin` as Lambda@Edge sees it.
    fn event_json(&self) -> Value {
        match self {
            OriginConfig::Bucket { bucket, region, .. } => json!({"s3": {
                "authMethod": "origin-access-control",
                "customHeaders": {},
                "domainName": format!("{bucket}.s3.{region}.amazonaws.com"),
                "path": "",
                "region": region,
            }}),
            OriginConfig::Domestic {
                host,
                port,
                headers,
            } => {
                let custom_headers: Map<String, Value> = headers
                    .iter()
                    .map(|(name, value)| {
                        (
                            name.to_ascii_lowercase(),
                            json!([{"key": name, "value": value}]),
                        )
                    })
                    .collect();
                json!({"custom": {
                    "customHeaders": custom_headers,
                    "domainName": host,
                    "keepaliveTimeout": 5,
                    "path": "",
                    "port": port,
                    "protocol": "http",
                    "readTimeout": 30,
                    "sslProtocols": ["TLSv1.2"],
                }})
            }
        }
    }
}

/// Where one request goes: an origin, then another on these statuses.
struct Route {
    primary: String,
    secondary: Option<(String, Vec<u16>)>,
}

struct Edge {
    config: EdgeConfig,
    client: reqwest::Client,
    sandboxes: Vec<tokio::sync::Mutex<()>>,
    next: AtomicUsize,
    cache: Mutex<HashMap<String, Cached>>,
    /// Whether any `x-backfill-*` header ever reached the domestic origin.
    leaked: Arc<Mutex<bool>>,
    hooked_attempts: Arc<Mutex<BTreeMap<String, (u64, u64)>>>,
}

#[derive(Clone)]
struct Cached {
    status: u16,
    headers: Vec<(String, String)>,
    body: Bytes,
}

/// What the edge learned, for the demo report.
#[derive(Clone)]
pub struct EdgeStats {
    pub config_headers_leaked: Arc<Mutex<bool>>,
    /// Origin attempts the hook ran on, per bucket region: (on the bucket, on the domestic origin
    /// carrying that region's configuration), as the hook's RegionalRequests and
    /// RegionalFallbacks count them.
    pub hooked_attempts: Arc<Mutex<BTreeMap<String, (u64, u64)>>>,
}

/// An answer from one origin attempt.
struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: Body,
}

const CACHEABLE_BYTES: u64 = 8 * 1024 * 1024;

pub async fn start(config: EdgeConfig, port: u16) -> Result<(SocketAddr, EdgeStats)> {
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()?;
    let leaked = Arc::new(Mutex::new(false));
    let hooked_attempts: Arc<Mutex<BTreeMap<String, (u64, u64)>>> = Arc::default();
    let edge = Arc::new(Edge {
        hooked_attempts: hooked_attempts.clone(),
        sandboxes: config
            .hooks
            .iter()
            .map(|_| tokio::sync::Mutex::new(()))
            .collect(),
        config,
        client,
        next: AtomicUsize::new(0),
        cache: Mutex::new(HashMap::new()),
        leaked: leaked.clone(),
    });
    let addr = http::serve(port, move |request| {
        let edge = edge.clone();
        async move {
            match edge.handle(request).await {
                Ok(response) => response,
                Err(err) => http::text(502, &format!("edge: {err:#}")),
            }
        }
    })
    .await?;
    Ok((
        addr,
        EdgeStats {
            config_headers_leaked: leaked,
            hooked_attempts,
        },
    ))
}

impl Edge {
    async fn handle(&self, request: Request<Incoming>) -> Result<Response<Body>> {
        let mut function_time = None;
        let mut response = self.serve(request, &mut function_time).await?;
        if let Some(elapsed) = function_time {
            let timing = format!("viewer-function;dur={:.3}", elapsed.as_secs_f64() * 1000.0);
            response
                .headers_mut()
                .insert(SERVER_TIMING, timing.parse().context("a header value")?);
        }
        Ok(response)
    }

    /// Serves one viewer request; `function_time`: how long the viewer function took, if it ran.
    async fn serve(
        &self,
        request: Request<Incoming>,
        function_time: &mut Option<Duration>,
    ) -> Result<Response<Body>> {
        let method = request.method().as_str().to_owned();
        let mut uri = request.uri().path().to_owned();
        let mut query = request.uri().query().unwrap_or_default().to_owned();
        let cache_key = format!("{uri}?{query}");
        if self.config.cache && method == "GET" {
            if let Some(hit) = self.cache.lock().unwrap().get(&cache_key).cloned() {
                return Ok(respond(
                    hit.status,
                    &hit.headers,
                    http::full(hit.body),
                    "cache",
                ));
            }
        }
        let request_id = request_id();
        let mut headers = viewer_headers(request.headers());
        let thumbnail = !self.config.thumbnail_prefix.is_empty()
            && uri
                .strip_prefix('/')
                .is_some_and(|key| key.starts_with(&self.config.thumbnail_prefix));
        // The behaviour's origin: the thumbnails' bucket alone, else the default group.
        let mut route = if thumbnail {
            Route {
                primary: DEFAULT_GROUP[0].into(),
                secondary: None,
            }
        } else {
            Route {
                primary: DEFAULT_GROUP[0].into(),
                secondary: Some((
                    DEFAULT_GROUP[1].into(),
                    self.config.failover_statuses.clone(),
                )),
            }
        };
        if let Some(function) = &self.config.viewer_function {
            let event = viewer::function_event(&method, &uri, &query, &headers, &request_id);
            let started = Instant::now();
            let decision = function.run(event).await?;
            *function_time = Some(started.elapsed());
            match decision {
                Decision::Respond(response) => return Ok(function_response(&response)),
                Decision::Forward { request, origin } => {
                    (uri, query, headers) = viewer::forwarded(&request);
                    match origin {
                        OriginChoice::Behaviour => {}
                        OriginChoice::Group {
                            primary,
                            secondary,
                            failover_statuses,
                        } => {
                            route = Route {
                                primary,
                                secondary: Some((secondary, failover_statuses)),
                            }
                        }
                        OriginChoice::Single(id) => {
                            route = Route {
                                primary: id,
                                secondary: None,
                            }
                        }
                    }
                }
            }
        }
        let cf_request = json!({
            "clientIp": "127.0.0.1",
            "headers": headers_json(&headers),
            "method": method,
            "querystring": query,
            "uri": uri,
        });

        // Only the default behaviour has the hook.
        let hook = !thumbnail && !self.config.hooks.is_empty();
        let primary = self.origin(&route.primary)?;
        let failover = match self
            .attempt(&cf_request, primary, &request_id, hook)
            .await?
        {
            Attempt::Generated(response) => return Ok(response),
            Attempt::Answer(answer) => match &route.secondary {
                Some((_, statuses)) if statuses.contains(&answer.status) => true,
                _ => return self.finish(answer, primary, &cache_key, &method).await,
            },
            Attempt::Unreachable => true,
        };
        let Some((secondary_id, _)) = route.secondary.as_ref().filter(|_| failover) else {
            return Ok(http::text(
                502,
                &format!("edge: the origin {} is unreachable", route.primary),
            ));
        };
        let secondary = self.origin(secondary_id)?;
        match self
            .attempt(&cf_request, secondary, &request_id, hook)
            .await?
        {
            Attempt::Generated(response) => Ok(response),
            Attempt::Answer(answer) => self.finish(answer, secondary, &cache_key, &method).await,
            Attempt::Unreachable => Ok(http::text(
                502,
                &format!("edge: the origin {secondary_id} is unreachable"),
            )),
        }
    }

    /// An attempt the hook runs on, by the bucket region it is for: a bucket's, or the one whose
    /// queue a marked domestic origin names.
    fn count_attempt(&self, origin: &OriginConfig) {
        let (region, fallback) = match origin {
            OriginConfig::Bucket { region, .. } => (region.clone(), false),
            OriginConfig::Domestic { headers, .. } => {
                let Some((_, url)) = headers
                    .iter()
                    .find(|(name, _)| name.eq_ignore_ascii_case("x-backfill-queue-url"))
                else {
                    return;
                };
                let region =
                    shared::aws::region_of_queue_url(url).unwrap_or_else(|| "unknown".into());
                (region, true)
            }
        };
        let mut attempts = self.hooked_attempts.lock().unwrap();
        let counts = attempts.entry(region).or_default();
        if fallback {
            counts.1 += 1;
        } else {
            counts.0 += 1;
        }
    }

    fn origin(&self, id: &str) -> Result<&OriginConfig> {
        self.config
            .origins
            .get(id)
            .ok_or_else(|| anyhow!("the distribution has no origin {id:?}"))
    }

    /// One origin attempt, with the hook on it (if `hook`) as the configured trigger.
    async fn attempt(
        &self,
        request: &Value,
        origin: &OriginConfig,
        request_id: &str,
        hook: bool,
    ) -> Result<Attempt> {
        let mut request = request.clone();
        request["origin"] = origin.event_json();
        if hook {
            self.count_attempt(origin);
        }
        if hook && self.config.trigger == Trigger::OriginRequest {
            let result = self
                .invoke(event("origin-request", request_id, &request, None))
                .await?;
            if result.get("status").is_some() {
                return Ok(Attempt::Generated(generated(&result)));
            }
            request = result;
        }
        let answer = match origin {
            OriginConfig::Bucket { bucket, s3, .. } => self.fetch_s3(&request, s3, bucket).await,
            OriginConfig::Domestic { .. } => self.fetch_domestic(&request).await,
        };
        let Some(mut answer) = answer else {
            return Ok(Attempt::Unreachable);
        };
        if hook && self.config.trigger == Trigger::OriginResponse {
            let response = json!({
                "headers": headers_json(&answer.headers),
                "status": answer.status.to_string(),
                "statusDescription": "",
            });
            let result = self
                .invoke(event(
                    "origin-response",
                    request_id,
                    &request,
                    Some(response),
                ))
                .await?;
            answer.status = result["status"]
                .as_str()
                .and_then(|s| s.parse().ok())
                .ok_or_else(|| {
                    anyhow!("the hook returned a response without a status: {result}")
                })?;
            answer.headers = headers_from_json(&result["headers"]);
        }
        Ok(Attempt::Answer(answer))
    }

    async fn fetch_s3(
        &self,
        request: &Value,
        s3: &aws_sdk_s3::Client,
        bucket: &str,
    ) -> Option<Answer> {
        let uri = request["uri"].as_str().unwrap_or("/");
        // S3 behind Origin Access Control, without s3:ListBucket, answers 403 for a missing key.
        let Ok(key) = ObjectKey::from_cloudfront_uri(uri, "") else {
            return Some(empty(403));
        };
        match s3
            .get_object()
            .bucket(bucket)
            .key(key.as_str())
            .send()
            .await
        {
            Ok(object) => {
                let mut headers = vec![];
                let mut add = |name: &str, value: Option<String>| {
                    if let Some(value) = value {
                        headers.push((name.to_owned(), value));
                    }
                };
                add("content-type", object.content_type.clone());
                add(
                    "content-length",
                    object.content_length.map(|l| l.to_string()),
                );
                add("etag", object.e_tag.clone());
                add("cache-control", object.cache_control.clone());
                add("content-encoding", object.content_encoding.clone());
                let body = http::stream(ReaderStream::new(object.body.into_async_read()));
                Some(Answer {
                    status: 200,
                    headers,
                    body,
                })
            }
            Err(err) if err.as_service_error().is_some_and(|e| e.is_no_such_key()) => {
                Some(empty(403))
            }
            Err(err) => err.raw_response().map(|r| empty(r.status().as_u16())),
        }
    }

    async fn fetch_domestic(&self, request: &Value) -> Option<Answer> {
        let custom = &request["origin"]["custom"];
        let query = request["querystring"].as_str().unwrap_or_default();
        let url = format!(
            "{}://{}:{}{}{}{}{}",
            custom["protocol"].as_str().unwrap_or("http"),
            custom["domainName"].as_str().unwrap_or_default(),
            custom["port"].as_u64().unwrap_or(80),
            custom["path"].as_str().unwrap_or_default(),
            request["uri"].as_str().unwrap_or("/"),
            if query.is_empty() { "" } else { "?" },
            query,
        );
        let method =
            reqwest::Method::from_bytes(request["method"].as_str().unwrap_or("GET").as_bytes())
                .ok()?;
        let mut outgoing = self.client.request(method, &url);
        // CloudFront sends the request's headers plus the origin's custom headers.
        let origin_headers = headers_from_json(&custom["customHeaders"]);
        if origin_headers
            .iter()
            .any(|(name, _)| name.starts_with("x-backfill-"))
        {
            *self.leaked.lock().unwrap() = true;
        }
        for (name, value) in headers_from_json(&request["headers"])
            .into_iter()
            .chain(origin_headers)
        {
            if !matches!(
                name.as_str(),
                "host" | "connection" | "content-length" | "transfer-encoding"
            ) {
                outgoing = outgoing.header(name, value);
            }
        }
        let response = outgoing.send().await.ok()?;
        let status = response.status().as_u16();
        let headers = response
            .headers()
            .iter()
            .filter(|(name, _)| {
                !matches!(
                    name.as_str(),
                    "connection" | "transfer-encoding" | "keep-alive"
                )
            })
            .filter_map(|(name, value)| {
                Some((name.as_str().to_owned(), value.to_str().ok()?.to_owned()))
            })
            .collect();
        Some(Answer {
            status,
            headers,
            body: http::stream(response.bytes_stream()),
        })
    }

    /// The viewer's response; a domestic answer may be cached (the bucket's never were here).
    async fn finish(
        &self,
        answer: Answer,
        origin: &OriginConfig,
        cache_key: &str,
        method: &str,
    ) -> Result<Response<Body>> {
        let served_by = origin.served_by();
        if matches!(origin, OriginConfig::Bucket { .. }) {
            return Ok(respond(
                answer.status,
                &answer.headers,
                answer.body,
                &served_by,
            ));
        }
        let length = answer
            .headers
            .iter()
            .find(|(name, _)| name == "content-length")
            .and_then(|(_, v)| v.parse::<u64>().ok());
        if self.config.cache
            && method == "GET"
            && answer.status == 200
            && length.is_some_and(|l| l <= CACHEABLE_BYTES)
        {
            let body = answer
                .body
                .collect()
                .await
                .context("reading the domestic answer")?
                .to_bytes();
            self.cache.lock().unwrap().insert(
                cache_key.to_owned(),
                Cached {
                    status: answer.status,
                    headers: answer.headers.clone(),
                    body: body.clone(),
                },
            );
            return Ok(respond(
                answer.status,
                &answer.headers,
                http::full(body),
                &served_by,
            ));
        }
        Ok(respond(
            answer.status,
            &answer.headers,
            answer.body,
            &served_by,
        ))
    }

    /// Invokes the hook in a free sandbox (or waits for one), as CloudFront would.
    async fn invoke(&self, event: Value) -> Result<Value> {
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let count = self.sandboxes.len();
        let (index, _guard) = match (0..count).find_map(|i| {
            let index = (start + i) % count;
            self.sandboxes[index]
                .try_lock()
                .ok()
                .map(|guard| (index, guard))
        }) {
            Some(found) => found,
            None => {
                let index = start % count;
                (index, self.sandboxes[index].lock().await)
            }
        };
        let reply = self
            .client
            .post(&self.config.hooks[index])
            .json(&event)
            .send()
            .await
            .context("invoking the edge hook")?;
        let value: Value = reply
            .json()
            .await
            .context("the edge hook's reply is not JSON")?;
        // A thrown error or a malformed result gives the viewer a 502 at CloudFront too.
        if value.get("errorType").is_some() || !value.is_object() {
            return Err(anyhow!("the edge hook failed: {value}"));
        }
        Ok(value)
    }
}

enum Attempt {
    Answer(Answer),
    Generated(Response<Body>),
    Unreachable,
}

fn event(kind: &str, request_id: &str, request: &Value, response: Option<Value>) -> Value {
    let mut cf = json!({
        "config": {
            "distributionDomainName": "d111111abcdef8.cloudfront.net",
            "distributionId": "EDFDVBD6EXAMPLE",
            "eventType": kind,
            "requestId": request_id,
        },
        "request": request,
    });
    if let Some(response) = response {
        cf["response"] = response;
    }
    json!({"Records": [{"cf": cf}]})
}

fn request_id() -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-";
    (0..56)
        .map(|_| ALPHABET[fastrand::usize(..ALPHABET.len())] as char)
        .collect()
}

/// The viewer's headers as CloudFront passes them on: the demo's country header replaced by the
/// `cloudfront-viewer-country` CloudFront adds.
fn viewer_headers(headers: &::http::HeaderMap) -> Vec<(String, String)> {
    headers
        .iter()
        .filter_map(|(name, value)| {
            let value = value.to_str().ok()?.to_owned();
            Some(if name.as_str() == VIEWER_COUNTRY {
                ("cloudfront-viewer-country".to_owned(), value)
            } else {
                (name.as_str().to_owned(), value)
            })
        })
        .collect()
}

fn title_case(name: &str) -> String {
    name.split('-')
        .map(|part| {
            let mut chars = part.chars();
            chars
                .next()
                .map(|c| c.to_ascii_uppercase().to_string() + chars.as_str())
                .unwrap_or_default()
        })
        .collect::<Vec<_>>()
        .join("-")
}

fn headers_json(headers: &[(String, String)]) -> Value {
    let mut map = Map::new();
    for (name, value) in headers {
        let entry = map
            .entry(name.to_ascii_lowercase())
            .or_insert_with(|| json!([]));
        entry
            .as_array_mut()
            .expect("an array")
            .push(json!({"key": title_case(name), "value": value}));
    }
    Value::Object(map)
}

fn headers_from_json(headers: &Value) -> Vec<(String, String)> {
    headers
        .as_object()
        .map(|map| {
            map.iter()
                .flat_map(|(name, values)| {
                    values
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(move |v| {
                            Some((name.to_ascii_lowercase(), v["value"].as_str()?.to_owned()))
                        })
                })
                .collect()
        })
        .unwrap_or_default()
}

fn generated(result: &Value) -> Response<Body> {
    let status = result["status"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .unwrap_or(502);
    let body = result["body"].as_str().unwrap_or_default().to_owned();
    respond(
        status,
        &headers_from_json(&result["headers"]),
        http::full(body),
        "edge",
    )
}

/// A response the viewer-request function made (CloudFront Functions form).
fn function_response(response: &Value) -> Response<Body> {
    let status = response["statusCode"]
        .as_u64()
        .and_then(|s| u16::try_from(s).ok())
        .unwrap_or(502);
    let headers: Vec<(String, String)> = response["headers"]
        .as_object()
        .into_iter()
        .flatten()
        .filter_map(|(name, v)| Some((name.clone(), v["value"].as_str()?.to_owned())))
        .collect();
    let body = match &response["body"] {
        Value::String(text) => text.clone(),
        other => other["data"].as_str().unwrap_or_default().to_owned(),
    };
    respond(status, &headers, http::full(body), "function")
}

fn empty(status: u16) -> Answer {
    Answer {
        status,
        headers: vec![],
        body: http::full(Bytes::new()),
    }
}

fn respond(
    status: u16,
    headers: &[(String, String)],
    body: Body,
    served_by: &str,
) -> Response<Body> {
    let mut builder = Response::builder().status(status);
    for (name, value) in headers {
        builder = builder.header(name.as_str(), value.as_str());
    }
    builder
        .header(SERVED_BY, served_by)
        .body(body)
        .unwrap_or_else(|_| http::text(502, "edge: an origin sent an invalid header"))
}
