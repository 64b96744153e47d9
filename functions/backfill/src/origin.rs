//! The domestic origin: an HTTP GET whose body arrives as a stream of chunks.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::Stream;
use http::HeaderMap;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};

use crate::config::Config;
use crate::error::BackfillError;
use crate::plan::{is_forbidden_address, is_loopback};

pub type BodyStream = Pin<Box<dyn Stream<Item = Result<Bytes, BackfillError>> + Send>>;

pub struct OriginResponse {
    pub status: u16,
    pub headers: HeaderMap,
    /// The Content-Length, when the origin sent one.
    pub content_length: Option<u64>,
    pub body: BodyStream,
}

/// Where objects come from.
pub trait Origin: Send + Sync {
    /// A GET with extra request headers (a range and its validators).
    fn get_with(
        &self,
        url: &str,
        headers: HeaderMap,
    ) -> impl Future<Output = Result<OriginResponse, BackfillError>> + Send;

    fn get(&self, url: &str) -> impl Future<Output = Result<OriginResponse, BackfillError>> + Send {
        self.get_with(url, HeaderMap::new())
    }
}

/// The origin over HTTP(S), with timeouts, the configured extra headers, redirects followed only
/// on the same origin, no proxy whatever the environment says (the checked URL is the one
/// fetched), and a resolver that refuses forbidden addresses and the loopback.
pub struct HttpOrigin {
    client: reqwest::Client,
    headers: HeaderMap,
    first_byte_timeout: Duration,
    idle_timeout: Duration,
}

const MAX_REDIRECTS: usize = 5;

/// Name resolution: the system's, or a fixed table in tests (a name that resolves to the metadata
/// service cannot be made on a test machine's DNS).
pub type Lookup = Arc<
    dyn Fn(String) -> Pin<Box<dyn Future<Output = std::io::Result<Vec<SocketAddr>>> + Send>>
        + Send
        + Sync,
>;

pub fn system_lookup() -> Lookup {
    Arc::new(|host: String| {
        Box::pin(async move { Ok(tokio::net::lookup_host((host.as_str(), 0)).await?.collect()) })
    })
}

impl HttpOrigin {
    pub fn new(config: &Config) -> Result<Self, reqwest::Error> {
        Self::with_lookup(config, system_lookup())
    }

    pub fn with_lookup(config: &Config, lookup: Lookup) -> Result<Self, reqwest::Error> {
        let redirects = reqwest::redirect::Policy::custom(|attempt| {
            let first = &attempt.previous()[0];
            let next = attempt.url();
            let same_origin = first.scheme() == next.scheme()
                && first.host_str() == next.host_str()
                && first.port_or_known_default() == next.port_or_known_default();
            if same_origin && attempt.previous().len() <= MAX_REDIRECTS {
                attempt.follow()
            } else {
                attempt.stop()
            }
        });
        let client = reqwest::Client::builder()
            .connect_timeout(config.connect_timeout)
            .redirect(redirects)
            .no_proxy()
            .dns_resolver(Arc::new(GuardedResolver {
                lookup,
                loopback_names: config.loopback_names(),
            }))
            .user_agent(concat!(
                "overseas-origin-backfill/",
                env!("CARGO_PKG_VERSION")
            ))
            .tcp_nodelay(true)
            .build()?;
        let headers = config.origin_headers.iter().cloned().collect();
        Ok(HttpOrigin {
            client,
            headers,
            first_byte_timeout: config.first_byte_timeout,
            idle_timeout: config.idle_timeout,
        })
    }
}

impl Origin for HttpOrigin {
    async fn get_with(&self, url: &str, extra: HeaderMap) -> Result<OriginResponse, BackfillError> {
        let mut headers = self.headers.clone();
        headers.extend(extra);
        let request = self.client.get(url).headers(headers).send();
        let response = tokio::time::timeout(self.first_byte_timeout, request)
            .await
            .map_err(|_| BackfillError::FirstByteTimeout(self.first_byte_timeout))?
            .map_err(transport_error)?;
        let idle = self.idle_timeout;
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let content_length = headers
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse().ok());
        let body = futures::stream::try_unfold(response, move |mut response| async move {
            match tokio::time::timeout(idle, response.chunk()).await {
                Err(_) => Err(BackfillError::IdleTimeout(idle)),
                Ok(Err(err)) => Err(transport_error(err)),
                Ok(Ok(Some(chunk))) => Ok(Some((chunk, response))),
                Ok(Ok(None)) => Ok(None),
            }
        });
        Ok(OriginResponse {
            status,
            headers,
            content_length,
            body: Box::pin(body),
        })
    }
}

