//! The resource table: every kind the stand-in serves, with the facts discovery, routing,
//! etcd keys and error messages need. Adding a plain kind is one entry here.

/// One served resource.
#[derive(Debug)]
pub struct Resource {
    /// Plural name (`deployments`).
    pub name: &'static str,
    /// Singular name (`deployment`).
    pub singular: &'static str,
    /// Kind (`Deployment`).
    pub kind: &'static str,
    /// API group (`""` for core).
    pub group: &'static str,
    /// API version.
    pub version: &'static str,
    /// Namespaced or cluster-scoped.
    pub namespaced: bool,
    /// kubectl short names (`deploy`); kubectl needs them from discovery.
    pub short_names: &'static [&'static str],
    /// Categories (`all` for `kubectl get all`).
    pub categories: &'static [&'static str],
    /// Directory under the etcd prefix, as the real apiserver uses (`minions` for nodes).
    pub etcd_dir: &'static str,
    /// Has a `/status` subresource (status is ignored on main-resource writes).
    pub status: bool,
    /// Has a `/scale` subresource.
    pub scale: bool,
    /// Not stored in etcd (componentstatuses): computed on read.
    pub computed: bool,
}

const fn res(
    name: &'static str,
    singular: &'static str,
    kind: &'static str,
    group: &'static str,
    namespaced: bool,
    short_names: &'static [&'static str],
    etcd_dir: &'static str,
) -> Resource {
    Resource {
        name,
        singular,
        kind,
        group,
        version: "v1",
        namespaced,
        short_names,
        categories: &[],
        etcd_dir,
        status: false,
        scale: false,
        computed: false,
    }
}

/// All resources, core group first.
pub static RESOURCES: &[Resource] = &[
    Resource {
        status: true,
        ..res(
            "namespaces",
            "namespace",
            "Namespace",
            "",
            false,
            &["ns"],
            "namespaces",
        )
    },
    Resource {
        status: true,
        ..res("nodes", "node", "Node", "", false, &["no"], "minions")
    },
    Resource {
        status: true,
        categories: &["all"],
        ..res("pods", "pod", "Pod", "", true, &["po"], "pods")
    },
    Resource {
        status: true,
        categories: &["all"],
        ..res(
            "services",
            "service",
            "Service",
            "",
            true,
            &["svc"],
            "services/specs",
        )
    },
    res(
        "configmaps",
        "configmap",
        "ConfigMap",
        "",
        true,
        &["cm"],
        "configmaps",
    ),
    res("secrets", "secret", "Secret", "", true, &[], "secrets"),
    res("events", "event", "Event", "", true, &["ev"], "events"),
    Resource {
        computed: true,
        ..res(
            "componentstatuses",
            "componentstatus",
            "ComponentStatus",
            "",
            false,
            &["cs"],
            "",
        )
    },
    Resource {
        status: true,
        scale: true,
        categories: &["all"],
        ..res(
            "deployments",
            "deployment",
            "Deployment",
            "apps",
            true,
            &["deploy"],
            "deployments",
        )
    },
    Resource {
        status: true,
        scale: true,
        categories: &["all"],
        ..res(
            "replicasets",
            "replicaset",
            "ReplicaSet",
            "apps",
            true,
            &["rs"],
            "replicasets",
        )
    },
    res(
        "leases",
        "lease",
        "Lease",
        "coordination.k8s.io",
        true,
        &[],
        "leases",
    ),
];

/// Looks a resource up by group, version and plural name.
pub fn find(group: &str, version: &str, name: &str) -> Option<&'static Resource> {
    RESOURCES
        .iter()
        .find(|r| r.group == group && r.version == version && r.name == name)
}

/// Looks a resource up by kind (controller and internal use).
pub fn by_kind(kind: &str) -> Result<&'static Resource, crate::status::ApiError> {
    RESOURCES
        .iter()
        .find(|r| r.kind == kind)
        .ok_or_else(|| crate::status::ApiError::internal(&format!("kind {kind} is not served")))
}

impl Resource {
    /// `v1` or `apps/v1`.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_string()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// `configmaps` or `deployments.apps`, as in error messages.
    pub fn qualified(&self) -> String {
        if self.group.is_empty() {
            self.name.to_string()
        } else {
            format!("{}.{}", self.name, self.group)
        }
    }

    /// The etcd key of one object.
    pub fn key(&self, prefix: &str, ns: Option<&str>, name: &str) -> String {
        match ns {
            Some(ns) if self.namespaced => format!("{prefix}/{}/{ns}/{name}", self.etcd_dir),
            _ => format!("{prefix}/{}/{name}", self.etcd_dir),
        }
    }

    /// The etcd prefix (with trailing slash) of a list: one namespace or all.
    pub fn list_prefix(&self, prefix: &str, ns: Option<&str>) -> String {
        match ns {
            Some(ns) if self.namespaced => format!("{prefix}/{}/{ns}/", self.etcd_dir),
            _ => format!("{prefix}/{}/", self.etcd_dir),
        }
    }

    /// The list kind (`ConfigMapList`).
    pub fn list_kind(&self) -> String {
        format!("{}List", self.kind)
    }
}
