//! The Lambda function URL in front of the API: its event in, its response out. Every answer
//! carries the request id (header and, for refusals, body), and so does every log line of the
//! request (its span).

use aws_lambda_events::event::lambda_function_urls::{
    LambdaFunctionUrlRequest, LambdaFunctionUrlResponse,
};
use http::{HeaderMap, HeaderValue};
use lambda_runtime::LambdaEvent;
use shared::Failure;
use time::OffsetDateTime;
use tracing::{field, Instrument};

use crate::api::ErrorBody;
use crate::auth::IamPrincipal;
use crate::error::Error;
use crate::service::{Answer, Api, HttpRequest};
use crate::store::{FileIndex, ObjectStore, RateLimiter, Sessions};

pub const REQUEST_ID_HEADER: &str = "x-request-id";

/// The Lambda handler: never fails the invocation, every failure is an HTTP answer.
pub async fn handle<O, S, F, R>(
    api: &Api<O, S, F, R>,
    event: LambdaEvent<LambdaFunctionUrlRequest>,
) -> Result<LambdaFunctionUrlResponse, lambda_runtime::Diagnostic>
where
    O: ObjectStore,
    S: Sessions,
    F: FileIndex,
    R: RateLimiter,
{
    let (payload, context) = event.into_parts();
    let request_id = Some(context.request_id)
        .filter(|id| !id.is_empty())
        .or_else(|| payload.request_context.request_id.clone())
        .unwrap_or_else(|| format!("local-{:016x}", fastrand::u64(..)));
    let request = decode(payload);
    let span = tracing::info_span!(
        "request",
        request_id = %request_id,
        method = %request.method,
        path = %request.raw_path,
        route = field::Empty,
        caller = field::Empty,
    );
    async {
        let served = api.serve(&request, OffsetDateTime::now_utc()).await;
        tracing::Span::current().record("route", served.route);
        match &served.result {
            Ok(answer) => tracing::info!(status = answer.status, "answered"),
            Err(err) if err.status() >= 500 => {
                tracing::error!(status = err.status(), reason = err.reason(), error = %err, "failed")
            }
            Err(err) => {
                tracing::info!(status = err.status(), reason = err.reason(), error = %err, "refused")
            }
        }
        Ok(respond(served.result, &request_id))
    }
    .instrument(span)
    .await
}

/// The function URL event as the API reads it.
pub fn decode(payload: LambdaFunctionUrlRequest) -> HttpRequest {
    let body = payload.body.map(|body| {
        if payload.is_base64_encoded {
            aws_smithy_types::base64::decode(&body).unwrap_or_else(|_| body.into_bytes())
        } else {
            body.into_bytes()
        }
    });
    let iam = payload
        .request_context
        .authorizer
        .and_then(|a| a.iam)
        .map(|iam| IamPrincipal {
            user_arn: iam.user_arn,
            user_id: iam.user_id,
            account_id: iam.account_id,
        });
    HttpRequest {
        method: payload
            .request_context
            .http
            .method
            .unwrap_or_else(|| "GET".to_owned()),
        raw_path: payload.raw_path.unwrap_or_else(|| "/".to_owned()),
        query: payload.query_string_parameters,
        headers: payload.headers,
        body,
        iam,
    }
}

