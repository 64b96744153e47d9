//! What the operator hands in: the domestic origin, key lists and origin manifests.
//!
//! A key list and a manifest have one format: UTF-8 text, one object path a line, as the decoded
//! key (`images/café au lait.jpg`, not `%C3%A9`). Surrounding spaces are trimmed, one leading `/`
//! is dropped (so `/#x` names a key starting with `#`), and blank lines and lines starting with
//! `#` are skipped.

use std::collections::HashSet;
use std::fmt;
use std::io::Read;
use std::path::Path;

use shared::message::{is_host_name, OriginLocation, Protocol};
use shared::ObjectKey;

use crate::cli::KeyListArgs;
use crate::error::CtlError;

/// Parses `--origin`: `http[s]://host[:port][/path]`.
pub fn parse_origin(raw: &str) -> Result<OriginLocation, String> {
    let (scheme, rest) = raw
        .split_once("://")
        .ok_or_else(|| format!("{raw:?} is not a URL such as https://www.example.com"))?;
    let protocol = Protocol::parse(scheme)
        .ok_or_else(|| format!("{raw:?}: the scheme must be http or https"))?;
    if rest.contains(['?', '#', '@']) {
        return Err(format!(
            "{raw:?}: an origin has no query, fragment or user name"
        ));
    }
    let (authority, path) = match rest.find('/') {
        Some(at) => rest.split_at(at),
        None => (rest, ""),
    };
    let (host, port) = match authority.rsplit_once(':') {
        Some((host, port)) => {
            let port = port
                .parse::<u16>()
                .ok()
                .filter(|p| *p > 0)
                .ok_or_else(|| format!("{raw:?}: the port must be a number from 1 to 65535"))?;
            (host, port)
        }
        None => (
            authority,
            match protocol {
                Protocol::Http => 80,
                Protocol::Https => 443,
            },
        ),
    };
    if !is_host_name(host) {
        return Err(format!("{raw:?}: {host:?} is not a host name"));
    }
    let path = path.trim_end_matches('/');
    if path.contains("//") || !path.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(format!(
            "{raw:?}: the path must be percent-encoded, with no empty segment"
        ));
    }
    Ok(OriginLocation {
        protocol,
        host: host.to_ascii_lowercase(),
        port,
        path: path.to_owned(),
    })
}

/// Parses `--key-prefix` as the edge hook reads its key prefix: empty, or segments ending in `/`.
pub fn parse_key_prefix(raw: &str) -> Result<String, String> {
    // The functions' own rule (shared::key::KeyPrefix), so that a prefix given here is one the
    // backfill function derives its keys with.
    shared::key::KeyPrefix::parse(raw)
        .map(|prefix| prefix.as_str().to_owned())
        .ok_or_else(|| {
            format!("{raw:?} is not a key prefix such as mirror/ (no empty, '.' or '..' segments)")
        })
}

/// One line of a key list that names a usable path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedPath {
    /// 1-based line number.
    pub line: usize,
    /// The path on the origin, as a decoded key.
    pub path: ObjectKey,
}

/// A line that could not be used, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidEntry {
    /// Where it came from: "line 4", or the argument itself.
    pub at: String,
    pub text: String,
    pub reason: String,
}

impl fmt::Display for InvalidEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {:?}: {}", self.at, self.text, self.reason)
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyList {
    pub paths: Vec<ListedPath>,
    pub invalid: Vec<InvalidEntry>,
    /// Lines naming a path an earlier line named.
    pub duplicates: usize,
    /// Lines left out by the prefix filter.
    pub filtered_out: usize,
}

/// Reads a key list or manifest; with `prefix`, only paths starting with it are kept.
pub fn parse_key_list(text: &str, prefix: Option<&str>) -> KeyList {
    let mut list = KeyList::default();
    let mut seen = HashSet::new();
    for (index, raw_line) in text.lines().enumerate() {
        let line = raw_line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let path = line.strip_prefix('/').unwrap_or(line);
        if prefix.is_some_and(|prefix| !path.starts_with(prefix)) {
            list.filtered_out += 1;
            continue;
        }
        match ObjectKey::new(path) {
            Ok(path) => {
                if seen.insert(path.clone()) {
                    list.paths.push(ListedPath {
                        line: index + 1,
                        path,
                    });
                } else {
                    list.duplicates += 1;
                }
            }
            Err(err) => list.invalid.push(InvalidEntry {
                at: format!("line {}", index + 1),
                text: line.to_owned(),
                reason: err.to_string(),
            }),
        }
    }
    list
}

/// A listed path as the backfill knows it: its key in the bucket and the path to fetch it from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub line: usize,
    pub key: ObjectKey,
    /// Percent-encoded, with the leading '/': the origin path is put before it.
    pub uri: String,
}

