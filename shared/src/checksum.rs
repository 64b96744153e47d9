//! S3's checksum values: the base64 of the big-endian checksum, as `x-amz-checksum-*` headers,
//! trailers and CompleteMultipartUpload's parts carry them.

use aws_smithy_types::base64;

/// A CRC32C as S3 writes it.
pub fn crc32c_value(crc: u32) -> String {
    base64::encode(crc.to_be_bytes())
}

/// A CRC32C S3 wrote (ListParts, UploadPart's answer); `None` if it is not one.
pub fn crc32c_parse(value: &str) -> Option<u32> {
    let bytes: [u8; 4] = base64::decode(value).ok()?.try_into().ok()?;
    Some(u32::from_be_bytes(bytes))
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
        assert_eq!(crc32c_parse("4waSgw=="), Some(0xE306_9283));
        assert_eq!(crc32c_parse("4waS"), None);
        assert_eq!(crc32c_parse("not base64"), None);
    }
}
