//! The shell transcripts of the book's "Calling from Rust and from the
//! shell" chapter (`book/src/calling.md`) are what `sigil` prints.

mod common;

use std::path::Path;

use assert_cmd::Command;
use common::serve::{Serve, WAIT, dir};
use common::sigil_path;

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
