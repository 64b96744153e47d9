//! A real HTTP/1.1 origin server for the tests, on 127.0.0.1, whose routes misbehave on purpose.
//!
//! Routes:
//! - `/files/NAME`: a registered body with Content-Length and the registered headers.
//! - `/chunked/NAME`: the same body, chunked (no Content-Length).
//! - `/truncated/NAME`: Content-Length of the whole body, half of it sent, then the connection closed.
//! - `/reset/NAME`: half the body, then a TCP reset.
//! - `/status/CODE`: that status, empty body.
//! - `/flaky/N/NAME`: 503 for the first N requests of this path, then the file.
//! - `/redirect-away/NAME`: 302 to the same path on another host (`localhost` instead of 127.0.0.1).
//! - `/redirect-here/NAME`: 302 to `/files/NAME` on this host.
//! - `/redirect-loop`: 302 to itself.
//! - `/slow-first-byte/MS/NAME`: waits MS milliseconds before answering.
//! - `/stall/MS/NAME`: sends half the body, waits MS milliseconds, sends the rest. `MS` may be a
//!   comma-separated list (`6000,12000`): the body goes in that many pauses plus one equal pieces.
//!
//! - `/ranged/RATE/NAME`: the file as a web server with range support serves it (RFC 9110):
//!   `Range: bytes=A-B` or `bytes=A-` answers 206 with Content-Range (416 past the end),
//!   `If-Match` on another tag answers 412, `If-Range` on another validator the whole body
//!   (200). The body goes at RATE bytes a second (0: at once); bytes sent are counted.
//!
//! - `/versioned/NAME`: the file with a strong ETag of its content (its CRC32C) and
//!   `If-None-Match` (304 when it matches); 404 once removed ([`OriginServer::remove`]).
//!
//! A path registered with [`OriginServer::alias`] is served as its route (and recorded as it).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

#[derive(Clone, Default)]
pub struct File {
    pub body: Vec<u8>,
    pub headers: Vec<(String, String)>,
}

#[derive(Default)]
struct State {
    files: HashMap<String, File>,
    aliases: HashMap<String, String>,
    hits: HashMap<String, usize>,
    requests: Vec<(String, Vec<(String, String)>)>,
    /// Body bytes written by `/ranged/` routes, by file name.
    sent: HashMap<String, u64>,
}

#[derive(Clone)]
pub struct OriginServer {
    pub addr: SocketAddr,
    state: Arc<Mutex<State>>,
}

impl OriginServer {
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = OriginServer {
            addr,
            state: Arc::default(),
        };
        let state = server.state.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let state = state.clone();
                tokio::spawn(async move {
                    let _ = serve(stream, addr, state).await;
                });
            }
        });
        server
    }

    pub fn add(&self, name: &str, body: Vec<u8>, headers: &[(&str, &str)]) {
        let headers = headers
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        self.state
            .lock()
            .unwrap()
            .files
            .insert(name.to_owned(), File { body, headers });
    }

    /// Takes a file away: its routes answer 404.
    pub fn remove(&self, name: &str) {
        self.state.lock().unwrap().files.remove(name);
    }

    /// Serves `path` (percent-encoded) as `route` (percent-encoded): a message's uri must name its
    /// key, and a key is any name a test likes, the route what the test wants of the origin.
    pub fn alias(&self, path: &str, route: &str) {
        self.state
            .lock()
            .unwrap()
            .aliases
            .insert(percent_decode(path), percent_decode(route));
    }

    /// Requests seen, with their headers (names lower-cased).
    pub fn requests(&self) -> Vec<(String, Vec<(String, String)>)> {
        self.state.lock().unwrap().requests.clone()
    }

    /// Body bytes of `name` the `/ranged/` route has written.
    pub fn bytes_sent(&self, name: &str) -> u64 {
        self.state
            .lock()
            .unwrap()
            .sent
            .get(name)
            .copied()
            .unwrap_or_default()
    }

    pub fn hits(&self, path: &str) -> usize {
        self.state
            .lock()
            .unwrap()
            .requests
            .iter()
            .filter(|(p, _)| p == path)
            .count()
    }
}