/// The bucket key of each listed path: `key_prefix` + path, as the edge hook maps a URI.
pub fn targets(paths: &[ListedPath], key_prefix: &str) -> (Vec<Target>, Vec<InvalidEntry>) {
    let mut targets = Vec::with_capacity(paths.len());
    let mut invalid = Vec::new();
    for listed in paths {
        match ObjectKey::new(format!("{key_prefix}{}", listed.path)) {
            Ok(key) => targets.push(Target {
                line: listed.line,
                key,
                uri: listed.path.to_uri_path(),
            }),
            Err(err) => invalid.push(InvalidEntry {
                at: format!("line {}", listed.line),
                text: listed.path.to_string(),
                reason: format!("with the key prefix {key_prefix:?}: {err}"),
            }),
        }
    }
    (targets, invalid)
}

/// The key list named by `--keys` or `--from-manifest`, filtered by `prefix`; `None` when
/// neither was given.
pub async fn read_key_list(
    source: &KeyListArgs,
    prefix: Option<&str>,
) -> Result<Option<KeyList>, CtlError> {
    let text = match (&source.keys, &source.from_manifest) {
        (Some(path), None) => read_text_file(Path::new(path), "key list")?,
        (None, Some(source)) => read_manifest(source).await?,
        (None, None) => return Ok(None),
        (Some(_), Some(_)) => {
            return Err(CtlError::Usage(
                "give one of --keys or --from-manifest, not both".into(),
            ))
        }
    };
    Ok(Some(parse_key_list(&text, prefix)))
}

/// Keys given as command-line arguments, normalised like the lines of a key list.
pub fn parse_key_args(args: &[String]) -> (Vec<ObjectKey>, Vec<InvalidEntry>) {
    let mut keys = Vec::new();
    let mut invalid = Vec::new();
    for arg in args {
        let trimmed = arg.trim();
        let path = trimmed.strip_prefix('/').unwrap_or(trimmed);
        match ObjectKey::new(path) {
            Ok(key) => keys.push(key),
            Err(err) => invalid.push(InvalidEntry {
                at: "argument".to_owned(),
                text: arg.clone(),
                reason: err.to_string(),
            }),
        }
    }
    (keys, invalid)
}

/// Text from a file, or from standard input for `-`.
pub fn read_text_file(path: &Path, what: &str) -> Result<String, CtlError> {
    let bytes = if path == Path::new("-") {
        let mut bytes = Vec::new();
        std::io::stdin()
            .read_to_end(&mut bytes)
            .map_err(|e| CtlError::Input(format!("cannot read {what} from standard input: {e}")))?;
        bytes
    } else {
        std::fs::read(path)
            .map_err(|e| CtlError::Input(format!("cannot read {what} {}: {e}", path.display())))?
    };
    String::from_utf8(bytes).map_err(|e| {
        CtlError::Input(format!(
            "{what} {} is not UTF-8 text (byte {} is not)",
            path.display(),
            e.utf8_error().valid_up_to()
        ))
    })
}

/// A manifest, from an http(s) URL or a file.
pub async fn read_manifest(source: &str) -> Result<String, CtlError> {
    if !(source.starts_with("http://") || source.starts_with("https://")) {
        return read_text_file(Path::new(source), "manifest");
    }
    let failed =
        |detail: String| CtlError::Input(format!("cannot fetch manifest {source}: {detail}"));
    let response = reqwest::get(source)
        .await
        .map_err(|e| failed(error_chain(&e)))?;
    let status = response.status();
    if !status.is_success() {
        return Err(failed(format!("the server answered {status}")));
    }
    let bytes = response
        .bytes()
        .await
        .map_err(|e| failed(error_chain(&e)))?;
    String::from_utf8(bytes.to_vec()).map_err(|e| {
        failed(format!(
            "not UTF-8 text (byte {} is not)",
            e.utf8_error().valid_up_to()
        ))
    })
}

