//! The supply-chain policy of `deny.toml`, checked with cargo-deny: the
//! `deny` step of `cargo xtask test` and `cargo xtask deny`.
//!
//! The step runs cargo-deny on the real tree (it must pass), checks that
//! every package in `Cargo.lock` comes from crates.io (dev-dependencies
//! included, which `deny.toml` leaves out), and runs cargo-deny on each
//! fixture of `xtask/tests/fixtures/deny/`, a tiny workspace that breaks one
//! rule: each must be refused for that rule and no other, but for one that
//! must pass (a duplicate in dev-dependencies only). Each counts as one test
//! in the summary.
//!
//! cargo-deny never fetches anything here: it runs with `--offline`, reads
//! the RustSec snapshot in `../shared/advisory-db` (linked into the layout
//! cargo-deny expects, under `target/advisory-dbs/`), and the fixtures are
//! resolved with a private, empty `CARGO_HOME`.

use std::fs;
use std::path::Path;
use std::process::{Command, ExitCode};

use crate::args::Args;
use crate::ctx::{Ctx, describe, header};
use crate::results::Counts;
use crate::setup::{CargoTool, Locked, Need, Setup, Version};
use crate::workspace;

const HELP: &str = "\
cargo xtask deny: check the dependency graph against deny.toml

usage: cargo xtask deny [--no-install]

Installs cargo-deny 0.20.2 (cargo install --locked) when missing, links the
RustSec snapshot ../shared/advisory-db where cargo-deny looks for it
(target/advisory-dbs/), then runs `cargo deny --offline --locked check`:
crates.io sources only, allowed licences, one version of each crypto crate,
no known advisories. Also checks that every package in Cargo.lock comes from
crates.io, and that cargo-deny refuses each fixture of
xtask/tests/fixtures/deny/ for the rule it breaks.

options:
  --no-install   fail, listing what is missing, instead of installing it
  -h, --help     print this help
";

/// The cargo-deny release the policy is written for.
const CARGO_DENY_VERSION: &str = "0.20.2";

/// cargo-deny, at the pinned version.
pub(crate) fn need() -> Need {
    Need::Cargo(CargoTool {
        name: "cargo-deny",
        probe: &["cargo", "deny", "--version"],
        krate: "cargo-deny",
        version: Version::Exact(CARGO_DENY_VERSION.to_string()),
        locked: Locked::Yes,
    })
}

/// Where `deny.toml`'s `[advisories] db-path` points, from the workspace root.
const DB_PATH: &str = "target/advisory-dbs";

/// The folder cargo-deny opens under `db-path` for the default database URL
/// (`https://github.com/rustsec/advisory-db`): the last segment of the URL
/// and cargo-deny's hash of it.
const DB_DIR: &str = "advisory-db-3157b0e258782691";

/// Where fixtures are copied and run.
const WORK: &str = "xtask/deny";

/// Package sources `Cargo.lock` may name: the crates.io index, as a git or a
/// sparse registry.
const CRATES_IO: &[&str] = &[
    "registry+https://github.com/rust-lang/crates.io-index",
    "sparse+https://index.crates.io/",
];

/// A workspace that breaks one rule of `deny.toml`, or that looks as if it
/// did but must pass.
struct Fixture {
    /// Its folder under `xtask/tests/fixtures/deny/`.
    name: &'static str,
    /// The cargo-deny diagnostic code it must get (`error[CODE]`), or `None`
    /// if cargo-deny must accept it.
    code: Option<&'static str>,
    /// A word the refusal must mention (the crate or licence at fault).
    subject: &'static str,
}

const FIXTURES: &[Fixture] = &[
    Fixture {
        name: "git-dep",
        code: Some("source-not-allowed"),
        subject: "dep",
    },
    Fixture {
        name: "dup-crypto",
        code: Some("duplicate"),
        subject: "sha2",
    },
    Fixture {
        name: "bad-licence",
        code: Some("rejected"),
        subject: "GPL-3.0-only",
    },
    // The policy is about what ships: a second sha2 in dev-dependencies only
    // is not a duplicate.
    Fixture {
        name: "dev-only-dup",
        code: None,
        subject: "",
    },
];

/// Entry point of `cargo xtask deny ARGS`.
pub(crate) fn main(args: &[String]) -> ExitCode {
    let args = match Args::parse(args, HELP, &["--no-install"], &[], 0) {
        Ok(args) => args,
        Err(code) => return code,
    };
    let install = !args.has("--no-install");
    let result = Ctx::new().and_then(|ctx| {
        Setup::new(&ctx, install).ensure(&[need()])?;
        let mut counts = Counts::default();
        step(&ctx, &mut counts)?;
        println!("{} fixtures judged as expected", counts.passed);
        Ok(())
    });
    crate::ctx::exit_code(result)
}

