//! The rules AWS applies to a request, each with where it is written down. A rule looks at one
//! [`Exchange`] (and, for multipart uploads, at what the upload's earlier requests said) and
//! names what AWS would refuse. Where a local stand-in accepts what AWS refuses, this is the only
//! place that sees it.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use base64::Engine;
use serde_json::Value;

use super::cbor::{self, Cbor};
use super::Exchange;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    pub rule: &'static str,
    pub message: String,
    /// The request, as [`Exchange::describe`] names it.
    pub request: String,
}

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "[{}] {}: {}", self.rule, self.request, self.message)
    }
}

const MIB: u64 = 1024 * 1024;
const CHECKSUMS: [&str; 5] = ["crc32", "crc32c", "crc64nvme", "sha1", "sha256"];

/// What a multipart upload's CreateMultipartUpload declared, and the parts uploaded since.
#[derive(Debug, Default)]
struct Upload {
    algorithm: Option<String>,
    kind: Option<String>,
    parts: BTreeMap<u32, u64>,
}

/// Checks exchanges in the order they happened; keeps the multipart uploads' state between them.
#[derive(Debug, Default)]
pub struct Checker {
    uploads: HashMap<String, Upload>,
    /// Exchanges checked per service and operation.
    pub counts: BTreeMap<(String, String), usize>,
}

/// Collects one exchange's violations.
struct Report<'a> {
    exchange: &'a Exchange,
    found: Vec<Violation>,
}

impl Report<'_> {
    fn add(&mut self, rule: &'static str, message: impl Into<String>) {
        self.found.push(Violation {
            rule,
            message: message.into(),
            request: self.exchange.describe(),
        });
    }
}

impl Checker {
    pub fn check(&mut self, exchange: &Exchange) -> Vec<Violation> {
        *self
            .counts
            .entry((exchange.service.clone(), exchange.operation.clone()))
            .or_default() += 1;
        let mut report = Report {
            exchange,
            found: Vec::new(),
        };
        match exchange.service.as_str() {
            "s3" => self.s3(exchange, &mut report),
            "sqs" => json_document(exchange, &mut report, sqs),
            "dynamodb" => json_document(exchange, &mut report, dynamodb),
            "sns" => sns(exchange, &mut report),
            "cloudfront" if exchange.operation == "CreateInvalidation" => {
                create_invalidation(exchange, &mut report)
            }
            "secretsmanager" => {
                json_protocol(exchange, "secretsmanager", &mut report);
                json_document(exchange, &mut report, secretsmanager);
            }
            "monitoring" => cloudwatch(exchange, &mut report),
            _ => {}
        }
        report.found
    }

    fn s3(&mut self, ex: &Exchange, report: &mut Report) {
        checksum_announced(ex, report);
        single_checksum(ex, report);
        content_sha256(ex, report);
        aws_chunked(ex, report);
        if matches!(ex.operation.as_str(), "PutObject" | "UploadPart") {
            checksum_values(ex, report);
            content_length(ex, report);
        }
        conditional_writes(ex, report);
        if ex.operation == "DeleteObject" {
            conditional_delete(ex, report);
        }
        key_and_metadata(ex, report);
        let upload_id = ex.query_param("uploadId");
        match (ex.operation.as_str(), upload_id) {
            ("CreateMultipartUpload", _) => self.created(ex, report),
            ("UploadPart", Some(id)) => self.part(ex, &id, report),
            ("CompleteMultipartUpload", Some(id)) => self.complete(ex, &id, report),
            ("ListParts", _) => list_parts(ex, report),
            _ => {}
        }
    }

    fn created(&mut self, ex: &Exchange, report: &mut Report) {
        let algorithm = ex
            .header("x-amz-checksum-algorithm")
            .map(str::to_ascii_uppercase);
        let kind = ex
            .header("x-amz-checksum-type")
            .map(str::to_ascii_uppercase);
        // Full-object checksums exist for the CRC family only ("Checking object integrity",
        // https://docs.aws.amazon.com/AmazonS3/latest/userguide/checking-object-integrity.html:
        // "full object checksums ... CRC-64/NVME, CRC-32, and CRC-32C").
        if kind.as_deref() == Some("FULL_OBJECT")
            && !matches!(algorithm.as_deref(), Some("CRC32" | "CRC32C" | "CRC64NVME"))
        {
            report.add(
                "s3.checksum-type",
                format!("a FULL_OBJECT upload needs a CRC algorithm, not {algorithm:?}"),
            );
        }
        let Some(id) = ex
            .answer
            .as_deref()
            .and_then(|xml| xml_values(xml, "UploadId").pop())
        else {
            return;
        };
        self.uploads.insert(
            id,
            Upload {
                algorithm,
                kind,
                parts: BTreeMap::new(),
            },
        );
    }

    fn part(&mut self, ex: &Exchange, upload_id: &str, report: &mut Report) {
        // UploadPart (https://docs.aws.amazon.com/AmazonS3/latest/API/API_UploadPart.html):
        // "Part numbers can be any number from 1 to 10,000, inclusive"; a part is at most 5 GiB
        // ("Amazon S3 multipart upload limits",
        // https://docs.aws.amazon.com/AmazonS3/latest/userguide/qfacts.html).
        let number = ex
            .query_param("partNumber")
            .and_then(|n| n.parse::<u32>().ok());
        let Some(number) = number.filter(|n| (1..=10_000).contains(n)) else {
            report.add(
                "s3.part-number",
                "partNumber must be a whole number from 1 to 10,000",
            );
            return;
        };
        if ex.body.decoded_length > 5 * 1024 * MIB {
            report.add("s3.part-size", "a part is larger than 5 GiB");
        }
        // UploadPart's reference, x-amz-sdk-checksum-algorithm: "This checksum algorithm must be
        // the same for all parts and it match the checksum value supplied in the
        // CreateMultipartUpload request." A part's checksum (header or trailer) is of the
        // upload's algorithm, and so is the algorithm it names.
        if let Some(algorithm) = self
            .uploads
            .get(upload_id)
            .and_then(|upload| upload.algorithm.clone())
        {
            let named = ex
                .header("x-amz-sdk-checksum-algorithm")
                .map(str::to_ascii_uppercase);
            let sent = sent_checksums(ex)
                .into_iter()
                .map(|(alg, _, place)| (alg.to_ascii_uppercase(), place));
            for (other, place) in named
                .map(|alg| (alg, "x-amz-sdk-checksum-algorithm"))
                .into_iter()
                .chain(sent)
                .filter(|(alg, _)| *alg != algorithm)
            {
                report.add(
                    "s3.part-checksum",
                    format!("part {number}'s {place} is {other}, the upload was created with {algorithm}"),
                );
            }
        }
        if (200..300).contains(&ex.status) {
            if let Some(upload) = self.uploads.get_mut(upload_id) {
                upload.parts.insert(number, ex.body.decoded_length);
            }
        }
    }

    fn complete(&mut self, ex: &Exchange, upload_id: &str, report: &mut Report) {
        let Some(xml) = ex.body.text.as_deref() else {
            return;
        };
        let parts = xml_elements(xml, "Part");
        let numbers: Vec<u32> = parts
            .iter()
            .filter_map(|part| xml_values(part, "PartNumber").pop()?.parse().ok())
            .collect();
        // CompleteMultipartUpload
        // (https://docs.aws.amazon.com/AmazonS3/latest/API/API_CompleteMultipartUpload.html):
        // the parts list is in ascending part-number order (InvalidPartOrder), at most 10,000
        // parts; each part but the last is at least 5 MiB (EntityTooSmall).
        if numbers.is_empty() || numbers.len() != parts.len() {
            report.add(
                "s3.complete-parts",
                "every Part needs a PartNumber, and there must be one",
            );
        }
        if numbers.windows(2).any(|w| w[0] >= w[1]) {
            report.add(
                "s3.complete-parts",
                "parts are not in ascending order of PartNumber",
            );
        }
        if numbers.len() > 10_000 {
            report.add("s3.complete-parts", "more than 10,000 parts");
        }
        let Some(upload) = self.uploads.get(upload_id) else {
            return;
        };
        for &number in numbers.iter().rev().skip(1) {
            if let Some(&size) = upload.parts.get(&number) {
                if size < 5 * MIB {
                    report.add(
                        "s3.part-size",
                        format!(
                            "part {number} is {size} bytes: every part but the last needs 5 MiB"
                        ),
                    );
                }
            }
        }
        // Checksum types ("Checking object integrity", as above): the complete request uses the
        // type the upload was created with, and its full-object checksum is of the upload's
        // algorithm; a COMPOSITE upload lists each part's checksum (real S3: "The upload was
        // created using a sha256 checksum. The complete request must include the checksum for
        // each part", quoted in floci-io/floci#3093).
        let kind = ex
            .header("x-amz-checksum-type")
            .map(str::to_ascii_uppercase);
        if kind.is_some() && kind != upload.kind {
            report.add(
                "s3.checksum-type",
                format!("completed as {kind:?}, created as {:?}", upload.kind),
            );
        }
        let whole: Vec<&str> = CHECKSUMS
            .iter()
            .copied()
            .filter(|alg| ex.header(&format!("x-amz-checksum-{alg}")).is_some())
            .collect();
        for alg in &whole {
            if upload.algorithm.as_deref() != Some(&alg.to_ascii_uppercase()) {
                report.add(
                    "s3.checksum-type",
                    format!(
                        "the whole-object checksum is {alg}, the upload was created with {:?}",
                        upload.algorithm
                    ),
                );
            }
        }
        if let Some(algorithm) = &upload.algorithm {
            if upload.kind.as_deref() != Some("FULL_OBJECT") {
                let element = format!("Checksum{algorithm}");
                if parts
                    .iter()
                    .any(|part| xml_values(part, &element).is_empty())
                {
                    report.add(
                        "s3.checksum-type",
                        format!("a COMPOSITE {algorithm} upload lists every part's {element}"),
                    );
                }
            }
        }
    }
}

/// ListParts (https://docs.aws.amazon.com/AmazonS3/latest/API/API_ListParts.html): "This request
/// returns a maximum of 1,000 uploaded parts"; `max-parts` "Sets the maximum number of parts to
/// return", so 1 to 1,000 (S3-compatible stores that check it refuse anything else, e.g. Oracle's
/// "error is returned if value is not between 1 to 1000"); `part-number-marker` "Specifies the
/// part after which listing should begin", a part number (1 to 10,000, or 0 for the first page);
/// `uploadId` names the upload.
fn list_parts(ex: &Exchange, report: &mut Report) {
    if ex.query_param("uploadId").is_none_or(|id| id.is_empty()) {
        report.add("s3.list-parts", "ListParts without an uploadId");
    }
    for (name, low, high) in [("max-parts", 1, 1000), ("part-number-marker", 0, 10_000)] {
        if let Some(value) = ex.query_param(name) {
            if !value
                .parse::<u32>()
                .is_ok_and(|n| (low..=high).contains(&n))
            {
                report.add(
                    "s3.list-parts",
                    format!("{name} is {value:?} (a whole number from {low} to {high})"),
                );
            }
        }
    }
}

/// The algorithms named by checksum headers and trailers, lower case.
fn sent_checksums(ex: &Exchange) -> Vec<(String, String, &'static str)> {
    let mut sent = Vec::new();
    for alg in CHECKSUMS {
        let name = format!("x-amz-checksum-{alg}");
        if let Some(value) = ex.header(&name) {
            sent.push((alg.to_owned(), value.to_owned(), "header"));
        }
        if let Some(value) = ex.body.chunked.as_ref().and_then(|c| c.trailer(&name)) {
            sent.push((alg.to_owned(), value.to_owned(), "trailer"));
        }
    }
    sent
}

fn announced_trailers(ex: &Exchange) -> BTreeSet<String> {
    ex.headers_named("x-amz-trailer")
        .flat_map(|v| v.split(','))
        .map(|name| name.trim().to_ascii_lowercase())
        .filter(|name| !name.is_empty())
        .collect()
}

/// `x-amz-sdk-checksum-algorithm` needs the checksum it names, as a header or an announced
/// trailer. PutObject (https://docs.aws.amazon.com/AmazonS3/latest/API/API_PutObject.html):
/// "When you send this header, there must be a corresponding x-amz-checksum-algorithm or
/// x-amz-trailer header sent. Otherwise, Amazon S3 fails the request with the HTTP status code
/// 400 Bad Request." Seen on real S3: "x-amz-sdk-checksum-algorithm specified, but no
/// corresponding x-amz-checksum-* or x-amz-trailer headers were found" (apache/hadoop#6467), and
/// for a checksum of another algorithm "Value for x-amz-sdk-checksum-algorithm header is
/// invalid" (versity/versitygw#1598). S3 reads the header on PutObject and UploadPart only
/// (versity/versitygw#1417).
fn checksum_announced(ex: &Exchange, report: &mut Report) {
    if !matches!(ex.operation.as_str(), "PutObject" | "UploadPart") {
        return;
    }
    let Some(algorithm) = ex.header("x-amz-sdk-checksum-algorithm") else {
        return;
    };
    let wanted = format!("x-amz-checksum-{}", algorithm.to_ascii_lowercase());
    let in_header = ex.header(&wanted).is_some();
    let announced = announced_trailers(ex).contains(&wanted);
    if !in_header && !announced {
        report.add(
            "s3.checksum-announced",
            format!("x-amz-sdk-checksum-algorithm: {algorithm} without a {wanted} header or x-amz-trailer"),
        );
    }
}

/// One checksum per request: S3 answers several with 400 InvalidRequest "Expecting a single
/// x-amz-checksum- header. Multiple checksum Types are not allowed." (real S3's answer quoted in
/// versity/versitygw#1186 for PutObject and #1188 for UploadPart).
fn single_checksum(ex: &Exchange, report: &mut Report) {
    let algorithms: BTreeSet<String> = sent_checksums(ex).into_iter().map(|(a, ..)| a).collect();
    if algorithms.len() > 1 {
        report.add(
            "s3.single-checksum",
            format!("several checksum algorithms in one request: {algorithms:?}"),
        );
    }
}

/// A checksum S3 is given must be the body's: S3 answers a mismatch with 400 BadDigest
/// (https://docs.aws.amazon.com/AmazonS3/latest/userguide/checking-object-integrity.html).
/// What the rule finds is a stand-in taking a body its checksum does not describe (moto checks
/// none). A request the stand-in refused (4xx) was seen refused by its caller, as S3 would refuse
/// it: the suites' refusal tests send such bodies on purpose, and are not violations.
fn checksum_values(ex: &Exchange, report: &mut Report) {
    if !ex.body.complete || (400..500).contains(&ex.status) {
        return;
    }
    for (alg, value, place) in sent_checksums(ex) {
        let computed = match alg.as_str() {
            "crc32c" => Some(ex.body.crc32c.clone()),
            "crc32" => ex.body.crc32.clone(),
            "sha256" => ex.body.sha256.clone(),
            _ => None,
        };
        if let Some(computed) = computed.filter(|c| *c != value) {
            report.add(
                "s3.checksum-value",
                format!("the {alg} {place} says {value}, the body's is {computed}"),
            );
        }
    }
}

