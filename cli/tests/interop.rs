//! Interoperability of `sigil` with WireGuard's `wg` and with OpenSSL, run
//! as real programs. A missing `wg` or `openssl` fails these tests with a
//! message that says to run `cargo xtask test`, which installs them.

mod common;

use std::io::Write as _;
use std::path::Path;
use std::process::{Command, Stdio};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use common::{ok, require_tool, sigil, write_secret};
use sha2::{Digest, Sha256};
use tempfile::TempDir;

/// Runs a program with `stdin`, asserts it succeeded, returns its stdout.
fn run(program: &str, args: &[&str], dir: &Path, stdin: &[u8]) -> Vec<u8> {
    let mut child = Command::new(program)
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}; run `cargo xtask test`"));
    child
        .stdin
        .take()
        .expect("stdin is piped")
        .write_all(stdin)
        .expect("write stdin");
    let out = child.wait_with_output().expect("wait");
    assert!(
        out.status.success(),
        "{program} {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

fn text(bytes: Vec<u8>) -> String {
    String::from_utf8(bytes).expect("UTF-8 output")
}

fn wg() {
    require_tool("wg", &["--version"]);
}

fn openssl() {
    require_tool("openssl", &["version"]);
}

#[test]
fn wg_genkey_then_sigil_pubkey_equals_wg_pubkey() {
    wg();
    let dir = TempDir::new().unwrap();
    for _ in 0..3 {
        let secret = run("wg", &["genkey"], dir.path(), b"");
        let by_wg = text(run("wg", &["pubkey"], dir.path(), &secret));
        let by_sigil = ok(sigil().arg("pubkey").write_stdin(secret));
        assert_eq!(by_sigil, by_wg);
    }
}

#[test]
fn sigil_keygen_then_wg_pubkey_equals_sigil_pubkey() {
    wg();
    let dir = TempDir::new().unwrap();
    for _ in 0..3 {
        let secret = ok(sigil().arg("keygen"));
        let by_wg = text(run("wg", &["pubkey"], dir.path(), secret.as_bytes()));
        let by_sigil = ok(sigil().arg("pubkey").write_stdin(secret));
        assert_eq!(by_sigil, by_wg);
    }
}

/// The 32 raw bytes of an SPKI public key in DER, as OpenSSL writes it.
fn raw_from_spki_der(der: &[u8]) -> [u8; 32] {
    assert_eq!(der.len(), 44, "X25519 SPKI is 44 bytes");
    der[12..].try_into().expect("32 bytes")
}

#[test]
fn openssl_key_gives_the_same_public_key_in_sigil() {
    openssl();
    let dir = TempDir::new().unwrap();
    run(
        "openssl",
        &["genpkey", "-algorithm", "X25519", "-out", "k.pem"],
        dir.path(),
        b"",
    );
    let key = dir.path().join("k.pem");
    common::set_mode(&key, 0o600);
    let by_openssl = text(run(
        "openssl",
        &["pkey", "-in", "k.pem", "-pubout"],
        dir.path(),
        b"",
    ));
    let by_sigil = ok(sigil().arg("pubkey").arg(&key).args(["--format", "pem"]));
    assert_eq!(by_sigil, by_openssl);

    let der = run(
        "openssl",
        &["pkey", "-in", "k.pem", "-pubout", "-outform", "DER"],
        dir.path(),
        b"",
    );
    let base64 = ok(sigil().arg("pubkey").arg(&key));
    assert_eq!(
        base64,
        format!("{}\n", STANDARD.encode(raw_from_spki_der(&der)))
    );
}

#[test]
fn openssl_reads_a_sigil_pem_secret() {
    openssl();
    let dir = TempDir::new().unwrap();
    let key = dir.path().join("k.pem");
    let public = ok(sigil()
        .args(["keygen", "--format", "pem", "--out"])
        .arg(&key));
    let by_openssl = text(run(
        "openssl",
        &["pkey", "-in", "k.pem", "-pubout"],
        dir.path(),
        b"",
    ));
    assert_eq!(by_openssl, public);
    // And openssl can tell it is an X25519 key.
    let described = text(run(
        "openssl",
        &["pkey", "-in", "k.pem", "-noout", "-text"],
        dir.path(),
        b"",
    ));
    assert!(described.starts_with("X25519 Private-Key:"), "{described}");
}

#[test]
fn sigil_derive_equals_openssl_dh_then_hkdf() {
    openssl();
    let dir = TempDir::new().unwrap();
    // alice's key made by openssl, bob's by sigil.
    run(
        "openssl",
        &["genpkey", "-algorithm", "X25519", "-out", "alice.pem"],
        dir.path(),
        b"",
    );
    common::set_mode(&dir.path().join("alice.pem"), 0o600);
    let alice_pub_pem = text(run(
        "openssl",
        &["pkey", "-in", "alice.pem", "-pubout"],
        dir.path(),
        b"",
    ));
    std::fs::write(dir.path().join("alice.pub.pem"), &alice_pub_pem).unwrap();
    let bob_pub_pem = ok(sigil()
        .args(["keygen", "--format", "pem", "--out"])
        .arg(dir.path().join("bob.pem")));
    std::fs::write(dir.path().join("bob.pub.pem"), &bob_pub_pem).unwrap();

    let raw = |name: &str| {
        raw_from_spki_der(&run(
            "openssl",
            &["pkey", "-pubin", "-in", name, "-outform", "DER"],
            dir.path(),
            b"",
        ))
    };
    let (a, b) = (raw("alice.pub.pem"), raw("bob.pub.pem"));
    let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
    let salt = Sha256::new()
        .chain_update(b"sigil/1 pairwise")
        .chain_update(lo)
        .chain_update(hi)
        .finalize();

    let dh = run(
        "openssl",
        &[
            "pkeyutl",
            "-derive",
            "-inkey",
            "alice.pem",
            "-peerkey",
            "bob.pub.pem",
        ],
        dir.path(),
        b"",
    );
    assert_eq!(dh.len(), 32);
    for context in [None, Some("my app hmac key v1")] {
        let hexkey = format!("hexkey:{}", hex::encode(&dh));
        let hexsalt = format!("hexsalt:{}", hex::encode(salt));
        let hexinfo = format!("hexinfo:{}", hex::encode(context.unwrap_or("sigil/1 psk")));
        let expected = run(
            "openssl",
            &[
                "kdf",
                "-binary",
                "-keylen",
                "32",
                "-kdfopt",
                "digest:SHA256",
                "-kdfopt",
                &hexkey,
                "-kdfopt",
                &hexsalt,
                "-kdfopt",
                &hexinfo,
                "HKDF",
            ],
            dir.path(),
            b"",
        );
        let expected = format!("{}\n", STANDARD.encode(expected));
        for (secret, peer) in [("alice.pem", "bob.pub.pem"), ("bob.pem", "alice.pub.pem")] {
            let mut cmd = sigil();
            cmd.current_dir(dir.path())
                .args(["derive", "--secret", secret, "--peer", peer]);
            if let Some(context) = context {
                cmd.args(["--context", context]);
            }
            assert_eq!(ok(&mut cmd), expected, "{secret} with {peer}, {context:?}");
        }
    }
}

#[test]
fn wg_key_derives_with_an_openssl_key() {
    // A WireGuard secret and an OpenSSL secret, used together through sigil.
    wg();
    openssl();
    let dir = TempDir::new().unwrap();
    let wg_secret = text(run("wg", &["genkey"], dir.path(), b""));
    write_secret(&dir.path().join("wg.key"), &wg_secret);
    let wg_pub = text(run("wg", &["pubkey"], dir.path(), wg_secret.as_bytes()));
    run(
        "openssl",
        &["genpkey", "-algorithm", "X25519", "-out", "o.pem"],
        dir.path(),
        b"",
    );
    common::set_mode(&dir.path().join("o.pem"), 0o600);
    let o_pub = text(run(
        "openssl",
        &["pkey", "-in", "o.pem", "-pubout"],
        dir.path(),
        b"",
    ));
    std::fs::write(dir.path().join("o.pub.pem"), o_pub).unwrap();
    let one = ok(sigil().current_dir(dir.path()).args([
        "derive",
        "--secret",
        "wg.key",
        "--peer",
        "o.pub.pem",
    ]));
    let two = ok(sigil().current_dir(dir.path()).args([
        "derive",
        "--secret",
        "o.pem",
        "--peer",
        wg_pub.trim(),
    ]));
    assert_eq!(one, two);
}
