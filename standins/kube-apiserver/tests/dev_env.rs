//! Manual exploration aid (ignored): starts etcd + the stand-in, writes the kubeconfig path
//! and PIDs' ports to $DEV_ENV_INFO, and keeps them up for $DEV_ENV_SECS seconds.

mod common;

#[test]
#[ignore]
fn dev_env() {
    let extra: Vec<String> = std::env::var("DEV_ENV_FLAGS")
        .unwrap_or_default()
        .split_whitespace()
        .map(String::from)
        .collect();
    let s = common::Stack::start_with(&extra);
    let secs: u64 = std::env::var("DEV_ENV_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(300);
    let info = format!(
        "KUBECONFIG={}\nCACHE={}\nETCD={}\nAPI_PORT={}\nLOG={}\nWORK={}\n",
        s.kubectl.kubeconfig.display(),
        s.kubectl.cache.display(),
        s.etcd.url(),
        s.api.port,
        s.api.log.display(),
        s.path().display()
    );
    let out = std::env::var("DEV_ENV_INFO").unwrap_or_else(|_| "/tmp/kas-dev.env".into());
    std::fs::write(out, info).expect("write info");
    std::thread::sleep(std::time::Duration::from_secs(secs));
}
