//! The API's JSON bodies, shared by the function and its client. Requests refuse unknown fields,
//! so that a misspelt option is an error rather than silently ignored.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::checksum::ChecksumAlgorithm;
use crate::record::FileVersion;

/// A checksum as the client declares it: the algorithm and S3's base64 form of the value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChecksumSpec {
    pub algorithm: ChecksumAlgorithm,
    pub value: String,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UploadMethod {
    /// A presigned PUT URL with the headers to send.
    #[default]
    Put,
    /// A presigned POST form (browser uploads).
    Post,
}

/// `POST /uploads`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SingleUploadRequest {
    pub key: String,
    pub size: u64,
    pub content_type: String,
    pub checksum: ChecksumSpec,
    #[serde(default)]
    pub method: UploadMethod,
    /// Seconds the signature lives (default and maximum are configured).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_in: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SingleUploadResponse {
    pub key: String,
    pub method: String,
    pub url: String,
    /// PUT: the headers to send, exactly (they are signed).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
    /// POST: the form fields to send, in this order, before the file.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fields: Vec<(String, String)>,
    pub expires_at: String,
}

/// `POST /multipart`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateMultipartRequest {
    pub key: String,
    pub size: u64,
    pub content_type: String,
    /// CRC32C of the whole object: S3 checks a multipart object's full CRC32C, not its SHA-256.
    pub checksum: ChecksumSpec,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub part_size: Option<u64>,
}

/// A multipart upload as the service keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MultipartUpload {
    pub upload_id: String,
    pub key: String,
    pub size: u64,
    pub part_size: u64,
    pub part_count: u32,
    pub content_type: String,
    pub checksum: ChecksumSpec,
    pub expires_at: String,
}

/// One part to sign: its number and the CRC32C of its bytes (signed into the URL, so S3
/// refuses other bytes).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PartToSign {
    pub number: u32,
    pub checksum: String,
}

/// `POST /multipart/{upload_id}/parts`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignPartsRequest {
    pub parts: Vec<PartToSign>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_in: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedPart {
    pub number: u32,
    pub size: u64,
    pub url: String,
    pub headers: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignPartsResponse {
    pub upload_id: String,
    pub parts: Vec<SignedPart>,
    pub expires_at: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartView {
    pub number: u32,
    pub size: u64,
    pub etag: String,
}

/// `GET /multipart/{upload_id}/parts`: what S3 holds, and what is still to upload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListPartsResponse {
    pub upload: MultipartUpload,
    pub parts: Vec<PartView>,
    pub missing: Vec<u32>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CompletedPartRef {
    pub number: u32,
    pub etag: String,
}

/// `POST /multipart/{upload_id}/complete`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CompleteRequest {
    pub parts: Vec<CompletedPartRef>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CompleteResponse {
    pub key: String,
    pub etag: String,
    pub size: u64,
    pub checksum: ChecksumSpec,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub s3_version_id: Option<String>,
}

/// `GET /files/{key}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileResponse {
    pub latest: FileVersion,
    /// Every version, newest first, when asked for with `?versions=true`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub versions: Vec<FileVersion>,
    /// Where to read the object, when asked for with `?download=true`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub download: Option<Download>,
}

/// A URL that reads an upload until it expires: a presigned S3 GET, or with
/// `UploadAccess=signed` a CloudFront signed URL on the distribution.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Download {
    pub url: String,
    /// `s3` or `cloudfront`.
    pub via: String,
    pub expires_at: String,
}

/// `GET /cookies` (`UploadAccess=signed`): CloudFront signed cookies for the caller's uploads
/// and their thumbnails on the distribution.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CookiesResponse {
    pub domain: String,
    pub expires_at: String,
    /// One set per path: the caller's prefix and its thumbnails'.
    pub sets: Vec<CookieSetView>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CookieSetView {
    /// The path to set the cookies for (`/uploads/alice/`).
    pub path: String,
    /// The URLs they open (`https://d111111abcdef8.cloudfront.net/uploads/alice/*`).
    pub resource: String,
    /// Cookie names and values.
    pub cookies: BTreeMap<String, String>,
    /// The same as `Set-Cookie` values (Path, Secure, HttpOnly, SameSite=Lax; no Domain, no
    /// Expires: a session cookie), for a server on the distribution's site to send.
    pub set_cookie: Vec<String>,
}

/// `GET /files?prefix=&since=`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChangesResponse {
    pub changes: Vec<FileVersion>,
    /// Pass as `since` to read on; absent when nothing has been read yet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cursor: Option<String>,
    /// More changes are ready now: read again at once.
    pub more: bool,
}

/// `GET /me`: who the caller is and what it may upload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MeResponse {
    pub caller: String,
    pub prefix: String,
    pub max_object_bytes: u64,
    pub max_single_bytes: u64,
    pub part_size: u64,
    pub allowed_content_types: Vec<String>,
}

/// The body of every refusal.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub reason: String,
    pub message: String,
    pub request_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub details: Option<serde_json::Value>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_refuse_unknown_fields_and_default_to_put() {
        let body = r#"{"key":"uploads/alice/a.jpg","size":5,"content_type":"image/jpeg",
            "checksum":{"algorithm":"crc32c","value":"mnG7TA=="}}"#;
        let request: SingleUploadRequest = serde_json::from_str(body).unwrap();
        assert_eq!(request.method, UploadMethod::Put);
        assert_eq!(request.checksum.algorithm, ChecksumAlgorithm::Crc32c);
        let typo = body.replace("\"size\"", "\"sise\"");
        assert!(serde_json::from_str::<SingleUploadRequest>(&typo).is_err());
        let md5 = body.replace("crc32c", "md5");
        assert!(serde_json::from_str::<SingleUploadRequest>(&md5).is_err());
    }
}
