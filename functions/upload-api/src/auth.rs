//! Who is calling. Two modes, chosen in the configuration:
//!
//! - `token`: `Authorization: Bearer <token>`; the configuration holds, per caller, the SHA-256 of
//!   its token (never the token), and the presented token's hash is compared with each in constant
//!   time.
//! - `iam`: the function URL's `AWS_IAM` auth type has already verified the SigV4 signature; the
//!   caller is the signing principal, named by its account and its IAM unique id (see
//!   [`caller_from_principal`]), never by a name that whoever signs could pick: a role session
//!   name alone is chosen by whoever calls sts:AssumeRole.
//!
//! Either way the caller's id becomes a path segment of its upload prefix, so it is held to a
//! strict alphabet.

use http::HeaderMap;
use sha2::{Digest, Sha256};

use crate::error::Error;

/// The longest caller id. An IAM caller's is at most 99 today: an account (12), `:`, a role's
/// unique id (21), `:`, a session name (64).
pub const MAX_CALLER_LEN: usize = 128;

/// An authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    id: String,
}

impl Caller {
    /// A caller id: 1 to 128 of `A-Z a-z 0-9 . _ - : @ = , +` (the characters of account ids,
    /// IAM unique ids and role session names), not `.` or `..`: one segment of a key.
    pub fn new(id: &str) -> Option<Self> {
        let valid = !id.is_empty()
            && id.len() <= MAX_CALLER_LEN
            && id != "."
            && id != ".."
            && id.bytes().all(|b| {
                b.is_ascii_alphanumeric()
                    || matches!(b, b'.' | b'_' | b'-' | b':' | b'@' | b'=' | b',' | b'+')
            });
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

/// The IAM principal the function URL authorizer saw (`requestContext.authorizer.iam`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IamPrincipal {
    /// `arn:aws:iam::<account>:user/<path/><name>`, `arn:aws:sts::<account>:assumed-role/<role>/<session>`, ...
    pub user_arn: Option<String>,
    /// The principal's unique id, as IAM's `aws:userid` policy variable gives it: `AIDA...` for an
    /// IAM user, `AROA...:<session>` for an assumed role (the role's unique id, then the session).
    pub user_id: Option<String>,
    /// The principal's account.
    pub account_id: Option<String>,
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
            let principal = iam.ok_or(Error::Unauthenticated)?;
            caller_from_principal(principal).map_err(|unmapped| Error::UnknownCaller {
                principal: principal
                    .user_arn
                    .clone()
                    .unwrap_or_else(|| "(no userArn)".to_owned()),
                why: unmapped.why(),
            })
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

/// Why a signing principal has no caller id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unmapped {
    Root,
    FederatedUser,
    /// Neither an IAM user nor an assumed role.
    OtherPrincipal,
    /// The context's fields are missing, malformed or disagree with each other.
    Inconsistent,
}

impl Unmapped {
    pub fn why(self) -> &'static str {
        match self {
            Unmapped::Root => {
                "an account's root user is not accepted: sign as an IAM user or with a role"
            }
            Unmapped::FederatedUser => {
                "a federated user's name is chosen by whoever calls sts:GetFederationToken, so it \
                 names no single principal: sign as an IAM user or with a role"
            }
            Unmapped::OtherPrincipal => "only IAM users and assumed roles have an upload prefix",
            Unmapped::Inconsistent => {
                "the request's IAM context (userArn, userId, accountId) is incomplete or \
                 inconsistent"
            }
        }
    }
}

