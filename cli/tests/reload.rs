//! `sigil serve` reloads authorized_keys on SIGHUP: a removed key's next
//! handshake is refused and its open session closed, without a restart; a
//! file that does not load keeps the previous keys. Checked with the real
//! binaries, the log and the metrics endpoint.

mod common;

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::serve::{Serve, WAIT, dir, keygen, read_lines, result};
use common::{fails, ok, sigil, sigil_path};

/// `GET path` over plain HTTP: the body of a 200 answer.
fn http_get(url: &str) -> String {
    let rest = url.strip_prefix("http://").expect("an http URL");
    let (addr, path) = rest.split_once('/').expect("a path");
    let mut tcp = TcpStream::connect(addr).expect("connect to the metrics endpoint");
    tcp.set_read_timeout(Some(WAIT)).expect("timeout");
    write!(
        tcp,
        "GET /{path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .expect("send");
    let mut answer = String::new();
    tcp.read_to_string(&mut answer).expect("read");
    let (head, body) = answer.split_once("\r\n\r\n").expect("head and body");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    body.to_owned()
}

/// The value of `series` in a scrape (0 if absent).
fn metric(scrape: &str, series: &str) -> f64 {
    scrape
        .lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .map_or(0.0, |v| v.parse().expect("a number"))
}

/// Writes `text` over `path` with the length and modification time the
/// file had, so that only a signal, not the server's file watch, can tell
/// that it changed.
fn rewrite_unnoticed(path: &Path, text: &str) {
    let before = std::fs::metadata(path).expect("stat");
    let len = usize::try_from(before.len()).expect("small file");
    assert!(text.len() < len, "the new text must be shorter");
    let padded = format!("{text}#{}\n", "-".repeat(len - text.len() - 2));
    assert_eq!(padded.len(), len);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .expect("open");
    file.write_all(padded.as_bytes()).expect("write");
    file.set_modified(before.modified().expect("mtime"))
        .expect("set mtime");
}

/// Sends `signal` to the process.
fn kill(signal: &str, pid: u32) {
    let sent = Command::new("kill")
        .args([&format!("-{signal}"), &pid.to_string()])
        .status()
        .expect("run kill");
    assert!(sent.success(), "kill -{signal} {pid}");
}

/// Waits until the server's log has `text`, failing with the log if not.
fn wait_for_log(serve: &Serve, text: &str) {
    let deadline = Instant::now() + WAIT;
    while !serve.stderr().contains(text) {
        assert!(
            Instant::now() < deadline,
            "no {text:?} in the log:\n{}",
            serve.stderr()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn sighup_revokes_a_removed_key_and_closes_its_session_without_a_restart() {
    let tmp = dir();
    let d = tmp.path();
    keygen(d, "server.key");
    let alice = keygen(d, "alice.key");
    let bob = keygen(d, "bob.key");
    let keys = d.join("authorized_keys");
    std::fs::write(&keys, format!("{alice} alice laptop\n{bob} bob\n")).expect("write keys");
    std::fs::write(
        d.join("server.toml"),
        "server_key = \"server.key\"\nauthorized_keys = \"authorized_keys\"\n\
         metrics_addr = \"127.0.0.1:0\"\n",
    )
    .expect("write server.toml");
    let mut serve = Serve::start(d, &["--config", "server.toml", "--demo", "--port", "0"]);
    let metrics = serve
        .startup
        .lines()
        .find_map(|l| l.strip_prefix("metrics: "))
        .unwrap_or_else(|| panic!("no metrics line in {}", serve.startup))
        .to_owned();
    assert!(metrics.starts_with("http://127.0.0.1:"), "{metrics}");

    // Alice holds a session open: a live watch of a key.
    let mut watch = Command::new(sigil_path())
        .current_dir(d)
        .env_clear()
        .args(["call", &serve.url, "kv", "watch", r#""w""#, "--stream"])
        .args(["--server-key", &serve.public_key, "--key", "alice.key"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn sigil call --stream");
    let lines = read_lines(watch.stdout.take().expect("stdout"));
    assert_eq!(lines.recv_timeout(WAIT).as_deref(), Ok("null"));

    rewrite_unnoticed(&keys, &format!("{bob} bob\n"));
    kill("HUP", serve.pid());

    // Her session ends and she is refused; Bob calls on; the server runs on.
    let deadline = Instant::now() + WAIT;
    let status = loop {
        if let Some(status) = watch.try_wait().expect("wait") {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "alice's session was not closed:\n{}",
            serve.stderr()
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(status.code(), Some(1), "{}", serve.stderr());
    let call = |key: &str| {
        let mut cmd = serve.call(d, &["calculator", "add", "1", "2"]);
        cmd.args(["--key", key]);
        cmd
    };
    let err = fails(&mut call("alice.key"), 1);
    assert!(err.contains("(code 1)"), "{err}");
    assert_eq!(result(&mut call("bob.key")), "3");

    // The log names her key and its name, for the reload and the session.
    let fingerprint = ok(sigil().args(["fingerprint", &alice]));
    let fingerprint = fingerprint.trim();
    wait_for_log(
        &serve,
        "reloaded authorized_keys from authorized_keys: 1 keys, 0 added, 1 removed",
    );
    wait_for_log(
        &serve,
        &format!("client key {fingerprint} (\"alice laptop\") is no longer authorised"),
    );
    wait_for_log(
        &serve,
        &format!("client key {fingerprint} (\"alice laptop\") is no longer authorised: closing"),
    );
    let scrape = http_get(&metrics);
    assert_eq!(metric(&scrape, "sigil_revoked_sessions_closed_total"), 1.0);
    assert_eq!(
        metric(
            &scrape,
            r#"sigil_reloads_total{file="authorized_keys",outcome="ok"}"#
        ),
        1.0
    );

    // A file that does not load keeps the keys as they were.
    std::fs::write(&keys, format!("{bob} bob\nnot a key\n")).expect("write keys");
    kill("HUP", serve.pid());
    wait_for_log(
        &serve,
        "cannot reload authorized_keys from authorized_keys: invalid public key in \
         authorized_keys line 2",
    );
    wait_for_log(&serve, "keeping the previous 1 keys");
    assert_eq!(result(&mut call("bob.key")), "3");

    let (status, rest) = serve.stop("TERM");
    assert_eq!(status.code(), Some(0), "stderr: {}", serve.stderr());
    assert_eq!(rest, "stopped\n");
}
