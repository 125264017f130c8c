//! `sigil serve` and `sigil call` end to end: real processes on 127.0.0.1,
//! the server on a free port (`--port 0`) whose URL and public key are read
//! from its stdout, and the exit codes and messages of every failure the
//! design names.

mod common;

use std::net::TcpListener;

use common::serve::{Serve, WAIT, dir, free_port, keygen, result};
use common::{fails, ok, sigil};

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
    assert!(
        serve.startup.contains(
            "the key changes at every start: to keep one, run `sigil keygen --out server.key` \
             and set server_key = \"server.key\" (or SIGIL_SERVER_KEY)"
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
    assert_eq!(call(&["clock", "sleep", "5"]), "5");
    let objects: serde_json::Value =
        serde_json::from_str(&call(&["sigil", "objects"])).expect("objects is JSON");
    assert_eq!(
        objects,
        serde_json::json!({
            "calculator": ["add", "div", "mul", "sub"],
            "clock": ["sleep", "ticker"],
            "echo": ["echo", "repeat"],
            "kv": ["delete", "get", "set", "watch"],
            "session": ["count", "whoami"],
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

/// `sigil call --stream` prints one JSON value per line as items come,
/// exits 0 at the end and 1 on an error; Ctrl-C cancels and exits 130.
#[test]
fn streams_print_a_line_per_item_and_ctrl_c_cancels() {
    let tmp = dir();
    let d = tmp.path();
    keygen(d, "client.key");
    let serve = Serve::start(d, &["--demo", "--port", "0"]);
    let stream = |args: &[&str]| {
        let mut cmd = serve.call(d, args);
        cmd.args(["--key", "client.key", "--stream"]);
        cmd
    };
    assert_eq!(
        ok(&mut stream(&["clock", "ticker", "5", "10"])),
        "0\n1\n2\n3\n4\n"
    );
    assert_eq!(ok(&mut stream(&["clock", "ticker", "0", "10"])), "");
    let err = fails(&mut stream(&["clock", "ticker", "10001", "10"]), 1);
    assert!(err.contains("invalid_arguments"), "{err}");
    let err = fails(&mut stream(&["calculator", "add", "1", "2"]), 1);
    assert!(err.contains("is not a stream method"), "{err}");

    // A live watch: the value now, then each change, until Ctrl-C.
    let mut watch = std::process::Command::new(common::sigil_path())
        .current_dir(d)
        .env_clear()
        .args(["call", &serve.url, "kv", "watch", r#""w""#])
        .args([
            "--server-key",
            &serve.public_key,
            "--key",
            "client.key",
            "--stream",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn sigil call --stream");
    let lines = common::serve::read_lines(watch.stdout.take().expect("stdout"));
    assert_eq!(lines.recv_timeout(WAIT).as_deref(), Ok("null"));
    let set = |value: &str| {
        let mut cmd = serve.call(d, &["kv", "set", r#""w""#, value]);
        cmd.args(["--key", "client.key"]);
        result(&mut cmd)
    };
    set(r#""one""#);
    assert_eq!(lines.recv_timeout(WAIT).as_deref(), Ok(r#""one""#));
    set(r#""two""#);
    assert_eq!(lines.recv_timeout(WAIT).as_deref(), Ok(r#""two""#));
    let sent = std::process::Command::new("kill")
        .args(["-INT", &watch.id().to_string()])
        .status()
        .expect("run kill");
    assert!(sent.success());
    let out = watch.wait_with_output().expect("wait for sigil call");
    assert_eq!(out.status.code(), Some(130));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("interrupted: the stream was cancelled"),
        "{stderr}"
    );
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
        Some(
            "sigil: the server refused the handshake (code 1): the server's key did not match \
             the pinned key, or the server does not accept this client's key"
        ),
        "{err}"
    );
    assert!(err.contains("check the pinned server key"), "{err}");
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
    // The server knows who calls: her key's fingerprint and her name from
    // the comment of her authorized_keys line.
    let whoami = result(&mut serve.call(d, &["session", "whoami", "--key", "alice.key"]));
    let whoami: serde_json::Value = serde_json::from_str(&whoami).expect("JSON");
    let fingerprint = ok(sigil().args(["fingerprint", &alice]));
    assert_eq!(whoami["fingerprint"], fingerprint.trim(), "{whoami}");
    assert_eq!(whoami["name"], "alice", "{whoami}");
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

/// `--timeout MS`: past it the call fails at once with exit 1, and the
/// server logs that it cancelled the call; an out-of-range value is a usage
/// error.
#[test]
fn a_call_past_its_timeout_is_cancelled() {
    let tmp = dir();
    let d = tmp.path();
    keygen(d, "client.key");
    let serve = Serve::start(d, &["--demo", "--port", "0"]);
    let started = std::time::Instant::now();
    let stderr = fails(
        serve
            .call(d, &["clock", "sleep", "5000", "--timeout", "500"])
            .args(["--key", "client.key"]),
        1,
    );
    assert!(
        started.elapsed() < std::time::Duration::from_secs(4),
        "{stderr}"
    );
    assert!(stderr.contains("clock.sleep timed out"), "{stderr}");
    assert!(stderr.contains("--timeout MS"), "{stderr}");
    let deadline = std::time::Instant::now() + WAIT;
    while !serve.stderr().contains("cancelled by the client") {
        assert!(std::time::Instant::now() < deadline, "{}", serve.stderr());
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let stderr = fails(
        serve
            .call(d, &["clock", "sleep", "5", "--timeout", "0"])
            .args(["--key", "client.key"]),
        2,
    );
    assert!(
        stderr.contains("`call_timeout_ms` from --timeout: must be from 10 to 3600000"),
        "{stderr}"
    );
}

/// `wss://` against a plain server, and a server that answers 403: each
/// says what is wrong in words.
#[test]
fn fail_wss_to_a_plain_server_and_a_foreign_host_say_why() {
    let tmp = dir();
    let d = tmp.path();
    keygen(d, "client.key");
    let serve = Serve::start(d, &["--demo", "--port", "0"]);
    let port = serve
        .url
        .rsplit(':')
        .next()
        .expect("port")
        .trim_end_matches("/sigil");
    // `sigil call URL sigil ping` with the server's key: exit 1, its stderr.
    let ping_fails = |url: &str| {
        fails(
            sigil().current_dir(d).timeout(WAIT).args([
                "call",
                url,
                "sigil",
                "ping",
                "--server-key",
                &serve.public_key,
                "--key",
                "client.key",
            ]),
            1,
        )
    };
    let err = ping_fails(&format!("wss://127.0.0.1:{port}/sigil"));
    assert!(err.contains("does not speak TLS there"), "{err}");
    assert!(err.contains("use a ws:// URL"), "{err}");
    // A host the server was not told about (as a DNS-rebinding page would
    // name it): the same address written another way.
    let err = ping_fails(&format!("ws://[::ffff:127.0.0.1]:{port}/sigil"));
    assert!(err.contains("HTTP 403"), "{err}");
    assert!(err.contains("allowed_hosts"), "{err}");
}