/// The caller id of a signing principal: its account, `:`, its unique id (`aws:userid`).
///
/// - IAM user `arn:aws:iam::123456789012:user/team/alice`, user id `AIDA...` →
///   `123456789012:AIDA...`: the user's unique id, not its name, which a user deleted and created
///   again (perhaps for someone else) would reuse.
/// - Assumed role `arn:aws:sts::123456789012:assumed-role/Uploaders/alice`, user id
///   `AROA...:alice` → `123456789012:AROA...:alice`: the session name is whatever the caller of
///   sts:AssumeRole chose, so it only tells apart sessions of one role; the role's unique id
///   tells roles apart, and a role deleted and created again under the same name gets a new one.
///   IAM Identity Center users are sessions of an `AWSReservedSSO_...` role named by Identity
///   Center after the user: `123456789012:AROA...:alice@example.com`.
///
/// The account comes first, so principals of different accounts (a function URL's resource
/// policy may admit other accounts) never share an id. The account is 12 digits and a unique id
/// has no `:` before its session, so the id reads back into exactly one (account, user id): two
/// principals never share one. Token callers' ids have no `:`, so they never look like these.
pub fn caller_from_principal(principal: &IamPrincipal) -> Result<Caller, Unmapped> {
    let arn = principal
        .user_arn
        .as_deref()
        .ok_or(Unmapped::Inconsistent)?;
    let Some(shared::aws::Arn {
        partition,
        service,
        region: "",
        account,
        resource,
    }) = shared::aws::Arn::parse(arn)
    else {
        return Err(Unmapped::Inconsistent);
    };
    if !partition.starts_with("aws")
        || account.len() != 12
        || !account.bytes().all(|b| b.is_ascii_digit())
        || principal
            .account_id
            .as_deref()
            .is_some_and(|a| a != account)
    {
        return Err(Unmapped::Inconsistent);
    }
    let user_id = principal.user_id.as_deref();
    let (kind, path) = resource.split_once('/').unwrap_or((resource, ""));
    let segments: Vec<&str> = path.split('/').collect();
    let unique_id = match (service, kind) {
        ("iam", "root") if path.is_empty() => return Err(Unmapped::Root),
        ("sts", "federated-user") => return Err(Unmapped::FederatedUser),
        // user/<name> or user/<path>/<name>: the name is the last segment.
        ("iam", "user") => {
            let named = segments.last().is_some_and(|name| !name.is_empty());
            user_id
                .filter(|id| named && is_unique_id(id, "AIDA"))
                .ok_or(Unmapped::Inconsistent)?
        }
        ("sts", "assumed-role") => {
            let [role, session] = segments.as_slice() else {
                return Err(Unmapped::Inconsistent);
            };
            let of_this_session = |id: &&str| {
                id.split_once(':').is_some_and(|(role_id, id_session)| {
                    is_unique_id(role_id, "AROA") && id_session == *session
                })
            };
            user_id
                .filter(|id| !role.is_empty() && !session.is_empty() && of_this_session(id))
                .ok_or(Unmapped::Inconsistent)?
        }
        _ => return Err(Unmapped::OtherPrincipal),
    };
    Caller::new(&format!("{account}:{unique_id}")).ok_or(Unmapped::Inconsistent)
}

