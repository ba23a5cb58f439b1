//! A test CA made with rcgen that issues leaf certificates (PEM strings, nothing on disk).
//!
//! Shared through `#[path]` by `common/etcd.rs` (so also by `benches/quota_fill.rs`), so it
//! depends on std and rcgen only.
#![allow(dead_code)]

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};

/// A CA able to issue leaf certificates.
pub struct Ca {
    params: CertificateParams,
    key: KeyPair,
    /// The CA certificate (PEM).
    pub pem: String,
}

impl Ca {
    /// A self-signed CA named `cn`.
    pub fn new(cn: &str) -> Ca {
        let key = KeyPair::generate().expect("CA key");
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, cn);
        params.distinguished_name = dn;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyCertSign,
        ];
        let pem = params.self_signed(&key).expect("self-sign CA").pem();
        Ca { params, key, pem }
    }

    /// A leaf certificate for `cn` (in organization `org`, e.g. a Kubernetes group) with
    /// `sans`, good for `usages` (client and/or server auth): (certificate PEM, key PEM).
    pub fn leaf(
        &self,
        cn: &str,
        org: Option<&str>,
        sans: &[&str],
        usages: &[ExtendedKeyUsagePurpose],
    ) -> (String, String) {
        let key = KeyPair::generate().expect("leaf key");
        let mut params =
            CertificateParams::new(sans.iter().map(|s| s.to_string()).collect::<Vec<_>>())
                .expect("SANs");
        let mut dn = DistinguishedName::new();
        if let Some(o) = org {
            dn.push(DnType::OrganizationName, o);
        }
        dn.push(DnType::CommonName, cn);
        params.distinguished_name = dn;
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = usages.to_vec();
        let issuer = Issuer::from_params(&self.params, &self.key);
        let cert = params.signed_by(&key, &issuer).expect("sign leaf");
        (cert.pem(), key.serialize_pem())
    }

    /// A client certificate for `cn` with `sans`, with `server` also a server one:
    /// (certificate PEM, key PEM).
    pub fn issue(&self, cn: &str, sans: &[&str], server: bool) -> (String, String) {
        let usages: &[ExtendedKeyUsagePurpose] = if server {
            &[
                ExtendedKeyUsagePurpose::ClientAuth,
                ExtendedKeyUsagePurpose::ServerAuth,
            ]
        } else {
            &[ExtendedKeyUsagePurpose::ClientAuth]
        };
        self.leaf(cn, None, sans, usages)
    }
}
