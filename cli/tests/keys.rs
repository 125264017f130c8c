//! End-to-end tests of `sigil keygen`, `pubkey`, `fingerprint` and `derive`:
//! arguments, stdin, stdout, stderr and exit codes of the built binary.

mod common;

use std::path::Path;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
use common::{fails, mode, ok, set_mode, sigil, write_secret};
use sha2::{Digest, Sha256};
use tempfile::TempDir;

/// Decodes a printed base64 key (with its newline) and checks it is 32 bytes.
fn key_bytes(printed: &str) -> [u8; 32] {
    assert!(printed.ends_with('\n'), "{printed:?}");
    let text = printed.trim_end();
    assert_eq!(text.len(), 44, "{printed:?}");
    STANDARD
        .decode(text)
        .expect("base64")
        .try_into()
        .expect("32 bytes")
}

/// `sigil keygen --out dir/name [--format f]`: returns the path and stdout.
fn keygen_to(dir: &TempDir, name: &str, format: &str) -> (std::path::PathBuf, String) {
    let path = dir.path().join(name);
    let public = ok(sigil()
        .args(["keygen", "--format", format, "--out"])
        .arg(&path));
    (path, public)
}

fn pubkey_of(path: &Path, format: &str) -> String {
    ok(sigil().arg("pubkey").arg(path).args(["--format", format]))
}

#[test]
fn keygen_prints_a_fresh_base64_secret() {
    let a = ok(sigil().arg("keygen"));
    let b = ok(sigil().arg("keygen"));
    key_bytes(&a);
    key_bytes(&b);
    assert_ne!(a, b);
}

#[test]
fn keygen_pem_prints_a_pkcs8_secret() {
    let pem = ok(sigil().args(["keygen", "--format", "pem"]));
    assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----\n"), "{pem}");
    assert!(pem.ends_with("-----END PRIVATE KEY-----\n"), "{pem}");
}

#[test]
fn keygen_out_writes_a_0600_file_and_prints_the_public_key() {
    let dir = TempDir::new().unwrap();
    let (path, public) = keygen_to(&dir, "alice.key", "base64");
    assert_eq!(mode(&path), 0o600);
    let secret = std::fs::read_to_string(&path).unwrap();
    key_bytes(&secret);
    key_bytes(&public);
    assert_ne!(secret, public, "the secret must not be printed");
    assert_eq!(pubkey_of(&path, "base64"), public);
}

#[test]
fn fail_keygen_out_refuses_to_overwrite_without_force() {
    let dir = TempDir::new().unwrap();
    let (path, _) = keygen_to(&dir, "alice.key", "base64");
    let before = std::fs::read(&path).unwrap();
    let stderr = fails(sigil().args(["keygen", "--out"]).arg(&path), 1);
    assert!(stderr.contains("already exists"), "{stderr}");
    assert!(stderr.contains("--force"), "{stderr}");
    assert_eq!(std::fs::read(&path).unwrap(), before, "file was changed");
    assert_eq!(mode(&path), 0o600);
}

#[test]
fn keygen_force_overwrites_and_makes_the_file_private() {
    let dir = TempDir::new().unwrap();
    let path = dir.path().join("alice.key");
    std::fs::write(
        &path,
        "an old file that is much longer than any base64 key\n",
    )
    .unwrap();
    set_mode(&path, 0o644);
    let public = ok(sigil().args(["keygen", "--force", "--out"]).arg(&path));
    assert_eq!(mode(&path), 0o600);
    let secret = std::fs::read_to_string(&path).unwrap();
    key_bytes(&secret); // truncated: nothing of the old text is left
    assert_eq!(pubkey_of(&path, "base64"), public);
}