/// The `deny` step of `cargo xtask test`.
pub(crate) fn step(ctx: &Ctx, counts: &mut Counts) -> Result<(), String> {
    prepare_advisory_db(ctx)?;

    let mut cmd = ctx.cargo(["deny"]);
    if std::io::IsTerminal::is_terminal(&std::io::stdout()) {
        cmd.args(["--color", "always"]);
    }
    cmd.args(["--offline", "--locked", "check"]);
    ctx.run_live(header(cmd)).map_err(|e| {
        format!("{e}: the dependency graph breaks deny.toml (cargo-deny's reasons are above)")
    })?;

    let lockfile = ctx.root.join("Cargo.lock");
    let text = fs::read_to_string(&lockfile)
        .map_err(|e| format!("cannot read {}: {e}", lockfile.display()))?;
    let foreign = foreign_sources(&text);
    if !foreign.is_empty() {
        return Err(format!(
            "Cargo.lock has packages from outside crates.io:\n  {}",
            foreign.join("\n  ")
        ));
    }
    println!("Cargo.lock: every package comes from crates.io");

    let mut failed = Vec::new();
    for fixture in FIXTURES {
        match run_fixture(ctx, fixture) {
            Ok(line) => {
                println!("  {:<12} ok      {line}", fixture.name);
                counts.passed += 1;
            }
            Err(e) => {
                println!("  {:<12} FAILED", fixture.name);
                eprintln!("error: fixture `{}`: {e}", fixture.name);
                counts.failed += 1;
                failed.push(fixture.name);
            }
        }
    }
    if failed.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "cargo-deny did not judge these fixtures as expected: {}",
            failed.join(", ")
        ))
    }
}

/// Makes `target/advisory-dbs/advisory-db-…/` the RustSec snapshot of
/// `../shared/advisory-db` as cargo-deny wants it: its `crates/` folder (a
/// link) and a `.git/FETCH_HEAD` whose time is the snapshot's (cargo-deny
/// reads the time of the last fetch from it; it never fetches here).
fn prepare_advisory_db(ctx: &Ctx) -> Result<(), String> {
    let snapshot = crate::test::advisory_db(ctx)?;
    let dir = ctx.root.join(DB_PATH).join(DB_DIR);
    let git = dir.join(".git");
    fs::create_dir_all(&git).map_err(|e| format!("cannot create {}: {e}", git.display()))?;
    let link = dir.join("crates");
    let target = snapshot.join("crates");
    if fs::read_link(&link).ok().as_deref() != Some(target.as_path()) {
        if link.symlink_metadata().is_ok() {
            fs::remove_file(&link).map_err(|e| format!("cannot remove {}: {e}", link.display()))?;
        }
        std::os::unix::fs::symlink(&target, &link).map_err(|e| {
            format!(
                "cannot link {} to {}: {e}",
                link.display(),
                target.display()
            )
        })?;
    }
    let stamp = snapshot.join("SNAPSHOT");
    let head = git.join("FETCH_HEAD");
    let text = fs::read_to_string(&stamp).unwrap_or_default();
    fs::write(&head, text.as_bytes())
        .map_err(|e| format!("cannot write {}: {e}", head.display()))?;
    if let Ok(time) = fs::metadata(&stamp).and_then(|m| m.modified()) {
        fs::File::options()
            .write(true)
            .open(&head)
            .and_then(|f| f.set_modified(time))
            .map_err(|e| format!("cannot set the time of {}: {e}", head.display()))?;
    }
    Ok(())
}

/// `name version source` for every package of a `Cargo.lock` whose source is
/// not crates.io (path packages, which have no source, are fine).
fn foreign_sources(lockfile: &str) -> Vec<String> {
    let mut out = Vec::new();
    let (mut name, mut version) = ("", "");
    for line in lockfile.lines().map(str::trim) {
        if line == "[[package]]" {
            (name, version) = ("", "");
        } else if let Some(v) = quoted(line, "name") {
            name = v;
        } else if let Some(v) = quoted(line, "version") {
            version = v;
        } else if let Some(source) = quoted(line, "source")
            && !CRATES_IO.contains(&source)
        {
            out.push(format!("{name} {version} {source}"));
        }
    }
    out
}

