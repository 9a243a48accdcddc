//! TLS to sinks' receivers: one rustls client configuration per trust setting,
//! used alike by the HTTP kinds ([`HttpClient`], hyper with hyper-rustls) and by
//! syslog over TLS (through tokio-rustls).
//!
//! The cryptography is rustls's `ring` provider, passed explicitly rather than
//! installed as the process default, so that nothing here depends on what else
//! the process installed (and aws-lc-rs, a large C build, stays out of the
//! tree). A receiver's certificate is checked against the system's trust roots
//! (rustls-platform-verifier), or, when the sink names a CA certificate (a
//! private CA), against that CA alone; the server name is always verified.

use std::sync::Arc;

use rustls::ClientConfig;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject as _;

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use crate::SinkError;

/// The marker that tells PEM text from a file path in a sink's `caCert`.
const PEM_START: &str = "-----BEGIN";

/// Whether a sink's `caCert` names a file on the auditor's machine (rather
/// than giving the PEM text itself).
pub fn names_a_file(ca_cert: &str) -> bool {
    !ca_cert.trim_start().starts_with(PEM_START)
}

/// The provider every connection uses.
///
/// rustls 0.23.48 deprecates ring's provider because ring has no post-quantum
/// key exchange (X25519MLKEM768 needs aws-lc-rs). We accept classical key
/// exchange (X25519, P-256, P-384) for sink traffic rather than build aws-lc's
/// C code; the deprecation says nothing else is wrong with it.
#[allow(deprecated)]
fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The certificates of `ca_cert`: PEM text (starting `-----BEGIN`), or the path
/// of a PEM file on the auditor's machine. At least one certificate, or an
/// error saying why not.
pub fn ca_certificates(ca_cert: &str) -> Result<Vec<CertificateDer<'static>>, SinkError> {
    let (pem, from) = if !names_a_file(ca_cert) {
        (
            ca_cert.as_bytes().to_vec(),
            "the caCert PEM text".to_owned(),
        )
    } else {
        let pem = std::fs::read(ca_cert).map_err(|e| {
            SinkError::Invalid(format!(
                "caCert: cannot read the CA certificate file `{ca_cert}`: {e}"
            ))
        })?;
        (pem, format!("the caCert file `{ca_cert}`"))
    };
    let certificates = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| SinkError::Invalid(format!("caCert: {from} is not PEM: {e}")))?;
    if certificates.is_empty() {
        return Err(SinkError::Invalid(format!(
            "caCert: {from} holds no CERTIFICATE"
        )));
    }
    Ok(certificates)
}

/// A client configuration trusting `ca_cert`'s certificates alone (see
/// [`ca_certificates`]), or the system's roots when `None`.
pub fn client_config(ca_cert: Option<&str>) -> Result<ClientConfig, SinkError> {
    let provider = provider();
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| SinkError::Invalid(format!("no TLS configuration: {e}")))?;
    let config = match ca_cert {
        Some(ca_cert) => {
            let mut roots = rustls::RootCertStore::empty();
            for certificate in ca_certificates(ca_cert)? {
                roots.add(certificate).map_err(|e| {
                    SinkError::Invalid(format!("caCert: not a usable CA certificate: {e}"))
                })?;
            }
            builder.with_root_certificates(roots).with_no_client_auth()
        }
        None => {
            let verifier = rustls_platform_verifier::Verifier::new(provider)
                .map_err(|e| SinkError::Invalid(format!("no system trust roots: {e}")))?;
            builder
                .dangerous()
                // Not dangerous: the platform verifier checks the chain against the
                // system's roots and the server name; this is how rustls takes a
                // verifier that is not its own.
                .with_custom_certificate_verifier(Arc::new(verifier))
                .with_no_client_auth()
        }
    };
    Ok(config)
}

/// The HTTP client of the HTTP kinds: hyper's pooled client, speaking plain
/// HTTP or HTTPS (rustls, [`client_config`]) as each URL says.
#[derive(Clone)]
pub struct HttpClient {
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
}

/// How long connecting (TCP, then TLS) may take.
const CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

impl HttpClient {
    /// A client for receivers trusted as `ca_cert` says (see [`client_config`]).
    pub fn new(ca_cert: Option<&str>) -> Result<HttpClient, SinkError> {
        let mut http = HttpConnector::new();
        // The scheme is hyper-rustls's to judge: it speaks TLS for https only.
        http.enforce_http(false);
        http.set_connect_timeout(Some(CONNECT_TIMEOUT));
        http.set_nodelay(true);
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(client_config(ca_cert)?)
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        Ok(HttpClient {
            client: Client::builder(TokioExecutor::new()).build(connector),
        })
    }

    /// POSTs `body` with `headers` to `url`: the answer's status and the start of
    /// its body (at most `keep` characters).
    pub async fn post(
        &self,
        url: &str,
        headers: &[(&str, &str)],
        body: Vec<u8>,
        keep: usize,
    ) -> Result<(u16, String), HttpError> {
        let mut request = hyper::Request::post(url);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let request = request
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| HttpError(format!("not a request to `{url}`: {e}")))?;
        let response = self
            .client
            .request(request)
            .await
            .map_err(|e| HttpError(crate::destination::error_chain(&e)))?;
        let status = response.status().as_u16();
        // The answer matters only for a person reading the last error: read a
        // bounded start of it, and leave the rest (the connection is dropped
        // then instead of reused).
        let mut answer = Vec::new();
        let mut body = response.into_body();
        while answer.len() < keep * 4 {
            match body.frame().await {
                Some(Ok(frame)) => {
                    if let Some(data) = frame.data_ref() {
                        answer.extend_from_slice(data);
                    }
                }
                Some(Err(_)) | None => break,
            }
        }
        let answer = String::from_utf8_lossy(&answer)
            .chars()
            .take(keep)
            .collect();
        Ok((status, answer))
    }
}

/// Why an HTTP request got no answer, with the causes.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct HttpError(String);

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // test code: a panic is the failure report

    use super::*;

    #[test]
    fn a_ca_cert_that_is_neither_pem_nor_a_readable_file_is_refused_with_the_reason() {
        let missing = ca_certificates("/nonexistent/ca.pem").unwrap_err();
        let not_pem = ca_certificates("-----BEGIN CERTIFICATE-----\nnot base64!\n").unwrap_err();
        let no_certificate =
            ca_certificates("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n")
                .unwrap_err();

        assert!(missing.to_string().contains("cannot read"), "{missing}");
        assert!(not_pem.to_string().contains("caCert"), "{not_pem}");
        assert!(
            no_certificate.to_string().contains("no CERTIFICATE"),
            "{no_certificate}"
        );
    }

    #[test]
    fn the_system_roots_make_a_client() {
        assert!(HttpClient::new(None).is_ok());
    }
}
