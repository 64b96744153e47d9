//! The sample domestic origin: a real HTTP server for the catalogue, with what a web server sends
//! (Content-Length, Content-Type, ETag, Last-Modified, Cache-Control, Accept-Ranges), byte ranges
//! and the preconditions the backfill's ranged GETs rely on, counting requests.

use std::collections::HashMap;
use std::io::SeekFrom;
use std::net::SocketAddr;
use std::path::{Component, Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use hyper::header::HeaderMap;
use hyper::Response;
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use tokio_util::io::ReaderStream;

use crate::http::{self, Body};

/// The pseudo-path under which injected failures are counted.
pub const FAILED: &str = "(injected 503)";

/// How the backfill function's HTTP client names itself (functions/backfill/src/origin.rs).
const BACKFILL_AGENT: &str = "overseas-origin-backfill/";

/// Requests per path: all of them, the backfill function's, and its GETs answered with (part
/// of) a body.
#[derive(Clone, Default)]
pub struct Hits(Arc<Mutex<Counts>>);

#[derive(Default)]
struct Counts {
    requests: HashMap<String, usize>,
    backfill_requests: HashMap<String, usize>,
    backfill_bodies: HashMap<String, usize>,
}

impl Hits {
    /// Every request for `path`, whoever sent it.
    pub fn get(&self, path: &str) -> usize {
        let counts = self.0.lock().unwrap();
        counts.requests.get(path).copied().unwrap_or_default()
    }

    /// The backfill function's requests for `path`, whatever the answer.
    pub fn backfill_requests(&self, path: &str) -> usize {
        let counts = self.0.lock().unwrap();
        counts
            .backfill_requests
            .get(path)
            .copied()
            .unwrap_or_default()
    }

    /// The backfill function's GETs of `path` answered 200 or 206: its fetches of the body.
    pub fn backfill_bodies(&self, path: &str) -> usize {
        let counts = self.0.lock().unwrap();
        counts
            .backfill_bodies
            .get(path)
            .copied()
            .unwrap_or_default()
    }

    fn add(&self, path: &str) {
        *self
            .0
            .lock()
            .unwrap()
            .requests
            .entry(path.to_owned())
            .or_default() += 1;
    }

    /// A request of the backfill function, and whether it was answered with a body.
    fn add_backfill(&self, path: &str, body: bool) {
        let mut counts = self.0.lock().unwrap();
        *counts.backfill_requests.entry(path.to_owned()).or_default() += 1;
        if body {
            *counts.backfill_bodies.entry(path.to_owned()).or_default() += 1;
        }
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
            let get = request.method() == hyper::Method::GET;
            if !get && request.method() != hyper::Method::HEAD {
                return http::text(405, "method not allowed");
            }
            let response = match file(&root, &path, request.headers(), get).await {
                Some(response) => response,
                None => http::text(404, "not found"),
            };
            let from_backfill = request
                .headers()
                .get(hyper::header::USER_AGENT)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|agent| agent.starts_with(BACKFILL_AGENT));
            if from_backfill {
                hits.add_backfill(
                    &path,
                    get && matches!(response.status().as_u16(), 200 | 206),
                );
            }
            response
        }
    })
    .await?;
    Ok((addr, hits))
}

/// What a representation is, for the preconditions and ranges.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Representation {
    pub size: u64,
    /// A strong entity tag, quoted.
    pub etag: String,
    pub last_modified: SystemTime,
}

/// How to answer a GET or HEAD of a representation (RFC 9110).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    Whole,
    /// 206: the bytes `first..=last`.
    Partial {
        first: u64,
        last: u64,
    },
    /// 412: a precondition failed; no body.
    PreconditionFailed,
    /// 416: the range starts past the end.
    RangeNotSatisfiable,
    /// 304: the client's copy is current (If-None-Match, If-Modified-Since); no body.
    NotModified,
}

