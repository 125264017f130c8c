//! Building the browser client into `web/pkg`, as `web/BUILD.md` step 1 does
//! by hand: the `wasm-release` build of sigil-wasm, wasm-bindgen, then npm's
//! wasm-opt (binaryen 132; Debian's older binaryen makes modules Chromium
//! refuses), and short import and export names (`minify.rs`). Used by the `web` step of `cargo xtask test`, by
//! `cargo xtask demo`, and (into another folder, with the release flags) by
//! `cargo xtask release` and the `repro` step.

use std::ffi::OsString;
use std::fs;
use std::path::Path;

use crate::ctx::{Ctx, describe, header};
use crate::minify;
use crate::results::Counts;

/// The budget for the gzipped module, in bytes (100 KiB).
pub(crate) const WASM_BUDGET: u64 = 102_400;

/// rustc flags of the module's build: sha2's compact SHA-256 (a loop, not
/// the unrolled 8 KB one; 1.5 KB less gzipped, and hashing is not where a
/// browser client spends its time).
const WASM_RUSTFLAGS: &[&str] = &["--cfg", "sha2_backend_soft=\"compact\""];

/// Where the page's module goes, relative to the workspace root.
const PKG: &str = "web/pkg";

/// The size of the built `sigil_wasm_bg.wasm`.
pub(crate) struct WasmSize {
    pub(crate) bytes: u64,
    pub(crate) gzipped: u64,
}

impl WasmSize {
    /// `sigil_wasm_bg.wasm: N bytes, M bytes gzipped (budget 102400)`.
    pub(crate) fn line(&self) -> String {
        format!(
            "sigil_wasm_bg.wasm: {} bytes, {} bytes gzipped (budget {WASM_BUDGET})",
            self.bytes, self.gzipped
        )
    }

    pub(crate) fn over_budget(&self) -> bool {
        self.gzipped > WASM_BUDGET
    }
}

/// Builds `web/pkg` (`sigil_wasm.js`, `sigil_wasm_bg.wasm`, `sigil_wasm.d.ts`)
/// and measures the module. Needs the wasm target, the wasm-bindgen CLI and
/// `web/node_modules`.
pub(crate) fn build(ctx: &Ctx) -> Result<WasmSize, String> {
    let out_dir = ctx.root.join(PKG);
    build_pkg(
        ctx,
        &PkgBuild {
            root: &ctx.root,
            target_dir: None,
            out_dir: &out_dir,
            env: &[],
            locked: false,
        },
    )?;
    measure(ctx, &out_dir.join("sigil_wasm_bg.wasm"))
}

/// How to build the browser package: from which workspace, into which folder.
pub(crate) struct PkgBuild<'a> {
    /// The workspace to build: the checkout, or a copy of it elsewhere.
    pub(crate) root: &'a Path,
    /// cargo's target folder (`CARGO_TARGET_DIR`); `None` for the default.
    pub(crate) target_dir: Option<&'a Path>,
    /// Where wasm-bindgen and wasm-opt write the package.
    pub(crate) out_dir: &'a Path,
    /// More environment for the cargo build (`CARGO_ENCODED_RUSTFLAGS`, …).
    pub(crate) env: &'a [(&'a str, OsString)],
    /// Build with `--locked`.
    pub(crate) locked: bool,
}

/// The `wasm-release` build of sigil-wasm, then wasm-bindgen and npm's
/// wasm-opt (always the checkout's `web/node_modules`), into `out_dir`.
pub(crate) fn build_pkg(ctx: &Ctx, b: &PkgBuild) -> Result<(), String> {
    let mut cmd = ctx.cargo([
        "build",
        "--target",
        "wasm32-unknown-unknown",
        "--profile",
        "wasm-release",
        "-p",
        "sigil-wasm",
    ]);
    if b.locked {
        cmd.arg("--locked");
    }
    cmd.current_dir(b.root);
    if let Some(dir) = b.target_dir {
        cmd.env("CARGO_TARGET_DIR", dir);
    }
    let mut flags = OsString::new();
    for (key, value) in b.env {
        if *key == "CARGO_ENCODED_RUSTFLAGS" {
            flags.push(value);
        } else {
            cmd.env(key, value);
        }
    }
    for flag in WASM_RUSTFLAGS {
        if !flags.is_empty() {
            flags.push("\u{1f}");
        }
        flags.push(flag);
    }
    cmd.env("CARGO_ENCODED_RUSTFLAGS", flags);
    ctx.run_live(header(cmd))?;

    let target_dir = b
        .target_dir
        .map(Path::to_path_buf)
        .unwrap_or_else(|| ctx.target_dir());
    let module = target_dir
        .join("wasm32-unknown-unknown")
        .join("wasm-release")
        .join("sigil_wasm.wasm");
    let mut cmd = ctx.cmd("wasm-bindgen");
    cmd.args([
        "--target",
        "web",
        "--remove-name-section",
        "--remove-producers-section",
        "--out-dir",
    ])
    .arg(b.out_dir)
    .arg(&module);
    ctx.run_live(header(cmd))?;

    let wasm = b.out_dir.join("sigil_wasm_bg.wasm");
    let wasm_opt = ctx.root.join("web/node_modules/.bin/wasm-opt");
    if !wasm_opt.is_file() {
        return Err(format!(
            "{} is missing: npm's binaryen is installed by `npm ci` in web/",
            wasm_opt.display()
        ));
    }
    let mut cmd = ctx.cmd(&wasm_opt);
    // --converge: -Oz again until nothing changes (0.3 KB gzipped less).
    cmd.args(["-Oz", "--converge"])
        .arg(&wasm)
        .arg("-o")
        .arg(&wasm);
    ctx.run_live(header(cmd))?;
    minify::minify(ctx, &wasm_opt, b.out_dir)
}

/// The size of `wasm`, plain and as `gzip -9` makes it.
fn measure(ctx: &Ctx, wasm: &Path) -> Result<WasmSize, String> {
    let bytes = fs::metadata(wasm)
        .map_err(|e| format!("cannot read {}: {e}", wasm.display()))?
        .len();
    let mut cmd = ctx.cmd("gzip");
    cmd.args(["-9", "-c"]).arg(wasm);
    let out = cmd
        .output()
        .map_err(|e| format!("cannot start gzip (to measure the module): {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "`{}` failed ({}): {}",
            describe(&cmd),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(WasmSize {
        bytes,
        gzipped: out.stdout.len() as u64,
    })
}

/// The `web` step of `cargo xtask test`: build, report the size, and fail
/// over budget.
pub(crate) fn step(ctx: &Ctx, _: &mut Counts) -> Result<(), String> {
    let size = build(ctx)?;
    println!("{}", size.line());
    if size.over_budget() {
        return Err(format!(
            "the gzipped module is {} bytes over its budget of {WASM_BUDGET}",
            size.gzipped - WASM_BUDGET
        ));
    }
    Ok(())
}
