//! `sigil call wss://…` against a mutual-TLS `sigil serve`, end to end:
//! certificates made at run time, the server's CA and the client
//! certificate given with --ca, --client-cert and --client-cert-key or with
//! the tls.* keys of a config file, and the messages of each failure.

mod common;

use std::path::Path;

use common::serve::{Serve, dir, keygen, result};
use common::{fails, ok, set_mode, sigil, write_secret};
use sigil_tests::certs::{TestCa, Usage};

/// Writes the certificates of a mutual-TLS setup into `d`: the server's
/// CA (`ca.pem`), the server's certificate and key, the client CA, and a
/// client certificate with its key (`me.pem`, `me.key`, mode 0600); and a
/// server config that requires client certificates.
fn mutual_tls_files(d: &Path) {
    let server_ca = TestCa::new("server ca");
    let client_ca = TestCa::new("client ca");
    let server = server_ca.issue("127.0.0.1", "server", Usage::Server);
    let me = client_ca.issue("me.example", "me", Usage::Client);
    let write = |name: &str, text: &str| std::fs::write(d.join(name), text).expect("write");
    write("ca.pem", &server_ca.pem);
    write("client-ca.pem", &client_ca.pem);
    write("server.pem", &server.cert_pem);
    write_secret(&d.join("server-tls.key"), &server.key_pem);
    write("me.pem", &me.cert_pem);
    write_secret(&d.join("me.key"), &me.key_pem);
    write(
        "server.toml",
        "[tls]\ncert = \"server.pem\"\nkey = \"server-tls.key\"\n\
         client_ca = \"client-ca.pem\"\nrequire_client_cert = true\n",
    );
}

#[test]
fn mutual_tls_call_from_flags_and_from_config() {
    let tmp = dir();
    let d = tmp.path();
    mutual_tls_files(d);
    keygen(d, "client.key");
    let serve = Serve::start(d, &["--demo", "--port", "0", "--config", "server.toml"]);
    assert!(
        serve.url.starts_with("wss://127.0.0.1:"),
        "{}",
        serve.startup
    );
    let tls_flags = [
        "--ca",
        "ca.pem",
        "--client-cert",
        "me.pem",
        "--client-cert-key",
        "me.key",
    ];

    let mut call = serve.call(d, &["calculator", "add", "40", "2", "--key", "client.key"]);
    call.args(tls_flags);
    assert_eq!(result(&mut call), "42");

    // The same from a client config file, whose tls.* keys show with their origin.
    std::fs::write(
        d.join("client.toml"),
        format!(
            "client_key = \"client.key\"\nserver_public_key = \"{}\"\n[tls]\nca = \"ca.pem\"\n\
             client_cert = \"me.pem\"\nclient_key = \"me.key\"\n",
            serve.public_key
        ),
    )
    .expect("write");
    let mut call = serve.call(d, &["sigil", "ping", "--config", "client.toml"]);
    assert_eq!(result(&mut call), "\"pong\"");
    let shown =
        ok(sigil()
            .current_dir(d)
            .args(["config", "show", "--origin", "--config", "client.toml"]));
    for line in ["tls.ca = \"ca.pem\"", "tls.client_key = \"me.key\""] {
        let found = shown.lines().find(|l| l.starts_with(line));
        assert!(
            found.is_some_and(|l| l.contains("# client.toml:")),
            "{shown}"
        );
    }
    let checked = ok(sigil()
        .current_dir(d)
        .args(["config", "check", "--config", "client.toml"]));
    let fingerprint = ok(sigil().args(["fingerprint", &serve.public_key]));
    assert_eq!(checked, format!("client settings: ok; pins {fingerprint}"));
}

#[test]
fn fail_mutual_tls_without_a_client_certificate_says_so() {
    let tmp = dir();
    let d = tmp.path();
    mutual_tls_files(d);
    keygen(d, "client.key");
    let serve = Serve::start(d, &["--demo", "--port", "0", "--config", "server.toml"]);
    // `sigil call … sigil ping` with these TLS flags: its stderr, once it
    // exited with `code`.
    let failing = |flags: &str, code: i32| {
        let mut call = serve.call(d, &["sigil", "ping", "--key", "client.key"]);
        call.args(flags.split_whitespace());
        fails(&mut call, code)
    };

    let err = failing("--ca ca.pem", 1);
    assert!(err.contains("requires a client certificate"), "{err}");
    assert!(
        err.contains("--client-cert PATH --client-cert-key PATH"),
        "{err}"
    );

    // Without --ca, the server's private CA is not trusted.
    let err = failing("--client-cert me.pem --client-cert-key me.key", 1);
    assert!(err.contains("TLS: invalid peer certificate"), "{err}");
    assert!(err.contains("--ca"), "{err}");

    // A client certificate of another CA is refused by the server.
    let rogue = TestCa::new("rogue").issue("me.example", "me", Usage::Client);
    std::fs::write(d.join("rogue.pem"), &rogue.cert_pem).expect("write");
    write_secret(&d.join("rogue.key"), &rogue.key_pem);
    let err = failing(
        "--ca ca.pem --client-cert rogue.pem --client-cert-key rogue.key",
        1,
    );
    assert!(err.contains("refused this client's certificate"), "{err}");

    // The key file is a secret: refused if others can read it, and never shown.
    set_mode(&d.join("me.key"), 0o644);
    let err = failing(
        "--ca ca.pem --client-cert me.pem --client-cert-key me.key",
        2,
    );
    assert!(err.contains("chmod 600"), "{err}");
    let key_text = std::fs::read_to_string(d.join("me.key")).expect("read");
    let body = key_text.lines().nth(1).expect("a line of base64");
    assert!(!err.contains(body), "{err}");

    // A key that does not belong to the certificate.
    set_mode(&d.join("me.key"), 0o600);
    let err = failing(
        "--ca ca.pem --client-cert me.pem --client-cert-key rogue.key",
        2,
    );
    assert!(
        err.contains("tls.client_key is not the key of tls.client_cert"),
        "{err}"
    );
}
