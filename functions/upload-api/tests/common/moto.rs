//! The one place moto's S3 answers differ from AWS's in a way the Rust SDK refuses: moto names
//! the root element of a ListParts answer `ListPartsResponse` where AWS (and the SDK's
//! deserializer) say `ListPartsResult`. This HTTP client passes every request to the real one
//! and renames that element in answers, nothing else; presigned requests never go through it.

use aws_smithy_runtime_api::client::http::{
    HttpClient, HttpConnector, HttpConnectorFuture, HttpConnectorSettings, SharedHttpClient,
    SharedHttpConnector,
};
use aws_smithy_runtime_api::client::orchestrator::HttpRequest;
use aws_smithy_runtime_api::client::result::ConnectorError;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::body::SdkBody;
use http_body_util::BodyExt;

#[derive(Debug)]
pub struct ListPartsRootFix(pub SharedHttpClient);

impl HttpClient for ListPartsRootFix {
    fn http_connector(
        &self,
        settings: &HttpConnectorSettings,
        components: &RuntimeComponents,
    ) -> SharedHttpConnector {
        SharedHttpConnector::new(Connector(self.0.http_connector(settings, components)))
    }
}

#[derive(Debug)]
struct Connector(SharedHttpConnector);

impl HttpConnector for Connector {
    fn call(&self, request: HttpRequest) -> HttpConnectorFuture {
        let listing = request.uri().contains("x-id=ListParts");
        let answer = self.0.call(request);
        HttpConnectorFuture::new(async move {
            let mut response = answer.await?;
            if !listing {
                return Ok(response);
            }
            let body = response
                .take_body()
                .collect()
                .await
                .map_err(|e| ConnectorError::other(e, None))?
                .to_bytes();
            let text = String::from_utf8_lossy(&body)
                .replace("<ListPartsResponse", "<ListPartsResult")
                .replace("</ListPartsResponse>", "</ListPartsResult>");
            response.headers_mut().remove("content-length");
            *response.body_mut() = SdkBody::from(text);
            Ok(response)
        })
    }
}
