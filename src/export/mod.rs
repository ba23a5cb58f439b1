//! Exporters: the same lab file published on another platform.
//!
//! - [`killercoda`]: a Killercoda scenario directory (`breakfix export killercoda`).

pub mod killercoda;
