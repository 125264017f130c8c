//! Runs the shell walkthroughs of the book's "Keys and provisioning" and
//! "Operating sigil" chapters (`book/src/keys.md`, `book/src/operating.md`):
//! every code block whose info string is `sh,walkthrough`, in order, as one
//! `bash -euo pipefail` script with an empty home directory and the freshly
//! built `sigil` first on `PATH`. The blocks check their own claims
//! (`[ "$(cat alice.psk)" = "$(cat bob.psk)" ]`), so a walkthrough that
//! stops being true fails this test.

mod common;

use std::path::Path;
use std::process::Command;

use common::{require_tool, sigil_path};
use tempfile::TempDir;

const CHAPTER: &str = "../book/src/keys.md";
const OPERATING: &str = "../book/src/operating.md";

/// The bodies of the fenced blocks whose info string is `sh,walkthrough`.
fn walkthrough_blocks(markdown: &str) -> Vec<String> {
    let mut blocks = Vec::new();
    let mut current: Option<String> = None;
    for line in markdown.lines() {
        match (&mut current, line.trim_start().strip_prefix("```")) {
            (None, Some(info)) => {
                let tags: Vec<&str> = info.split(',').map(str::trim).collect();
                if tags.first() == Some(&"sh") && tags.contains(&"walkthrough") {
                    current = Some(String::new());
                }
            }
            (Some(body), Some("")) => {
                blocks.push(std::mem::take(body));
                current = None;
            }
            (Some(body), _) => {
                body.push_str(line);
                body.push('\n');
            }
            (None, None) => {}
        }
    }
    assert!(current.is_none(), "unterminated walkthrough block");
    blocks
}

#[test]
fn extracts_only_walkthrough_blocks() {
    let md = "```sh\nnot me\n```\n```sh,walkthrough\necho a\n```\n```rust\nlet x = 1;\n```\n```sh,walkthrough\necho b\n```\n";
    assert_eq!(walkthrough_blocks(md), ["echo a\n", "echo b\n"]);
}

#[test]
fn keys_chapter_walkthrough_runs() {
    require_tool("openssl", &["version"]);
    require_tool("wg", &["--version"]);
    let chapter = Path::new(env!("CARGO_MANIFEST_DIR")).join(CHAPTER);
    let markdown = std::fs::read_to_string(&chapter).expect("read the keys chapter");
    let blocks = walkthrough_blocks(&markdown);
    assert!(
        blocks.len() >= 5,
        "found only {} walkthrough blocks",
        blocks.len()
    );
    let script = blocks.concat();
    for command in [
        "keygen",
        "pubkey",
        "derive",
        "fingerprint",
        "openssl",
        "wg ",
    ] {
        assert!(script.contains(command), "walkthrough lost `{command}`");
    }

    let home = run_script(CHAPTER, &script, &[]);
    // It made what it says it made.
    for file in [
        "alice.key",
        "bob.key",
        "alice.psk",
        "bob.psk",
        "carol.pem",
        "dave.pem",
    ] {
        assert!(
            home.path().join("sigil-keys").join(file).exists(),
            "{file} missing"
        );
    }
}

/// The walkthrough of the "Operating sigil" chapter: a server's key rotated
/// with restarts, clients pinned to the old key, the new one or both. Its
/// server listens on a free port (`SIGIL_PORT=0`) instead of 7070.
#[test]
fn operating_chapter_walkthrough_runs() {
    let chapter = Path::new(env!("CARGO_MANIFEST_DIR")).join(OPERATING);
    let markdown = std::fs::read_to_string(&chapter).expect("read the operating chapter");
    let script = walkthrough_blocks(&markdown).concat();
    for command in ["config check", "serve", "--server-key", "did not match"] {
        assert!(script.contains(command), "walkthrough lost `{command}`");
    }
    let home = run_script(OPERATING, &script, &[("SIGIL_PORT", "0")]);
    assert!(home.path().join("sigil-rotation/server-2.key").exists());
}

/// Runs `script` with bash in a new, empty home directory (its working
/// directory too) with `sigil` first on `PATH`; fails the test, with its
/// output, unless it succeeds. Returns the home directory.
fn run_script(chapter: &str, script: &str, env: &[(&str, &str)]) -> TempDir {
    let dir = TempDir::new().expect("temp dir");
    let bin_dir = sigil_path().parent().expect("bin dir").to_path_buf();
    let path = std::env::join_paths(std::iter::once(bin_dir).chain(std::env::split_paths(
        &std::env::var_os("PATH").unwrap_or_default(),
    )))
    .expect("PATH");
    let out = Command::new("bash")
        .args(["-euo", "pipefail", "-c", script])
        .current_dir(dir.path())
        .env_clear()
        .env("PATH", path)
        .env("HOME", dir.path())
        .envs(env.iter().copied())
        .output()
        .expect("run bash");
    assert!(
        out.status.success(),
        "the walkthrough in {chapter} failed ({:?})\n--- stdout\n{}\n--- stderr\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    dir
}

/// The `$ sigil --help` transcript in the introduction is what the binary prints.
#[test]
fn introduction_help_transcript_is_current() {
    let intro = Path::new(env!("CARGO_MANIFEST_DIR")).join("../book/src/introduction.md");
    let markdown = std::fs::read_to_string(intro).expect("read the introduction");
    let start = markdown
        .find("$ sigil --help\n")
        .expect("the introduction shows `$ sigil --help`");
    let rest = &markdown[start + "$ sigil --help\n".len()..];
    let shown = &rest[..rest.find("```").expect("end of the block")];
    let actual = common::ok(common::sigil().arg("--help"));
    assert_eq!(shown, actual, "update book/src/introduction.md");
}
