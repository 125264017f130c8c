//! Installing what a task needs, and only what is missing.
//!
//! A task lists its [`Need`]s and hands them to [`Setup::ensure`]. Each need
//! knows how to check itself cheaply and how to install itself; present
//! things are passed over in silence, and every install prints one line.
//!
//! To add a tool for a new task, add a [`Need`] to that task's list (for
//! example `test::needs`); a new kind of thing gets a [`Need`] variant, an arm
//! in [`Setup::ensure`] and a method that checks and installs it.

use std::fs;
use std::io::Write;
use std::path::Path;
use std::process::Command;
use std::time::SystemTime;

use crate::ctx::{Ctx, describe, fmt_duration, is_root};

/// A Debian package, and the binary whose presence shows it is installed.
pub(crate) struct AptPackage {
    /// Looked up on `PATH`.
    pub(crate) bin: &'static str,
    /// Installed with `apt-get install` when `bin` is missing.
    pub(crate) package: &'static str,
    /// Whether to install the package's recommended packages too.
    pub(crate) recommends: bool,
}

/// The Debian packages the checks need (the tests call these binaries).
pub(crate) const APT_PACKAGES: &[AptPackage] = &[
    AptPackage {
        bin: "wg",
        package: "wireguard-tools",
        // Its recommends are kernel modules (dkms): not for a test machine.
        recommends: false,
    },
    AptPackage {
        bin: "openssl",
        package: "openssl",
        recommends: false,
    },
    // The browser tests: Chromium headless, driven by chromedriver
    // (wasm-bindgen-test-runner) and by playwright-core (web/tests/e2e.mjs).
    // With recommends (fonts among them), as tried on these machines.
    AptPackage {
        bin: "chromium",
        package: "chromium",
        recommends: true,
    },
    AptPackage {
        bin: "chromedriver",
        package: "chromium-driver",
        recommends: true,
    },
];

/// The servers the tests start themselves, on loopback ports with their
/// own configs (also what `cargo xtask cluster` runs).
pub(crate) const SERVICE_PACKAGES: &[AptPackage] = &[
    // A reverse proxy in front of `sigil serve` (cli/tests/proxy_nginx.rs,
    // cli/tests/cluster.rs), which runs its own nginx on a loopback port
    // with its own config. (On a machine with a service manager, the
    // package also starts Debian's default site on port 80; the tests do
    // not use it.)
    AptPackage {
        bin: "nginx",
        package: "nginx",
        recommends: false,
    },
    // The shared replay store of the cluster tests (tests/tests/replay_store.rs,
    // cli/tests/cluster.rs) and `cargo xtask cluster`, which run their own
    // redis-server on a loopback port. (With a service manager, the
    // package also starts Debian's own on port 6379; nothing here uses it.)
    AptPackage {
        bin: "redis-server",
        package: "redis-server",
        recommends: false,
    },
];

/// Which versions of a cargo-installed tool will do.
pub(crate) enum Version {
    /// Any version.
    Any,
    /// Versions starting `SERIES.` (`"0.5"` takes 0.5.x); installed as `^SERIES`.
    Series(&'static str),
    /// Exactly this version (`"0.2.130"`); installed as `--version 0.2.130`.
    Exact(String),
}

/// Whether to pass `--locked` to `cargo install`.
pub(crate) enum Locked {
    /// Always (the tool's own lockfile is what works).
    Yes,
    /// Try with `--locked` first, then without.
    Prefer,
    /// Never (the tool's own lockfile names something the registry lacks).
    No,
}

/// A binary installed with `cargo install`.
pub(crate) struct CargoTool {
    /// Name for messages and logs.
    pub(crate) name: &'static str,
    /// The command that prints its version, e.g. `["cargo", "audit", "--version"]`
    /// (a leading `cargo` means the cargo that runs us).
    pub(crate) probe: &'static [&'static str],
    /// The crate to install.
    pub(crate) krate: &'static str,
    pub(crate) version: Version,
    pub(crate) locked: Locked,
}