/// A transport error with its whole chain of causes, or the resolver's refusal.
fn transport_error(err: reqwest::Error) -> BackfillError {
    let mut text = err.to_string();
    let mut source = std::error::Error::source(&err);
    while let Some(cause) = source {
        if let Some(refused) = cause.downcast_ref::<ForbiddenResolution>() {
            let (host, address) = (refused.host.clone(), refused.addresses.clone());
            return if refused.loopback_only {
                BackfillError::LoopbackNotAllowed { host, address }
            } else {
                BackfillError::ForbiddenAddress { host, address }
            };
        }
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    BackfillError::OriginTransport(text)
}

#[derive(Debug, thiserror::Error)]
#[error("{host} resolves only to forbidden addresses ({addresses})")]
struct ForbiddenResolution {
    host: String,
    addresses: String,
    /// Every address dropped was the loopback's.
    loopback_only: bool,
}

/// Resolves names, dropping forbidden addresses, and the loopback's unless the allow-list names
/// the host itself (`localhost`); a name with nothing else left is refused. This holds even when
/// the allow-list names a host that (by mistake or by an attacker's DNS) resolves to the instance
/// metadata service or to the function's own loopback.
struct GuardedResolver {
    lookup: Lookup,
    loopback_names: Vec<String>,
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let lookup = self.lookup.clone();
        let loopback_allowed = self
            .loopback_names
            .iter()
            .any(|allowed| allowed.eq_ignore_ascii_case(name.as_str()));
        Box::pin(async move {
            let host = name.as_str().to_owned();
            let resolved = lookup(host.clone()).await?;
            let (refused, allowed): (Vec<SocketAddr>, Vec<SocketAddr>) =
                resolved.into_iter().partition(|a| {
                    is_forbidden_address(a.ip()) || (!loopback_allowed && is_loopback(a.ip()))
                });
            if allowed.is_empty() {
                let addresses = refused
                    .iter()
                    .map(|a| a.ip().to_string())
                    .collect::<Vec<_>>()
                    .join(", ");
                let loopback_only =
                    !refused.is_empty() && refused.iter().all(|a| is_loopback(a.ip()));
                return Err(Box::new(ForbiddenResolution {
                    host,
                    addresses,
                    loopback_only,
                })
                    as Box<dyn std::error::Error + Send + Sync>);
            }
            Ok(Box::new(allowed.into_iter()) as Addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resolver() -> GuardedResolver {
        GuardedResolver {
            lookup: Arc::new(|host: String| {
                Box::pin(async move {
                    let addresses: &[&str] = match host.as_str() {
                        "origin.internal" | "localhost" => &["127.0.0.1:0", "[::1]:0"],
                        "mixed.internal" => &["169.254.169.254:0", "127.0.0.1:0", "10.0.0.5:0"],
                        _ => &[],
                    };
                    Ok(addresses.iter().map(|a| a.parse().unwrap()).collect())
                })
            }),
            loopback_names: vec!["localhost".into()],
        }
    }

    async fn resolve(name: &str) -> Result<Vec<SocketAddr>, String> {
        match resolver().resolve(name.parse().unwrap()).await {
            Ok(addrs) => Ok(addrs.collect()),
            Err(err) => Err(match err.downcast_ref::<ForbiddenResolution>() {
                Some(refused) if refused.loopback_only => "loopback".into(),
                Some(_) => "forbidden".into(),
                None => err.to_string(),
            }),
        }
    }

    #[tokio::test]
    async fn names_reach_the_loopback_only_when_the_allow_list_names_it() {
        assert_eq!(resolve("origin.internal").await.unwrap_err(), "loopback");
        assert_eq!(resolve("localhost").await.unwrap().len(), 2);
        assert_eq!(
            resolve("mixed.internal").await.unwrap(),
            ["10.0.0.5:0".parse::<SocketAddr>().unwrap()]
        );
        assert_eq!(resolve("nothing.internal").await.unwrap_err(), "forbidden");
    }
}
