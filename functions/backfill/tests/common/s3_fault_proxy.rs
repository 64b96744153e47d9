//! A fault-injecting proxy in front of the local S3: each request is classified by S3 operation,
//! and a rule may answer it with an error status, drop the connection, or delay it; the rest is
//! forwarded unchanged.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    HeadObject,
    GetObject,
    PutObject,
    CreateMultipartUpload,
    UploadPart,
    CompleteMultipartUpload,
    AbortMultipartUpload,
    Other,
}

#[derive(Debug, Clone, Copy)]
pub enum Fault {
    /// An S3 error answer with this status and code.
    Status(u16, &'static str),
    /// The connection dropped without an answer.
    Drop,
    /// Forwarded after a delay.
    Delay(Duration),
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

#[derive(Default)]
struct State {
    rules: Vec<Rule>,
    seen: Vec<(Op, usize)>,
    injected: usize,
}

#[derive(Clone)]
pub struct FaultProxy {
    pub addr: SocketAddr,
    state: Arc<Mutex<State>>,
}

fn classify(method: &hyper::Method, query: &str) -> Op {
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
        };
        let state = proxy.state.clone();
        let client = reqwest::Client::new();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let (state, client, upstream) = (state.clone(), client.clone(), upstream.clone());
                tokio::spawn(async move {
                    let service = service_fn(move |request| {
                        let (state, client, upstream) =
                            (state.clone(), client.clone(), upstream.clone());
                        async move { handle(request, &state, &client, &upstream).await }
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

    pub fn set_rules(&self, rules: Vec<Rule>) {
        let mut state = self.state.lock().unwrap();
        state.rules = rules;
        state.seen.clear();
        state.injected = 0;
    }

    pub fn injected(&self) -> usize {
        self.state.lock().unwrap().injected
    }

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
}

async fn handle(
    request: Request<hyper::body::Incoming>,
    state: &Mutex<State>,
    client: &reqwest::Client,
    upstream: &str,
) -> Result<Response<Full<Bytes>>, std::io::Error> {
    let op = classify(request.method(), request.uri().query().unwrap_or_default());
    let fault = {
        let mut state = state.lock().unwrap();
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
    };
    let (parts, body) = request.into_parts();
    let body = body
        .collect()
        .await
        .map_err(std::io::Error::other)?
        .to_bytes();
    match fault {
        Some(Fault::Status(status, code)) => {
            let xml = format!("<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>{code}</Code><Message>injected</Message></Error>");
            return Ok(Response::builder()
                .status(status)
                .header("content-type", "application/xml")
                .body(Full::new(Bytes::from(xml)))
                .unwrap());
        }
        Some(Fault::Drop) => return Err(std::io::Error::other("injected connection drop")),
        Some(Fault::Delay(delay)) => tokio::time::sleep(delay).await,
        None => {}
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
    let mut response = Response::builder().status(answer.status().as_u16());
    for (name, value) in answer.headers() {
        if name != "transfer-encoding" && name != "connection" {
            response = response.header(name, value);
        }
    }
    let bytes = answer.bytes().await.map_err(std::io::Error::other)?;
    Ok(response.body(Full::new(bytes)).unwrap())
}
