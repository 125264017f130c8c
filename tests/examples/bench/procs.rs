//! Servers in processes of their own, as users run them: `sigil serve`
//! (the release binary next to this one, or `$SIGIL_BIN`) with a config
//! file, and the peers' servers (this program again, with `--serve NAME`).
//! Each prints the lines it was asked for on stdout; a server whose stdin
//! closes (this process ended) stops, and a [`ServerProcess`] that is
//! dropped kills its child.

use std::io::{BufRead, BufReader, Read as _, Write as _};
use std::net::SocketAddr;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::Duration;

use base64::Engine as _;
use sigil_core::keys::{PublicKey, SecretKey};
use sigil_core::rand::OsRandom;

/// A server in a child process.
pub(crate) struct ServerProcess {
    child: Child,
    /// Kept open: the child stops when it closes.
    _stdin: ChildStdin,
    /// Where it listens (from its `url:` or `addr:` line).
    pub(crate) addr: SocketAddr,
    /// `public key:` of a sigil server.
    pub(crate) public_key: Option<PublicKey>,
    /// The rest of the line that starts with the prefix `start_text` was given.
    pub(crate) text: Option<String>,
}

impl ServerProcess {
    /// Starts `cmd` and reads its stdout until the lines `wanted` says it
    /// needs: sigil's `url:` and `public key:`, a peer's `addr:`.
    fn start(cmd: Command, log: &Path, wanted: &[&str]) -> Result<ServerProcess, String> {
        let (child, stdin, found) = spawn(cmd, log, wanted)?;
        let mut addr = None;
        let mut public_key = None;
        for (prefix, value) in wanted.iter().zip(&found) {
            match *prefix {
                "url: " => {
                    let hostport = value.trim_start_matches("ws://").trim_end_matches("/sigil");
                    addr = hostport.parse().ok();
                }
                "addr: " => addr = value.parse().ok(),
                "public key: " => public_key = PublicKey::parse(value).ok(),
                _ => {}
            }
        }
        Ok(ServerProcess {
            child,
            _stdin: stdin,
            addr: addr.ok_or("no address")?,
            public_key,
            text: None,
        })
    }

    /// Starts `cmd` and reads its stdout until a line that starts with
    /// `prefix`; the rest of that line becomes [`text`](Self::text).
    pub(crate) fn start_text(
        cmd: Command,
        log: &Path,
        prefix: &str,
    ) -> Result<ServerProcess, String> {
        let (child, stdin, mut found) = spawn(cmd, log, &[prefix])?;
        Ok(ServerProcess {
            child,
            _stdin: stdin,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            public_key: None,
            text: found.pop(),
        })
    }

    /// The child's process id.
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Resident memory of the child now, in bytes (`VmRSS`).
    pub(crate) fn rss(&self) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).ok()?;
        let kb: u64 = status
            .lines()
            .find(|l| l.starts_with("VmRSS:"))?
            .split_whitespace()
            .nth(1)?
            .parse()
            .ok()?;
        Some(kb * 1024)
    }

    /// File descriptors the child holds open now.
    pub(crate) fn open_fds(&self) -> Option<usize> {
        Some(
            std::fs::read_dir(format!("/proc/{}/fd", self.pid()))
                .ok()?
                .count(),
        )
    }

    /// CPU time the child has used.
    pub(crate) fn cpu(&self) -> Option<Duration> {
        crate::flood::cpu_of(&format!("/proc/{}/stat", self.pid()))
    }
}

/// Starts `cmd` (stderr to `log`) and reads its stdout until a line for
/// each of `wanted`'s prefixes came; returns the rest of those lines, in
/// `wanted`'s order. Later output is read and dropped, so the child never
/// blocks on a full pipe.
fn spawn(
    mut cmd: Command,
    log: &Path,
    wanted: &[&str],
) -> Result<(Child, ChildStdin, Vec<String>), String> {
    let log_file = std::fs::File::create(log).map_err(|e| format!("log file: {e}"))?;
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(log_file)
        .spawn()
        .map_err(|e| format!("cannot start {:?}: {e}", cmd.get_program()))?;
    let stdin = child.stdin.take().ok_or("no stdin")?;
    let stdout = child.stdout.take().ok_or("no stdout")?;
    let mut found: Vec<Option<String>> = vec![None; wanted.len()];
    let mut lines = BufReader::new(stdout).lines();
    while found.iter().any(Option::is_none) {
        let Some(Ok(line)) = lines.next() else {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!(
                "{:?} ended before it listened (see {})",
                cmd.get_program(),
                log.display()
            ));
        };
        for (prefix, slot) in wanted.iter().zip(found.iter_mut()) {
            if let Some(rest) = line.strip_prefix(prefix) {
                *slot = Some(rest.to_owned());
            }
        }
    }
    std::thread::spawn(move || for _ in lines {});
    Ok((child, stdin, found.into_iter().flatten().collect()))
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Keys for a `sigil serve` and its clients, and where its files are.
pub(crate) struct SigilSetup {
    dir: tempfile::TempDir,
    /// The clients the server authorises (several, so that no one key's
    /// share of the replay cache limits the session rows).
    pub(crate) clients: Vec<SecretKey>,
}

