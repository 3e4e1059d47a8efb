//! TLS for HTTP jobs: the roots every job trusts (the platform's and `--ca-file`'s), each
//! job's own options (`insecure`, a client certificate, `server_name`), and certificate
//! failures told in words a person can act on.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::Mutex;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{CertificateError, ClientConfig, DigitallySignedStruct, SignatureScheme};

use super::{Failure, FilesRoot};
use crate::engine::spec::{ClientCert, HttpVersion, TlsOptions};
use crate::engine::task::ErrorCode;

/// Which protocols a connection offers in its handshake (ALPN).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Alpn {
    /// `h2` and `http/1.1`: the server picks.
    Both,
    Http1,
    Http2,
}

impl Alpn {
    pub fn of(version: HttpVersion) -> Alpn {
        match version {
            HttpVersion::Auto => Alpn::Both,
            HttpVersion::Http1 => Alpn::Http1,
            HttpVersion::Http2 => Alpn::Http2,
        }
    }

    fn protocols(self) -> Vec<Vec<u8>> {
        match self {
            Alpn::Both => vec![b"h2".to_vec(), b"http/1.1".to_vec()],
            Alpn::Http1 => vec![b"http/1.1".to_vec()],
            Alpn::Http2 => vec![b"h2".to_vec()],
        }
    }
}

/// The roots HTTP jobs trust, and the client configurations made from them (kept, so that
/// every connection with the same options resumes the sessions the others made).
pub struct Trust {
    provider: Arc<CryptoProvider>,
    verifier: Arc<dyn ServerCertVerifier>,
    /// Configurations without a client certificate, by `insecure` and ALPN; those with one
    /// are made per batch (the files may change between batches).
    shared: Mutex<HashMap<(bool, Alpn), Arc<ClientConfig>>>,
}

impl std::fmt::Debug for Trust {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Trust")
    }
}

impl Trust {
    /// The platform's roots and those in `ca_files` (PEM). Fails with a sentence naming the
    /// file when one cannot be read or holds no certificate.
    pub fn new(ca_files: &[PathBuf]) -> Result<Trust, String> {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let mut extra = Vec::new();
        for file in ca_files {
            let pem =
                std::fs::read(file).map_err(|e| format!("--ca-file {}: {e}", file.display()))?;
            let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&pem)
                .collect::<Result<_, _>>()
                .map_err(|e| format!("--ca-file {}: not PEM certificates: {e}", file.display()))?;
            if certs.is_empty() {
                return Err(format!(
                    "--ca-file {}: holds no certificate (expected PEM \"BEGIN CERTIFICATE\" blocks)",
                    file.display()
                ));
            }
            extra.extend(certs);
        }
        let verifier =
            rustls_platform_verifier::Verifier::new_with_extra_roots(extra, provider.clone())
                .map_err(|e| format!("the platform's certificate roots: {e}"))?;
        Ok(Trust {
            provider,
            verifier: Arc::new(verifier),
            shared: Mutex::default(),
        })
    }

    /// The client configuration for a job's options, without a client certificate.
    pub fn config(&self, insecure: bool, alpn: Alpn) -> Arc<ClientConfig> {
        self.shared
            .lock()
            .entry((insecure, alpn))
            .or_insert_with(|| Arc::new(self.build(insecure, alpn, None)))
            .clone()
    }

    /// The configuration for a job's options, its client certificate read beneath the files
    /// root.
    pub fn config_for(
        &self,
        options: &TlsOptions,
        alpn: Alpn,
        files: &FilesRoot,
    ) -> Result<Arc<ClientConfig>, Failure> {
        match &options.client_cert {
            None => Ok(self.config(options.insecure, alpn)),
            Some(cert) => {
                let identity = read_identity(files, cert)?;
                Ok(Arc::new(self.build(options.insecure, alpn, Some(identity))))
            }
        }
    }

    fn build(
        &self,
        insecure: bool,
        alpn: Alpn,
        identity: Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>,
    ) -> ClientConfig {
        let verifier: Arc<dyn ServerCertVerifier> = if insecure {
            Arc::new(Insecure(self.provider.clone()))
        } else {
            self.verifier.clone()
        };
        let builder = ClientConfig::builder_with_provider(self.provider.clone())
            .with_safe_default_protocol_versions()
            .expect("the default provider supports the default versions")
            .dangerous()
            .with_custom_certificate_verifier(verifier);
        let mut config = match identity {
            // The key was checked against the certificate as it was read.
            Some((chain, key)) => builder
                .with_client_auth_cert(chain, key)
                .expect("a key that parsed and matched"),
            None => builder.with_no_client_auth(),
        };
        config.alpn_protocols = alpn.protocols();
        config
    }
}

/// The name a connection to `host` sends (SNI) and checks the certificate against:
/// `server_name` when the job gives one.
pub fn server_name(options: &TlsOptions, host: &str) -> Result<ServerName<'static>, Failure> {
    let name = options.server_name.as_deref().unwrap_or(host);
    // An IPv6 host comes bracketed from the URL.
    let bare = name.trim_start_matches('[').trim_end_matches(']');
    ServerName::try_from(bare.to_owned()).map_err(|_| {
        Failure::new(
            ErrorCode::Tls,
            format!("{name:?} is not a valid TLS server name"),
        )
    })
}

