//! The browser checks of `cargo xtask test`, as `web/BUILD.md` steps 2 and 3
//! run them by hand, each against a `sigil serve --demo` of its own that is
//! stopped when the step ends (also when it fails):
//!
//! - `browser`: the wasm-bindgen-test browser tests of sigil-wasm (sigil-core's
//!   vectors and protocol tests, and the client's API with connections to the
//!   server) in headless Chromium through chromedriver;
//! - `e2e`: `web/tests/e2e.mjs`, the demo page as the server serves it,
//!   driven by playwright-core; and `web/tests/client.mjs`, the client
//!   against servers it starts, stops and restarts itself (identities a
//!   server authorises, reconnecting).

use std::fs;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::thread;
use std::time::{Duration, Instant, SystemTime};

use crate::child::{Guard, run_counted};
use crate::ctx::{Ctx, fmt_duration, header, tail};
use crate::results::{self, Counts};

/// How long `sigil serve` may take to print its `url:` and `public key:`.
const SERVER_START: Duration = Duration::from_secs(60);

/// How long the browser tests may run once built (34 core tests and the
/// client's tests take well under a minute here).
const BROWSER_TESTS: Duration = Duration::from_secs(10 * 60);

/// How long the end-to-end test may run (about 10 s here).
const E2E_TEST: Duration = Duration::from_secs(5 * 60);

/// chromedriver from Debian's chromium-driver; `crates/sigil-wasm/webdriver.json`
/// names Debian's `/usr/bin/chromium` beside it.
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// Where the end-to-end test puts its screenshots, relative to the root.
const E2E_ARTIFACTS: &str = "web/build/e2e";

/// A running `target/debug/sigil serve --demo`, stopped when dropped.
struct DemoServer {
    /// Stops the server when the step is over.
    _guard: Guard,
    /// Its `url:` line: `ws://127.0.0.1:PORT/sigil`.
    url: String,
    /// Its `public key:` line.
    key: String,
    /// Its `web demo:` line, printed when it serves the built `web/`.
    page: Option<String>,
}

/// Starts `sigil serve --demo --no-env` (with `config`, a TOML text, if
/// given) on a free loopback port and waits (bounded) for its `url:` and
/// `public key:` lines. Its stderr (the log) goes to
/// `target/xtask/LOG_NAME.log`.
fn start_server(ctx: &Ctx, log_name: &str, config: Option<&str>) -> Result<DemoServer, String> {
    let bin = ctx.target_dir().join("debug").join("sigil");
    if !bin.is_file() {
        return Err(format!("{} is not built", bin.display()));
    }
    let (log, file) = ctx.log_file(log_name)?;
    let mut cmd = ctx.cmd(&bin);
    cmd.args([
        "serve",
        "--demo",
        "--no-env",
        "--host",
        "127.0.0.1",
        "--port",
        "0",
    ]);
    if let Some(text) = config {
        let path = ctx
            .target_dir()
            .join("xtask")
            .join(format!("{log_name}.toml"));
        std::fs::write(&path, text).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        cmd.arg("--config").arg(path);
    }
    cmd.stdout(Stdio::piped()).stderr(file);
    let mut cmd = header(cmd);
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", bin.display()))?;
    let stdout = child.stdout.take().ok_or("no stdout pipe")?;
    let mut guard = Guard::new(child);

    // Read its lines on a thread that keeps draining the pipe afterwards.
    let (tx, lines) = mpsc::channel();
    thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            // Once the server is up no one listens; keep reading anyway.
            let _ = tx.send(line);
        }
    });

    let deadline = Instant::now() + SERVER_START;
    let (mut url, mut key, mut page) = (None, None, None);
    let mut seen = Vec::new();
    while url.is_none() || key.is_none() {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = match lines.recv_timeout(left) {
            Ok(line) => line,
            Err(RecvTimeoutError::Disconnected) => {
                let status = guard
                    .wait_until(Instant::now() + Duration::from_secs(5))
                    .map_or_else(|| "its output closed".to_owned(), |s| s.to_string());
                return Err(server_failure(
                    &format!("`sigil serve` stopped before it was ready ({status})"),
                    &seen,
                    &log,
                ));
            }
            Err(RecvTimeoutError::Timeout) => {
                return Err(server_failure(
                    &format!(
                        "`sigil serve` printed no `url:` and `public key:` within {}",
                        fmt_duration(SERVER_START)
                    ),
                    &seen,
                    &log,
                ));
            }
        };
        println!("    | {line}");
        if let Some(v) = line.strip_prefix("url: ") {
            url = Some(v.trim().to_owned());
        } else if let Some(v) = line.strip_prefix("public key: ") {
            key = Some(v.trim().to_owned());
        } else if let Some(v) = line.strip_prefix("web demo: ") {
            page = Some(v.trim().to_owned());
        }
        seen.push(line);
    }
    Ok(DemoServer {
        _guard: guard,
        url: url.unwrap_or_default(),
        key: key.unwrap_or_default(),
        page,
    })
}