/// `x-amz-content-sha256` is required on every header-signed S3 request and must describe the
/// body as sent: the payload's SHA-256 in hex, `UNSIGNED-PAYLOAD`, or one of the streaming
/// values with an aws-chunked body ("Authenticating requests: Using the Authorization header",
/// https://docs.aws.amazon.com/AmazonS3/latest/API/sig-v4-header-based-auth.html; "Signature
/// calculations for the Authorization header: transferring payload in multiple chunks",
/// https://docs.aws.amazon.com/AmazonS3/latest/API/sigv4-streaming.html). A SHA-256 that does
/// not match is 400 XAmzContentSHA256Mismatch.
fn content_sha256(ex: &Exchange, report: &mut Report) {
    if ex.header("authorization").is_none() {
        return; // presigned (the value is UNSIGNED-PAYLOAD by definition) or an unsigned POST
    }
    let Some(value) = ex.header("x-amz-content-sha256") else {
        report.add(
            "s3.content-sha256",
            "a header-signed S3 request without x-amz-content-sha256",
        );
        return;
    };
    let chunked = ex.body.chunked.as_ref();
    let trailer = !announced_trailers(ex).is_empty();
    let problem = match value {
        "UNSIGNED-PAYLOAD" if chunked.is_some() => Some("UNSIGNED-PAYLOAD on an aws-chunked body"),
        "UNSIGNED-PAYLOAD" if trailer => Some("x-amz-trailer without a streaming -TRAILER payload"),
        "UNSIGNED-PAYLOAD" => None,
        "STREAMING-UNSIGNED-PAYLOAD-TRAILER" => match chunked {
            None => Some("a streaming value on a body that is not aws-chunked"),
            Some(_) if !trailer => Some("a -TRAILER payload without x-amz-trailer"),
            Some(c) if c.signed_chunks > 0 => Some("signed chunks in an unsigned streaming body"),
            Some(_) => None,
        },
        "STREAMING-AWS4-HMAC-SHA256-PAYLOAD" | "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER" => {
            let wants_trailer = value.ends_with("-TRAILER");
            match chunked {
                None => Some("a streaming value on a body that is not aws-chunked"),
                Some(_) if wants_trailer != trailer => {
                    Some("x-amz-trailer must be sent exactly with the -TRAILER payloads")
                }
                Some(c) if c.finished && c.signed_chunks != c.chunks + 1 => {
                    Some("a signed streaming body with chunks that carry no chunk-signature")
                }
                Some(c)
                    if wants_trailer
                        && c.finished
                        && c.trailer("x-amz-trailer-signature").is_none() =>
                {
                    Some("a signed trailer without x-amz-trailer-signature")
                }
                Some(_) => None,
            }
        }
        hex if hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()) => {
            if chunked.is_some() {
                Some("a payload hash on an aws-chunked body")
            } else if ex.body.complete
                && ex
                    .body
                    .sha256_hex
                    .as_deref()
                    .is_some_and(|h| !h.eq_ignore_ascii_case(hex))
            {
                Some("the payload hash is not the body's SHA-256 (XAmzContentSHA256Mismatch)")
            } else {
                None
            }
        }
        _ => Some("a value S3 does not know"),
    };
    if let Some(problem) = problem {
        report.add(
            "s3.content-sha256",
            format!("x-amz-content-sha256: {value}: {problem}"),
        );
    }
}

/// An aws-chunked body (https://docs.aws.amazon.com/AmazonS3/latest/API/sigv4-streaming.html,
/// and for trailers sigv4-streaming-trailers.html): `Content-Encoding` includes `aws-chunked`,
/// `x-amz-decoded-content-length` is the payload's length, `Content-Length` (when sent instead
/// of `Transfer-Encoding`) the encoded length, the framing ends with a zero-length chunk, and the
/// trailers that follow are exactly those `x-amz-trailer` announced.
fn aws_chunked(ex: &Exchange, report: &mut Report) {
    let Some(chunked) = &ex.body.chunked else {
        if !announced_trailers(ex).is_empty() {
            report.add(
                "s3.aws-chunked",
                "x-amz-trailer on a body that is not aws-chunked",
            );
        }
        return;
    };
    let encodings = ex
        .headers_named("content-encoding")
        .flat_map(|v| v.split(','))
        .map(|e| e.trim().to_ascii_lowercase())
        .collect::<Vec<_>>();
    if !encodings.iter().any(|e| e == "aws-chunked") {
        report.add(
            "s3.aws-chunked",
            "an aws-chunked body without aws-chunked in Content-Encoding",
        );
    }
    let content_length = ex.header("content-length");
    let transfer_encoding = ex.header("transfer-encoding");
    if content_length.is_some() == transfer_encoding.is_some() {
        report.add(
            "s3.aws-chunked",
            "exactly one of Content-Length and Transfer-Encoding goes with an aws-chunked body",
        );
    }
    if !ex.body.complete {
        return;
    }
    if let Some(error) = &chunked.error {
        report.add("s3.aws-chunked", format!("framing: {error}"));
        return;
    }
    match ex
        .header("x-amz-decoded-content-length")
        .map(str::parse::<u64>)
    {
        Some(Ok(length)) if length == ex.body.decoded_length => {}
        Some(Ok(length)) => report.add(
            "s3.aws-chunked",
            format!(
                "x-amz-decoded-content-length is {length}, the chunks carried {}",
                ex.body.decoded_length
            ),
        ),
        _ => report.add("s3.aws-chunked", "no valid x-amz-decoded-content-length"),
    }
    if let Some(Ok(length)) = content_length.map(str::parse::<u64>) {
        if length != ex.body.wire_length {
            report.add(
                "s3.aws-chunked",
                format!(
                    "Content-Length is {length}, the body was {}",
                    ex.body.wire_length
                ),
            );
        }
    }
    let sent: BTreeSet<String> = chunked
        .trailers
        .iter()
        .map(|(name, _)| name.clone())
        .filter(|name| name != "x-amz-trailer-signature")
        .collect();
    let announced = announced_trailers(ex);
    if sent != announced {
        report.add(
            "s3.aws-chunked",
            format!("trailers sent {sent:?}, announced in x-amz-trailer {announced:?}"),
        );
    }
}

/// S3 needs the length of object data up front: without Content-Length a PutObject or
/// UploadPart is 411 MissingContentLength ("Error responses",
/// https://docs.aws.amazon.com/AmazonS3/latest/API/ErrorResponses.html); an aws-chunked body
/// may use Transfer-Encoding instead, with x-amz-decoded-content-length.
fn content_length(ex: &Exchange, report: &mut Report) {
    let has_length = ex.header("content-length").is_some();
    let streamed = ex.body.chunked.is_some() && ex.header("x-amz-decoded-content-length").is_some();
    if !has_length && !streamed {
        report.add("s3.content-length", "object data without Content-Length");
    }
}

/// Conditional writes ("How to prevent object overwrites with conditional writes",
/// https://docs.aws.amazon.com/AmazonS3/latest/userguide/conditional-writes.html; PutObject's
/// reference: If-None-Match "Expects the '*' (asterisk) character"): If-None-Match is `*` and
/// If-Match an ETag, and only PutObject and CompleteMultipartUpload take them among the writes.
fn conditional_writes(ex: &Exchange, report: &mut Report) {
    if matches!(ex.method.as_str(), "GET" | "HEAD") {
        return;
    }
    let none_match = ex.header("if-none-match");
    let if_match = ex.header("if-match");
    if none_match.is_none() && if_match.is_none() {
        return;
    }
    match ex.operation.as_str() {
        "PutObject" | "CompleteMultipartUpload" => {
            if none_match.is_some_and(|v| v.trim() != "*") {
                report.add("s3.conditional-write", "If-None-Match on a write must be *");
            }
            if if_match.is_some_and(|v| !(v.trim().starts_with('"') && v.trim().ends_with('"'))) {
                report.add(
                    "s3.conditional-write",
                    "If-Match on a write must be a quoted ETag",
                );
            }
        }
        "DeleteObject" if none_match.is_none() => {}
        other => report.add(
            "s3.conditional-write",
            format!("{other} does not take conditional write headers"),
        ),
    }
}

/// Conditional deletes ("How to perform conditional deletes",
/// https://docs.aws.amazon.com/AmazonS3/latest/userguide/conditional-deletes.html): If-Match is
/// `*` (the object exists) or the one ETag the object must still have. DeleteObject's
/// `x-amz-if-match-last-modified-time` and `x-amz-if-match-size` are "only supported for
/// directory buckets" (DeleteObject's reference), which take virtual-hosted-style requests only:
/// a path-style request is to a general purpose bucket, whose delete is not conditional on them.
fn conditional_delete(ex: &Exchange, report: &mut Report) {
    if let Some(value) = ex.header("if-match").map(str::trim) {
        if value.is_empty() || (value != "*" && value.contains(',')) {
            report.add(
                "s3.conditional-delete",
                format!("If-Match {value:?} on a delete: * or one ETag"),
            );
        }
    }
    for name in ["x-amz-if-match-last-modified-time", "x-amz-if-match-size"] {
        if ex.header(name).is_some() {
            report.add(
                "s3.conditional-delete",
                format!("{name} on a general purpose bucket (directory buckets only)"),
            );
        }
    }
}

/// Object keys are at most 1024 bytes of UTF-8 ("Naming Amazon S3 objects",
/// https://docs.aws.amazon.com/AmazonS3/latest/userguide/object-keys.html); user-defined metadata
/// at most 2 KB, "the sum of the number of bytes in the UTF-8 encoding of each key and value"
/// ("Working with object metadata",
/// https://docs.aws.amazon.com/AmazonS3/latest/userguide/UsingMetadata.html).
fn key_and_metadata(ex: &Exchange, report: &mut Report) {
    let path = ex.path.trim_start_matches('/');
    if let Some((_, key)) = path.split_once('/') {
        let key = percent_encoding::percent_decode_str(key).collect::<Vec<u8>>();
        if key.len() > 1024 {
            report.add(
                "s3.key",
                format!("a key of {} bytes (at most 1024)", key.len()),
            );
        }
    }
    let metadata: usize = ex
        .headers
        .iter()
        .filter_map(|(name, value)| Some(name.strip_prefix("x-amz-meta-")?.len() + value.len()))
        .sum();
    if metadata > 2048 {
        report.add(
            "s3.metadata",
            format!("{metadata} bytes of user metadata (at most 2 KB)"),
        );
    }
}

/// Runs a JSON protocol's rules over the request document.
fn json_document(ex: &Exchange, report: &mut Report, rules: fn(&str, &Value, &mut Report)) {
    let Some(text) = ex.body.text.as_deref() else {
        return;
    };
    match serde_json::from_str::<Value>(text) {
        Ok(document) => rules(&ex.operation, &document, report),
        Err(err) => report.add("json", format!("the request is not JSON: {err}")),
    }
}

/// SQS ("Amazon SQS message quotas",
/// https://docs.aws.amazon.com/AWSSimpleQueueService/latest/SQSDeveloperGuide/quotas-messages.html,
/// and each action's API reference, e.g.
/// https://docs.aws.amazon.com/AWSSimpleQueueService/latest/APIReference/API_SendMessageBatch.html):
/// a message and a whole batch are at most 1 MiB (body and attributes), a batch holds 1 to 10
/// entries with distinct ids of at most 80 alphanumerics, `-` and `_`; bodies are XML characters
/// only; DelaySeconds 0 to 900 and never per message on a FIFO queue, where MessageGroupId is
/// required; a visibility timeout is 0 to 43,200 s; ReceiveMessage takes 1 to 10 messages and
/// waits 0 to 20 s.
fn sqs(operation: &str, doc: &Value, report: &mut Report) {
    let fifo = doc["QueueUrl"]
        .as_str()
        .is_some_and(|url| url.ends_with(".fifo"));
    match operation {
        "SendMessage" => {
            let size = sqs_message(doc, fifo, report);
            if size > MIB {
                report.add(
                    "sqs.message-size",
                    format!("a message of {size} bytes (at most 1 MiB)"),
                );
            }
        }
        "SendMessageBatch" => {
            let entries = sqs_entries(doc, report);
            let total: u64 = entries.iter().map(|e| sqs_message(e, fifo, report)).sum();
            if total > MIB {
                report.add(
                    "sqs.message-size",
                    format!("a batch of {total} bytes (at most 1 MiB)"),
                );
            }
        }
        "DeleteMessageBatch" => {
            sqs_entries(doc, report);
        }
        "ChangeMessageVisibilityBatch" => {
            for entry in sqs_entries(doc, report) {
                visibility(entry, report);
            }
        }
        "ChangeMessageVisibility" => visibility(doc, report),
        "ReceiveMessage" => {
            in_range(doc, "MaxNumberOfMessages", 1, 10, "sqs.receive", report);
            in_range(doc, "WaitTimeSeconds", 0, 20, "sqs.receive", report);
            in_range(
                doc,
                "VisibilityTimeout",
                0,
                43_200,
                "sqs.visibility",
                report,
            );
        }
        _ => {}
    }
}

fn sqs_entries<'a>(doc: &'a Value, report: &mut Report) -> Vec<&'a Value> {
    let entries: Vec<&Value> = doc["Entries"]
        .as_array()
        .map(|a| a.iter().collect())
        .unwrap_or_default();
    if !(1..=10).contains(&entries.len()) {
        report.add(
            "sqs.batch",
            format!("{} entries in a batch (1 to 10)", entries.len()),
        );
    }
    let mut ids = BTreeSet::new();
    for entry in &entries {
        let id = entry["Id"].as_str().unwrap_or_default();
        let valid = (1..=80).contains(&id.len())
            && id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !valid {
            report.add(
                "sqs.batch",
                format!("batch entry id {id:?} (1 to 80 of A-Z a-z 0-9 - _)"),
            );
        }
        if !ids.insert(id) {
            report.add("sqs.batch", format!("batch entry id {id:?} twice"));
        }
    }
    entries
}

