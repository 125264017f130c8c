//! `cargo xtask demo`: build the browser client into `web/pkg`, build
//! `sigil`, and run `sigil serve --demo` in the foreground, serving the demo
//! page. The person at the keyboard uses their own browser, so Chromium is
//! not installed here.

use std::io::Write;
use std::os::unix::process::CommandExt;
use std::process::{ExitCode, Stdio};

use crate::args::Args;
use crate::ctx::{Ctx, header};
use crate::setup::{self, Need, Setup};
use crate::web;

const HELP: &str = "\
cargo xtask demo: build the browser demo and serve it

usage: cargo xtask demo [--port PORT]

Installs what is missing (the wasm32-unknown-unknown target, the wasm-bindgen
CLI at the version in Cargo.lock, web/'s npm packages), builds the browser
client into web/pkg and the `sigil` binary (debug: after `cargo xtask test`
it is already built), then runs

  target/debug/sigil serve --demo --host 127.0.0.1 --port 7070

in the foreground: open http://127.0.0.1:7070/ in a browser. Your sigil
configuration and SIGIL_* environment apply as always (--demo adds the demo
objects, and accepts any client key when no authorized_keys is configured).
Ctrl-C stops the server. If the port is taken, sigil says so and exits 1.

options:
  --port PORT   listen on PORT instead of 7070 (0: any free port)
  -h, --help    print this help
";

/// The port the README and the page's instructions name.
const DEFAULT_PORT: u16 = 7070;

/// Entry point of `cargo xtask demo ARGS`.
pub(crate) fn main(args: &[String]) -> ExitCode {
    let args = match Args::parse(args, HELP, &[], &["--port"], 0) {
        Ok(args) => args,
        Err(code) => return code,
    };
    let port = match args.value("--port") {
        None => DEFAULT_PORT,
        Some(v) => match v.parse::<u16>() {
            Ok(p) => p,
            Err(_) => {
                eprintln!("error: --port takes a port number (0 to 65535)\n\n{HELP}");
                return ExitCode::from(2);
            }
        },
    };
    match run(port) {
        // `run` only comes back on failure: the server replaces this process.
        Ok(never) => match never {},
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Sets up, builds, and becomes the server (`exec`), so that Ctrl-C reaches
/// it directly and its exit code is ours.
fn run(port: u16) -> Result<std::convert::Infallible, String> {
    let ctx = Ctx::new()?;
    let needs = [
        Need::Target("wasm32-unknown-unknown"),
        Need::Npm("web"),
        setup::wasm_bindgen_cli(&ctx)?,
    ];
    Setup::new(&ctx, true).ensure(&needs)?;

    let size = web::build(&ctx)?;
    println!("{}", size.line());
    if size.over_budget() {
        println!("warning: the gzipped module is over its budget (`cargo xtask test` fails)");
    }
    ctx.run_live(header(ctx.cargo(["build", "-p", "sigil-cli"])))?;

    let bin = ctx.target_dir().join("debug").join("sigil");
    let mut cmd = ctx.cmd(&bin);
    cmd.args(["serve", "--demo", "--host", "127.0.0.1", "--port"])
        .arg(port.to_string())
        .stdin(Stdio::inherit());
    let mut cmd = header(cmd);
    let page = if port == 0 {
        "the `web demo:` address printed below".to_owned()
    } else {
        format!("http://127.0.0.1:{port}/")
    };
    println!(
        "\nopen {page} in a browser; the server's public key is printed below; Ctrl-C stops\n"
    );
    // Best effort: the banner is only a note, and exec follows.
    let _ = std::io::stdout().flush();
    let e = cmd.exec();
    Err(format!("cannot start {}: {e}", bin.display()))
}
