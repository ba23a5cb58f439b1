//! Test harness: a real etcd 3.4 with TLS (certificates from rcgen), the stand-in binary
//! with kubeadm-style flags, and the real kubectl/etcdctl with a temp kubeconfig and cache.
//! Everything started here is killed by PID when dropped.
#![allow(dead_code)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use rcgen::ExtendedKeyUsagePurpose::{ClientAuth, ServerAuth};

// The rcgen CA of the engine's integration tests (std and rcgen only).
#[path = "../../../../tests/integration/common/pki.rs"]
mod pki;
use pki::Ca;

pub const KUBECTL: &str = "/usr/bin/kubectl";
pub const ETCD: &str = "/usr/bin/etcd";
pub const ETCDCTL: &str = "/usr/bin/etcdctl";

/// A free TCP port on 127.0.0.1.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// PKI files in a directory, kubeadm-like names.
pub struct Pki {
    pub dir: PathBuf,
}

impl Pki {
    pub fn generate(dir: &Path) -> Pki {
        std::fs::create_dir_all(dir.join("etcd")).expect("mkdir");
        let w = |name: &str, data: &str| std::fs::write(dir.join(name), data).expect("write pki");
        let etcd_ca = Ca::new("etcd-ca");
        w("etcd/ca.crt", &etcd_ca.pem);
        let (c, k) = etcd_ca.leaf(
            "controlplane",
            None,
            &["localhost", "127.0.0.1"],
            &[ServerAuth, ClientAuth],
        );
        w("etcd/server.crt", &c);
        w("etcd/server.key", &k);
        let (c, k) = etcd_ca.leaf("kube-apiserver-etcd-client", None, &[], &[ClientAuth]);
        w("apiserver-etcd-client.crt", &c);
        w("apiserver-etcd-client.key", &k);
        let k8s_ca = Ca::new("kubernetes");
        w("ca.crt", &k8s_ca.pem);
        let (c, k) = k8s_ca.leaf(
            "kube-apiserver",
            None,
            &["127.0.0.1", "localhost", "kubernetes", "kubernetes.default"],
            &[ServerAuth],
        );
        w("apiserver.crt", &c);
        w("apiserver.key", &k);
        let (c, k) = k8s_ca.leaf(
            "kubernetes-admin",
            Some("system:masters"),
            &[],
            &[ClientAuth],
        );
        w("admin.crt", &c);
        w("admin.key", &k);
        // A client certificate from a CA the server does not trust.
        let rogue = Ca::new("rogue");
        let (c, k) = rogue.leaf("mallory", Some("system:masters"), &[], &[ClientAuth]);
        w("rogue.crt", &c);
        w("rogue.key", &k);
        Pki {
            dir: dir.to_path_buf(),
        }
    }

    pub fn path(&self, name: &str) -> String {
        self.dir.join(name).display().to_string()
    }
}

fn kill(child: &mut Child) {
    let _ = child.kill();
    let _ = child.wait();
}

/// A real etcd with client TLS.
pub struct Etcd {
    child: Option<Child>,
    pub client_port: u16,
    pub peer_port: u16,
    pub data_dir: PathBuf,
    log: PathBuf,
    pki_dir: PathBuf,
    extra: Vec<String>,
}

impl Etcd {
    pub fn start(work: &Path, pki: &Pki) -> Etcd {
        Etcd::start_with(work, pki, &[])
    }

    /// With extra etcd flags (e.g. `--quota-backend-bytes`).
    pub fn start_with(work: &Path, pki: &Pki, extra: &[&str]) -> Etcd {
        let mut e = Etcd {
            extra: extra.iter().map(|s| s.to_string()).collect(),
            child: None,
            client_port: free_port(),
            peer_port: free_port(),
            data_dir: work.join("etcd-data"),
            log: work.join("etcd.log"),
            pki_dir: pki.dir.clone(),
        };
        e.spawn();
        e
    }

    pub fn url(&self) -> String {
        format!("https://127.0.0.1:{}", self.client_port)
    }

