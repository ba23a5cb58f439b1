//! The node layer: one connected node (its transport, batched systemd states, listeners, file
//! owners) and the etcd and Kubernetes API access reached through it, plus the kubeadm paths
//! every stage names. Below `fault/`, `probe/`, `journal/` and `engine/`, which all use it;
//! it imports none of them (tests/integration/layers.rs checks).

pub mod etcd;
pub mod flags;
pub mod kube;
pub mod kubeadm;
pub mod owners;
pub mod proc_net;
pub mod session;
pub mod units;

pub use session::{connect_all, NodeSession, CONNECT_TIMEOUT};
