//! A request body summarised as it streams past: its length on the wire, its aws-chunked framing
//! decoded (chunk sizes, signatures, trailers), the checksums of the payload it carries, and the
//! body itself where it is a small API document (JSON, XML, a form) rather than object data.

use base64::Engine;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// API documents up to this size are kept whole for the rules that read them (SQS allows 1 MiB
/// of messages in one batch, DynamoDB 16 MiB in one BatchWriteItem; ours are far smaller).
pub const KEPT_DOCUMENT_MAX: usize = 2 * 1024 * 1024;
/// A chunk-size or trailer line longer than this is a framing error, not something to buffer.
const LINE_MAX: usize = 4096;

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct BodySummary {
    /// Bytes on the wire.
    pub wire_length: u64,
    /// Whether the whole body was seen (an upstream may answer before reading it all).
    pub complete: bool,
    /// Bytes of payload: the wire bytes, or what the aws-chunked framing carried.
    pub decoded_length: u64,
    /// Checksums of the payload, as S3 writes them (base64 of the big-endian value; SHA-256 also
    /// as hex for `x-amz-content-sha256`). CRC32 and SHA-256 only where the request names them.
    pub crc32c: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crc32: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256_hex: Option<String>,
    /// The aws-chunked framing, when the body was sent in it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chunked: Option<Chunked>,
    /// The body as text, when it is a small API document.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    /// The body in base64, as sent (compressed too), when it is a small binary API document: a
    /// Smithy RPC v2 CBOR request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub binary: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Chunked {
    /// Data chunks (the final zero-length chunk not counted).
    pub chunks: u64,
    /// Chunks that carried a `chunk-signature`, the final one included.
    pub signed_chunks: u64,
    /// Whether the final zero-length chunk and the closing empty line arrived.
    pub finished: bool,
    /// Trailers after the final chunk, names in lower case (`x-amz-trailer-signature` included).
    pub trailers: Vec<(String, String)>,
    /// The first framing error, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl Chunked {
    pub fn trailer(&self, name: &str) -> Option<&str> {
        self.trailers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// What to compute, decided from the request's headers before its body arrives.
#[derive(Debug, Clone, Copy, Default)]
pub struct Wanted {
    pub aws_chunked: bool,
    pub crc32: bool,
    pub sha256: bool,
    pub keep_text: bool,
    pub keep_binary: bool,
}

/// Feeds a body through, chunk by chunk, and summarises it.
pub struct BodyInspector {
    wanted: Wanted,
    summary: BodySummary,
    crc32c: u32,
    crc32: crc32fast::Hasher,
    sha256: Sha256,
    text: Vec<u8>,
    framing: Option<Framing>,
}

enum Framing {
    /// Reading a chunk-size line.
    Size(Vec<u8>),
    /// Payload bytes left in the current chunk.
    Data(u64),
    /// The CRLF after a chunk's payload: bytes of it still expected.
    DataEnd(Vec<u8>),
    /// Reading trailer lines after the final chunk.
    Trailers(Vec<u8>),
    Done,
    Failed,
}

impl BodyInspector {
    pub fn new(wanted: Wanted) -> Self {
        BodyInspector {
            wanted,
            summary: BodySummary {
                chunked: wanted.aws_chunked.then(Chunked::default),
                ..BodySummary::default()
            },
            crc32c: 0,
            crc32: crc32fast::Hasher::new(),
            sha256: Sha256::new(),
            text: Vec::new(),
            framing: wanted.aws_chunked.then(|| Framing::Size(Vec::new())),
        }
    }

    pub fn feed(&mut self, mut bytes: &[u8]) {
        self.summary.wire_length += bytes.len() as u64;
        if (self.wanted.keep_text || self.wanted.keep_binary)
            && self.text.len() <= KEPT_DOCUMENT_MAX
        {
            self.text.extend_from_slice(bytes);
        }
        if self.framing.is_none() {
            self.payload(bytes);
            return;
        }
        while !bytes.is_empty() {
            let framing = self.framing.take().expect("framing is set");
            let (next, used) = self.step(framing, bytes);
            self.framing = Some(next);
            bytes = &bytes[used..];
        }
    }

    /// Bytes seen so far.
    pub fn wire_length(&self) -> u64 {
        self.summary.wire_length
    }

    /// The summary once the body ended (`complete`: it ended normally).
    pub fn finish(mut self, complete: bool) -> BodySummary {
        self.summary.complete = complete;
        if let (Some(chunked), Some(framing)) = (&mut self.summary.chunked, &self.framing) {
            chunked.finished = matches!(framing, Framing::Done);
            if chunked.error.is_none() && complete && !chunked.finished {
                chunked.error =
                    Some("the body ended before the final chunk and its trailers".into());
            }
        }
        self.summary.crc32c = b64(&self.crc32c.to_be_bytes());
        if self.wanted.crc32 {
            self.summary.crc32 = Some(b64(&self.crc32.finalize().to_be_bytes()));
        }
        if self.wanted.sha256 {
            let digest = self.sha256.finalize();
            self.summary.sha256 = Some(b64(&digest));
            self.summary.sha256_hex = Some(digest.iter().map(|b| format!("{b:02x}")).collect());
        }
        if self.text.len() <= KEPT_DOCUMENT_MAX {
            if self.wanted.keep_binary {
                self.summary.binary = Some(b64(&self.text));
            } else if self.wanted.keep_text {
                self.summary.text = Some(String::from_utf8_lossy(&self.text).into_owned());
            }
        }
        self.summary
    }

    fn payload(&mut self, bytes: &[u8]) {
        self.summary.decoded_length += bytes.len() as u64;
        self.crc32c = crc32c::crc32c_append(self.crc32c, bytes);
        if self.wanted.crc32 {
            self.crc32.update(bytes);
        }
        if self.wanted.sha256 {
            self.sha256.update(bytes);
        }
    }

    fn fail(&mut self, problem: String) -> Framing {
        if let Some(chunked) = &mut self.summary.chunked {
            chunked.error.get_or_insert(problem);
        }
        Framing::Failed
    }

    /// One step of the aws-chunked state machine: the next state and the bytes it used.
    fn step(&mut self, framing: Framing, bytes: &[u8]) -> (Framing, usize) {
        match framing {
            Framing::Size(mut line) => match take_line(&mut line, bytes) {
                Line::Partial(used) if line.len() > LINE_MAX => (
                    self.fail("a chunk-size line longer than 4 KiB".into()),
                    used,
                ),
                Line::Partial(used) => (Framing::Size(line), used),
                Line::Complete(used) => (self.chunk_header(&line), used),
            },
            Framing::Data(left) => {
                let used = (left.min(bytes.len() as u64)) as usize;
                self.payload(&bytes[..used]);
                let left = left - used as u64;
                let next = if left == 0 {
                    Framing::DataEnd(Vec::new())
                } else {
                    Framing::Data(left)
                };
                (next, used)
            }
            Framing::DataEnd(mut seen) => {
                let used = (2 - seen.len()).min(bytes.len());
                seen.extend_from_slice(&bytes[..used]);
                if seen.len() < 2 {
                    (Framing::DataEnd(seen), used)
                } else if seen == b"\r\n" {
                    (Framing::Size(Vec::new()), used)
                } else {
                    (
                        self.fail("a chunk's payload is not followed by CRLF".into()),
                        used,
                    )
                }
            }
            Framing::Trailers(mut line) => match take_line(&mut line, bytes) {
                Line::Partial(used) if line.len() > LINE_MAX => {
                    (self.fail("a trailer line longer than 4 KiB".into()), used)
                }
                Line::Partial(used) => (Framing::Trailers(line), used),
                Line::Complete(used) if line.is_empty() => (Framing::Done, used),
                Line::Complete(used) => {
                    let text = String::from_utf8_lossy(&line).into_owned();
                    match text.split_once(':') {
                        Some((name, value)) => {
                            if let Some(chunked) = &mut self.summary.chunked {
                                chunked.trailers.push((
                                    name.trim().to_ascii_lowercase(),
                                    value.trim().to_owned(),
                                ));
                            }
                            (Framing::Trailers(Vec::new()), used)
                        }
                        None => (
                            self.fail(format!("a trailer line without a colon: {text:?}")),
                            used,
                        ),
                    }
                }
            },
            Framing::Done => {
                let problem = format!(
                    "{} bytes after the end of the aws-chunked body",
                    bytes.len()
                );
                (self.fail(problem), bytes.len())
            }
            Framing::Failed => (Framing::Failed, bytes.len()),
        }
    }

    fn chunk_header(&mut self, line: &[u8]) -> Framing {
        let text = String::from_utf8_lossy(line).into_owned();
        let (size, extension) = match text.split_once(';') {
            Some((size, extension)) => (size, Some(extension)),
            None => (text.as_str(), None),
        };
        let Ok(size) = u64::from_str_radix(size.trim(), 16) else {
            return self.fail(format!("a chunk-size line that is not hex: {text:?}"));
        };
        if let Some(extension) = extension {
            let signed = extension
                .strip_prefix("chunk-signature=")
                .is_some_and(|sig| sig.len() == 64 && sig.bytes().all(|b| b.is_ascii_hexdigit()));
            if !signed {
                return self.fail(format!("an unknown chunk extension: {extension:?}"));
            }
            if let Some(chunked) = &mut self.summary.chunked {
                chunked.signed_chunks += 1;
            }
        }
        if size == 0 {
            return Framing::Trailers(Vec::new());
        }
        if let Some(chunked) = &mut self.summary.chunked {
            chunked.chunks += 1;
        }
        Framing::Data(size)
    }
}

enum Line {
    /// The line goes on past these bytes (all used).
    Partial(usize),
    /// The line ended: bytes used, CRLF included; `line` holds it without the CRLF.
    Complete(usize),
}

fn take_line(line: &mut Vec<u8>, bytes: &[u8]) -> Line {
    for (i, &byte) in bytes.iter().enumerate() {
        if byte == b'\n' && line.last() == Some(&b'\r') {
            line.pop();
            return Line::Complete(i + 1);
        }
        line.push(byte);
    }
    Line::Partial(bytes.len())
}

pub fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunked() -> Wanted {
        Wanted {
            aws_chunked: true,
            ..Wanted::default()
        }
    }

    /// Feeds `body` split at every `step` bytes, so that the state machine is tested across
    /// every boundary.
    fn inspect(body: &[u8], wanted: Wanted, step: usize) -> BodySummary {
        let mut inspector = BodyInspector::new(wanted);
        for piece in body.chunks(step) {
            inspector.feed(piece);
        }
        inspector.finish(true)
    }

    #[test]
    fn an_unsigned_trailer_body_is_decoded_at_any_split() {
        let body = b"5\r\nhello\r\n6\r\n world\r\n0\r\nx-amz-checksum-crc32c:yZRlqg==\r\n\r\n";
        for step in 1..body.len() {
            let summary = inspect(body, chunked(), step);
            let framing = summary.chunked.as_ref().unwrap();
            assert_eq!(framing.error, None, "split {step}");
            assert!(framing.finished);
            assert_eq!(framing.chunks, 2);
            assert_eq!(summary.decoded_length, 11);
            assert_eq!(summary.wire_length, body.len() as u64);
            assert_eq!(
                summary.crc32c,
                b64(&crc32c::crc32c(b"hello world").to_be_bytes())
            );
            assert_eq!(framing.trailer("x-amz-checksum-crc32c"), Some("yZRlqg=="));
        }
    }

    #[test]
    fn signed_chunks_are_counted() {
        let sig = "a".repeat(64);
        let body = format!(
            "3;chunk-signature={sig}\r\nabc\r\n0;chunk-signature={sig}\r\nx-amz-checksum-crc32c:x\r\nx-amz-trailer-signature:{sig}\r\n\r\n"
        );
        let summary = inspect(body.as_bytes(), chunked(), 7);
        let framing = summary.chunked.unwrap();
        assert_eq!(framing.error, None);
        assert_eq!(framing.signed_chunks, 2);
        assert_eq!(framing.trailers.len(), 2);
    }

    #[test]
    fn framing_errors_are_reported() {
        for (body, problem) in [
            (&b"5\r\nhello0\r\n\r\n"[..], "not followed by CRLF"),
            (b"zz\r\nhello\r\n", "not hex"),
            (b"5\r\nhello\r\n", "ended before the final chunk"),
            (b"0\r\n\r\nextra", "after the end"),
            (b"0\r\nno-colon\r\n\r\n", "without a colon"),
        ] {
            let summary = inspect(body, chunked(), 3);
            let error = summary.chunked.unwrap().error.unwrap_or_default();
            assert!(error.contains(problem), "{error:?} for {body:?}");
        }
    }

    #[test]
    fn a_plain_body_is_hashed_as_it_is() {
        let wanted = Wanted {
            crc32: true,
            sha256: true,
            keep_text: true,
            ..Wanted::default()
        };
        let summary = inspect(b"hello world", wanted, 4);
        assert_eq!(summary.decoded_length, 11);
        assert_eq!(
            summary.crc32.unwrap(),
            b64(&crc32fast::hash(b"hello world").to_be_bytes())
        );
        assert_eq!(
            summary.sha256_hex.unwrap(),
            "b94d27b9934d3e08a52e52d7da7dabfac484efe37a5380ee9088f7ace2efcde9"
        );
        assert_eq!(summary.text.as_deref(), Some("hello world"));
        assert!(summary.chunked.is_none());
    }

    #[test]
    fn a_binary_document_is_kept_as_sent() {
        let body = [0xbf, 0x61, b'a', 0xff, 0x00, 0x80];
        let wanted = Wanted {
            keep_binary: true,
            ..Wanted::default()
        };
        let summary = inspect(&body, wanted, 2);
        assert_eq!(summary.binary, Some(b64(&body)));
        assert_eq!(summary.text, None);
    }
}
