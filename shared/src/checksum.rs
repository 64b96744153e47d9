//! S3's checksum values: the base64 of the big-endian checksum, as `x-amz-checksum-*` headers,
//! trailers and CompleteMultipartUpload's parts carry them.

use aws_smithy_types::base64;

/// A CRC32C as S3 writes it.
pub fn crc32c_value(crc: u32) -> String {
    base64::encode(crc.to_be_bytes())
}

/// The CRC32C of `bytes`, as S3 writes it.
pub fn crc32c_base64(bytes: &[u8]) -> String {
    crc32c_value(crc32c::crc32c(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_base64_of_the_big_endian_checksum() {
        // The CRC32C check value of "123456789" is 0xE3069283.
        assert_eq!(crc32c_base64(b"123456789"), "4waSgw==");
        assert_eq!(crc32c_value(0), "AAAAAA==");
    }
}
