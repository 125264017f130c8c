//! Installing what a task needs, and only what is missing.
//!
//! A task lists its [`Need`]s and hands them to [`Setup::ensure`]. Each need
//! knows how to check itself cheaply and how to install itself; present
//! things are passed over in silence, and every install prints one line.
//!
//! To add a tool for a new task, add a [`Need`] to that task's list (for
//! example `test::needs`); a new kind of thing gets a [`Need`] variant, an arm
//! in [`Setup::ensure`] and a method that checks and installs it. Planned:
//!
//! - the wasm-bindgen CLI at exactly the `wasm-bindgen` version in
//!   `Cargo.lock`: a [`CargoTool`] with probe `["wasm-bindgen", "--version"]`,
//!   crate `wasm-bindgen-cli`, a new `Version::Exact(String)` read from the
//!   lockfile's `[[package]]` entry, and a new `Locked::No` (never `--locked`:
//!   its lockfile names a crate version the registry lacks);
//! - npm packages in `web/` (`npm ci` when `web/node_modules` is missing or
//!   older than `web/package-lock.json`): a new [`Need`] variant;
//! - chromium and chromium-driver: add them to [`APT_PACKAGES`].

use std::io::Write;
use std::process::Command;

use crate::ctx::{Ctx, describe, fmt_duration, is_root};

/// A Debian package, and the binary whose presence shows it is installed.
pub(crate) struct AptPackage {
    /// Looked up on `PATH`.
    pub(crate) bin: &'static str,
    /// Installed with `apt-get install` when `bin` is missing.
    pub(crate) package: &'static str,
}

/// The Debian packages the checks need (the tests call these binaries).
pub(crate) const APT_PACKAGES: &[AptPackage] = &[
    AptPackage {
        bin: "wg",
        package: "wireguard-tools",
    },
    AptPackage {
        bin: "openssl",
        package: "openssl",
    },
];

/// Which versions of a cargo-installed tool will do.
pub(crate) enum Version {
    /// Any version.
    Any,
    /// Versions starting `SERIES.` (`"0.5"` takes 0.5.x); installed as `^SERIES`.
    Series(&'static str),
}

/// Whether to pass `--locked` to `cargo install`.
pub(crate) enum Locked {
    /// Always (the tool's own lockfile is what works).
    Yes,
    /// Try with `--locked` first, then without.
    Prefer,
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
    /// A tool from `cargo install`.
    Cargo(CargoTool),
    /// Debian packages (one `apt-get install` for all that are missing).
    Apt(&'static [AptPackage]),
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
                Need::Cargo(tool) => self.cargo_tool(tool)?,
                Need::Apt(packages) => self.apt(packages)?,
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

    fn cargo_tool(&mut self, tool: &CargoTool) -> Result<(), String> {
        let installed = self.probe_version(tool.probe);
        let ok = match (&installed, &tool.version) {
            (None, _) => false,
            (Some(_), Version::Any) => true,
            (Some(v), Version::Series(s)) => v.starts_with(&format!("{s}.")),
        };
        if ok {
            return Ok(());
        }
        let what = match (&installed, &tool.version) {
            (Some(v), Version::Series(s)) => format!("{} ^{s} (found {v})", tool.name),
            (_, Version::Series(s)) => format!("{} ^{s}", tool.name),
            (_, Version::Any) => tool.name.to_string(),
        };
        let mut args = vec!["install".to_string(), tool.krate.to_string()];
        if let Version::Series(s) = tool.version {
            args.extend(["--version".into(), format!("^{s}")]);
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
            self.apt_updated = true;
        }
        let mut cmd = self.apt_get();
        cmd.args(["install", "-y", "--no-install-recommends"])
            .args(&names);
        self.install_with(&what, cmd, "apt-get-install")
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