/// Checks one message (a SendMessage request or a batch entry); returns its size.
fn sqs_message(message: &Value, fifo: bool, report: &mut Report) -> u64 {
    let body = message["MessageBody"].as_str().unwrap_or_default();
    if body.is_empty() {
        report.add("sqs.message", "an empty MessageBody");
    }
    if let Some(c) = body.chars().find(|&c| !is_xml_char(c)) {
        report.add(
            "sqs.message",
            format!("character U+{:04X} is not allowed in a message", c as u32),
        );
    }
    let mut size = body.len() as u64;
    if let Some(attributes) = message["MessageAttributes"].as_object() {
        for (name, value) in attributes {
            size += name.len() as u64;
            size += value["DataType"].as_str().map_or(0, str::len) as u64;
            size += value["StringValue"].as_str().map_or(0, str::len) as u64;
            size += value["BinaryValue"].as_str().map_or(0, |b| b.len() * 3 / 4) as u64;
        }
    }
    if message.get("DelaySeconds").is_some() {
        if fifo {
            report.add("sqs.delay", "DelaySeconds per message on a FIFO queue");
        }
        in_range(message, "DelaySeconds", 0, 900, "sqs.delay", report);
    }
    if fifo && message["MessageGroupId"].as_str().is_none_or(str::is_empty) {
        report.add(
            "sqs.fifo",
            "a message to a FIFO queue without MessageGroupId",
        );
    }
    for field in ["MessageGroupId", "MessageDeduplicationId"] {
        if let Some(value) = message[field].as_str() {
            let valid =
                (1..=128).contains(&value.len()) && value.bytes().all(|b| b.is_ascii_graphic());
            if !valid {
                report.add(
                    "sqs.fifo",
                    format!("{field} {value:?} (1 to 128 printable characters)"),
                );
            }
        }
    }
    size
}

fn visibility(doc: &Value, report: &mut Report) {
    if doc.get("VisibilityTimeout").is_none() {
        report.add(
            "sqs.visibility",
            "ChangeMessageVisibility without VisibilityTimeout",
        );
    }
    in_range(
        doc,
        "VisibilityTimeout",
        0,
        43_200,
        "sqs.visibility",
        report,
    );
}

fn in_range(
    doc: &Value,
    field: &str,
    low: i64,
    high: i64,
    rule: &'static str,
    report: &mut Report,
) {
    if let Some(value) = doc.get(field) {
        match value.as_i64() {
            Some(n) if (low..=high).contains(&n) => {}
            _ => report.add(rule, format!("{field} is {value} ({low} to {high})")),
        }
    }
}

/// The characters SQS and SNS allow: "#x9 | #xA | #xD | #x20 to #xD7FF | #xE000 to #xFFFD |
/// #x10000 to #x10FFFF" (SendMessage's reference).
fn is_xml_char(c: char) -> bool {
    matches!(c as u32, 0x9 | 0xA | 0xD | 0x20..=0xD7FF | 0xE000..=0xFFFD | 0x10000..=0x10FFFF)
}

/// AWS JSON 1.1, the protocol the SDK speaks to Secrets Manager (Smithy's
/// https://smithy.io/2.0/aws/protocols/aws-json-1_1-protocol.html, and the requests in the
/// examples of the API reference, e.g.
/// https://docs.aws.amazon.com/secretsmanager/latest/apireference/API_GetSecretValue.html): a
/// POST to `/` with `Content-Type: application/x-amz-json-1.1` and
/// `X-Amz-Target: PREFIX.OPERATION`, the prefix being the service's (`secretsmanager`).
fn json_protocol(ex: &Exchange, prefix: &str, report: &mut Report) {
    let target = ex.header("x-amz-target").unwrap_or_default();
    if target != format!("{prefix}.{}", ex.operation) {
        report.add(
            "json.protocol",
            format!("X-Amz-Target {target:?} (expected {prefix}.OPERATION)"),
        );
    }
    let content_type = ex.header("content-type").unwrap_or_default();
    if content_type != "application/x-amz-json-1.1" {
        report.add(
            "json.protocol",
            format!("Content-Type {content_type:?} (expected application/x-amz-json-1.1)"),
        );
    }
    if ex.method != "POST" || ex.path != "/" {
        report.add(
            "json.protocol",
            format!("{} {} (expected POST /)", ex.method, ex.path),
        );
    }
}

/// Secrets Manager's GetSecretValue (its API reference,
/// https://docs.aws.amazon.com/secretsmanager/latest/apireference/API_GetSecretValue.html):
/// SecretId is required, 1 to 2048 characters; VersionId 32 to 64 characters; VersionStage 1 to
/// 256 characters.
fn secretsmanager(operation: &str, doc: &Value, report: &mut Report) {
    if operation == "GetSecretValue" {
        if doc.get("SecretId").is_none() {
            report.add("secretsmanager.get", "GetSecretValue without SecretId");
        }
        for (field, low, high) in [
            ("SecretId", 1, 2048),
            ("VersionId", 32, 64),
            ("VersionStage", 1, 256),
        ] {
            if let Some(value) = doc.get(field) {
                let length = value.as_str().map(|text| text.chars().count());
                if !length.is_some_and(|n| (low..=high).contains(&n)) {
                    report.add(
                        "secretsmanager.get",
                        format!("{field} is {value} ({low} to {high} characters)"),
                    );
                }
            }
        }
    }
}

/// DynamoDB ("Quotas in Amazon DynamoDB",
/// https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/ServiceQuotas.html): an item
/// is at most 400 KB, an expression string at most 4 KB; BatchWriteItem takes at most 25 requests,
/// BatchGetItem 100 keys, a transaction 100 actions. Every placeholder an expression uses is
/// defined, and every one defined is used ("Using expression attribute values",
/// https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/Expressions.ExpressionAttributeValues.html;
/// real DynamoDB refuses the unused ones: "Value provided in ExpressionAttributeValues unused in
/// expressions", "Value provided in ExpressionAttributeNames unused in expressions").
fn dynamodb(operation: &str, doc: &Value, report: &mut Report) {
    match operation {
        "BatchWriteItem" => {
            let count: usize = doc["RequestItems"]
                .as_object()
                .map(|tables| {
                    tables
                        .values()
                        .filter_map(Value::as_array)
                        .map(Vec::len)
                        .sum()
                })
                .unwrap_or_default();
            if !(1..=25).contains(&count) {
                report.add(
                    "dynamodb.batch",
                    format!("{count} requests in BatchWriteItem (1 to 25)"),
                );
            }
            for request in doc["RequestItems"]
                .as_object()
                .into_iter()
                .flat_map(|t| t.values())
            {
                for put in request.as_array().into_iter().flatten() {
                    item_size(&put["PutRequest"]["Item"], report);
                }
            }
        }
        "BatchGetItem" => {
            let count: usize = doc["RequestItems"]
                .as_object()
                .map(|tables| {
                    tables
                        .values()
                        .filter_map(|t| t["Keys"].as_array())
                        .map(Vec::len)
                        .sum()
                })
                .unwrap_or_default();
            if !(1..=100).contains(&count) {
                report.add(
                    "dynamodb.batch",
                    format!("{count} keys in BatchGetItem (1 to 100)"),
                );
            }
        }
        "TransactWriteItems" | "TransactGetItems" => {
            let actions = doc["TransactItems"]
                .as_array()
                .map(Vec::as_slice)
                .unwrap_or_default();
            if !(1..=100).contains(&actions.len()) {
                report.add(
                    "dynamodb.batch",
                    format!("{} actions in a transaction (1 to 100)", actions.len()),
                );
            }
            for action in actions {
                for (_, inner) in action.as_object().into_iter().flatten() {
                    expressions(inner, report);
                    item_size(&inner["Item"], report);
                    return_values(None, inner, report);
                    sets(inner, report);
                }
            }
        }
        _ => {
            expressions(doc, report);
            item_size(&doc["Item"], report);
            return_values(Some(operation), doc, report);
            sets(doc, report);
            if matches!(operation, "GetItem" | "UpdateItem" | "DeleteItem")
                && doc["Key"].as_object().is_none_or(|key| key.is_empty())
            {
                report.add("dynamodb.key", format!("{operation} without a Key"));
            }
        }
    }
}

/// What a write may ask back. ReturnValues: UpdateItem takes NONE, ALL_OLD, UPDATED_OLD, ALL_NEW
/// and UPDATED_NEW; PutItem and DeleteItem only NONE and ALL_OLD (each action's reference,
/// https://docs.aws.amazon.com/amazondynamodb/latest/APIReference/API_UpdateItem.html,
/// API_PutItem.html: "PutItem does not recognize any values other than NONE or ALL_OLD",
/// API_DeleteItem.html). ReturnValuesOnConditionCheckFailure: NONE or ALL_OLD, on the single
/// writes and a transaction's actions alike (API_ConditionCheck.html: "the valid values are: NONE
/// and ALL_OLD"). `operation` is None for a transaction's action, which takes no ReturnValues.
fn return_values(operation: Option<&str>, doc: &Value, report: &mut Report) {
    if let Some(value) = doc.get("ReturnValues") {
        let allowed: &[&str] = match operation {
            Some("UpdateItem") => &["NONE", "ALL_OLD", "UPDATED_OLD", "ALL_NEW", "UPDATED_NEW"],
            Some("PutItem" | "DeleteItem") => &["NONE", "ALL_OLD"],
            _ => &[],
        };
        if !value.as_str().is_some_and(|v| allowed.contains(&v)) {
            report.add(
                "dynamodb.return-values",
                format!(
                    "ReturnValues {value} on {} (allowed: {allowed:?})",
                    operation.unwrap_or("a transaction's action")
                ),
            );
        }
    }
    if let Some(value) = doc.get("ReturnValuesOnConditionCheckFailure") {
        if !value
            .as_str()
            .is_some_and(|v| ["NONE", "ALL_OLD"].contains(&v))
        {
            report.add(
                "dynamodb.return-values",
                format!("ReturnValuesOnConditionCheckFailure {value} (NONE or ALL_OLD)"),
            );
        }
    }
}

/// Sets ("Supported data types and naming rules",
/// https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/HowItWorks.NamingRulesDataTypes.html):
/// "Each value within a set must be unique" and "DynamoDB does not support empty sets", in an
/// item, a key and the values an expression uses (an `ADD done :part` of a number set alike).
fn sets(doc: &Value, report: &mut Report) {
    for field in ["Item", "Key", "ExpressionAttributeValues"] {
        for (name, value) in doc[field].as_object().into_iter().flatten() {
            set_values(name, value, report);
        }
    }
}

fn set_values(name: &str, value: &Value, report: &mut Report) {
    let Some((kind, inner)) = value.as_object().and_then(|m| m.iter().next()) else {
        return;
    };
    match (kind.as_str(), inner) {
        ("SS" | "NS" | "BS", Value::Array(items)) => {
            if items.is_empty() {
                report.add("dynamodb.set", format!("{name} is an empty {kind}"));
            }
            let mut seen = BTreeSet::new();
            for text in items.iter().filter_map(Value::as_str) {
                if !seen.insert(text) {
                    report.add("dynamodb.set", format!("{name} holds {text:?} twice"));
                }
            }
        }
        ("L", Value::Array(items)) => {
            for item in items {
                set_values(name, item, report);
            }
        }
        ("M", Value::Object(map)) => {
            for (inner_name, item) in map {
                set_values(&format!("{name}.{inner_name}"), item, report);
            }
        }
        _ => {}
    }
}

fn expressions(doc: &Value, report: &mut Report) {
    let fields = [
        "ConditionExpression",
        "UpdateExpression",
        "KeyConditionExpression",
        "FilterExpression",
        "ProjectionExpression",
    ];
    let mut text = String::new();
    for field in fields {
        if let Some(expression) = doc[field].as_str() {
            if expression.len() > 4096 {
                report.add(
                    "dynamodb.expression",
                    format!("{field} is {} bytes (at most 4 KB)", expression.len()),
                );
            }
            text.push_str(expression);
            text.push(' ');
        }
    }
    for (field, sigil) in [
        ("ExpressionAttributeValues", ':'),
        ("ExpressionAttributeNames", '#'),
    ] {
        let defined: BTreeSet<&str> = doc[field]
            .as_object()
            .map(|m| m.keys().map(String::as_str).collect())
            .unwrap_or_default();
        let used = placeholders(&text, sigil);
        for name in used.iter().filter(|u| !defined.contains(u.as_str())) {
            report.add(
                "dynamodb.expression",
                format!("{name} is used but not in {field}"),
            );
        }
        for name in defined.iter().filter(|d| !used.contains(**d)) {
            report.add(
                "dynamodb.expression",
                format!("{name} is in {field} but unused in expressions"),
            );
        }
    }
}

fn placeholders(text: &str, sigil: char) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    let mut chars = text.char_indices().peekable();
    while let Some((start, c)) = chars.next() {
        if c != sigil {
            continue;
        }
        let mut end = start + c.len_utf8();
        while let Some(&(i, next)) = chars.peek() {
            if next.is_alphanumeric() || next == '_' {
                end = i + next.len_utf8();
                chars.next();
            } else {
                break;
            }
        }
        if end > start + 1 {
            found.insert(text[start..end].to_owned());
        }
    }
    found
}

/// An item's size as DynamoDB counts it ("Item sizes and formats",
/// https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/CapacityUnitCalculations.html):
/// attribute names and values in UTF-8 bytes; numbers about one byte per two digits plus one;
/// lists and maps 3 bytes plus one per element.
fn item_size(item: &Value, report: &mut Report) {
    let Some(attributes) = item.as_object() else {
        return;
    };
    let size: usize = attributes
        .iter()
        .map(|(n, v)| n.len() + value_size(v))
        .sum();
    if size > 400 * 1024 {
        report.add(
            "dynamodb.item-size",
            format!("an item of about {size} bytes (at most 400 KB)"),
        );
    }
}

fn value_size(value: &Value) -> usize {
    let Some((kind, inner)) = value.as_object().and_then(|m| m.iter().next()) else {
        return 0;
    };
    match (kind.as_str(), inner) {
        ("S", Value::String(s)) => s.len(),
        ("N", Value::String(n)) => n.len().div_ceil(2) + 1,
        ("B", Value::String(b)) => b.len() * 3 / 4,
        ("BOOL" | "NULL", _) => 1,
        ("SS" | "NS" | "BS", Value::Array(items)) => {
            items.iter().map(|s| s.as_str().map_or(0, str::len)).sum()
        }
        ("L", Value::Array(items)) => 3 + items.iter().map(|v| 1 + value_size(v)).sum::<usize>(),
        ("M", Value::Object(map)) => {
            3 + map
                .iter()
                .map(|(n, v)| 1 + n.len() + value_size(v))
                .sum::<usize>()
        }
        _ => 0,
    }
}

