//! Which service and operation a request is, from what a proxy sees of it.

/// The service a request is for: the SigV4 credential scope names it (`Authorization` header, or
/// `X-Amz-Credential` in a presigned URL); an unsigned request (a browser's POST upload) is S3.
pub fn service(headers: &[(String, String)], query: &str) -> String {
    let credential = headers
        .iter()
        .find(|(name, _)| name == "authorization")
        .and_then(|(_, value)| {
            value
                .split([',', ' '])
                .find_map(|part| part.trim().strip_prefix("Credential="))
                .map(str::to_owned)
        })
        .or_else(|| super::query_param(query, "X-Amz-Credential"));
    match credential {
        // AKID/DATE/REGION/SERVICE/aws4_request
        Some(scope) => scope.split('/').nth(3).unwrap_or("unknown").to_owned(),
        None => "s3".to_owned(),
    }
}

/// The operation: for JSON protocols (SQS, DynamoDB, Secrets Manager) the `X-Amz-Target`; for the
/// Smithy RPC v2 CBOR protocol (CloudWatch) the path's last segment; for query protocols (SNS) the
/// body's `Action`; for S3 the method, the path and the query.
pub fn operation(
    service: &str,
    method: &str,
    path: &str,
    query: &str,
    headers: &[(String, String)],
    body: Option<&str>,
) -> String {
    let header = |name: &str| {
        headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    };
    if let Some(target) = header("x-amz-target") {
        return target.rsplit('.').next().unwrap_or(target).to_owned();
    }
    if let Some((_, operation)) = rpc_v2_path(path) {
        return operation.to_owned();
    }
    if service == "cloudfront" {
        return cloudfront_operation(method, path).to_owned();
    }
    if service != "s3" {
        return body
            .and_then(|body| super::query_param(body, "Action"))
            .or_else(|| super::query_param(query, "Action"))
            .unwrap_or_else(|| "Unknown".to_owned());
    }
    s3_operation(method, path, query, header("x-amz-copy-source").is_some()).to_owned()
}

/// The service and operation an RPC v2 CBOR path names: Smithy's spec
/// (https://smithy.io/2.0/additional-specs/protocols/smithy-rpc-v2.html) sends every request to
/// `{prefix?}/service/{serviceName}/operation/{operationName}` and routes on its last four segments.
pub fn rpc_v2_path(path: &str) -> Option<(&str, &str)> {
    let segments: Vec<&str> = path.trim_end_matches('/').rsplitn(5, '/').collect();
    match segments.as_slice() {
        [operation, "operation", service, "service", ..]
            if !operation.is_empty() && !service.is_empty() =>
        {
            Some((service, operation))
        }
        _ => None,
    }
}

/// CloudFront's REST operations this product sends (API version 2020-05-31).
fn cloudfront_operation(method: &str, path: &str) -> &'static str {
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    match (method, segments.as_slice()) {
        ("POST", [_, "distribution", _, "invalidation"]) => "CreateInvalidation",
        ("GET", [_, "distribution", _, "invalidation"]) => "ListInvalidations",
        ("GET", [_, "distribution", _, "invalidation", _]) => "GetInvalidation",
        ("GET", [_, "distribution"]) => "ListDistributions",
        ("POST", [_, "distribution"]) => "CreateDistribution",
        _ => "Unknown",
    }
}