/// The function URL response for an answer or a refusal.
pub fn respond(result: Result<Answer, Error>, request_id: &str) -> LambdaFunctionUrlResponse {
    let mut headers = HeaderMap::new();
    if let Ok(id) = HeaderValue::from_str(request_id) {
        headers.insert(REQUEST_ID_HEADER, id);
    }
    headers.insert("cache-control", HeaderValue::from_static("no-store"));
    let (status, body) = match result {
        Ok(answer) => (answer.status, answer.body),
        Err(err) => {
            if let Some(after) = err
                .retry_after()
                .or_else(|| (err.status() == 503).then_some(std::time::Duration::from_secs(1)))
            {
                if let Ok(value) = HeaderValue::from_str(&after.as_secs().max(1).to_string()) {
                    headers.insert("retry-after", value);
                }
            }
            let body = ErrorBody {
                reason: err.reason().to_owned(),
                message: err.public_message(),
                request_id: request_id.to_owned(),
                details: err.details(),
            };
            (
                err.status(),
                Some(serde_json::to_value(body).unwrap_or_default()),
            )
        }
    };
    if body.is_some() {
        headers.insert("content-type", HeaderValue::from_static("application/json"));
    }
    let mut response = LambdaFunctionUrlResponse::default();
    response.status_code = i64::from(status);
    response.headers = headers;
    response.body = body.map(|b| b.to_string());
    response.is_base64_encoded = false;
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn refusals_carry_reason_and_request_id() {
        let response = respond(
            Err(Error::RateLimited {
                retry_after: Duration::from_secs(3),
            }),
            "req-1",
        );
        assert_eq!(response.status_code, 429);
        assert_eq!(response.headers["retry-after"], "3");
        assert_eq!(response.headers[REQUEST_ID_HEADER], "req-1");
        let body: ErrorBody = serde_json::from_str(response.body.as_deref().unwrap()).unwrap();
        assert_eq!(body.reason, "rate_limited");
        assert_eq!(body.request_id, "req-1");
    }

    #[test]
    fn server_trouble_says_little_and_asks_for_a_retry() {
        let response = respond(
            Err(Error::Shared(shared::Error::Aws {
                operation: "GetItem",
                message: "ProvisionedThroughputExceededException".into(),
                retryable: true,
            })),
            "req-2",
        );
        assert_eq!(response.status_code, 503);
        assert_eq!(response.headers["retry-after"], "1");
        assert!(!response.body.unwrap().contains("GetItem"));
    }

    #[test]
    fn answers_without_body() {
        let response = respond(
            Ok(Answer {
                status: 204,
                body: None,
            }),
            "req-3",
        );
        assert_eq!(response.status_code, 204);
        assert!(response.body.is_none());
        assert!(!response.headers.contains_key("content-type"));
    }

    #[test]
    fn decodes_base64_bodies_and_iam_principals() {
        let mut payload = LambdaFunctionUrlRequest::default();
        payload.raw_path = Some("/uploads".into());
        payload.request_context.http.method = Some("POST".into());
        payload.body = Some(aws_smithy_types::base64::encode("{\"a\":1}"));
        payload.is_base64_encoded = true;
        let mut authorizer =
            aws_lambda_events::event::lambda_function_urls::LambdaFunctionUrlRequestContextAuthorizerDescription::default();
        let mut iam = aws_lambda_events::event::lambda_function_urls::LambdaFunctionUrlRequestContextAuthorizerIamDescription::default();
        iam.user_arn = Some("arn:aws:iam::111122223333:user/alice".into());
        iam.user_id = Some("AIDAJQABLZS4A3QDU576Q".into());
        iam.account_id = Some("111122223333".into());
        authorizer.iam = Some(iam);
        payload.request_context.authorizer = Some(authorizer);
        let request = decode(payload);
        assert_eq!(request.method, "POST");
        assert_eq!(request.body.as_deref(), Some(&b"{\"a\":1}"[..]));
        assert_eq!(
            request.iam.unwrap(),
            IamPrincipal {
                user_arn: Some("arn:aws:iam::111122223333:user/alice".into()),
                user_id: Some("AIDAJQABLZS4A3QDU576Q".into()),
                account_id: Some("111122223333".into()),
            }
        );
    }

    #[test]
    fn the_sample_iam_event_names_its_role_session() {
        let payload: LambdaFunctionUrlRequest =
            serde_json::from_str(include_str!("../../../events/upload-api-iam-me.json")).unwrap();
        let principal = decode(payload).iam.expect("an IAM context");
        let caller = crate::auth::caller_from_principal(&principal).unwrap();
        assert_eq!(caller.id(), "123456789012:AROA3XFRBF535PLBIFPI4:alice");
    }
}
