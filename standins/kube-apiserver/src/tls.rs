//! TLS: the serving certificate, and client certificates checked against --client-ca-file
//! the way the real server does it: any certificate is accepted during the handshake and
//! verified afterwards, so a bad one gets `401 Unauthorized` instead of a handshake failure.

use std::path::Path;
use std::sync::Arc;

use rustls::client::danger::HandshakeSignatureValid;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::WebPkiClientVerifier;
use rustls::{
    DigitallySignedStruct, DistinguishedName, RootCertStore, ServerConfig, SignatureScheme,
};

/// Who sent a request.
#[derive(Debug, Clone)]
pub enum Identity {
    /// No client certificate.
    Anonymous,
    /// A verified client certificate: the user is its CN (groups, the O fields, are not
    /// needed: every authenticated user may do everything, as system:masters may).
    User {
        /// Common name.
        name: String,
    },
    /// A certificate that does not verify (wrong CA, expired): 401 everywhere.
    Invalid(String),
}

/// Serving configuration plus the verifier used after the handshake.
pub struct Tls {
    /// rustls server configuration (ALPN h2 and http/1.1).
    pub config: Arc<ServerConfig>,
    /// Verifier for client certificates, if --client-ca-file was given.
    pub verifier: Option<Arc<dyn ClientCertVerifier>>,
}

fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("open {}: {}", path.display(), e))?;
    let certs: Vec<_> = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<_, _>>()
        .map_err(|e| format!("reading certificates from {}: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!("no certificates found in {}", path.display()));
    }
    Ok(certs)
}

/// Loads the serving certificate and key and the client CA.
pub fn load(cert: &Path, key: &Path, client_ca: Option<&Path>) -> Result<Tls, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let chain = read_certs(cert)?;
    let key_bytes = std::fs::read(key).map_err(|e| format!("open {}: {}", key.display(), e))?;
    let key_der = PrivateKeyDer::from_pem_slice(&key_bytes)
        .map_err(|e| format!("reading the private key from {}: {e}", key.display()))?;
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?;
    let (builder, verifier) = match client_ca {
        Some(ca) => {
            let mut roots = RootCertStore::empty();
            for c in read_certs(ca)? {
                roots
                    .add(c)
                    .map_err(|e| format!("adding {} to the client CA pool: {e}", ca.display()))?;
            }
            let strict = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .allow_unauthenticated()
                .build()
                .map_err(|e| format!("client CA {}: {e}", ca.display()))?;
            let lenient = Arc::new(Lenient(strict.clone()));
            (builder.with_client_cert_verifier(lenient), Some(strict))
        }
        None => (builder.with_no_client_auth(), None),
    };
    let mut config = builder.with_single_cert(chain, key_der).map_err(|e| {
        format!(
            "tls: private key does not match public key ({}): {e}",
            key.display()
        )
    })?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Tls {
        config: Arc::new(config),
        verifier,
    })
}

/// Accepts any client certificate at handshake time (proof of key possession is still
/// checked); the chain is verified afterwards by [`identify`].
#[derive(Debug)]
struct Lenient(Arc<dyn ClientCertVerifier>);

impl ClientCertVerifier for Lenient {
    fn offer_client_auth(&self) -> bool {
        true
    }
    fn client_auth_mandatory(&self) -> bool {
        false
    }
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.0.root_hint_subjects()
    }
    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        Ok(ClientCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

/// Identifies the client of a finished handshake from its certificates.
pub fn identify(
    verifier: Option<&Arc<dyn ClientCertVerifier>>,
    certs: Option<&[CertificateDer<'_>]>,
) -> Identity {
    let (Some(verifier), Some(certs)) = (verifier, certs) else {
        return Identity::Anonymous;
    };
    let Some((leaf, rest)) = certs.split_first() else {
        return Identity::Anonymous;
    };
    if let Err(e) = verifier.verify_client_cert(leaf, rest, UnixTime::now()) {
        return Identity::Invalid(format!("verifying certificate: {e}"));
    }
    match x509_parser::parse_x509_certificate(leaf.as_ref()) {
        Ok((_, cert)) => {
            let subject = cert.subject();
            let name = subject
                .iter_common_name()
                .next()
                .and_then(|a| a.as_str().ok())
                .unwrap_or_default()
                .to_string();
            Identity::User { name }
        }
        Err(e) => Identity::Invalid(format!("parsing certificate: {e}")),
    }
}
