//! `cargo xtask cluster`: the cluster of the tests, for a person to try:
//! Redis, two `sigil serve --demo` instances sharing it as their replay
//! store, and nginx balancing WebSocket upgrades between them, on loopback
//! ports chosen at run time (tests/examples/cluster.rs does the work, with
//! the same code as cli/tests/cluster.rs).

use std::io::Write;
use std::os::unix::process::CommandExt;
use std::process::{ExitCode, Stdio};

use crate::args::Args;
use crate::ctx::{Ctx, header};
use crate::setup::{Need, SERVICE_PACKAGES, Setup};

const HELP: &str = "\
cargo xtask cluster: start a local sigil cluster behind nginx

usage: cargo xtask cluster [--instances N]

Installs redis-server and nginx when missing (Debian packages, as root),
builds the `sigil` binary and tests/examples/cluster.rs (debug), then starts

  redis-server         the instances' shared replay store
  sigil serve --demo   N instances (2 by default), named a, b, ...:
                       one server key, any client key, instance.name
  nginx                balancing WebSocket upgrades between them

each on a free port of 127.0.0.1, with their files in a temporary folder.
It prints the URL to connect to, the server's public key and a `sigil call`
to try; Ctrl-C stops every process and removes the folder.

options:
  --instances N   how many instances (1 to 8)
  -h, --help      print this help
";

/// Entry point of `cargo xtask cluster ARGS`.
pub(crate) fn main(args: &[String]) -> ExitCode {
    let args = match Args::parse(args, HELP, &[], &["--instances"], 0) {
        Ok(args) => args,
        Err(code) => return code,
    };
    let instances = args.value("--instances").unwrap_or("2").to_owned();
    match run(&instances) {
        // `run` only comes back on failure: the cluster replaces this process.
        Ok(never) => match never {},
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Sets up, builds, and becomes the cluster's runner (`exec`), so that
/// Ctrl-C reaches it directly.
fn run(instances: &str) -> Result<std::convert::Infallible, String> {
    let ctx = Ctx::new()?;
    Setup::new(&ctx, true).ensure(&[Need::Apt(SERVICE_PACKAGES)])?;
    ctx.run_live(header(ctx.cargo(["build", "-p", "sigil-cli"])))?;
    ctx.run_live(header(ctx.cargo([
        "build",
        "-p",
        "sigil-tests",
        "--example",
        "cluster",
    ])))?;
    let debug = ctx.target_dir().join("debug");
    let runner = debug.join("examples").join("cluster");
    let mut cmd = ctx.cmd(&runner);
    cmd.arg("--sigil")
        .arg(debug.join("sigil"))
        .args(["--instances", instances])
        .stdin(Stdio::inherit());
    let mut cmd = header(cmd);
    // Best effort: the banner is only a note, and exec follows.
    let _ = std::io::stdout().flush();
    let e = cmd.exec();
    Err(format!("cannot start {}: {e}", runner.display()))
}
