//! Shared helpers for the integration tests.

// ---- transport helper: a real OpenSSH server on loopback (tests/integration/common/sshd.rs) ----
pub mod sshd;