/// Authorised client keys: the replay cache gives each key a 64th of its
/// capacity, so 11,000 sessions need a few keys.
const CLIENT_KEYS: usize = 16;

impl SigilSetup {
    pub(crate) fn new() -> SigilSetup {
        let dir = tempfile::tempdir().unwrap();
        let clients: Vec<SecretKey> = (0..CLIENT_KEYS)
            .map(|_| SecretKey::generate(&mut OsRandom).unwrap())
            .collect();
        let b64 = base64::engine::general_purpose::STANDARD;
        let server_key = SecretKey::generate(&mut OsRandom).unwrap();
        write_secret(
            &dir.path().join("server.key"),
            &b64.encode(*server_key.dangerous_to_bytes()),
        );
        let authorized: String = clients
            .iter()
            .enumerate()
            .map(|(i, k)| format!("{} bench-{i}\n", k.public_key()))
            .collect();
        std::fs::write(dir.path().join("authorized_keys"), authorized).unwrap();
        // The limits a benchmark needs: many sessions and pending
        // handshakes from few addresses, and hellos as fast as they come.
        let config = "host = \"127.0.0.1\"\n\
                      port = 0\n\
                      server_key = \"server.key\"\n\
                      authorized_keys = \"authorized_keys\"\n\
                      max_connections = 100000\n\
                      max_pending_handshakes = 65536\n\
                      max_pending_per_ip = 65536\n\
                      handshake_rate_per_ip = 1000000\n\
                      handshake_rate_per_key = 1000000\n\
                      max_inflight = 256\n\
                      max_streams = 64\n\
                      log = \"warn\"\n";
        std::fs::write(dir.path().join("sigil.toml"), config).unwrap();
        SigilSetup { dir, clients }
    }

    /// Starts `sigil serve --demo` with this setup's config.
    pub(crate) fn serve(&self) -> Result<ServerProcess, String> {
        let bin = sigil_bin()?;
        let mut cmd = Command::new(&bin);
        cmd.current_dir(self.dir.path()).args([
            "serve",
            "--no-env",
            "--demo",
            "--config",
            "sigil.toml",
        ]);
        ServerProcess::start(
            cmd,
            &self.dir.path().join("serve.log"),
            &["url: ", "public key: "],
        )
    }
}

fn write_secret(path: &Path, text: &str) {
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .unwrap();
    writeln!(f, "{text}").unwrap();
}

/// The `sigil` binary: `$SIGIL_BIN`, or the one built next to this example
/// (`target/release/sigil`, which `cargo xtask bench` builds).
fn sigil_bin() -> Result<PathBuf, String> {
    if let Some(bin) = std::env::var_os("SIGIL_BIN") {
        return Ok(bin.into());
    }
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let bin = exe
        .parent()
        .and_then(Path::parent)
        .map(|d| d.join("sigil"))
        .ok_or("no folder for the sigil binary")?;
    if bin.exists() {
        Ok(bin)
    } else {
        Err(format!(
            "{} is not built: run `cargo xtask bench` (or set SIGIL_BIN)",
            bin.display()
        ))
    }
}

/// Starts this program again as the server `name` (see `main`'s `--serve`).
pub(crate) fn serve_peer(name: &str, log_dir: &Path) -> Result<ServerProcess, String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let mut cmd = Command::new(exe);
    cmd.args(["--serve", name]);
    ServerProcess::start(cmd, &log_dir.join(format!("{name}.log")), &["addr: "])
}

/// In a `--serve` child: prints the address, then blocks until the parent
/// closes stdin (or dies), then exits.
pub(crate) fn announce_and_wait(addr: SocketAddr) -> ! {
    println!("addr: {addr}");
    let _ = std::io::stdout().flush();
    let mut sink = Vec::new();
    let _ = std::io::stdin().read_to_end(&mut sink);
    std::process::exit(0);
}
