//! A function URL on 127.0.0.1: each HTTP request becomes the event Lambda's function URL would
//! deliver (payload format 2.0: raw path and query, decoded query parameters, headers, body, a
//! request id), the real handler answers it, and its response goes back as HTTP.
//!
//! An `AWS_IAM` function URL checks each request's SigV4 signature and names the signing principal
//! in `requestContext.authorizer.iam`; [`serve_as`] stands for one whose every request was signed
//! by one principal.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;

use aws_lambda_events::event::lambda_function_urls::{
    LambdaFunctionUrlRequest, LambdaFunctionUrlRequestContextAuthorizerDescription,
    LambdaFunctionUrlRequestContextAuthorizerIamDescription,
};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use lambda_runtime::{Context, LambdaEvent};
use percent_encoding::percent_decode_str;
use tokio::net::TcpListener;
use upload_api::auth::IamPrincipal;

use super::StackApi;

/// Serves `api`; returns its base URL.
pub async fn serve(api: Arc<StackApi>) -> String {
    serve_as(api, None).await
}

/// Serves `api` with every request signed by `principal` (none: an `AuthType: NONE` URL).
pub async fn serve_as(api: Arc<StackApi>, principal: Option<IamPrincipal>) -> String {
    let principal = Arc::new(principal);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let api = api.clone();
            let principal = principal.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |request| {
                    let api = api.clone();
                    let principal = principal.clone();
                    async move {
                        Ok::<_, Infallible>(
                            invoke(&api, request, principal.as_ref().as_ref()).await,
                        )
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    format!("http://{addr}")
}

fn query_parameters(raw: &str) -> HashMap<String, String> {
    raw.split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            let decode = |s: &str| {
                percent_decode_str(&s.replace('+', " "))
                    .decode_utf8_lossy()
                    .into_owned()
            };
            (decode(name), decode(value))
        })
        .collect()
}

async fn invoke(
    api: &StackApi,
    request: hyper::Request<Incoming>,
    principal: Option<&IamPrincipal>,
) -> hyper::Response<Full<Bytes>> {
    let (parts, body) = request.into_parts();
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let request_id = format!("{:08x}-test", fastrand::u32(..));
    let mut event = LambdaFunctionUrlRequest::default();
    event.version = Some("2.0".into());
    event.raw_path = Some(parts.uri.path().to_owned());
    event.raw_query_string = Some(parts.uri.query().unwrap_or_default().to_owned());
    event.query_string_parameters = query_parameters(parts.uri.query().unwrap_or_default());
    event.headers = parts.headers;
    event.request_context.request_id = Some(request_id.clone());
    event.request_context.http.method = Some(parts.method.as_str().to_owned());
    if let Some(principal) = principal {
        let mut iam = LambdaFunctionUrlRequestContextAuthorizerIamDescription::default();
        iam.user_arn = principal.user_arn.clone();
        iam.user_id = principal.user_id.clone();
        iam.account_id = principal.account_id.clone();
        let mut authorizer = LambdaFunctionUrlRequestContextAuthorizerDescription::default();
        authorizer.iam = Some(iam);
        event.request_context.authorizer = Some(authorizer);
    }
    if !body.is_empty() {
        match std::str::from_utf8(&body) {
            Ok(text) => event.body = Some(text.to_owned()),
            Err(_) => {
                event.body = Some(aws_smithy_types::base64::encode(&body));
                event.is_base64_encoded = true;
            }
        }
    }
    let mut context = Context::default();
    context.request_id = request_id;
    let response = upload_api::function_url::handle(api, LambdaEvent::new(event, context))
        .await
        .expect("the handler answers every request");
    let mut answer = hyper::Response::builder()
        .status(u16::try_from(response.status_code).expect("an HTTP status"));
    for (name, value) in &response.headers {
        answer = answer.header(name, value);
    }
    answer
        .body(Full::new(Bytes::from(response.body.unwrap_or_default())))
        .unwrap()
}
