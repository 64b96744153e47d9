//! Who is calling. Two modes, chosen in the configuration:
//!
//! - `token`: `Authorization: Bearer <token>`; the configuration holds, per caller, the SHA-256 of
//!   its token (never the token), and the presented token's hash is compared with each in constant
//!   time.
//! - `iam`: the function URL's `AWS_IAM` auth type has already verified the SigV4 signature; the
//!   caller is the IAM user name or the role session name of the signing principal, so each
//!   device or user assumes the uploaders' role with its own session name.
//!
//! Either way the caller's id becomes a path segment of its upload prefix, so it is held to a
//! strict alphabet.

use http::HeaderMap;
use sha2::{Digest, Sha256};

use crate::error::Error;

/// The longest caller id.
pub const MAX_CALLER_LEN: usize = 64;

/// An authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    id: String,
}

impl Caller {
    /// A caller id: 1 to 64 of `A-Z a-z 0-9 . _ -`, not `.` or `..`.
    pub fn new(id: &str) -> Option<Self> {
        let valid = !id.is_empty()
            && id.len() <= MAX_CALLER_LEN
            && id != "."
            && id != ".."
            && id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
        valid.then(|| Caller { id: id.to_owned() })
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    /// The prefix every key of this caller is under.
    pub fn prefix(&self, upload_prefix: &str) -> String {
        format!("{upload_prefix}{}/", self.id)
    }
}

/// How callers are authenticated.
#[derive(Clone, PartialEq, Eq)]
pub enum AuthMode {
    Token(Vec<TokenHash>),
    Iam,
}

impl std::fmt::Debug for AuthMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AuthMode::Token(hashes) => write!(f, "Token({} callers)", hashes.len()),
            AuthMode::Iam => f.write_str("Iam"),
        }
    }
}

/// One caller's token, as its SHA-256.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenHash {
    pub caller: Caller,
    pub sha256: [u8; 32],
}

/// Parses `caller:hex-sha256` pairs, comma-separated.
pub fn parse_token_hashes(raw: &str) -> Option<Vec<TokenHash>> {
    let hashes = shared::config::split_list(raw)
        .iter()
        .map(|pair| {
            let (caller, hex) = pair.split_once(':')?;
            Some(TokenHash {
                caller: Caller::new(caller.trim())?,
                sha256: parse_hex32(hex.trim())?,
            })
        })
        .collect::<Option<Vec<_>>>()?;
    (!hashes.is_empty()).then_some(hashes)
}

