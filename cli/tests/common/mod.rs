//! Helpers shared by the CLI's end-to-end tests.
//!
//! Each test file uses only some of them.
#![allow(dead_code)]

pub(crate) mod serve;

use std::path::{Path, PathBuf};
use std::process::Output;

use assert_cmd::Command;

/// The `sigil` binary under test, run with a cleared environment (only PATH
/// and HOME kept) so that no `SIGIL_*` variable of the developer's shell
/// leaks in.
pub(crate) fn sigil() -> Command {
    let mut cmd = Command::new(sigil_path());
    cmd.env_clear();
    for var in ["PATH", "HOME"] {
        if let Some(value) = std::env::var_os(var) {
            cmd.env(var, value);
        }
    }
    cmd
}

/// Path of the `sigil` binary built by cargo for these tests.
pub(crate) fn sigil_path() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_sigil"))
}

/// Runs `cmd`, asserts it succeeded with nothing on stderr, and returns stdout.
pub(crate) fn ok(cmd: &mut Command) -> String {
    let out = cmd.output().expect("run sigil");
    assert!(
        out.status.success(),
        "expected success, got {:?}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.stderr.is_empty(),
        "unexpected stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("stdout is UTF-8")
}

/// Runs `cmd`, asserts it exited with `code`, printed nothing on stdout and
/// one or two plain `sigil: ...` lines on stderr (no panic), and returns stderr.
pub(crate) fn fails(cmd: &mut Command, code: i32) -> String {
    let out: Output = cmd.output().expect("run sigil");
    let stderr = String::from_utf8(out.stderr).expect("stderr is UTF-8");
    assert_eq!(out.status.code(), Some(code), "stderr: {stderr}");
    assert!(
        out.stdout.is_empty(),
        "unexpected stdout: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert_plain_error(&stderr);
    stderr
}

/// An error message as the design asks: one or two lines, the first starting
/// with `sigil: `, no panic and no backtrace.
pub(crate) fn assert_plain_error(stderr: &str) {
    let lines: Vec<&str> = stderr.lines().collect();
    assert!(
        (1..=2).contains(&lines.len()),
        "expected one or two lines on stderr, got: {stderr}"
    );
    assert!(lines[0].starts_with("sigil: "), "stderr: {stderr}");
    assert!(!stderr.contains("panicked"), "stderr: {stderr}");
    assert!(!stderr.contains("RUST_BACKTRACE"), "stderr: {stderr}");
}

/// Writes a secret key file with mode 0600.
pub(crate) fn write_secret(path: &Path, text: &str) {
    std::fs::write(path, text).expect("write secret");
    set_mode(path, 0o600);
}

/// Sets the permission bits of a file.
pub(crate) fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

/// The permission bits of a file.
pub(crate) fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::metadata(path).expect("stat").permissions().mode() & 0o777
}

/// Fails the test, saying how to get a missing tool, unless `program` runs.
pub(crate) fn require_tool(program: &str, args: &[&str]) {
    let found = std::process::Command::new(program)
        .args(args)
        .output()
        .is_ok_and(|out| out.status.success());
    assert!(
        found,
        "`{program}` is not installed or does not run; run `cargo xtask test`, \
         which installs it (wireguard-tools for `wg`, openssl for `openssl`, nginx for `nginx`)"
    );
}
