//! A fault-injecting proxy in front of the local AWS stack (S3 and DynamoDB on one endpoint).
//!
//! Each request is classified by operation (S3 by method and query, DynamoDB by its
//! `X-Amz-Target` header), and a rule may answer it with an error in the service's own format,
//! drop the connection before or after the upstream acted on it, cut the answer's body short,
//! delay it, or hold it forever; the rest is forwarded unchanged. Requests and the upstream's
//! answers are counted per operation, so a test can tell how many attempts the SDK made and how
//! many of them took effect.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::Frame;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::watch;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    HeadObject,
    GetObject,
    PutObject,
    CreateMultipartUpload,
    UploadPart,
    CompleteMultipartUpload,
    AbortMultipartUpload,
    GetItem,
    PutItem,
    UpdateItem,
    DeleteItem,
    Other,
}

impl Op {
    fn is_dynamodb(self) -> bool {
        matches!(
            self,
            Op::GetItem | Op::PutItem | Op::UpdateItem | Op::DeleteItem
        )
    }
}

#[derive(Debug, Clone, Copy)]
pub enum Fault {
    /// An error answer with this status and code, in the service's error format (S3's XML,
    /// DynamoDB's JSON); the upstream never sees the request.
    Status(u16, &'static str),
    /// The connection dropped without an answer; the upstream never sees the request.
    Drop,
    /// The upstream acts on the request, then the connection drops before the answer: a lost
    /// answer, which the caller cannot tell from `Drop`.
    DropAnswer,
    /// The upstream's answer, its headers (Content-Length included) but half of its body, then
    /// the connection dropped.
    Truncate,
    /// Forwarded after a delay.
    Delay(Duration),
    /// Held, neither forwarded nor answered, until [`FaultProxy::release_held`]; a caller dropped
    /// meanwhile is a process that died at that point. [`FaultProxy::held`] tells when one arrives.
    Hold,
}

#[derive(Debug, Clone)]
pub struct Rule {
    pub op: Op,
    /// Fault the matching requests from this one (1-based) ...
    pub from: usize,
    /// ... to this one, inclusive (`usize::MAX` for all).
    pub to: usize,
    pub fault: Fault,
}

impl Rule {
    /// `fault` on every request of `op`.
    pub fn always(op: Op, fault: Fault) -> Rule {
        Rule {
            op,
            from: 1,
            to: usize::MAX,
            fault,
        }
    }