fn parse_hex32(hex: &str) -> Option<[u8; 32]> {
    if hex.len() != 64 || !hex.is_ascii() {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(out)
}

/// The hex SHA-256 of a token, as the configuration holds it.
pub fn token_hash_hex(token: &str) -> String {
    Sha256::digest(token.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The IAM principal the function URL authorizer saw.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IamPrincipal {
    pub user_arn: Option<String>,
}

/// Authenticates a request.
pub fn authenticate(
    mode: &AuthMode,
    headers: &HeaderMap,
    iam: Option<&IamPrincipal>,
) -> Result<Caller, Error> {
    match mode {
        AuthMode::Token(hashes) => {
            let token = bearer_token(headers).ok_or(Error::Unauthenticated)?;
            let presented: [u8; 32] = Sha256::digest(token.as_bytes()).into();
            // Every configured hash is compared, whatever matches, so that the time taken says
            // nothing about which caller (if any) a guess came close to.
            let mut found = None;
            for hash in hashes {
                if constant_time_eq(&presented, &hash.sha256) {
                    found = Some(hash.caller.clone());
                }
            }
            found.ok_or(Error::InvalidToken)
        }
        AuthMode::Iam => {
            let arn = iam
                .and_then(|p| p.user_arn.as_deref())
                .ok_or(Error::Unauthenticated)?;
            caller_from_arn(arn).ok_or_else(|| Error::UnknownCaller(arn.to_owned()))
        }
    }
}

fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(http::header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

fn constant_time_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The caller an IAM ARN names: a user's name, or an assumed role's session name.
pub fn caller_from_arn(arn: &str) -> Option<Caller> {
    let resource = arn.splitn(6, ':').nth(5)?;
    let mut parts = resource.split('/');
    match parts.next()? {
        "user" => Caller::new(resource.rsplit('/').next()?),
        "assumed-role" => {
            let _role = parts.next()?;
            let session = parts.next()?;
            if parts.next().is_some() {
                return None;
            }
            Caller::new(session)
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(auth: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(http::header::AUTHORIZATION, auth.parse().unwrap());
        headers
    }

    fn mode() -> AuthMode {
        let raw = format!(
            "alice:{},bob:{}",
            token_hash_hex("alice-secret"),
            token_hash_hex("bob-secret")
        );
        AuthMode::Token(parse_token_hashes(&raw).unwrap())
    }

    #[test]
    fn bearer_tokens_name_their_caller() {
        let caller = authenticate(&mode(), &headers("Bearer bob-secret"), None).unwrap();
        assert_eq!(caller.id(), "bob");
        assert_eq!(caller.prefix("uploads/"), "uploads/bob/");
        let caller = authenticate(&mode(), &headers("bearer  alice-secret "), None).unwrap();
        assert_eq!(caller.id(), "alice");
    }

    #[test]
    fn bad_tokens_are_refused() {
        let err = authenticate(&mode(), &headers("Bearer nope"), None).unwrap_err();
        assert!(matches!(err, Error::InvalidToken));
        for auth in ["Basic YWxpY2U6eA==", "Bearer", "Bearer   ", "alice-secret"] {
            let err = authenticate(&mode(), &headers(auth), None).unwrap_err();
            assert!(matches!(err, Error::Unauthenticated), "{auth}");
        }
        let err = authenticate(&mode(), &HeaderMap::new(), None).unwrap_err();
        assert!(matches!(err, Error::Unauthenticated));
    }

    #[test]
    fn token_configuration_is_checked() {
        assert!(parse_token_hashes("").is_none());
        assert!(parse_token_hashes("alice").is_none());
        assert!(parse_token_hashes("alice:abcd").is_none());
        assert!(parse_token_hashes(&format!("../x:{}", token_hash_hex("t"))).is_none());
        assert!(parse_token_hashes(&format!("alice:{}", "zz".repeat(32))).is_none());
        let hashes = parse_token_hashes(&format!(" a_1.b-c : {} ,", token_hash_hex("t"))).unwrap();
        assert_eq!(hashes[0].caller.id(), "a_1.b-c");
    }

    #[test]
    fn caller_ids_are_path_segments() {
        for bad in ["", ".", "..", "a/b", "a b", "é", &"x".repeat(65)] {
            assert!(Caller::new(bad).is_none(), "{bad:?}");
        }
        assert!(Caller::new(&"x".repeat(64)).is_some());
    }

    #[test]
    fn iam_principals_map_to_callers() {
        let cases = [
            ("arn:aws:iam::123456789012:user/alice", Some("alice")),
            ("arn:aws:iam::123456789012:user/team/bob", Some("bob")),
            (
                "arn:aws:sts::123456789012:assumed-role/Uploaders/device-42",
                Some("device-42"),
            ),
            ("arn:aws:sts::123456789012:assumed-role/Uploaders", None),
            ("arn:aws:iam::123456789012:root", None),
            ("arn:aws:sts::123456789012:federated-user/carol", None),
            ("not an arn", None),
        ];
        for (arn, expected) in cases {
            assert_eq!(
                caller_from_arn(arn).as_ref().map(Caller::id),
                expected,
                "{arn}"
            );
        }
        let principal = IamPrincipal {
            user_arn: Some("arn:aws:iam::123456789012:user/alice".into()),
        };
        let caller = authenticate(&AuthMode::Iam, &HeaderMap::new(), Some(&principal)).unwrap();
        assert_eq!(caller.id(), "alice");
        let err = authenticate(&AuthMode::Iam, &HeaderMap::new(), None).unwrap_err();
        assert!(matches!(err, Error::Unauthenticated));
    }
}
