//! The two test tiers and the guard that keeps them apart.
//!
//! - The **pure tier**, `cargo test`: no root, no OpenSSH server, no etcd, no sandbox; a few
//!   minutes as any user.
//! - The **system tier**, `cargo test --features system-tests`: everything, including the
//!   tests that need root, the loopback sshd (`common/sshd.rs`), a real etcd
//!   (`common/etcd.rs`) or the sandbox (`common::sandbox()` and friends).
//!
//! A system-tier test carries
//! `#[cfg_attr(not(feature = "system-tests"), ignore = "system tier: needs ...")]`, so the pure
//! tier lists it as ignored, with the reason. The fixtures that reach the system call
//! [`require_system_tier`] first: a test that uses one without the attribute fails in the pure
//! tier with a message naming the attribute, rather than needing root or starting daemons.
//! (`tiers.rs` checks the attribute statically as well, in both tiers.)
//!
//! `common/sshd.rs` and `common/etcd.rs` call it as `super::tier`, so the benchmarks that
//! include those through `#[path]` include this file too; there it does nothing (benchmarks
//! are not built as tests).
#![allow(dead_code)]

/// The attribute that puts a test in the system tier (what the pure tier's messages quote).
pub const SYSTEM_TIER_ATTRIBUTE: &str =
    "#[cfg_attr(not(feature = \"system-tests\"), ignore = \"system tier: needs ...\")]";

/// True when this build runs the pure tier only: a test build without the `system-tests`
/// feature.
pub const PURE_TIER: bool = cfg!(all(test, not(feature = "system-tests")));

/// Panics in the pure tier, saying that the test calling it uses `what` (a system fixture:
/// "the sandbox", "sshd", "etcd") and must carry [`SYSTEM_TIER_ATTRIBUTE`]. Does nothing in
/// the system tier and outside tests.
pub fn require_system_tier(what: &str) {
    if PURE_TIER {
        panic!(
            "this test uses {what}, which belongs to the system tier, but it ran in the pure \
             tier (`cargo test` without `--features system-tests`, e.g. with `--ignored`, or \
             a test without the attribute): a system-tier test carries \
             {SYSTEM_TIER_ATTRIBUTE} and runs with `cargo test --features system-tests`"
        );
    }
}