/// A client certificate chain and its key, read beneath the files root.
fn read_identity(
    files: &FilesRoot,
    cert: &ClientCert,
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), Failure> {
    let dir = files.dir()?;
    let read = |path: &str| {
        dir.read(Path::new(path)).map_err(|e| {
            let code = if e.kind() == std::io::ErrorKind::NotFound {
                ErrorCode::NotFound
            } else if e.kind() == std::io::ErrorKind::PermissionDenied {
                ErrorCode::Forbidden
            } else {
                ErrorCode::Tls
            };
            Failure::new(
                code,
                format!("reading the client certificate file {path}: {e}"),
            )
        })
    };
    let bad = |path: &str, what: &str| {
        Failure::new(ErrorCode::Tls, format!("{path} holds no PEM {what}"))
    };
    let chain_pem = read(&cert.cert)?;
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&chain_pem)
        .collect::<Result<_, _>>()
        .map_err(|_| bad(&cert.cert, "certificate"))?;
    if chain.is_empty() {
        return Err(bad(&cert.cert, "certificate"));
    }
    let key = PrivateKeyDer::from_pem_slice(&read(&cert.key)?)
        .map_err(|_| bad(&cert.key, "private key"))?;
    // Checked here so that a key that does not go with the certificate says so.
    let provider = rustls::crypto::aws_lc_rs::default_provider();
    let signing = provider
        .key_provider
        .load_private_key(key.clone_key())
        .map_err(|e| Failure::new(ErrorCode::Tls, format!("{}: {e}", cert.key)))?;
    rustls::sign::CertifiedKey::new(chain.clone(), signing)
        .keys_match()
        .map_err(|_| {
            Failure::new(
                ErrorCode::Tls,
                format!(
                    "the key {} does not belong to the certificate {}",
                    cert.key, cert.cert
                ),
            )
        })?;
    Ok((chain, key))
}

/// Accepts any certificate (`tls.insecure`), still checking that the server holds the key
/// it presents, so the connection is encrypted to whoever answered.
#[derive(Debug)]
struct Insecure(Arc<CryptoProvider>);

impl ServerCertVerifier for Insecure {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// The rustls error among an error's causes, if any.
pub fn rustls_cause<'a>(e: &'a (dyn std::error::Error + 'static)) -> Option<&'a rustls::Error> {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(c) = cause {
        if let Some(found) = c.downcast_ref::<rustls::Error>() {
            return Some(found);
        }
        if let Some(io) = c.downcast_ref::<std::io::Error>()
            && let Some(inner) = io.get_ref()
            && let Some(found) = inner.downcast_ref::<rustls::Error>()
        {
            return Some(found);
        }
        cause = c.source();
    }
    None
}

/// A failed handshake with `host`, in words that say what was wrong and what to do.
pub fn handshake_failure(host: &str, e: &rustls::Error) -> Failure {
    let message = match e {
        rustls::Error::InvalidCertificate(cert) => certificate_words(host, cert),
        rustls::Error::AlertReceived(alert) => match alert {
            rustls::AlertDescription::CertificateRequired => format!(
                "{host} requires a client certificate: give tls.client_cert and tls.client_key"
            ),
            rustls::AlertDescription::UnknownCA | rustls::AlertDescription::BadCertificate => {
                format!("{host} refused the client certificate ({alert:?})")
            }
            rustls::AlertDescription::NoApplicationProtocol => {
                format!(
                    "{host} speaks none of the HTTP versions offered in the TLS handshake (ALPN; \
                 http_version \"2\" offers HTTP/2 only)"
                )
            }
            _ => format!("{host} ended the TLS handshake: {alert:?}"),
        },
        rustls::Error::NoApplicationProtocol => {
            format!(
                "{host} speaks none of the HTTP versions offered in the TLS handshake (ALPN; \
                 http_version \"2\" offers HTTP/2 only)"
            )
        }
        other => format!("TLS handshake with {host}: {other}"),
    };
    Failure::new(ErrorCode::Tls, message)
}

fn certificate_words(host: &str, e: &CertificateError) -> String {
    let fix = "add its CA with --ca-file, or set tls.insecure on a server run with \
               --allow-insecure-tls";
    match e {
        CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
            format!("the certificate of {host} has expired")
        }
        CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
            format!("the certificate of {host} is not valid yet")
        }
        CertificateError::UnknownIssuer => format!(
            "the certificate of {host} is signed by an unknown issuer (a private CA, or \
             self-signed): {fix}"
        ),
        CertificateError::NotValidForName => {
            format!("the certificate of {host} is not valid for that name (name mismatch)")
        }
        CertificateError::NotValidForNameContext {
            expected,
            presented,
        } => format!(
            "the certificate of {host} is not valid for {} (name mismatch): it names {}",
            expected.to_str(),
            presented.join(", ")
        ),
        CertificateError::BadSignature => format!(
            "the certificate of {host} has a signature that does not check out against its \
             issuer (a self-signed certificate, or a CA's that does not match): {fix}"
        ),
        CertificateError::Revoked => format!("the certificate of {host} has been revoked"),
        CertificateError::Other(other) if other.to_string().contains("CaUsedAsEndEntity") => {
            format!("{host} presents a CA certificate as its own (self-signed as a CA): {fix}")
        }
        other => format!("the certificate of {host} was refused: {other:?}"),
    }
}
