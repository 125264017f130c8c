//! Real servers that tests start and stop themselves: Redis, on a loopback
//! port chosen at run time, with its own configuration and no files kept.
//!
//! Redis is required where it is used: `cargo xtask test` installs it
//! (Debian package redis-server). Without it a test fails and says so; it
//! is not skipped.

use std::io::{BufRead as _, BufReader, Write as _};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long a service may take to start.
pub const START_TIMEOUT: Duration = Duration::from_secs(15);

/// A free TCP port on 127.0.0.1 (free when asked: bind it soon).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port on 127.0.0.1")
}

/// The first of `candidates` that runs with `arg`, or a panic that says how
/// to install `package`.
pub fn binary(candidates: &[&str], arg: &str, package: &str) -> PathBuf {
    for candidate in candidates {
        let runs = Command::new(candidate)
            .arg(arg)
            .output()
            .is_ok_and(|out| out.status.success());
        if runs {
            return PathBuf::from(candidate);
        }
    }
    panic!(
        "`{}` is not installed or does not run; run `cargo xtask test`, which installs it \
         (Debian package {package})",
        candidates[0]
    );
}

/// Waits until something listens on `127.0.0.1:port`, or panics naming
/// `what` (and its log, if it has one).
pub fn wait_for_port(port: u16, what: &str, child: &mut Child, log: Option<&Path>) {
    let deadline = Instant::now() + START_TIMEOUT;
    while Instant::now() < deadline {
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return;
        }
        if let Ok(Some(status)) = child.try_wait() {
            let log = log
                .and_then(|p| std::fs::read_to_string(p).ok())
                .unwrap_or_default();
            panic!("{what} exited ({status}) before listening on port {port}:\n{log}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("{what} did not listen on port {port} within {START_TIMEOUT:?}");
}

/// A redis-server on 127.0.0.1, with no persistence and the eviction policy
/// a replay store needs (`noeviction`); killed when dropped.
pub struct Redis {
    child: Option<Child>,
    port: u16,
    dir: PathBuf,
}

impl Redis {
    /// Starts a Redis on a free port, keeping its log in `dir`.
    pub fn start(dir: &Path) -> Redis {
        Redis::start_on(dir, free_port())
    }

    /// Starts a Redis on `port` (for a restart on the same port).
    pub fn start_on(dir: &Path, port: u16) -> Redis {
        let bin = binary(
            &["redis-server", "/usr/bin/redis-server"],
            "--version",
            "redis-server",
        );
        let log = dir.join(format!("redis-{port}.log"));
        let mut child = Command::new(bin)
            .args(["--bind", "127.0.0.1", "--port", &port.to_string()])
            .args(["--save", "", "--appendonly", "no"])
            .args(["--maxmemory-policy", "noeviction"])
            .arg("--dir")
            .arg(dir)
            .arg("--logfile")
            .arg(&log)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start redis-server");
        wait_for_port(port, "redis-server", &mut child, Some(&log));
        let redis = Redis {
            child: Some(child),
            port,
            dir: dir.to_owned(),
        };
        assert_eq!(redis.command(&["PING"]), "+PONG");
        redis
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `redis://127.0.0.1:PORT/0`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// Sends one command (inline, words without spaces) and returns the
    /// first line of the answer, e.g. `+PONG` or `:42`.
    pub fn command(&self, words: &[&str]) -> String {
        let mut answer = String::new();
        self.ask(words)
            .read_line(&mut answer)
            .expect("read from Redis");
        answer.trim_end().to_owned()
    }

    /// The field `name` of `INFO section` (`used_memory` of `memory`, say).
    pub fn info(&self, section: &str, name: &str) -> Option<String> {
        let mut reader = self.ask(&["INFO", section]);
        let mut head = String::new();
        reader.read_line(&mut head).ok()?;
        let len: usize = head.trim_end().strip_prefix('$')?.parse().ok()?;
        let mut body = vec![0u8; len];
        std::io::Read::read_exact(&mut reader, &mut body).ok()?;
        String::from_utf8_lossy(&body).lines().find_map(|l| {
            let (key, value) = l.split_once(':')?;
            (key == name).then(|| value.trim().to_owned())
        })
    }

    /// Sends one inline command; the answer is to be read from what comes
    /// back.
    fn ask(&self, words: &[&str]) -> BufReader<TcpStream> {
        let mut stream = TcpStream::connect(("127.0.0.1", self.port)).expect("connect to Redis");
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .expect("set a read timeout");
        let mut line = words.join(" ");
        line.push_str("\r\n");
        stream.write_all(line.as_bytes()).expect("write to Redis");
        BufReader::new(stream)
    }

    /// How many keys the database holds.
    pub fn keys(&self) -> u64 {
        let answer = self.command(&["DBSIZE"]);
        answer
            .trim_start_matches(':')
            .parse()
            .unwrap_or_else(|_| panic!("DBSIZE answered {answer}"))
    }

    /// Stops it (SIGKILL: as if the machine went away) and waits for it.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same port, empty.
    pub fn restart(&mut self) {
        self.stop();
        *self = Redis::start_on(&self.dir, self.port);
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.stop();
    }
}

/// An nginx in the foreground, with its own configuration, logs and
/// temporary files in a folder; killed when dropped.
pub struct Nginx {
    child: Child,
    dir: PathBuf,
}

impl Nginx {
    /// Starts nginx in `dir` with `http` as the body of its `http` block
    /// (its `server` and `upstream` blocks; `$connection_upgrade` is
    /// defined for WebSocket upgrades), and waits until it listens on every
    /// port of `ports`.
    pub fn start(dir: &Path, http: &str, ports: &[u16]) -> Nginx {
        let bin = binary(&["nginx", "/usr/sbin/nginx"], "-v", "nginx");
        let temp = |name: &str| dir.join(name).display().to_string();
        let conf = format!(
            "daemon off;
master_process off;
worker_processes 1;
pid {pid};
error_log {log} info;
events {{ worker_connections 1024; }}
http {{
    access_log {access};
    client_body_temp_path {body};
    proxy_temp_path {proxy};
    fastcgi_temp_path {fastcgi};
    uwsgi_temp_path {uwsgi};
    scgi_temp_path {scgi};
    map $http_upgrade $connection_upgrade {{
        default upgrade;
        ''      close;
    }}
{http}}}
",
            pid = temp("nginx.pid"),
            log = temp("error.log"),
            access = temp("access.log"),
            body = temp("body"),
            proxy = temp("proxy"),
            fastcgi = temp("fastcgi"),
            uwsgi = temp("uwsgi"),
            scgi = temp("scgi"),
        );
        let conf_path = dir.join("nginx.conf");
        std::fs::write(&conf_path, conf).expect("write nginx.conf");
        let mut child = Command::new(bin)
            .arg("-p")
            .arg(dir)
            .arg("-e")
            .arg(dir.join("error.log"))
            .arg("-c")
            .arg(&conf_path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start nginx");
        for port in ports {
            wait_for_port(*port, "nginx", &mut child, Some(&dir.join("error.log")));
        }
        Nginx {
            child,
            dir: dir.to_owned(),
        }
    }

    /// Its error log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("error.log")).unwrap_or_default()
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