fn server_failure(what: &str, stdout: &[String], log: &Path) -> String {
    format!(
        "{what}\n  stdout:\n{}\n  stderr ({}):\n{}",
        stdout
            .iter()
            .map(|l| format!("    | {l}"))
            .collect::<Vec<_>>()
            .join("\n"),
        log.display(),
        tail(log, 20)
    )
}

/// `cargo build -p sigil-cli`: the `sigil` binary the steps start.
fn build_sigil(ctx: &Ctx) -> Result<(), String> {
    ctx.run_live(header(ctx.cargo(["build", "-p", "sigil-cli"])))
}

/// The `browser` step: wasm-bindgen-test in headless Chromium, with a demo
/// server named at build time (`SIGIL_TEST_URL`, `SIGIL_TEST_SERVER_KEY`) for
/// the connection tests.
pub(crate) fn browser_step(ctx: &Ctx, counts: &mut Counts) -> Result<(), String> {
    if !Path::new(CHROMEDRIVER).is_file() {
        return Err(format!(
            "{CHROMEDRIVER} is missing (Debian package chromium-driver)"
        ));
    }
    build_sigil(ctx)?;
    // The tests' page comes from wasm-bindgen-test-runner's own server, on
    // another port: another origin, which the server refuses by default.
    let server = start_server(ctx, "browser-server", Some("allowed_origins = [\"*\"]\n"))?;
    let tests = |extra: &[&str]| {
        let mut cmd = ctx.cargo([
            "test",
            "-p",
            "sigil-wasm",
            "--target",
            "wasm32-unknown-unknown",
            "--no-fail-fast",
        ]);
        cmd.args(extra)
            .env("SIGIL_TEST_URL", &server.url)
            .env("SIGIL_TEST_SERVER_KEY", &server.key)
            .env("CHROMEDRIVER", CHROMEDRIVER)
            .env(
                "CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUNNER",
                "wasm-bindgen-test-runner",
            );
        header(cmd)
    };
    // Build first (as long as it takes), then run within a time limit.
    ctx.run_live(tests(&["--no-run"]))?;
    run_counted(tests(&[]), Some(BROWSER_TESTS), results::parse_line, counts)
}

/// The `e2e` step: `node --test web/tests/e2e.mjs web/tests/client.mjs`;
/// e2e.mjs against a demo server that must serve the built page itself
/// (`web demo:` in its startup lines, and `SIGIL_E2E_REQUIRE_SERVED_PAGE=1` so
/// the test does not fall back to a static server of its own), client.mjs
/// against the servers it starts.
pub(crate) fn e2e_step(ctx: &Ctx, counts: &mut Counts) -> Result<(), String> {
    build_sigil(ctx)?;
    let server = start_server(ctx, "e2e-server", None)?;
    let Some(page) = &server.page else {
        return Err(
            "`sigil serve --demo` printed no `web demo:` line: it does not serve the \
             page (is web/pkg built? the `web` step builds it)"
                .to_owned(),
        );
    };
    println!("page served by sigil serve: {page}");

    let artifacts = ctx.root.join(E2E_ARTIFACTS);
    let started = SystemTime::now();
    let mut cmd = ctx.cmd("node");
    cmd.args([
        "--test",
        "--test-reporter=tap",
        "web/tests/e2e.mjs",
        "web/tests/client.mjs",
    ])
    .env("SIGIL_E2E_WS_URL", &server.url)
    .env("SIGIL_E2E_SERVER_KEY", &server.key)
    .env("SIGIL_E2E_REQUIRE_SERVED_PAGE", "1")
    .env("SIGIL_E2E_ARTIFACTS", &artifacts);
    let result = run_counted(header(cmd), Some(E2E_TEST), results::parse_tap_line, counts);
    drop(server);

    let shots = screenshots(&artifacts, started);
    if shots.is_empty() {
        println!("screenshots: none in {}", artifacts.display());
    } else {
        println!("screenshots:");
        for shot in shots {
            println!("  {}", shot.display());
        }
    }
    result
}

/// The `.png` files in `dir` written since `since`, sorted.
fn screenshots(dir: &Path, since: SystemTime) -> Vec<PathBuf> {
    let Ok(entries) = fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut shots: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .filter(|e| {
            e.metadata()
                .and_then(|m| m.modified())
                .is_ok_and(|t| t >= since)
        })
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "png"))
        .collect();
    shots.sort();
    shots
}
