//! What the supply-chain tasks need to know about the workspace: the crates
//! that ship, the packages `cargo metadata` reports, and copies of the
//! sources in another folder (to show a build does not depend on where it
//! happens).

use std::fs;
use std::path::{Path, PathBuf};

use crate::ctx::{Ctx, checked_output};
use crate::json::Json;

/// The crates whose builds reach users: the libraries, the browser client
/// and the `sigil` binary. The supply-chain checks look at their normal and
/// build dependencies; dev-dependencies, `sigil-tests` and `xtask` do not ship.
pub(crate) const SHIPPED: &[&str] = &[
    "sigil-core",
    "sigil-server",
    "sigil-client",
    "sigil-wasm",
    "sigil-cli",
];

/// A package as `cargo metadata` describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Package {
    pub(crate) name: String,
    pub(crate) version: String,
    /// The folder of its `Cargo.toml`.
    pub(crate) dir: PathBuf,
    /// It has a build script (a `custom-build` target).
    pub(crate) build_script: bool,
    /// It is a procedural macro (a `proc-macro` target).
    pub(crate) proc_macro: bool,
}

/// `cargo metadata --format-version 1 --locked` of the workspace at `root`
/// (with `--no-deps`, its members only), parsed.
pub(crate) fn metadata(ctx: &Ctx, root: &Path, no_deps: bool) -> Result<Json, String> {
    let mut cmd = ctx.cargo(["metadata", "--format-version", "1", "--locked"]);
    if no_deps {
        cmd.arg("--no-deps");
    }
    cmd.current_dir(root);
    let (line, stdout) = checked_output(cmd)?;
    let text = String::from_utf8(stdout).map_err(|_| format!("`{line}` printed non-UTF-8"))?;
    Json::parse(&text).map_err(|e| format!("`{line}`: {e}"))
}

/// The packages of a `cargo metadata` document.
pub(crate) fn packages(metadata: &Json) -> Result<Vec<Package>, String> {
    let list = metadata
        .get("packages")
        .ok_or("cargo metadata printed no `packages`")?;
    list.items()
        .iter()
        .map(|p| {
            let field = |key: &str| {
                p.str_at(key)
                    .map(str::to_string)
                    .ok_or_else(|| format!("a package in cargo metadata has no `{key}`"))
            };
            let manifest = PathBuf::from(field("manifest_path")?);
            let has_kind = |kind: &str| {
                p.get("targets").is_some_and(|targets| {
                    targets.items().iter().any(|t| {
                        t.get("kind")
                            .is_some_and(|k| k.items().iter().any(|k| k.as_str() == Some(kind)))
                    })
                })
            };
            Ok(Package {
                name: field("name")?,
                version: field("version")?,
                dir: manifest.parent().map(Path::to_path_buf).unwrap_or_default(),
                build_script: has_kind("custom-build"),
                proc_macro: has_kind("proc-macro"),
            })
        })
        .collect()
}

/// Files of the workspace root that a build reads.
const ROOT_FILES: &[&str] = &["Cargo.toml", "Cargo.lock", "rust-toolchain.toml"];

/// Folders never copied: build output and npm packages.
const SKIPPED_DIRS: &[&str] = &["target", "node_modules"];

/// Makes `to` a copy of what building the workspace needs: the root's
/// `Cargo.toml`, `Cargo.lock`, `rust-toolchain.toml` and `.cargo/`, and the
/// folder of every workspace member. Whatever `to` held before is removed,
/// except its `target/` (so a later build there only recompiles what
/// changed).
pub(crate) fn copy_sources(ctx: &Ctx, to: &Path) -> Result<(), String> {
    let members = packages(&metadata(ctx, &ctx.root, true)?)?;
    fs::create_dir_all(to).map_err(|e| format!("cannot create {}: {e}", to.display()))?;
    let entries = fs::read_dir(to).map_err(|e| format!("cannot list {}: {e}", to.display()))?;
    for entry in entries {
        let entry = entry.map_err(|e| format!("cannot list {}: {e}", to.display()))?;
        if entry.file_name() == "target" {
            continue;
        }
        let path = entry.path();
        let removed = if path.is_dir() && !path.is_symlink() {
            fs::remove_dir_all(&path)
        } else {
            fs::remove_file(&path)
        };
        removed.map_err(|e| format!("cannot remove {}: {e}", path.display()))?;
    }
    for file in ROOT_FILES {
        let from = ctx.root.join(file);
        if from.is_file() {
            copy_file(&from, &to.join(file))?;
        }
    }
    let cargo_config = ctx.root.join(".cargo");
    if cargo_config.is_dir() {
        copy_tree(&cargo_config, &to.join(".cargo"))?;
    }
    for member in &members {
        let rel = member.dir.strip_prefix(&ctx.root).map_err(|_| {
            format!(
                "workspace member {} is outside the workspace root",
                member.dir.display()
            )
        })?;
        copy_tree(&member.dir, &to.join(rel))?;
    }
    Ok(())
}

