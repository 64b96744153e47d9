//! Object keys: where they come from (a CloudFront URI, an S3 event) and what makes one acceptable.
//!
//! CloudFront URIs are percent-encoded UTF-8. S3 event notification keys are form-encoded: `+` is a
//! space, then percent-decoding. Every key, whatever its source, passes the same validation.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize};

/// S3's limit on a key's length, in bytes of UTF-8.
pub const MAX_KEY_BYTES: usize = 1024;

/// Why a key was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("key is empty")]
    Empty,
    #[error("key is {0} bytes long, more than the {MAX_KEY_BYTES} S3 allows")]
    TooLong(usize),
    #[error("key is not valid UTF-8 after decoding")]
    InvalidUtf8,
    #[error("key has a control character (U+{code:04X}) at byte {at}")]
    ControlCharacter { code: u32, at: usize },
    #[error("key has a '.' or '..' path segment")]
    DotSegment,
    #[error("key starts with '/' after normalisation")]
    LeadingSlash,
    #[error("malformed percent-escape at byte {0}")]
    MalformedEscape(usize),
    #[error("encoded slash (%2F) or a backslash in a URI path")]
    EncodedSlash,
    #[error("URI does not start with '/'")]
    RelativeUri,
    #[error("key is under the reserved prefix {0:?}")]
    ReservedPrefix(String),
}

/// A validated S3 object key.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct ObjectKey(String);

impl ObjectKey {
    /// Validates a decoded key.
    pub fn new(key: impl Into<String>) -> Result<Self, KeyError> {
        let key = key.into();
        validate(&key)?;
        Ok(ObjectKey(key))
    }

    /// The key S3 looks up when CloudFront asks the bucket for a viewer's URI: the one rule the
    /// edge hook, the backfill and the local edge simulator share. `uri` is the percent-encoded
    /// path (no query string); `prefix` is prepended to the decoded path, as an S3 origin path
    /// would be.
    ///
    /// CloudFront passes the viewer's path to the S3 origin as sent, and S3 reads a literal `+`
    /// in a request path as a space: `/a+b.jpg` looks up `a b.jpg`, while `a+b.jpg` is reached
    /// only as `/a%2Bb.jpg`. A key derived any other way would be written where S3 never looks,
    /// so the object would fall back, and be enqueued again, forever.
    pub fn from_cloudfront_uri(uri: &str, prefix: &str) -> Result<Self, KeyError> {
        let path = uri.strip_prefix('/').ok_or(KeyError::RelativeUri)?;
        if contains_encoded_slash(path) {
            return Err(KeyError::EncodedSlash);
        }
        let decoded = percent_decode(path.replace('+', " ").as_bytes())?;
        let decoded = String::from_utf8(decoded).map_err(|_| KeyError::InvalidUtf8)?;
        let prefix = prefix.trim_start_matches('/');
        ObjectKey::new(format!("{prefix}{decoded}"))
    }

    /// The key an S3 event notification names (form-encoded).
    pub fn from_s3_event_key(raw: &str) -> Result<Self, KeyError> {
        let plus_decoded = raw.replace('+', " ");
        let decoded = percent_decode(plus_decoded.as_bytes())?;
        let decoded = String::from_utf8(decoded).map_err(|_| KeyError::InvalidUtf8)?;
        ObjectKey::new(decoded)
    }

