//! kube-apiserver STAND-IN for breakfix sandbox nodes: serves the subset of the Kubernetes
//! API that labs use, stored as JSON in the real etcd, with an in-process controller for
//! nodes, mirror pods and deployments. Test/demo infrastructure, not the real server.

mod log;

mod api;
mod app;
mod componentstatus;
mod controller;
mod discovery;
mod events;
mod flags;
mod health;
mod http;
mod mirror;
mod nodes;
mod objects;
mod openapi;
mod patch;
mod podlogs;
mod protobuf;
mod registry;
mod scale;
mod scheduler;
mod selector;
mod server;
mod services;
mod status;
mod store;
mod strategy;
mod table;
mod tls;
mod util;
mod watch;
mod workloads;

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;

use crate::flags::{Flags, Parsed, K8S_VERSION};
use crate::log::{error, info};

fn main() -> ExitCode {
    match flags::parse(std::env::args().skip(1)) {
        Err(e) => {
            eprintln!("Error: {e}");
            ExitCode::from(1)
        }
        Ok(Parsed::Help) => {
            print!("{}", flags::help());
            ExitCode::SUCCESS
        }
        Ok(Parsed::Version) => {
            println!(
                "Kubernetes {K8S_VERSION} (breakfix kube-apiserver stand-in {})",
                env!("CARGO_PKG_VERSION")
            );
            ExitCode::SUCCESS
        }
        Ok(Parsed::Run(f)) => run(*f),
    }
}

fn fail(msg: &str) -> ExitCode {
    error!("\"command failed\" err=\"{}\"", msg.replace('"', "\\\""));
    ExitCode::from(1)
}

fn run(flags: Flags) -> ExitCode {
    if let Err(e) = flags.validate() {
        return fail(&e);
    }
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return fail(&format!("starting the runtime: {e}")),
    };
    rt.block_on(serve(flags))
}

async fn serve(flags: Flags) -> ExitCode {
    info!(
        "Version: {K8S_VERSION} (breakfix kube-apiserver STAND-IN {}; no real kube-apiserver)",
        env!("CARGO_PKG_VERSION")
    );
    info!("FLAG: --etcd-servers=\"{}\"", flags.etcd_servers.join(","));
    let (Some(cert), Some(key)) = (&flags.tls_cert_file, &flags.tls_private_key_file) else {
        return fail("--tls-cert-file and --tls-private-key-file are required");
    };
    let tls = match tls::load(cert, key, flags.client_ca_file.as_deref()) {
        Ok(t) => t,
        Err(e) => return fail(&e),
    };
    let store = match store::connect(&flags).await {
        Ok(s) => s,
        Err(e) => return fail(&e),
    };
    let addr = SocketAddr::new(flags.bind_address, flags.secure_port);
    let listener = match tokio::net::TcpListener::bind(addr).await {
        Ok(l) => l,
        Err(e) => {
            return fail(&format!(
            "failed to create listener: failed to listen on {addr}: listen tcp {addr}: bind: {e}"
        ))
        }
    };
    info!("Serving securely on {addr}");
    let app = Arc::new(app::App {
        flags,
        store: store.clone(),
        verifier: tls.verifier.clone(),
    });
    tokio::spawn(store.health_loop());
    tokio::spawn(controller::run(app.clone()));
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => return fail(&format!("installing the SIGTERM handler: {e}")),
    };
    tokio::select! {
        _ = server::serve(app, tls, listener) => {}
        _ = term.recv() => info!("[graceful-termination] shutting down (SIGTERM)"),
        _ = tokio::signal::ctrl_c() => info!("[graceful-termination] shutting down (SIGINT)"),
    }
    ExitCode::SUCCESS
}
