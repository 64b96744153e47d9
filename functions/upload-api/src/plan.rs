//! The upload API's decisions, as pure functions: whether a key, a size, a type, an expiry may be
//! signed; how an object is cut into parts; whether the parts a client says it uploaded are the
//! parts S3 holds, and whether their checksums make the whole object's.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, SystemTime};

use shared::{KeyError, ObjectKey};

use crate::checksum::{combine_crc32c, Checksum};
use crate::error::Error;

const MIB: u64 = 1024 * 1024;
/// S3's smallest part (but the last).
pub const MIN_PART_BYTES: u64 = 5 * MIB;
/// S3's largest part, and largest single PUT.
pub const MAX_PART_BYTES: u64 = 5 * 1024 * MIB;
pub const MAX_SINGLE_BYTES: u64 = MAX_PART_BYTES;
/// S3's most parts in one upload.
pub const MAX_PARTS: u32 = 10_000;
/// S3's largest object.
pub const MAX_OBJECT_BYTES: u64 = 5 * 1024 * 1024 * MIB;
/// Most parts signed in one request.
pub const MAX_SIGN_BATCH: usize = 100;

/// How S3, and the CDN after it, serves an upload: chosen by the API and signed into every
/// upload (presigned PUT headers, POST policy conditions, set on CreateMultipartUpload), so a
/// caller cannot pick them. A header left out of a presigned PUT's signed headers may be added
/// freely, and S3 stores it. Keys are overwritten with new versions, so caches revalidate
/// (`no-cache`, and an `Expires` in the past); the bytes are what the checksum describes
/// (`identity`); shown, not downloaded under a name the caller picks (`inline`); no language
/// claimed (`und`, BCP 47's undetermined).
pub const CACHE_CONTROL: &str = "no-cache";
pub const CONTENT_DISPOSITION: &str = "inline";
pub const CONTENT_ENCODING: &str = "identity";
pub const CONTENT_LANGUAGE: &str = "und";
/// `Expires`, as seconds since the epoch (1970-01-01: the past).
pub const EXPIRES_EPOCH_S: i64 = 0;

/// The key a caller asked for, if it is a valid key under the caller's own prefix.
pub fn authorize_key(caller_prefix: &str, key: &str) -> Result<ObjectKey, Error> {
    let key = ObjectKey::new(key)?;
    let name = key
        .as_str()
        .strip_prefix(caller_prefix)
        .ok_or_else(|| Error::KeyOutsidePrefix {
            key: key.to_string(),
            prefix: caller_prefix.to_owned(),
        })?;
    // Empty segments (a trailing slash is a "folder", a double slash a hidden one) are refused.
    if name.split('/').any(str::is_empty) {
        return Err(Error::EmptySegment(key.to_string()));
    }
    Ok(key)
}

/// A prefix to list under: the caller's own prefix or a longer one.
pub fn authorize_prefix(caller_prefix: &str, prefix: Option<&str>) -> Result<String, Error> {
    match prefix {
        None | Some("") => Ok(caller_prefix.to_owned()),
        Some(prefix) => {
            if prefix.chars().any(char::is_control) {
                return Err(Error::InvalidKey(KeyError::ControlCharacter {
                    code: prefix.chars().find(|c| c.is_control()).map_or(0, u32::from),
                    at: prefix.find(char::is_control).unwrap_or(0),
                }));
            }
            if prefix.split('/').any(|s| s == "." || s == "..") {
                return Err(Error::InvalidKey(KeyError::DotSegment));
            }
            if !prefix.starts_with(caller_prefix) {
                return Err(Error::KeyOutsidePrefix {
                    key: prefix.to_owned(),
                    prefix: caller_prefix.to_owned(),
                });
            }
            Ok(prefix.to_owned())
        }
    }
}

/// The declared content type, if it is on the allow-list (exactly, parameters not allowed).
pub fn check_content_type(allowed: &[String], declared: &str) -> Result<String, Error> {
    let normalized = declared.trim().to_ascii_lowercase();
    if allowed.contains(&normalized) {
        Ok(normalized)
    } else {
        Err(Error::TypeNotAllowed(declared.to_owned()))
    }
}

