//! A `sigil serve` process for tests: started on a free port with no
//! `SIGIL_*` variables, its URL and public key read from its stdout, killed
//! when dropped; and small helpers for the tests that call it.

use std::io::{BufRead as _, BufReader};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, ChildStdout, Command as StdCommand, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use assert_cmd::Command;
use tempfile::TempDir;

use super::{ok, sigil, sigil_path};

/// The longest any one step may take: a start, a call, a stop.
pub(crate) const WAIT: Duration = Duration::from_secs(30);

/// A running `sigil serve`, killed if the test ends without stopping it.
pub(crate) struct Serve {
    child: Child,
    lines: Receiver<String>,
    stderr: Arc<Mutex<String>>,
    /// Everything printed before it was ready.
    pub(crate) startup: String,
    /// The `url:` line.
    pub(crate) url: String,
    /// The `public key:` line.
    pub(crate) public_key: String,
}

impl Serve {
    /// Starts `sigil serve ARGS` in `dir` with no `SIGIL_*` variables, and
    /// waits for its `fingerprint:` line (the last of its startup lines).
    pub(crate) fn start(dir: &Path, args: &[&str]) -> Serve {
        let mut cmd = StdCommand::new(sigil_path());
        cmd.arg("serve")
            .args(args)
            .current_dir(dir)
            .env_clear()
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for var in ["PATH", "HOME"] {
            if let Some(value) = std::env::var_os(var) {
                cmd.env(var, value);
            }
        }
        let mut child = cmd.spawn().expect("start sigil serve");
        let stdout = child.stdout.take().expect("stdout");
        let stderr_pipe = child.stderr.take().expect("stderr");
        let stderr = Arc::new(Mutex::new(String::new()));
        let sink = stderr.clone();
        thread::spawn(move || {
            // Line by line, so that `stderr()` sees what was said so far.
            let mut reader = BufReader::new(stderr_pipe);
            let mut line = Vec::new();
            while reader.read_until(b'\n', &mut line).is_ok_and(|n| n > 0) {
                sink.lock()
                    .expect("stderr lock")
                    .push_str(&String::from_utf8_lossy(&line));
                line.clear();
            }
        });
        let mut serve = Serve {
            child,
            lines: read_lines(stdout),
            stderr,
            startup: String::new(),
            url: String::new(),
            public_key: String::new(),
        };
        let deadline = Instant::now() + WAIT;
        loop {
            let line = serve.next_line(deadline);
            serve.startup.push_str(&line);
            serve.startup.push('\n');
            if let Some(url) = line.strip_prefix("url: ") {
                serve.url = url.to_owned();
            } else if let Some(key) = line.strip_prefix("public key: ") {
                serve.public_key = key.to_owned();
            } else if line.starts_with("fingerprint: ") {
                break;
            }
        }
        assert!(
            serve.url.starts_with("ws://127.0.0.1:") || serve.url.starts_with("wss://127.0.0.1:"),
            "{}",
            serve.startup
        );
        assert!(!serve.url.ends_with(":0/sigil"), "{}", serve.startup);
        assert_eq!(serve.public_key.len(), 44, "{}", serve.startup);
        serve
    }

    /// The next line of stdout, failing the test (with stderr) if none comes.
    pub(crate) fn next_line(&self, deadline: Instant) -> String {
        let left = deadline.saturating_duration_since(Instant::now());
        match self.lines.recv_timeout(left) {
            Ok(line) => line,
            Err(e) => {
                // Give the stderr reader a moment to collect what was said.
                thread::sleep(Duration::from_millis(200));
                panic!(
                    "sigil serve: no line on stdout ({e:?})\nstdout so far:\n{}\nstderr:\n{}",
                    self.startup,
                    self.stderr.lock().expect("stderr lock")
                );
            }
        }
    }

    /// `sigil call URL ARGS --server-key KEY` from `dir`.
    pub(crate) fn call(&self, dir: &Path, args: &[&str]) -> Command {
        let mut cmd = sigil();
        cmd.current_dir(dir)
            .timeout(WAIT)
            .args(["call", &self.url])
            .args(args)
            .args(["--server-key", &self.public_key]);
        cmd
    }

    /// Sends `signal` (`INT`, `TERM`) and waits for the exit; returns the
    /// exit status and the rest of stdout.
    pub(crate) fn stop(&mut self, signal: &str) -> (ExitStatus, String) {
        let pid = self.child.id().to_string();
        let sent = StdCommand::new("kill")
            .args([&format!("-{signal}"), &pid])
            .status()
            .expect("run kill");
        assert!(sent.success(), "kill -{signal} {pid} failed");
        let deadline = Instant::now() + WAIT;
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("wait for sigil serve") {
                break status;
            }
            assert!(
                Instant::now() < deadline,
                "sigil serve did not stop on SIG{signal}"
            );
            thread::sleep(Duration::from_millis(20));
        };
        let mut rest = String::new();
        while let Ok(line) = self.lines.recv_timeout(WAIT) {
            rest.push_str(&line);
            rest.push('\n');
        }
        (status, rest)
    }

    /// The server's process id.
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// What the server wrote on stderr so far.
    pub(crate) fn stderr(&self) -> String {
        self.stderr.lock().expect("stderr lock").clone()
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The lines of `stdout`, through a channel that closes at end of file.
pub(crate) fn read_lines(stdout: ChildStdout) -> Receiver<String> {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// A new key pair in `dir`: the secret in `name` (0600), the public key returned.
pub(crate) fn keygen(dir: &Path, name: &str) -> String {
    let out = ok(sigil().current_dir(dir).args(["keygen", "--out", name]));
    out.trim().to_owned()
}

/// Runs `cmd`, expects success, and returns stdout without its newline
/// (which must be there: one line).
pub(crate) fn result(cmd: &mut Command) -> String {
    let out = ok(cmd);
    assert_eq!(out.lines().count(), 1, "one line: {out:?}");
    out.strip_suffix('\n')
        .expect("ends with a newline")
        .to_owned()
}

/// A port on 127.0.0.1 that nothing listens on (just freed).
pub(crate) fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr").port()
}

pub(crate) fn dir() -> TempDir {
    TempDir::new().expect("temp dir")
}
