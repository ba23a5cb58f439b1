//! Integration tests: one binary (faster to link), one module per area. Tests that need the
//! sandbox take `common::sandbox()` which serialises them and brings the sandbox up on demand.

mod common;
mod diagnostics;
mod engine;
mod etcd_faults;
mod etcd_probe;
mod export;
mod journal;
mod kinds;
mod layers;
mod node_faults;
mod sandbox;
mod scenarios;
mod stacked;
mod transport;
