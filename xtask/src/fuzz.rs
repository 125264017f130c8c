//! `cargo xtask fuzz [TARGET] [--seconds N]`: run the fuzz targets of
//! `fuzz/` (cargo-fuzz, nightly toolchain), and the short pass that
//! `cargo xtask test` makes of every target.
//!
//! Each target runs from a fresh copy of its seed corpus
//! (`fuzz/corpus/TARGET/`, committed) under `target/xtask/fuzz/`, so the
//! committed corpus never grows; libFuzzer's output goes to
//! `target/xtask/fuzz-TARGET.log`. A crash leaves its input in
//! `fuzz/artifacts/TARGET/` (ignored by git), and the run fails.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::{Duration, Instant};

use crate::args::Args;
use crate::child::Guard;
use crate::ctx::{Ctx, describe, fmt_duration, header, tail};
use crate::results::Counts;
use crate::setup::{CargoTool, Locked, Need, Setup, Version};

const HELP: &str = "\
cargo xtask fuzz: run the fuzz targets of fuzz/

usage: cargo xtask fuzz [TARGET] [--seconds N] [--no-install]

Installs (only when missing): the nightly toolchain (rustup toolchain install
nightly --profile minimal) and cargo-fuzz (cargo install cargo-fuzz --locked).
Then builds the targets (cargo +nightly fuzz build) and runs TARGET, or every
target one after the other, for N seconds each (default 60), each from a
fresh copy of its seed corpus fuzz/corpus/TARGET/ (the committed corpus does
not grow). Prints each target's executions and result; exits 1 if any target
crashed (its input is in fuzz/artifacts/TARGET/, libFuzzer's output in
target/xtask/fuzz-TARGET.log).

targets: the files of fuzz/fuzz_targets/ (server_hello, client_reply,
frame_open, rpc_request, rpc_response, rpc_session, config_toml,
key_text, authorized_keys)

options:
  --seconds N    run each target for N seconds (default 60)
  --no-install   fail, listing what is missing, instead of installing it
  -h, --help     print this help
";

/// Seconds per target of `cargo xtask fuzz` without `--seconds`.
const DEFAULT_SECONDS: u64 = 60;

/// Seconds per target of the short pass in `cargo xtask test`.
pub(crate) const TEST_SECONDS: u64 = 5;

/// Time a run may take beyond its `-max_total_time` (start-up, reading the
/// corpus, writing a crash) before it is stopped.
const GRACE: Duration = Duration::from_secs(120);

/// The toolchain cargo-fuzz needs (for `-Zsanitizer` and coverage flags).
const TOOLCHAIN: &str = "nightly";

/// What fuzzing needs on the machine (also part of `cargo xtask test`'s needs).
pub(crate) fn needs() -> Vec<Need> {
    vec![
        Need::Toolchain(TOOLCHAIN),
        Need::Cargo(CargoTool {
            name: "cargo-fuzz",
            probe: &["cargo", "fuzz", "--version"],
            krate: "cargo-fuzz",
            version: Version::Any,
            locked: Locked::Yes,
        }),
    ]
}

/// How one target's run went.
struct Run {
    target: String,
    /// libFuzzer's count of executed inputs, if it printed one.
    executions: Option<u64>,
    took: Duration,
    /// `Err` says why it failed (a crash, or the run itself failed).
    result: Result<(), String>,
}

impl Run {
    /// One line for the summary: `server_hello  ok  123456 executions in 60.0s`.
    fn line(&self) -> String {
        let execs = match self.executions {
            Some(n) => {
                let secs = self.took.as_secs_f64().max(0.001);
                format!("{n} executions ({:.0}/s)", n as f64 / secs)
            }
            None => "executions unknown".to_string(),
        };
        let status = if self.result.is_ok() { "ok" } else { "FAILED" };
        format!(
            "  {:<16} {status:<7} {execs} in {}",
            self.target,
            fmt_duration(self.took)
        )
    }
}

