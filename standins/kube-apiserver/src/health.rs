//! /livez, /readyz and /healthz with the real output shapes: `ok`, `?verbose` listings
//! (`[+]ping ok`, `[-]etcd failed: reason withheld`, `readyz check failed`), `?exclude=`,
//! and single checks such as `/readyz/etcd`. /livez does not depend on etcd.

use crate::store::Health;

/// Which endpoint.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Kind {
    /// /livez
    Livez,
    /// /readyz
    Readyz,
    /// /healthz
    Healthz,
}

impl Kind {
    /// From the first path segment.
    pub fn from_segment(s: &str) -> Option<Kind> {
        match s {
            "livez" => Some(Kind::Livez),
            "readyz" => Some(Kind::Readyz),
            "healthz" => Some(Kind::Healthz),
            _ => None,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Kind::Livez => "livez",
            Kind::Readyz => "readyz",
            Kind::Healthz => "healthz",
        }
    }
}

const HOOKS: &[&str] = &[
    "poststarthook/start-apiserver-admission-initializer",
    "poststarthook/generic-apiserver-start-informers",
    "poststarthook/priority-and-fairness-config-consumer",
    "poststarthook/priority-and-fairness-filter",
    "poststarthook/storage-object-count-tracker-hook",
    "poststarthook/start-apiextensions-informers",
    "poststarthook/start-apiextensions-controllers",
    "poststarthook/crd-informer-synced",
    "poststarthook/start-system-namespaces-controller",
    "poststarthook/bootstrap-controller",
    "poststarthook/rbac/bootstrap-roles",
    "poststarthook/scheduling/bootstrap-system-priority-classes",
    "poststarthook/start-kube-aggregator-informers",
    "poststarthook/apiservice-registration-controller",
    "poststarthook/kube-apiserver-autoregistration",
];

/// (check name, error if failing) for every check of `kind`.
fn checks(kind: Kind, h: &Health) -> Vec<(&'static str, Option<String>)> {
    let etcd_err = if h.ok {
        None
    } else if h.checked {
        Some(h.error.clone())
    } else {
        Some("etcd client connection not yet established".to_string())
    };
    let mut out: Vec<(&'static str, Option<String>)> = vec![("ping", None), ("log", None)];
    if kind != Kind::Livez {
        out.push(("etcd", etcd_err.clone()));
    }
    if kind == Kind::Readyz {
        out.push(("etcd-readiness", etcd_err));
        out.push(("informer-sync", None));
    }
    out.extend(HOOKS.iter().map(|h| (*h, None)));
    if kind != Kind::Livez {
        out.push(("autoregister-completion", None));
    }
    if kind == Kind::Readyz {
        out.push(("shutdown", None));
    }
    out
}

/// Answers `/<kind>` (check = None) or `/<kind>/<check>`: (HTTP code, text body).
pub fn answer(
    kind: Kind,
    check: Option<&str>,
    verbose: bool,
    exclude: &[String],
    h: &Health,
) -> (u16, String) {
    let all = checks(kind, h);
    if let Some(name) = check {
        return match all.iter().find(|(n, _)| *n == name) {
            Some((_, None)) => (200, "ok".into()),
            Some((_, Some(e))) => (500, format!("internal server error: {e}\n")),
            None => (404, "404 page not found\n".into()),
        };
    }
    let mut body = String::new();
    let mut failed = false;
    for (name, err) in &all {
        if exclude.iter().any(|e| e == name) {
            body.push_str(&format!("[+]{name} excluded: ok\n"));
        } else if err.is_some() {
            failed = true;
            body.push_str(&format!("[-]{name} failed: reason withheld\n"));
        } else {
            body.push_str(&format!("[+]{name} ok\n"));
        }
    }
    if failed {
        body.push_str(&format!("{} check failed\n", kind.name()));
        (500, body)
    } else if verbose {
        body.push_str(&format!("{} check passed\n", kind.name()));
        (200, body)
    } else {
        (200, "ok".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readyz_fails_on_etcd_livez_does_not() {
        let down = Health {
            checked: true,
            ok: false,
            error: "error getting data from etcd: context deadline exceeded".into(),
            detail: "dial tcp 127.0.0.1:2379: connect: connection refused".into(),
        };
        let (code, body) = answer(Kind::Readyz, None, false, &[], &down);
        assert_eq!(code, 500);
        assert!(body.contains("[-]etcd failed: reason withheld\n"));
        assert!(body.ends_with("readyz check failed\n"));
        assert_eq!(
            answer(Kind::Livez, None, false, &[], &down),
            (200, "ok".to_string())
        );
        let (code, body) = answer(
            Kind::Readyz,
            None,
            true,
            &["etcd".into(), "etcd-readiness".into()],
            &down,
        );
        assert_eq!(code, 200);
        assert!(body.contains("[+]etcd excluded: ok"));
    }
}