async fn serve(
    mut stream: TcpStream,
    addr: SocketAddr,
    state: Arc<Mutex<State>>,
) -> std::io::Result<()> {
    loop {
        let Some((path, headers)) = read_request(&mut stream).await? else {
            return Ok(());
        };
        let path = {
            let state = state.lock().unwrap();
            state.aliases.get(&path).cloned().unwrap_or(path)
        };
        state
            .lock()
            .unwrap()
            .requests
            .push((path.clone(), headers.clone()));
        let hit = {
            let mut state = state.lock().unwrap();
            let count = state.hits.entry(path.clone()).or_default();
            *count += 1;
            *count
        };
        let segments: Vec<&str> = path.trim_start_matches('/').splitn(3, '/').collect();
        let file = |name: &str| state.lock().unwrap().files.get(name).cloned();
        let rest = |from: usize| segments[from..].join("/");
        match segments.as_slice() {
            ["files", ..] => match file(&rest(1)) {
                Some(f) => respond(&mut stream, 200, &f.headers, Some(&f.body)).await?,
                None => respond(&mut stream, 404, &[], Some(b"not found")).await?,
            },
            ["versioned", ..] => match file(&rest(1)) {
                Some(f) => {
                    let etag = format!("\"{:08x}\"", crc32c::crc32c(&f.body));
                    let current = headers
                        .iter()
                        .any(|(k, v)| k == "if-none-match" && v.trim() == etag);
                    let mut answer = f.headers.clone();
                    answer.push(("etag".into(), etag));
                    if current {
                        respond(&mut stream, 304, &answer, None).await?
                    } else {
                        respond(&mut stream, 200, &answer, Some(&f.body)).await?
                    }
                }
                None => respond(&mut stream, 404, &[], Some(b"not found")).await?,
            },
            ["chunked", ..] => {
                let f = file(&rest(1)).unwrap();
                let mut head = String::from("HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n");
                for (k, v) in &f.headers {
                    head.push_str(&format!("{k}: {v}\r\n"));
                }
                head.push_str("\r\n");
                stream.write_all(head.as_bytes()).await?;
                for chunk in f.body.chunks(100_003) {
                    stream
                        .write_all(format!("{:x}\r\n", chunk.len()).as_bytes())
                        .await?;
                    stream.write_all(chunk).await?;
                    stream.write_all(b"\r\n").await?;
                }
                stream.write_all(b"0\r\n\r\n").await?;
            }
            ["truncated", ..] | ["reset", ..] => {
                let f = file(&rest(1)).unwrap();
                let head = format!(
                    "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n",
                    f.body.len()
                );
                stream.write_all(head.as_bytes()).await?;
                stream.write_all(&f.body[..f.body.len() / 2]).await?;
                stream.flush().await?;
                if segments[0] == "reset" {
                    stream.set_zero_linger()?;
                }
                return Ok(());
            }
            ["status", code] => {
                let code: u16 = code.parse().unwrap();
                respond(
                    &mut stream,
                    code,
                    &[("retry-after".into(), "7".into())],
                    Some(b""),
                )
                .await?;
            }
            ["flaky", failures, name] => {
                if hit <= failures.parse::<usize>().unwrap() {
                    respond(&mut stream, 503, &[], Some(b"busy")).await?;
                } else {
                    let f = file(name).unwrap();
                    respond(&mut stream, 200, &f.headers, Some(&f.body)).await?;
                }
            }
            ["redirect-away", ..] => {
                let location = format!("http://localhost:{}/files/{}", addr.port(), rest(1));
                respond(
                    &mut stream,
                    302,
                    &[("location".into(), location)],
                    Some(b""),
                )
                .await?;
            }
            ["redirect-here", ..] => {
                let location = format!("/files/{}", rest(1));
                respond(
                    &mut stream,
                    302,
                    &[("location".into(), location)],
                    Some(b""),
                )
                .await?;
            }
            ["redirect-loop"] => {
                respond(
                    &mut stream,
                    302,
                    &[("location".into(), "/redirect-loop".into())],
                    Some(b""),
                )
                .await?;
            }
            ["ranged", rate, name] => {
                let Some(f) = file(name) else {
                    respond(&mut stream, 404, &[], Some(b"not found")).await?;
                    continue;
                };
                let rate: u64 = rate.parse().unwrap();
                serve_ranged(&mut stream, &state, name, &f, &headers, rate).await?;
            }
            ["slow-first-byte", ms, name] => {
                tokio::time::sleep(Duration::from_millis(ms.parse().unwrap())).await;
                let f = file(name).unwrap();
                respond(&mut stream, 200, &f.headers, Some(&f.body)).await?;
            }
            ["stall", pauses, name] => {
                let f = file(name).unwrap();
                let head = format!(
                    "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n",
                    f.body.len()
                );
                stream.write_all(head.as_bytes()).await?;
                let pauses: Vec<u64> = pauses.split(',').map(|ms| ms.parse().unwrap()).collect();
                let piece = f.body.len() / (pauses.len() + 1);
                for (i, ms) in pauses.iter().enumerate() {
                    stream
                        .write_all(&f.body[i * piece..(i + 1) * piece])
                        .await?;
                    stream.flush().await?;
                    tokio::time::sleep(Duration::from_millis(*ms)).await;
                }
                stream.write_all(&f.body[pauses.len() * piece..]).await?;
            }
            _ => respond(&mut stream, 404, &[], Some(b"no route")).await?,
        }
    }
}

