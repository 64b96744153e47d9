//! The recording proxy: forwards every request to the upstream stand-in unchanged (the Host
//! header included, so that signatures still verify), streams bodies both ways, and summarises
//! each request as it passes. It listens on plain HTTP and, when asked, on HTTPS too, with a
//! certificate of its own test CA, so that a client that trusts the CA talks to the stand-ins as
//! the deployed functions talk to AWS: over TLS, where the SDK frames bodies differently.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures::StreamExt;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::Frame;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;

use super::body::{BodyInspector, Wanted};
use super::{classify, Checker, Exchange, Violation};
pub use crate::tls::trusting;
use crate::tls::TestCa;

type Body = BoxBody<Bytes, std::io::Error>;

#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Where requests go: `http://127.0.0.1:PORT`.
    pub upstream: String,
    /// Append each exchange to this file as one JSON line.
    pub log: Option<PathBuf>,
    /// Also listen on HTTPS, with a certificate of a CA made for this recorder.
    pub tls: bool,
    /// Keep the exchanges in memory, for [`Recorder::exchanges`].
    pub keep: bool,
    /// Listen on these ports (0 or none: any free one).
    pub port: Option<u16>,
    pub tls_port: Option<u16>,
}

struct State {
    checker: Checker,
    violations: Vec<Violation>,
    exchanges: Vec<Exchange>,
    keep: bool,
    log: Option<std::fs::File>,
}

#[derive(Clone)]
pub struct Recorder {
    pub addr: SocketAddr,
    pub tls_addr: Option<SocketAddr>,
    /// The test CA's certificate (PEM), for clients to trust.
    pub ca_pem: Option<String>,
    state: Arc<Mutex<State>>,
}

impl Recorder {
    pub async fn start(options: Options) -> std::io::Result<Recorder> {
        let log = match &options.log {
            Some(path) => Some(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)?,
            ),
            None => None,
        };
        let state = Arc::new(Mutex::new(State {
            checker: Checker::default(),
            violations: Vec::new(),
            exchanges: Vec::new(),
            keep: options.keep,
            log,
        }));
        let listener = TcpListener::bind(("127.0.0.1", options.port.unwrap_or(0))).await?;
        let addr = listener.local_addr()?;
        let client = reqwest::Client::builder()
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(std::io::Error::other)?;
        let forwarder = Forwarder {
            upstream: options.upstream.trim_end_matches('/').to_owned(),
            client,
            state: state.clone(),
        };
        tokio::spawn(serve(listener, forwarder.clone(), None));
        let (tls_addr, ca_pem) = if options.tls {
            let TestCa { acceptor, ca_pem } = TestCa::new("aws-wire recorder")?;
            let listener = TcpListener::bind(("127.0.0.1", options.tls_port.unwrap_or(0))).await?;
            let tls_addr = listener.local_addr()?;
            tokio::spawn(serve(listener, forwarder, Some(acceptor)));
            (Some(tls_addr), Some(ca_pem))
        } else {
            (None, None)
        };
        Ok(Recorder {
            addr,
            tls_addr,
            ca_pem,
            state,
        })
    }

    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn tls_endpoint(&self) -> Option<String> {
        self.tls_addr.map(|addr| format!("https://{addr}"))
    }

    /// The exchanges so far (with [`Options::keep`]).
    pub fn exchanges(&self) -> Vec<Exchange> {
        self.state.lock().unwrap().exchanges.clone()
    }

    /// The rules broken so far.
    pub fn violations(&self) -> Vec<Violation> {
        self.state.lock().unwrap().violations.clone()
    }
}

async fn serve(
    listener: TcpListener,
    forwarder: Forwarder,
    tls: Option<tokio_rustls::TlsAcceptor>,
) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            return;
        };
        let _ = stream.set_nodelay(true);
        let (forwarder, tls) = (forwarder.clone(), tls.clone());
        tokio::spawn(async move {
            match tls {
                Some(acceptor) => {
                    if let Ok(stream) = acceptor.accept(stream).await {
                        connection(stream, forwarder, "https").await;
                    }
                }
                None => connection(stream, forwarder, "http").await,
            }
        });
    }
}