    /// Refuses a key under `prefix` (for example the thumbnail output).
    pub fn refuse_prefix(self, prefix: &str) -> Result<Self, KeyError> {
        if !prefix.is_empty() && self.0.starts_with(prefix) {
            return Err(KeyError::ReservedPrefix(prefix.to_owned()));
        }
        Ok(self)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_string(self) -> String {
        self.0
    }

    /// The key as a percent-encoded URI path (with the leading `/`), for fetching it over HTTP.
    pub fn to_uri_path(&self) -> String {
        let mut out = String::with_capacity(self.0.len() + 1);
        out.push('/');
        percent_encode_into(&self.0, &mut out, |b| b == b'/');
        out
    }

    /// The key as S3 puts it in an event notification (form-encoded).
    pub fn to_s3_event_key(&self) -> String {
        let mut out = String::with_capacity(self.0.len());
        for part in self.0.split(' ').enumerate() {
            if part.0 > 0 {
                out.push('+');
            }
            percent_encode_into(part.1, &mut out, |b| b == b'/');
        }
        out
    }
}

/// What goes before a decoded URI to make its key (the edge hook's `x-backfill-key-prefix`, the
/// backfill's `KEY_PREFIX`): empty, or `/`-separated segments ending with a `/`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyPrefix(String);

impl KeyPrefix {
    /// `""` and `"/"` are no prefix; `"/mirror/v1"` is `"mirror/v1/"`. `None` for an empty, `.`
    /// or `..` segment or a control character.
    pub fn parse(raw: &str) -> Option<Self> {
        let raw = raw.trim();
        if raw.is_empty() || raw == "/" {
            return Some(KeyPrefix::default());
        }
        let prefix = raw.trim_matches('/');
        if prefix.is_empty()
            || prefix.chars().any(char::is_control)
            || prefix
                .split('/')
                .any(|s| s.is_empty() || s == "." || s == "..")
        {
            return None;
        }
        Some(KeyPrefix(format!("{prefix}/")))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Key prefixes the backfill never writes under, though the domestic origin may answer for them:
/// the callers' uploads (a miss there would otherwise be copied over a caller's file and recorded
/// as its new version) and the image processor's thumbnails. The edge hook's
/// `x-backfill-refused-prefixes` and the backfill's `REFUSED_PREFIXES`, comma-separated; each is
/// compared with the whole key, the key prefix included.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RefusedPrefixes(Vec<KeyPrefix>);

impl RefusedPrefixes {
    /// The form a bad value is told to take.
    pub const EXPECTED: &'static str =
        "comma-separated key prefixes such as uploads/,thumbnails/ (no empty, '.' or '..' segments)";

    /// Empty (or only blanks): none. `None` for an empty entry (`a/,,b/`, `/`), which would
    /// refuse every key, or one that is not a key prefix.
    pub fn parse(raw: &str) -> Option<Self> {
        if raw.trim().is_empty() {
            return Some(RefusedPrefixes::default());
        }
        raw.split(',')
            .map(|entry| KeyPrefix::parse(entry).filter(|prefix| !prefix.as_str().is_empty()))
            .collect::<Option<Vec<_>>>()
            .map(RefusedPrefixes)
    }

    /// The refused prefix `key` is under, if any.
    pub fn refusing(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .map(KeyPrefix::as_str)
            .find(|prefix| key.starts_with(prefix))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for ObjectKey {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl<'de> Deserialize<'de> for ObjectKey {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(deserializer)?;
        ObjectKey::new(raw).map_err(serde::de::Error::custom)
    }
}

fn validate(key: &str) -> Result<(), KeyError> {
    if key.is_empty() {
        return Err(KeyError::Empty);
    }
    if key.len() > MAX_KEY_BYTES {
        return Err(KeyError::TooLong(key.len()));
    }
    if let Some((at, c)) = key.char_indices().find(|(_, c)| c.is_control()) {
        return Err(KeyError::ControlCharacter { code: c as u32, at });
    }
    if key.starts_with('/') {
        return Err(KeyError::LeadingSlash);
    }
    if key
        .split('/')
        .any(|segment| segment == "." || segment == "..")
    {
        return Err(KeyError::DotSegment);
    }
    Ok(())
}

/// An encoded slash would make one path segment two once decoded, and some origins read a
/// backslash as a separator: either could smuggle a `..` past the segment check.
fn contains_encoded_slash(path: &str) -> bool {
    let lower = path.to_ascii_lowercase();
    lower.contains("%2f") || lower.contains("%5c") || lower.contains('\\')
}

/// Strict percent-decoding: a `%` must be followed by two hex digits.
fn percent_decode(input: &[u8]) -> Result<Vec<u8>, KeyError> {
    let mut out = Vec::with_capacity(input.len());
    let mut i = 0;
    while i < input.len() {
        if input[i] == b'%' {
            let hex = input
                .get(i + 1..i + 3)
                .ok_or(KeyError::MalformedEscape(i))?;
            let high = hex_value(hex[0]).ok_or(KeyError::MalformedEscape(i))?;
            let low = hex_value(hex[1]).ok_or(KeyError::MalformedEscape(i))?;
            out.push(high << 4 | low);
            i += 3;
        } else {
            out.push(input[i]);
            i += 1;
        }
    }
    Ok(out)
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Percent-encodes everything but RFC 3986 unreserved characters and bytes `keep` allows.
fn percent_encode_into(input: &str, out: &mut String, keep: impl Fn(u8) -> bool) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for &b in input.as_bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') || keep(b) {
            out.push(b as char);
        } else {
            out.push('%');
            out.push(HEX[usize::from(b >> 4)] as char);
            out.push(HEX[usize::from(b & 0xf)] as char);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn cloudfront_uri_is_percent_decoded() {
        let key =
            ObjectKey::from_cloudfront_uri("/images/caf%C3%A9%20au%20lait%2B1.jpg", "").unwrap();
        assert_eq!(key.as_str(), "images/café au lait+1.jpg");
    }

    /// S3 reads a literal `+` in a request path as a space; only `%2B` is a plus.
    #[test]
    fn cloudfront_uri_gives_the_key_s3_looks_up() {
        for (uri, key) in [
            ("/a+b.jpg", "a b.jpg"),
            ("/a%2Bb.jpg", "a+b.jpg"),
            ("/a%2bb.jpg", "a+b.jpg"),
            ("/a%20b.jpg", "a b.jpg"),
            ("/a++%2B.jpg", "a  +.jpg"),
        ] {
            assert_eq!(
                ObjectKey::from_cloudfront_uri(uri, "").unwrap().as_str(),
                key,
                "{uri}"
            );
        }
        // The way back names the same key: a plus is always sent encoded.
        let plus = ObjectKey::new("a+b.jpg").unwrap();
        assert_eq!(plus.to_uri_path(), "/a%2Bb.jpg");
        assert_eq!(
            ObjectKey::from_cloudfront_uri(&plus.to_uri_path(), "").unwrap(),
            plus
        );
    }

    #[test]
    fn cloudfront_uri_takes_the_prefix() {
        let key = ObjectKey::from_cloudfront_uri("/a.jpg", "/mirror/").unwrap();
        assert_eq!(key.as_str(), "mirror/a.jpg");
    }

    #[test]
    fn key_prefixes() {
        for (raw, prefix) in [
            ("", ""),
            ("/", ""),
            ("mirror", "mirror/"),
            ("/mirror/v1/", "mirror/v1/"),
        ] {
            assert_eq!(KeyPrefix::parse(raw).unwrap().as_str(), prefix, "{raw:?}");
        }
        for bad in ["//", "a//b", "a/../b", "./a", "a\u{7}"] {
            assert!(KeyPrefix::parse(bad).is_none(), "{bad:?}");
        }
        let prefix = KeyPrefix::parse("/mirror/").unwrap();
        let key = ObjectKey::from_cloudfront_uri("/a.jpg", prefix.as_str()).unwrap();
        assert_eq!(key.as_str(), "mirror/a.jpg");
    }

    #[test]
    fn s3_event_key_is_form_decoded() {
        // AWS: `/` left alone, `+` a space, `%2B` a plus.
        let aws = ObjectKey::from_s3_event_key("in/a+b%2Bc.txt").unwrap();
        // moto percent-encodes the slash too.
        let moto = ObjectKey::from_s3_event_key("in%2Fa+b%2Bc.txt").unwrap();
        assert_eq!(aws.as_str(), "in/a b+c.txt");
        assert_eq!(aws, moto);
    }

    #[test]
    fn refusals_have_reasons() {
        let cases: &[(&str, KeyError)] = &[
            ("/", KeyError::Empty),
            ("/a/../b", KeyError::DotSegment),
            ("/a/./b", KeyError::DotSegment),
            ("/..", KeyError::DotSegment),
            ("/%2E%2E/etc/passwd", KeyError::DotSegment),
            ("//etc/passwd", KeyError::LeadingSlash),
            ("/a%2Fb", KeyError::EncodedSlash),
            ("/a%5cb", KeyError::EncodedSlash),
            ("/a\\..\\b", KeyError::EncodedSlash),
            ("/a%0Ab", KeyError::ControlCharacter { code: 10, at: 1 }),
            ("/a%7Fb", KeyError::ControlCharacter { code: 0x7f, at: 1 }),
            ("/a%ff", KeyError::InvalidUtf8),
            ("/a%zz", KeyError::MalformedEscape(1)),
            ("/a%4", KeyError::MalformedEscape(1)),
            ("a.jpg", KeyError::RelativeUri),
        ];
        for (uri, expected) in cases {
            assert_eq!(
                ObjectKey::from_cloudfront_uri(uri, "").unwrap_err(),
                *expected,
                "{uri}"
            );
        }
        let long = format!("/{}", "a".repeat(MAX_KEY_BYTES + 1));
        assert_eq!(
            ObjectKey::from_cloudfront_uri(&long, "").unwrap_err(),
            KeyError::TooLong(MAX_KEY_BYTES + 1)
        );
        assert!(ObjectKey::from_cloudfront_uri(&long[..=MAX_KEY_BYTES], "").is_ok());
    }

    #[test]
    fn dots_inside_names_are_fine() {
        assert!(ObjectKey::new("a/..b/c.d./...").is_ok());
    }

    #[test]
    fn reserved_prefix_is_refused() {
        let key = ObjectKey::new("thumbnails/a.jpg").unwrap();
        assert_eq!(
            key.refuse_prefix("thumbnails/").unwrap_err(),
            KeyError::ReservedPrefix("thumbnails/".into())
        );
        let key = ObjectKey::new("images/a.jpg").unwrap();
        assert!(key.refuse_prefix("thumbnails/").is_ok());
    }

    #[test]
    fn refused_prefixes() {
        let refused = RefusedPrefixes::parse(" uploads/, /thumbnails ").unwrap();
        assert_eq!(refused.refusing("uploads/bob/x"), Some("uploads/"));
        assert_eq!(
            refused.refusing("thumbnails/a.jpg/160.jpg"),
            Some("thumbnails/")
        );
        // Whole segments: a prefix given without its slash does not take a longer name.
        assert_eq!(refused.refusing("thumbnails-old/a.jpg"), None);
        assert_eq!(refused.refusing("images/uploads/x"), None);
        assert_eq!(refused.refusing("Uploads/bob/x"), None);
        assert_eq!(RefusedPrefixes::parse(""), Some(RefusedPrefixes::default()));
        assert!(RefusedPrefixes::parse(" ").unwrap().is_empty());
        for bad in [
            "uploads/,",
            ",uploads/",
            "uploads/,,thumbnails/",
            "/",
            "a/../b/",
            "a//b/",
        ] {
            assert_eq!(RefusedPrefixes::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn deserializing_validates() {
        assert!(serde_json::from_str::<ObjectKey>(r#""a/b.jpg""#).is_ok());
        let err = serde_json::from_str::<ObjectKey>(r#""../b.jpg""#).unwrap_err();
        assert!(err.to_string().contains("'..'"), "{err}");
    }

    fn valid_key() -> impl Strategy<Value = String> {
        // Segments of arbitrary non-control characters (spaces, '+', '%', unicode included).
        let segment = "[^\\p{Cc}/]{1,20}".prop_filter("dot segment", |s| s != "." && s != "..");
        proptest::collection::vec(segment, 1..6).prop_map(|segments| segments.join("/"))
    }

    proptest! {
        #[test]
        fn uri_round_trip(key in valid_key()) {
            prop_assume!(key.len() <= MAX_KEY_BYTES && !key.contains('\\'));
            let key = ObjectKey::new(key).unwrap();
            prop_assert_eq!(ObjectKey::from_cloudfront_uri(&key.to_uri_path(), "").unwrap(), key);
        }

        #[test]
        fn s3_event_round_trip(key in valid_key()) {
            prop_assume!(key.len() <= MAX_KEY_BYTES);
            let key = ObjectKey::new(key).unwrap();
            prop_assert_eq!(ObjectKey::from_s3_event_key(&key.to_s3_event_key()).unwrap(), key);
        }

        #[test]
        fn decoding_never_panics(raw in "\\PC*") {
            let _ = ObjectKey::from_cloudfront_uri(&raw, "");
            let _ = ObjectKey::from_s3_event_key(&raw);
        }

        #[test]
        fn accepted_keys_are_always_valid(raw in "/[ -~]{0,64}") {
            if let Ok(key) = ObjectKey::from_cloudfront_uri(&raw, "") {
                prop_assert!(!key.as_str().is_empty());
                prop_assert!(!key.as_str().starts_with('/'));
                prop_assert!(!key.as_str().split('/').any(|s| s == "." || s == ".."));
                prop_assert!(!key.as_str().chars().any(char::is_control));
            }
        }
    }
}