#[test]
fn pubkey_from_file_and_stdin_matches_keygen_in_both_formats() {
    let dir = TempDir::new().unwrap();
    for format in ["base64", "pem"] {
        let (path, public) = keygen_to(&dir, &format!("k.{format}"), format);
        assert_eq!(pubkey_of(&path, format), public);
        let file = std::fs::read(&path).unwrap();
        let from_stdin = ok(sigil()
            .args(["pubkey", "--format", format])
            .write_stdin(file.clone()));
        assert_eq!(from_stdin, public);
        let from_dash = ok(sigil()
            .args(["pubkey", "-", "--format", format])
            .write_stdin(file));
        assert_eq!(from_dash, public);
    }
}

#[test]
fn pubkey_reads_a_pem_secret_and_prints_base64() {
    let dir = TempDir::new().unwrap();
    let (path, public_pem) = keygen_to(&dir, "k.pem", "pem");
    assert!(public_pem.starts_with("-----BEGIN PUBLIC KEY-----\n"));
    let public = pubkey_of(&path, "base64");
    // SPKI of X25519 is a fixed 12-byte prefix and the 32 raw bytes.
    let body: String = public_pem
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect();
    let der = STANDARD.decode(body).unwrap();
    assert_eq!(der.len(), 44);
    assert_eq!(key_bytes(&public), der[12..]);
}

#[test]
fn fail_pubkey_given_a_public_key_file() {
    let dir = TempDir::new().unwrap();
    let (_, public_pem) = keygen_to(&dir, "k.pem", "pem");
    let pub_path = dir.path().join("k.pub");
    write_secret(&pub_path, &public_pem);
    let stderr = fails(sigil().arg("pubkey").arg(&pub_path), 1);
    assert!(stderr.contains("public key, not a secret key"), "{stderr}");
}

#[test]
fn fingerprint_inline_file_and_stdin_agree() {
    let dir = TempDir::new().unwrap();
    let (path, public) = keygen_to(&dir, "k", "base64");
    let expected = format!(
        "SHA256:{}\n",
        STANDARD_NO_PAD.encode(Sha256::digest(key_bytes(&public)))
    );
    let pub_file = dir.path().join("k.pub");
    std::fs::write(&pub_file, &public).unwrap();
    let pem_file = dir.path().join("k.pub.pem");
    std::fs::write(&pem_file, pubkey_of(&path, "pem")).unwrap();

    assert_eq!(ok(sigil().args(["fingerprint", public.trim()])), expected);
    assert_eq!(ok(sigil().arg("fingerprint").arg(&pub_file)), expected);
    assert_eq!(ok(sigil().arg("fingerprint").arg(&pem_file)), expected);
    assert_eq!(
        ok(sigil().arg("fingerprint").write_stdin(public.clone())),
        expected
    );
    assert_eq!(
        ok(sigil().args(["fingerprint", "-"]).write_stdin(public)),
        expected
    );
}

#[test]
fn fail_fingerprint_given_a_secret_key() {
    let dir = TempDir::new().unwrap();
    let (path, _) = keygen_to(&dir, "k.pem", "pem");
    let stderr = fails(sigil().arg("fingerprint").arg(&path), 1);
    assert!(stderr.contains("secret key"), "{stderr}");
    assert!(stderr.contains("sigil pubkey"), "{stderr}");
    let secret = std::fs::read(&path).unwrap();
    let stderr = fails(sigil().arg("fingerprint").write_stdin(secret), 1);
    assert!(stderr.contains("sigil pubkey"), "{stderr}");
}

#[test]
fn fail_fingerprint_of_nothing_known() {
    let stderr = fails(sigil().args(["fingerprint", "no-such-file.pub"]), 1);
    assert!(stderr.contains("no-such-file.pub"), "{stderr}");
}

