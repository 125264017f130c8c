//! `cargo xtask sbom`: CycloneDX bills of materials for the `sigil` binary
//! and the wasm package, made by cargo-cyclonedx (the CycloneDX project's
//! own generator for cargo).
//!
//! cargo-cyclonedx writes its files beside each package's `Cargo.toml`, so
//! it runs on a copy of the sources under `target/xtask/sbom/` and the
//! checkout is never written to. The copy's folder is replaced by `/sigil`
//! in the output, and `SOURCE_DATE_EPOCH` (the last commit's time) sets its
//! timestamp, so the same commit gives the same SBOM.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use crate::args::Args;
use crate::ctx::{Ctx, header};
use crate::json::Json;
use crate::release;
use crate::setup::{CargoTool, Locked, Need, Setup, Version};
use crate::workspace;

const HELP: &str = "\
cargo xtask sbom: write CycloneDX SBOMs of the `sigil` binary and the wasm package

usage: cargo xtask sbom [--out DIR] [--no-install]

Installs cargo-cyclonedx 0.5.9 (cargo install --locked) when missing, then
writes (CycloneDX 1.5, JSON):

  DIR/sigil.cdx.json        the `sigil` binary (crate sigil-cli), every target
  DIR/sigil-wasm.cdx.json   the browser package (sigil-wasm), wasm32

DIR is target/sbom/ unless --out is given. Each lists every crate of the
build, build-time ones included, with version, licence and package URL.
`cargo xtask release` writes them beside the release artefacts.

options:
  --out DIR      write into DIR
  --no-install   fail, listing what is missing, instead of installing it
  -h, --help     print this help
";

/// The cargo-cyclonedx release these tasks are written for.
const CARGO_CYCLONEDX_VERSION: &str = "0.5.9";

/// cargo-cyclonedx, at the pinned version.
pub(crate) fn need() -> Need {
    Need::Cargo(CargoTool {
        name: "cargo-cyclonedx",
        probe: &["cargo", "cyclonedx", "--version"],
        krate: "cargo-cyclonedx",
        version: Version::Exact(CARGO_CYCLONEDX_VERSION.to_string()),
        locked: Locked::Yes,
    })
}

/// One SBOM: which crate, for which target, under which name.
struct Bom {
    krate: &'static str,
    target: &'static str,
    file: &'static str,
}

const BOMS: &[Bom] = &[
    Bom {
        krate: "sigil-cli",
        target: "all",
        file: "sigil.cdx.json",
    },
    Bom {
        krate: "sigil-wasm",
        target: "wasm32-unknown-unknown",
        file: "sigil-wasm.cdx.json",
    },
];

/// Entry point of `cargo xtask sbom ARGS`.
pub(crate) fn main(args: &[String]) -> ExitCode {
    let args = match Args::parse(args, HELP, &["--no-install"], &["--out"], 0) {
        Ok(args) => args,
        Err(code) => return code,
    };
    let install = !args.has("--no-install");
    let out = args.value("--out").map(PathBuf::from);
    let result = Ctx::new().and_then(|ctx| {
        Setup::new(&ctx, install).ensure(&[need()])?;
        // Relative to where the command was started, as a user expects.
        let out = match out {
            Some(dir) => std::env::current_dir()
                .map_err(|e| format!("cannot tell the current folder: {e}"))?
                .join(dir),
            None => ctx.target_dir().join("sbom"),
        };
        let epoch = release::source_date_epoch(&ctx)?;
        write(&ctx, &out, &epoch)
    });
    crate::ctx::exit_code(result)
}

/// Writes the SBOMs of [`BOMS`] into `out`, with `epoch` as their time.
pub(crate) fn write(ctx: &Ctx, out: &Path, epoch: &str) -> Result<(), String> {
    let copy = ctx.target_dir().join("xtask").join("sbom").join("src");
    workspace::copy_sources(ctx, &copy)?;
    let members = workspace::packages(&workspace::metadata(ctx, &copy, true)?)?;
    fs::create_dir_all(out).map_err(|e| format!("cannot create {}: {e}", out.display()))?;
    for bom in BOMS {
        let dir = &members
            .iter()
            .find(|m| m.name == bom.krate)
            .ok_or_else(|| format!("no workspace member {}", bom.krate))?
            .dir;
        remove_boms(dir)?;
        let mut cmd = ctx.cargo([
            "cyclonedx",
            "--format",
            "json",
            "--spec-version",
            "1.5",
            "--describe",
            "binaries",
            "--target",
            bom.target,
        ]);
        // It writes an SBOM for every workspace member; we keep one.
        cmd.current_dir(&copy).env("SOURCE_DATE_EPOCH", epoch);
        ctx.run_live(header(cmd))?;
        let written = boms_in(dir)?;
        let [file] = written.as_slice() else {
            return Err(format!(
                "expected one SBOM in {}, found {}",
                dir.display(),
                written.len()
            ));
        };
        let text =
            fs::read_to_string(file).map_err(|e| format!("cannot read {}: {e}", file.display()))?;
        let text = text.replace(&format!("file://{}", copy.display()), "file:///sigil");
        let components = Json::parse(&text)
            .map_err(|e| format!("{}: {e}", file.display()))?
            .get("components")
            .map_or(0, |c| c.items().len());
        let dest = out.join(bom.file);
        fs::write(&dest, text).map_err(|e| format!("cannot write {}: {e}", dest.display()))?;
        println!(
            "{}: {} ({components} components)",
            bom.krate,
            dest.display()
        );
    }
    Ok(())
}

/// The `*.cdx.json` files in `dir`.
fn boms_in(dir: &Path) -> Result<Vec<PathBuf>, String> {
    let entries = fs::read_dir(dir).map_err(|e| format!("cannot list {}: {e}", dir.display()))?;
    Ok(entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.to_string_lossy().ends_with(".cdx.json"))
        .collect())
}

fn remove_boms(dir: &Path) -> Result<(), String> {
    for file in boms_in(dir)? {
        fs::remove_file(&file).map_err(|e| format!("cannot remove {}: {e}", file.display()))?;
    }
    Ok(())
}