/// The value of `key = "value"`.
fn quoted<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    line.strip_prefix(key)?
        .trim_start()
        .strip_prefix('=')?
        .trim()
        .strip_prefix('"')?
        .strip_suffix('"')
}

/// Copies a fixture to `target/xtask/deny/NAME/`, runs cargo-deny on it and
/// checks its verdict. Returns a line saying what it was.
fn run_fixture(ctx: &Ctx, fixture: &Fixture) -> Result<String, String> {
    let work = ctx.target_dir().join(WORK);
    let dir = work.join(fixture.name);
    if dir.exists() {
        fs::remove_dir_all(&dir).map_err(|e| format!("cannot remove {}: {e}", dir.display()))?;
    }
    let source = ctx
        .root
        .join("xtask/tests/fixtures/deny")
        .join(fixture.name);
    workspace::copy_tree(&source, &dir)?;
    // Only what the fixture itself brings: nothing from the registry, and no
    // trace left in the real cargo home.
    let cargo_home = work.join("cargo-home");

    let dep = dir.join("dep");
    if dep.is_dir() {
        make_git_repo(ctx, &dep)?;
        let manifest = dir.join("Cargo.toml");
        let text = fs::read_to_string(&manifest)
            .map_err(|e| format!("cannot read {}: {e}", manifest.display()))?;
        let url = format!("file://{}", dep.display());
        fs::write(&manifest, text.replace("file://DEP_REPO", &url))
            .map_err(|e| format!("cannot write {}: {e}", manifest.display()))?;
        // A local repository: cargo "fetches" it without the network.
        let mut lock = ctx.cargo(["generate-lockfile", "--quiet"]);
        lock.current_dir(&dir).env("CARGO_HOME", &cargo_home);
        quiet(lock)?;
    }

    let mut cmd = ctx.cargo(["deny", "--color", "never", "--offline", "--locked"]);
    cmd.arg("--manifest-path")
        .arg(dir.join("Cargo.toml"))
        .arg("--config")
        .arg(ctx.root.join("deny.toml"))
        // The allow-list names licences the fixture does not use.
        .args(["check", "--allow", "license-not-encountered"])
        .env("CARGO_HOME", &cargo_home);
    let line = describe(&cmd);
    let out = cmd
        .output()
        .map_err(|e| format!("cannot start {line}: {e}"))?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    judge(fixture, out.status.success(), &text)
        .map_err(|e| format!("{e}\n`{line}` printed:\n{}", indent(&text)))
}

/// Whether cargo-deny judged `fixture` as expected: refused for the right
/// reason and no other, or accepted. `Ok` says what it was.
fn judge(fixture: &Fixture, passed: bool, output: &str) -> Result<String, String> {
    let errors = error_lines(output);
    let Some(expected) = fixture.code else {
        return match errors.first() {
            _ if passed => Ok("accepted".to_string()),
            Some((code, message)) => Err(format!(
                "cargo-deny refused it (error[{code}]: {message}); expected it to pass"
            )),
            None => Err("cargo-deny failed; expected it to pass".to_string()),
        };
    };
    if passed {
        return Err(format!(
            "cargo-deny accepted it; expected error[{expected}]"
        ));
    }
    let Some(first) = errors.first() else {
        return Err(format!(
            "cargo-deny failed without an error[…] diagnostic; expected error[{expected}]"
        ));
    };
    if let Some((code, _)) = errors.iter().find(|(code, _)| code != expected) {
        return Err(format!(
            "refused for another reason too: error[{code}] (expected only error[{expected}])"
        ));
    }
    if !output.contains(fixture.subject) {
        return Err(format!("the refusal does not name `{}`", fixture.subject));
    }
    Ok(format!("refused: error[{}]: {}", first.0, first.1))
}

/// The `(code, message)` of every `error[CODE]: MESSAGE` line.
fn error_lines(output: &str) -> Vec<(String, String)> {
    output
        .lines()
        .filter_map(|line| {
            let rest = line.trim().strip_prefix("error[")?;
            let (code, message) = rest.split_once("]:")?;
            Some((code.to_string(), message.trim().to_string()))
        })
        .collect()
}

/// `git init` and one commit of everything in `dir`, with fixed names and
/// no hooks or signing from the user's configuration.
fn make_git_repo(ctx: &Ctx, dir: &Path) -> Result<(), String> {
    let git = |args: &[&str]| {
        let mut cmd = ctx.cmd("git");
        cmd.current_dir(dir)
            .args([
                "-c",
                "user.name=xtask",
                "-c",
                "user.email=xtask@example.invalid",
                "-c",
                "commit.gpgsign=false",
            ])
            .args(args);
        quiet(cmd)
    };
    git(&["init", "--quiet"])?;
    git(&["add", "--all"])?;
    git(&["commit", "--quiet", "--no-verify", "-m", "fixture"])
}

