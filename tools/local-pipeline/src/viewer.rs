//! The viewer-request CloudFront Function, run as CloudFront runs it: its real code (the
//! template's Fn::Sub filled in) evaluated by `tests/lib/cloudfront-function.js` in one long-running
//! Node.js process (`tools/local-pipeline/viewer-function.js`, one JSON line per request each way),
//! with the `cloudfront` module's origin helpers recorded. Here: the event CloudFront Functions
//! pass (a shape apart from Lambda@Edge's), the request the function returns put back into the
//! Lambda@Edge form the hook sees, and where the function sent the request.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use serde_json::{json, Map, Value};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, Command};
use tokio::sync::oneshot;

/// CloudFront Functions must finish within about a millisecond of compute; the process's own
/// start and a busy machine get far more here.
const CALL_TIMEOUT: Duration = Duration::from_secs(5);

/// How to start the function.
pub struct FunctionSpec {
    /// Node.js 22 (the local stand-in of the runtime's JavaScript engine).
    pub node: PathBuf,
    /// `tools/local-pipeline/viewer-function.js`.
    pub runner: PathBuf,
    /// The loader that runs a CloudFront Function's code (`tests/lib/cloudfront-function.js`).
    pub loader: PathBuf,
    /// The function's code (`functions/viewer-request/viewer-request.js`).
    pub code: PathBuf,
    /// The Fn::Sub parameters the template fills in.
    pub parameters: Vec<(String, String)>,
    /// The distribution's origin ids (a helper call naming another fails, as at the edge).
    pub origins: Vec<String>,
}

/// The function, in its process.
pub struct ViewerFunction {
    stdin: tokio::sync::Mutex<ChildStdin>,
    pending: Arc<Mutex<HashMap<u64, oneshot::Sender<Value>>>>,
    next: AtomicU64,
    _child: Child,
}

/// What the function made of a request.
#[derive(Debug, PartialEq)]
pub enum Decision {
    /// It answered the viewer itself (a CloudFront Functions response object).
    Respond(Value),
    /// The request it returned (CloudFront Functions form) and where it goes.
    Forward {
        request: Value,
        origin: OriginChoice,
    },
}

/// Where a request goes after the function.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OriginChoice {
    /// No origin helper called: the cache behaviour's own origin (or origin group).
    Behaviour,
    /// `cf.createRequestOriginGroup`: the primary, then the secondary on these statuses.
    Group {
        primary: String,
        secondary: String,
        failover_statuses: Vec<u16>,
    },
    /// `cf.selectRequestOriginById`: that origin alone.
    Single(String),
}

impl ViewerFunction {
    pub async fn start(spec: FunctionSpec) -> Result<Self> {
        let parameters: Map<String, Value> = spec
            .parameters
            .iter()
            .map(|(name, value)| (name.clone(), json!(value)))
            .collect();
        let mut child = Command::new(&spec.node)
            .arg(&spec.runner)
            .arg(&spec.loader)
            .arg(&spec.code)
            .arg(json!({"parameters": parameters, "origins": spec.origins}).to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {}", spec.node.display()))?;
        let stdin = child.stdin.take().context("the function's stdin")?;
        let stdout = child.stdout.take().context("the function's stdout")?;
        let pending: Arc<Mutex<HashMap<u64, oneshot::Sender<Value>>>> = Arc::default();
        let waiting = pending.clone();
        tokio::spawn(async move {
            let mut lines = BufReader::new(stdout).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                let Ok(reply) = serde_json::from_str::<Value>(&line) else {
                    eprintln!("viewer function: not a JSON line: {line}");
                    continue;
                };
                let sender = reply["id"]
                    .as_u64()
                    .and_then(|id| waiting.lock().unwrap().remove(&id));
                if let Some(sender) = sender {
                    let _ = sender.send(reply);
                }
            }
            // The process ended: every caller still waiting gets an error.
            waiting.lock().unwrap().clear();
        });
        let function = ViewerFunction {
            stdin: tokio::sync::Mutex::new(stdin),
            pending,
            next: AtomicU64::new(1),
            _child: child,
        };
        // A first event: the code loads and answers, or the start fails here and not at the
        // first viewer.
        function
            .run(function_event("GET", "/", "", &[], "start"))
            .await
            .with_context(|| format!("running {}", spec.code.display()))?;
        Ok(function)
    }