async fn connection<S>(stream: S, forwarder: Forwarder, scheme: &'static str)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = service_fn(move |request| {
        let forwarder = forwarder.clone();
        async move { forwarder.forward(request, scheme).await }
    });
    let _ = hyper::server::conn::http1::Builder::new()
        .serve_connection(TokioIo::new(stream), service)
        .await;
}

#[derive(Clone)]
struct Forwarder {
    upstream: String,
    client: reqwest::Client,
    state: Arc<Mutex<State>>,
}

/// Operations whose answer a later rule reads.
fn keeps_answer(operation: &str) -> bool {
    operation == "CreateMultipartUpload"
}

impl Forwarder {
    async fn forward(
        &self,
        request: Request<hyper::body::Incoming>,
        scheme: &'static str,
    ) -> Result<Response<Body>, std::io::Error> {
        let (parts, body) = request.into_parts();
        // A request without a body (no Content-Length, nothing framed) is forwarded without one.
        let exact = hyper::body::Body::size_hint(&body).exact();
        let path = parts.uri.path().to_owned();
        let query = parts.uri.query().unwrap_or_default().to_owned();
        let headers: Vec<(String, String)> = parts
            .headers
            .iter()
            .map(|(name, value)| {
                let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
                let value = if name == "authorization" {
                    without_signature(&value)
                } else {
                    value
                };
                (name.as_str().to_owned(), value)
            })
            .collect();
        let service = classify::service(&headers, &query);
        let header = |name: &str| {
            headers
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.as_str())
        };
        let content_sha256 = header("x-amz-content-sha256").unwrap_or_default();
        let object_data =
            service == "s3" && matches!(parts.method.as_str(), "PUT") && !query.contains("tagging");
        let cbor = header("content-type").is_some_and(|t| t.starts_with("application/cbor"));
        let wanted = Wanted {
            aws_chunked: content_sha256.starts_with("STREAMING-")
                || header("content-encoding").is_some_and(|e| e.contains("aws-chunked")),
            crc32: header("x-amz-checksum-crc32").is_some()
                || header("x-amz-trailer")
                    .is_some_and(|t| t.contains("crc32") && !t.contains("crc32c")),
            sha256: header("x-amz-checksum-sha256").is_some()
                || header("x-amz-trailer").is_some_and(|t| t.contains("sha256"))
                || content_sha256.len() == 64,
            keep_text: !object_data && !cbor,
            keep_binary: cbor,
        };
        let inspector = Arc::new(Mutex::new(Some(BodyInspector::new(wanted))));
        let summary = Arc::new(Mutex::new(None));
        let (feed, done) = (inspector.clone(), summary.clone());
        let stream = body.into_data_stream().map(move |chunk| {
            let mut guard = feed.lock().unwrap();
            match &chunk {
                Ok(bytes) => {
                    if let Some(inspector) = guard.as_mut() {
                        inspector.feed(bytes);
                    }
                }
                Err(_) => {
                    if let Some(inspector) = guard.take() {
                        *done.lock().unwrap() = Some(inspector.finish(false));
                    }
                }
            }
            chunk.map_err(std::io::Error::other)
        });
        let (finish, done) = (inspector.clone(), summary.clone());
        let stream = stream
            .chain(futures::stream::once(async move {
                if let Some(inspector) = finish.lock().unwrap().take() {
                    *done.lock().unwrap() = Some(inspector.finish(true));
                }
                Ok::<Bytes, std::io::Error>(Bytes::new())
            }))
            .filter(|chunk| futures::future::ready(!matches!(chunk, Ok(b) if b.is_empty())));
        let url = format!(
            "{}{}",
            self.upstream,
            parts
                .uri
                .path_and_query()
                .map(|p| p.as_str())
                .unwrap_or("/")
        );
        let length = parts
            .headers
            .get(hyper::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok()?.parse().ok())
            .or(exact);
        let mut forwarded =
            self.client
                .request(parts.method.clone(), url)
                .body(reqwest::Body::wrap(KnownLength {
                    frames: StreamBody::new(Box::pin(stream.map(|chunk| chunk.map(Frame::data)))),
                    length,
                }));
        for (name, value) in &parts.headers {
            if !matches!(name.as_str(), "transfer-encoding" | "connection" | "expect") {
                forwarded = forwarded.header(name, value);
            }
        }
        let answer = forwarded.send().await;
        // The client stops polling a body of known length once its last byte went out, so the
        // stream's end may never be seen: the body is whole when its Content-Length went past.
        let body = summary.lock().unwrap().take().unwrap_or_else(|| {
            inspector
                .lock()
                .unwrap()
                .take()
                .map(|i| {
                    let whole = length == Some(i.wire_length());
                    i.finish(whole)
                })
                .unwrap_or_default()
        });
        let mut exchange = Exchange {
            operation: classify::operation(
                &service,
                parts.method.as_str(),
                &path,
                &query,
                &headers,
                body.text.as_deref(),
            ),
            service,
            scheme: scheme.to_owned(),
            method: parts.method.to_string(),
            path,
            query,
            headers,
            body,
            status: 0,
            answer: None,
        };
        let answer = match answer {
            Ok(answer) => answer,
            Err(err) => {
                self.record(exchange);
                return Err(std::io::Error::other(err));
            }
        };
        exchange.status = answer.status().as_u16();
        let mut response = Response::builder().status(answer.status().as_u16());
        for (name, value) in answer.headers() {
            if name != "transfer-encoding" && name != "connection" {
                response = response.header(name, value);
            }
        }
        let body = if keeps_answer(&exchange.operation) {
            let bytes = answer.bytes().await.map_err(std::io::Error::other)?;
            exchange.answer = Some(String::from_utf8_lossy(&bytes).into_owned());
            self.record(exchange);
            Full::new(bytes).map_err(|never| match never {}).boxed()
        } else {
            self.record(exchange);
            let frames = answer
                .bytes_stream()
                .map(|chunk| chunk.map(Frame::data).map_err(std::io::Error::other));
            BodyExt::boxed(StreamBody::new(frames))
        };
        Ok(response.body(body).unwrap())
    }

    fn record(&self, exchange: Exchange) {
        let mut state = self.state.lock().unwrap();
        let found = state.checker.check(&exchange);
        for violation in &found {
            eprintln!("aws-wire: {violation}");
        }
        state.violations.extend(found);
        if let Some(log) = &mut state.log {
            let line = serde_json::to_string(&exchange).expect("an exchange serialises");
            let _ = writeln!(log, "{line}");
        }
        if state.keep {
            state.exchanges.push(exchange);
        }
    }
}

