//! Building the browser client into `web/pkg`, as `web/BUILD.md` step 1 does
//! by hand: the `wasm-release` build of sigil-wasm, wasm-bindgen, then npm's
//! wasm-opt (binaryen 132; Debian's older binaryen makes modules Chromium
//! refuses). Used by the `web` step of `cargo xtask test` and by
//! `cargo xtask demo`.

use std::fs;
use std::path::Path;

use crate::ctx::{Ctx, describe, header};
use crate::results::Counts;

/// The budget for the gzipped module, in bytes (150 KiB).
pub(crate) const WASM_BUDGET: u64 = 153_600;

/// Where the page's module goes, relative to the workspace root.
const PKG: &str = "web/pkg";

/// The size of the built `sigil_wasm_bg.wasm`.
pub(crate) struct WasmSize {
    pub(crate) bytes: u64,
    pub(crate) gzipped: u64,
}

impl WasmSize {
    /// `sigil_wasm_bg.wasm: N bytes, M bytes gzipped (budget 153600)`.
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
    ctx.run_live(header(ctx.cargo([
        "build",
        "--target",
        "wasm32-unknown-unknown",
        "--profile",
        "wasm-release",
        "-p",
        "sigil-wasm",
    ])))?;

    let module = ctx
        .target_dir()
        .join("wasm32-unknown-unknown")
        .join("wasm-release")
        .join("sigil_wasm.wasm");
    let mut cmd = ctx.cmd("wasm-bindgen");
    cmd.args([
        "--target",
        "web",
        "--out-dir",
        PKG,
        "--remove-name-section",
        "--remove-producers-section",
    ])
    .arg(&module);
    ctx.run_live(header(cmd))?;

    let wasm = format!("{PKG}/sigil_wasm_bg.wasm");
    let wasm_opt = ctx.root.join("web/node_modules/.bin/wasm-opt");
    if !wasm_opt.is_file() {
        return Err(format!(
            "{} is missing: npm's binaryen is installed by `npm ci` in web/",
            wasm_opt.display()
        ));
    }
    let mut cmd = ctx.cmd(&wasm_opt);
    cmd.args(["-Oz", &wasm, "-o", &wasm]);
    ctx.run_live(header(cmd))?;

    measure(ctx, &ctx.root.join(&wasm))
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
