//! Whole-object checksums a client declares before it uploads (SHA-256 or CRC32C, base64 as S3
//! writes them), and the CRC32C arithmetic that checks a multipart upload's parts against the
//! whole: CRC32C values of consecutive pieces combine into the CRC32C of their concatenation.

use std::fmt;

use aws_smithy_types::base64;
use serde::{Deserialize, Serialize};

use crate::error::Error;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ChecksumAlgorithm {
    Sha256,
    Crc32c,
}

impl ChecksumAlgorithm {
    pub fn as_str(self) -> &'static str {
        match self {
            ChecksumAlgorithm::Sha256 => "sha256",
            ChecksumAlgorithm::Crc32c => "crc32c",
        }
    }

    /// The algorithm's name in S3's `x-amz-checksum-algorithm` (a POST form field).
    pub fn s3_name(self) -> &'static str {
        match self {
            ChecksumAlgorithm::Sha256 => "SHA256",
            ChecksumAlgorithm::Crc32c => "CRC32C",
        }
    }

    /// The request header (and POST form field) S3 checks the body against.
    pub fn header(self) -> &'static str {
        match self {
            ChecksumAlgorithm::Sha256 => "x-amz-checksum-sha256",
            ChecksumAlgorithm::Crc32c => "x-amz-checksum-crc32c",
        }
    }
}

impl fmt::Display for ChecksumAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A checksum of a whole object or of one part.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Checksum {
    Sha256([u8; 32]),
    Crc32c(u32),
}

impl Checksum {
    /// Parses the base64 value S3 uses. The encoding must be canonical (what S3 itself would
    /// write), so that the value signed into a URL is the one S3 compares.
    pub fn parse(algorithm: ChecksumAlgorithm, value: &str) -> Result<Self, Error> {
        let bytes = base64::decode(value).map_err(|_| {
            Error::InvalidChecksum(format!("{algorithm} value {value:?} is not base64"))
        })?;
        if base64::encode(&bytes) != value {
            return Err(Error::InvalidChecksum(format!(
                "{algorithm} value {value:?} is not canonical base64"
            )));
        }
        let wrong_length = || {
            Error::InvalidChecksum(format!(
                "{algorithm} value is {} bytes long, expected {}",
                bytes.len(),
                match algorithm {
                    ChecksumAlgorithm::Sha256 => 32,
                    ChecksumAlgorithm::Crc32c => 4,
                }
            ))
        };
        match algorithm {
            ChecksumAlgorithm::Sha256 => Ok(Checksum::Sha256(
                bytes.as_slice().try_into().map_err(|_| wrong_length())?,
            )),
            ChecksumAlgorithm::Crc32c => Ok(Checksum::Crc32c(u32::from_be_bytes(
                bytes.as_slice().try_into().map_err(|_| wrong_length())?,
            ))),
        }
    }

    pub fn algorithm(&self) -> ChecksumAlgorithm {
        match self {
            Checksum::Sha256(_) => ChecksumAlgorithm::Sha256,
            Checksum::Crc32c(_) => ChecksumAlgorithm::Crc32c,
        }
    }

    pub fn crc32c(&self) -> Option<u32> {
        match self {
            Checksum::Crc32c(crc) => Some(*crc),
            Checksum::Sha256(_) => None,
        }
    }

    /// The value as S3 writes it: base64 of the big-endian bytes.
    pub fn to_base64(&self) -> String {
        match self {
            Checksum::Sha256(digest) => base64::encode(digest),
            Checksum::Crc32c(crc) => base64::encode(crc.to_be_bytes()),
        }
    }
}

/// The CRC32C of a whole object from the CRC32C and length of each of its consecutive parts.
pub fn combine_crc32c(parts: impl IntoIterator<Item = (u32, u64)>) -> u32 {
    parts.into_iter().fold(0u32, |whole, (crc, len)| {
        crc32c::crc32c_combine(whole, crc, len as usize)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use sha2::{Digest, Sha256};

    #[test]
    fn parses_what_s3_writes() {
        // CRC32C("hello") = 0x9a71bb4c, as S3 reports it.
        let crc = Checksum::parse(ChecksumAlgorithm::Crc32c, "mnG7TA==").unwrap();
        assert_eq!(crc, Checksum::Crc32c(crc32c::crc32c(b"hello")));
        assert_eq!(crc.to_base64(), "mnG7TA==");
        let digest: [u8; 32] = Sha256::digest(b"hello").into();
        let value = base64::encode(digest);
        assert_eq!(value, "LPJNul+wow4m6DsqxbninhsWHlwfp0JecwQzYpOLmCQ=");
        let sha = Checksum::parse(ChecksumAlgorithm::Sha256, &value).unwrap();
        assert_eq!(sha, Checksum::Sha256(digest));
        assert_eq!(sha.algorithm().header(), "x-amz-checksum-sha256");
    }

    #[test]
    fn refuses_malformed_values() {
        for (algorithm, value) in [
            (ChecksumAlgorithm::Crc32c, "not base64!"),
            (ChecksumAlgorithm::Crc32c, "mnG7TA"),
            (ChecksumAlgorithm::Crc32c, "AAAAAAA="),
            (ChecksumAlgorithm::Sha256, "mnG7TA=="),
            (ChecksumAlgorithm::Sha256, ""),
        ] {
            let err = Checksum::parse(algorithm, value).unwrap_err();
            assert!(matches!(err, Error::InvalidChecksum(_)), "{value}: {err}");
        }
    }

    #[test]
    fn part_crcs_combine_into_the_whole() {
        let data: Vec<u8> = (0..100_000u32).map(|i| (i * 7 % 251) as u8).collect();
        for part_len in [1usize, 999, 4096, 33_333, 100_000] {
            let parts = data
                .chunks(part_len)
                .map(|chunk| (crc32c::crc32c(chunk), chunk.len() as u64));
            assert_eq!(
                combine_crc32c(parts),
                crc32c::crc32c(&data),
                "parts of {part_len}"
            );
        }
        assert_eq!(combine_crc32c([]), 0);
    }
}
