//! `cargo xtask release`: the `sigil` binary and the web package, built so
//! that anyone can rebuild them byte for byte, with their SHA-256; and the
//! `repro` step of `cargo xtask test`, which builds the wasm module in two
//! folders and compares the bytes.
//!
//! What makes the build reproducible: `Cargo.lock` (`--locked`), the
//! toolchain of `rust-toolchain.toml`, a fixed `SOURCE_DATE_EPOCH` (the last
//! commit's time), and `--remap-path-prefix` for the folders a build happens
//! in (the checkout, cargo's home and the target folder), so no path of the
//! builder's machine is compiled in. Those flags differ from a normal
//! build's, so release builds have a target folder of their own
//! (`target/release-repro/`) and never invalidate `target/debug` or the
//! `web` step's build.

use std::ffi::OsString;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use crate::args::Args;
use crate::ctx::{self, Ctx, describe, header};
use crate::results::Counts;
use crate::sbom;
use crate::setup::{self, Need, Setup};
use crate::web::{self, PkgBuild};
use crate::workspace;

const HELP: &str = "\
cargo xtask release: build the release artefacts reproducibly, with SHA-256

usage: cargo xtask release [--twice] [--no-install]

Installs what is missing (the wasm32-unknown-unknown target, the wasm-bindgen
CLI at the version in Cargo.lock, web/'s npm packages, cargo-cyclonedx), then
builds, with --locked, SOURCE_DATE_EPOCH set to the last commit's time (or
the SOURCE_DATE_EPOCH you give) and the build folders remapped
(--remap-path-prefix), in the target folder target/release-repro/:

  target/release-repro/dist/sigil             the `sigil` binary (release)
  target/release-repro/dist/pkg/              the web package (wasm-bindgen,
                                              wasm-opt -Oz, short names)
  target/release-repro/dist/SHA256SUMS        their SHA-256 (sha256sum -c)
  target/release-repro/dist/sbom/             CycloneDX SBOMs (cargo xtask sbom)

and prints the SHA-256. To verify a release: check out its commit, run this,
and compare SHA256SUMS with the published one.

options:
  --twice        also build everything from a copy of the sources in another
                 folder (target/release-repro/elsewhere/…) and compare the bytes
  --no-install   fail, listing what is missing, instead of installing it
  -h, --help     print this help
";

/// The folder of release builds, in the target folder.
const REPRO: &str = "release-repro";

/// Where the step and `--twice` put the copy of the sources, in the release
/// target folder: a folder name of another length, deeper, so no offset or
/// path can match by chance. The copy keeps its own target folder between
/// runs (and the copied files keep their times), so a later run rebuilds
/// only what changed.
const ELSEWHERE: &str = "elsewhere/another-checkout";

/// The copy of the sources for a second build.
fn elsewhere(ctx: &Ctx) -> PathBuf {
    ctx.target_dir().join(REPRO).join(ELSEWHERE)
}

/// What every release build needs.
pub(crate) fn needs(ctx: &Ctx) -> Result<Vec<Need>, String> {
    Ok(vec![
        Need::Target("wasm32-unknown-unknown"),
        setup::wasm_bindgen_cli(ctx)?,
        Need::Npm("web"),
    ])
}

/// Entry point of `cargo xtask release ARGS`.
pub(crate) fn main(args: &[String]) -> ExitCode {
    let args = match Args::parse(args, HELP, &["--no-install", "--twice"], &[], 0) {
        Ok(args) => args,
        Err(code) => return code,
    };
    let (install, twice) = (!args.has("--no-install"), args.has("--twice"));
    let result = Ctx::new().and_then(|ctx| {
        let mut all = needs(&ctx)?;
        all.push(sbom::need());
        Setup::new(&ctx, install).ensure(&all)?;
        release(&ctx, twice)
    });
    crate::ctx::exit_code(result)
}