fn copy_file(from: &Path, to: &Path) -> Result<(), String> {
    if let Some(parent) = to.parent() {
        fs::create_dir_all(parent)
            .map_err(|e| format!("cannot create {}: {e}", parent.display()))?;
    }
    fs::copy(from, to).map_err(|e| format!("cannot copy {}: {e}", from.display()))?;
    // The source's time too, so cargo sees an unchanged copy as unchanged and
    // a build in the copy recompiles only what changed since the last one.
    // Best effort: a newer time only costs a rebuild.
    if let Ok(time) = fs::metadata(from).and_then(|m| m.modified()) {
        let _ = fs::File::options()
            .write(true)
            .open(to)
            .and_then(|f| f.set_modified(time));
    }
    Ok(())
}

/// Copies the files under `from` to `to`, leaving out [`SKIPPED_DIRS`].
pub(crate) fn copy_tree(from: &Path, to: &Path) -> Result<(), String> {
    fs::create_dir_all(to).map_err(|e| format!("cannot create {}: {e}", to.display()))?;
    let entries = fs::read_dir(from).map_err(|e| format!("cannot list {}: {e}", from.display()))?;
    for entry in entries {
        let entry = entry.map_err(|e| format!("cannot list {}: {e}", from.display()))?;
        let name = entry.file_name();
        let path = entry.path();
        if path.is_dir() {
            if SKIPPED_DIRS.iter().any(|s| name == *s) {
                continue;
            }
            copy_tree(&path, &to.join(&name))?;
        } else if path.is_file() {
            copy_file(&path, &to.join(&name))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const METADATA: &str = r#"{"packages": [
        {"name": "ring", "version": "0.17.14", "manifest_path": "/r/ring-0.17.14/Cargo.toml",
         "targets": [{"kind": ["lib"]}, {"kind": ["custom-build"]}]},
        {"name": "serde_derive", "version": "1.0.229", "manifest_path": "/r/sd/Cargo.toml",
         "targets": [{"kind": ["proc-macro"]}]},
        {"name": "hex", "version": "0.4.3", "manifest_path": "/r/hex/Cargo.toml",
         "targets": [{"kind": ["lib"]}, {"kind": ["test"]}]}
    ], "workspace_members": []}"#;

    #[test]
    fn packages_and_their_build_time_code() {
        let md = Json::parse(METADATA).expect("parses");
        let p = packages(&md).expect("packages");
        assert_eq!(p.len(), 3);
        assert_eq!(
            p[0],
            Package {
                name: "ring".into(),
                version: "0.17.14".into(),
                dir: PathBuf::from("/r/ring-0.17.14"),
                build_script: true,
                proc_macro: false,
            }
        );
        assert!(p[1].proc_macro && !p[1].build_script);
        assert!(!p[2].proc_macro && !p[2].build_script);
    }

    #[test]
    fn fail_package_without_a_version() {
        let md = Json::parse(r#"{"packages": [{"name": "x", "manifest_path": "/x/Cargo.toml"}]}"#)
            .expect("parses");
        let e = packages(&md).unwrap_err();
        assert!(e.contains("`version`"), "{e}");
    }

    #[test]
    fn the_shipped_crates_are_workspace_members() {
        let ctx = Ctx::new().expect("the workspace is found");
        let md = metadata(&ctx, &ctx.root, true).expect("cargo metadata runs");
        let members = packages(&md).expect("packages");
        for name in SHIPPED {
            assert!(members.iter().any(|m| m.name == *name), "{name}");
        }
    }
}
