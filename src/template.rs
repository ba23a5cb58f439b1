//! Templates: minijinja rendering of scenario strings, strict about undefined variables and
//! shell-quoting every value inserted into a shell command.
//!
//! Context available to every template:
//! - `params.<name>`: the scenario's parameters (defaults overridden by `--param k=v`);
//! - `node.name`, `node.address`, `node.roles`: the node the string is rendered for;
//! - `cluster.name`, `cluster.topology`, `cluster.etcd.endpoints` (and `cluster.etcd.endpoint`,
//!   the first of them), `cluster.etcd.ca_file`,
//!   `cluster.etcd.cert_file`, `cluster.etcd.key_file`, `cluster.kubeconfig`;
//! - `nodes`: every node (`name`, `address`, `roles`).
//!
//! In shell context (`run:`, `undo:`, `then:`) each `{{ value }}` is inserted as one literal
//! shell word ([`crate::transport::shell_quote`]: as it is when it holds only characters the
//! shell reads literally, else single-quoted), so a param like `$(touch /tmp/pwned)` stays a
//! literal string. `{{ value | raw }}` inserts it as is,
//! for the rare case where a param holds shell syntax on purpose.

use std::collections::BTreeMap;

use minijinja::{AutoEscape, Environment, UndefinedBehavior, Value};

use crate::error::{Error, Result};
use crate::inventory::{Inventory, Node};

/// Shell template names end in this suffix; it selects the quoting formatter.
const SHELL_SUFFIX: &str = ".sh";

/// The one minijinja environment: strict undefined, the shell-quoting formatter for `.sh`
/// template names, and the `raw` filter. Validation checks templates with this same one.
pub fn environment() -> Environment<'static> {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    env.set_auto_escape_callback(|name| {
        if name.ends_with(SHELL_SUFFIX) {
            AutoEscape::Custom("shell".into())
        } else {
            AutoEscape::None
        }
    });
    env.set_formatter(|out, state, value| {
        if matches!(state.auto_escape(), AutoEscape::Custom(n) if n == "shell") && !value.is_safe()
        {
            let text = value.to_string();
            write!(out, "{}", crate::transport::shell_quote(&text)).map_err(minijinja::Error::from)
        } else {
            minijinja::escape_formatter(out, state, value)
        }
    });
    env.add_filter("raw", |v: Value| Value::from_safe_string(v.to_string()));
    env
}

/// Renders strings for one node.
pub struct Renderer {
    env: Environment<'static>,
    ctx: Value,
}

impl Renderer {
    /// A renderer with `params` and the facts of `node` in `inventory`.
    pub fn new(params: &BTreeMap<String, String>, inventory: &Inventory, node: &Node) -> Renderer {
        let nodes: Vec<Value> = inventory.nodes.iter().map(node_value).collect();
        let ctx = minijinja::context! {
            params => Value::from(minijinja::value::Serde(params)),
            node => node_value(node),
            nodes => nodes,
            cluster => cluster_value(&inventory.cluster),
        };
        Renderer {
            env: environment(),
            ctx,
        }
    }

    /// A renderer with only `params` (used by validation, which has no inventory).
    pub fn params_only(params: &BTreeMap<String, String>) -> Renderer {
        let ctx = minijinja::context! { params => Value::from(minijinja::value::Serde(params)) };
        Renderer {
            env: environment(),
            ctx,
        }
    }

    /// Renders plain text (no quoting).
    pub fn text(&self, template: &str) -> Result<String> {
        self.render("text", template)
    }

    /// Renders a shell command: inserted values are shell-quoted unless marked `| raw`.
    pub fn shell(&self, template: &str) -> Result<String> {
        self.render("command.sh", template)
    }

    fn render(&self, name: &str, template: &str) -> Result<String> {
        if !template.contains("{{") && !template.contains("{%") {
            return Ok(template.to_string());
        }
        self.env
            .render_named_str(name, template, &self.ctx)
            .map_err(|e| Error::other(format!("template `{template}`: {e:#}")))
    }
}

