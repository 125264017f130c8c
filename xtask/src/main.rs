//! `cargo xtask`: the one place that knows how to set up and run everything in
//! sigil.
//!
//! `cargo xtask test` installs whatever the checks need and is missing (rustup
//! components and targets, cargo-installed tools, Debian packages), then runs
//! every check in order and ends with a one-line summary. `cargo xtask demo`
//! builds the browser demo and serves it. It uses only std.
//!
//! Layout: `main.rs` parses the command line and dispatches; `ctx.rs` starts
//! processes; `child.rs` streams their output and stops them; `setup.rs`
//! knows what can be installed and how; `test.rs` holds the checks, with the
//! web build in `web.rs` and the browser tests in `browser.rs`; `results.rs`
//! reads test runners' summary lines; `demo.rs`, `install.rs`, `bench.rs`
//! and `fuzz.rs` are the other commands (`fuzz.rs` also gives `test` its fuzz step).
//! The supply-chain commands, each also a step of `test`: `deny.rs` (the
//! cargo-deny policy), `buildtime.rs` (the list of build-time code),
//! `release.rs` (reproducible release artefacts) and `sbom.rs`; they share
//! `workspace.rs` (the shipped crates, `cargo metadata`, copies of the
//! sources) and `json.rs` (a small JSON reader).

mod args;
mod bench;
mod browser;
mod browser_bench;
mod buildtime;
mod child;
mod ctx;
mod demo;
mod deny;
mod fuzz;
mod install;
mod json;
mod minify;
mod release;
mod results;
mod sbom;
mod setup;
mod test;
mod web;
mod workspace;

use std::process::ExitCode;

const HELP: &str = "\
cargo xtask: sigil's developer tasks

usage: cargo xtask <command> [options]

commands:
  test       install what is missing, then check everything (fmt, clippy,
             doc, wasm build, web build and size, book, audit, supply-chain
             policy, build-time code list, reproducible wasm, a short fuzz
             pass, browser tests, end-to-end test, tests); see
             `cargo xtask test --help`
  demo       build the browser demo and serve it on http://127.0.0.1:7070/
             (Ctrl-C stops); see `cargo xtask demo --help`
  install    install the `sigil` binary with the web demo page built in
             (cargo install); see `cargo xtask install --help`
  bench      build in release mode and measure handshakes, frames and RPC
             calls/s (ratios against baselines in the same run), then
             the browser client in headless Chromium
  bench-browser  only the browser benchmark (init, identity, connect, calls/s)
  fuzz       run the fuzz targets of fuzz/ (cargo-fuzz, nightly), each for
             60 s or --seconds N; see `cargo xtask fuzz --help`
  deny       check the dependency graph against deny.toml (cargo-deny,
             offline); see `cargo xtask deny --help`
  buildtime  write supply-chain/build-time.txt, the build scripts and proc
             macros of the shipped crates; see `cargo xtask buildtime --help`
  sbom       write CycloneDX SBOMs of the `sigil` binary and the wasm package
             to target/sbom/; see `cargo xtask sbom --help`
  release    build the `sigil` binary and the web package reproducibly and
             print their SHA-256; see `cargo xtask release --help`
  help       print this help
";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (command, rest) = match args.split_first() {
        Some((command, rest)) => (command.as_str(), rest),
        None => ("help", &[][..]),
    };
    match command {
        "test" => test::main(rest),
        "demo" => demo::main(rest),
        "install" => install::main(rest),
        "bench" => bench::main(rest),
        "bench-browser" => browser_bench::main(rest),
        "fuzz" => fuzz::main(rest),
        "deny" => deny::main(rest),
        "buildtime" => buildtime::main(rest),
        "sbom" => sbom::main(rest),
        "release" => release::main(rest),
        "help" | "-h" | "--help" => {
            print!("{HELP}");
            ExitCode::SUCCESS
        }
        other => {
            eprintln!("error: unknown command `{other}`\n\n{HELP}");
            ExitCode::from(2)
        }
    }
}