/// SNS (Publish, https://docs.aws.amazon.com/sns/latest/api/API_Publish.html; PublishBatch,
/// https://docs.aws.amazon.com/sns/latest/api/API_PublishBatch.html): a message is at most
/// 256 KiB with its attributes, a batch 1 to 10 entries and 256 KiB in all; a subject at most 100
/// printable ASCII characters; at most 10 message attributes.
/// The Smithy service shape each RPC v2 CBOR service is addressed by, per signing name: the path
/// names the shape without its namespace (CloudWatch's model: `GraniteServiceVersion20100801`).
const RPC_V2_SERVICES: [(&str, &str); 1] = [("monitoring", "GraniteServiceVersion20100801")];

/// The Smithy RPC v2 CBOR protocol, which the SDK speaks to CloudWatch (its "Requests" section,
/// https://smithy.io/2.0/additional-specs/protocols/smithy-rpc-v2.html): "Every request for the
/// rpcv2Cbor protocol MUST contain a Smithy-Protocol header with the value of rpc-v2-cbor", "MUST
/// be sent using the HTTP POST method", to `{prefix?}/service/{serviceName}/operation/
/// {operationName}` where serviceName is the service shape's name without its namespace; a
/// buffered request's `Content-Type` "MUST be application/cbor" (and an operation without input
/// sends no body); "For requests with all other response types [than event streams]: the value of
/// the Accept header MUST be application/cbor"; and requests "MUST NOT contain an X-Amz-Target or
/// X-Amzn-Target header ... Server-side implementations MUST reject such requests". The body is
/// one CBOR data item, a map (an input structure is "Major type 5").
fn rpc_v2_cbor(ex: &Exchange, report: &mut Report) -> Option<Cbor> {
    let protocol = ex.header("smithy-protocol").unwrap_or_default();
    if protocol != "rpc-v2-cbor" {
        report.add(
            "rpcv2.protocol",
            format!("Smithy-Protocol {protocol:?} (expected rpc-v2-cbor)"),
        );
    }
    let expected = RPC_V2_SERVICES
        .iter()
        .find(|(signing, _)| *signing == ex.service)
        .map(|(_, shape)| *shape);
    match super::classify::rpc_v2_path(&ex.path) {
        Some((service, _)) if ex.method == "POST" && expected.is_none_or(|e| e == service) => {}
        _ => report.add(
            "rpcv2.protocol",
            format!(
                "{} {} (expected POST /service/{}/operation/OPERATION)",
                ex.method,
                ex.path,
                expected.unwrap_or("SERVICE")
            ),
        ),
    }
    let has_body = ex.body.wire_length > 0;
    let content_type = ex.header("content-type");
    if (has_body || content_type.is_some()) && content_type != Some("application/cbor") {
        report.add(
            "rpcv2.protocol",
            format!("Content-Type {content_type:?} (expected application/cbor with a body)"),
        );
    }
    let accept = ex.header("accept");
    if accept != Some("application/cbor") {
        report.add(
            "rpcv2.protocol",
            format!("Accept {accept:?} (expected application/cbor)"),
        );
    }
    for name in ["x-amz-target", "x-amzn-target"] {
        if ex.header(name).is_some() {
            report.add(
                "rpcv2.protocol",
                format!("{name} on an RPC v2 CBOR request (AWS rejects it)"),
            );
        }
    }
    // Only PutMetricData is compressed (its `requestCompression` trait): its gzip body is not read.
    let compressed = ex
        .header("content-encoding")
        .is_some_and(|e| e.contains("gzip"));
    if !ex.body.complete || compressed {
        return None;
    }
    let bytes = match ex.body.binary.as_deref().map(|b| {
        base64::engine::general_purpose::STANDARD
            .decode(b)
            .map_err(|err| err.to_string())
    }) {
        Some(Ok(bytes)) => bytes,
        Some(Err(err)) => {
            report.add(
                "rpcv2.body",
                format!("the recorded body is not base64: {err}"),
            );
            return None;
        }
        None if has_body => return None,
        None => Vec::new(),
    };
    if bytes.is_empty() {
        return None;
    }
    match cbor::decode(&bytes) {
        Ok(document @ Cbor::Map(_)) => Some(document),
        Ok(other) => {
            report.add(
                "rpcv2.body",
                format!(
                    "the body is {}, not a map (an input structure)",
                    other.kind()
                ),
            );
            None
        }
        Err(err) => {
            report.add("rpcv2.body", format!("the body is not CBOR: {err}"));
            None
        }
    }
}

fn cloudwatch(ex: &Exchange, report: &mut Report) {
    let Some(document) = rpc_v2_cbor(ex, report) else {
        if ex.operation == "GetMetricData" && ex.body.complete && ex.body.wire_length == 0 {
            report.add(
                "cloudwatch.get-metric-data",
                "GetMetricData without a body (MetricDataQueries, StartTime and EndTime are required)",
            );
        }
        return;
    };
    if ex.operation == "GetMetricData" {
        get_metric_data(ex, &document, report);
    }
}

/// The limits of GetMetricData's input, from the CloudWatch API reference
/// (https://docs.aws.amazon.com/AmazonCloudWatch/latest/APIReference/API_GetMetricData.html and
/// the structures it names, MetricDataQuery, MetricStat, Metric and Dimension; the same
/// constraints are in the service model the SDKs are generated from):
/// - MetricDataQueries, StartTime and EndTime are required. "A single GetMetricData call can
///   include as many as 500 MetricDataQuery structures."
/// - Id: "This name must be unique within a single call to GetMetricData ... The valid characters
///   are letters, numbers, and underscore. The first character must be a lowercase letter."
///   1 to 255 characters.
/// - MetricStat and Expression: "Within one MetricDataQuery object, you must specify either
///   Expression or MetricStat but not both." Expression is 1 to 2048 characters. "If you include
///   a Metrics Insights query, each GetMetricData operation can include only one query."
/// - MetricStat's Metric, Period and Stat are required. Metric: Namespace 1 to 255 characters,
///   pattern `[^:].*`; MetricName 1 to 255 ("This is a required field"); Dimensions "Maximum
///   number of 30 items", each with a Name (1 to 255) and a Value (1 to 1024) that "must contain
///   only ASCII characters and must include at least one non-whitespace character. ASCII control
///   characters are not supported" (and a name "cannot start with a colon").
/// - Period: "Valid Range: Minimum value of 1"; "For metrics with regular resolution, a period
///   can be as short as one minute (60 seconds) and must be a multiple of 60. For high-resolution
///   metrics ... the period can be 1, 5, 10, 20, 30, 60, or any multiple of 60." And: "If the
///   StartTime parameter specifies a time stamp that is greater than 3 hours ago, you must
///   specify the period as follows or no data points in that time range is returned: Start time
///   between 3 hours and 15 days ago - Use a multiple of 60 seconds (1 minute). Start time between
///   15 and 63 days ago - Use a multiple of 300 seconds (5 minutes). Start time greater than 63
///   days ago - Use a multiple of 3600 seconds (1 hour)." A request's time is its `x-amz-date`.
/// - StartTime "is inclusive", EndTime "is exclusive": the window is not empty. Real CloudWatch
///   answers an equal pair with 400 "ValidationError: The parameter StartTime must not equal
///   parameter EndTime." (elastic/beats#32687) and refuses a start after the end
///   (getmoto/moto#6380). Timestamps are CBOR tag 1 around epoch seconds (the protocol's
///   "Timestamp type serialization").
/// - MaxDatapoints: "The maximum number of data points the request should return before
///   paginating" (a count: at least 1). ScanBy: `TimestampDescending` or `TimestampAscending`.
///   StandardUnit is one of the enumerated units.
fn get_metric_data(ex: &Exchange, doc: &Cbor, report: &mut Report) {
    let rule = "cloudwatch.get-metric-data";
    let queries = match doc.get("MetricDataQueries") {
        Some(Cbor::Array(queries)) => queries.as_slice(),
        Some(other) => {
            report.add(
                rule,
                format!("MetricDataQueries is {}, not a list", other.kind()),
            );
            &[]
        }
        None => {
            report.add(rule, "no MetricDataQueries (required)");
            &[]
        }
    };
    if !(1..=500).contains(&queries.len()) {
        report.add(
            rule,
            format!("{} MetricDataQuery structures (1 to 500)", queries.len()),
        );
    }
    let mut times = [None, None];
    for (slot, field) in times.iter_mut().zip(["StartTime", "EndTime"]) {
        match doc.get(field) {
            None => report.add("cloudwatch.time-range", format!("no {field} (required)")),
            Some(value) => match value.as_timestamp() {
                Some(seconds) => *slot = Some(seconds),
                None => report.add(
                    "cloudwatch.time-range",
                    format!(
                        "{field} is {}, not a timestamp (tag 1, epoch seconds)",
                        value.kind()
                    ),
                ),
            },
        }
    }
    let [start, end] = times;
    if let (Some(start), Some(end)) = (start, end) {
        if start >= end {
            report.add(
                "cloudwatch.time-range",
                format!("StartTime {start} is not before EndTime {end}"),
            );
        }
    }
    if let Some(value) = doc.get("MaxDatapoints") {
        if value.as_integer().is_none_or(|n| n < 1) {
            report.add(
                rule,
                format!("MaxDatapoints is {value:?} (a whole number, at least 1)"),
            );
        }
    }
    if let Some(value) = doc.get("ScanBy") {
        if !matches!(
            value.as_str(),
            Some("TimestampDescending" | "TimestampAscending")
        ) {
            report.add(
                rule,
                format!("ScanBy is {value:?} (TimestampDescending or TimestampAscending)"),
            );
        }
    }
    // How long before the request its window starts, for the period each age of data takes.
    let age = start.zip(ex.header("x-amz-date").and_then(amz_date_seconds));
    let age = age.map(|(start, now)| now as f64 - start);
    let mut ids = BTreeSet::new();
    let mut insights = 0;
    for query in queries {
        if !matches!(query, Cbor::Map(_)) {
            report.add(
                "cloudwatch.metric-query",
                format!("a MetricDataQuery is {}, not a structure", query.kind()),
            );
            continue;
        }
        let id = metric_id(query, report);
        if let Some(id) = id {
            if !ids.insert(id) {
                report.add(
                    "cloudwatch.metric-id",
                    format!("Id {id:?} twice in one call"),
                );
            }
        }
        let named = id.map_or_else(|| "a query".to_owned(), |id| format!("query {id:?}"));
        match (query.get("MetricStat"), query.get("Expression")) {
            (Some(stat), None) => metric_stat(stat, &named, age, report),
            (None, Some(expression)) => {
                let length = expression.as_str().map(|e| e.chars().count());
                if !length.is_some_and(|n| (1..=2048).contains(&n)) {
                    report.add(
                        "cloudwatch.metric-query",
                        format!("{named}'s Expression is not 1 to 2048 characters"),
                    );
                }
                let select = expression
                    .as_str()
                    .is_some_and(|e| e.trim_start().to_ascii_uppercase().starts_with("SELECT"));
                insights += usize::from(select);
            }
            (Some(_), Some(_)) => report.add(
                "cloudwatch.metric-query",
                format!("{named} has both MetricStat and Expression"),
            ),
            (None, None) => report.add(
                "cloudwatch.metric-query",
                format!("{named} has neither MetricStat nor Expression"),
            ),
        }
        if let Some(value) = query.get("ReturnData") {
            if value.as_bool().is_none() {
                report.add(
                    "cloudwatch.metric-query",
                    format!("{named}'s ReturnData is {}, not a boolean", value.kind()),
                );
            }
        }
        if let Some(period) = query.get("Period") {
            period_rule(period, &named, age, report);
        }
        if let Some(account) = query.get("AccountId") {
            if !account
                .as_str()
                .is_some_and(|a| (1..=255).contains(&a.len()))
            {
                report.add(
                    "cloudwatch.metric-query",
                    format!("{named}'s AccountId is not 1 to 255 characters"),
                );
            }
        }
    }
    if insights > 1 {
        report.add(
            "cloudwatch.metric-query",
            format!("{insights} Metrics Insights queries in one call (at most 1)"),
        );
    }
}

/// A query's Id, checked (`None` when it has no usable one).
fn metric_id<'a>(query: &'a Cbor, report: &mut Report) -> Option<&'a str> {
    let Some(id) = query.get("Id").and_then(Cbor::as_str) else {
        report.add("cloudwatch.metric-id", "a MetricDataQuery without an Id");
        return None;
    };
    let mut chars = id.chars();
    let valid = (1..=255).contains(&id.chars().count())
        && chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !valid {
        report.add(
            "cloudwatch.metric-id",
            format!("Id {id:?} (1 to 255 letters, digits or _, starting with a lowercase letter)"),
        );
    }
    Some(id)
}

fn metric_stat(stat: &Cbor, named: &str, age: Option<f64>, report: &mut Report) {
    let rule = "cloudwatch.metric-stat";
    let Some(metric) = stat.get("Metric") else {
        report.add(rule, format!("{named}'s MetricStat has no Metric"));
        return;
    };
    let text = |field: &str| metric.get(field).and_then(Cbor::as_str);
    match text("Namespace") {
        Some(ns) if (1..=255).contains(&ns.chars().count()) && !ns.starts_with(':') => {}
        other => report.add(
            rule,
            format!(
                "{named}'s Namespace is {other:?} (1 to 255 characters, not starting with ':')"
            ),
        ),
    }
    match text("MetricName") {
        Some(name) if (1..=255).contains(&name.chars().count()) => {}
        other => report.add(
            rule,
            format!("{named}'s MetricName is {other:?} (1 to 255 characters)"),
        ),
    }
    if let Some(dimensions) = metric.get("Dimensions") {
        let dimensions = dimensions.as_array().unwrap_or_default();
        if dimensions.len() > 30 {
            report.add(
                rule,
                format!("{named} has {} dimensions (at most 30)", dimensions.len()),
            );
        }
        for dimension in dimensions {
            let name = dimension.get("Name").and_then(Cbor::as_str);
            let value = dimension.get("Value").and_then(Cbor::as_str);
            let valid = |text: &str, max: usize| {
                (1..=max).contains(&text.len())
                    && text.bytes().all(|b| b.is_ascii() && !b.is_ascii_control())
                    && text.bytes().any(|b| !b.is_ascii_whitespace())
            };
            if !name.is_some_and(|n| valid(n, 255) && !n.starts_with(':')) {
                report.add(
                    rule,
                    format!("{named}'s dimension name {name:?} (1 to 255 printable ASCII, not all spaces, not starting with ':')"),
                );
            }
            if !value.is_some_and(|v| valid(v, 1024)) {
                report.add(
                    rule,
                    format!("{named}'s dimension {name:?} has value {value:?} (1 to 1024 printable ASCII, not all spaces)"),
                );
            }
        }
    }
    match stat.get("Stat").and_then(Cbor::as_str) {
        Some(s) if !s.is_empty() => {}
        _ => report.add(rule, format!("{named}'s MetricStat has no Stat")),
    }
    if let Some(unit) = stat.get("Unit") {
        if !unit.as_str().is_some_and(|u| STANDARD_UNITS.contains(&u)) {
            report.add(
                rule,
                format!("{named}'s Unit {unit:?} is not a StandardUnit"),
            );
        }
    }
    match stat.get("Period") {
        Some(period) => period_rule(period, named, age, report),
        None => report.add(rule, format!("{named}'s MetricStat has no Period")),
    }
}