/// `cluster` as templates see it: the inventory's cluster facts plus `etcd.endpoint`, the
/// first of `etcd.endpoints` (for the common single-endpoint command line).
fn cluster_value(c: &crate::inventory::Cluster) -> Value {
    let mut v = serde_json::to_value(c).unwrap_or_default();
    if let Some(first) = c.etcd.endpoints.first() {
        if let Some(etcd) = v.get_mut("etcd").and_then(|e| e.as_object_mut()) {
            etcd.insert("endpoint".into(), serde_json::Value::from(first.clone()));
        }
    }
    Value::from(minijinja::value::Serde(v))
}

fn node_value(n: &Node) -> Value {
    minijinja::context! {
        name => n.name.clone(),
        address => n.address.clone(),
        roles => n.roles.clone(),
    }
}

/// Variables a template refers to at its top level (e.g. `params`), for validation.
pub fn variables_of(template: &str) -> std::result::Result<Vec<String>, String> {
    let env = environment();
    let tmpl = env.template_from_str(template).map_err(|e| e.to_string())?;
    Ok(tmpl.undeclared_variables(true).into_iter().collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(k: &str, v: &str) -> Renderer {
        let mut p = BTreeMap::new();
        p.insert(k.to_string(), v.to_string());
        Renderer::params_only(&p)
    }

    #[test]
    fn values_are_quoted_only_when_the_shell_would_read_them_otherwise() {
        for (value, inserted) in [
            ("etcd", "etcd"),
            ("/var/lib/etcd", "/var/lib/etcd"),
            ("--data-dir=/a,b@c:d%e+f", "--data-dir=/a,b@c:d%e+f"),
            ("it's", r"'it'\''s'"),
            ("a b", "'a b'"),
            ("", "''"),
            ("~root", "'~root'"),
            ("*", "'*'"),
        ] {
            let out = r("x", value).shell("{{ params.x }}").expect("renders");
            assert_eq!(out, inserted, "{value:?}");
        }
    }

    #[test]
    fn cluster_etcd_endpoint_is_the_first_endpoint() {
        let inv = crate::inventory::Inventory::parse(
            std::path::Path::new("inventory.yaml"),
            "apiVersion: breakfix/v1\nkind: Inventory\ncluster: { name: lab, topology: stacked, etcd: { endpoints: [https://10.0.0.1:2379, https://10.0.0.2:2379], ca_file: ca.crt, cert_file: c.crt, key_file: c.key } }\nnodes:\n  - { name: cp1, address: 10.0.0.1, roles: [control-plane, etcd], known_hosts: kh }\n",
        )
        .expect("inventory");
        let node = inv.node("cp1").expect("cp1").clone();
        let r = Renderer::new(&BTreeMap::new(), &inv, &node);
        assert_eq!(
            r.shell("etcdctl --endpoints={{ cluster.etcd.endpoint }} --cacert={{ cluster.etcd.ca_file }}")
                .expect("renders"),
            "etcdctl --endpoints=https://10.0.0.1:2379 --cacert=ca.crt"
        );
        assert_eq!(
            r.text("{{ cluster.etcd.endpoints | join(',') }}")
                .expect("renders"),
            "https://10.0.0.1:2379,https://10.0.0.2:2379"
        );
    }

    #[test]
    fn shell_values_are_quoted() {
        let out = r("x", "$(touch /tmp/pwned)")
            .shell("echo {{ params.x }}")
            .unwrap();
        assert_eq!(out, "echo '$(touch /tmp/pwned)'");
        let out = r("x", "it's").shell("echo {{ params.x }}").unwrap();
        assert_eq!(out, r"echo 'it'\''s'");
        let out = r("x", "etcd")
            .shell("systemctl stop {{ params.x }}")
            .unwrap();
        assert_eq!(out, "systemctl stop etcd");
    }

    #[test]
    fn raw_inserts_as_is() {
        let out = r("x", "a && b").shell("{{ params.x | raw }}").unwrap();
        assert_eq!(out, "a && b");
    }

    #[test]
    fn text_is_not_quoted() {
        assert_eq!(r("x", "a b").text("{{ params.x }}").unwrap(), "a b");
    }

    #[test]
    fn undefined_is_an_error() {
        let e = r("x", "1").text("{{ params.y }}").unwrap_err();
        assert!(e.to_string().contains("undefined"), "{e}");
    }

    #[test]
    fn lists_variables() {
        assert_eq!(
            variables_of("a {{ params.x }} {{ node.name }}")
                .unwrap()
                .len(),
            2
        );
    }
}