    /// Runs the function on a CloudFront Functions viewer-request event.
    pub async fn run(&self, event: Value) -> Result<Decision> {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let (sender, receiver) = oneshot::channel();
        self.pending.lock().unwrap().insert(id, sender);
        let line = json!({"id": id, "event": event}).to_string() + "\n";
        {
            let mut stdin = self.stdin.lock().await;
            stdin.write_all(line.as_bytes()).await?;
            stdin.flush().await?;
        }
        let reply = tokio::time::timeout(CALL_TIMEOUT, receiver)
            .await
            .map_err(|_| {
                self.pending.lock().unwrap().remove(&id);
                anyhow!("the viewer function did not answer within {CALL_TIMEOUT:?}")
            })?
            .map_err(|_| anyhow!("the viewer function's process ended"))?;
        decision(&reply)
    }
}

/// The decision in a runner's reply: `{"result": ..., "calls": [{"method", "args"}]}` or
/// `{"error": "..."}`.
fn decision(reply: &Value) -> Result<Decision> {
    if let Some(error) = reply.get("error") {
        bail!("the viewer function failed: {error}");
    }
    let result = reply
        .get("result")
        .filter(|r| r.is_object())
        .ok_or_else(|| anyhow!("the viewer function returned no object: {reply}"))?;
    if result.get("statusCode").is_some() {
        return Ok(Decision::Respond(result.clone()));
    }
    let mut origin = OriginChoice::Behaviour;
    // The last helper called decides, as each call replaces the request's origin.
    for call in reply["calls"].as_array().into_iter().flatten() {
        let args = &call["args"];
        origin = match call["method"].as_str() {
            Some("createRequestOriginGroup") => {
                let group = &args[0];
                let ids: Vec<&str> = group["originIds"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_str)
                    .collect();
                let [primary, secondary] = ids[..] else {
                    bail!("an origin group needs two origin ids: {group}");
                };
                OriginChoice::Group {
                    primary: primary.to_owned(),
                    secondary: secondary.to_owned(),
                    failover_statuses: group["failoverCriteria"]["statusCodes"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(|s| s.as_u64().and_then(|s| u16::try_from(s).ok()))
                        .collect(),
                }
            }
            Some("selectRequestOriginById") => OriginChoice::Single(
                args[0]
                    .as_str()
                    .ok_or_else(|| anyhow!("selectRequestOriginById without an id: {call}"))?
                    .to_owned(),
            ),
            other => bail!("the simulator does not support cf.{}", other.unwrap_or("?")),
        };
    }
    Ok(Decision::Forward {
        request: result.clone(),
        origin,
    })
}

/// The viewer-request event CloudFront Functions pass (CloudFront Developer Guide, "CloudFront
/// Functions event structure"): lower-case header names, each `{value}` (with `multiValue` when
/// sent more than once), cookies apart from the headers, the query string as an object.
pub fn function_event(
    method: &str,
    uri: &str,
    query: &str,
    headers: &[(String, String)],
    request_id: &str,
) -> Value {
    let mut header_values: Vec<(String, String)> = vec![];
    let mut cookies: Vec<(String, String)> = vec![];
    for (name, value) in headers {
        let name = name.to_ascii_lowercase();
        if name == "cookie" {
            for cookie in value.split(';').map(str::trim).filter(|c| !c.is_empty()) {
                let (name, value) = cookie.split_once('=').unwrap_or((cookie, ""));
                cookies.push((name.to_owned(), value.to_owned()));
            }
        } else {
            header_values.push((name, value.clone()));
        }
    }
    let query_values: Vec<(String, String)> = query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (name, value) = p.split_once('=').unwrap_or((p, ""));
            (name.to_owned(), value.to_owned())
        })
        .collect();
    json!({
        "version": "1.0",
        "context": {
            "distributionDomainName": "d111111abcdef8.cloudfront.net",
            "distributionId": "EDFDVBD6EXAMPLE",
            "eventType": "viewer-request",
            "requestId": request_id,
        },
        "viewer": {"ip": "127.0.0.1"},
        "request": {
            "method": method,
            "uri": uri,
            "querystring": values(&query_values),
            "headers": values(&header_values),
            "cookies": values(&cookies),
        },
    })
}

/// `{name: {value, multiValue?}}`, in first-seen order of the names.
fn values(pairs: &[(String, String)]) -> Value {
    let mut map = Map::new();
    for (name, value) in pairs {
        match map.get_mut(name) {
            None => {
                map.insert(name.clone(), json!({"value": value}));
            }
            Some(entry) => {
                let first = entry["value"].clone();
                let multi = entry
                    .as_object_mut()
                    .expect("an object")
                    .entry("multiValue")
                    .or_insert_with(|| json!([{"value": first}]));
                multi
                    .as_array_mut()
                    .expect("an array")
                    .push(json!({"value": value}));
            }
        }
    }
    Value::Object(map)
}

