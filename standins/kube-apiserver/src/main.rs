//! kube-apiserver stand-in: placeholder until it lands.
fn main() {}