fn release(ctx: &Ctx, twice: bool) -> Result<(), String> {
    let epoch = source_date_epoch(ctx)?;
    let here = Build::new(&ctx.root, ctx.target_dir().join(REPRO), &epoch)?;
    let dist = here.target_dir.join("dist");
    fresh_dir(&dist)?;
    println!("==> binary");
    here.binary(ctx, &dist)?;
    println!("==> web package");
    here.web(ctx, &dist.join("pkg"))?;
    let sums = sha256sums(ctx, &dist)?;
    fs::write(dist.join("SHA256SUMS"), &sums)
        .map_err(|e| format!("cannot write {}: {e}", dist.join("SHA256SUMS").display()))?;
    for warning in here.leaks(&dist)? {
        eprintln!("warning: {warning}");
    }
    println!("==> sbom");
    sbom::write(ctx, &dist.join("sbom"), &epoch)?;

    println!(
        "==> SHA-256 (SOURCE_DATE_EPOCH={epoch}; {})",
        dist.join("SHA256SUMS").display()
    );
    print!("{sums}");

    if twice {
        println!("==> the same build from a copy of the sources elsewhere");
        let copy = elsewhere(ctx);
        workspace::copy_sources(ctx, &copy)?;
        let there = Build::new(&copy, copy.join("target").join(REPRO), &epoch)?;
        let other = there.target_dir.join("dist");
        fresh_dir(&other)?;
        there.binary(ctx, &other)?;
        there.web(ctx, &other.join("pkg"))?;
        let other_sums = sha256sums(ctx, &other)?;
        println!("{}:", other.display());
        print!("{other_sums}");
        let differ = differing(&sums, &other_sums);
        if !differ.is_empty() {
            return Err(format!(
                "the two builds differ: {} (compare {} and {})",
                differ.join(", "),
                dist.display(),
                other.display()
            ));
        }
        println!("the two builds are identical");
    }
    Ok(())
}

/// The `repro` step of `cargo xtask test`: the release build of the wasm
/// module (and its JS glue) here and from a copy of the sources in another
/// folder, compared byte for byte. Each file compared counts as one test.
pub(crate) fn step(ctx: &Ctx, counts: &mut Counts) -> Result<(), String> {
    let epoch = source_date_epoch(ctx)?;
    let work = ctx.target_dir().join("xtask").join("repro");
    let here = Build::new(&ctx.root, ctx.target_dir().join(REPRO), &epoch)?;
    let copy = elsewhere(ctx);
    workspace::copy_sources(ctx, &copy)?;
    let there = Build::new(&copy, copy.join("target").join(REPRO), &epoch)?;

    let (a, b) = (work.join("pkg-here"), work.join("pkg-elsewhere"));
    for dir in [&a, &b] {
        fresh_dir(dir)?;
    }
    here.web(ctx, &a)?;
    there.web(ctx, &b)?;

    let (sums_a, sums_b) = (sha256sums(ctx, &a)?, sha256sums(ctx, &b)?);
    let differ = differing(&sums_a, &sums_b);
    for line in sums_a.lines() {
        let name = line.split_whitespace().nth(1).unwrap_or(line);
        if differ.iter().any(|d| d == name) {
            println!("  {name:<28} DIFFERS");
            counts.failed += 1;
        } else {
            println!("  {line}  (both)");
            counts.passed += 1;
        }
    }
    if differ.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "the wasm package built in {} and in {} differs: {}\n{}\n{}",
            ctx.root.display(),
            copy.display(),
            differ.join(", "),
            sums_a.trim_end(),
            sums_b.trim_end()
        ))
    }
}

/// `SOURCE_DATE_EPOCH` if it is set, else the last commit's time.
pub(crate) fn source_date_epoch(ctx: &Ctx) -> Result<String, String> {
    if let Some(v) = std::env::var_os("SOURCE_DATE_EPOCH") {
        let v = v.to_string_lossy().trim().to_string();
        if !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()) {
            return Ok(v);
        }
        return Err(format!(
            "SOURCE_DATE_EPOCH={v:?} is not a number of seconds"
        ));
    }
    let mut cmd = ctx.cmd("git");
    cmd.args(["log", "-1", "--format=%ct"]);
    let line = describe(&cmd);
    ctx.output(cmd)
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
        .ok_or_else(|| {
            format!("`{line}` gave no commit time; set SOURCE_DATE_EPOCH (seconds since 1970)")
        })
}

/// One reproducible build: the workspace at `root`, into `target_dir`.
struct Build {
    root: PathBuf,
    target_dir: PathBuf,
    env: Vec<(&'static str, OsString)>,
}

impl Build {
    fn new(root: &Path, target_dir: PathBuf, epoch: &str) -> Result<Build, String> {
        let home =
            ctx::cargo_home().ok_or("cannot tell where cargo's home is (no CARGO_HOME or HOME)")?;
        let flags = rustflags(root, &home, &target_dir);
        Ok(Build {
            root: root.to_path_buf(),
            env: vec![
                ("CARGO_ENCODED_RUSTFLAGS", flags.into()),
                ("SOURCE_DATE_EPOCH", epoch.into()),
            ],
            target_dir,
        })
    }

