//! The `log` subresource of pods (`kubectl logs`): static pods' output from the files the
//! kubelet stand-in writes under /var/log/pods; other pods run no containers and have none.

use serde_json::Value;
use tokio::time::Instant;

use crate::api::{ns_of, Target};
use crate::app::App;
use crate::http::{self, Ctx, Resp};
use crate::objects;
use crate::status::ApiError;

/// `kubectl logs`: static pods' logs from the kubelet stand-in's files on this node; other
/// pods run no containers and have empty logs.
pub async fn get(
    app: &App,
    ctx: &Ctx,
    t: &Target,
    name: &str,
    deadline: Instant,
) -> Result<Resp, ApiError> {
    let (pod, _) = objects::get(app, t.res, ns_of(t), name, deadline).await?;
    let containers: Vec<String> = pod
        .pointer("/spec/containers")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|c| c.get("name").and_then(Value::as_str).map(String::from))
                .collect()
        })
        .unwrap_or_default();
    let container = match ctx.query.get("container") {
        Some(c) if !c.is_empty() => c.to_string(),
        _ if containers.len() == 1 => containers[0].clone(),
        _ => {
            return Err(ApiError::bad_request(format!(
                "a container name must be specified for pod {name}, choose one of: [{}]",
                containers.join(" ")
            )))
        }
    };
    if !containers.contains(&container) {
        return Err(ApiError::bad_request(format!(
            "container {container} is not valid for pod {name}"
        )));
    }
    let hash = pod
        .pointer("/metadata/annotations/kubernetes.io~1config.hash")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let ns = ns_of(t).unwrap_or_default();
    let mut text = String::new();
    if !hash.is_empty() {
        let dir = app
            .flags
            .pod_logs_dir
            .join(format!("{ns}_{name}_{hash}"))
            .join(&container);
        let mut files: Vec<(u64, std::path::PathBuf)> = std::fs::read_dir(&dir)
            .map(|rd| {
                rd.filter_map(Result::ok)
                    .filter_map(|e| {
                        let n = e
                            .file_name()
                            .to_string_lossy()
                            .strip_suffix(".log")?
                            .parse()
                            .ok()?;
                        Some((n, e.path()))
                    })
                    .collect()
            })
            .unwrap_or_default();
        files.sort();
        let pick = if ctx.query.flag("previous") {
            files.len().checked_sub(2).and_then(|i| files.get(i))
        } else {
            files.last()
        };
        if let Some((_, p)) = pick {
            let raw = std::fs::read_to_string(p).unwrap_or_default();
            text = raw
                .lines()
                .map(strip_cri_prefix)
                .collect::<Vec<_>>()
                .join("\n");
            if !text.is_empty() {
                text.push('\n');
            }
        }
    }
    if let Some(n) = ctx
        .query
        .get("tailLines")
        .and_then(|n| n.parse::<usize>().ok())
    {
        let lines: Vec<&str> = text.lines().collect();
        let start = lines.len().saturating_sub(n);
        text = lines[start..].iter().map(|l| format!("{l}\n")).collect();
    }
    Ok(http::text(200, text))
}

/// `2025-01-01T00:00:00.000000000Z stdout F message` -> `message`.
fn strip_cri_prefix(line: &str) -> &str {
    let mut parts = line.splitn(4, ' ');
    match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some(ts), Some("stdout" | "stderr"), Some("F" | "P"), Some(msg)) if ts.contains('T') => {
            msg
        }
        _ => line,
    }
}