/// A streamed body whose length is known from its Content-Length: the client sends that header
/// as it was, rather than switching to chunked transfer encoding.
struct KnownLength<B> {
    frames: B,
    length: Option<u64>,
}

impl<B> hyper::body::Body for KnownLength<B>
where
    B: hyper::body::Body + Unpin,
{
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        std::pin::Pin::new(&mut self.frames).poll_frame(cx)
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        match self.length {
            Some(length) => hyper::body::SizeHint::with_exact(length),
            None => self.frames.size_hint(),
        }
    }
}

/// The Authorization header without its signature: what it says (algorithm, scope, signed
/// headers) is what the rules read; the signature itself is of no use in a log.
fn without_signature(value: &str) -> String {
    match value.find("Signature=") {
        Some(at) => format!("{}Signature=…", &value[..at]),
        None => value.to_owned(),
    }
}

/// The SDK configuration the functions load (`shared::aws::load_config`), pointed at the
/// recorder's HTTPS endpoint with the strict S3's credentials, its test CA trusted.
pub async fn https_sdk_config(
    recorder: &Recorder,
    access_key: &str,
    secret_key: &str,
) -> aws_config::SdkConfig {
    let endpoint = recorder
        .tls_endpoint()
        .expect("the recorder listens on HTTPS");
    let ca = recorder
        .ca_pem
        .as_deref()
        .expect("the recorder has a test CA");
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .endpoint_url(endpoint)
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_s3::config::Credentials::new(
            access_key,
            secret_key,
            None,
            None,
            "strict-s3",
        ))
        .http_client(trusting(ca))
        .load()
        .await
}
