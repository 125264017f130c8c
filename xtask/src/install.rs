//! `cargo xtask install`: build the browser demo page, then `cargo install`
//! the `sigil` binary with the page built in (feature `embed-web`), so that
//! the installed `sigil serve --demo` serves it from any folder.

use std::path::PathBuf;
use std::process::ExitCode;

use crate::args::Args;
use crate::ctx::{Ctx, cargo_home, header};
use crate::setup::{self, Need, Setup};
use crate::web;

const HELP: &str = "\
cargo xtask install: install the `sigil` binary, with the web demo page built in

usage: cargo xtask install [--no-web] [--root DIR]

Installs what building the page needs and is missing (the
wasm32-unknown-unknown target, the wasm-bindgen CLI at the version in
Cargo.lock, web/'s npm packages), builds the browser client into web/pkg,
then runs

  cargo install --locked --path cli --features embed-web

which builds `sigil` in release mode and copies it to ~/.cargo/bin (or
$CARGO_HOME/bin, or DIR/bin with --root). The installed `sigil serve --demo`
then serves the page wherever it runs. Plain `cargo install --path cli` works
too, without the page (sigil serve --demo then says where to put one).

options:
  --no-web      install without the page: no wasm build, nothing but cargo
  --root DIR    install into DIR/bin instead of cargo's bin folder
  -h, --help    print this help
";

/// Entry point of `cargo xtask install ARGS`.
pub(crate) fn main(args: &[String]) -> ExitCode {
    let args = match Args::parse(args, HELP, &["--no-web"], &["--root"], 0) {
        Ok(args) => args,
        Err(code) => return code,
    };
    let result = run(
        !args.has("--no-web"),
        args.value("--root").map(PathBuf::from),
    );
    crate::ctx::exit_code(result)
}

fn run(with_web: bool, root: Option<PathBuf>) -> Result<(), String> {
    let ctx = Ctx::new()?;
    let mut cmd = ctx.cargo(["install", "--locked", "--path", "cli"]);
    if with_web {
        let needs = [
            Need::Target("wasm32-unknown-unknown"),
            Need::Npm("web"),
            setup::wasm_bindgen_cli(&ctx)?,
        ];
        Setup::new(&ctx, true).ensure(&needs)?;
        println!("{}", web::build(&ctx)?.line());
        cmd.args(["--features", "embed-web"]);
    }
    if let Some(root) = &root {
        cmd.arg("--root").arg(root);
    }
    ctx.run_live(header(cmd))?;

    let bin_dir = match root {
        Some(root) => root.join("bin"),
        None => cargo_home()
            .ok_or("cannot tell where cargo installed it: set CARGO_HOME or HOME")?
            .join("bin"),
    };
    let on_path = std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|p| p == bin_dir));
    println!("installed {}", bin_dir.join("sigil").display());
    if !on_path {
        println!(
            "{} is not on your PATH: add it (export PATH=\"{}:$PATH\") to run `sigil`",
            bin_dir.display(),
            bin_dir.display()
        );
    }
    Ok(())
}
