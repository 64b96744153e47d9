//! The secret header that tells the domestic origin a request comes from this system. CloudFront
//! sends it as a custom origin header and the backfill function with each fetch, under one name
//! and one value, so the name must be one that both can send: the rule is here once, and the
//! templates' pattern for the name must say the same.

use crate::cloudfront::HOOK_HEADER_PREFIX;

/// The longest name taken: the templates' limit.
pub const NAME_MAX: usize = 64;

/// Headers CloudFront refuses as custom origin headers, lower-cased ("Custom headers that
/// CloudFront can't add to origin requests",
/// https://docs.aws.amazon.com/AmazonCloudFront/latest/DeveloperGuide/add-origin-custom-headers.html#add-origin-custom-headers-denylist).
pub const CLOUDFRONT_REFUSED: [&str; 22] = [
    "cache-control",
    "connection",
    "content-length",
    "cookie",
    "host",
    "if-match",
    "if-modified-since",
    "if-none-match",
    "if-range",
    "if-unmodified-since",
    "max-forwards",
    "pragma",
    "proxy-authorization",
    "proxy-connection",
    "range",
    "request-range",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "via",
    "x-real-ip",
];

/// Prefixes of the names CloudFront refuses as custom origin headers (same page).
pub const CLOUDFRONT_REFUSED_PREFIXES: [&str; 2] = ["x-amz-", "x-edge-"];

/// Headers the backfill function's fetch sets itself (its user agent, and the HTTP client's
/// `Accept: */*`): a secret under one of these names would replace them.
pub const SET_BY_BACKFILL: [&str; 2] = ["accept", "user-agent"];

/// Shortest and longest secret value taken.
pub const VALUE_MIN: usize = 16;
pub const VALUE_MAX: usize = 256;

/// The characters a secret value may hold: those of a generated password without punctuation and
/// of base64, all safe in a header value and in a CloudFormation parameter.
pub const VALUE_CHARACTERS: &str = "A-Z a-z 0-9 . _ ~ + / = -";

/// The form of a name, for error messages.
pub const NAME_FORM: &str = "a header name of 1 to 64 letters, digits and '-' that CloudFront \
    accepts as a custom origin header (not Cache-Control, Connection, Content-Length, Cookie, \
    Host, If-*, Max-Forwards, Pragma, Proxy-*, Range, Request-Range, TE, Trailer, \
    Transfer-Encoding, Upgrade, Via, X-Real-Ip, X-Amz-* or X-Edge-*), not X-Backfill-* (the edge \
    hook removes those) and not Accept or User-Agent (the backfill sets those)";

/// The form of a value, for error messages.
pub const VALUE_FORM: &str = "16 to 256 characters of A-Z a-z 0-9 . _ ~ + / = -";

/// Why `name` cannot be the secret header's name, or `None` when it can.
pub fn name_problem(name: &str) -> Option<String> {
    if name.is_empty() || name.len() > NAME_MAX {
        return Some(format!("is {} characters long", name.len()));
    }
    if !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
        return Some("holds a character other than letters, digits and '-'".to_owned());
    }
    let lower = name.to_ascii_lowercase();
    if CLOUDFRONT_REFUSED.contains(&lower.as_str())
        || CLOUDFRONT_REFUSED_PREFIXES
            .iter()
            .any(|prefix| lower.starts_with(prefix))
    {
        return Some(format!(
            "is {name:?}, which CloudFront refuses as a custom origin header"
        ));
    }
    if lower.starts_with(HOOK_HEADER_PREFIX) {
        return Some(format!(
            "is {name:?}, and the edge hook removes every {HOOK_HEADER_PREFIX}* header"
        ));
    }
    if SET_BY_BACKFILL.contains(&lower.as_str()) {
        return Some(format!(
            "is {name:?}, which the backfill sets on its own requests"
        ));
    }
    None
}

/// Why `value` cannot be the secret's value, or `None` when it can. The problem never quotes the
/// value.
pub fn value_problem(value: &str) -> Option<String> {
    let length = value.chars().count();
    if !(VALUE_MIN..=VALUE_MAX).contains(&length) {
        return Some(format!("is {length} characters long"));
    }
    let allowed = |c: char| c.is_ascii_alphanumeric() || "._~+/=-".contains(c);
    if !value.chars().all(allowed) {
        return Some(format!(
            "holds a character outside {VALUE_CHARACTERS} (a space, a line break or punctuation)"
        ));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_refused_name_is_refused_whatever_its_case() {
        let refused = CLOUDFRONT_REFUSED
            .iter()
            .chain(&SET_BY_BACKFILL)
            .map(|name| (*name).to_owned())
            .chain(["x-amz-cf-id", "X-Amz-Security-Token", "x-edge-location"].map(String::from))
            .chain(["x-backfill-queue-url", "X-Backfill-Secret"].map(String::from));
        for name in refused {
            for written in [name.clone(), name.to_ascii_uppercase(), title_case(&name)] {
                assert!(name_problem(&written).is_some(), "{written} was taken");
            }
        }
    }

    fn title_case(name: &str) -> String {
        name.split('-')
            .map(|word| {
                let mut chars = word.chars();
                chars
                    .next()
                    .map(|first| first.to_ascii_uppercase().to_string() + chars.as_str())
                    .unwrap_or_default()
            })
            .collect::<Vec<_>>()
            .join("-")
    }

    #[test]
    fn names_are_short_words_of_letters_digits_and_dashes() {
        for good in [
            "X-Origin-Verify",
            "x-origin-secret",
            "A",
            "X-Amzn-Anything",
            "X-Edges",
            "Backfill-Secret",
            &"a".repeat(64),
        ] {
            assert_eq!(name_problem(good), None, "{good}");
        }
        for bad in [
            "",
            &"a".repeat(65),
            "X_Origin",
            "X-Origin Verify",
            "X-Origin:",
            "Überall",
        ] {
            assert!(name_problem(bad).is_some(), "{bad:?}");
        }
    }

    #[test]
    fn values_are_16_to_256_safe_characters_and_never_quoted() {
        let generated = "Zr4qPn8VtK2mXw9Lb6Jc3Hs7Df5Ga1Ye";
        assert_eq!(value_problem(generated), None);
        assert_eq!(value_problem("abc.def_ghi~jkl+mno/pq=rs-tu"), None);
        assert_eq!(value_problem(&"x".repeat(256)), None);
        for bad in [
            "short-secret-15",
            &"x".repeat(257),
            "secret-with-a-newline\n",
            "secret with a space inside",
            "secret-with-a-quote\"-inside",
            "secret-with-a-colon:inside",
            "sécret-with-an-accent",
        ] {
            let problem = value_problem(bad).unwrap_or_else(|| panic!("{bad:?} was taken"));
            assert!(!problem.contains(bad.trim()), "{problem}");
        }
    }
}