    fn spawn(&mut self) {
        let p = |n: &str| self.pki_dir.join(n).display().to_string();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("etcd log");
        let peer = format!("http://127.0.0.1:{}", self.peer_port);
        let child = Command::new(ETCD)
            .args([
                "--name=controlplane",
                &format!("--data-dir={}", self.data_dir.display()),
                &format!("--listen-client-urls={}", self.url()),
                &format!("--advertise-client-urls={}", self.url()),
                &format!("--listen-peer-urls={peer}"),
                &format!("--initial-advertise-peer-urls={peer}"),
                &format!("--initial-cluster=controlplane={peer}"),
                "--client-cert-auth=true",
                &format!("--trusted-ca-file={}", p("etcd/ca.crt")),
                &format!("--cert-file={}", p("etcd/server.crt")),
                &format!("--key-file={}", p("etcd/server.key")),
                "--logger=zap",
            ])
            .args(&self.extra)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start etcd");
        self.child = Some(child);
        self.wait_healthy();
    }

    /// etcdctl with `stdin` as input (e.g. a large value for `put`).
    pub fn etcdctl_stdin(&self, args: &[&str], stdin: &[u8]) -> Output {
        use std::io::Write;
        let p = |n: &str| self.pki_dir.join(n).display().to_string();
        let mut child = Command::new(ETCDCTL)
            .env("ETCDCTL_API", "3")
            .args([
                &format!("--endpoints={}", self.url()),
                &format!("--cacert={}", p("etcd/ca.crt")),
                &format!("--cert={}", p("etcd/server.crt")),
                &format!("--key={}", p("etcd/server.key")),
            ])
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("etcdctl");
        if let Some(mut si) = child.stdin.take() {
            si.write_all(stdin).expect("stdin");
        }
        child.wait_with_output().expect("etcdctl output")
    }

    pub fn etcdctl(&self, args: &[&str]) -> Output {
        let p = |n: &str| self.pki_dir.join(n).display().to_string();
        Command::new(ETCDCTL)
            .env("ETCDCTL_API", "3")
            .args([
                &format!("--endpoints={}", self.url()),
                &format!("--cacert={}", p("etcd/ca.crt")),
                &format!("--cert={}", p("etcd/server.crt")),
                &format!("--key={}", p("etcd/server.key")),
                "--dial-timeout=2s",
                "--command-timeout=3s",
            ])
            .args(args)
            .output()
            .expect("etcdctl")
    }

    fn wait_healthy(&self) {
        let until = Instant::now() + Duration::from_secs(20);
        while Instant::now() < until {
            if self.etcdctl(&["endpoint", "health"]).status.success() {
                return;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        panic!(
            "etcd did not become healthy; log:\n{}",
            std::fs::read_to_string(&self.log).unwrap_or_default()
        );
    }

    /// SIGKILL by PID.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            kill(&mut c);
        }
    }