async fn serve_ranged(
    stream: &mut TcpStream,
    state: &Arc<Mutex<State>>,
    name: &str,
    f: &File,
    request: &[(String, String)],
    rate: u64,
) -> std::io::Result<()> {
    let asked = |name: &str| {
        request
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    };
    let own = |name: &str| {
        f.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
    };
    let (etag, modified) = (own("etag"), own("last-modified"));
    let len = f.body.len() as u64;
    if asked("if-match").is_some_and(|tag| Some(tag) != etag)
        || asked("if-unmodified-since").is_some_and(|date| Some(date) != modified)
    {
        return respond(stream, 412, &[], Some(b"")).await;
    }
    let if_range_holds = asked("if-range")
        .is_none_or(|v| Some(&v) == etag.as_ref() || Some(&v) == modified.as_ref());
    let range = asked("range").filter(|_| if_range_holds).and_then(|r| {
        let (first, last) = r.strip_prefix("bytes=")?.split_once('-')?;
        let first: u64 = first.parse().ok()?;
        let last = if last.is_empty() {
            len.saturating_sub(1)
        } else {
            last.parse::<u64>().ok()?.min(len.saturating_sub(1))
        };
        Some((first, last))
    });
    let mut headers = f.headers.clone();
    let (status, body) = match range {
        Some((first, _)) if first >= len => {
            headers = vec![("content-range".into(), format!("bytes */{len}"))];
            (416, &f.body[..0])
        }
        Some((first, last)) => {
            headers.push((
                "content-range".into(),
                format!("bytes {first}-{last}/{len}"),
            ));
            (206, &f.body[first as usize..=last as usize])
        }
        None => (200, &f.body[..]),
    };
    let mut head = format!(
        "HTTP/1.1 {status} X\r\ncontent-length: {}\r\naccept-ranges: bytes\r\n",
        body.len()
    );
    for (k, v) in &headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).await?;
    const PIECE: usize = 64 * 1024;
    let started = tokio::time::Instant::now();
    let mut written = 0u64;
    for piece in body.chunks(PIECE) {
        if rate > 0 {
            let due = started + Duration::from_secs_f64(written as f64 / rate as f64);
            tokio::time::sleep_until(due).await;
        }
        stream.write_all(piece).await?;
        written += piece.len() as u64;
        *state
            .lock()
            .unwrap()
            .sent
            .entry(name.to_owned())
            .or_default() += piece.len() as u64;
    }
    stream.flush().await
}

async fn respond(
    stream: &mut TcpStream,
    status: u16,
    headers: &[(String, String)],
    body: Option<&[u8]>,
) -> std::io::Result<()> {
    let body = body.unwrap_or_default();
    let mut head = format!("HTTP/1.1 {status} X\r\ncontent-length: {}\r\n", body.len());
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(body).await?;
    stream.flush().await
}

/// Reads one request head; `None` when the client closed the connection.
async fn read_request(
    stream: &mut TcpStream,
) -> std::io::Result<Option<(String, Vec<(String, String)>)>> {
    let mut buffer = Vec::new();
    let mut byte = [0u8; 1];
    while !buffer.ends_with(b"\r\n\r\n") {
        if stream.read(&mut byte).await? == 0 {
            return Ok(None);
        }
        buffer.push(byte[0]);
    }
    let text = String::from_utf8_lossy(&buffer);
    let mut lines = text.split("\r\n");
    let path = percent_decode(
        lines
            .next()
            .unwrap_or_default()
            .split(' ')
            .nth(1)
            .unwrap_or("/"),
    );
    let headers = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    Ok(Some((path, headers)))
}

fn percent_decode(path: &str) -> String {
    let bytes = path.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match (bytes[i], bytes.get(i + 1..i + 3)) {
            (b'%', Some(hex)) => {
                out.push(u8::from_str_radix(std::str::from_utf8(hex).unwrap(), 16).unwrap());
                i += 3;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).unwrap()
}