const STANDARD_UNITS: [&str; 27] = [
    "Seconds",
    "Microseconds",
    "Milliseconds",
    "Bytes",
    "Kilobytes",
    "Megabytes",
    "Gigabytes",
    "Terabytes",
    "Bits",
    "Kilobits",
    "Megabits",
    "Gigabits",
    "Terabits",
    "Percent",
    "Count",
    "Bytes/Second",
    "Kilobytes/Second",
    "Megabytes/Second",
    "Gigabytes/Second",
    "Terabytes/Second",
    "Bits/Second",
    "Kilobits/Second",
    "Megabits/Second",
    "Gigabits/Second",
    "Terabits/Second",
    "Count/Second",
    "None",
];

/// A period (see [`get_metric_data`]): 1, 5, 10, 20, 30 or a multiple of 60; past 3 hours, 15 days
/// and 63 days of age, a multiple of 60, 300 and 3600.
fn period_rule(period: &Cbor, named: &str, age: Option<f64>, report: &mut Report) {
    let Some(seconds) = period.as_integer() else {
        report.add(
            "cloudwatch.period",
            format!("{named}'s Period is {}, not an integer", period.kind()),
        );
        return;
    };
    if seconds < 1 || !(matches!(seconds, 1 | 5 | 10 | 20 | 30) || seconds % 60 == 0) {
        report.add(
            "cloudwatch.period",
            format!("{named}'s Period is {seconds} (1, 5, 10, 20, 30 or a multiple of 60)"),
        );
        return;
    }
    const HOUR: f64 = 3600.0;
    const DAY: f64 = 86_400.0;
    let step = match age {
        Some(age) if age > 63.0 * DAY => 3600,
        Some(age) if age > 15.0 * DAY => 300,
        Some(age) if age > 3.0 * HOUR => 60,
        _ => 1,
    };
    if seconds % step != 0 {
        report.add(
            "cloudwatch.period-age",
            format!(
                "{named}'s Period is {seconds}: a window starting {:.0} s before the request needs a multiple of {step} (or no data points are returned)",
                age.unwrap_or_default()
            ),
        );
    }
}

/// `x-amz-date` (`20261205T193347Z`) in epoch seconds.
fn amz_date_seconds(date: &str) -> Option<i64> {
    let digits = |range: std::ops::Range<usize>| date.get(range)?.parse::<i64>().ok();
    if date.len() != 16 || date.as_bytes()[8] != b'T' || !date.ends_with('Z') {
        return None;
    }
    let (year, month, day) = (digits(0..4)?, digits(4..6)?, digits(6..8)?);
    let (hour, minute, second) = (digits(9..11)?, digits(11..13)?, digits(13..15)?);
    // Days from 1970-01-01 to the date (Howard Hinnant's days_from_civil).
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (month + if month > 2 { -3 } else { 9 }) + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(days * 86_400 + hour * 3600 + minute * 60 + second)
}

/// CreateInvalidation (CloudFront API reference, CreateInvalidation and InvalidationBatch;
/// "Invalidating files", quotas): an `InvalidationBatch` with a `CallerReference` and `Paths`
/// whose `Quantity` is the number of `Path` items; at most 3,000 paths may be in progress for a
/// distribution, so no one batch may hold more; each path starts with `/` and has `*` only as
/// its last character; at most 4,000 characters.
fn create_invalidation(ex: &Exchange, report: &mut Report) {
    let Some(xml) = ex.body.text.as_deref() else {
        report.add("cloudfront.invalidation", "no InvalidationBatch document");
        return;
    };
    if xml_values(xml, "CallerReference")
        .first()
        .is_none_or(|reference| reference.is_empty())
    {
        report.add("cloudfront.invalidation", "no CallerReference");
    }
    let paths = xml_values(xml, "Path");
    let quantity = xml_values(xml, "Quantity")
        .first()
        .and_then(|q| q.parse::<usize>().ok());
    if quantity != Some(paths.len()) {
        report.add(
            "cloudfront.invalidation",
            format!("Quantity {quantity:?} for {} Path items", paths.len()),
        );
    }
    if paths.is_empty() || paths.len() > 3_000 {
        report.add(
            "cloudfront.invalidation",
            format!("{} paths (1 to 3,000)", paths.len()),
        );
    }
    for path in &paths {
        let star = path.find('*');
        if !path.starts_with('/')
            || path.len() > 4_000
            || star.is_some_and(|at| at != path.len() - 1)
        {
            report.add(
                "cloudfront.invalidation",
                format!("path {path:?}: starts with '/', '*' only at its end, 4,000 characters"),
            );
        }
    }
}

fn sns(ex: &Exchange, report: &mut Report) {
    let Some(text) = ex.body.text.as_deref() else {
        return;
    };
    let form: Vec<(String, String)> = text
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (super::percent_decode(k), super::percent_decode(v))
        })
        .collect();
    let field = |name: &str| {
        form.iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    let check_one = |prefix: &str, report: &mut Report| -> usize {
        let message = field(&format!("{prefix}Message")).unwrap_or_default();
        if message.is_empty() {
            report.add("sns.message", "an empty Message");
        }
        if let Some(subject) = field(&format!("{prefix}Subject")) {
            if subject.is_empty()
                || subject.len() > 100
                || !subject.bytes().all(|b| (0x20..0x7f).contains(&b))
            {
                report.add(
                    "sns.message",
                    format!("Subject {subject:?} (1 to 100 printable ASCII)"),
                );
            }
        }
        let attributes: BTreeSet<&str> = form
            .iter()
            .filter_map(|(k, _)| {
                k.strip_prefix(&format!("{prefix}MessageAttributes.entry."))?
                    .split('.')
                    .next()
            })
            .collect();
        if attributes.len() > 10 {
            report.add(
                "sns.message",
                format!("{} message attributes (at most 10)", attributes.len()),
            );
        }
        let attribute_bytes: usize = form
            .iter()
            .filter(|(k, _)| k.starts_with(&format!("{prefix}MessageAttributes.")))
            .map(|(_, v)| v.len())
            .sum();
        message.len() + attribute_bytes
    };
    match ex.operation.as_str() {
        "Publish" => {
            let size = check_one("", report);
            if size > 256 * 1024 {
                report.add(
                    "sns.message-size",
                    format!("a message of {size} bytes (at most 256 KiB)"),
                );
            }
        }
        "PublishBatch" => {
            let entries: BTreeSet<&str> = form
                .iter()
                .filter_map(|(k, _)| {
                    k.strip_prefix("PublishBatchRequestEntries.member.")?
                        .split('.')
                        .next()
                })
                .collect();
            if !(1..=10).contains(&entries.len()) {
                report.add(
                    "sns.batch",
                    format!("{} entries in PublishBatch (1 to 10)", entries.len()),
                );
            }
            let total: usize = entries
                .iter()
                .map(|n| check_one(&format!("PublishBatchRequestEntries.member.{n}."), report))
                .sum();
            if total > 256 * 1024 {
                report.add(
                    "sns.message-size",
                    format!("a batch of {total} bytes (at most 256 KiB)"),
                );
            }
        }
        _ => {}
    }
}

/// The text inside each `<name>...</name>` (no nesting of the same name; enough for S3's
/// answers and CompleteMultipartUpload's document).
fn xml_elements(xml: &str, name: &str) -> Vec<String> {
    let (open, close) = (format!("<{name}>"), format!("</{name}>"));
    let mut found = Vec::new();
    let mut rest = xml;
    while let Some(start) = rest.find(&open) {
        let after = &rest[start + open.len()..];
        let Some(end) = after.find(&close) else { break };
        found.push(after[..end].to_owned());
        rest = &after[end + close.len()..];
    }
    found
}