    /// Starts again on the same data dir and ports.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    /// Starts again with another data dir (same ports), as after a `--data-dir` edit.
    pub fn restart_with_data_dir(&mut self, dir: PathBuf) {
        self.kill();
        self.data_dir = dir;
        self.spawn();
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The stand-in process.
pub struct ApiServer {
    child: Option<Child>,
    pub port: u16,
    pub log: PathBuf,
}

pub const BIN: &str = env!("CARGO_BIN_EXE_kube-apiserver-standin");

/// kubeadm's flags for the stand-in, etcd at `etcd_servers`.
pub fn kubeadm_flags(pki: &Pki, port: u16, etcd_servers: &str, work: &Path) -> Vec<String> {
    vec![
        "--advertise-address=127.0.0.1".into(),
        "--allow-privileged=true".into(),
        "--authorization-mode=Node,RBAC".into(),
        format!("--client-ca-file={}", pki.path("ca.crt")),
        "--enable-admission-plugins=NodeRestriction".into(),
        "--enable-bootstrap-token-auth=true".into(),
        format!("--etcd-cafile={}", pki.path("etcd/ca.crt")),
        format!("--etcd-certfile={}", pki.path("apiserver-etcd-client.crt")),
        format!("--etcd-keyfile={}", pki.path("apiserver-etcd-client.key")),
        format!("--etcd-servers={etcd_servers}"),
        format!(
            "--kubelet-client-certificate={}",
            pki.path("apiserver-kubelet-client.crt")
        ),
        format!(
            "--kubelet-client-key={}",
            pki.path("apiserver-kubelet-client.key")
        ),
        "--kubelet-preferred-address-types=InternalIP,ExternalIP,Hostname".into(),
        format!(
            "--proxy-client-cert-file={}",
            pki.path("front-proxy-client.crt")
        ),
        format!(
            "--proxy-client-key-file={}",
            pki.path("front-proxy-client.key")
        ),
        "--requestheader-allowed-names=front-proxy-client".into(),
        format!(
            "--requestheader-client-ca-file={}",
            pki.path("front-proxy-ca.crt")
        ),
        "--requestheader-extra-headers-prefix=X-Remote-Extra-".into(),
        "--requestheader-group-headers=X-Remote-Group".into(),
        "--requestheader-username-headers=X-Remote-User".into(),
        format!("--secure-port={port}"),
        "--bind-address=127.0.0.1".into(),
        "--service-account-issuer=https://kubernetes.default.svc.cluster.local".into(),
        format!("--service-account-key-file={}", pki.path("sa.pub")),
        format!("--service-account-signing-key-file={}", pki.path("sa.key")),
        "--service-cluster-ip-range=10.96.0.0/12".into(),
        format!("--tls-cert-file={}", pki.path("apiserver.crt")),
        format!("--tls-private-key-file={}", pki.path("apiserver.key")),
        format!(
            "--breakfix-nodes-file={}",
            work.join("nodes.yaml").display()
        ),
        format!(
            "--breakfix-pods-file={}",
            work.join("standin-pods.json").display()
        ),
    ]
}

impl ApiServer {
    pub fn start(work: &Path, args: &[String]) -> ApiServer {
        let port = args
            .iter()
            .find_map(|a| a.strip_prefix("--secure-port="))
            .and_then(|p| p.parse().ok())
            .expect("--secure-port=N in args");
        let log = work.join("apiserver.log");
        let f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .expect("log");
        let child = Command::new(BIN)
            .args(args)
            .stdout(Stdio::null())
            .stderr(f)
            .spawn()
            .expect("start stand-in");
        let s = ApiServer {
            child: Some(child),
            port,
            log,
        };
        let until = Instant::now() + Duration::from_secs(20);
        while Instant::now() < until {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return s;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("stand-in did not listen; log:\n{}", s.log_text());
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            kill(&mut c);
        }
    }
}

impl Drop for ApiServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// kubectl with a private kubeconfig, cache dir and HOME.
pub struct Kubectl {
    pub kubeconfig: PathBuf,
    pub cache: PathBuf,
    pub home: PathBuf,
}

/// Output of one kubectl run.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Kubectl {
    /// Writes a kubeconfig like kubeadm's admin.conf (embedded certificates).
    pub fn new(work: &Path, pki: &Pki, port: u16, user: (&str, &str)) -> Kubectl {
        use base64::Engine as _;
        let b64 = |n: &str| {
            base64::engine::general_purpose::STANDARD
                .encode(std::fs::read(pki.dir.join(n)).expect("pki file"))
        };
        let kubeconfig = work.join(format!("{}.conf", user.0.replace('/', "_")));
        let text = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- cluster:\n    certificate-authority-data: {}\n    server: https://127.0.0.1:{port}\n  name: kubernetes\ncontexts:\n- context:\n    cluster: kubernetes\n    user: kubernetes-admin\n  name: kubernetes-admin@kubernetes\ncurrent-context: kubernetes-admin@kubernetes\nusers:\n- name: kubernetes-admin\n  user:\n    client-certificate-data: {}\n    client-key-data: {}\n",
            b64("ca.crt"),
            b64(user.0),
            b64(user.1)
        );
        std::fs::write(&kubeconfig, text).expect("kubeconfig");
        let home = work.join("home");
        std::fs::create_dir_all(&home).expect("home");
        Kubectl {
            kubeconfig,
            cache: work.join("kube-cache"),
            home,
        }
    }