    /// `fault` on the first `n` requests of `op`.
    pub fn first(op: Op, n: usize, fault: Fault) -> Rule {
        Rule {
            op,
            from: 1,
            to: n,
            fault,
        }
    }
}

#[derive(Default)]
struct State {
    rules: Vec<Rule>,
    seen: Vec<(Op, usize)>,
    answered: Vec<(Op, u16, usize)>,
    injected: usize,
}

#[derive(Clone)]
pub struct FaultProxy {
    pub addr: SocketAddr,
    state: Arc<Mutex<State>>,
    held: watch::Sender<usize>,
    released: watch::Sender<bool>,
}

type Body = BoxBody<Bytes, std::io::Error>;

fn classify(method: &hyper::Method, query: &str, target: Option<&str>) -> Op {
    if let Some(target) = target {
        return match target.rsplit('.').next() {
            Some("GetItem") => Op::GetItem,
            Some("PutItem") => Op::PutItem,
            Some("UpdateItem") => Op::UpdateItem,
            Some("DeleteItem") => Op::DeleteItem,
            _ => Op::Other,
        };
    }
    let has = |name: &str| {
        query
            .split('&')
            .any(|p| p == name || p.starts_with(&format!("{name}=")))
    };
    match method.as_str() {
        "HEAD" => Op::HeadObject,
        "GET" if !has("uploads") && !has("list-type") && !has("uploadId") => Op::GetObject,
        "PUT" if has("partNumber") => Op::UploadPart,
        "PUT" => Op::PutObject,
        "POST" if has("uploads") => Op::CreateMultipartUpload,
        "POST" if has("uploadId") => Op::CompleteMultipartUpload,
        "DELETE" if has("uploadId") => Op::AbortMultipartUpload,
        _ => Op::Other,
    }
}

impl FaultProxy {
    pub async fn start(upstream: String) -> FaultProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let proxy = FaultProxy {
            addr,
            state: Arc::default(),
            held: watch::Sender::new(0),
            released: watch::Sender::new(false),
        };
        let client = reqwest::Client::new();
        let shared = proxy.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let (proxy, client, upstream) = (shared.clone(), client.clone(), upstream.clone());
                tokio::spawn(async move {
                    let service = service_fn(move |request| {
                        let (proxy, client, upstream) =
                            (proxy.clone(), client.clone(), upstream.clone());
                        async move { proxy.handle(request, &client, &upstream).await }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        proxy
    }

    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Replaces the rules and starts the counts afresh.
    pub fn set_rules(&self, rules: Vec<Rule>) {
        let mut state = self.state.lock().unwrap();
        state.rules = rules;
        state.seen.clear();
        state.answered.clear();
        state.injected = 0;
        self.held.send_replace(0);
        self.released.send_replace(false);
    }

    /// Faults injected since the rules were set.
    pub fn injected(&self) -> usize {
        self.state.lock().unwrap().injected
    }

    /// Requests of `op` since the rules were set, faulted or not.
    pub fn count(&self, op: Op) -> usize {
        self.state
            .lock()
            .unwrap()
            .seen
            .iter()
            .find(|(o, _)| *o == op)
            .map(|(_, n)| *n)
            .unwrap_or_default()
    }

    /// Requests of `op` the upstream answered with `status` since the rules were set (a lost
    /// answer included: the upstream acted on it).
    pub fn answered(&self, op: Op, status: u16) -> usize {
        self.state
            .lock()
            .unwrap()
            .answered
            .iter()
            .find(|(o, s, _)| *o == op && *s == status)
            .map(|(.., n)| *n)
            .unwrap_or_default()
    }

    /// Waits until a request is held by a [`Fault::Hold`] rule.
    pub async fn held(&self) {
        let mut held = self.held.subscribe();
        held.wait_for(|n| *n > 0).await.unwrap();
    }

    /// Forwards the held requests, and those the rules would hold from now on.
    pub fn release_held(&self) {
        self.released.send_replace(true);
    }

    /// Counts the request and picks the fault the rules give it.
    fn admit(&self, op: Op) -> Option<Fault> {
        let mut state = self.state.lock().unwrap();
        let n = match state.seen.iter_mut().find(|(o, _)| *o == op) {
            Some((_, n)) => {
                *n += 1;
                *n
            }
            None => {
                state.seen.push((op, 1));
                1
            }
        };
        let fault = state
            .rules
            .iter()
            .find(|r| r.op == op && (r.from..=r.to).contains(&n))
            .map(|r| r.fault);
        if fault.is_some() {
            state.injected += 1;
        }
        fault
    }

    fn record_answer(&self, op: Op, status: u16) {
        let mut state = self.state.lock().unwrap();
        match state
            .answered
            .iter_mut()
            .find(|(o, s, _)| *o == op && *s == status)
        {
            Some((.., n)) => *n += 1,
            None => state.answered.push((op, status, 1)),
        }
    }

    async fn handle(
        &self,
        request: Request<hyper::body::Incoming>,
        client: &reqwest::Client,
        upstream: &str,
    ) -> Result<Response<Body>, std::io::Error> {
        let target = request
            .headers()
            .get("x-amz-target")
            .and_then(|v| v.to_str().ok());
        let op = classify(
            request.method(),
            request.uri().query().unwrap_or_default(),
            target,
        );
        let fault = self.admit(op);
        let (parts, body) = request.into_parts();
        let body = body
            .collect()
            .await
            .map_err(std::io::Error::other)?
            .to_bytes();
        match fault {
            Some(Fault::Status(status, code)) => return Ok(error_answer(op, status, code)),
            Some(Fault::Drop) => return Err(std::io::Error::other("injected connection drop")),
            Some(Fault::Delay(delay)) => tokio::time::sleep(delay).await,
            Some(Fault::Hold) => {
                let mut released = self.released.subscribe();
                self.held.send_modify(|n| *n += 1);
                released.wait_for(|r| *r).await.unwrap();
            }
            Some(Fault::DropAnswer | Fault::Truncate) | None => {}
        }
        let url = format!(
            "{upstream}{}",
            parts
                .uri
                .path_and_query()
                .map(|p| p.as_str())
                .unwrap_or("/")
        );
        let mut forwarded = client.request(parts.method.clone(), url).body(body);
        for (name, value) in &parts.headers {
            if name != "host" && name != "content-length" {
                forwarded = forwarded.header(name, value);
            }
        }
        let answer = forwarded.send().await.map_err(std::io::Error::other)?;
        self.record_answer(op, answer.status().as_u16());
        let mut response = Response::builder().status(answer.status().as_u16());
        for (name, value) in answer.headers() {
            if name != "transfer-encoding" && name != "connection" {
                response = response.header(name, value);
            }
        }
        let bytes = answer.bytes().await.map_err(std::io::Error::other)?;
        let body = match fault {
            Some(Fault::DropAnswer) => {
                return Err(std::io::Error::other("injected drop of the answer"))
            }
            Some(Fault::Truncate) => {
                let half = bytes.slice(..bytes.len() / 2);
                // The pause lets the headers and the first half go out before the connection
                // drops; an error at once would drop them unsent, an answer never given.
                let cut = async {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    Err(std::io::Error::other("injected truncation"))
                };
                let frames = futures::StreamExt::chain(
                    futures::stream::iter([Ok(Frame::data(half))]),
                    futures::stream::once(cut),
                );
                StreamBody::new(frames).boxed()
            }
            _ => full(bytes),
        };
        Ok(response.body(body).unwrap())
    }
}

fn full(bytes: Bytes) -> Body {
    Full::new(bytes).map_err(|never| match never {}).boxed()
}

/// An error answer as the service would give it.
fn error_answer(op: Op, status: u16, code: &str) -> Response<Body> {
    let (content_type, body) = if op.is_dynamodb() {
        (
            "application/x-amz-json-1.0",
            format!(
                r#"{{"__type":"com.amazonaws.dynamodb.v20120810#{code}","message":"injected"}}"#
            ),
        )
    } else {
        (
            "application/xml",
            format!("<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>{code}</Code><Message>injected</Message></Error>"),
        )
    };
    Response::builder()
        .status(status)
        .header("content-type", content_type)
        .body(full(Bytes::from(body)))
        .unwrap()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_classified_by_operation() {
        let get = hyper::Method::GET;
        let put = hyper::Method::PUT;
        let post = hyper::Method::POST;
        assert_eq!(classify(&get, "", None), Op::GetObject);
        assert_eq!(classify(&get, "list-type=2&prefix=a", None), Op::Other);
        assert_eq!(classify(&put, "", None), Op::PutObject);
        assert_eq!(
            classify(&put, "partNumber=2&uploadId=x", None),
            Op::UploadPart
        );
        assert_eq!(classify(&post, "uploads", None), Op::CreateMultipartUpload);
        assert_eq!(
            classify(&post, "uploadId=x", None),
            Op::CompleteMultipartUpload
        );
        assert_eq!(
            classify(&post, "", Some("DynamoDB_20120810.UpdateItem")),
            Op::UpdateItem
        );
        assert_eq!(
            classify(&post, "", Some("DynamoDB_20120810.Scan")),
            Op::Other
        );
    }
}
