//! A sigil cluster on loopback, as the book's "Scaling out" chapter sets it
//! up: one Redis, `sigil serve` instances sharing it as their replay store
//! (and one server key), and nginx balancing WebSocket upgrades between
//! them. Every port is chosen at run time; every process is stopped when
//! the cluster is dropped. The cluster test (`cli/tests/cluster.rs`) and
//! `cargo xtask cluster` start the same one.

use std::io::{BufRead as _, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::time::{Duration, Instant};

use crate::services::{Nginx, Redis, START_TIMEOUT, free_port};

/// Where nginx connects to the instances from: the only address their
/// `trusted_proxies` names.
pub const PROXY_SOURCE: &str = "127.0.0.5";

/// How a cluster is made.
pub struct ClusterOptions {
    /// The `sigil` binary.
    pub sigil: PathBuf,
    /// How many instances (each named `a`, `b`, … by `--instance`).
    pub instances: usize,
    /// An `authorized_keys` file; `None`: any client key.
    pub authorized_keys: Option<PathBuf>,
    /// Config lines every instance gets besides the cluster's own.
    pub extra_config: String,
    /// Whether the instances share Redis as their replay store; `false`:
    /// each keeps its own in memory (the weakness the shared store closes).
    pub shared_store: bool,
}

/// One `sigil serve` instance.
pub struct Instance {
    child: Child,
    /// Its name (`instance.name` answers it).
    pub name: String,
    /// The port it listens on (127.0.0.1).
    pub port: u16,
    /// Where its metrics are scraped.
    pub metrics: SocketAddr,
    /// What it printed when it started.
    pub startup: String,
    log: PathBuf,
}

impl Instance {
    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether it still runs.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Kills it (SIGKILL: the machine went away) and waits for it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// What it logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The running cluster.
pub struct Cluster {
    /// The shared replay store.
    pub redis: Redis,
    /// The instances, in name order.
    pub instances: Vec<Instance>,
    /// The load balancer.
    pub nginx: Nginx,
    /// The port nginx listens on (127.0.0.1).
    pub port: u16,
    /// The server's public key (base64), for clients to pin.
    pub public_key: String,
    dir: PathBuf,
}

impl Cluster {
    /// Starts Redis, the instances and nginx, in `dir`.
    pub fn start(dir: &Path, options: &ClusterOptions) -> Cluster {
        let redis = Redis::start(dir);
        let keygen = Command::new(&options.sigil)
            .args(["keygen", "--out"])
            .arg(dir.join("server.key"))
            .args(["--force"])
            .output()
            .expect("run sigil keygen");
        assert!(
            keygen.status.success(),
            "sigil keygen: {}",
            String::from_utf8_lossy(&keygen.stderr)
        );
        let public_key = String::from_utf8_lossy(&keygen.stdout).trim().to_owned();
        let mut instances = Vec::new();
        for i in 0..options.instances {
            let name = char::from(b'a' + u8::try_from(i).expect("few instances")).to_string();
            instances.push(start_instance(dir, &name, &redis, options));
        }
        let port = free_port();
        let upstreams: String = instances
            .iter()
            .map(|i| {
                format!(
                    "        server 127.0.0.1:{} max_fails=1 fail_timeout=10s;\n",
                    i.port
                )
            })
            .collect();
        let nginx = Nginx::start(dir, &nginx_config(port, &upstreams), &[port]);
        Cluster {
            redis,
            instances,
            nginx,
            port,
            public_key,
            dir: dir.to_owned(),
        }
    }

    /// `ws://127.0.0.1:PORT/sigil`, through nginx.
    pub fn url(&self) -> String {
        format!("ws://127.0.0.1:{}/sigil", self.port)
    }

    /// The folder of its files (keys, configs, logs).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The instance named `name`.
    pub fn instance(&mut self, name: &str) -> &mut Instance {
        self.instances
            .iter_mut()
            .find(|i| i.name == name)
            .unwrap_or_else(|| panic!("no instance {name}"))
    }
}

/// The `http` block's body: the instances as one upstream, and a server
/// that passes WebSocket upgrades (and the demo page) to them.
fn nginx_config(port: u16, upstreams: &str) -> String {
    format!(
        "    upstream sigil_instances {{
{upstreams}    }}
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://sigil_instances;
            proxy_http_version 1.1;
            proxy_set_header Upgrade $http_upgrade;
            proxy_set_header Connection $connection_upgrade;
            proxy_set_header Host $http_host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_bind {PROXY_SOURCE};
            proxy_buffering off;
            proxy_read_timeout 75s;
            proxy_send_timeout 75s;
        }}
    }}