    /// A kubeconfig without client certificate (anonymous requests).
    pub fn anonymous(work: &Path, pki: &Pki, port: u16) -> Kubectl {
        use base64::Engine as _;
        let ca = base64::engine::general_purpose::STANDARD
            .encode(std::fs::read(pki.dir.join("ca.crt")).expect("ca"));
        let kubeconfig = work.join("anonymous.conf");
        let text = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- cluster:\n    certificate-authority-data: {ca}\n    server: https://127.0.0.1:{port}\n  name: kubernetes\ncontexts:\n- context:\n    cluster: kubernetes\n    user: anonymous\n  name: anonymous@kubernetes\ncurrent-context: anonymous@kubernetes\nusers:\n- name: anonymous\n  user: {{}}\n"
        );
        std::fs::write(&kubeconfig, text).expect("kubeconfig");
        let home = work.join("home");
        std::fs::create_dir_all(&home).expect("home");
        Kubectl {
            kubeconfig,
            cache: work.join("kube-cache-anon"),
            home,
        }
    }

    pub fn run(&self, args: &[&str]) -> Run {
        self.run_stdin(args, None)
    }

    pub fn run_stdin(&self, args: &[&str], stdin: Option<&str>) -> Run {
        use std::io::Write;
        let mut cmd = Command::new(KUBECTL);
        cmd.env("HOME", &self.home)
            .env_remove("KUBECONFIG")
            .arg(format!("--kubeconfig={}", self.kubeconfig.display()))
            .arg(format!("--cache-dir={}", self.cache.display()))
            .args(args)
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("kubectl");
        if let (Some(text), Some(mut si)) = (stdin, child.stdin.take()) {
            si.write_all(text.as_bytes()).expect("stdin");
        }
        let out = child.wait_with_output().expect("kubectl output");
        Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// Runs until `pred` holds or `within` passes; returns the last run.
    pub fn eventually(&self, args: &[&str], within: Duration, pred: impl Fn(&Run) -> bool) -> Run {
        let until = Instant::now() + within;
        loop {
            let r = self.run(args);
            if pred(&r) || Instant::now() >= until {
                return r;
            }
            std::thread::sleep(Duration::from_millis(500));
        }
    }
}

/// The whole stack in one temp dir.
pub struct Stack {
    pub dir: tempfile::TempDir,
    pub pki: Pki,
    pub etcd: Etcd,
    pub api: ApiServer,
    pub kubectl: Kubectl,
}

/// Two sandbox-like nodes for the controller.
pub const NODES_YAML: &str = "nodes:\n  - name: controlplane\n    address: 198.18.0.10\n    roles: [control-plane]\n  - name: node01\n    address: 198.18.0.11\n    roles: []\n";

/// A child process killed (by PID) when dropped.
pub struct Process(Child);

impl Process {
    pub fn spawn(cmd: &mut Command) -> Process {
        Process(
            cmd.stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("spawn"),
        )
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        kill(&mut self.0);
    }
}

impl Stack {
    pub fn start() -> Stack {
        Stack::start_with(&[])
    }

    /// Starts with extra stand-in flags.
    pub fn start_with(extra: &[String]) -> Stack {
        let dir = tempfile::tempdir().expect("tempdir");
        let pki = Pki::generate(&dir.path().join("pki"));
        std::fs::write(dir.path().join("nodes.yaml"), NODES_YAML).expect("nodes file");
        let etcd = Etcd::start(dir.path(), &pki);
        let port = free_port();
        let mut args = kubeadm_flags(&pki, port, &etcd.url(), dir.path());
        args.extend(extra.iter().cloned());
        let api = ApiServer::start(dir.path(), &args);
        let kubectl = Kubectl::new(dir.path(), &pki, port, ("admin.crt", "admin.key"));
        Stack {
            dir,
            pki,
            etcd,
            api,
            kubectl,
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}

/// Text of the seed's Task 1 workloads (shared/seeds/000_*.txt).
pub const SEED_WORKLOADS: &str = "apiVersion: apps/v1
kind: Deployment
metadata:
  name: critical-app
  namespace: default
spec:
  replicas: 3
  selector:
    matchLabels:
      app: critical-app
  template:
    metadata:
      labels:
        app: critical-app
    spec:
      containers:
      - name: app
        image: nginx:1.21
        ports:
        - containerPort: 80
        livenessProbe:
          httpGet:
            path: /
            port: 80
          initialDelaySeconds: 5
          periodSeconds: 10
---
apiVersion: v1
kind: Service
metadata:
  name: critical-app-service
  namespace: default
spec:
  selector:
    app: critical-app
  ports:
  - port: 80
    targetPort: 80
  type: ClusterIP
";

pub const SEED_MONITOR: &str = "apiVersion: v1
kind: Pod
metadata:
  name: cluster-monitor
  namespace: kube-system
spec:
  containers:
  - name: monitor
    image: curlimages/curl:latest
    command: ['sleep', '3600']
  restartPolicy: Always
";
