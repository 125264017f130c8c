//! `cargo xtask test`: install what is missing, then check everything.
//!
//! The checks run in a fixed order and stop at the first failure; the tests
//! run last. The output ends with one line per step and then
//! `summary: N passed, M failed`, summed over every `test result:` line.

use std::io::{self, IsTerminal, Read, Write};
use std::path::PathBuf;
use std::process::{ExitCode, Stdio};
use std::time::{Duration, Instant};

use crate::ctx::{Ctx, describe, fmt_duration};
use crate::results::{self, Counts};
use crate::setup::{APT_PACKAGES, CargoTool, Locked, Need, Setup, Version};

const HELP: &str = "\
cargo xtask test: install what is missing, then check everything

usage: cargo xtask test [--no-install]

Installs (only when missing): rustup components rustfmt and clippy, the
wasm32-unknown-unknown target, mdbook 0.5, cargo-audit, and the Debian
packages the tests use (apt-get, as root). Then runs, stopping at the first
failure: fmt, clippy, doc, wasm, book, audit, test.

options:
  --no-install   fail, listing what is missing, instead of installing it
  -h, --help     print this help
";

/// What `test` needs on the machine. New tools go here (see `setup.rs`);
/// the wasm-bindgen CLI and `web/`'s npm packages will, once checks use them.
fn needs() -> Vec<Need> {
    vec![
        Need::Component("rustfmt"),
        Need::Component("clippy"),
        Need::Target("wasm32-unknown-unknown"),
        // Before the slow cargo installs, so a non-root user learns at once.
        Need::Apt(APT_PACKAGES),
        Need::Cargo(CargoTool {
            name: "mdbook",
            probe: &["mdbook", "--version"],
            krate: "mdbook",
            version: Version::Series("0.5"),
            locked: Locked::Prefer,
        }),
        Need::Cargo(CargoTool {
            name: "cargo-audit",
            probe: &["cargo", "audit", "--version"],
            krate: "cargo-audit",
            version: Version::Any,
            // Without --locked, the install picks a crate that needs a newer rustc.
            locked: Locked::Yes,
        }),
    ]
}

/// A check: its name (the `==> name` header) and what it runs.
struct Step {
    name: &'static str,
    run: fn(&Ctx, &mut Counts) -> Result<(), String>,
}

/// The checks, in order. `test` must stay last: it is the longest, and its
/// counts make the summary.
const STEPS: &[Step] = &[
    Step {
        name: "fmt",
        run: |ctx, _| ctx.run_live(header(ctx.cargo(["fmt", "--all", "--check"]))),
    },
    Step {
        name: "clippy",
        run: |ctx, _| {
            ctx.run_live(header(ctx.cargo([
                "clippy",
                "--workspace",
                "--all-targets",
                "--",
                "-D",
                "warnings",
            ])))
        },
    },
    Step {
        name: "doc",
        run: |ctx, _| {
            let mut cmd = ctx.cargo(["doc", "--workspace", "--no-deps"]);
            cmd.env("RUSTDOCFLAGS", "-Dwarnings");
            println!("$ RUSTDOCFLAGS=-Dwarnings {}", describe(&cmd));
            ctx.run_live(cmd)
        },
    },
    Step {
        name: "wasm",
        run: |ctx, _| {
            ctx.run_live(header(ctx.cargo([
                "build",
                "-p",
                "sigil-core",
                "--target",
                "wasm32-unknown-unknown",
            ])))
        },
    },
    Step {
        name: "book",
        run: |ctx, _| {
            let mut cmd = ctx.cmd("mdbook");
            cmd.args(["build", "book"]);
            ctx.run_live(header(cmd))
        },
    },
    Step {
        name: "audit",
        run: audit,
    },
    Step {
        name: "test",
        run: cargo_test,
    },
];

/// Prints `$ command` and hands the command back.
fn header(cmd: std::process::Command) -> std::process::Command {
    println!("$ {}", describe(&cmd));
    cmd
}

/// `cargo audit` against the advisory database in `shared/` beside the
/// checkout. It is a snapshot (not a git clone) and never fetched, so it is
/// allowed to be old (`--stale`).
fn audit(ctx: &Ctx, _: &mut Counts) -> Result<(), String> {
    let db = advisory_db(ctx)?;
    let mut cmd = ctx.cargo(["audit", "--no-fetch", "--stale", "--db"]);
    cmd.arg(&db);
    ctx.run_live(header(cmd))
}