/// An error and its causes on one line.
fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins() {
        let origin = parse_origin("https://www.example.com").unwrap();
        assert_eq!(
            (
                origin.protocol,
                origin.host.as_str(),
                origin.port,
                origin.path.as_str()
            ),
            (Protocol::Https, "www.example.com", 443, "")
        );
        let origin = parse_origin("http://Origin.Example.com:8080/static/v1/").unwrap();
        assert_eq!(
            (
                origin.protocol,
                origin.host.as_str(),
                origin.port,
                origin.path.as_str()
            ),
            (Protocol::Http, "origin.example.com", 8080, "/static/v1")
        );
        assert_eq!(parse_origin("http://127.0.0.1:9000").unwrap().port, 9000);
        for bad in [
            "www.example.com",
            "ftp://www.example.com",
            "https://user@www.example.com",
            "https://www.example.com:0",
            "https://www.example.com:99999",
            "https://www.example.com/a?b=c",
            "https://www.example.com/a b",
            "https://www.example.com//a",
            "https://",
            "https://exa_mple.com",
        ] {
            assert!(parse_origin(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn key_prefixes() {
        assert_eq!(parse_key_prefix("").unwrap(), "");
        assert_eq!(parse_key_prefix("/").unwrap(), "");
        assert_eq!(parse_key_prefix("mirror/v1").unwrap(), "mirror/v1/");
        assert_eq!(parse_key_prefix("/mirror/").unwrap(), "mirror/");
        assert!(parse_key_prefix("a//b").is_err());
        assert!(parse_key_prefix("a/../b").is_err());
    }

    #[test]
    fn key_lists_skip_blanks_comments_and_repeats() {
        let text = "# pre-warm list\n\
                    images/a.jpg\r\n\
                    \n\
                    /images/b c.jpg\n\
                    \x20 images/a.jpg  \n\
                    images/../etc/passwd\n\
                    /#hash.txt\n\
                    /\n";
        let list = parse_key_list(text, None);
        let paths: Vec<(usize, &str)> = list
            .paths
            .iter()
            .map(|p| (p.line, p.path.as_str()))
            .collect();
        assert_eq!(
            paths,
            [(2, "images/a.jpg"), (4, "images/b c.jpg"), (7, "#hash.txt")]
        );
        assert_eq!(list.duplicates, 1);
        assert_eq!(list.invalid.len(), 2);
        assert_eq!(list.invalid[0].at, "line 6");
        assert!(
            list.invalid[0].reason.contains("'..'"),
            "{:?}",
            list.invalid
        );
        assert_eq!(list.invalid[1].reason, "key is empty");
        assert_eq!(
            list.invalid[0].to_string(),
            "line 6: \"images/../etc/passwd\": key has a '.' or '..' path segment"
        );
    }

    #[test]
    fn manifests_are_filtered_by_prefix() {
        let text = "/images/a.jpg\n/video/b.mp4\nimages/c/d.png\nimages-old/e.jpg\n";
        let list = parse_key_list(text, Some("images/"));
        let paths: Vec<&str> = list.paths.iter().map(|p| p.path.as_str()).collect();
        assert_eq!(paths, ["images/a.jpg", "images/c/d.png"]);
        assert_eq!(list.filtered_out, 2);
    }

    #[test]
    fn targets_take_the_key_prefix_and_keep_the_uri() {
        let listed = |line: usize, path: &str| ListedPath {
            line,
            path: ObjectKey::new(path).unwrap(),
        };
        let (found, invalid) = targets(&[listed(3, "images/café au lait.jpg")], "mirror/");
        assert!(invalid.is_empty());
        assert_eq!(found[0].key.as_str(), "mirror/images/café au lait.jpg");
        assert_eq!(found[0].uri, "/images/caf%C3%A9%20au%20lait.jpg");
        let long = "a".repeat(1020);
        let (found, invalid) = targets(&[listed(1, &long)], "mirror/");
        assert!(found.is_empty());
        assert_eq!(invalid[0].at, "line 1");
        assert!(
            invalid[0].reason.contains("1027 bytes long"),
            "{:?}",
            invalid
        );
    }

    #[test]
    fn key_arguments() {
        let (keys, invalid) =
            parse_key_args(&["images/a.jpg".into(), "/b.jpg".into(), "a/./b".into()]);
        let keys: Vec<&str> = keys.iter().map(ObjectKey::as_str).collect();
        assert_eq!(keys, ["images/a.jpg", "b.jpg"]);
        assert_eq!(invalid.len(), 1);
        assert_eq!(invalid[0].text, "a/./b");
    }

    #[test]
    fn unreadable_and_non_utf8_files_are_named() {
        let err = read_text_file(Path::new("/nonexistent/keys.txt"), "key list").unwrap_err();
        let text = err.to_string();
        assert!(
            text.starts_with("cannot read key list /nonexistent/keys.txt: "),
            "{text}"
        );
        let path = std::env::temp_dir().join(format!("backfill-ctl-{}.txt", fastrand::u64(..)));
        std::fs::write(&path, b"images/a.jpg\n\xff\n").unwrap();
        let err = read_text_file(&path, "key list").unwrap_err();
        std::fs::remove_file(&path).unwrap();
        assert!(
            err.to_string().contains("is not UTF-8 text (byte 13"),
            "{err}"
        );
    }
}