    /// `cargo build --release --locked -p sigil-cli --bin sigil`, copied to
    /// `dist/sigil`.
    fn binary(&self, ctx: &Ctx, dist: &Path) -> Result<(), String> {
        let mut cmd = ctx.cargo([
            "build",
            "--release",
            "--locked",
            "-p",
            "sigil-cli",
            "--bin",
            "sigil",
        ]);
        cmd.current_dir(&self.root)
            .env("CARGO_TARGET_DIR", &self.target_dir);
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        ctx.run_live(header(cmd))?;
        let built = self.target_dir.join("release").join("sigil");
        fs::create_dir_all(dist).map_err(|e| format!("cannot create {}: {e}", dist.display()))?;
        fs::copy(&built, dist.join("sigil"))
            .map_err(|e| format!("cannot copy {}: {e}", built.display()))?;
        Ok(())
    }

    /// Paths of this machine that the artefacts in `dist` still contain
    /// (`--remap-path-prefix` cannot reach a path a crate builds into a
    /// string, e.g. with `env!("CARGO_MANIFEST_DIR")`): one warning each, as
    /// such an artefact differs when built in another folder.
    fn leaks(&self, dist: &Path) -> Result<Vec<String>, String> {
        let mut files = Vec::new();
        list_files(dist, Path::new(""), &mut files)?;
        let mut folders = vec![self.root.clone(), self.target_dir.clone()];
        folders.extend(ctx::cargo_home());
        let mut warnings = Vec::new();
        for file in files {
            let path = dist.join(&file);
            let bytes =
                fs::read(&path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
            for folder in &folders {
                if let Some(context) = find_path(&bytes, &folder.to_string_lossy()) {
                    warnings.push(format!(
                        "{} contains the build folder {} ({context:?}): it will differ \
                         when built in another folder",
                        file.display(),
                        folder.display()
                    ));
                }
            }
        }
        Ok(warnings)
    }

    /// The web package (as the `web` step builds it, with these flags).
    fn web(&self, ctx: &Ctx, out_dir: &Path) -> Result<(), String> {
        web::build_pkg(
            ctx,
            &PkgBuild {
                root: &self.root,
                target_dir: Some(&self.target_dir),
                out_dir,
                env: &self.env,
                locked: true,
            },
        )
    }
}

/// rustc flags (`CARGO_ENCODED_RUSTFLAGS`, separated by 0x1f) that replace
/// the build's folders by fixed names in everything compiled (panic
/// locations, debug info). rustc uses the last matching prefix, so the most
/// specific comes last: the target folder may be inside the checkout.
fn rustflags(root: &Path, cargo_home: &Path, target_dir: &Path) -> String {
    [
        (cargo_home, "/cargo"),
        (root, "/sigil"),
        (target_dir, "/target"),
    ]
    .iter()
    .map(|(from, to)| format!("--remap-path-prefix={}={to}", from.display()))
    .collect::<Vec<_>>()
    .join("\u{1f}")
}

/// Where `needle` occurs in `bytes`: the printable text around it.
fn find_path(bytes: &[u8], needle: &str) -> Option<String> {
    let needle = needle.as_bytes();
    if needle.is_empty() {
        return None;
    }
    let at = bytes.windows(needle.len()).position(|w| w == needle)?;
    let printable = |b: &u8| b.is_ascii_graphic() || *b == b' ';
    let start = bytes[..at]
        .iter()
        .rposition(|b| !printable(b))
        .map_or(0, |i| i + 1)
        .max(at.saturating_sub(40));
    let end = bytes[at..]
        .iter()
        .position(|b| !printable(b))
        .map_or(bytes.len(), |i| at + i)
        .min(at + needle.len() + 40);
    Some(String::from_utf8_lossy(&bytes[start..end]).into_owned())
}

/// Replaces `dir` with an empty folder.
fn fresh_dir(dir: &Path) -> Result<(), String> {
    if dir.exists() {
        fs::remove_dir_all(dir).map_err(|e| format!("cannot remove {}: {e}", dir.display()))?;
    }
    fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))
}