/// An IAM unique id of the kind `prefix` marks (`AIDA` user, `AROA` role): upper-case letters
/// and digits.
fn is_unique_id(id: &str, prefix: &str) -> bool {
    id.len() > prefix.len()
        && id.len() <= 32
        && id.starts_with(prefix)
        && id
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use super::*;
    use shared::Failure;

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
        for bad in ["", ".", "..", "a/b", "a b", "é", "a%2Fb", &"x".repeat(129)] {
            assert!(Caller::new(bad).is_none(), "{bad:?}");
        }
        for good in [
            "alice",
            "a_1.b-c",
            "123456789012:AROA3XFRBF535PLBIFPI4:alice+ops@example.com",
            &"x".repeat(128),
        ] {
            assert!(Caller::new(good).is_some(), "{good:?}");
        }
    }

    const ACCOUNT: &str = "111122223333";
    const ROLE_X: &str = "AROAXXXXXXXXXXXXXXXXX";
    const ROLE_Y: &str = "AROAYYYYYYYYYYYYYYYYY";

    fn principal(arn: &str, user_id: &str, account: &str) -> IamPrincipal {
        IamPrincipal {
            user_arn: Some(arn.to_owned()),
            user_id: Some(user_id.to_owned()),
            account_id: Some(account.to_owned()),
        }
    }

    fn session(account: &str, role: &str, role_id: &str, session: &str) -> IamPrincipal {
        principal(
            &format!("arn:aws:sts::{account}:assumed-role/{role}/{session}"),
            &format!("{role_id}:{session}"),
            account,
        )
    }

    fn id(principal: &IamPrincipal) -> Result<String, Unmapped> {
        caller_from_principal(principal).map(|caller| caller.id().to_owned())
    }

    #[test]
    fn iam_users_are_their_unique_ids() {
        let user = principal(
            "arn:aws:iam::111122223333:user/alice",
            "AIDAJQABLZS4A3QDU576Q",
            ACCOUNT,
        );
        assert_eq!(id(&user).unwrap(), "111122223333:AIDAJQABLZS4A3QDU576Q");
        // The path is not part of the id: the name is unique in the account, the unique id more so.
        let with_path = principal(
            "arn:aws:iam::111122223333:user/division/team/alice",
            "AIDAJQABLZS4A3QDU576Q",
            ACCOUNT,
        );
        assert_eq!(id(&with_path), id(&user));
        // A user deleted and created again under the same name is another principal.
        let recreated = principal(
            "arn:aws:iam::111122223333:user/alice",
            "AIDAZZZZZZZZZZZZZZZZZ",
            ACCOUNT,
        );
        assert_ne!(id(&recreated), id(&user));
    }

    #[test]
    fn assumed_roles_are_the_role_and_the_session() {
        assert_eq!(
            id(&session(ACCOUNT, "Uploaders", ROLE_X, "device-42")).unwrap(),
            "111122223333:AROAXXXXXXXXXXXXXXXXX:device-42"
        );
        // Identity Center: a reserved role per permission set, the session named after the user.
        let sso = session(
            ACCOUNT,
            "AWSReservedSSO_Uploaders_0123456789abcdef",
            ROLE_Y,
            "alice+ops@example.com",
        );
        assert_eq!(
            id(&sso).unwrap(),
            "111122223333:AROAYYYYYYYYYYYYYYYYY:alice+ops@example.com"
        );
        assert_eq!(
            caller_from_principal(&sso).unwrap().prefix("uploads/"),
            "uploads/111122223333:AROAYYYYYYYYYYYYYYYYY:alice+ops@example.com/"
        );
    }

    #[test]
    fn a_session_name_taken_by_another_principal_is_another_caller() {
        let first = id(&session(ACCOUNT, "Uploaders", ROLE_X, "alice")).unwrap();
        let others = [
            // Another role of the same account, its session named like the first.
            session(ACCOUNT, "Intruders", ROLE_Y, "alice"),
            // The role deleted and created again under the same name: a new unique id.
            session(ACCOUNT, "Uploaders", "AROAZZZZZZZZZZZZZZZZZ", "alice"),
            // A role of the same name (and, were unique ids ever shared, id) in another account.
            session("444455556666", "Uploaders", ROLE_X, "alice"),
            // An IAM user named like the session.
            principal(
                "arn:aws:iam::111122223333:user/alice",
                "AIDAJQABLZS4A3QDU576Q",
                ACCOUNT,
            ),
        ];
        for other in &others {
            let other_id = id(other).unwrap();
            assert_ne!(other_id, first, "{other:?}");
            assert!(!other_id.starts_with(&first) && !first.starts_with(&other_id));
        }
        // The same session of the same role is the same caller, whoever assumed it: the role's
        // trust policy decides who may (docs/uploads.md).
        assert_eq!(
            id(&session(ACCOUNT, "Uploaders", ROLE_X, "alice")).unwrap(),
            first
        );
    }

    #[test]
    fn cross_account_principals_carry_their_account() {
        let there = session("444455556666", "Uploaders", ROLE_X, "device-1");
        assert_eq!(
            id(&there).unwrap(),
            "444455556666:AROAXXXXXXXXXXXXXXXXX:device-1"
        );
        let user = principal(
            "arn:aws:iam::444455556666:user/bob",
            "AIDAJQABLZS4A3QDU576Q",
            "444455556666",
        );
        assert_eq!(id(&user).unwrap(), "444455556666:AIDAJQABLZS4A3QDU576Q");
    }

    #[test]
    fn root_and_federated_users_are_refused() {
        let root = principal("arn:aws:iam::111122223333:root", ACCOUNT, ACCOUNT);
        assert_eq!(id(&root), Err(Unmapped::Root));
        // GetFederationToken's name is the caller's choice: two IAM users could both be "carol".
        let federated = principal(
            "arn:aws:sts::111122223333:federated-user/carol",
            "111122223333:carol",
            ACCOUNT,
        );
        assert_eq!(id(&federated), Err(Unmapped::FederatedUser));
        let err = authenticate(&AuthMode::Iam, &HeaderMap::new(), Some(&federated)).unwrap_err();
        assert_eq!((err.status(), err.reason()), (403, "unknown_caller"));
        let message = err.public_message();
        assert!(
            message.contains("federated-user/carol") && message.contains("GetFederationToken"),
            "{message}"
        );
    }

    #[test]
    fn malformed_or_inconsistent_contexts_are_refused() {
        let good = session(ACCOUNT, "Uploaders", ROLE_X, "alice");
        assert!(id(&good).is_ok());
        let mut cases: Vec<(IamPrincipal, Unmapped)> = Vec::new();
        let mut with = |change: &dyn Fn(&mut IamPrincipal), expected| {
            let mut principal = good.clone();
            change(&mut principal);
            cases.push((principal, expected));
        };
        let inconsistent = Unmapped::Inconsistent;
        with(&|p| p.user_arn = None, inconsistent);
        with(&|p| p.user_id = None, inconsistent);
        // The ARN's session and the unique id's disagree.
        with(&|p| p.user_id = Some(format!("{ROLE_X}:bob")), inconsistent);
        // A user's id where a role's is expected, and a lower-case or empty one.
        with(
            &|p| p.user_id = Some("AIDAJQABLZS4A3QDU576Q:alice".into()),
            inconsistent,
        );
        with(&|p| p.user_id = Some("AROAxxxx:alice".into()), inconsistent);
        with(&|p| p.user_id = Some("AROA:alice".into()), inconsistent);
        // The authorizer's account is not the ARN's.
        with(
            &|p| p.account_id = Some("444455556666".into()),
            inconsistent,
        );
        for arn in [
            "not an arn",
            "arn:aws:sts::1111:assumed-role/Uploaders/alice",
            "arn:aws:sts:us-east-1:111122223333:assumed-role/Uploaders/alice",
            "arn:aws:sts::111122223333:assumed-role/Uploaders",
            "arn:aws:sts::111122223333:assumed-role/Uploaders/",
            "arn:aws:sts::111122223333:assumed-role/Uploaders/alice/extra",
            "other:aws:sts::111122223333:assumed-role/Uploaders/alice",
        ] {
            with(&|p| p.user_arn = Some(arn.into()), inconsistent);
        }
        // The session has a character no session name has.
        with(
            &|p| {
                p.user_arn = Some(format!("arn:aws:sts::{ACCOUNT}:assumed-role/Uploaders/a b"));
                p.user_id = Some(format!("{ROLE_X}:a b"));
            },
            inconsistent,
        );
        // A user ARN without a name, or whose unique id is a role's.
        with(
            &|p| {
                p.user_arn = Some(format!("arn:aws:iam::{ACCOUNT}:user/"));
                p.user_id = Some("AIDAJQABLZS4A3QDU576Q".into());
            },
            inconsistent,
        );
        with(
            &|p| {
                p.user_arn = Some(format!("arn:aws:iam::{ACCOUNT}:user/alice"));
                p.user_id = Some(ROLE_X.into());
            },
            inconsistent,
        );
        // Not a user or an assumed role at all.
        with(
            &|p| p.user_arn = Some(format!("arn:aws:iam::{ACCOUNT}:role/Uploaders")),
            Unmapped::OtherPrincipal,
        );
        for (principal, expected) in cases {
            assert_eq!(id(&principal), Err(expected), "{principal:?}");
        }
    }

    #[test]
    fn iam_mode_needs_the_authorizer_context() {
        let principal = session(ACCOUNT, "Uploaders", ROLE_X, "alice");
        let caller = authenticate(&AuthMode::Iam, &HeaderMap::new(), Some(&principal)).unwrap();
        assert_eq!(caller.id(), "111122223333:AROAXXXXXXXXXXXXXXXXX:alice");
        let err = authenticate(&AuthMode::Iam, &HeaderMap::new(), None).unwrap_err();
        assert!(matches!(err, Error::Unauthenticated));
        // A bearer token means nothing in IAM mode.
        let err = authenticate(&AuthMode::Iam, &headers("Bearer alice-secret"), None).unwrap_err();
        assert!(matches!(err, Error::Unauthenticated));
    }
}
