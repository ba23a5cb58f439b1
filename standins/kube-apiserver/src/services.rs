//! Service address allocation: ClusterIPs from --service-cluster-ip-range and node ports
//! from 30000-32767, unique among existing Services.

use std::net::Ipv4Addr;

use rand::Rng;
use serde_json::{json, Value};
use tokio::time::Instant;

use crate::app::App;
use crate::objects::{self, name_of};
use crate::registry;
use crate::status::ApiError;

/// Parses `--service-cluster-ip-range` (IPv4 CIDR) into (network, size).
pub fn service_range(cidr: &str) -> (u32, u32) {
    let (ip, bits) = cidr.split_once('/').unwrap_or((cidr, "12"));
    let ip: Ipv4Addr = ip.parse().unwrap_or(Ipv4Addr::new(10, 96, 0, 0));
    let bits: u32 = bits.parse().unwrap_or(12).clamp(8, 30);
    let size = 1u32 << (32 - bits);
    (u32::from(ip) & !(size - 1), size)
}

/// Allocates a ClusterIP (and node ports) for a new Service.
pub async fn allocate(app: &App, obj: &mut Value, deadline: Instant) -> Result<(), ApiError> {
    let typ = obj
        .pointer("/spec/type")
        .and_then(Value::as_str)
        .unwrap_or("ClusterIP")
        .to_string();
    if typ == "ExternalName" {
        return Ok(());
    }
    let svc = registry::by_kind("Service")?;
    let (all, _) = objects::list(app, svc, None, deadline).await?;
    let used_ips: Vec<String> = all
        .iter()
        .filter_map(|s| {
            s.pointer("/spec/clusterIP")
                .and_then(Value::as_str)
                .map(String::from)
        })
        .collect();
    let want = obj
        .pointer("/spec/clusterIP")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let ip = if !want.is_empty() {
        if want != "None" && used_ips.contains(&want) {
            return Err(ApiError::invalid(
                svc,
                name_of(obj),
                "spec.clusterIPs",
                &format!("Invalid value: [{want:?}]: failed to allocate IP {want}: provided IP is already allocated"),
            ));
        }
        want
    } else {
        let (net, size) = service_range(&app.flags.service_cluster_ip_range);
        let mut rng = rand::thread_rng();
        let mut pick = String::new();
        for _ in 0..200 {
            let cand =
                Ipv4Addr::from(net + rng.gen_range(10..size.saturating_sub(1).max(11))).to_string();
            if !used_ips.contains(&cand) {
                pick = cand;
                break;
            }
        }
        if pick.is_empty() {
            return Err(ApiError::internal(
                "failed to allocate a serviceIP: range is full",
            ));
        }
        pick
    };
    obj["spec"]["clusterIP"] = json!(ip);
    obj["spec"]["clusterIPs"] = json!([ip]);
    if typ == "NodePort" || typ == "LoadBalancer" {
        let used: Vec<i64> = all
            .iter()
            .flat_map(|s| {
                s.pointer("/spec/ports")
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default()
            })
            .filter_map(|p| p.get("nodePort").and_then(Value::as_i64))
            .collect();
        let mut rng = rand::thread_rng();
        if let Some(Value::Array(ports)) = obj.pointer_mut("/spec/ports") {
            for p in ports {
                if p.get("nodePort").and_then(Value::as_i64).unwrap_or(0) == 0 {
                    let mut np = rng.gen_range(30000..32768);
                    while used.contains(&np) {
                        np = rng.gen_range(30000..32768);
                    }
                    p["nodePort"] = json!(np);
                }
            }
        }
        obj["spec"]["externalTrafficPolicy"] = json!("Cluster");
    }
    Ok(())
}