/// Runs `cmd` with its output captured; the error holds that output.
fn quiet(mut cmd: Command) -> Result<(), String> {
    let line = describe(&cmd);
    let out = cmd
        .output()
        .map_err(|e| format!("cannot start {line}: {e}"))?;
    if out.status.success() {
        return Ok(());
    }
    Err(format!(
        "`{line}` failed ({}):\n{}",
        out.status,
        indent(&format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    ))
}

fn indent(text: &str) -> String {
    text.lines()
        .map(|l| format!("    | {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn fixture_dir(name: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/deny")
            .join(name)
    }

    #[test]
    fn crates_io_only() {
        let lock = "\
version = 4

[[package]]
name = \"app\"
version = \"0.1.0\"

[[package]]
name = \"hex\"
version = \"0.4.3\"
source = \"registry+https://github.com/rust-lang/crates.io-index\"
checksum = \"7f24254aa9a54b5c858eaee2f5bccdb46aaf0e486a595ed5fd8f86ba55232a70\"

[[package]]
name = \"serde\"
version = \"1.0.0\"
source = \"sparse+https://index.crates.io/\"
";
        assert_eq!(foreign_sources(lock), Vec::<String>::new());
    }

    #[test]
    fn fail_git_and_other_registries() {
        let lock = "\
[[package]]
name = \"dep\"
version = \"0.1.0\"
source = \"git+https://example.invalid/dep.git#0123abcd\"

[[package]]
name = \"other\"
version = \"2.0.0\"
source = \"registry+https://my-registry.example.invalid/index\"
";
        assert_eq!(
            foreign_sources(lock),
            [
                "dep 0.1.0 git+https://example.invalid/dep.git#0123abcd",
                "other 2.0.0 registry+https://my-registry.example.invalid/index",
            ]
        );
    }

    #[test]
    fn the_real_lockfile_is_crates_io_only() {
        let text = include_str!("../../Cargo.lock");
        assert_eq!(foreign_sources(text), Vec::<String>::new());
    }

    const DUPLICATE: &str = "\
error[duplicate]: found 2 duplicate entries for crate 'sha2'
  ┌─ /t/dup-crypto/Cargo.lock:2:1
advisories ok, bans FAILED, licenses ok, sources ok
";

    #[test]
    fn refused_for_the_right_reason() {
        let line = judge(&FIXTURES[1], false, DUPLICATE).expect("the right refusal");
        assert_eq!(
            line,
            "refused: error[duplicate]: found 2 duplicate entries for crate 'sha2'"
        );
    }

    #[test]
    fn fail_accepted_fixture() {
        let e = judge(&FIXTURES[1], true, "advisories ok, bans ok").unwrap_err();
        assert!(e.contains("accepted"), "{e}");
    }

    #[test]
    fn fail_refused_for_another_reason() {
        let output =
            format!("{DUPLICATE}error[rejected]: failed to satisfy license requirements\n");
        let e = judge(&FIXTURES[1], false, &output).unwrap_err();
        assert!(e.contains("error[rejected]"), "{e}");
        let e = judge(&FIXTURES[0], false, DUPLICATE).unwrap_err();
        assert!(e.contains("error[duplicate]"), "{e}");
    }

    #[test]
    fn accepted_as_expected() {
        let ok = "advisories ok, bans ok, licenses ok, sources ok\n";
        assert_eq!(judge(&FIXTURES[3], true, ok).as_deref(), Ok("accepted"));
        let e = judge(&FIXTURES[3], false, DUPLICATE).unwrap_err();
        assert!(e.contains("expected it to pass"), "{e}");
    }

    #[test]
    fn fail_refused_without_a_diagnostic() {
        let e = judge(&FIXTURES[2], false, "failed to load config\n").unwrap_err();
        assert!(e.contains("without"), "{e}");
    }

    #[test]
    fn fixtures_exist() {
        for f in FIXTURES {
            let dir = fixture_dir(f.name);
            assert!(dir.join("Cargo.toml").is_file(), "{}", dir.display());
            // The path-only fixtures are locked; git-dep's lock is made at run time.
            assert_eq!(
                dir.join("Cargo.lock").is_file(),
                !dir.join("dep").is_dir(),
                "{}",
                dir.display()
            );
        }
    }
}
