//! The edge simulator: a local HTTP front that reproduces what matters of CloudFront here. An origin
//! group (the local S3 bucket first, the domestic origin second, failover on the configured statuses
//! and on connection errors), the real packaged edge hook invoked on each origin attempt with the
//! event CloudFront would send (the request it returns is the one fetched), an optional cache, and a
//! viewer header saying who served the response. Not a CloudFront clone: no TLS, no behaviours.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use anyhow::{anyhow, Context, Result};
use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::{Request, Response};
use serde_json::{json, Map, Value};
use shared::ObjectKey;
use tokio_util::io::ReaderStream;

use crate::http::{self, Body};

/// The viewer response header naming who served it: `s3`, `domestic`, `cache` or `edge` (a
/// response the hook generated).
pub const SERVED_BY: &str = "x-served-by";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    OriginRequest,
    OriginResponse,
}

pub struct EdgeConfig {
    /// Invocation URLs of the edge hook's sandboxes (each serves one invocation at a time).
    pub hooks: Vec<String>,
    pub trigger: Trigger,
    pub bucket: String,
    pub s3: aws_sdk_s3::Client,
    pub domestic_host: String,
    pub domestic_port: u16,
    /// The hook's configuration, carried on the domestic origin's custom headers.
    pub domestic_headers: Vec<(String, String)>,
    pub failover_statuses: Vec<u16>,
    pub cache: bool,
}

struct Edge {
    config: EdgeConfig,
    client: reqwest::Client,
    sandboxes: Vec<tokio::sync::Mutex<()>>,
    next: AtomicUsize,
    cache: Mutex<HashMap<String, Cached>>,
    /// Whether any `x-backfill-*` header ever reached the domestic origin.
    leaked: Arc<Mutex<bool>>,
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
    let edge = Arc::new(Edge {
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
        },
    ))
}

impl Edge {
    async fn handle(&self, request: Request<Incoming>) -> Result<Response<Body>> {
        let method = request.method().as_str().to_owned();
        let uri = request.uri().path().to_owned();
        let query = request.uri().query().unwrap_or_default().to_owned();
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
        let viewer_headers = cloudfront_headers(request.headers());
        let request_id = request_id();
        let cf_request = json!({
            "clientIp": "127.0.0.1",
            "headers": viewer_headers,
            "method": method,
            "querystring": query,
            "uri": uri,
        });

        let s3_origin = json!({"s3": {
            "authMethod": "origin-access-control",
            "customHeaders": {},
            "domainName": format!("{}.s3.us-east-1.amazonaws.com", self.config.bucket),
            "path": "",
            "region": "us-east-1",
        }});
        match self
            .attempt(&cf_request, s3_origin, &request_id, Origin::S3)
            .await?
        {
            Attempt::Generated(response) => return Ok(response),
            Attempt::Answer(answer) if !self.config.failover_statuses.contains(&answer.status) => {
                return Ok(respond(answer.status, &answer.headers, answer.body, "s3"));
            }
            Attempt::Answer(_) | Attempt::Unreachable => {}
        }

        let custom_headers: Map<String, Value> = self
            .config
            .domestic_headers
            .iter()
            .map(|(name, value)| {
                (
                    name.to_ascii_lowercase(),
                    json!([{"key": name, "value": value}]),
                )
            })
            .collect();
        let domestic_origin = json!({"custom": {
            "customHeaders": custom_headers,
            "domainName": self.config.domestic_host,
            "keepaliveTimeout": 5,
            "path": "",
            "port": self.config.domestic_port,
            "protocol": "http",
            "readTimeout": 30,
            "sslProtocols": ["TLSv1.2"],
        }});
        match self
            .attempt(&cf_request, domestic_origin, &request_id, Origin::Domestic)
            .await?
        {
            Attempt::Generated(response) => Ok(response),
            Attempt::Answer(answer) => self.finish(answer, &cache_key, &method).await,
            Attempt::Unreachable => Ok(http::text(502, "edge: the domestic origin is unreachable")),
        }
    }

    /// One origin attempt, with the hook on it as the configured trigger.
    async fn attempt(
        &self,
        request: &Value,
        origin: Value,
        request_id: &str,
        which: Origin,
    ) -> Result<Attempt> {
        let mut request = request.clone();
        request["origin"] = origin;
        if self.config.trigger == Trigger::OriginRequest {
            let result = self
                .invoke(event("origin-request", request_id, &request, None))
                .await?;
            if result.get("status").is_some() {
                return Ok(Attempt::Generated(generated(&result)));
            }
            request = result;
        }
        let answer = match which {
            Origin::S3 => self.fetch_s3(&request).await,
            Origin::Domestic => self.fetch_domestic(&request).await,
        };
        let Some(mut answer) = answer else {
            return Ok(Attempt::Unreachable);
        };
        if self.config.trigger == Trigger::OriginResponse {
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

    async fn fetch_s3(&self, request: &Value) -> Option<Answer> {
        let uri = request["uri"].as_str().unwrap_or("/");
        // S3 behind Origin Access Control, without s3:ListBucket, answers 403 for a missing key.
        let Ok(key) = ObjectKey::from_cloudfront_uri(uri, "") else {
            return Some(empty(403));
        };
        match self
            .config
            .s3
            .get_object()
            .bucket(&self.config.bucket)
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

    async fn finish(
        &self,
        answer: Answer,
        cache_key: &str,
        method: &str,
    ) -> Result<Response<Body>> {
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
                "domestic",
            ));
        }
        Ok(respond(
            answer.status,
            &answer.headers,
            answer.body,
            "domestic",
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

enum Origin {
    S3,
    Domestic,
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

fn cloudfront_headers(headers: &::http::HeaderMap) -> Value {
    let mut map = Map::new();
    for (name, value) in headers {
        let Ok(value) = value.to_str() else { continue };
        let entry = map
            .entry(name.as_str().to_owned())
            .or_insert_with(|| json!([]));
        entry
            .as_array_mut()
            .expect("an array")
            .push(json!({"key": title_case(name.as_str()), "value": value}));
    }
    Value::Object(map)
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
