//! breakfix: a break/fix incident-lab engine for Kubernetes control planes (etcd first).
//!
//! Data flows one way (see docs/architecture.md):
//! load -> validate -> render -> plan -> connect -> break -> confirm -> tasks -> verify ->
//! grade -> report -> reset.

#[macro_use]
pub mod kind_first;
pub mod cli;
pub mod duration;
pub mod engine;
pub mod error;
pub mod export;
pub mod failpoint;
pub mod fault;
#[doc(hidden)]
pub mod fuzzing;
pub mod host_address;
pub mod inventory;
pub mod journal;
pub mod lab;
pub mod matcher;
pub mod node;
pub mod plan;
pub mod probe;
pub mod problem;
pub mod report;
pub mod sandbox;
pub mod scenario;
pub mod state;
pub mod template;
pub mod touches;
pub mod transport;

pub use error::{Error, Result};