/// `../shared/advisory-db` from the workspace root.
fn advisory_db(ctx: &Ctx) -> Result<PathBuf, String> {
    let db = ctx.root.join("..").join("shared").join("advisory-db");
    db.canonicalize().map_err(|e| {
        format!(
            "no advisory database at {} ({e}); it is the RustSec snapshot kept in \
             the `shared` folder beside the checkout",
            db.display()
        )
    })
}

/// `cargo test --workspace`, streamed live while its `test result:` lines are
/// summed into `counts`.
fn cargo_test(ctx: &Ctx, counts: &mut Counts) -> Result<(), String> {
    // --no-fail-fast: run every test binary, so the failure count is complete.
    let mut cmd = ctx.cargo(["test", "--workspace", "--no-fail-fast"]);
    if io::stdout().is_terminal() {
        // libtest sees a pipe, not our terminal; keep its colours anyway.
        cmd.args(["--", "--color", "always"]);
    }
    let mut cmd = header(cmd);
    let mut child = cmd
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", describe(&cmd)))?;
    let mut pipe = child.stdout.take().ok_or("no stdout pipe")?;

    // Pass bytes through as they come (a test that runs long still shows
    // `test name ... `), and parse whole lines on the side.
    let mut out = io::stdout();
    let mut buf = [0u8; 8192];
    let mut line = Vec::new();
    loop {
        let n = match pipe.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(format!("reading cargo test's output: {e}")),
        };
        // If our own stdout is gone there is no one to show it to; keep reading
        // so the child is not blocked.
        let _ = out.write_all(&buf[..n]).and_then(|()| out.flush());
        for &b in &buf[..n] {
            if b == b'\n' {
                *counts += results::parse_line(&String::from_utf8_lossy(&line)).unwrap_or_default();
                line.clear();
            } else {
                line.push(b);
            }
        }
    }
    *counts += results::parse_line(&String::from_utf8_lossy(&line)).unwrap_or_default();

    let status = child
        .wait()
        .map_err(|e| format!("waiting for cargo test: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("`{}` failed ({status})", describe(&cmd)))
    }
}

/// How a step went, for the summary.
enum Outcome {
    Ok(Duration),
    Failed(Duration),
    Skipped,
}

/// Entry point of `cargo xtask test ARGS`.
pub(crate) fn main(args: &[String]) -> ExitCode {
    let mut install = true;
    for arg in args {
        match arg.as_str() {
            "--no-install" => install = false,
            "-h" | "--help" => {
                print!("{HELP}");
                return ExitCode::SUCCESS;
            }
            other => {
                eprintln!("error: unknown option `{other}`\n\n{HELP}");
                return ExitCode::from(2);
            }
        }
    }
    let ctx = match Ctx::new() {
        Ok(ctx) => ctx,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };

    let mut report: Vec<(&str, Outcome)> = Vec::new();
    let mut counts = Counts::default();
    let mut failed = false;

    println!("==> setup");
    let started = Instant::now();
    let setup = Setup::new(&ctx, install).ensure(&needs());
    report.push(("setup", finish("setup", started, setup, &mut failed)));

    for step in STEPS {
        if failed {
            report.push((step.name, Outcome::Skipped));
            continue;
        }
        println!("==> {}", step.name);
        let started = Instant::now();
        let result = (step.run)(&ctx, &mut counts);
        report.push((step.name, finish(step.name, started, result, &mut failed)));
    }

    println!("==> summary");
    for (name, outcome) in &report {
        match outcome {
            Outcome::Ok(d) => println!("  {name:<8} ok       {:>7}", fmt_duration(*d)),
            Outcome::Failed(d) => println!("  {name:<8} FAILED   {:>7}", fmt_duration(*d)),
            Outcome::Skipped => println!("  {name:<8} skipped"),
        }
    }
    if counts.ignored > 0 {
        println!("ignored: {}", counts.ignored);
    }
    println!(
        "summary: {} passed, {} failed",
        counts.passed, counts.failed
    );
    if failed || counts.failed > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

/// Turns a step's result into its outcome, reporting a failure at once.
fn finish(name: &str, started: Instant, result: Result<(), String>, failed: &mut bool) -> Outcome {
    let took = started.elapsed();
    match result {
        Ok(()) => Outcome::Ok(took),
        Err(e) => {
            eprintln!("error: step `{name}` failed: {e}");
            *failed = true;
            Outcome::Failed(took)
        }
    }
}
