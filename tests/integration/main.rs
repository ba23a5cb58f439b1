//! Integration tests: one binary (faster to link), one module per area. Tests that need the
//! sandbox take `common::sandbox()` which serialises them and brings the sandbox up on demand.
//!
//! Two tiers (`common/tier.rs`): `cargo test` runs the pure tests only (no root, sshd, etcd or
//! sandbox); `cargo test --features system-tests` runs every test. A test that needs root, the
//! loopback sshd, etcd or the sandbox carries
//! `#[cfg_attr(not(feature = "system-tests"), ignore = "system tier: needs ...")]`.

mod common;
mod diagnostics;
mod engine;
mod etcd_faults;
mod etcd_probe;
mod export;
mod formats;
mod ha;
mod journal;
mod kinds;
mod layers;
mod learner_check;
mod node_faults;
mod sandbox;
mod scenarios;
mod stacked;
mod tiers;
mod transport;