/// Whether an object of `size` bytes may be sent in one request.
pub fn check_single_size(size: u64, max_object_bytes: u64) -> Result<(), Error> {
    if size > max_object_bytes {
        return Err(Error::SizeNotAllowed {
            size,
            why: format!("the largest upload is {max_object_bytes} bytes"),
        });
    }
    if size > MAX_SINGLE_BYTES {
        return Err(Error::SizeNotAllowed {
            size,
            why: format!(
                "a single upload is at most {MAX_SINGLE_BYTES} bytes: use a multipart upload"
            ),
        });
    }
    Ok(())
}

/// The life of a signed URL: the default, or what the client asked for up to the maximum.
pub fn url_expiry(
    requested_s: Option<u64>,
    default: Duration,
    max: Duration,
) -> Result<Duration, Error> {
    match requested_s {
        None => Ok(default),
        Some(s) if s >= 1 && s <= max.as_secs() => Ok(Duration::from_secs(s)),
        Some(s) => Err(Error::ExpiryNotAllowed {
            requested: s,
            max: max.as_secs(),
        }),
    }
}

/// How long before its credentials expire a signed request stops being given their whole life.
pub const CREDENTIALS_MARGIN: Duration = Duration::from_secs(60);

/// The life of a request signed at `now` with credentials that expire at `credentials_expiry`
/// (none for long-term keys): what was asked, but no longer than the credentials live, less a
/// margin. A URL or form signed with temporary credentials stops working when they expire,
/// whatever its X-Amz-Expires or policy expiration says. Whole seconds, as X-Amz-Expires has.
pub fn signed_lifetime(
    requested: Duration,
    now: SystemTime,
    credentials_expiry: Option<SystemTime>,
) -> Result<Duration, Error> {
    let Some(expiry) = credentials_expiry else {
        return Ok(requested);
    };
    let left = expiry.duration_since(now).unwrap_or_default();
    let usable = Duration::from_secs(left.saturating_sub(CREDENTIALS_MARGIN).as_secs());
    if usable.is_zero() {
        return Err(Error::Credentials(format!(
            "the signing credentials expire in {} s",
            left.as_secs()
        )));
    }
    Ok(requested.min(usable))
}

/// How an object is cut into parts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartPlan {
    pub size: u64,
    pub part_size: u64,
    pub part_count: u32,
}

impl PartPlan {
    /// The plan for `size` bytes: the requested part size (5 MiB to 5 GiB) if it needs at most
    /// 10,000 parts, else the default, raised to a whole number of MiB that does.
    pub fn new(
        size: u64,
        requested_part_size: Option<u64>,
        default_part_size: u64,
        max_object_bytes: u64,
    ) -> Result<Self, Error> {
        if size == 0 {
            return Err(Error::SizeNotAllowed {
                size,
                why: "an empty object is a single upload".into(),
            });
        }
        let limit = max_object_bytes.min(MAX_OBJECT_BYTES);
        if size > limit {
            return Err(Error::SizeNotAllowed {
                size,
                why: format!("the largest upload is {limit} bytes"),
            });
        }
        let needed = size.div_ceil(u64::from(MAX_PARTS));
        let part_size = match requested_part_size {
            Some(requested) => {
                if !(MIN_PART_BYTES..=MAX_PART_BYTES).contains(&requested) {
                    return Err(Error::PartSizeNotAllowed {
                        requested,
                        why: format!("parts are {MIN_PART_BYTES} to {MAX_PART_BYTES} bytes"),
                    });
                }
                if requested < needed {
                    return Err(Error::PartSizeNotAllowed {
                        requested,
                        why: format!(
                            "{size} bytes would need more than {MAX_PARTS} parts; parts of at least {needed} bytes"
                        ),
                    });
                }
                requested
            }
            None => default_part_size.max(needed.div_ceil(MIB) * MIB),
        };
        Ok(PartPlan {
            size,
            part_size,
            part_count: u32::try_from(size.div_ceil(part_size)).unwrap_or(u32::MAX),
        })
    }