#[test]
fn derive_gives_both_parties_the_same_key() {
    let dir = TempDir::new().unwrap();
    let (alice, alice_pub) = keygen_to(&dir, "alice.key", "base64");
    let (bob, bob_pub_pem) = keygen_to(&dir, "bob.key", "pem");
    let bob_pub_file = dir.path().join("bob.pub");
    std::fs::write(&bob_pub_file, &bob_pub_pem).unwrap();

    // alice has bob's public key as a PEM file, bob has alice's inline.
    let by_alice = ok(sigil()
        .args(["derive", "--secret"])
        .arg(&alice)
        .arg("--peer")
        .arg(&bob_pub_file));
    let by_bob = ok(sigil()
        .args(["derive", "--secret"])
        .arg(&bob)
        .args(["--peer", alice_pub.trim()]));
    key_bytes(&by_alice);
    assert_eq!(by_alice, by_bob);
}

#[test]
fn derive_reproduces_the_pairwise_vectors() {
    let text = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/vectors/sigil1.json"),
    )
    .unwrap();
    let vectors: serde_json::Value = serde_json::from_str(&text).unwrap();
    let cases = vectors["pairwise"].as_array().unwrap();
    assert_eq!(cases.len(), 2);
    let dir = TempDir::new().unwrap();
    for case in cases {
        let name = case["name"].as_str().unwrap();
        let field = |k: &str| case[k].as_str().unwrap().to_owned();
        let context = case["context"].as_str();
        for (me, peer) in [("alice", "bob"), ("bob", "alice")] {
            let secret = dir.path().join(format!("{me}.key"));
            write_secret(
                &secret,
                &format!("{}\n", field(&format!("{me}_secret_b64"))),
            );
            assert_eq!(
                pubkey_of(&secret, "base64").trim(),
                field(&format!("{me}_public_b64")),
                "{name}"
            );
            let mut cmd = sigil();
            cmd.args(["derive", "--secret"])
                .arg(&secret)
                .args(["--peer", &field(&format!("{peer}_public_b64"))]);
            if let Some(context) = context {
                cmd.args(["--context", context]);
            }
            assert_eq!(ok(&mut cmd).trim(), field("key_b64"), "{name}, {me}");
        }
    }
}

#[test]
fn derive_context_changes_the_key() {
    let dir = TempDir::new().unwrap();
    let (alice, _) = keygen_to(&dir, "alice.key", "base64");
    let (_, bob_pub) = keygen_to(&dir, "bob.key", "base64");
    let derive = |context: Option<&str>| {
        let mut cmd = sigil();
        cmd.args(["derive", "--secret"])
            .arg(&alice)
            .args(["--peer", bob_pub.trim()]);
        if let Some(context) = context {
            cmd.args(["--context", context]);
        }
        ok(&mut cmd)
    };
    let default = derive(None);
    assert_eq!(derive(Some("sigil/1 psk")), default);
    let other = derive(Some("my app hmac key v1"));
    key_bytes(&other);
    assert_ne!(other, default);
}

#[test]
fn derive_reads_the_secret_from_stdin() {
    let dir = TempDir::new().unwrap();
    let (alice, _) = keygen_to(&dir, "alice.key", "base64");
    let (_, bob_pub) = keygen_to(&dir, "bob.key", "base64");
    let from_file = ok(sigil()
        .args(["derive", "--secret"])
        .arg(&alice)
        .args(["--peer", bob_pub.trim()]));
    let from_stdin = ok(sigil()
        .args(["derive", "--secret", "-", "--peer", bob_pub.trim()])
        .write_stdin(std::fs::read(&alice).unwrap()));
    assert_eq!(from_file, from_stdin);
}

#[test]
fn fail_derive_with_a_low_order_peer() {
    let dir = TempDir::new().unwrap();
    let (alice, _) = keygen_to(&dir, "alice.key", "base64");
    let zero = STANDARD.encode([0u8; 32]);
    let stderr = fails(
        sigil()
            .args(["derive", "--secret"])
            .arg(&alice)
            .args(["--peer", &zero]),
        1,
    );
    assert!(stderr.contains("low order"), "{stderr}");
}