/// `sha256sum` of every file under `dir` (but `SHA256SUMS` and `sbom/`),
/// with paths relative to it, sorted: the text of a `SHA256SUMS` file.
fn sha256sums(ctx: &Ctx, dir: &Path) -> Result<String, String> {
    let mut files = Vec::new();
    list_files(dir, Path::new(""), &mut files)?;
    files.retain(|f| f != Path::new("SHA256SUMS") && !f.starts_with("sbom"));
    files.sort();
    if files.is_empty() {
        return Err(format!("no files in {}", dir.display()));
    }
    let mut cmd = ctx.cmd("sha256sum");
    cmd.current_dir(dir).arg("--").args(&files);
    let line = describe(&cmd);
    ctx.output(cmd)
        .ok_or_else(|| format!("`{line}` failed in {}", dir.display()))
}

fn list_files(base: &Path, rel: &Path, out: &mut Vec<PathBuf>) -> Result<(), String> {
    let dir = base.join(rel);
    let entries = fs::read_dir(&dir).map_err(|e| format!("cannot list {}: {e}", dir.display()))?;
    for entry in entries {
        let entry = entry.map_err(|e| format!("cannot list {}: {e}", dir.display()))?;
        let path = rel.join(entry.file_name());
        if entry.path().is_dir() {
            list_files(base, &path, out)?;
        } else {
            out.push(path);
        }
    }
    Ok(())
}

/// The files whose hashes differ between two `SHA256SUMS` texts (or that
/// only one has).
fn differing(a: &str, b: &str) -> Vec<String> {
    let parse = |text: &str| -> Vec<(String, String)> {
        text.lines()
            .filter_map(|l| {
                let (hash, name) = l.split_once("  ")?;
                Some((name.to_string(), hash.to_string()))
            })
            .collect()
    };
    let (a, b) = (parse(a), parse(b));
    let mut names: Vec<&String> = a.iter().chain(&b).map(|(n, _)| n).collect();
    names.sort();
    names.dedup();
    names
        .into_iter()
        .filter(|n| {
            let find = |list: &[(String, String)]| {
                list.iter().find(|(m, _)| m == *n).map(|(_, h)| h.clone())
            };
            find(&a).is_none() || find(&a) != find(&b)
        })
        .cloned()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remapped_folders() {
        let flags = rustflags(
            Path::new("/home/u/sigil"),
            Path::new("/home/u/.cargo"),
            Path::new("/home/u/sigil/target/release-repro"),
        );
        let flags: Vec<&str> = flags.split('\u{1f}').collect();
        assert_eq!(
            flags,
            [
                "--remap-path-prefix=/home/u/.cargo=/cargo",
                "--remap-path-prefix=/home/u/sigil=/sigil",
                "--remap-path-prefix=/home/u/sigil/target/release-repro=/target",
            ]
        );
    }

    #[test]
    fn paths_found_in_artefacts() {
        let bytes = b"\x00\x01use --web/home/u/sigil/cli../web\x00more";
        assert_eq!(
            find_path(bytes, "/home/u/sigil").as_deref(),
            Some("use --web/home/u/sigil/cli../web")
        );
        assert_eq!(find_path(bytes, "/home/v"), None);
        assert_eq!(find_path(bytes, ""), None);
    }

    #[test]
    fn sums_compared() {
        let a = "aa  sigil\nbb  pkg/sigil_wasm_bg.wasm\ncc  pkg/sigil_wasm.js\n";
        assert!(differing(a, a).is_empty());
        let b = "aa  sigil\nbx  pkg/sigil_wasm_bg.wasm\n";
        assert_eq!(
            differing(a, b),
            ["pkg/sigil_wasm.js", "pkg/sigil_wasm_bg.wasm"]
        );
    }

    #[test]
    fn files_listed_with_relative_paths() {
        let dir = std::env::temp_dir().join(format!("xtask-release-{}", std::process::id()));
        fresh_dir(&dir.join("pkg")).expect("temp dir");
        for f in ["sigil", "pkg/a.wasm", "SHA256SUMS"] {
            fs::write(dir.join(f), f).expect("write");
        }
        let mut files = Vec::new();
        list_files(&dir, Path::new(""), &mut files).expect("lists");
        files.sort();
        assert_eq!(
            files,
            [
                PathBuf::from("SHA256SUMS"),
                PathBuf::from("pkg/a.wasm"),
                PathBuf::from("sigil")
            ]
        );
        fs::remove_dir_all(&dir).expect("clean up");
    }
}
