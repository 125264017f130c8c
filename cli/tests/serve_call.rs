//! `sigil serve` and `sigil call` end to end: real processes on 127.0.0.1,
//! the server on a free port (`--port 0`) whose URL and public key are read
//! from its stdout, and the exit codes and messages of every failure the
//! design names.

mod common;

use std::io::{BufRead as _, BufReader, Read as _};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, ChildStdout, Command as StdCommand, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use assert_cmd::Command;
use common::{fails, ok, sigil, sigil_path};
use tempfile::TempDir;

/// The longest any one step may take: a start, a call, a stop.
const WAIT: Duration = Duration::from_secs(30);

/// A running `sigil serve`, killed if the test ends without stopping it.
struct Serve {
    child: Child,
    lines: Receiver<String>,
    stderr: Arc<Mutex<String>>,
    /// Everything printed before it was ready.
    startup: String,
    url: String,
    public_key: String,
}

impl Serve {
    /// Starts `sigil serve ARGS` in `dir` with no `SIGIL_*` variables, and
    /// waits for its `fingerprint:` line (the last of its startup lines).
    fn start(dir: &Path, args: &[&str]) -> Serve {
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
        let mut stderr_pipe = child.stderr.take().expect("stderr");
        let stderr = Arc::new(Mutex::new(String::new()));
        let sink = stderr.clone();
        thread::spawn(move || {
            let mut text = String::new();
            let _ = stderr_pipe.read_to_string(&mut text);
            sink.lock().expect("stderr lock").push_str(&text);
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
            serve.url.starts_with("ws://127.0.0.1:"),
            "{}",
            serve.startup
        );
        assert!(!serve.url.ends_with(":0/sigil"), "{}", serve.startup);
        assert_eq!(serve.public_key.len(), 44, "{}", serve.startup);
        serve
    }

    /// The next line of stdout, failing the test (with stderr) if none comes.
    fn next_line(&self, deadline: Instant) -> String {
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
    fn call(&self, dir: &Path, args: &[&str]) -> Command {
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
    fn stop(&mut self, signal: &str) -> (ExitStatus, String) {
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

    /// What the server wrote on stderr so far.
    fn stderr(&self) -> String {
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
fn read_lines(stdout: ChildStdout) -> Receiver<String> {
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
fn keygen(dir: &Path, name: &str) -> String {
    let out = ok(sigil().current_dir(dir).args(["keygen", "--out", name]));
    out.trim().to_owned()
}

/// Runs `cmd`, expects success, and returns stdout without its newline
/// (which must be there: one line).
fn result(cmd: &mut Command) -> String {
    let out = ok(cmd);
    assert_eq!(out.lines().count(), 1, "one line: {out:?}");
    out.strip_suffix('\n')
        .expect("ends with a newline")
        .to_owned()
}

/// A port on 127.0.0.1 that nothing listens on (just freed).
fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr").port()
}

fn dir() -> TempDir {
    TempDir::new().expect("temp dir")
}

#[test]
fn demo_server_answers_every_demo_method_and_stops_on_sigint() {
    let tmp = dir();
    let d = tmp.path();
    keygen(d, "client.key");
    let mut serve = Serve::start(d, &["--demo", "--port", "0"]);
    assert!(
        serve
            .startup
            .contains("--demo: accepting ANY client key (no authorized_keys configured)"),
        "{}",
        serve.startup
    );
    assert!(
        serve.startup.contains(
            "no server_key configured: using an ephemeral key for this run; clients must pin the key printed below"
        ),
        "{}",
        serve.startup
    );
    // The fingerprint line is the fingerprint of the public key line.
    let fingerprint = ok(sigil().args(["fingerprint", &serve.public_key]));
    assert!(
        serve
            .startup
            .contains(&format!("fingerprint: {fingerprint}")),
        "{}",
        serve.startup
    );

    let call = |args: &[&str]| {
        let mut cmd = serve.call(d, args);
        cmd.args(["--key", "client.key"]);
        result(&mut cmd)
    };
    assert_eq!(call(&["calculator", "add", "1", "2"]), "3");
    assert_eq!(call(&["calculator", "sub", "-1", "2.5"]), "-3.5");
    assert_eq!(call(&["calculator", "mul", "6", "7"]), "42");
    assert_eq!(call(&["calculator", "div", "1", "4"]), "0.25");
    assert_eq!(call(&["echo", "echo", r#"{"a":[1]}"#]), r#"{"a":[1]}"#);
    let spaced = call(&["echo", "echo", r#"{ "b" : "x y", "a": [1, 2] }"#]);
    assert_eq!(
        spaced.replace("x y", ""),
        spaced.replace("x y", "").replace(char::is_whitespace, ""),
        "compact: {spaced}"
    );
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&spaced).expect("JSON"),
        serde_json::json!({"a": [1, 2], "b": "x y"})
    );
    assert_eq!(call(&["echo", "echo", r#""hi""#]), r#""hi""#);
    assert_eq!(call(&["kv", "get", r#""colour""#]), "null");
    assert_eq!(call(&["kv", "set", r#""colour""#, r#""blue""#]), "null");
    assert_eq!(call(&["kv", "get", r#""colour""#]), r#""blue""#);
    assert_eq!(call(&["kv", "delete", r#""colour""#]), "true");
    assert_eq!(call(&["kv", "delete", r#""colour""#]), "false");
    assert_eq!(call(&["kv", "get", r#""colour""#]), "null");
    assert_eq!(call(&["sigil", "ping"]), r#""pong""#);
    let objects: serde_json::Value =
        serde_json::from_str(&call(&["sigil", "objects"])).expect("objects is JSON");
    assert_eq!(
        objects,
        serde_json::json!({
            "calculator": ["add", "div", "mul", "sub"],
            "echo": ["echo"],
            "kv": ["delete", "get", "set"],
            "sigil": ["objects", "ping"],
        })
    );
    // A handshake payload is sent (the demo server has no hook to read it).
    let mut with_payload = serve.call(d, &["sigil", "ping"]);
    with_payload.args(["--key", "client.key", "--payload", r#"{"user":"alice"}"#]);
    assert_eq!(result(&mut with_payload), r#""pong""#);

    let (status, rest) = serve.stop("INT");
    assert_eq!(status.code(), Some(0), "stderr: {}", serve.stderr());
    assert_eq!(rest, "stopped\n");
}

#[test]
fn fail_remote_errors_exit_1_with_the_code_and_message() {
    let tmp = dir();
    let d = tmp.path();
    keygen(d, "client.key");
    let serve = Serve::start(d, &["--demo", "--port", "0"]);
    let call = |args: &[&str], code: i32| {
        let mut cmd = serve.call(d, args);
        cmd.args(["--key", "client.key"]);
        fails(&mut cmd, code)
    };
    let err = call(&["calculator", "div", "1", "0"], 1);
    assert_eq!(
        err.lines().next(),
        Some("sigil: calculator.div failed: application_error: division by zero"),
        "{err}"
    );
    let err = call(&["nosuch", "method"], 1);
    assert!(err.contains("no_such_object"), "{err}");
    assert!(err.contains("sigil objects"), "{err}");
    let err = call(&["calculator", "pow", "2", "3"], 1);
    assert!(err.contains("no_such_method"), "{err}");
    let err = call(&["calculator", "add", "1"], 1);
    assert!(err.contains("invalid_arguments"), "{err}");
    // Dotted names never leave the machine.
    let err = call(&["calculator.add", "add", "1", "2"], 2);
    assert!(err.contains("dotted names are not allowed"), "{err}");
}

#[test]
fn fail_wrong_server_key_is_refused_with_code_1() {
    let tmp = dir();
    let d = tmp.path();
    keygen(d, "client.key");
    let other = keygen(d, "other.key");
    let serve = Serve::start(d, &["--demo", "--port", "0"]);
    let err = fails(
        sigil().current_dir(d).timeout(WAIT).args([
            "call",
            &serve.url,
            "sigil",
            "ping",
            "--server-key",
            &other,
            "--key",
            "client.key",
        ]),
        1,
    );
    assert_eq!(
        err.lines().next(),
        Some("sigil: the server refused the handshake (code 1): handshake failed"),
        "{err}"
    );
    assert!(err.contains("--server-key"), "{err}");
    // The server key may also be given as a file.
    std::fs::write(d.join("server.pub"), format!("{}\n", serve.public_key)).expect("write");
    let out = ok(sigil().current_dir(d).timeout(WAIT).args([
        "call",
        &serve.url,
        "sigil",
        "ping",
        "--server-key",
        "server.pub",
        "--key",
        "client.key",
    ]));
    assert_eq!(out, "\"pong\"\n");
}

#[test]
fn fail_bad_arguments_and_missing_keys_exit_2_before_connecting() {
    let tmp = dir();
    let d = tmp.path();
    let server = keygen(d, "server.key");
    keygen(d, "client.key");
    // Nothing listens there: each of these must fail before connecting.
    let url = format!("ws://127.0.0.1:{}/sigil", free_port());
    let run = |args: &[&str]| {
        let mut cmd = sigil();
        cmd.current_dir(d)
            .timeout(WAIT)
            .args(["call", &url])
            .args(args);
        fails(&mut cmd, 2)
    };

    let err = run(&[
        "echo",
        "echo",
        "hello",
        "--server-key",
        &server,
        "--key",
        "client.key",
    ]);
    assert!(err.contains("argument 1 (`hello`) is not JSON"), "{err}");
    assert!(err.contains(r#"'"hello"'"#), "says how to quote: {err}");

    let err = run(&[
        "echo",
        "echo",
        "1",
        "--payload",
        "{user}",
        "--server-key",
        &server,
        "--key",
        "client.key",
    ]);
    assert!(err.contains("--payload is not JSON"), "{err}");

    let err = run(&["sigil", "ping", "--server-key", &server]);
    assert!(err.contains("no client key"), "{err}");
    assert!(err.contains("sigil keygen --out client.key"), "{err}");

    let err = run(&["sigil", "ping", "--key", "client.key"]);
    assert!(err.contains("no server key"), "{err}");
    assert!(err.contains("--server-key"), "{err}");

    let err = fails(
        sigil()
            .current_dir(d)
            .timeout(WAIT)
            .args(["call", "127.0.0.1:7070", "sigil", "ping"]),
        2,
    );
    assert!(err.contains("ws://"), "{err}");
}

#[test]
fn fail_secret_key_readable_by_others_is_refused() {
    let tmp = dir();
    let d = tmp.path();
    let server = keygen(d, "server.key");
    keygen(d, "client.key");
    common::set_mode(&d.join("client.key"), 0o644);
    let url = format!("ws://127.0.0.1:{}/sigil", free_port());
    let err = fails(
        sigil().current_dir(d).timeout(WAIT).args([
            "call",
            &url,
            "sigil",
            "ping",
            "--server-key",
            &server,
            "--key",
            "client.key",
        ]),
        1,
    );
    assert!(err.contains("chmod 600 client.key"), "{err}");
}

#[test]
fn fail_no_server_exits_1() {
    let tmp = dir();
    let d = tmp.path();
    let server = keygen(d, "server.key");
    keygen(d, "client.key");
    let url = format!("ws://127.0.0.1:{}/sigil", free_port());
    let err = fails(
        sigil().current_dir(d).timeout(WAIT).args([
            "call",
            &url,
            "sigil",
            "ping",
            "--server-key",
            &server,
            "--key",
            "client.key",
        ]),
        1,
    );
    assert!(
        err.starts_with(&format!("sigil: cannot connect to {url}")),
        "{err}"
    );
    assert!(!err.contains("os error"), "{err}");
}

#[test]
fn authorized_keys_admit_listed_clients_only_and_config_files_work_for_both() {
    let tmp = dir();
    let d = tmp.path();
    let server = keygen(d, "server.key");
    let alice = keygen(d, "alice.key");
    keygen(d, "mallory.key");
    std::fs::write(
        d.join("authorized_keys"),
        format!("# clients\n{alice} alice\n"),
    )
    .expect("write authorized_keys");
    std::fs::write(
        d.join("server.toml"),
        "server_key = \"server.key\"\nauthorized_keys = \"authorized_keys\"\nlog = \"warn\"\n",
    )
    .expect("write server.toml");

    let mut serve = Serve::start(d, &["--config", "server.toml", "--demo", "--port", "0"]);
    assert_eq!(
        serve.public_key, server,
        "the configured key, not an ephemeral one"
    );
    assert!(!serve.startup.contains("ephemeral"), "{}", serve.startup);
    assert!(!serve.startup.contains("ANY"), "{}", serve.startup);
    assert!(
        serve
            .startup
            .contains("accepting the client keys listed in authorized_keys"),
        "{}",
        serve.startup
    );

    let mut alice_call = serve.call(d, &["calculator", "add", "1", "2", "--key", "alice.key"]);
    assert_eq!(result(&mut alice_call), "3");
    let err = fails(
        &mut serve.call(d, &["calculator", "add", "1", "2", "--key", "mallory.key"]),
        1,
    );
    assert!(err.contains("(code 1)"), "{err}");

    // A client config file pins the server and names the key; no flags needed.
    std::fs::write(
        d.join("client.toml"),
        format!("server_public_key = \"{server}\"\nclient_key = \"alice.key\"\n"),
    )
    .expect("write client.toml");
    let out = ok(sigil().current_dir(d).timeout(WAIT).args([
        "call",
        &serve.url,
        "echo",
        "echo",
        "[true]",
        "--config",
        "client.toml",
    ]));
    assert_eq!(out, "[true]\n");
    // The same from the environment (and --no-env turns it off again).
    let env_call = || {
        let mut cmd = sigil();
        cmd.current_dir(d)
            .timeout(WAIT)
            .env("SIGIL_SERVER_PUBLIC_KEY", &server)
            .env("SIGIL_CLIENT_KEY", "alice.key")
            .args(["call", &serve.url, "sigil", "ping"]);
        cmd
    };
    assert_eq!(ok(&mut env_call()), "\"pong\"\n");
    let out = env_call().arg("--no-env").output().expect("run sigil");
    assert_eq!(out.status.code(), Some(2));

    let (status, rest) = serve.stop("TERM");
    assert_eq!(status.code(), Some(0), "stderr: {}", serve.stderr());
    assert_eq!(rest, "stopped\n");
}

#[test]
fn without_demo_only_the_builtin_object_is_served() {
    let tmp = dir();
    let d = tmp.path();
    keygen(d, "client.key");
    std::fs::write(d.join("sigil.toml"), "allow_any_client = true\n").expect("write");
    let mut serve = Serve::start(d, &["--config", "sigil.toml", "--port", "0"]);
    assert!(
        serve.startup.contains("only the built-in `sigil` object"),
        "{}",
        serve.startup
    );
    assert!(
        serve
            .startup
            .contains("accepting ANY client key (allow_any_client = true, from sigil.toml:1)"),
        "{}",
        serve.startup
    );
    let mut objects = serve.call(d, &["sigil", "objects", "--key", "client.key"]);
    assert_eq!(result(&mut objects), r#"{"sigil":["objects","ping"]}"#);
    let err = fails(
        &mut serve.call(d, &["calculator", "add", "1", "2", "--key", "client.key"]),
        1,
    );
    assert!(err.contains("no_such_object"), "{err}");
    let (status, rest) = serve.stop("INT");
    assert_eq!(status.code(), Some(0), "stderr: {}", serve.stderr());
    assert_eq!(rest, "stopped\n");
}

#[test]
fn fail_serve_without_any_client_policy_is_a_config_error() {
    let tmp = dir();
    let err = fails(
        sigil()
            .current_dir(tmp.path())
            .timeout(WAIT)
            .args(["serve", "--port", "0"]),
        2,
    );
    assert!(err.contains("authorized_keys"), "{err}");
    assert!(err.contains("--demo"), "{err}");
}

#[test]
fn fail_serve_on_a_port_in_use_exits_1() {
    let taken = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = taken.local_addr().expect("addr").port().to_string();
    let tmp = dir();
    let err = fails(
        sigil()
            .current_dir(tmp.path())
            .timeout(WAIT)
            .args(["serve", "--demo", "--port", &port]),
        1,
    );
    assert_eq!(
        err,
        format!("sigil: port {port} is in use: stop the other server or use --port\n")
    );
}

#[test]
fn fail_serve_with_bad_flags_or_config_exits_2() {
    let tmp = dir();
    let d = tmp.path();
    let err = fails(
        sigil()
            .current_dir(d)
            .timeout(WAIT)
            .args(["serve", "--demo", "--port", "70000"]),
        2,
    );
    assert!(err.contains("--port"), "{err}");
    let err = fails(
        sigil()
            .current_dir(d)
            .timeout(WAIT)
            .env("SIGIL_PORTT", "1")
            .args(["serve", "--demo"]),
        2,
    );
    assert!(err.contains("SIGIL_PORTT"), "{err}");
    std::fs::write(d.join("sigil.toml"), "server_key = \"missing.key\"\n").expect("write");
    let err = fails(
        sigil().current_dir(d).timeout(WAIT).args([
            "serve",
            "--demo",
            "--port",
            "0",
            "--config",
            "sigil.toml",
        ]),
        2,
    );
    assert!(err.contains("missing.key"), "{err}");
}

/// The chapter whose transcripts are checked below.
const CALLING_CHAPTER: &str = "../book/src/calling.md";

/// The commands of the fenced blocks whose info string is `sh,calls`, in
/// order: each `$ ` line with the lines after it (what it prints).
fn transcript_commands(markdown: &str) -> Vec<(String, String)> {
    let mut commands: Vec<(String, String)> = Vec::new();
    let mut inside = false;
    for line in markdown.lines() {
        if let Some(info) = line.strip_prefix("```") {
            inside = !inside && info == "sh,calls";
            continue;
        }
        if !inside {
            continue;
        }
        match (line.strip_prefix("$ "), commands.last_mut()) {
            (Some(command), _) => commands.push((command.to_owned(), String::new())),
            (None, Some((_, output))) => {
                output.push_str(line);
                output.push('\n');
            }
            (None, None) => panic!("output before any command in {CALLING_CHAPTER}: {line}"),
        }
    }
    commands
}

/// The lines the chapter shows `sigil serve --demo` printing.
fn serve_transcript(markdown: &str) -> Vec<&str> {
    let start = markdown
        .find("```sh\n$ sigil serve --demo\n")
        .expect("the chapter shows `$ sigil serve --demo`");
    markdown[start..]
        .lines()
        .skip(2)
        .take_while(|line| !line.starts_with("```"))
        .collect()
}

/// The shell transcripts of the "Calling" chapter are what `sigil` prints:
/// its `sigil serve --demo` output (but the log's timestamps, the key and
/// the fingerprint), and every `sigil call` of its `sh,calls` blocks, run in
/// order in one shell against a demo server (with the chapter's URL and
/// server key replaced by the real ones).
#[test]
fn calling_chapter_transcripts_are_current() {
    let chapter = Path::new(env!("CARGO_MANIFEST_DIR")).join(CALLING_CHAPTER);
    let markdown = std::fs::read_to_string(&chapter).expect("read the calling chapter");
    let tmp = dir();
    let d = tmp.path();
    let serve = Serve::start(d, &["--demo", "--port", "0"]);

    let (mut book_url, mut book_key) = (None, None);
    for line in serve_transcript(&markdown) {
        if line.starts_with(|c: char| c.is_ascii_digit()) {
            continue; // a log line on stderr, with its timestamp
        }
        if let Some(url) = line.strip_prefix("url: ") {
            book_url = Some(url);
        } else if let Some(key) = line.strip_prefix("public key: ") {
            book_key = Some(key);
        } else if !line.starts_with("fingerprint: SHA256:") {
            assert!(
                serve.startup.lines().any(|l| l == line),
                "{CALLING_CHAPTER} shows `{line}`, sigil serve printed:\n{}",
                serve.startup
            );
        }
    }
    let book_url = book_url.expect("the chapter shows the url: line");
    let book_key = book_key.expect("the chapter shows the public key: line");
    assert_eq!(book_url, "ws://127.0.0.1:7070/sigil");

    let commands = transcript_commands(&markdown);
    let calls = commands
        .iter()
        .filter(|(c, _)| c.starts_with("sigil call "))
        .count();
    assert!(calls >= 10, "only {calls} calls in {CALLING_CHAPTER}");
    let mut script = String::new();
    for (i, (command, _)) in commands.iter().enumerate() {
        let command = command
            .replace(book_url, &serve.url)
            .replace(book_key, &serve.public_key);
        script.push_str(&format!("echo '@@@{i}'\n{command} 2>&1\n"));
    }
    let bin_dir = sigil_path().parent().expect("bin dir").to_path_buf();
    let path = std::env::join_paths(std::iter::once(bin_dir).chain(std::env::split_paths(
        &std::env::var_os("PATH").unwrap_or_default(),
    )))
    .expect("PATH");
    let out = Command::new("bash")
        .args(["-u", "-c", &script])
        .current_dir(d)
        .env_clear()
        .env("PATH", path)
        .env("HOME", d)
        .timeout(WAIT)
        .output()
        .expect("run bash");
    let stdout = String::from_utf8(out.stdout).expect("UTF-8");
    let mut outputs: Vec<String> = Vec::new();
    for line in stdout.lines() {
        if line == format!("@@@{}", outputs.len()) {
            outputs.push(String::new());
        } else {
            let current = outputs.last_mut().expect("a marker first");
            current.push_str(line);
            current.push('\n');
        }
    }
    assert_eq!(outputs.len(), commands.len(), "bash output:\n{stdout}");
    for ((command, expected), actual) in commands.iter().zip(&outputs) {
        if command.starts_with("sigil call ") {
            assert_eq!(
                actual, expected,
                "`$ {command}` in {CALLING_CHAPTER} printed something else"
            );
        } else if command.starts_with("sigil keygen --out ") {
            assert_eq!(actual.trim().len(), 44, "{command}: {actual}");
        } else {
            assert_eq!(actual, "", "{command}");
        }
    }
}