#[test]
fn fail_group_readable_secret_file_is_refused() {
    let dir = TempDir::new().unwrap();
    let (alice, _) = keygen_to(&dir, "alice.key", "base64");
    let (_, bob_pub) = keygen_to(&dir, "bob.key", "base64");
    for loose in [0o640, 0o604, 0o660] {
        set_mode(&alice, loose);
        let stderr = fails(sigil().arg("pubkey").arg(&alice), 1);
        assert!(
            stderr.contains(&format!("chmod 600 {}", alice.display())),
            "{stderr}"
        );
        let stderr = fails(
            sigil()
                .args(["derive", "--secret"])
                .arg(&alice)
                .args(["--peer", bob_pub.trim()]),
            1,
        );
        assert!(stderr.contains("chmod 600"), "{stderr}");
    }
    // After the fix it works, and the same secret on stdin is fine.
    set_mode(&alice, 0o600);
    let public = pubkey_of(&alice, "base64");
    let secret = std::fs::read(&alice).unwrap();
    assert_eq!(ok(sigil().arg("pubkey").write_stdin(secret)), public);
}

#[test]
fn fail_garbage_key_file() {
    let dir = TempDir::new().unwrap();
    let path = dir.path().join("garbage.key");
    for garbage in [
        &b"this is not a key\n"[..],
        b"-----BEGIN PRIVATE KEY-----\nnot base64\n-----END PRIVATE KEY-----\n",
        b"\xff\xfe\x00binary",
        b"",
    ] {
        std::fs::write(&path, garbage).unwrap();
        set_mode(&path, 0o600);
        let stderr = fails(sigil().arg("pubkey").arg(&path), 1);
        assert!(stderr.contains("garbage.key"), "{stderr}");
    }
}

#[test]
fn fail_oversized_input_is_not_read_without_bound() {
    let big = vec![b'A'; 1024 * 1024];
    let stderr = fails(sigil().arg("pubkey").write_stdin(big.clone()), 1);
    assert!(stderr.contains("too long"), "{stderr}");
    let stderr = fails(sigil().arg("fingerprint").write_stdin(big), 1);
    assert!(stderr.contains("too long"), "{stderr}");
}

#[test]
fn fail_missing_file() {
    let stderr = fails(sigil().args(["pubkey", "/nonexistent/alice.key"]), 1);
    assert!(stderr.contains("/nonexistent/alice.key"), "{stderr}");
    assert!(!stderr.contains("os error"), "{stderr}");
}

#[test]
fn fail_usage_errors_exit_2() {
    for args in [
        &[][..],
        &["frobnicate"],
        &["keygen", "--force"],
        &["keygen", "--format", "der"],
        &["pubkey", "a", "b"],
        &["derive", "--peer", "x"],
        &["derive", "--secret", "x"],
        &["config"],
    ] {
        let out = sigil().args(args).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(out.stdout.is_empty(), "{args:?}");
        let stderr = String::from_utf8(out.stderr).unwrap();
        assert!(
            !stderr.is_empty() && !stderr.contains("panicked"),
            "{stderr}"
        );
    }
    let stderr = fails(sigil().args(["derive", "--secret", "-", "--peer", "-"]), 2);
    assert!(stderr.contains("stdin"), "{stderr}");
}

#[test]
fn help_exits_0() {
    let help = ok(sigil().arg("--help"));
    for command in ["keygen", "pubkey", "fingerprint", "derive", "config"] {
        assert!(help.contains(command), "{help}");
    }
}

#[test]
fn closed_stdout_exits_quietly() {
    for args in [&["keygen"][..], &["keygen", "--format", "pem"]] {
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader); // nobody reads: every write gets a broken pipe
        let out = std::process::Command::new(common::sigil_path())
            .args(args)
            .stdout(writer)
            .output()
            .unwrap();
        assert!(out.status.success(), "{:?}", out.status);
        assert!(
            out.stderr.is_empty(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