"
    )
}

/// Starts instance `name` and waits for its startup lines.
fn start_instance(dir: &Path, name: &str, redis: &Redis, options: &ClusterOptions) -> Instance {
    let clients = match &options.authorized_keys {
        Some(path) => format!("authorized_keys = {:?}\n", path.display().to_string()),
        None => "allow_any_client = true\n".to_owned(),
    };
    let config = format!(
        "server_key = {key:?}\n{clients}replay_store = {store:?}\n\
         trusted_proxies = [\"{PROXY_SOURCE}/32\"]\nmetrics_addr = \"127.0.0.1:0\"\n{extra}",
        key = dir.join("server.key").display().to_string(),
        store = if options.shared_store {
            redis.url()
        } else {
            "memory".to_owned()
        },
        extra = options.extra_config,
    );
    let config_path = dir.join(format!("{name}.toml"));
    std::fs::write(&config_path, config).expect("write an instance's config");
    let log = dir.join(format!("{name}.log"));
    let stderr = std::fs::File::create(&log).expect("create an instance's log");
    let mut child = Command::new(&options.sigil)
        .args([
            "serve",
            "--demo",
            "--port",
            "0",
            "--instance",
            name,
            "--config",
        ])
        .arg(&config_path)
        .env_clear()
        .envs(std::env::vars_os().filter(|(k, _)| k == "PATH" || k == "HOME"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(stderr)
        .spawn()
        .expect("start sigil serve");
    let lines = read_lines(child.stdout.take().expect("its stdout"));
    let deadline = Instant::now() + START_TIMEOUT;
    let mut startup = String::new();
    let (mut port, mut metrics) = (None, None);
    while port.is_none() || metrics.is_none() {
        let left = deadline.saturating_duration_since(Instant::now());
        let Ok(line) = lines.recv_timeout(left) else {
            let _ = child.kill();
            panic!(
                "sigil serve {name} did not start:\n{startup}\n{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
        };
        if let Some(url) = line.strip_prefix("url: ws://127.0.0.1:") {
            port = url.strip_suffix("/sigil").and_then(|p| p.parse().ok());
        }
        if let Some(addr) = line.strip_prefix("metrics: http://") {
            metrics = addr.strip_suffix("/metrics").and_then(|a| a.parse().ok());
        }
        startup.push_str(&line);
        startup.push('\n');
    }
    // Drain the rest of stdout, so that the instance never blocks on it.
    std::thread::spawn(move || while lines.recv().is_ok() {});
    Instance {
        child,
        name: name.to_owned(),
        port: port.unwrap_or_default(),
        metrics: metrics.unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 0))),
        startup,
        log,
    }
}

/// The lines of `stdout`, through a channel that closes at end of file.
fn read_lines(stdout: impl std::io::Read + Send + 'static) -> Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// Scrapes `metrics` (`GET /metrics`) and returns the value of `series`
/// (`name{labels}`), 0 if absent.
pub fn metric(metrics: SocketAddr, series: &str) -> f64 {
    use std::io::{Read as _, Write as _};
    let mut tcp = std::net::TcpStream::connect(metrics).expect("connect to the metrics");
    tcp.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("a read timeout");
    let request = format!("GET /metrics HTTP/1.1\r\nHost: {metrics}\r\nConnection: close\r\n\r\n");
    tcp.write_all(request.as_bytes()).expect("ask for metrics");
    let mut response = String::new();
    tcp.read_to_string(&mut response).expect("read the metrics");
    response
        .lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .map_or(0.0, |v| v.parse().unwrap_or(0.0))
}
