//! `cargo xtask bench [--quick]`: builds the benchmark and the `sigil`
//! binary in release mode and runs the benchmark, which starts `sigil
//! serve` as its own process and writes `target/bench/latest.json`.
//! Speed is measured here, as ratios within one run, never by timed
//! assertions in tests. `--quick`: one repetition and 1,000 sessions.

use std::process::ExitCode;

use crate::ctx::Ctx;

pub(crate) fn main(args: &[String]) -> ExitCode {
    let quick = match args {
        [] => false,
        [q] if q == "--quick" => true,
        [arg, ..] => {
            eprintln!("error: `cargo xtask bench` takes only --quick (got `{arg}`)");
            return ExitCode::from(2);
        }
    };
    let ctx = match Ctx::new() {
        Ok(ctx) => ctx,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let built = ctx
        .cargo(["build", "--release", "--quiet", "-p", "sigil-cli"])
        .status();
    if !matches!(built, Ok(s) if s.success()) {
        eprintln!("error: cannot build the sigil binary (cargo build --release -p sigil-cli)");
        return ExitCode::FAILURE;
    }
    let target = ctx.target_dir();
    let mut cmd = ctx.cargo([
        "run",
        "--release",
        "--quiet",
        "-p",
        "sigil-tests",
        "--example",
        "bench",
        "--",
    ]);
    if quick {
        cmd.arg("--quick");
    }
    let status = cmd
        .env("SIGIL_BIN", target.join("release").join("sigil"))
        .env("SIGIL_BENCH_DIR", target.join("bench"))
        .status();
    match status {
        Ok(s) if s.success() => crate::browser_bench::main(&[]),
        Ok(s) => {
            eprintln!("error: the benchmark failed ({s})");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("error: cannot run cargo: {e}");
            ExitCode::FAILURE
        }
    }
}
