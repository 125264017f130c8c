//! End-to-end tests of `sigil config show`: layers, origins, the environment
//! lockout, redaction, and configuration errors (exit 2).

mod common;

use common::{assert_plain_error, fails, ok, sigil};
use tempfile::TempDir;

/// The line of `key` in `sigil config show` output.
fn line<'a>(stdout: &'a str, key: &str) -> &'a str {
    stdout
        .lines()
        .find(|l| l.starts_with(&format!("{key} = ")))
        .unwrap_or_else(|| panic!("no `{key}` line in:\n{stdout}"))
}

#[test]
fn defaults_without_anything() {
    let out = ok(sigil().args(["config", "show"]));
    assert_eq!(line(&out, "port"), "port = 7070");
    assert_eq!(line(&out, "host"), "host = \"127.0.0.1\"");
    assert_eq!(line(&out, "max_clock_skew_ms"), "max_clock_skew_ms = 60000");
    for key in [
        "psk",
        "tls.cert",
        "authorized_keys",
        "max_message_size",
        "log",
    ] {
        line(&out, key);
    }
    assert!(!out.contains('#'), "no origins without --origin: {out}");
}

#[test]
fn env_value_shows_with_its_origin() {
    let out = ok(sigil()
        .args(["config", "show", "--origin"])
        .env("SIGIL_PORT", "9999"));
    let port = line(&out, "port");
    assert!(port.starts_with("port = 9999 "), "{port}");
    assert!(port.ends_with("# env SIGIL_PORT"), "{port}");
    assert!(line(&out, "host").ends_with("# default"));
}

#[test]
fn no_env_ignores_and_reports_the_environment() {
    let out = sigil()
        .args(["config", "show", "--origin", "--no-env"])
        .env("SIGIL_PORT", "9999")
        .output()
        .unwrap();
    assert!(out.status.success());
    let stdout = String::from_utf8(out.stdout).unwrap();
    let stderr = String::from_utf8(out.stderr).unwrap();
    let port = line(&stdout, "port");
    assert!(port.starts_with("port = 7070 "), "{port}");
    assert!(port.ends_with("# default"), "{port}");
    assert_eq!(stderr, "sigil: ignored SIGIL_PORT (--no-env)\n");
    assert!(!stdout.contains("9999") && !stderr.contains("9999"));
}

#[test]
fn fail_unknown_env_var_suggests_the_nearest() {
    let stderr = fails(sigil().args(["config", "show"]).env("SIGIL_PROT", "1"), 2);
    assert!(stderr.contains("SIGIL_PROT"), "{stderr}");
    assert!(stderr.contains("SIGIL_PORT"), "{stderr}");
    // --no-env ignores it instead.
    let out = sigil()
        .args(["config", "show", "--no-env"])
        .env("SIGIL_PROT", "1")
        .output()
        .unwrap();
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8(out.stderr).unwrap(),
        "sigil: ignored SIGIL_PROT (--no-env)\n"
    );
}

#[test]
fn fail_invalid_env_value() {
    let stderr = fails(
        sigil()
            .args(["config", "show"])
            .env("SIGIL_PORT", "seventy"),
        2,
    );
    assert!(stderr.contains("SIGIL_PORT"), "{stderr}");
    assert!(!stderr.contains("seventy"), "{stderr}");
}

#[test]
fn file_values_show_file_and_line() {
    let dir = TempDir::new().unwrap();
    let path = dir.path().join("sigil.toml");
    std::fs::write(
        &path,
        "# server\nport = 9000\n\n[tls]\ncert = \"server.crt\"\n",
    )
    .unwrap();
    let out = ok(sigil()
        .args(["config", "show", "--origin", "--config"])
        .arg(&path));
    let port = line(&out, "port");
    assert!(port.starts_with("port = 9000 "), "{port}");
    assert!(port.ends_with(&format!("# {}:2", path.display())), "{port}");
    let cert = line(&out, "tls.cert");
    assert!(cert.starts_with("tls.cert = \"server.crt\""), "{cert}");
    assert!(cert.ends_with(":5"), "{cert}");
    // The environment beats the file.
    let out = ok(sigil()
        .args(["config", "show", "--origin", "--config"])
        .arg(&path)
        .env("SIGIL_PORT", "9001"));
    assert!(line(&out, "port").ends_with("# env SIGIL_PORT"));
}

#[test]
fn fail_misspelt_key_in_file_names_file_line_and_key() {
    let dir = TempDir::new().unwrap();
    let path = dir.path().join("sigil.toml");
    std::fs::write(&path, "host = \"127.0.0.1\"\nprot = 9000\n").unwrap();
    let stderr = fails(sigil().args(["config", "show", "--config"]).arg(&path), 2);
    let first = stderr.lines().next().unwrap();
    assert!(first.contains(&path.display().to_string()), "{stderr}");
    assert!(first.contains("line 2"), "{stderr}");
    assert!(first.contains("`prot`"), "{stderr}");
    assert!(
        first.contains("`port`"),
        "suggests the nearest key: {stderr}"
    );
}