    /// The length of part `number` (1-based): the part size, but the last part holds the rest.
    pub fn part_len(&self, number: u32) -> u64 {
        if number == 0 || number > self.part_count {
            return 0;
        }
        let start = u64::from(number - 1) * self.part_size;
        (self.size - start).min(self.part_size)
    }

    pub fn contains(&self, number: u32) -> bool {
        (1..=self.part_count).contains(&number)
    }
}

/// Whether the part numbers of one signing request may be signed.
pub fn check_sign_batch(plan: &PartPlan, numbers: &[u32]) -> Result<(), Error> {
    if numbers.is_empty() || numbers.len() > MAX_SIGN_BATCH {
        return Err(Error::InvalidRequest(format!(
            "sign 1 to {MAX_SIGN_BATCH} parts at a time, not {}",
            numbers.len()
        )));
    }
    let out_of_range: Vec<u32> = numbers
        .iter()
        .copied()
        .filter(|n| !plan.contains(*n))
        .collect();
    if !out_of_range.is_empty() {
        return Err(Error::PartNumberOutOfRange {
            numbers: out_of_range,
            part_count: plan.part_count,
        });
    }
    let distinct: BTreeSet<u32> = numbers.iter().copied().collect();
    if distinct.len() != numbers.len() {
        return Err(Error::InvalidRequest(
            "a part number appears twice in one request".into(),
        ));
    }
    Ok(())
}

/// Longest ETag a client may claim for a part (S3's are 34 characters, quotes included).
pub const MAX_ETAG_CHARS: usize = 256;

/// Whether a part list may be checked at all: no more parts than S3 allows in an upload, no ETag
/// longer than S3 makes. Checked before any other work on the request.
pub fn check_part_list<'a>(etags: impl ExactSizeIterator<Item = &'a str>) -> Result<(), Error> {
    let count = etags.len();
    if count > MAX_PARTS as usize {
        return Err(Error::InvalidRequest(format!(
            "an upload has at most {MAX_PARTS} parts; this list has {count}"
        )));
    }
    let mut etags = etags;
    if etags.any(|etag| etag.len() > MAX_ETAG_CHARS) {
        return Err(Error::InvalidRequest(format!(
            "an ETag is at most {MAX_ETAG_CHARS} characters"
        )));
    }
    Ok(())
}

/// A part as ListParts reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadedPart {
    pub number: u32,
    pub size: u64,
    pub etag: String,
    /// S3 reports it when the part was uploaded with one.
    pub crc32c: Option<u32>,
}

/// A part as the client says it uploaded it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimedPart {
    pub number: u32,
    pub etag: String,
}

/// A part as CompleteMultipartUpload is told of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompletePart {
    pub number: u32,
    pub etag: String,
    pub crc32c: u32,
}