fn xml_values(xml: &str, name: &str) -> Vec<String> {
    xml_elements(xml, name)
        .into_iter()
        .map(|v| v.trim().to_owned())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::body::{b64, Chunked};
    use crate::wire::BodySummary;

    fn headers(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect()
    }

    fn crc(bytes: &[u8]) -> String {
        b64(&crc32c::crc32c(bytes).to_be_bytes())
    }

    /// A streamed PutObject as the SDK sends it over HTTPS, which S3 accepts.
    fn streamed_put() -> Exchange {
        Exchange {
            service: "s3".into(),
            operation: "PutObject".into(),
            scheme: "https".into(),
            method: "PUT".into(),
            path: "/overseas-origin/videos/a.mp4".into(),
            headers: headers(&[
                ("authorization", "AWS4-HMAC-SHA256 Credential=k/20261204/us-east-1/s3/aws4_request, SignedHeaders=host, Signature=…"),
                ("x-amz-content-sha256", "STREAMING-UNSIGNED-PAYLOAD-TRAILER"),
                ("content-encoding", "aws-chunked"),
                ("x-amz-decoded-content-length", "11"),
                ("content-length", "70"),
                ("x-amz-trailer", "x-amz-checksum-crc32c"),
                ("x-amz-sdk-checksum-algorithm", "CRC32C"),
                ("if-none-match", "*"),
            ]),
            body: BodySummary {
                wire_length: 70,
                complete: true,
                decoded_length: 11,
                crc32c: crc(b"hello world"),
                chunked: Some(Chunked {
                    chunks: 1,
                    signed_chunks: 0,
                    finished: true,
                    trailers: vec![("x-amz-checksum-crc32c".into(), crc(b"hello world"))],
                    error: None,
                }),
                ..BodySummary::default()
            },
            status: 200,
            ..Exchange::default()
        }
    }

    fn set(exchange: &mut Exchange, name: &str, value: &str) {
        exchange.headers.retain(|(n, _)| n != name);
        exchange.headers.push((name.into(), value.into()));
    }

    fn remove(exchange: &mut Exchange, name: &str) {
        exchange.headers.retain(|(n, _)| n != name);
    }

    fn rules_broken(exchange: &Exchange) -> Vec<&'static str> {
        Checker::default()
            .check(exchange)
            .into_iter()
            .map(|v| v.rule)
            .collect()
    }

    fn assert_caught(exchange: &Exchange, rule: &str) {
        let broken = rules_broken(exchange);
        assert!(
            broken.contains(&rule),
            "{rule} not caught; found {broken:?}"
        );
    }

    #[test]
    fn a_valid_streamed_put_breaks_nothing() {
        assert_eq!(rules_broken(&streamed_put()), Vec::<&str>::new());
    }

    #[test]
    fn the_algorithm_header_alone_is_caught() {
        // The request real S3 refused: the algorithm, a plain body, no checksum, no trailer.
        let mut put = streamed_put();
        set(&mut put, "x-amz-content-sha256", "UNSIGNED-PAYLOAD");
        remove(&mut put, "x-amz-trailer");
        remove(&mut put, "content-encoding");
        remove(&mut put, "x-amz-decoded-content-length");
        put.body.chunked = None;
        put.body.wire_length = 11;
        set(&mut put, "content-length", "11");
        assert_eq!(rules_broken(&put), vec!["s3.checksum-announced"]);
        // An algorithm header naming another checksum than the one sent.
        let mut other = streamed_put();
        set(&mut other, "x-amz-sdk-checksum-algorithm", "CRC32");
        assert_caught(&other, "s3.checksum-announced");
    }

    #[test]
    fn two_checksums_are_caught() {
        let mut put = streamed_put();
        set(&mut put, "x-amz-checksum-sha256", "x");
        assert_caught(&put, "s3.single-checksum");
    }

    #[test]
    fn a_wrong_checksum_is_caught() {
        let mut put = streamed_put();
        put.body.chunked.as_mut().unwrap().trailers[0].1 = crc(b"something else");
        assert_caught(&put, "s3.checksum-value");
        // Unless the server refused it, as S3 does (a refusal test sends one on purpose).
        for refused in [400, 403] {
            put.status = refused;
            assert!(
                !rules_broken(&put).contains(&"s3.checksum-value"),
                "refused with {refused}"
            );
        }
    }

    #[test]
    fn aws_chunked_framing_rules_are_caught() {
        let mut no_encoding = streamed_put();
        remove(&mut no_encoding, "content-encoding");
        assert_caught(&no_encoding, "s3.aws-chunked");
        let mut wrong_length = streamed_put();
        set(&mut wrong_length, "x-amz-decoded-content-length", "12");
        assert_caught(&wrong_length, "s3.aws-chunked");
        let mut unannounced = streamed_put();
        unannounced
            .body
            .chunked
            .as_mut()
            .unwrap()
            .trailers
            .push(("x-amz-checksum-crc32".into(), "x".into()));
        assert_caught(&unannounced, "s3.aws-chunked");
        let mut missing = streamed_put();
        missing.body.chunked.as_mut().unwrap().trailers.clear();
        assert_caught(&missing, "s3.aws-chunked");
        let mut cut = streamed_put();
        cut.body.chunked.as_mut().unwrap().error =
            Some("the body ended before the final chunk".into());
        assert_caught(&cut, "s3.aws-chunked");
        let mut both = streamed_put();
        set(&mut both, "transfer-encoding", "chunked");
        assert_caught(&both, "s3.aws-chunked");
        let mut content_length = streamed_put();
        set(&mut content_length, "content-length", "71");
        assert_caught(&content_length, "s3.aws-chunked");
    }

    #[test]
    fn content_sha256_values_are_checked() {
        let mut unsigned = streamed_put();
        set(&mut unsigned, "x-amz-content-sha256", "UNSIGNED-PAYLOAD");
        assert_caught(&unsigned, "s3.content-sha256");
        let mut signed = streamed_put();
        set(
            &mut signed,
            "x-amz-content-sha256",
            "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER",
        );
        assert_caught(&signed, "s3.content-sha256"); // no chunk signatures
        let mut unknown = streamed_put();
        set(&mut unknown, "x-amz-content-sha256", "STREAMING-PAYLOAD");
        assert_caught(&unknown, "s3.content-sha256");
        let mut missing = streamed_put();
        remove(&mut missing, "x-amz-content-sha256");
        assert_caught(&missing, "s3.content-sha256");
        // A plain body with a payload hash that is not its own.
        let mut hashed = streamed_put();
        hashed.body.chunked = None;
        for name in [
            "content-encoding",
            "x-amz-decoded-content-length",
            "x-amz-trailer",
            "x-amz-sdk-checksum-algorithm",
        ] {
            remove(&mut hashed, name);
        }
        let right = "b94d27b9934d3e08a52e52d7da7dabfac484efe37a5380ee9088f7ace2efcde9";
        hashed.body.sha256_hex = Some(right.into());
        set(&mut hashed, "content-length", "11");
        hashed.body.wire_length = 11;
        set(&mut hashed, "x-amz-content-sha256", right);
        assert_eq!(rules_broken(&hashed), Vec::<&str>::new());
        set(&mut hashed, "x-amz-content-sha256", &"0".repeat(64));
        assert_caught(&hashed, "s3.content-sha256");
    }

    #[test]
    fn object_data_needs_a_length() {
        let mut put = streamed_put();
        remove(&mut put, "content-length");
        remove(&mut put, "x-amz-decoded-content-length");
        assert_caught(&put, "s3.content-length");
    }

    #[test]
    fn conditional_write_headers_are_checked() {
        let mut etag = streamed_put();
        set(&mut etag, "if-none-match", "\"abc\"");
        assert_caught(&etag, "s3.conditional-write");
        let mut bare = streamed_put();
        set(&mut bare, "if-match", "abc");
        assert_caught(&bare, "s3.conditional-write");
        let mut part = streamed_put();
        part.operation = "UploadPart".into();
        part.query = "partNumber=1&uploadId=u".into();
        assert_caught(&part, "s3.conditional-write");
    }

    /// A rendition's DeleteObject as the image processor sends it: conditional on its ETag.
    fn conditional_delete_request() -> Exchange {
        Exchange {
            service: "s3".into(),
            operation: "DeleteObject".into(),
            scheme: "http".into(),
            method: "DELETE".into(),
            path: "/overseas-origin/thumbnails/images/a.jpg/160.jpg".into(),
            headers: headers(&[
                ("authorization", "AWS4-HMAC-SHA256 Credential=k/20261204/us-east-1/s3/aws4_request, SignedHeaders=host, Signature=…"),
                ("x-amz-content-sha256", "UNSIGNED-PAYLOAD"),
                ("if-match", "\"5d41402abc4b2a76b9719d911017c592\""),
            ]),
            status: 204,
            ..Exchange::default()
        }
    }

    #[test]
    fn conditional_delete_headers_are_checked() {
        assert_eq!(
            rules_broken(&conditional_delete_request()),
            Vec::<&str>::new()
        );
        let mut any = conditional_delete_request();
        set(&mut any, "if-match", "*");
        assert_eq!(rules_broken(&any), Vec::<&str>::new());
        for value in ["", "\"a\", \"b\""] {
            let mut bad = conditional_delete_request();
            set(&mut bad, "if-match", value);
            assert_caught(&bad, "s3.conditional-delete");
        }
        for name in ["x-amz-if-match-size", "x-amz-if-match-last-modified-time"] {
            let mut directory_only = conditional_delete_request();
            set(&mut directory_only, name, "1024");
            assert_caught(&directory_only, "s3.conditional-delete");
        }
        let mut none_match = conditional_delete_request();
        set(&mut none_match, "if-none-match", "*");
        assert_caught(&none_match, "s3.conditional-write");
    }

    #[test]
    fn keys_and_metadata_are_bounded() {
        let mut long = streamed_put();
        long.path = format!("/overseas-origin/{}", "k".repeat(1025));
        assert_caught(&long, "s3.key");
        let mut metadata = streamed_put();
        set(&mut metadata, "x-amz-meta-big", &"v".repeat(2100));
        assert_caught(&metadata, "s3.metadata");
    }

    fn multipart(
        checker: &mut Checker,
        kind: &str,
        algorithm: &str,
        sizes: &[u64],
    ) -> Vec<Violation> {
        let create = Exchange {
            service: "s3".into(),
            operation: "CreateMultipartUpload".into(),
            method: "POST".into(),
            path: "/b/k".into(),
            query: "uploads".into(),
            headers: headers(&[("x-amz-checksum-algorithm", algorithm), ("x-amz-checksum-type", kind)]),
            status: 200,
            answer: Some("<InitiateMultipartUploadResult><UploadId>u1</UploadId></InitiateMultipartUploadResult>".into()),
            ..Exchange::default()
        };
        let mut found = checker.check(&create);
        for (i, size) in sizes.iter().enumerate() {
            let part = Exchange {
                service: "s3".into(),
                operation: "UploadPart".into(),
                method: "PUT".into(),
                path: "/b/k".into(),
                query: format!("partNumber={}&uploadId=u1", i + 1),
                headers: headers(&[("content-length", &size.to_string())]),
                body: BodySummary {
                    complete: true,
                    decoded_length: *size,
                    wire_length: *size,
                    crc32c: crc(b""),
                    ..BodySummary::default()
                },
                status: 200,
                ..Exchange::default()
            };
            found.extend(checker.check(&part));
        }
        found
    }

    fn complete(parts: &str, extra: &[(&str, &str)]) -> Exchange {
        Exchange {
            service: "s3".into(),
            operation: "CompleteMultipartUpload".into(),
            method: "POST".into(),
            path: "/b/k".into(),
            query: "uploadId=u1".into(),
            headers: headers(extra),
            body: BodySummary {
                complete: true,
                text: Some(format!(
                    "<CompleteMultipartUpload>{parts}</CompleteMultipartUpload>"
                )),
                ..BodySummary::default()
            },
            status: 200,
            ..Exchange::default()
        }
    }

    #[test]
    fn multipart_rules_are_caught() {
        let full = [
            ("x-amz-checksum-type", "FULL_OBJECT"),
            ("x-amz-checksum-crc32c", "AAAAAA=="),
        ];
        let two = "<Part><PartNumber>1</PartNumber></Part><Part><PartNumber>2</PartNumber></Part>";
        let mut checker = Checker::default();
        assert!(multipart(&mut checker, "FULL_OBJECT", "CRC32C", &[5 * MIB, 10]).is_empty());
        assert!(checker.check(&complete(two, &full)).is_empty());

        let mut checker = Checker::default();
        multipart(&mut checker, "FULL_OBJECT", "CRC32C", &[MIB, 10]);
        let rules: Vec<_> = checker
            .check(&complete(two, &full))
            .into_iter()
            .map(|v| v.rule)
            .collect();
        assert_eq!(rules, vec!["s3.part-size"]);

        let mut checker = Checker::default();
        multipart(&mut checker, "FULL_OBJECT", "CRC32C", &[5 * MIB, 10]);
        let reversed =
            "<Part><PartNumber>2</PartNumber></Part><Part><PartNumber>1</PartNumber></Part>";
        assert!(checker
            .check(&complete(reversed, &full))
            .iter()
            .any(|v| v.rule == "s3.complete-parts"));
        let composite = [("x-amz-checksum-type", "COMPOSITE")];
        assert!(checker
            .check(&complete(two, &composite))
            .iter()
            .any(|v| v.rule == "s3.checksum-type"));
        let crc32 = [
            ("x-amz-checksum-type", "FULL_OBJECT"),
            ("x-amz-checksum-crc32", "AAAAAA=="),
        ];
        assert!(checker
            .check(&complete(two, &crc32))
            .iter()
            .any(|v| v.rule == "s3.checksum-type"));

        let mut checker = Checker::default();
        let found = multipart(&mut checker, "FULL_OBJECT", "SHA256", &[]);
        assert!(found.iter().any(|v| v.rule == "s3.checksum-type"));
        let mut checker = Checker::default();
        multipart(&mut checker, "COMPOSITE", "SHA256", &[5 * MIB, 10]);
        assert!(checker
            .check(&complete(two, &[]))
            .iter()
            .any(|v| v.rule == "s3.checksum-type"));

        let mut checker = Checker::default();
        let mut part = complete("", &[]);
        part.operation = "UploadPart".into();
        part.method = "PUT".into();
        part.query = "partNumber=10001&uploadId=u1".into();
        assert!(checker
            .check(&part)
            .iter()
            .any(|v| v.rule == "s3.part-number"));
    }

    /// A part of a split copy as the backfill streams it: an UploadPart of a CRC32C FULL_OBJECT
    /// upload, its body aws-chunked with the part's CRC32C as a trailer, no conditional header.
    fn streamed_part() -> Exchange {
        let mut part = streamed_put();
        part.operation = "UploadPart".into();
        part.query = "partNumber=2&uploadId=u1".into();
        remove(&mut part, "if-none-match");
        part
    }

    /// A checker that has seen the CRC32C FULL_OBJECT upload `u1` created.
    fn upload_created() -> Checker {
        let mut checker = Checker::default();
        assert!(multipart(&mut checker, "FULL_OBJECT", "CRC32C", &[]).is_empty());
        checker
    }

    #[test]
    fn a_valid_streamed_part_breaks_nothing() {
        assert_eq!(
            upload_created().check(&streamed_part()),
            Vec::<Violation>::new()
        );
        // Unknown upload (created before the recording began): the part's own rules only.
        assert_eq!(rules_broken(&streamed_part()), Vec::<&str>::new());
    }

    #[test]
    fn streamed_part_rules_are_caught() {
        let caught = |part: &Exchange, rule: &str| {
            let broken: Vec<_> = upload_created()
                .check(part)
                .into_iter()
                .map(|v| v.rule)
                .collect();
            assert!(
                broken.contains(&rule),
                "{rule} not caught; found {broken:?}"
            );
        };
        // The trailer announced but not sent, or sent but not announced.
        let mut missing = streamed_part();
        missing.body.chunked.as_mut().unwrap().trailers.clear();
        caught(&missing, "s3.aws-chunked");
        let mut unannounced = streamed_part();
        remove(&mut unannounced, "x-amz-trailer");
        caught(&unannounced, "s3.aws-chunked");
        // A trailer that is not the part's CRC32C.
        let mut wrong = streamed_part();
        wrong.body.chunked.as_mut().unwrap().trailers[0].1 = crc(b"another part");
        caught(&wrong, "s3.checksum-value");
        // A CRC32 part of a CRC32C upload, as a trailer and as the algorithm it names.
        let mut crc32 = streamed_part();
        set(&mut crc32, "x-amz-trailer", "x-amz-checksum-crc32");
        set(&mut crc32, "x-amz-sdk-checksum-algorithm", "CRC32");
        crc32.body.chunked.as_mut().unwrap().trailers[0].0 = "x-amz-checksum-crc32".into();
        caught(&crc32, "s3.part-checksum");
        let mut named = streamed_part();
        set(&mut named, "x-amz-sdk-checksum-algorithm", "SHA256");
        caught(&named, "s3.part-checksum");
        // UploadPart takes no conditional write header.
        let mut conditional = streamed_part();
        set(&mut conditional, "if-none-match", "*");
        caught(&conditional, "s3.conditional-write");
        // The decoded length must be what the chunks carried.
        let mut length = streamed_part();
        set(&mut length, "x-amz-decoded-content-length", "12");
        caught(&length, "s3.aws-chunked");
        // Neither Content-Length nor Transfer-Encoding.
        let mut unframed = streamed_part();
        remove(&mut unframed, "content-length");
        caught(&unframed, "s3.aws-chunked");
        // Signed chunks under the unsigned streaming payload.
        let mut signed = streamed_part();
        signed.body.chunked.as_mut().unwrap().signed_chunks = 2;
        caught(&signed, "s3.content-sha256");
        // A part number out of range.
        let mut number = streamed_part();
        number.query = "partNumber=0&uploadId=u1".into();
        caught(&number, "s3.part-number");
    }

    fn list_parts_request(query: &str) -> Exchange {
        Exchange {
            service: "s3".into(),
            operation: "ListParts".into(),
            method: "GET".into(),
            path: "/overseas-origin/videos/a.mp4".into(),
            query: query.into(),
            headers: headers(&[
                ("authorization", "AWS4-HMAC-SHA256 Credential=k/20261204/us-east-1/s3/aws4_request, SignedHeaders=host, Signature=…"),
                ("x-amz-content-sha256", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"),
            ]),
            status: 200,
            ..Exchange::default()
        }
    }

    #[test]
    fn list_parts_rules_are_caught() {
        for valid in [
            "uploadId=u1",
            "max-parts=1000&uploadId=u1",
            "max-parts=1&part-number-marker=0&uploadId=u1",
            "part-number-marker=1000&uploadId=u1",
            "part-number-marker=10000&uploadId=u1",
        ] {
            assert_eq!(
                rules_broken(&list_parts_request(valid)),
                Vec::<&str>::new(),
                "{valid}"
            );
        }
        for invalid in [
            "uploadId=",
            "max-parts=0&uploadId=u1",
            "max-parts=1001&uploadId=u1",
            "max-parts=ten&uploadId=u1",
            "part-number-marker=-1&uploadId=u1",
            "part-number-marker=10001&uploadId=u1",
        ] {
            assert_caught(&list_parts_request(invalid), "s3.list-parts");
        }
    }

    fn json(service: &str, operation: &str, document: serde_json::Value) -> Exchange {
        Exchange {
            service: service.into(),
            operation: operation.into(),
            method: "POST".into(),
            path: "/".into(),
            body: BodySummary {
                complete: true,
                text: Some(document.to_string()),
                ..BodySummary::default()
            },
            status: 200,
            ..Exchange::default()
        }
    }

    #[test]
    fn sqs_rules_are_caught() {
        use serde_json::json as j;
        let url = "http://127.0.0.1/1/backfill";
        let fifo = "http://127.0.0.1/1/backfill.fifo";
        let valid = json(
            "sqs",
            "SendMessageBatch",
            j!({"QueueUrl": url, "Entries": [{"Id": "a", "MessageBody": "x"}, {"Id": "b", "MessageBody": "y", "DelaySeconds": 5}]}),
        );
        assert!(rules_broken(&valid).is_empty());
        let cases = [
            (
                j!({"QueueUrl": url, "Entries": []}),
                "SendMessageBatch",
                "sqs.batch",
            ),
            (
                j!({"QueueUrl": url, "Entries": (0..11).map(|i| j!({"Id": format!("m{i}"), "MessageBody": "x"})).collect::<Vec<_>>()}),
                "SendMessageBatch",
                "sqs.batch",
            ),
            (
                j!({"QueueUrl": url, "Entries": [{"Id": "a", "MessageBody": "x"}, {"Id": "a", "MessageBody": "y"}]}),
                "SendMessageBatch",
                "sqs.batch",
            ),
            (
                j!({"QueueUrl": url, "Entries": [{"Id": "a.b", "MessageBody": "x"}]}),
                "SendMessageBatch",
                "sqs.batch",
            ),
            (
                j!({"QueueUrl": url, "Entries": [{"Id": "a", "MessageBody": "x".repeat(600_000)}, {"Id": "b", "MessageBody": "x".repeat(600_000)}]}),
                "SendMessageBatch",
                "sqs.message-size",
            ),
            (
                j!({"QueueUrl": url, "MessageBody": "x".repeat(1_100_000)}),
                "SendMessage",
                "sqs.message-size",
            ),
            (
                j!({"QueueUrl": url, "MessageBody": "bell \u{7}"}),
                "SendMessage",
                "sqs.message",
            ),
            (
                j!({"QueueUrl": url, "MessageBody": "x", "DelaySeconds": 901}),
                "SendMessage",
                "sqs.delay",
            ),
            (
                j!({"QueueUrl": fifo, "MessageBody": "x", "MessageGroupId": "g", "DelaySeconds": 1}),
                "SendMessage",
                "sqs.delay",
            ),
            (
                j!({"QueueUrl": fifo, "MessageBody": "x"}),
                "SendMessage",
                "sqs.fifo",
            ),
            (
                j!({"QueueUrl": url, "ReceiptHandle": "r", "VisibilityTimeout": 43_201}),
                "ChangeMessageVisibility",
                "sqs.visibility",
            ),
            (
                j!({"QueueUrl": url, "Entries": [{"Id": "a", "ReceiptHandle": "r", "VisibilityTimeout": -1}]}),
                "ChangeMessageVisibilityBatch",
                "sqs.visibility",
            ),
            (
                j!({"QueueUrl": url, "MaxNumberOfMessages": 11}),
                "ReceiveMessage",
                "sqs.receive",
            ),
            (
                j!({"QueueUrl": url, "WaitTimeSeconds": 21}),
                "ReceiveMessage",
                "sqs.receive",
            ),
        ];
        for (document, operation, rule) in cases {
            assert_caught(&json("sqs", operation, document), rule);
        }
    }

    #[test]
    fn part_task_batches() {
        use serde_json::json as j;
        let url = "http://127.0.0.1/1/backfill-parts";
        let task = |part: usize| j!({"Id": format!("part-{part}"), "MessageBody": j!({"version": 1, "kind": "part", "part": part}).to_string()});
        // Ten part tasks, one batch: what a split copy sends.
        let ten = json(
            "sqs",
            "SendMessageBatch",
            j!({"QueueUrl": url, "Entries": (2..12).map(task).collect::<Vec<_>>()}),
        );
        assert!(rules_broken(&ten).is_empty());
        // The whole batch may be 1 MiB (1,048,576 bytes), not a byte more.
        let sized = |total: usize| {
            json(
                "sqs",
                "SendMessageBatch",
                j!({"QueueUrl": url, "Entries": [
                    {"Id": "a", "MessageBody": "x".repeat(total / 2)},
                    {"Id": "b", "MessageBody": "x".repeat(total - total / 2)},
                ]}),
            )
        };
        assert!(rules_broken(&sized(1_048_576)).is_empty());
        assert_caught(&sized(1_048_577), "sqs.message-size");
        // Each entry's DelaySeconds is 0 to 900.
        let delayed = |delay: i64| {
            json(
                "sqs",
                "SendMessageBatch",
                j!({"QueueUrl": url, "Entries": [{"Id": "a", "MessageBody": "x", "DelaySeconds": delay}]}),
            )
        };
        assert!(rules_broken(&delayed(0)).is_empty());
        assert!(rules_broken(&delayed(900)).is_empty());
        assert_caught(&delayed(901), "sqs.delay");
        assert_caught(&delayed(-1), "sqs.delay");
        // Entry ids: 1 to 80 of letters, digits, - and _.
        let id = |id: &str| {
            json(
                "sqs",
                "SendMessageBatch",
                j!({"QueueUrl": url, "Entries": [{"Id": id, "MessageBody": "x"}]}),
            )
        };
        assert!(rules_broken(&id(&"a".repeat(80))).is_empty());
        assert!(rules_broken(&id("part_12-A")).is_empty());
        assert_caught(&id(&"a".repeat(81)), "sqs.batch");
        assert_caught(&id(""), "sqs.batch");
        assert_caught(&id("part 12"), "sqs.batch");
    }

    #[test]
    fn dynamodb_rules_are_caught() {
        use serde_json::json as j;
        let valid = j!({"TableName": "t", "Key": {"pk": {"S": "a"}}, "UpdateExpression": "SET #s = :s", "ConditionExpression": "attribute_not_exists(pk) OR #s = :old",
            "ExpressionAttributeNames": {"#s": "status"}, "ExpressionAttributeValues": {":s": {"S": "done"}, ":old": {"S": "x"}}});
        assert!(rules_broken(&json("dynamodb", "UpdateItem", valid)).is_empty());
        let cases = [
            (
                j!({"TableName": "t", "UpdateExpression": "SET a = :a", "ExpressionAttributeValues": {":a": {"S": "x"}, ":unused": {"S": "y"}}}),
                "UpdateItem",
            ),
            (
                j!({"TableName": "t", "UpdateExpression": "SET #a = :a", "ExpressionAttributeValues": {":a": {"S": "x"}}}),
                "UpdateItem",
            ),
            (
                j!({"TableName": "t", "ConditionExpression": format!("a = :a{}", " AND a = :a".repeat(400)), "ExpressionAttributeValues": {":a": {"S": "x"}}}),
                "PutItem",
            ),
            (
                j!({"TableName": "t", "Item": {"pk": {"S": "a"}, "big": {"S": "x".repeat(410_000)}}}),
                "PutItem",
            ),
            (
                j!({"RequestItems": {"t": (0..26).map(|i| j!({"PutRequest": {"Item": {"pk": {"S": i.to_string()}}}})).collect::<Vec<_>>()}}),
                "BatchWriteItem",
            ),
        ];
        let rules = [
            "dynamodb.expression",
            "dynamodb.expression",
            "dynamodb.expression",
            "dynamodb.item-size",
            "dynamodb.batch",
        ];
        for ((document, operation), rule) in cases.into_iter().zip(rules) {
            assert_caught(&json("dynamodb", operation, document), rule);
        }
    }

    #[test]
    fn lease_requests() {
        use serde_json::json as j;
        let key = j!({"pk": {"S": "overseas-origin/video/clip.mp4"}});
        // Take the lease: a new generation unless a live holder has it; the winner's item back.
        let take = j!({"TableName": "copy-leases", "Key": key,
            "UpdateExpression": "SET generation = if_not_exists(generation, :zero) + :one, holder = :me, expires_at = :until, #ttl = :ttl, #state = :copying",
            "ConditionExpression": "attribute_not_exists(pk) OR expires_at < :now",
            "ExpressionAttributeNames": {"#ttl": "ttl", "#state": "state"},
            "ExpressionAttributeValues": {":zero": {"N": "0"}, ":one": {"N": "1"}, ":me": {"S": "req-1"}, ":until": {"N": "1800000900"},
                ":ttl": {"N": "1800087300"}, ":copying": {"S": "copying"}, ":now": {"N": "1800000000"}},
            "ReturnValues": "ALL_NEW", "ReturnValuesOnConditionCheckFailure": "ALL_OLD"});
        assert!(rules_broken(&json("dynamodb", "UpdateItem", take.clone())).is_empty());
        // A part done: ADD to the number set, on the generation and upload.
        let done = j!({"TableName": "copy-leases", "Key": key, "UpdateExpression": "ADD done :part SET expires_at = :until",
            "ConditionExpression": "generation = :g AND upload_id = :u",
            "ExpressionAttributeValues": {":part": {"NS": ["12"]}, ":until": {"N": "1800000900"}, ":g": {"N": "7"}, ":u": {"S": "u1"}},
            "ReturnValues": "ALL_NEW", "ReturnValuesOnConditionCheckFailure": "ALL_OLD"});
        assert!(rules_broken(&json("dynamodb", "UpdateItem", done.clone())).is_empty());
        // Release: on the generation.
        let release = j!({"TableName": "copy-leases", "Key": key, "ConditionExpression": "generation = :g",
            "ExpressionAttributeValues": {":g": {"N": "7"}}, "ReturnValuesOnConditionCheckFailure": "ALL_OLD"});
        assert!(rules_broken(&json("dynamodb", "DeleteItem", release.clone())).is_empty());

        let with = |base: &serde_json::Value, field: &str, value: serde_json::Value| {
            let mut doc = base.clone();
            doc[field] = value;
            doc
        };
        let cases = [
            (
                with(&release, "ReturnValues", j!("ALL_NEW")),
                "DeleteItem",
                "dynamodb.return-values",
            ),
            (
                with(&take, "ReturnValues", j!("EVERYTHING")),
                "UpdateItem",
                "dynamodb.return-values",
            ),
            (
                with(&take, "ReturnValuesOnConditionCheckFailure", j!("ALL_NEW")),
                "UpdateItem",
                "dynamodb.return-values",
            ),
            (
                with(
                    &release,
                    "ReturnValuesOnConditionCheckFailure",
                    j!("UPDATED_OLD"),
                ),
                "DeleteItem",
                "dynamodb.return-values",
            ),
            (
                with(
                    &done,
                    "ExpressionAttributeValues",
                    j!({":part": {"NS": []}, ":until": {"N": "1"}, ":g": {"N": "7"}, ":u": {"S": "u1"}}),
                ),
                "UpdateItem",
                "dynamodb.set",
            ),
            (
                with(
                    &done,
                    "ExpressionAttributeValues",
                    j!({":part": {"NS": ["12", "12"]}, ":until": {"N": "1"}, ":g": {"N": "7"}, ":u": {"S": "u1"}}),
                ),
                "UpdateItem",
                "dynamodb.set",
            ),
            (with(&release, "Key", j!({})), "DeleteItem", "dynamodb.key"),
            (
                with(&take, "Key", serde_json::Value::Null),
                "UpdateItem",
                "dynamodb.key",
            ),
            (
                with(
                    &release,
                    "ExpressionAttributeValues",
                    j!({":g": {"N": "7"}, ":h": {"N": "8"}}),
                ),
                "DeleteItem",
                "dynamodb.expression",
            ),
            (
                with(
                    &done,
                    "ConditionExpression",
                    j!("generation = :g AND upload_id = :upload"),
                ),
                "UpdateItem",
                "dynamodb.expression",
            ),
        ];
        for (document, operation, rule) in cases {
            assert_caught(&json("dynamodb", operation, document), rule);
        }
        // A transaction's actions take ReturnValuesOnConditionCheckFailure, and no ReturnValues.
        let transaction = |action: serde_json::Value| {
            json(
                "dynamodb",
                "TransactWriteItems",
                j!({"TransactItems": [{"Update": action}]}),
            )
        };
        let mut in_transaction = take.clone();
        in_transaction
            .as_object_mut()
            .unwrap()
            .remove("ReturnValues");
        assert!(rules_broken(&transaction(in_transaction)).is_empty());
        assert_caught(&transaction(take), "dynamodb.return-values");
    }

    #[test]
    fn secretsmanager_rules_are_caught() {
        use serde_json::json as j;
        let request = |document: serde_json::Value, extra: &[(&str, &str)]| {
            let mut exchange = json("secretsmanager", "GetSecretValue", document);
            exchange.headers = headers(&[
                ("x-amz-target", "secretsmanager.GetSecretValue"),
                ("content-type", "application/x-amz-json-1.1"),
            ]);
            for (name, value) in extra {
                set(&mut exchange, name, value);
            }
            exchange
        };
        let arn = "arn:aws:secretsmanager:us-east-1:123456789012:secret:origin-AbCdEf";
        let version = "EXAMPLE1-90ab-cdef-fedc-ba987EXAMPLE";
        assert!(rules_broken(&request(j!({"SecretId": arn}), &[])).is_empty());
        assert!(
            rules_broken(&request(j!({"SecretId": arn, "VersionId": version}), &[])).is_empty()
        );
        let cases = [
            (j!({}), "secretsmanager.get"),
            (j!({"SecretId": ""}), "secretsmanager.get"),
            (j!({"SecretId": "s".repeat(2049)}), "secretsmanager.get"),
            (
                j!({"SecretId": arn, "VersionId": "v1"}),
                "secretsmanager.get",
            ),
            (
                j!({"SecretId": arn, "VersionId": "v".repeat(65)}),
                "secretsmanager.get",
            ),
            (
                j!({"SecretId": arn, "VersionStage": ""}),
                "secretsmanager.get",
            ),
        ];
        for (document, rule) in cases {
            assert_caught(&request(document, &[]), rule);
        }
        for extra in [
            ("content-type", "application/x-amz-json-1.0"),
            ("x-amz-target", "secretsmanager.DescribeSecret"),
            ("x-amz-target", "AmazonSQS.GetSecretValue"),
        ] {
            assert_caught(&request(j!({"SecretId": arn}), &[extra]), "json.protocol");
        }
        let mut unsent = request(j!({"SecretId": arn}), &[]);
        remove(&mut unsent, "x-amz-target");
        assert_caught(&unsent, "json.protocol");
        unsent.method = "GET".into();
        assert_caught(&unsent, "json.protocol");
    }

    #[test]
    fn invalidation_rules_are_caught() {
        let batch = |quantity: usize, paths: &[&str], reference: &str| Exchange {
            service: "cloudfront".into(),
            operation: "CreateInvalidation".into(),
            method: "POST".into(),
            path: "/2020-05-31/distribution/E2QWRUHAPOMQZL/invalidation".into(),
            body: BodySummary {
                complete: true,
                text: Some(format!(
                    "<InvalidationBatch xmlns=\"http://cloudfront.amazonaws.com/doc/2020-05-31/\">\
                     <Paths><Quantity>{quantity}</Quantity><Items>{}</Items></Paths>\
                     <CallerReference>{reference}</CallerReference></InvalidationBatch>",
                    paths
                        .iter()
                        .map(|p| format!("<Path>{p}</Path>"))
                        .collect::<String>()
                )),
                ..BodySummary::default()
            },
            status: 201,
            ..Exchange::default()
        };
        assert!(rules_broken(&batch(2, &["/a.jpg", "/b/*"], "backfill-1")).is_empty());
        for broken in [
            batch(3, &["/a.jpg", "/b.jpg"], "backfill-1"),
            batch(1, &["a.jpg"], "backfill-1"),
            batch(1, &["/a*.jpg"], "backfill-1"),
            batch(1, &["/a.jpg"], ""),
            batch(0, &[], "backfill-1"),
        ] {
            assert_caught(&broken, "cloudfront.invalidation");
        }
    }

    #[test]
    fn sns_rules_are_caught() {
        let form = |operation: &str, body: String| Exchange {
            service: "sns".into(),
            operation: operation.into(),
            method: "POST".into(),
            path: "/".into(),
            body: BodySummary {
                complete: true,
                text: Some(body),
                ..BodySummary::default()
            },
            status: 200,
            ..Exchange::default()
        };
        assert!(rules_broken(&form(
            "Publish",
            "Action=Publish&TopicArn=t&Message=hello".into()
        ))
        .is_empty());
        assert_caught(
            &form(
                "Publish",
                format!("Action=Publish&Message={}", "x".repeat(262_145)),
            ),
            "sns.message-size",
        );
        assert_caught(
            &form(
                "Publish",
                format!("Action=Publish&Message=x&Subject={}", "s".repeat(101)),
            ),
            "sns.message",
        );
        let eleven: String = (1..=11).map(|i| format!("&PublishBatchRequestEntries.member.{i}.Id=m{i}&PublishBatchRequestEntries.member.{i}.Message=x")).collect();
        assert_caught(
            &form("PublishBatch", format!("Action=PublishBatch{eleven}")),
            "sns.batch",
        );
    }

    /// A JSON description of a CBOR document, encoded as the SDK does (maps of indefinite length);
    /// `{"$time": SECONDS}` is a timestamp (tag 1).
    fn cbor_bytes(value: &serde_json::Value) -> Vec<u8> {
        fn encode(value: &serde_json::Value, e: &mut minicbor::Encoder<Vec<u8>>) {
            use serde_json::Value as J;
            match value {
                J::Object(map) if map.contains_key("$time") => {
                    e.tag(minicbor::data::Tag::new(1)).unwrap();
                    encode(&map["$time"], e);
                }
                J::Object(map) => {
                    e.begin_map().unwrap();
                    for (key, value) in map {
                        e.str(key).unwrap();
                        encode(value, e);
                    }
                    e.end().unwrap();
                }
                J::Array(items) => {
                    e.array(items.len() as u64).unwrap();
                    for item in items {
                        encode(item, e);
                    }
                }
                J::String(text) => {
                    e.str(text).unwrap();
                }
                J::Number(n) => {
                    match n.as_i64() {
                        Some(i) => e.i64(i).unwrap(),
                        None => e.f64(n.as_f64().unwrap()).unwrap(),
                    };
                }
                J::Bool(b) => {
                    e.bool(*b).unwrap();
                }
                J::Null => {
                    e.null().unwrap();
                }
            }
        }
        let mut encoder = minicbor::Encoder::new(Vec::new());
        encode(value, &mut encoder);
        encoder.into_writer()
    }

    /// x-amz-date 20261205T193347Z, in epoch seconds.
    const SIGNED_AT: i64 = 1_796_499_227;

    fn cbor_request(operation: &str, body: &[u8]) -> Exchange {
        Exchange {
            service: "monitoring".into(),
            operation: operation.into(),
            scheme: "https".into(),
            method: "POST".into(),
            path: format!("/service/GraniteServiceVersion20100801/operation/{operation}"),
            headers: headers(&[
                ("authorization", "AWS4-HMAC-SHA256 Credential=k/20261205/eu-west-1/monitoring/aws4_request, SignedHeaders=accept;content-length;content-type;host;smithy-protocol;x-amz-date, Signature=…"),
                ("content-type", "application/cbor"),
                ("smithy-protocol", "rpc-v2-cbor"),
                ("accept", "application/cbor"),
                ("x-amz-date", "20261205T193347Z"),
                ("content-length", &body.len().to_string()),
            ]),
            body: BodySummary {
                wire_length: body.len() as u64,
                complete: true,
                decoded_length: body.len() as u64,
                binary: Some(b64(body)),
                ..BodySummary::default()
            },
            status: 200,
            ..Exchange::default()
        }
    }

    /// One query as backfill-ctl's `status` sends it: a day's Sum of one metric.
    fn metric_query(id: &str) -> serde_json::Value {
        serde_json::json!({
            "Id": id,
            "MetricStat": {
                "Metric": {
                    "Namespace": "OverseasOrigin",
                    "MetricName": "RegionalRequests",
                    "Dimensions": [
                        {"Name": "FunctionName", "Value": "us-east-1.edge-hook"},
                        {"Name": "BucketRegion", "Value": "ap-southeast-1"}
                    ]
                },
                "Period": 86_400,
                "Stat": "Sum"
            },
            "ReturnData": true
        })
    }

    /// A GetMetricData document over the day before the request.
    fn get_metric_data_document() -> serde_json::Value {
        let end = SIGNED_AT - SIGNED_AT % 60 + 60;
        serde_json::json!({
            "MetricDataQueries": [metric_query("q0"), metric_query("q1")],
            "StartTime": {"$time": end - 86_400},
            "EndTime": {"$time": end}
        })
    }

    fn get_metric_data(document: &serde_json::Value) -> Exchange {
        cbor_request("GetMetricData", &cbor_bytes(document))
    }

    #[test]
    fn a_valid_get_metric_data_breaks_nothing() {
        let document = get_metric_data_document();
        assert_eq!(
            rules_broken(&get_metric_data(&document)),
            Vec::<&str>::new()
        );
        // Also with the optional members, an expression, high resolution and float timestamps.
        let mut full = document.clone();
        full["MaxDatapoints"] = 1000.into();
        full["ScanBy"] = "TimestampAscending".into();
        full["StartTime"] = serde_json::json!({"$time": (SIGNED_AT - 600) as f64 + 0.5});
        full["MetricDataQueries"][0]["MetricStat"]["Period"] = 5.into();
        full["MetricDataQueries"][0]["MetricStat"]["Unit"] = "Bytes".into();
        full["MetricDataQueries"][1] = serde_json::json!({
            "Id": "share_1", "Expression": "q0 / 2", "Label": "half", "Period": 60, "ReturnData": false
        });
        assert_eq!(rules_broken(&get_metric_data(&full)), Vec::<&str>::new());
        assert_eq!(amz_date_seconds("20261205T193347Z"), Some(SIGNED_AT));
        assert_eq!(amz_date_seconds("20240229T000000Z"), Some(1_709_164_800));
        assert_eq!(amz_date_seconds("2026-12-05T19:33:47Z"), None);
    }

    #[test]
    fn rpc_v2_cbor_protocol_rules_are_caught() {
        let document = get_metric_data_document();
        for (name, value) in [
            ("smithy-protocol", "rpc-v2-json"),
            ("content-type", "application/x-amz-json-1.0"),
            ("accept", "application/json"),
            (
                "x-amz-target",
                "GraniteServiceVersion20100801.GetMetricData",
            ),
        ] {
            let mut exchange = get_metric_data(&document);
            set(&mut exchange, name, value);
            assert_caught(&exchange, "rpcv2.protocol");
        }
        for name in ["smithy-protocol", "accept", "content-type"] {
            let mut exchange = get_metric_data(&document);
            remove(&mut exchange, name);
            assert_caught(&exchange, "rpcv2.protocol");
        }
        let mut get = get_metric_data(&document);
        get.method = "GET".into();
        assert_caught(&get, "rpcv2.protocol");
        let mut elsewhere = get_metric_data(&document);
        elsewhere.path = "/service/CloudWatch/operation/GetMetricData".into();
        assert_caught(&elsewhere, "rpcv2.protocol");
        assert_caught(
            &cbor_request("GetMetricData", b"{\"MetricDataQueries\":[]}"),
            "rpcv2.body",
        );
        assert_caught(
            &cbor_request("GetMetricData", &cbor_bytes(&serde_json::json!([1]))),
            "rpcv2.body",
        );
        assert_caught(
            &cbor_request("GetMetricData", &[]),
            "cloudwatch.get-metric-data",
        );
    }

    #[test]
    fn get_metric_data_rules_are_caught() {
        type Change = fn(&mut serde_json::Value);
        let cases: [(Change, &str); 33] = [
            (
                |d| d["MetricDataQueries"] = serde_json::json!([]),
                "cloudwatch.get-metric-data",
            ),
            (
                |d| {
                    d["MetricDataQueries"] =
                        (0..501).map(|i| metric_query(&format!("q{i}"))).collect()
                },
                "cloudwatch.get-metric-data",
            ),
            (
                |d| d["MetricDataQueries"] = "q0".into(),
                "cloudwatch.get-metric-data",
            ),
            (
                |d| {
                    d.as_object_mut().unwrap().remove("MetricDataQueries");
                },
                "cloudwatch.get-metric-data",
            ),
            (
                |d| d["MaxDatapoints"] = 0.into(),
                "cloudwatch.get-metric-data",
            ),
            (
                |d| d["ScanBy"] = "Newest".into(),
                "cloudwatch.get-metric-data",
            ),
            (
                |d| d["MetricDataQueries"][1]["Id"] = "q0".into(),
                "cloudwatch.metric-id",
            ),
            (
                |d| d["MetricDataQueries"][0]["Id"] = "Q0".into(),
                "cloudwatch.metric-id",
            ),
            (
                |d| d["MetricDataQueries"][0]["Id"] = "0q".into(),
                "cloudwatch.metric-id",
            ),
            (
                |d| d["MetricDataQueries"][0]["Id"] = "q-0".into(),
                "cloudwatch.metric-id",
            ),
            (
                |d| d["MetricDataQueries"][0]["Id"] = "q".repeat(256).into(),
                "cloudwatch.metric-id",
            ),
            (
                |d| {
                    d["MetricDataQueries"][0]
                        .as_object_mut()
                        .unwrap()
                        .remove("Id");
                },
                "cloudwatch.metric-id",
            ),
            (
                |d| d["MetricDataQueries"][0]["Expression"] = "q1 * 2".into(),
                "cloudwatch.metric-query",
            ),
            (
                |d| {
                    d["MetricDataQueries"][0]
                        .as_object_mut()
                        .unwrap()
                        .remove("MetricStat");
                },
                "cloudwatch.metric-query",
            ),
            (
                |d| d["MetricDataQueries"][0] = serde_json::json!({"Id": "e", "Expression": ""}),
                "cloudwatch.metric-query",
            ),
            (
                |d| {
                    let select = "SELECT SUM(RegionalRequests) FROM OverseasOrigin";
                    d["MetricDataQueries"][0] =
                        serde_json::json!({"Id": "a", "Expression": select});
                    d["MetricDataQueries"][1] =
                        serde_json::json!({"Id": "b", "Expression": select});
                },
                "cloudwatch.metric-query",
            ),
            (
                |d| d["MetricDataQueries"][0]["ReturnData"] = "true".into(),
                "cloudwatch.metric-query",
            ),
            (
                |d| {
                    d["MetricDataQueries"][0]["MetricStat"]["Metric"]["Dimensions"] = (0..31)
                        .map(|i| serde_json::json!({"Name": format!("D{i}"), "Value": "v"}))
                        .collect()
                },
                "cloudwatch.metric-stat",
            ),
            (
                |d| {
                    d["MetricDataQueries"][0]["MetricStat"]["Metric"]["Dimensions"][0]["Value"] =
                        "".into()
                },
                "cloudwatch.metric-stat",
            ),
            (
                |d| {
                    d["MetricDataQueries"][0]["MetricStat"]["Metric"]["Dimensions"][0]["Value"] =
                        "ap-sud-é".into()
                },
                "cloudwatch.metric-stat",
            ),
            (
                |d| {
                    d["MetricDataQueries"][0]["MetricStat"]["Metric"]["Dimensions"][0]["Name"] =
                        ":Function".into()
                },
                "cloudwatch.metric-stat",
            ),
            (
                |d| {
                    d["MetricDataQueries"][0]["MetricStat"]["Metric"]["Dimensions"][1]
                        .as_object_mut()
                        .unwrap()
                        .remove("Value");
                },
                "cloudwatch.metric-stat",
            ),
            (
                |d| {
                    d["MetricDataQueries"][0]["MetricStat"]["Metric"]["Namespace"] =
                        ":Overseas".into()
                },
                "cloudwatch.metric-stat",
            ),
            (
                |d| {
                    d["MetricDataQueries"][0]["MetricStat"]["Metric"]
                        .as_object_mut()
                        .unwrap()
                        .remove("MetricName");
                },
                "cloudwatch.metric-stat",
            ),
            (
                |d| {
                    d["MetricDataQueries"][0]["MetricStat"]
                        .as_object_mut()
                        .unwrap()
                        .remove("Stat");
                },
                "cloudwatch.metric-stat",
            ),
            (
                |d| d["MetricDataQueries"][0]["MetricStat"]["Unit"] = "Things".into(),
                "cloudwatch.metric-stat",
            ),
            (
                |d| d["MetricDataQueries"][0]["MetricStat"]["Period"] = 0.into(),
                "cloudwatch.period",
            ),
            (
                |d| d["MetricDataQueries"][0]["MetricStat"]["Period"] = 90.into(),
                "cloudwatch.period",
            ),
            (
                |d| d["MetricDataQueries"][0]["MetricStat"]["Period"] = 15.into(),
                "cloudwatch.period",
            ),
            (
                |d| d["MetricDataQueries"][0]["MetricStat"]["Period"] = "60".into(),
                "cloudwatch.period",
            ),
            (
                |d| d["EndTime"] = d["StartTime"].clone(),
                "cloudwatch.time-range",
            ),
            (
                |d| d["StartTime"] = serde_json::json!(SIGNED_AT - 86_400),
                "cloudwatch.time-range",
            ),
            (
                |d| {
                    d.as_object_mut().unwrap().remove("EndTime");
                },
                "cloudwatch.time-range",
            ),
        ];
        for (change, rule) in cases {
            let mut document = get_metric_data_document();
            change(&mut document);
            assert_caught(&get_metric_data(&document), rule);
        }
        let mut later = get_metric_data_document();
        later["StartTime"] = serde_json::json!({"$time": SIGNED_AT + 60});
        later["EndTime"] = serde_json::json!({"$time": SIGNED_AT});
        assert_caught(&get_metric_data(&later), "cloudwatch.time-range");
        assert!(
            rules_broken(&cbor_request("GetMetricData", &cbor_bytes(&later)))
                .iter()
                .all(|rule| *rule == "cloudwatch.time-range")
        );
    }

    #[test]
    fn old_windows_need_coarser_periods() {
        // (start before the request, period, whether CloudWatch returns its data points)
        for (age, period, returned) in [
            (3_600, 5, true),
            (86_400, 30, false),
            (86_400, 120, true),
            (20 * 86_400, 120, false),
            (20 * 86_400, 600, true),
            (70 * 86_400, 300, false),
            (70 * 86_400, 7_200, true),
        ] {
            let mut document = get_metric_data_document();
            document["StartTime"] = serde_json::json!({"$time": SIGNED_AT - age});
            document["MetricDataQueries"][0]["MetricStat"]["Period"] = period.into();
            let broken = rules_broken(&get_metric_data(&document));
            assert_eq!(
                !broken.contains(&"cloudwatch.period-age"),
                returned,
                "{age} s ago, period {period}: {broken:?}"
            );
        }
    }
}