/// Something a task needs on the machine.
pub(crate) enum Need {
    /// A rustup component of the current toolchain (`rustup component add`).
    Component(&'static str),
    /// A rustup target of the current toolchain (`rustup target add`).
    Target(&'static str),
    /// A rustup toolchain beside the default one, probed with
    /// `cargo +NAME --version` (`rustup toolchain install NAME --profile minimal`).
    Toolchain(&'static str),
    /// A tool from `cargo install`.
    Cargo(CargoTool),
    /// Debian packages (one `apt-get install` for all that are missing).
    Apt(&'static [AptPackage]),
    /// The npm packages of a folder of the workspace (`npm ci` there when its
    /// `node_modules` is missing or older than its `package-lock.json`).
    Npm(&'static str),
}

/// The wasm-bindgen CLI (`wasm-bindgen`, `wasm-bindgen-test-runner`) at
/// exactly the version of the `wasm-bindgen` crate in `Cargo.lock`: the CLI
/// refuses modules made by any other version.
pub(crate) fn wasm_bindgen_cli(ctx: &Ctx) -> Result<Need, String> {
    let lockfile = ctx.root.join("Cargo.lock");
    let text = fs::read_to_string(&lockfile)
        .map_err(|e| format!("cannot read {}: {e}", lockfile.display()))?;
    let version = locked_version(&text, "wasm-bindgen")
        .map_err(|e| format!("{}: {e}", lockfile.display()))?;
    Ok(Need::Cargo(CargoTool {
        name: "wasm-bindgen-cli",
        probe: &["wasm-bindgen", "--version"],
        krate: "wasm-bindgen-cli",
        version: Version::Exact(version),
        // Its lockfile names a crate version the registry lacks.
        locked: Locked::No,
    }))
}

/// The version of `krate` in the text of a `Cargo.lock`; an error if it is
/// missing or there are several.
fn locked_version(lockfile: &str, krate: &str) -> Result<String, String> {
    let name_line = format!("name = \"{krate}\"");
    let mut versions: Vec<String> = Vec::new();
    let mut lines = lockfile.lines().map(str::trim);
    let mut in_package = false;
    while let Some(line) = lines.next() {
        if line.starts_with('[') {
            in_package = line == "[[package]]";
            continue;
        }
        if !in_package || line != name_line {
            continue;
        }
        // `version` follows `name` in every entry cargo writes.
        let version = lines
            .next()
            .and_then(|l| l.strip_prefix("version = \""))
            .and_then(|v| v.strip_suffix('"'))
            .ok_or_else(|| format!("the `{krate}` entry has no version after its name"))?;
        versions.push(version.to_owned());
    }
    match versions.as_slice() {
        [one] => Ok(one.clone()),
        [] => Err(format!("no `{krate}` package")),
        several => Err(format!(
            "several `{krate}` versions ({}); the CLI can match only one",
            several.join(", ")
        )),
    }
}

/// Installs missing needs, or with `install == false` reports them.
pub(crate) struct Setup<'a> {
    ctx: &'a Ctx,
    install: bool,
    apt_updated: bool,
    missing: Vec<String>,
}

impl<'a> Setup<'a> {
    pub(crate) fn new(ctx: &'a Ctx, install: bool) -> Self {
        Setup {
            ctx,
            install,
            apt_updated: false,
            missing: Vec::new(),
        }
    }

    /// Makes sure every need is met. Stops at the first failed install; with
    /// installs turned off, lists everything missing before failing.
    pub(crate) fn ensure(&mut self, needs: &[Need]) -> Result<(), String> {
        for need in needs {
            match need {
                Need::Component(name) => self.rustup(name, "component")?,
                Need::Target(name) => self.rustup(name, "target")?,
                Need::Toolchain(name) => self.toolchain(name)?,
                Need::Cargo(tool) => self.cargo_tool(tool)?,
                Need::Apt(packages) => self.apt(packages)?,
                Need::Npm(dir) => self.npm(dir)?,
            }
        }
        if self.missing.is_empty() {
            Ok(())
        } else {
            Err(format!(
                "missing (and --no-install was given):\n  {}",
                self.missing.join("\n  ")
            ))
        }
    }

    /// `kind` is `component` or `target`.
    fn rustup(&mut self, name: &str, kind: &str) -> Result<(), String> {
        if self.ctx.which("rustup").is_none() {
            // Without rustup we cannot tell; the checks will say what is wrong.
            return Ok(());
        }
        let listed = self
            .ctx
            .output({
                let mut cmd = self.ctx.cmd("rustup");
                cmd.args([kind, "list", "--installed"]);
                cmd
            })
            .ok_or_else(|| format!("`rustup {kind} list --installed` failed"))?;
        // Components are listed with the host triple appended.
        let prefix = format!("{name}-");
        if listed
            .lines()
            .any(|l| l.trim() == name || l.trim().starts_with(&prefix))
        {
            return Ok(());
        }
        let what = format!("rustup {kind} {name}");
        let mut cmd = self.ctx.cmd("rustup");
        cmd.args([kind, "add", name]);
        self.install_with(&what, cmd, &format!("rustup-{name}"))
    }

    /// A toolchain, installed with rustup's minimal profile when
    /// `cargo +NAME` does not work. `cargo +NAME` is rustup's: the `cargo`
    /// on `PATH`, not the toolchain's own binary that runs us.
    fn toolchain(&mut self, name: &str) -> Result<(), String> {
        let mut probe = self.ctx.cmd("cargo");
        probe.args([format!("+{name}").as_str(), "--version"]);
        if self.ctx.output(probe).is_some() {
            return Ok(());
        }
        let what = format!("the {name} toolchain");
        if self.install && self.ctx.which("rustup").is_none() {
            return Err(format!(
                "`cargo +{name}` does not work and rustup is not on PATH: install rustup, \
                 then `rustup toolchain install {name} --profile minimal`"
            ));
        }
        let mut cmd = self.ctx.cmd("rustup");
        cmd.args(["toolchain", "install", name, "--profile", "minimal"]);
        self.install_with(&what, cmd, &format!("rustup-toolchain-{name}"))
    }

    fn cargo_tool(&mut self, tool: &CargoTool) -> Result<(), String> {
        let installed = self.probe_version(tool.probe);
        let ok = match (&installed, &tool.version) {
            (None, _) => false,
            (Some(_), Version::Any) => true,
            (Some(v), Version::Series(s)) => v.starts_with(&format!("{s}.")),
            (Some(v), Version::Exact(x)) => v == x,
        };
        if ok {
            return Ok(());
        }
        let wanted = match &tool.version {
            Version::Any => String::new(),
            Version::Series(s) => format!(" ^{s}"),
            Version::Exact(x) => format!(" {x}"),
        };
        let what = match &installed {
            Some(v) if !matches!(tool.version, Version::Any) => {
                format!("{}{wanted} (found {v})", tool.name)
            }
            _ => format!("{}{wanted}", tool.name),
        };
        let mut args = vec!["install".to_string(), tool.krate.to_string()];
        match &tool.version {
            Version::Any => {}
            Version::Series(s) => args.extend(["--version".into(), format!("^{s}")]),
            // A plain version is an exact one to `cargo install`.
            Version::Exact(x) => args.extend(["--version".into(), x.clone()]),
        }
        let locked = {
            let mut a = args.clone();
            a.push("--locked".into());
            self.ctx.cargo(a)
        };
        match tool.locked {
            Locked::Yes => self.install_with(&what, locked, tool.name),
            Locked::Prefer => self.install_with(&what, locked, tool.name).or_else(|e| {
                let first = e.lines().next().unwrap_or_default();
                println!("    {first}; retrying without --locked");
                self.install_with(&what, self.ctx.cargo(&args), tool.name)
            }),
            Locked::No => self.install_with(&what, self.ctx.cargo(&args), tool.name),
        }
    }

    /// The version the probe command prints (`mdbook v0.5.4` gives `0.5.4`).
    fn probe_version(&self, probe: &[&str]) -> Option<String> {
        let (program, args) = probe.split_first()?;
        let cmd = if *program == "cargo" {
            self.ctx.cargo(args)
        } else {
            self.ctx.which(program)?;
            let mut cmd = self.ctx.cmd(program);
            cmd.args(args);
            cmd
        };
        let out = self.ctx.output(cmd)?;
        out.split_whitespace()
            .map(|w| w.trim_start_matches('v'))
            .find(|w| w.starts_with(|c: char| c.is_ascii_digit()))
            .map(str::to_string)
    }

    fn apt(&mut self, packages: &[AptPackage]) -> Result<(), String> {
        let missing: Vec<&AptPackage> = packages
            .iter()
            .filter(|p| self.ctx.which(p.bin).is_none())
            .collect();
        if missing.is_empty() {
            return Ok(());
        }
        let names: Vec<&str> = missing.iter().map(|p| p.package).collect();
        let what = missing
            .iter()
            .map(|p| format!("`{}` (Debian package {})", p.bin, p.package))
            .collect::<Vec<_>>()
            .join(", ");
        if !self.install {
            self.missing
                .push(format!("{what}: apt-get install {}", names.join(" ")));
            return Ok(());
        }
        if !is_root() || self.ctx.which("apt-get").is_none() {
            return Err(format!(
                "missing {what}; not root, so not installing it. Install with:\n  \
                 sudo apt-get install {}",
                names.join(" ")
            ));
        }
        if !self.apt_updated {
            let mut cmd = self.apt_get();
            cmd.arg("update");
            self.ctx.run_logged(cmd, "apt-get-update")?;
            // An install interrupted earlier (a session stopped halfway)
            // leaves dpkg refusing every other until it is finished; with
            // nothing pending this does nothing.
            let mut finish = self.ctx.cmd("dpkg");
            finish.env("DEBIAN_FRONTEND", "noninteractive");
            finish.args(["--configure", "-a"]);
            self.ctx.run_logged(finish, "dpkg-configure")?;
            self.apt_updated = true;
        }
        // One install for the packages without their recommends, one with.
        for recommends in [false, true] {
            let group: Vec<&&AptPackage> = missing
                .iter()
                .filter(|p| p.recommends == recommends)
                .collect();
            if group.is_empty() {
                continue;
            }
            let mut cmd = self.apt_get();
            cmd.args(["install", "-y"]);
            if !recommends {
                cmd.arg("--no-install-recommends");
            }
            cmd.args(group.iter().map(|p| p.package));
            let what = group
                .iter()
                .map(|p| format!("`{}` (Debian package {})", p.bin, p.package))
                .collect::<Vec<_>>()
                .join(", ");
            self.install_with(&what, cmd, "apt-get-install")?;
        }
        Ok(())
    }

    /// `npm ci` in `dir` (relative to the workspace root) when its
    /// `node_modules` is missing, incomplete (npm writes
    /// `node_modules/.package-lock.json` last) or older than its
    /// `package-lock.json`. node and npm themselves are not installed here.
    fn npm(&mut self, dir: &str) -> Result<(), String> {
        for bin in ["node", "npm"] {
            if self.ctx.which(bin).is_none() {
                return Err(format!(
                    "`{bin}` is not on PATH; {dir}/'s npm packages (and the browser \
                     tests) need Node.js 20 or newer with npm (Debian: apt-get install \
                     nodejs npm)"
                ));
            }
        }
        let folder = self.ctx.root.join(dir);
        let lock = folder.join("package-lock.json");
        let modules = folder.join("node_modules");
        let lock_time = modified(&lock).ok_or_else(|| format!("cannot read {}", lock.display()))?;
        let installed = modules.join(".package-lock.json").is_file();
        let fresh = modified(&modules).is_some_and(|t| t >= lock_time) && installed;
        if fresh {
            return Ok(());
        }
        // A node_modules that links to another checkout's is that
        // checkout's to update: `npm ci` here would empty the folder it
        // shares (it removes node_modules' contents through the link).
        if fs::symlink_metadata(&modules).is_ok_and(|m| m.file_type().is_symlink()) {
            if installed {
                return Ok(());
            }
            return Err(format!(
                "{} is a link to a folder with no npm packages installed: run `npm ci` \
                 where it points, or remove the link and let this install them",
                modules.display()
            ));
        }
        let mut cmd = self.ctx.cmd("npm");
        cmd.current_dir(&folder)
            .args(["ci", "--no-audit", "--no-fund"]);
        self.install_with(&format!("the npm packages of {dir}/"), cmd, "npm-ci")
    }

    fn apt_get(&self) -> Command {
        let mut cmd = self.ctx.cmd("apt-get");
        cmd.env("DEBIAN_FRONTEND", "noninteractive");
        cmd
    }

    /// Runs an install command (logged) and prints one line for it; with
    /// installs off, records `what` as missing instead.
    fn install_with(&mut self, what: &str, cmd: Command, log: &str) -> Result<(), String> {
        let line = describe(&cmd);
        if !self.install {
            self.missing.push(format!("{what}: {line}"));
            return Ok(());
        }
        print!("installing {what}: {line} ... ");
        // Best effort: the line is only a progress note.
        let _ = std::io::stdout().flush();
        match self.ctx.run_logged(cmd, log) {
            Ok(took) => {
                println!("done in {}", fmt_duration(took));
                Ok(())
            }
            Err(e) => {
                println!("FAILED");
                Err(e)
            }
        }
    }
}

/// When `path` was last modified, if it exists.
fn modified(path: &Path) -> Option<SystemTime> {
    fs::metadata(path).and_then(|m| m.modified()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOCKFILE: &str = r#"# This file is automatically @generated by Cargo.
version = 4

[[package]]
name = "wasm-bindgen"
version = "0.2.130"
source = "registry+https://github.com/rust-lang/crates.io-index"
dependencies = [
 "wasm-bindgen-macro",
]

[[package]]
name = "wasm-bindgen-macro"
version = "0.2.130"
"#;

    #[test]
    fn version_from_the_lockfile() {
        assert_eq!(
            locked_version(LOCKFILE, "wasm-bindgen").as_deref(),
            Ok("0.2.130")
        );
    }

    #[test]
    fn fail_missing_package() {
        assert!(locked_version(LOCKFILE, "wasm-bindgen-cli").is_err());
    }

    #[test]
    fn fail_several_versions() {
        let two =
            format!("{LOCKFILE}\n[[package]]\nname = \"wasm-bindgen\"\nversion = \"0.2.99\"\n");
        let e = locked_version(&two, "wasm-bindgen").unwrap_err();
        assert!(e.contains("0.2.130, 0.2.99"), "{e}");
    }

    #[test]
    fn version_of_the_real_lockfile() {
        let text = include_str!("../../Cargo.lock");
        let v = locked_version(text, "wasm-bindgen").expect("wasm-bindgen is locked");
        assert!(v.starts_with("0.2."), "{v}");
    }
}