/// Each value of a `{name: {value, multiValue?}}` object, as (name, value) pairs.
fn pairs(object: &Value) -> Vec<(String, String)> {
    object
        .as_object()
        .into_iter()
        .flatten()
        .flat_map(|(name, entry)| {
            let all: Vec<String> = match entry["multiValue"].as_array() {
                Some(multi) => multi
                    .iter()
                    .filter_map(|v| v["value"].as_str().map(str::to_owned))
                    .collect(),
                None => entry["value"]
                    .as_str()
                    .map(str::to_owned)
                    .into_iter()
                    .collect(),
            };
            all.into_iter().map(move |value| (name.clone(), value))
        })
        .collect()
}

/// The request the function returned, as the (method, URI, query string, headers) CloudFront
/// goes on with; the cookies back in a `cookie` header.
pub fn forwarded(request: &Value) -> (String, String, Vec<(String, String)>) {
    let uri = request["uri"].as_str().unwrap_or("/").to_owned();
    let query = pairs(&request["querystring"])
        .into_iter()
        .map(|(name, value)| {
            if value.is_empty() {
                name
            } else {
                format!("{name}={value}")
            }
        })
        .collect::<Vec<_>>()
        .join("&");
    let mut headers = pairs(&request["headers"]);
    let cookies: Vec<String> = pairs(&request["cookies"])
        .into_iter()
        .map(|(name, value)| format!("{name}={value}"))
        .collect();
    if !cookies.is_empty() {
        headers.push(("cookie".into(), cookies.join("; ")));
    }
    (uri, query, headers)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(name: &str, value: &str) -> (String, String) {
        (name.into(), value.into())
    }

    #[test]
    fn the_event_has_cloudfront_functions_shape_and_the_request_comes_back_whole() {
        let headers = [
            header("Host", "d111111abcdef8.cloudfront.net"),
            header("accept", "image/avif"),
            header("accept", "image/webp"),
            header("cookie", "session=abc; theme=dark"),
        ];
        let event = function_event("GET", "/images/a.jpg", "w=1&w=2&x", &headers, "r1");
        let request = &event["request"];
        assert_eq!(
            request["headers"]["host"]["value"],
            "d111111abcdef8.cloudfront.net"
        );
        assert_eq!(request["headers"]["accept"]["value"], "image/avif");
        assert_eq!(
            request["headers"]["accept"]["multiValue"],
            json!([{"value": "image/avif"}, {"value": "image/webp"}])
        );
        assert!(request["headers"].get("cookie").is_none());
        assert_eq!(request["cookies"]["session"]["value"], "abc");
        assert_eq!(request["querystring"]["w"]["multiValue"][1]["value"], "2");
        assert_eq!(event["context"]["eventType"], "viewer-request");

        let (uri, query, headers) = forwarded(request);
        assert_eq!(uri, "/images/a.jpg");
        assert_eq!(query, "w=1&w=2&x");
        assert!(headers.contains(&header("accept", "image/webp")));
        assert!(headers.contains(&header("cookie", "session=abc; theme=dark")));
    }

    #[test]
    fn the_last_origin_helper_called_decides() {
        let request = json!({"uri": "/a.jpg", "headers": {}});
        let reply = |calls: Value| json!({"id": 1, "result": request, "calls": calls});
        assert_eq!(
            decision(&reply(json!([]))).unwrap(),
            Decision::Forward {
                request: request.clone(),
                origin: OriginChoice::Behaviour
            }
        );
        let group = json!([{"method": "createRequestOriginGroup", "args": [{
            "originIds": ["bucket-2", "domestic-2"],
            "failoverCriteria": {"statusCodes": [403, 404]},
        }]}]);
        assert_eq!(
            decision(&reply(group)).unwrap(),
            Decision::Forward {
                request: request.clone(),
                origin: OriginChoice::Group {
                    primary: "bucket-2".into(),
                    secondary: "domestic-2".into(),
                    failover_statuses: vec![403, 404],
                }
            }
        );
        let single = json!([
            {"method": "createRequestOriginGroup", "args": [{"originIds": ["a", "b"]}]},
            {"method": "selectRequestOriginById", "args": ["domestic-direct"]},
        ]);
        assert_eq!(
            decision(&reply(single)).unwrap(),
            Decision::Forward {
                request: request.clone(),
                origin: OriginChoice::Single("domestic-direct".into())
            }
        );
        let response = json!({"id": 1, "result": {"statusCode": 302}, "calls": []});
        assert!(matches!(decision(&response).unwrap(), Decision::Respond(_)));
        assert!(decision(&json!({"id": 1, "error": "TypeError"})).is_err());
        let update = json!([{"method": "updateRequestOrigin", "args": [{}]}]);
        assert!(decision(&reply(update)).is_err());
    }
}
