//! The sample domestic origin: a real HTTP server for the catalogue, with what a web server sends
//! (Content-Length, Content-Type, ETag, Last-Modified, Cache-Control), counting requests.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Component, Path, PathBuf};
use std::sync::{Arc, Mutex};

use hyper::Response;
use tokio_util::io::ReaderStream;

use crate::http::{self, Body};

/// The pseudo-path under which injected failures are counted.
pub const FAILED: &str = "(injected 503)";

#[derive(Clone, Default)]
pub struct Hits(Arc<Mutex<HashMap<String, usize>>>);

impl Hits {
    pub fn get(&self, path: &str) -> usize {
        self.0
            .lock()
            .unwrap()
            .get(path)
            .copied()
            .unwrap_or_default()
    }

    fn add(&self, path: &str) {
        *self.0.lock().unwrap().entry(path.to_owned()).or_default() += 1;
    }
}

/// Starts the origin; `fail_rate` of the requests (0.0 to 1.0) are answered 503, as an origin
/// under load would.
pub async fn start(root: PathBuf, port: u16, fail_rate: f64) -> anyhow::Result<(SocketAddr, Hits)> {
    let hits = Hits::default();
    let counted = hits.clone();
    let addr = http::serve(port, move |request| {
        let root = root.clone();
        let hits = counted.clone();
        async move {
            let path = decode(request.uri().path());
            hits.add(&path);
            if fail_rate > 0.0 && fastrand::f64() < fail_rate {
                hits.add(FAILED);
                return http::text(503, "busy");
            }
            if request.method() != hyper::Method::GET && request.method() != hyper::Method::HEAD {
                return http::text(405, "method not allowed");
            }
            match file(&root, &path).await {
                Some(response) => response,
                None => http::text(404, "not found"),
            }
        }
    })
    .await?;
    Ok((addr, hits))
}

async fn file(root: &Path, path: &str) -> Option<Response<Body>> {
    let relative = Path::new(path.trim_start_matches('/'));
    if relative
        .components()
        .any(|c| !matches!(c, Component::Normal(_)))
    {
        return None;
    }
    let full = root.join(relative);
    let metadata = tokio::fs::metadata(&full)
        .await
        .ok()
        .filter(|m| m.is_file())?;
    let modified = metadata.modified().ok()?;
    let file = tokio::fs::File::open(&full).await.ok()?;
    let etag = format!(
        "\"{:x}-{:x}\"",
        metadata.len(),
        modified
            .duration_since(std::time::UNIX_EPOCH)
            .ok()?
            .as_secs()
    );
    Some(
        Response::builder()
            .status(200)
            .header("content-length", metadata.len())
            .header("content-type", content_type(path))
            .header("cache-control", "public, max-age=86400")
            .header("etag", etag)
            .header("last-modified", httpdate::fmt_http_date(modified))
            .body(http::stream(ReaderStream::with_capacity(file, 256 * 1024)))
            .expect("a valid response"),
    )
}

pub fn content_type(path: &str) -> &'static str {
    match path.rsplit('.').next().unwrap_or_default() {
        "html" => "text/html; charset=utf-8",
        "jpg" | "jpeg" => "image/jpeg",
        "png" => "image/png",
        "webp" => "image/webp",
        "gif" => "image/gif",
        "mp4" => "video/mp4",
        _ => "application/octet-stream",
    }
}

/// Percent-decodes a request path (lossy: the sample origin serves file names, not arbitrary keys).
pub fn decode(path: &str) -> String {
    let bytes = path.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok());
        match (bytes[i], hex.and_then(|h| u8::from_str_radix(h, 16).ok())) {
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}