/// Checks the client's part list against what S3 holds and what the plan says, and the parts'
/// checksums against the declared whole-object CRC32C. `signed` has the CRC32C signed into each
/// part's URL: S3 refuses a part whose body does not match it, so where ListParts does not report
/// a part's checksum, the signed one is the part's.
pub fn check_complete(
    plan: &PartPlan,
    declared: u32,
    claimed: &[ClaimedPart],
    uploaded: &[UploadedPart],
    signed: &BTreeMap<u32, u32>,
) -> Result<Vec<CompletePart>, Error> {
    let out_of_range: Vec<u32> = claimed
        .iter()
        .map(|p| p.number)
        .filter(|n| !plan.contains(*n))
        .collect();
    if !out_of_range.is_empty() {
        return Err(Error::PartNumberOutOfRange {
            numbers: out_of_range,
            part_count: plan.part_count,
        });
    }
    if claimed.windows(2).any(|w| w[0].number >= w[1].number) {
        return Err(Error::InvalidRequest(
            "parts must be listed once each, in ascending order".into(),
        ));
    }
    let uploaded: BTreeMap<u32, &UploadedPart> = uploaded.iter().map(|p| (p.number, p)).collect();
    let claimed_numbers: BTreeSet<u32> = claimed.iter().map(|p| p.number).collect();
    let missing: Vec<u32> = (1..=plan.part_count)
        .filter(|n| !claimed_numbers.contains(n) || !uploaded.contains_key(n))
        .collect();
    if !missing.is_empty() {
        return Err(Error::PartsMissing { numbers: missing });
    }
    let mut parts = Vec::with_capacity(claimed.len());
    for claim in claimed {
        let held = uploaded[&claim.number];
        let expected = plan.part_len(claim.number);
        if held.size != expected {
            return Err(Error::PartMismatch {
                number: claim.number,
                why: format!("S3 holds {} bytes, the plan says {expected}", held.size),
            });
        }
        // An ETag ListParts leaves out (some S3 stand-ins do) cannot be compared here;
        // CompleteMultipartUpload compares the client's with the part's again.
        let held_etag = normalize_etag(&held.etag);
        if !held_etag.is_empty() && normalize_etag(&claim.etag) != held_etag {
            return Err(Error::PartMismatch {
                number: claim.number,
                why: format!(
                    "ETag {:?} is not the uploaded part's {:?}",
                    claim.etag, held.etag
                ),
            });
        }
        let crc32c = held
            .crc32c
            .or_else(|| signed.get(&claim.number).copied())
            .ok_or_else(|| Error::PartMismatch {
                number: claim.number,
                why: "no checksum is known for this part: sign it again and upload it".into(),
            })?;
        parts.push(CompletePart {
            number: claim.number,
            etag: if held_etag.is_empty() {
                claim.etag.clone()
            } else {
                held.etag.clone()
            },
            crc32c,
        });
    }
    let actual = combine_crc32c(parts.iter().map(|p| (p.crc32c, plan.part_len(p.number))));
    if actual != declared {
        return Err(Error::ChecksumMismatch {
            declared: Checksum::Crc32c(declared).to_base64(),
            actual: Checksum::Crc32c(actual).to_base64(),
        });
    }
    Ok(parts)
}

/// The part numbers of the plan S3 does not hold yet (for a client resuming).
pub fn missing_parts(plan: &PartPlan, uploaded: &[UploadedPart]) -> Vec<u32> {
    let held: BTreeSet<u32> = uploaded
        .iter()
        .filter(|p| p.size == plan.part_len(p.number))
        .map(|p| p.number)
        .collect();
    (1..=plan.part_count)
        .filter(|n| !held.contains(n))
        .collect()
}

/// ETags compare without their quotes.
pub fn normalize_etag(etag: &str) -> &str {
    etag.trim().trim_matches('"')
}

#[cfg(test)]
mod tests {
    use super::*;

    const GIB: u64 = 1024 * MIB;

    #[test]
    fn keys_stay_under_the_callers_prefix() {
        let prefix = "uploads/alice/";
        assert_eq!(
            authorize_key(prefix, "uploads/alice/photos/a b.jpg")
                .unwrap()
                .as_str(),
            "uploads/alice/photos/a b.jpg"
        );
        for (key, reason) in [
            ("uploads/bob/a.jpg", "key_outside_prefix"),
            ("uploads/alice", "key_outside_prefix"),
            ("uploads/alicex/a.jpg", "key_outside_prefix"),
            ("thumbnails/a.jpg", "key_outside_prefix"),
            ("uploads/alice/../bob/a.jpg", "invalid_key"),
            ("uploads/alice/./a.jpg", "invalid_key"),
            ("uploads/alice/a\u{0}.jpg", "invalid_key"),
            ("uploads/alice/a\n.jpg", "invalid_key"),
            ("/uploads/alice/a.jpg", "invalid_key"),
            ("uploads/alice/", "invalid_key"),
            ("uploads/alice/dir/", "invalid_key"),
            ("uploads/alice//a.jpg", "invalid_key"),
            ("", "invalid_key"),
        ] {
            let err = authorize_key(prefix, key).unwrap_err();
            assert_eq!(shared::Failure::reason(&err), reason, "{key:?}: {err}");
        }
        let long = format!("{prefix}{}", "a".repeat(1024));
        assert_eq!(
            shared::Failure::reason(&authorize_key(prefix, &long).unwrap_err()),
            "invalid_key"
        );
    }

