//! The test CA the local HTTPS endpoints serve from (the wire recorder, the WAN link), and an SDK
//! client that trusts it: clients talk to the stand-ins over TLS, as the deployed functions talk
//! to AWS.

use std::sync::Arc;

/// A CA made for one proxy, and a server configuration whose certificate it issued for 127.0.0.1
/// and localhost.
pub struct TestCa {
    pub acceptor: tokio_rustls::TlsAcceptor,
    /// The CA's certificate (PEM), for clients to trust.
    pub ca_pem: String,
}

impl TestCa {
    /// `name` goes into the certificates' common names, so that a failed verification says
    /// whose CA a client was shown.
    pub fn new(name: &str) -> std::io::Result<TestCa> {
        use rcgen::{
            BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose,
        };
        let ca_key = KeyPair::generate().map_err(fail)?;
        let mut ca = CertificateParams::new(Vec::<String>::new()).map_err(fail)?;
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.distinguished_name
            .push(DnType::CommonName, format!("{name} test CA"));
        ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca_cert = ca.self_signed(&ca_key).map_err(fail)?;
        let issuer = Issuer::new(ca, ca_key);
        let server_key = KeyPair::generate().map_err(fail)?;
        let mut server =
            CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
                .map_err(fail)?;
        server.distinguished_name.push(DnType::CommonName, name);
        let server_cert = server.signed_by(&server_key, &issuer).map_err(fail)?;
        let key =
            rustls::pki_types::PrivateKeyDer::try_from(server_key.serialize_der()).map_err(fail)?;
        let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(fail)?
        .with_no_client_auth()
        .with_single_cert(vec![server_cert.der().clone()], key)
        .map_err(fail)?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(TestCa {
            acceptor: tokio_rustls::TlsAcceptor::from(Arc::new(config)),
            ca_pem: ca_cert.pem(),
        })
    }
}

/// An HTTP client for the AWS SDK that trusts a test CA (and nothing else): a client of the
/// deployed kind (rustls, HTTPS) for a local HTTPS endpoint.
pub fn trusting(ca_pem: &str) -> aws_smithy_runtime_api::client::http::SharedHttpClient {
    use aws_smithy_http_client::tls::{self, rustls_provider::CryptoMode, TlsContext, TrustStore};
    let trust = TrustStore::empty()
        .with_native_roots(false)
        .with_pem_certificate(ca_pem.as_bytes().to_vec());
    let context = TlsContext::builder()
        .with_trust_store(trust)
        .build()
        .expect("a TLS context");
    aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(CryptoMode::AwsLc))
        .tls_context(context)
        .build_https()
}

fn fail(err: impl std::fmt::Display) -> std::io::Error {
    std::io::Error::other(err.to_string())
}