/// The answer to a request with these headers, in the order RFC 9110 §13.2.2 evaluates them:
/// If-Match (§13.1.1, strong comparison; false: 412), else If-Unmodified-Since (§13.1.4; the
/// representation modified after the date: 412; an invalid date is ignored); then a GET's Range
/// (§14.2), unless If-Range (§13.1.5) does not match: a strong entity tag equal to the current
/// one, or a date equal to Last-Modified; otherwise the Range is ignored and the whole
/// representation sent. One range of the forms `bytes=a-b`, `bytes=a-` and `bytes=-n`; any
/// other Range (several ranges, another unit, not well formed) is ignored, as §14.2 allows.
pub fn answer(representation: &Representation, headers: &HeaderMap, get: bool) -> Answer {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    if let Some(if_match) = header("if-match") {
        if !matches_any(if_match, &representation.etag) {
            return Answer::PreconditionFailed;
        }
    } else if let Some(date) = header("if-unmodified-since").and_then(http_date) {
        if seconds(representation.last_modified) > seconds(date) {
            return Answer::PreconditionFailed;
        }
    }
    // §13.1.2: If-None-Match (weak comparison) wins over If-Modified-Since (§13.1.3, GET and
    // HEAD only; an invalid date is ignored).
    if let Some(if_none_match) = header("if-none-match") {
        if matches_weakly(if_none_match, &representation.etag) {
            return Answer::NotModified;
        }
    } else if let Some(date) = header("if-modified-since").and_then(http_date) {
        if seconds(representation.last_modified) <= seconds(date) {
            return Answer::NotModified;
        }
    }
    let Some(range) = header("range").filter(|_| get) else {
        return Answer::Whole;
    };
    if let Some(validator) = header("if-range") {
        if !if_range_matches(validator.trim(), representation) {
            return Answer::Whole;
        }
    }
    match byte_range(range, representation.size) {
        Some(Some((first, last))) => Answer::Partial { first, last },
        Some(None) => Answer::RangeNotSatisfiable,
        None => Answer::Whole,
    }
}

/// If-Match: `*`, or a list of entity tags one of which is strongly equal to `etag` (a weak tag
/// never is).
fn matches_any(list: &str, etag: &str) -> bool {
    list.trim() == "*"
        || list
            .split(',')
            .map(str::trim)
            .any(|tag| !tag.starts_with("W/") && tag == etag)
}

/// If-None-Match: `*`, or a list of entity tags one of which is weakly equal to `etag`.
fn matches_weakly(list: &str, etag: &str) -> bool {
    let opaque = |tag: &str| tag.trim().trim_start_matches("W/").to_owned();
    list.trim() == "*" || list.split(',').any(|tag| opaque(tag) == opaque(etag))
}

/// If-Range: an entity tag (strong comparison) or an HTTP date (an exact match of Last-Modified).
fn if_range_matches(validator: &str, representation: &Representation) -> bool {
    if validator.starts_with('"') || validator.starts_with("W/") {
        return !validator.starts_with("W/") && validator == representation.etag;
    }
    http_date(validator).is_some_and(|date| seconds(date) == seconds(representation.last_modified))
}

/// One byte range of a representation of `size` bytes: `None` to ignore the header, `Some(None)`
/// when it starts past the end (416), else the first and last byte, the last clipped to the end.
fn byte_range(range: &str, size: u64) -> Option<Option<(u64, u64)>> {
    let spec = range.trim().strip_prefix("bytes=")?.trim();
    if spec.contains(',') {
        return None;
    }
    let (first, last) = spec.split_once('-')?;
    let number = |text: &str| -> Option<u64> {
        (!text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()))
            .then(|| text.parse().ok())
            .flatten()
    };
    match (first.trim(), last.trim()) {
        ("", suffix) => {
            let length = number(suffix)?;
            if length == 0 || size == 0 {
                return Some(None);
            }
            Some(Some((size.saturating_sub(length), size - 1)))
        }
        (first, "") => {
            let first = number(first)?;
            Some((first < size).then(|| (first, size - 1)))
        }
        (first, last) => {
            let (first, last) = (number(first)?, number(last)?);
            if last < first {
                return None;
            }
            Some((first < size).then(|| (first, last.min(size - 1))))
        }
    }
}