    #[test]
    fn list_prefixes_stay_under_the_callers_prefix() {
        let prefix = "uploads/alice/";
        assert_eq!(authorize_prefix(prefix, None).unwrap(), prefix);
        assert_eq!(authorize_prefix(prefix, Some("")).unwrap(), prefix);
        assert_eq!(
            authorize_prefix(prefix, Some("uploads/alice/photos/")).unwrap(),
            "uploads/alice/photos/"
        );
        for bad in ["uploads/", "uploads/bob/", "uploads/alice/../bob/", "u\n"] {
            assert!(authorize_prefix(prefix, Some(bad)).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn content_types_come_from_the_allow_list() {
        let allowed = vec!["image/jpeg".to_owned(), "video/mp4".to_owned()];
        assert_eq!(
            check_content_type(&allowed, " Image/JPEG ").unwrap(),
            "image/jpeg"
        );
        for bad in ["text/html", "image/jpeg; charset=x", "image/*", ""] {
            let err = check_content_type(&allowed, bad).unwrap_err();
            assert!(matches!(err, Error::TypeNotAllowed(_)), "{bad}");
        }
    }

    #[test]
    fn single_uploads_are_bounded() {
        assert!(check_single_size(0, GIB).is_ok());
        assert!(check_single_size(GIB, GIB).is_ok());
        assert!(matches!(
            check_single_size(GIB + 1, GIB),
            Err(Error::SizeNotAllowed { .. })
        ));
        let err = check_single_size(6 * GIB, 10 * GIB).unwrap_err();
        assert!(err.to_string().contains("multipart"), "{err}");
    }

    #[test]
    fn part_lists_are_bounded() {
        let etag = "\"0123456789abcdef0123456789abcdef\"";
        assert!(check_part_list(std::iter::repeat_n(etag, 10_000)).is_ok());
        let err = check_part_list(std::iter::repeat_n(etag, 10_001)).unwrap_err();
        assert_eq!(shared::Failure::reason(&err), "invalid_request");
        assert!(err.to_string().contains("at most 10000 parts"), "{err}");
        let long = "e".repeat(MAX_ETAG_CHARS + 1);
        let err = check_part_list([etag, long.as_str()].into_iter()).unwrap_err();
        assert!(!err.to_string().contains(&long), "{err}");
    }

    #[test]
    fn signed_lifetimes_end_before_their_credentials() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let hour = Duration::from_secs(3600);
        assert_eq!(signed_lifetime(hour, now, None).unwrap(), hour);
        let far = Some(now + Duration::from_secs(6 * 3600));
        assert_eq!(signed_lifetime(hour, now, far).unwrap(), hour);
        let near = Some(now + Duration::from_millis(300_500));
        assert_eq!(
            signed_lifetime(hour, now, near).unwrap(),
            Duration::from_secs(240)
        );
        for gone in [now + Duration::from_secs(60), now - Duration::from_secs(1)] {
            let err = signed_lifetime(hour, now, Some(gone)).unwrap_err();
            assert_eq!(shared::Failure::reason(&err), "credentials");
            assert_eq!(err.status(), 503);
        }
    }

    #[test]
    fn expiries() {
        let default = Duration::from_secs(900);
        let max = Duration::from_secs(3600);
        assert_eq!(url_expiry(None, default, max).unwrap(), default);
        assert_eq!(
            url_expiry(Some(60), default, max).unwrap(),
            Duration::from_secs(60)
        );
        assert!(url_expiry(Some(3600), default, max).is_ok());
        for bad in [0, 3601] {
            assert!(matches!(
                url_expiry(Some(bad), default, max),
                Err(Error::ExpiryNotAllowed { .. })
            ));
        }
    }

    #[test]
    fn part_plans() {
        let plan = PartPlan::new(20 * MIB + 3, None, 8 * MIB, 5 * GIB).unwrap();
        assert_eq!((plan.part_size, plan.part_count), (8 * MIB, 3));
        assert_eq!(plan.part_len(1), 8 * MIB);
        assert_eq!(plan.part_len(3), 4 * MIB + 3);
        assert_eq!(plan.part_len(4), 0);
        assert_eq!(plan.part_len(0), 0);
        let one = PartPlan::new(10, None, 8 * MIB, 5 * GIB).unwrap();
        assert_eq!((one.part_count, one.part_len(1)), (1, 10));
        // 1 TiB at 8 MiB would be 131,072 parts: the part size grows to fit 10,000.
        let big = PartPlan::new(1024 * GIB, None, 8 * MIB, MAX_OBJECT_BYTES).unwrap();
        assert!(big.part_count <= MAX_PARTS);
        assert_eq!(big.part_size % MIB, 0);
        assert_eq!(big.part_size, 105 * MIB);
        let requested = PartPlan::new(100 * MIB, Some(16 * MIB), 8 * MIB, GIB).unwrap();
        assert_eq!((requested.part_size, requested.part_count), (16 * MIB, 7));
    }

    #[test]
    fn part_plans_refuse_what_s3_would() {
        let cases = [
            (0, None, "size_not_allowed"),
            (GIB + 1, None, "size_not_allowed"),
            (100 * MIB, Some(MIB), "part_size_not_allowed"),
            (100 * MIB, Some(6 * GIB), "part_size_not_allowed"),
        ];
        for (size, part, reason) in cases {
            let err = PartPlan::new(size, part, 8 * MIB, GIB).unwrap_err();
            assert_eq!(shared::Failure::reason(&err), reason, "{size} {part:?}");
        }
        let err = PartPlan::new(100 * GIB, Some(5 * MIB), 8 * MIB, MAX_OBJECT_BYTES).unwrap_err();
        assert!(err.to_string().contains("10000 parts"), "{err}");
    }

    #[test]
    fn sign_batches() {
        let plan = PartPlan::new(20 * MIB, None, 8 * MIB, GIB).unwrap();
        assert!(check_sign_batch(&plan, &[1, 2, 3]).is_ok());
        let err = check_sign_batch(&plan, &[0, 2, 4]).unwrap_err();
        assert!(
            matches!(err, Error::PartNumberOutOfRange { ref numbers, part_count: 3 } if numbers == &[0, 4])
        );
        assert!(matches!(
            check_sign_batch(&plan, &[1, 1]),
            Err(Error::InvalidRequest(_))
        ));
        assert!(matches!(
            check_sign_batch(&plan, &[]),
            Err(Error::InvalidRequest(_))
        ));
        let many: Vec<u32> = (1..=101).collect();
        let big = PartPlan::new(2 * GIB, Some(5 * MIB), 8 * MIB, 5 * GIB).unwrap();
        assert!(matches!(
            check_sign_batch(&big, &many),
            Err(Error::InvalidRequest(_))
        ));
    }

    /// A 3-part object, its parts as S3 holds them, and the client's list.
    fn fixture() -> (PartPlan, Vec<u8>, Vec<UploadedPart>, Vec<ClaimedPart>) {
        let plan = PartPlan::new(11 * MIB, Some(5 * MIB), 8 * MIB, GIB).unwrap();
        let data: Vec<u8> = (0..plan.size).map(|i| (i % 253) as u8).collect();
        let uploaded: Vec<UploadedPart> = data
            .chunks(plan.part_size as usize)
            .enumerate()
            .map(|(i, chunk)| UploadedPart {
                number: i as u32 + 1,
                size: chunk.len() as u64,
                etag: format!("\"etag-{}\"", i + 1),
                crc32c: Some(crc32c::crc32c(chunk)),
            })
            .collect();
        let claimed = uploaded
            .iter()
            .map(|p| ClaimedPart {
                number: p.number,
                etag: p.etag.trim_matches('"').to_owned(),
            })
            .collect();
        (plan, data, uploaded, claimed)
    }

    #[test]
    fn a_matching_complete_passes() {
        let (plan, data, uploaded, claimed) = fixture();
        let whole = crc32c::crc32c(&data);
        let parts = check_complete(&plan, whole, &claimed, &uploaded, &BTreeMap::new()).unwrap();
        assert_eq!(parts.len(), 3);
        assert_eq!(parts[2].etag, "\"etag-3\"");
        // Without S3's part checksums, the signed ones stand in.
        let signed: BTreeMap<u32, u32> = uploaded
            .iter()
            .map(|p| (p.number, p.crc32c.unwrap()))
            .collect();
        let bare: Vec<UploadedPart> = uploaded
            .iter()
            .cloned()
            .map(|p| UploadedPart { crc32c: None, ..p })
            .collect();
        assert_eq!(
            check_complete(&plan, whole, &claimed, &bare, &signed).unwrap(),
            parts
        );
        assert!(matches!(
            check_complete(&plan, whole, &claimed, &bare, &BTreeMap::new()),
            Err(Error::PartMismatch { number: 1, .. })
        ));
    }

    #[test]
    fn a_complete_with_missing_parts_is_refused() {
        let (plan, data, uploaded, claimed) = fixture();
        let whole = crc32c::crc32c(&data);
        let err =
            check_complete(&plan, whole, &claimed[..2], &uploaded, &BTreeMap::new()).unwrap_err();
        assert!(matches!(err, Error::PartsMissing { ref numbers } if numbers == &[3]));
        let err =
            check_complete(&plan, whole, &claimed, &uploaded[1..], &BTreeMap::new()).unwrap_err();
        assert!(matches!(err, Error::PartsMissing { ref numbers } if numbers == &[1]));
    }

    #[test]
    fn a_complete_with_mismatched_parts_is_refused() {
        let (plan, data, uploaded, claimed) = fixture();
        let whole = crc32c::crc32c(&data);
        let mut wrong_etag = claimed.clone();
        wrong_etag[1].etag = "etag-x".into();
        assert!(matches!(
            check_complete(&plan, whole, &wrong_etag, &uploaded, &BTreeMap::new()),
            Err(Error::PartMismatch { number: 2, .. })
        ));
        // S3 not saying a part's ETag leaves the comparison to CompleteMultipartUpload.
        let mut untold = uploaded.clone();
        untold[1].etag = String::new();
        let parts = check_complete(&plan, whole, &wrong_etag, &untold, &BTreeMap::new()).unwrap();
        assert_eq!(parts[1].etag, "etag-x");
        let mut short = uploaded.clone();
        short[0].size -= 1;
        assert!(matches!(
            check_complete(&plan, whole, &claimed, &short, &BTreeMap::new()),
            Err(Error::PartMismatch { number: 1, .. })
        ));
        let mut unordered = claimed.clone();
        unordered.swap(0, 1);
        assert!(matches!(
            check_complete(&plan, whole, &unordered, &uploaded, &BTreeMap::new()),
            Err(Error::InvalidRequest(_))
        ));
        let mut beyond = claimed.clone();
        beyond.push(ClaimedPart {
            number: 4,
            etag: "e".into(),
        });
        assert!(matches!(
            check_complete(&plan, whole, &beyond, &uploaded, &BTreeMap::new()),
            Err(Error::PartNumberOutOfRange { .. })
        ));
    }

    #[test]
    fn a_complete_whose_checksum_differs_is_refused() {
        let (plan, data, uploaded, claimed) = fixture();
        let whole = crc32c::crc32c(&data);
        let err =
            check_complete(&plan, whole ^ 1, &claimed, &uploaded, &BTreeMap::new()).unwrap_err();
        match err {
            Error::ChecksumMismatch { declared, actual } => {
                assert_eq!(actual, Checksum::Crc32c(whole).to_base64());
                assert_eq!(declared, Checksum::Crc32c(whole ^ 1).to_base64());
            }
            other => panic!("{other}"),
        }
        // A corrupted part (S3 holds other bytes than the client checksummed) shows the same way.
        let mut corrupted = uploaded.clone();
        corrupted[1].crc32c = Some(crc32c::crc32c(b"other bytes"));
        assert!(matches!(
            check_complete(&plan, whole, &claimed, &corrupted, &BTreeMap::new()),
            Err(Error::ChecksumMismatch { .. })
        ));
    }

    #[test]
    fn missing_parts_for_resuming() {
        let (plan, _, uploaded, _) = fixture();
        assert!(missing_parts(&plan, &uploaded).is_empty());
        let mut partial = vec![uploaded[1].clone()];
        assert_eq!(missing_parts(&plan, &partial), [1, 3]);
        partial[0].size = 1;
        assert_eq!(missing_parts(&plan, &partial), [1, 2, 3]);
    }
}
