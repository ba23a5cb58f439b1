//! Process-wide state shared by the HTTP handlers and the controller.

use std::sync::Arc;

use rustls::server::danger::ClientCertVerifier;

use crate::flags::Flags;
use crate::store::Store;

/// Everything a request or the controller needs.
pub struct App {
    /// Command line.
    pub flags: Flags,
    /// etcd storage.
    pub store: Store,
    /// Client certificate verifier (None without --client-ca-file).
    pub verifier: Option<Arc<dyn ClientCertVerifier>>,
}

impl App {
    /// `host:port` clients are told to use (/api's serverAddressByClientCIDRs).
    pub fn server_address(&self) -> String {
        let host = self
            .flags
            .advertise_address
            .map(|a| a.to_string())
            .unwrap_or_else(|| match self.flags.bind_address.is_unspecified() {
                true => "127.0.0.1".to_string(),
                false => self.flags.bind_address.to_string(),
            });
        format!("{host}:{}", self.flags.secure_port)
    }
}
