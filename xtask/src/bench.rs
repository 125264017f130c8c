//! `cargo xtask bench`: builds the benchmark in release mode and runs it.
//! Speed is measured here, as ratios within one run, never by timed
//! assertions in tests.

use std::process::ExitCode;

use crate::ctx::Ctx;

pub(crate) fn main(args: &[String]) -> ExitCode {
    if let Some(arg) = args.first() {
        eprintln!("error: `cargo xtask bench` takes no arguments (got `{arg}`)");
        return ExitCode::from(2);
    }
    let ctx = match Ctx::new() {
        Ok(ctx) => ctx,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let status = ctx
        .cargo([
            "run",
            "--release",
            "--quiet",
            "-p",
            "sigil-tests",
            "--example",
            "bench",
        ])
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
