//! What a fault, step or probe may change or read on its node: the scope of the before/after
//! snapshots `breakfix test` compares (see `engine::snapshot`). Below `fault/` and `probe/`,
//! which both fill it in.

/// What an action or probe may change or read on its node, for the before/after snapshots of `breakfix test`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Touches {
    /// Absolute paths whose sha256 is compared.
    pub files: Vec<String>,
    /// systemd units whose active/enabled state is compared.
    pub units: Vec<String>,
    /// Whether block-I/O limits in the node's cgroup tree are counted.
    pub io_throttle: bool,
    /// Whether the node's qdiscs are compared.
    pub qdisc: bool,
    /// Paths whose filesystem's mount point is searched for `disk_fill`'s filler files
    /// (`.breakfix-fill-*`); their count is compared.
    pub fillers: Vec<String>,
}
