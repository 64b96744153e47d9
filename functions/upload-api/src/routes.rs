//! Which operation a request is, from its method and raw (percent-encoded) path.

use percent_encoding::percent_decode_str;

use crate::error::Error;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    Me,
    SingleUpload,
    CreateMultipart,
    SignParts(String),
    ListParts(String),
    Complete(String),
    Abort(String),
    ListChanges,
    /// The decoded key (not yet validated).
    GetFile(String),
    Cookies,
}

impl Route {
    /// A short name for logs and metrics.
    pub fn name(&self) -> &'static str {
        match self {
            Route::Me => "me",
            Route::SingleUpload => "single_upload",
            Route::CreateMultipart => "create_multipart",
            Route::SignParts(_) => "sign_parts",
            Route::ListParts(_) => "list_parts",
            Route::Complete(_) => "complete",
            Route::Abort(_) => "abort",
            Route::ListChanges => "list_changes",
            Route::GetFile(_) => "get_file",
            Route::Cookies => "cookies",
        }
    }
}

/// Longest upload id accepted (S3's are far shorter).
const MAX_UPLOAD_ID: usize = 1024;

pub fn route(method: &str, raw_path: &str) -> Result<Route, Error> {
    let no_route = || Error::NoRoute {
        method: method.to_owned(),
        path: raw_path.to_owned(),
    };
    let path = raw_path.strip_prefix('/').ok_or_else(no_route)?;
    let method = method.to_ascii_uppercase();
    if let Some(raw_key) = path.strip_prefix("files/") {
        return match method.as_str() {
            "GET" => Ok(Route::GetFile(decode(raw_key)?)),
            _ => Err(no_route()),
        };
    }
    let segments: Vec<&str> = path.trim_end_matches('/').split('/').collect();
    let route = match (method.as_str(), segments.as_slice()) {
        ("GET", ["me"]) => Route::Me,
        ("POST", ["uploads"]) => Route::SingleUpload,
        ("POST", ["multipart"]) => Route::CreateMultipart,
        ("POST", ["multipart", id, "parts"]) => Route::SignParts(upload_id(id)?),
        ("GET", ["multipart", id, "parts"]) => Route::ListParts(upload_id(id)?),
        ("POST", ["multipart", id, "complete"]) => Route::Complete(upload_id(id)?),
        ("DELETE", ["multipart", id]) => Route::Abort(upload_id(id)?),
        ("GET", ["files"]) => Route::ListChanges,
        ("GET", ["cookies"]) => Route::Cookies,
        _ => return Err(no_route()),
    };
    Ok(route)
}

fn decode(raw: &str) -> Result<String, Error> {
    percent_decode_str(raw)
        .decode_utf8()
        .map(|s| s.into_owned())
        .map_err(|_| Error::InvalidKey(shared::KeyError::InvalidUtf8))
}

fn upload_id(raw: &str) -> Result<String, Error> {
    let id = percent_decode_str(raw)
        .decode_utf8()
        .map_err(|_| Error::InvalidRequest("the upload id is not UTF-8".into()))?;
    if id.is_empty() || id.len() > MAX_UPLOAD_ID || id.chars().any(char::is_control) {
        return Err(Error::InvalidRequest(format!("{id:?} is not an upload id")));
    }
    Ok(id.into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes() {
        let cases = [
            ("GET", "/me", Route::Me),
            ("POST", "/uploads", Route::SingleUpload),
            ("post", "/multipart/", Route::CreateMultipart),
            (
                "POST",
                "/multipart/abc.D_e-f/parts",
                Route::SignParts("abc.D_e-f".into()),
            ),
            (
                "GET",
                "/multipart/a%2Bb%3D/parts",
                Route::ListParts("a+b=".into()),
            ),
            ("POST", "/multipart/x/complete", Route::Complete("x".into())),
            ("DELETE", "/multipart/x", Route::Abort("x".into())),
            ("GET", "/files", Route::ListChanges),
            ("GET", "/cookies", Route::Cookies),
            (
                "GET",
                "/files/uploads/alice/caf%C3%A9%20au%20lait.jpg",
                Route::GetFile("uploads/alice/café au lait.jpg".into()),
            ),
            (
                "GET",
                "/files/uploads%2Falice%2Fa.jpg",
                Route::GetFile("uploads/alice/a.jpg".into()),
            ),
        ];
        for (method, path, expected) in cases {
            assert_eq!(route(method, path).unwrap(), expected, "{method} {path}");
        }
    }

    #[test]
    fn unknown_routes_and_bad_ids() {
        for (method, path) in [
            ("GET", "/"),
            ("GET", "/uploads"),
            ("PUT", "/multipart"),
            ("DELETE", "/files/uploads/alice/a.jpg"),
            ("GET", "/multipart/x/y/parts"),
            ("GET", "me"),
        ] {
            assert!(
                matches!(route(method, path), Err(Error::NoRoute { .. })),
                "{method} {path}"
            );
        }
        assert!(matches!(
            route("GET", "/multipart/a%0Ab/parts"),
            Err(Error::InvalidRequest(_))
        ));
        assert!(matches!(
            route("GET", "/files/uploads/alice/%FF"),
            Err(Error::InvalidKey(_))
        ));
    }
}