/// Entry point of `cargo xtask fuzz ARGS`.
pub(crate) fn main(args: &[String]) -> ExitCode {
    let args = match Args::parse(args, HELP, &["--no-install"], &["--seconds"], 1) {
        Ok(args) => args,
        Err(code) => return code,
    };
    let install = !args.has("--no-install");
    let target = args.positional().first().cloned();
    let seconds = match args.value("--seconds") {
        None => DEFAULT_SECONDS,
        Some(v) => match v.parse::<u64>().ok().filter(|&n| n > 0) {
            Some(n) => n,
            None => {
                eprintln!("error: --seconds needs a whole number of seconds above 0\n\n{HELP}");
                return ExitCode::from(2);
            }
        },
    };

    let ctx = match Ctx::new() {
        Ok(ctx) => ctx,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let all = match targets(&ctx) {
        Ok(all) => all,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let chosen = match target {
        None => all,
        Some(t) if all.contains(&t) => vec![t],
        Some(t) => {
            eprintln!(
                "error: no fuzz target `{t}` (fuzz/fuzz_targets/ has: {})",
                all.join(", ")
            );
            return ExitCode::from(2);
        }
    };

    println!("==> setup");
    if let Err(e) = Setup::new(&ctx, install).ensure(&needs()) {
        eprintln!("error: {e}");
        return ExitCode::FAILURE;
    }
    println!("==> build");
    if let Err(e) = build(&ctx) {
        eprintln!("error: {e}");
        return ExitCode::FAILURE;
    }
    let runs = run_all(&ctx, &chosen, seconds);
    println!("==> summary");
    for run in &runs {
        println!("{}", run.line());
    }
    let failed = runs.iter().filter(|r| r.result.is_err()).count();
    if failed == 0 {
        println!("all {} fuzz targets ran without a crash", runs.len());
        ExitCode::SUCCESS
    } else {
        eprintln!("error: {failed} of {} fuzz targets failed", runs.len());
        ExitCode::FAILURE
    }
}

/// The `fuzz` step of `cargo xtask test`: every target for a few seconds.
/// Each target counts as one test in the summary (passed, or failed if it
/// crashed); the step fails if any did.
pub(crate) fn step(ctx: &Ctx, counts: &mut Counts) -> Result<(), String> {
    build(ctx)?;
    let runs = run_all(ctx, &targets(ctx)?, TEST_SECONDS);
    let mut failed = Vec::new();
    for run in &runs {
        println!("{}", run.line());
        if run.result.is_ok() {
            counts.passed += 1;
        } else {
            counts.failed += 1;
            failed.push(run.target.as_str());
        }
    }
    if failed.is_empty() {
        Ok(())
    } else {
        Err(format!("fuzz targets failed: {}", failed.join(", ")))
    }
}

/// The fuzz targets: the `.rs` files of `fuzz/fuzz_targets/`, sorted.
fn targets(ctx: &Ctx) -> Result<Vec<String>, String> {
    let dir = fuzz_dir(ctx).join("fuzz_targets");
    let entries = fs::read_dir(&dir).map_err(|e| format!("cannot list {}: {e}", dir.display()))?;
    let mut names: Vec<String> = entries
        .filter_map(|entry| {
            let name = entry.ok()?.file_name().into_string().ok()?;
            name.strip_suffix(".rs").map(str::to_string)
        })
        .collect();
    names.sort();
    if names.is_empty() {
        return Err(format!("no fuzz targets in {}", dir.display()));
    }
    Ok(names)
}

fn fuzz_dir(ctx: &Ctx) -> PathBuf {
    ctx.root.join("fuzz")
}

/// `cargo +nightly fuzz …`: through rustup's `cargo` on `PATH` (the cargo
/// that runs us is the default toolchain's own binary, which does not take
/// `+toolchain`).
fn cargo_fuzz(ctx: &Ctx) -> Command {
    let mut cmd = ctx.cmd("cargo");
    cmd.arg(format!("+{TOOLCHAIN}")).arg("fuzz");
    cmd
}

/// Builds every target (sanitizer and coverage flags are cargo-fuzz's
/// defaults, the same that `cargo fuzz run` uses, so the runs do not
/// rebuild).
fn build(ctx: &Ctx) -> Result<(), String> {
    let mut cmd = cargo_fuzz(ctx);
    cmd.args(["build", "--fuzz-dir"]).arg(fuzz_dir(ctx));
    ctx.run_live(header(cmd))
}

/// Runs `targets` one after the other, `seconds` each, printing a line as
/// each one ends.
fn run_all(ctx: &Ctx, targets: &[String], seconds: u64) -> Vec<Run> {
    targets
        .iter()
        .map(|target| {
            let run = run_target(ctx, target, seconds);
            println!("{}", run.line());
            if let Err(e) = &run.result {
                eprintln!("error: fuzz target `{target}`: {e}");
            }
            run
        })
        .collect()
}

/// Runs one target for `seconds` from a fresh copy of its seed corpus.
fn run_target(ctx: &Ctx, target: &str, seconds: u64) -> Run {
    let started = Instant::now();
    let mut executions = None;
    let result = (|| {
        let corpus = ctx.target_dir().join("xtask").join("fuzz").join(target);
        fresh_copy(&fuzz_dir(ctx).join("corpus").join(target), &corpus)?;
        let (log, file) = ctx.log_file(&format!("fuzz-{target}"))?;
        let file2 = file
            .try_clone()
            .map_err(|e| format!("cannot open {}: {e}", log.display()))?;
        let mut cmd = cargo_fuzz(ctx);
        cmd.args(["run", "--fuzz-dir"])
            .arg(fuzz_dir(ctx))
            .arg(target)
            .arg(&corpus)
            .arg("--")
            .arg(format!("-max_total_time={seconds}"))
            // One slow input is a finding too (a hang), not a stuck run.
            .arg("-timeout=10")
            .arg("-print_final_stats=1");
        println!("$ {}  (output: {})", describe(&cmd), log.display());
        let child = cmd
            .stdout(file)
            .stderr(file2)
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", describe(&cmd)))?;
        let mut guard = Guard::new(child);
        let deadline = Instant::now() + Duration::from_secs(seconds) + GRACE;
        let status = guard.wait_until(deadline);
        let text = fs::read_to_string(&log).unwrap_or_default();
        executions = executed_units(&text);
        match status {
            None => Err(format!(
                "still running {} after its {seconds} s; stopped it. Its last lines:\n{}",
                fmt_duration(GRACE),
                tail(&log, 20)
            )),
            Some(status) if status.success() => Ok(()),
            Some(status) => Err(format!(
                "{} ({status}){}\nits last lines:\n{}\nfull log: {}",
                crash_kind(&text),
                artifact(&text)
                    .map(|a| format!("; input written to {a}"))
                    .unwrap_or_default(),
                last_lines(&text, 30),
                log.display()
            )),
        }
    })();
    Run {
        target: target.to_string(),
        executions,
        took: started.elapsed(),
        result,
    }
}

/// Replaces `to` with a copy of the files in `from` (an empty folder if
/// `from` does not exist).
fn fresh_copy(from: &Path, to: &Path) -> Result<(), String> {
    if to.exists() {
        fs::remove_dir_all(to).map_err(|e| format!("cannot remove {}: {e}", to.display()))?;
    }
    fs::create_dir_all(to).map_err(|e| format!("cannot create {}: {e}", to.display()))?;
    let Ok(entries) = fs::read_dir(from) else {
        return Ok(());
    };
    for entry in entries {
        let entry = entry.map_err(|e| format!("cannot list {}: {e}", from.display()))?;
        let path = entry.path();
        if path.is_file() {
            fs::copy(&path, to.join(entry.file_name()))
                .map_err(|e| format!("cannot copy {}: {e}", path.display()))?;
        }
    }
    Ok(())
}

/// The number of inputs libFuzzer ran: its final statistics
/// (`stat::number_of_executed_units: N`), or else its `Done N runs` line.
fn executed_units(log: &str) -> Option<u64> {
    let number = |s: &str| s.trim().parse::<u64>().ok();
    log.lines()
        .rev()
        .find_map(|l| {
            l.trim()
                .strip_prefix("stat::number_of_executed_units:")
                .and_then(number)
        })
        .or_else(|| {
            log.lines().rev().find_map(|l| {
                let rest = l.trim().strip_prefix("Done ")?;
                number(rest.split_whitespace().next()?)
            })
        })
}

/// What went wrong, from libFuzzer's and the sanitizer's output: the panic
/// message if a target panicked, else the `SUMMARY:` line.
fn crash_kind(log: &str) -> String {
    let lines: Vec<&str> = log.lines().collect();
    if let Some(i) = lines
        .iter()
        .position(|l| l.starts_with("thread '") && l.contains("panicked at"))
    {
        let message = lines.get(i + 1).copied().unwrap_or_default();
        return format!("panicked: {} {message}", lines[i].trim());
    }
    lines
        .iter()
        .find_map(|l| l.trim().strip_prefix("SUMMARY: "))
        .map_or_else(|| "failed".to_string(), |s| format!("crashed: {s}"))
}

/// The last `n` lines of libFuzzer's output, indented, without what
/// cargo-fuzz prints after it (`Error: Fuzz target exited …` and cargo-fuzz's
/// own backtrace).
fn last_lines(log: &str, n: usize) -> String {
    let lines: Vec<&str> = log
        .lines()
        .take_while(|l| !l.starts_with("Error: Fuzz target exited"))
        .collect();
    lines[lines.len().saturating_sub(n)..]
        .iter()
        .map(|l| format!("    | {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Where libFuzzer wrote the crashing input (`Test unit written to PATH`).
fn artifact(log: &str) -> Option<String> {
    log.lines().rev().find_map(|l| {
        let (_, path) = l.split_once("Test unit written to ")?;
        Some(path.trim().to_string())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const DONE: &str = "\
#524288\tpulse  cov: 1201 ft: 4022 corp: 310/20Kb lim: 4096 exec/s: 8738 rss: 402Mb
#530412\tDONE   cov: 1201 ft: 4022 corp: 310/20Kb lim: 4096 exec/s: 8695 rss: 402Mb
Done 530412 runs in 61 second(s)
stat::number_of_executed_units: 530412
stat::average_exec_per_sec:     8695
stat::new_units_added:          12
";

    const CRASH: &str = "\
#1234\tNEW    cov: 88 ft: 90 corp: 5/40b lim: 4 exec/s: 0 rss: 30Mb
thread '<unnamed>' panicked at fuzz_targets/rpc_request.rs:20:13:
a written request parses: Error(\"EOF\")
note: run with `RUST_BACKTRACE=1` environment variable to display a backtrace
==4242== ERROR: libFuzzer: deadly signal
SUMMARY: libFuzzer: deadly signal
MS: 1 ChangeByte-; base unit: 0000
artifact_prefix='/w/fuzz/artifacts/rpc_request/'; Test unit written to /w/fuzz/artifacts/rpc_request/crash-abc
Base64: e30=
stat::number_of_executed_units: 1240
";

    #[test]
    fn executions_from_the_final_stats() {
        assert_eq!(executed_units(DONE), Some(530_412));
        assert_eq!(executed_units(CRASH), Some(1240));
    }

    #[test]
    fn executions_from_the_done_line() {
        assert_eq!(executed_units("Done 77 runs in 5 second(s)\n"), Some(77));
    }

    #[test]
    fn fail_no_executions() {
        assert_eq!(executed_units("error: could not compile\n"), None);
    }

    #[test]
    fn crash_report() {
        assert_eq!(
            crash_kind(CRASH),
            "panicked: thread '<unnamed>' panicked at fuzz_targets/rpc_request.rs:20:13: \
             a written request parses: Error(\"EOF\")"
        );
        assert_eq!(
            artifact(CRASH).as_deref(),
            Some("/w/fuzz/artifacts/rpc_request/crash-abc")
        );
        assert_eq!(
            crash_kind(
                "==1== ERROR: AddressSanitizer: heap-buffer-overflow\nSUMMARY: AddressSanitizer: heap-buffer-overflow x.rs:3\n"
            ),
            "crashed: AddressSanitizer: heap-buffer-overflow x.rs:3"
        );
        assert_eq!(artifact(DONE), None);
    }

    #[test]
    fn last_lines_stop_before_cargo_fuzz_says_more() {
        let log = "a\nb\nc\nError: Fuzz target exited with exit status: 77\n\nStack backtrace:\n   0: x\n";
        assert_eq!(last_lines(log, 2), "    | b\n    | c");
        assert_eq!(last_lines("one\n", 5), "    | one");
    }

    #[test]
    fn the_committed_targets() {
        let ctx = Ctx::new().expect("the workspace is found");
        let names = targets(&ctx).expect("fuzz/fuzz_targets is listed");
        for t in [
            "authorized_keys",
            "client_reply",
            "config_toml",
            "frame_open",
            "key_text",
            "rpc_request",
            "rpc_response",
            "rpc_session",
            "server_hello",
        ] {
            assert!(names.iter().any(|n| n == t), "{t} in {names:?}");
            let seeds = ctx.root.join("fuzz").join("corpus").join(t);
            let count = fs::read_dir(&seeds).map_or(0, |d| d.count());
            assert!(count > 0, "no seeds in {}", seeds.display());
        }
    }
}
