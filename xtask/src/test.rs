//! `cargo xtask test`: install what is missing, then check everything.
//!
//! The checks run in a fixed order and stop at the first failure; the tests
//! run last. The output ends with one line per step and then
//! `summary: N passed, M failed`, summed over every `test result:` line (of
//! cargo test and of the browser tests), node's TAP summary (of the
//! end-to-end test), the fuzz targets (one each: passed, or failed if it
//! crashed), the cargo-deny fixtures (one each: passed if cargo-deny judged
//! it as expected) and the files of the reproducibility check (one each:
//! passed if both builds made the same bytes).

use std::io::{self, IsTerminal};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use crate::args::Args;
use crate::browser;
use crate::buildtime;
use crate::child::run_counted;
use crate::ctx::{Ctx, fmt_duration, header};
use crate::deny;
use crate::fuzz;
use crate::release;
use crate::results::{self, Counts};
use crate::setup::{self, APT_PACKAGES, CargoTool, Locked, Need, SERVICE_PACKAGES, Setup, Version};
use crate::web;

const HELP: &str = "\
cargo xtask test: install what is missing, then check everything

usage: cargo xtask test [--no-install]

Installs (only when missing): rustup components rustfmt and clippy, the
wasm32-unknown-unknown target, the Debian packages the tests use (apt-get, as
root: wireguard-tools, openssl, chromium, chromium-driver, nginx, redis-server),
web/'s npm packages (npm ci; node and npm must be there), mdbook 0.5, cargo-audit,
cargo-deny 0.20.2, the wasm-bindgen CLI at the version in Cargo.lock, the
nightly toolchain (minimal profile) and cargo-fuzz. Then runs, stopping at the
first failure:

  fmt        cargo fmt --check
  clippy     cargo clippy, warnings denied
  doc        cargo doc, warnings denied
  wasm       sigil-core built for wasm32-unknown-unknown
  web        the browser client built into web/pkg; fails if the gzipped
             module is over its budget (100 KiB)
  book       mdbook build
  audit      cargo audit against ../shared/advisory-db
  deny       cargo deny --offline check against deny.toml (crates.io only,
             allowed licences, one version of each crypto crate, advisories);
             every package of Cargo.lock from crates.io; and cargo-deny must
             refuse each fixture of xtask/tests/fixtures/deny/ for the rule it
             breaks (each counts as one test); see `cargo xtask deny --help`
  buildtime  supply-chain/build-time.txt (build scripts and proc macros of
             the shipped crates) matches the dependency graph; see
             `cargo xtask buildtime --help`
  repro      the release build of the web package, here and from a copy of
             the sources in another folder, gives the same bytes (each file
             counts as one test); see `cargo xtask release --help`
  fuzz       every fuzz target of fuzz/ for 5 s from its seed corpus (cargo
             +nightly fuzz; each target counts as one test); see `cargo xtask
             fuzz --help`
  browser    sigil-wasm's tests in headless Chromium, against a demo server
  e2e        web/tests/e2e.mjs: the demo page as `sigil serve --demo` serves it;
             web/tests/client.mjs: identities, reconnecting to a restarted server
  test       cargo test --workspace

(web/BUILD.md has the same steps as commands to run by hand.)

options:
  --no-install   fail, listing what is missing, instead of installing it
  -h, --help     print this help
";

/// What `test` needs on the machine. New tools go here (see `setup.rs`).
fn needs(ctx: &Ctx) -> Result<Vec<Need>, String> {
    Ok(vec![
        Need::Component("rustfmt"),
        Need::Component("clippy"),
        Need::Target("wasm32-unknown-unknown"),
        // Before the slow cargo installs, so a non-root user learns at once.
        Need::Apt(APT_PACKAGES),
        Need::Apt(SERVICE_PACKAGES),
        Need::Npm("web"),
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
        deny::need(),
        setup::wasm_bindgen_cli(ctx)?,
    ]
    .into_iter()
    // The nightly toolchain and cargo-fuzz, for the fuzz step.
    .chain(fuzz::needs())
    .collect())
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
            ])))?;
            // The browser crate's wasm32 code and its browser tests are a
            // target of their own: lint them as built for the browser.
            ctx.run_live(header(ctx.cargo([
                "clippy",
                "-p",
                "sigil-wasm",
                "--target",
                "wasm32-unknown-unknown",
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
            ctx.run_live(header(cmd))
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
        name: "web",
        run: web::step,
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
        name: "deny",
        run: deny::step,
    },
    Step {
        name: "buildtime",
        run: buildtime::step,
    },
    Step {
        name: "repro",
        run: release::step,
    },
    Step {
        name: "fuzz",
        run: fuzz::step,
    },
    Step {
        name: "browser",
        run: browser::browser_step,
    },
    Step {
        name: "e2e",
        run: browser::e2e_step,
    },
    Step {
        name: "test",
        run: cargo_test,
    },
];

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
pub(crate) fn advisory_db(ctx: &Ctx) -> Result<PathBuf, String> {
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
    // No time limit: it builds the whole workspace first.
    run_counted(header(cmd), None, results::parse_line, counts)
}

/// How a step went, for the summary.
enum Outcome {
    Ok(Duration),
    Failed(Duration),
    Skipped,
}

/// Entry point of `cargo xtask test ARGS`.
pub(crate) fn main(args: &[String]) -> ExitCode {
    let args = match Args::parse(args, HELP, &["--no-install"], &[], 0) {
        Ok(args) => args,
        Err(code) => return code,
    };
    let install = !args.has("--no-install");
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
    let setup = needs(&ctx).and_then(|needs| Setup::new(&ctx, install).ensure(&needs));
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
            Outcome::Ok(d) => println!("  {name:<9} ok       {:>7}", fmt_duration(*d)),
            Outcome::Failed(d) => println!("  {name:<9} FAILED   {:>7}", fmt_duration(*d)),
            Outcome::Skipped => println!("  {name:<9} skipped"),
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