fn http_date(text: &str) -> Option<SystemTime> {
    httpdate::parse_http_date(text.trim()).ok()
}

fn nanos(time: SystemTime) -> u128 {
    time.duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default()
}

/// HTTP dates have whole seconds.
fn seconds(time: SystemTime) -> u64 {
    time.duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}

async fn file(root: &Path, path: &str, headers: &HeaderMap, get: bool) -> Option<Response<Body>> {
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
    let representation = Representation {
        size: metadata.len(),
        // The modification time to the nanosecond: a file replaced twice in one second has
        // another tag each time (its Last-Modified, in whole seconds, may not change).
        etag: format!("\"{:x}-{:x}\"", metadata.len(), nanos(modified)),
        last_modified: modified,
    };
    let response = Response::builder()
        .header("etag", &representation.etag)
        .header("last-modified", httpdate::fmt_http_date(modified))
        .header("accept-ranges", "bytes");
    let size = representation.size;
    let (response, first, length) = match answer(&representation, headers, get) {
        Answer::PreconditionFailed => {
            return response.status(412).body(http::full("")).ok();
        }
        Answer::NotModified => {
            return response.status(304).body(http::full("")).ok();
        }
        Answer::RangeNotSatisfiable => {
            return response
                .status(416)
                .header("content-range", format!("bytes */{size}"))
                .body(http::full(""))
                .ok();
        }
        Answer::Whole => (response.status(200), 0, size),
        Answer::Partial { first, last } => (
            response
                .status(206)
                .header("content-range", format!("bytes {first}-{last}/{size}")),
            first,
            last - first + 1,
        ),
    };
    let mut file = tokio::fs::File::open(&full).await.ok()?;
    if first > 0 {
        file.seek(SeekFrom::Start(first)).await.ok()?;
    }
    Some(
        response
            .header("content-length", length)
            .header("content-type", content_type(path))
            .header("cache-control", "public, max-age=86400")
            .body(http::stream(ReaderStream::with_capacity(
                file.take(length),
                256 * 1024,
            )))
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    const ETAG: &str = "\"64-6a2f\"";

    fn representation() -> Representation {
        Representation {
            size: 100,
            etag: ETAG.into(),
            last_modified: SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000),
        }
    }

    fn date(offset: i64) -> String {
        let secs = 1_800_000_000_i64 + offset;
        httpdate::fmt_http_date(SystemTime::UNIX_EPOCH + Duration::from_secs(secs as u64))
    }

    fn answer_to(pairs: &[(&str, &str)]) -> Answer {
        let mut headers = HeaderMap::new();
        for (name, value) in pairs {
            headers.append(
                hyper::header::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                value.parse().unwrap(),
            );
        }
        answer(&representation(), &headers, true)
    }

    fn partial(first: u64, last: u64) -> Answer {
        Answer::Partial { first, last }
    }

    #[test]
    fn ranges() {
        assert_eq!(answer_to(&[]), Answer::Whole);
        assert_eq!(answer_to(&[("range", "bytes=0-9")]), partial(0, 9));
        assert_eq!(answer_to(&[("range", "bytes=90-")]), partial(90, 99));
        assert_eq!(answer_to(&[("range", "bytes=0-")]), partial(0, 99));
        assert_eq!(answer_to(&[("range", "bytes=50-500")]), partial(50, 99));
        assert_eq!(answer_to(&[("range", "bytes=-10")]), partial(90, 99));
        assert_eq!(answer_to(&[("range", "bytes=-500")]), partial(0, 99));
        assert_eq!(
            answer_to(&[("range", "bytes=100-")]),
            Answer::RangeNotSatisfiable
        );
        assert_eq!(
            answer_to(&[("range", "bytes=100-200")]),
            Answer::RangeNotSatisfiable
        );
        // Ignored: several ranges, another unit, a reversed or malformed range.
        for ignored in [
            "bytes=0-1,5-6",
            "items=0-1",
            "bytes=9-1",
            "bytes=a-b",
            "bytes=-",
        ] {
            assert_eq!(answer_to(&[("range", ignored)]), Answer::Whole, "{ignored}");
        }
        // HEAD answers the whole representation's headers.
        let mut headers = HeaderMap::new();
        headers.insert("range", "bytes=0-9".parse().unwrap());
        assert_eq!(answer(&representation(), &headers, false), Answer::Whole);
    }

    #[test]
    fn revalidations_get_304_when_the_copy_is_current() {
        assert_eq!(answer_to(&[("if-none-match", ETAG)]), Answer::NotModified);
        assert_eq!(
            answer_to(&[("if-none-match", &format!("\"x\", W/{ETAG}"))]),
            Answer::NotModified
        );
        assert_eq!(answer_to(&[("if-none-match", "\"x\"")]), Answer::Whole);
        assert_eq!(
            answer_to(&[("if-modified-since", &date(0))]),
            Answer::NotModified
        );
        assert_eq!(
            answer_to(&[("if-modified-since", &date(-1))]),
            Answer::Whole
        );
        // If-None-Match decides alone when it is there.
        assert_eq!(
            answer_to(&[("if-none-match", "\"x\""), ("if-modified-since", &date(0))]),
            Answer::Whole
        );
    }

    #[test]
    fn if_match() {
        let range = ("range", "bytes=10-19");
        assert_eq!(answer_to(&[("if-match", ETAG), range]), partial(10, 19));
        assert_eq!(answer_to(&[("if-match", "*"), range]), partial(10, 19));
        assert_eq!(
            answer_to(&[("if-match", "\"other\", \"64-6a2f\""), range]),
            partial(10, 19)
        );
        assert_eq!(
            answer_to(&[("if-match", "\"other\""), range]),
            Answer::PreconditionFailed
        );
        // Strong comparison: a weak tag never matches.
        assert_eq!(
            answer_to(&[("if-match", "W/\"64-6a2f\"")]),
            Answer::PreconditionFailed
        );
        // Evaluated before the Range: a range past the end of a changed object is still 412.
        assert_eq!(
            answer_to(&[("if-match", "\"other\""), ("range", "bytes=500-")]),
            Answer::PreconditionFailed
        );
    }

    #[test]
    fn if_unmodified_since() {
        let range = ("range", "bytes=10-19");
        assert_eq!(
            answer_to(&[("if-unmodified-since", &date(0)), range]),
            partial(10, 19)
        );
        assert_eq!(
            answer_to(&[("if-unmodified-since", &date(60)), range]),
            partial(10, 19)
        );
        assert_eq!(
            answer_to(&[("if-unmodified-since", &date(-1)), range]),
            Answer::PreconditionFailed
        );
        // Ignored when If-Match is there, and when the date is not a date.
        assert_eq!(
            answer_to(&[
                ("if-match", ETAG),
                ("if-unmodified-since", &date(-1)),
                range
            ]),
            partial(10, 19)
        );
        assert_eq!(
            answer_to(&[("if-unmodified-since", "yesterday"), range]),
            partial(10, 19)
        );
    }

    #[test]
    fn if_range() {
        let range = ("range", "bytes=10-19");
        assert_eq!(answer_to(&[("if-range", ETAG), range]), partial(10, 19));
        assert_eq!(answer_to(&[("if-range", &date(0)), range]), partial(10, 19));
        // A mismatch sends the whole representation, not a 412.
        assert_eq!(
            answer_to(&[("if-range", "\"other\""), range]),
            Answer::Whole
        );
        assert_eq!(answer_to(&[("if-range", &date(-5)), range]), Answer::Whole);
        assert_eq!(answer_to(&[("if-range", &date(5)), range]), Answer::Whole);
        assert_eq!(
            answer_to(&[("if-range", "W/\"64-6a2f\""), range]),
            Answer::Whole
        );
        // Without a Range there is nothing to condition.
        assert_eq!(answer_to(&[("if-range", "\"other\"")]), Answer::Whole);
    }

    /// The server itself: ranged and conditional GETs of a file, and the backfill's fetches of
    /// bodies counted apart from the viewers'.
    #[tokio::test]
    async fn serves_ranges_and_counts_the_backfills_bodies() {
        let root = std::env::temp_dir().join(format!("origin-test-{}", fastrand::u64(..)));
        std::fs::create_dir_all(root.join("video")).unwrap();
        let bytes: Vec<u8> = (0..=255u8).cycle().take(1000).collect();
        std::fs::write(root.join("video/clip.mp4"), &bytes).unwrap();
        let (addr, hits) = start(root.clone(), 0, 0.0).await.unwrap();
        let url = format!("http://{addr}/video/clip.mp4");
        let viewer = reqwest::Client::new();
        let backfill = reqwest::Client::builder()
            .user_agent("overseas-origin-backfill/0.1.0")
            .build()
            .unwrap();

        let whole = viewer.get(&url).send().await.unwrap();
        assert_eq!(whole.status(), 200);
        assert_eq!(whole.headers()["accept-ranges"], "bytes");
        let etag = whole.headers()["etag"].to_str().unwrap().to_owned();
        let modified = whole.headers()["last-modified"]
            .to_str()
            .unwrap()
            .to_owned();
        assert_eq!(whole.bytes().await.unwrap().as_ref(), &bytes[..]);

        let part = backfill
            .get(&url)
            .header("range", "bytes=100-199")
            .header("if-match", &etag)
            .header("if-range", &etag)
            .send()
            .await
            .unwrap();
        assert_eq!(part.status(), 206);
        assert_eq!(part.headers()["content-range"], "bytes 100-199/1000");
        assert_eq!(part.headers()["content-length"], "100");
        assert_eq!(part.bytes().await.unwrap().as_ref(), &bytes[100..200]);

        let tail = backfill
            .get(&url)
            .header("range", "bytes=900-")
            .header("if-unmodified-since", &modified)
            .header("if-range", &modified)
            .send()
            .await
            .unwrap();
        assert_eq!(tail.status(), 206);
        assert_eq!(tail.headers()["content-range"], "bytes 900-999/1000");
        assert_eq!(tail.bytes().await.unwrap().as_ref(), &bytes[900..]);

        let changed = backfill
            .get(&url)
            .header("range", "bytes=0-9")
            .header("if-match", "\"changed\"")
            .send()
            .await
            .unwrap();
        assert_eq!(changed.status(), 412);
        assert!(changed.bytes().await.unwrap().is_empty());

        let stale = viewer
            .get(&url)
            .header("range", "bytes=0-9")
            .header("if-range", "\"changed\"")
            .send()
            .await
            .unwrap();
        assert_eq!(stale.status(), 200);
        assert_eq!(stale.bytes().await.unwrap().len(), 1000);

        let past = viewer
            .get(&url)
            .header("range", "bytes=1000-")
            .send()
            .await
            .unwrap();
        assert_eq!(past.status(), 416);
        assert_eq!(past.headers()["content-range"], "bytes */1000");

        let head = backfill.head(&url).send().await.unwrap();
        assert_eq!(head.status(), 200);

        // Seven requests in all; two bodies went to the backfill (the 412 and the HEAD carry none).
        assert_eq!(hits.get("/video/clip.mp4"), 7);
        assert_eq!(hits.backfill_requests("/video/clip.mp4"), 4);
        assert_eq!(hits.backfill_bodies("/video/clip.mp4"), 2);
        assert_eq!(hits.backfill_bodies("/video/other.mp4"), 0);
        std::fs::remove_dir_all(root).unwrap();
    }
}
