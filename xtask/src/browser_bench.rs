//! The browser benchmark, run by `cargo xtask bench` after the native one
//! (and alone by `cargo xtask bench-browser`): `web/bench/run.mjs` in
//! headless Chromium against a release `sigil serve --demo` on loopback.
//! It reports the module's size, `init()` (streaming compile), identity
//! creation, connect, and calls/s one at a time and with 64 in flight; the
//! figures also go to `target/xtask/browser-bench.json`.

use std::process::ExitCode;

use crate::ctx::{Ctx, header};
use crate::setup::{self, APT_PACKAGES, Need, Setup};
use crate::web;

/// Entry point of `cargo xtask bench-browser` (no arguments).
pub(crate) fn main(args: &[String]) -> ExitCode {
    if let Some(arg) = args.first() {
        eprintln!("error: `cargo xtask bench-browser` takes no arguments (got `{arg}`)");
        return ExitCode::from(2);
    }
    let result = Ctx::new().and_then(|ctx| run(&ctx));
    crate::ctx::exit_code(result.map_err(|e| format!("the browser benchmark failed: {e}")))
}

/// Installs what is missing, builds `web/pkg` and the release `sigil`, and
/// runs the benchmark page.
pub(crate) fn run(ctx: &Ctx) -> Result<(), String> {
    let needs = [
        Need::Target("wasm32-unknown-unknown"),
        Need::Apt(APT_PACKAGES),
        Need::Npm("web"),
        setup::wasm_bindgen_cli(ctx)?,
    ];
    Setup::new(ctx, true).ensure(&needs)?;
    let size = web::build(ctx)?;
    ctx.run_live(header(ctx.cargo(["build", "--release", "-p", "sigil-cli"])))?;
    let json = ctx.target_dir().join("xtask").join("browser-bench.json");
    if let Some(dir) = json.parent() {
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    }
    println!("{}", size.line());
    let mut cmd = ctx.cmd("node");
    cmd.arg("web/bench/run.mjs")
        .env("SIGIL_BIN", ctx.target_dir().join("release").join("sigil"))
        .env("SIGIL_BENCH_JSON", &json);
    ctx.run_live(header(cmd))
}