/// S3's operations, path-style (`/bucket` or `/bucket/key`), as the local stand-ins are addressed.
fn s3_operation(method: &str, path: &str, query: &str, copy: bool) -> &'static str {
    let has = |name: &str| super::query_param(query, name).is_some();
    let object = path
        .trim_start_matches('/')
        .split_once('/')
        .is_some_and(|(_, key)| !key.is_empty());
    match (method, object) {
        ("HEAD", true) => "HeadObject",
        ("HEAD", false) => "HeadBucket",
        ("GET", true) if has("uploadId") => "ListParts",
        ("GET", true) if has("tagging") => "GetObjectTagging",
        ("GET", true) if has("attributes") => "GetObjectAttributes",
        ("GET", true) => "GetObject",
        ("GET", false) if path.trim_matches('/').is_empty() => "ListBuckets",
        ("GET", false) if has("uploads") => "ListMultipartUploads",
        ("GET", false) if has("versions") => "ListObjectVersions",
        ("GET", false) if has("list-type") => "ListObjectsV2",
        ("GET", false) if query.is_empty() => "ListObjects",
        ("GET", false) => "GetBucketConfiguration",
        ("PUT", true) if has("partNumber") && copy => "UploadPartCopy",
        ("PUT", true) if has("partNumber") => "UploadPart",
        ("PUT", true) if has("tagging") => "PutObjectTagging",
        ("PUT", true) if copy => "CopyObject",
        ("PUT", true) => "PutObject",
        ("PUT", false) if query.is_empty() => "CreateBucket",
        ("PUT", false) => "PutBucketConfiguration",
        ("POST", true) if has("uploads") => "CreateMultipartUpload",
        ("POST", true) if has("uploadId") => "CompleteMultipartUpload",
        ("POST", false) if has("delete") => "DeleteObjects",
        ("POST", false) => "PostObject",
        ("DELETE", true) if has("uploadId") => "AbortMultipartUpload",
        ("DELETE", true) => "DeleteObject",
        ("DELETE", false) => "DeleteBucket",
        _ => "Unknown",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn services_come_from_the_credential_scope() {
        let auth = h(&[(
            "authorization",
            "AWS4-HMAC-SHA256 Credential=test/20261204/us-east-1/sqs/aws4_request, SignedHeaders=host, Signature=x",
        )]);
        assert_eq!(service(&auth, ""), "sqs");
        let auth = h(&[(
            "authorization",
            "AWS4-HMAC-SHA256 Credential=test/20261204/ap-southeast-1/secretsmanager/aws4_request, SignedHeaders=host;x-amz-target, Signature=x",
        )]);
        assert_eq!(service(&auth, ""), "secretsmanager");
        assert_eq!(
            service(
                &[],
                "X-Amz-Credential=test%2F20261204%2Fus-east-1%2Fs3%2Faws4_request"
            ),
            "s3"
        );
        assert_eq!(service(&[], ""), "s3");
    }

    #[test]
    fn rpc_v2_cbor_operations_come_from_the_path() {
        let auth = h(&[(
            "authorization",
            "AWS4-HMAC-SHA256 Credential=test/20261205/eu-west-1/monitoring/aws4_request, SignedHeaders=accept;content-type;host;smithy-protocol;x-amz-date, Signature=x",
        )]);
        assert_eq!(service(&auth, ""), "monitoring");
        let path = "/service/GraniteServiceVersion20100801/operation/GetMetricData";
        assert_eq!(
            operation("monitoring", "POST", path, "", &auth, None),
            "GetMetricData"
        );
        assert_eq!(
            rpc_v2_path(&format!("/v1{path}")),
            Some(("GraniteServiceVersion20100801", "GetMetricData"))
        );
        assert_eq!(rpc_v2_path("/service/X/operation/"), None);
        assert_eq!(rpc_v2_path("/"), None);
    }

    #[test]
    fn cloudfront_operations_come_from_the_path() {
        let path = "/2020-05-31/distribution/E2QWRUHAPOMQZL/invalidation";
        assert_eq!(
            operation("cloudfront", "POST", path, "", &[], None),
            "CreateInvalidation"
        );
        assert_eq!(
            operation(
                "cloudfront",
                "GET",
                &format!("{path}/I2J0I21PCUYOIK"),
                "",
                &[],
                None
            ),
            "GetInvalidation"
        );
    }

    #[test]
    fn operations() {
        let none = [];
        let op = |m, p, q| operation("s3", m, p, q, &none, None);
        assert_eq!(op("PUT", "/b/k", ""), "PutObject");
        assert_eq!(op("PUT", "/b/k", "partNumber=1&uploadId=x"), "UploadPart");
        assert_eq!(op("POST", "/b/k", "uploads"), "CreateMultipartUpload");
        assert_eq!(op("POST", "/b/k", "uploadId=x"), "CompleteMultipartUpload");
        assert_eq!(op("POST", "/b", "delete"), "DeleteObjects");
        assert_eq!(op("POST", "/b/", ""), "PostObject");
        assert_eq!(op("GET", "/b", "list-type=2"), "ListObjectsV2");
        assert_eq!(op("DELETE", "/b/k", "uploadId=x"), "AbortMultipartUpload");
        assert_eq!(op("GET", "/b/k", "uploadId=x"), "ListParts");
        assert_eq!(
            op(
                "GET",
                "/b/k",
                "max-parts=1000&part-number-marker=12&uploadId=x"
            ),
            "ListParts"
        );
        assert_eq!(op("GET", "/b/k", ""), "GetObject");
        for (target, expected) in [
            ("DynamoDB_20120810.UpdateItem", "UpdateItem"),
            ("DynamoDB_20120810.DeleteItem", "DeleteItem"),
        ] {
            let target = h(&[("x-amz-target", target)]);
            assert_eq!(
                operation("dynamodb", "POST", "/", "", &target, None),
                expected
            );
        }
        let target = h(&[("x-amz-target", "AmazonSQS.SendMessageBatch")]);
        assert_eq!(
            operation("sqs", "POST", "/", "", &target, None),
            "SendMessageBatch"
        );
        let target = h(&[("x-amz-target", "secretsmanager.GetSecretValue")]);
        assert_eq!(
            operation("secretsmanager", "POST", "/", "", &target, None),
            "GetSecretValue"
        );
        assert_eq!(
            operation(
                "sns",
                "POST",
                "/",
                "",
                &none,
                Some("Action=Publish&Version=2010-03-31")
            ),
            "Publish"
        );
    }
}