#[test]
fn fail_missing_config_file() {
    let stderr = fails(
        sigil().args(["config", "show", "--config", "/nonexistent/sigil.toml"]),
        2,
    );
    assert!(stderr.contains("/nonexistent/sigil.toml"), "{stderr}");
}

#[test]
fn psk_is_redacted_everywhere() {
    let psk = ok(sigil().arg("keygen"));
    let psk = psk.trim();
    let out = sigil()
        .args(["config", "show", "--origin"])
        .env("SIGIL_PSK", psk)
        .output()
        .unwrap();
    assert!(out.status.success());
    let stdout = String::from_utf8(out.stdout).unwrap();
    let stderr = String::from_utf8(out.stderr).unwrap();
    let line = line(&stdout, "psk");
    assert!(line.starts_with("psk = <redacted>"), "{line}");
    assert!(line.ends_with("# env SIGIL_PSK"), "{line}");
    assert!(!stdout.contains(psk) && !stderr.contains(psk));

    // Nor does an error show it: psk and psk_file together are refused.
    let out = sigil()
        .args(["config", "show"])
        .env("SIGIL_PSK", psk)
        .env("SIGIL_PSK_FILE", "/etc/sigil/psk")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_plain_error(&stderr);
    assert!(!stderr.contains(psk), "{stderr}");
    assert!(out.stdout.is_empty());

    // Nor an invalid psk.
    let bad = "not-a-key-but-secret-anyway";
    let stderr = fails(sigil().args(["config", "show"]).env("SIGIL_PSK", bad), 2);
    assert!(
        stderr.contains("SIGIL_PSK") && !stderr.contains(bad),
        "{stderr}"
    );
}

#[test]
fn non_unicode_environment_does_not_panic() {
    use std::ffi::OsStr;
    use std::os::unix::ffi::OsStrExt as _;
    let junk = OsStr::from_bytes(b"\xff\xfe");
    // Variables that are not sigil's are not looked at.
    let out = ok(sigil().args(["config", "show"]).env("OTHER_VAR", junk));
    assert_eq!(line(&out, "port"), "port = 7070");
    // One of sigil's is a configuration error, not a panic.
    let stderr = fails(sigil().args(["config", "show"]).env("SIGIL_PSK", junk), 2);
    assert!(stderr.contains("SIGIL_PSK"), "{stderr}");
}

/// `sigil config check`: exit 0 and what it checked for a usable
/// configuration; exit 2 and the first problem for one that is not, be it
/// a value or a file it names.
#[test]
fn check_validates_values_and_the_files_they_name() {
    let tmp = TempDir::new().expect("temp dir");
    let d = tmp.path();
    let check = |file: &str, extra: &[&str]| {
        std::fs::write(d.join("sigil.toml"), file).expect("write");
        let mut cmd = sigil();
        cmd.current_dir(d)
            .args(["config", "check", "--config", "sigil.toml"])
            .args(extra);
        cmd
    };

    let out = ok(&mut check("port = 7443\n", &[]));
    assert!(out.starts_with("values: ok"), "{out}");
    let err = fails(&mut check("port = 70000\n", &[]), 2);
    assert!(
        err.contains("invalid value for `port` in sigil.toml line 1"),
        "{err}"
    );

    // A server's configuration: its key files are read.
    let new = ok(sigil().current_dir(d).args(["keygen", "--out", "new.key"]));
    let old = ok(sigil().current_dir(d).args(["keygen", "--out", "old.key"]));
    let fingerprint = |public: &str| ok(sigil().args(["fingerprint", public.trim()]));
    let server = "server_key = [\"new.key\", \"old.key\"]\nallow_any_client = true\n";
    let out = ok(&mut check(server, &[]));
    assert_eq!(
        out,
        format!(
            "server settings: ok; public key {}, also serving {}\n",
            fingerprint(&new).trim(),
            fingerprint(&old).trim()
        )
    );
    // A key listed twice is held once.
    let twice = "server_key = [\"new.key\", \"old.key\", \"new.key\"]\nallow_any_client = true\n";
    assert_eq!(ok(&mut check(twice, &[])), out);
    let err = fails(
        &mut check("server_key = \"gone.key\"\nallow_any_client = true\n", &[]),
        2,
    );
    assert!(
        err.starts_with("sigil: server settings: cannot read gone.key"),
        "{err}"
    );
    let err = fails(&mut check("server_key = \"new.key\"\n", &[]), 2);
    assert!(err.contains("no client could connect"), "{err}");

    // --client checks what a client needs, even when nothing is set.
    let err = fails(&mut check("port = 1\n", &["--client"]), 2);
    assert!(
        err.contains("client settings: no server public key"),
        "{err}"
    );
}
