//! Where the workspace is and how to start processes in it.
//!
//! Every child process starts in the workspace root, with no standard input
//! (so nothing can prompt, under CI or not) and with cargo's `bin` folder on
//! `PATH` (so tools that `cargo install` just put there are found).

use std::env;
use std::ffi::{OsStr, OsString};
use std::fs::{self, File};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// What every task needs to know about the machine and the checkout.
pub(crate) struct Ctx {
    /// The workspace root (the folder with the root `Cargo.toml`).
    pub(crate) root: PathBuf,
    /// The cargo that runs us (`$CARGO`), so children use the same toolchain.
    cargo: OsString,
    /// `PATH` for children: ours, with cargo's `bin` folder added if missing.
    path: OsString,
}

impl Ctx {
    /// Finds the workspace root and prepares `PATH`.
    pub(crate) fn new() -> Result<Ctx, String> {
        // `cargo run` sets CARGO_MANIFEST_DIR at run time too; the compile-time
        // value is the fallback when the binary is started by hand.
        let manifest_dir = env::var_os("CARGO_MANIFEST_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")));
        let root = manifest_dir
            .parent()
            .ok_or("xtask's manifest folder has no parent")?
            .to_path_buf();
        let cargo = env::var_os("CARGO").unwrap_or_else(|| "cargo".into());

        let mut dirs: Vec<PathBuf> = env::var_os("PATH")
            .map(|p| env::split_paths(&p).collect())
            .unwrap_or_default();
        if let Some(bin) = cargo_bin_dir()
            && !dirs.contains(&bin)
        {
            dirs.insert(0, bin);
        }
        let path = env::join_paths(dirs).map_err(|e| format!("bad PATH: {e}"))?;
        Ok(Ctx { root, cargo, path })
    }

    /// A command for `program`, started in the workspace root with no stdin.
    pub(crate) fn cmd(&self, program: impl AsRef<OsStr>) -> Command {
        let mut cmd = Command::new(program);
        cmd.current_dir(&self.root)
            .env("PATH", &self.path)
            .stdin(Stdio::null());
        cmd
    }

    /// `cargo ARGS…`, with the cargo that runs us.
    pub(crate) fn cargo<I, S>(&self, args: I) -> Command
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut cmd = self.cmd(&self.cargo);
        cmd.args(args);
        cmd
    }

    /// The full path of `bin` if it is on `PATH`.
    pub(crate) fn which(&self, bin: &str) -> Option<PathBuf> {
        env::split_paths(&self.path)
            .map(|dir| dir.join(bin))
            .find(|p| is_executable(p))
    }

    /// Runs `cmd` and returns its stdout if it exits successfully.
    pub(crate) fn output(&self, mut cmd: Command) -> Option<String> {
        let out = cmd.stderr(Stdio::null()).output().ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Cargo's target folder: `$CARGO_TARGET_DIR` (relative to the
    /// workspace root) or `target/`.
    pub(crate) fn target_dir(&self) -> PathBuf {
        match env::var_os("CARGO_TARGET_DIR") {
            // `join` keeps an absolute path as it is.
            Some(dir) if !dir.is_empty() => self.root.join(dir),
            _ => self.root.join("target"),
        }
    }

    /// A new (truncated) log file `NAME.log` under `target/xtask/`.
    pub(crate) fn log_file(&self, name: &str) -> Result<(PathBuf, File), String> {
        let dir = self.target_dir().join("xtask");
        fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        let log = dir.join(format!("{name}.log"));
        let file =
            File::create(&log).map_err(|e| format!("cannot create {}: {e}", log.display()))?;
        Ok((log, file))
    }

    /// Runs `cmd` with its output going to a log file under `target/xtask/`
    /// (installs are long and noisy). On failure, the error holds the end of the log.
    pub(crate) fn run_logged(&self, mut cmd: Command, log_name: &str) -> Result<Duration, String> {
        let (log, file) = self.log_file(log_name)?;
        let file2 = file
            .try_clone()
            .map_err(|e| format!("cannot open {}: {e}", log.display()))?;
        let started = Instant::now();
        let status = cmd
            .stdout(file)
            .stderr(file2)
            .status()
            .map_err(|e| format!("cannot start {}: {e}", describe(&cmd)))?;
        if status.success() {
            return Ok(started.elapsed());
        }
        Err(format!(
            "`{}` failed ({status}); its last lines:\n{}\nfull log: {}",
            describe(&cmd),
            tail(&log, 30),
            log.display()
        ))
    }

    /// Runs `cmd` with its output shown live; `Err` if it does not succeed.
    pub(crate) fn run_live(&self, mut cmd: Command) -> Result<(), String> {
        let status = cmd
            .status()
            .map_err(|e| format!("cannot start {}: {e}", describe(&cmd)))?;
        if status.success() {
            Ok(())
        } else {
            Err(format!("`{}` failed ({status})", describe(&cmd)))
        }
    }
}

/// A command's exit: success, or its error on stderr and failure.
pub(crate) fn exit_code(result: Result<(), String>) -> std::process::ExitCode {
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// `$CARGO_HOME`, or `~/.cargo`: where cargo keeps the registry's sources.
pub(crate) fn cargo_home() -> Option<PathBuf> {
    env::var_os("CARGO_HOME")
        .filter(|h| !h.is_empty())
        .map(PathBuf::from)
        .or_else(|| env::var_os("HOME").map(|h| Path::new(&h).join(".cargo")))
}

/// `$CARGO_HOME/bin`, or `~/.cargo/bin`: where `cargo install` puts binaries.
fn cargo_bin_dir() -> Option<PathBuf> {
    Some(cargo_home()?.join("bin"))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// The command line of `cmd`, for messages (program name without its folder).
/// Runs `cmd` to completion and returns its standard output (with the
/// command line, for messages); an error says what failed and what it
/// printed on stderr.
pub(crate) fn checked_output(mut cmd: Command) -> Result<(String, Vec<u8>), String> {
    let line = describe(&cmd);
    let out = cmd
        .output()
        .map_err(|e| format!("cannot start {line}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "`{line}` failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok((line, out.stdout))
}

pub(crate) fn describe(cmd: &Command) -> String {
    let program = Path::new(cmd.get_program())
        .file_name()
        .unwrap_or(cmd.get_program())
        .to_string_lossy()
        .into_owned();
    let mut parts = vec![program];
    parts.extend(cmd.get_args().map(|a| a.to_string_lossy().into_owned()));
    parts.join(" ")
}

/// Prints `$ command` (with the environment variables set on it, but `PATH`)
/// and hands the command back.
pub(crate) fn header(cmd: Command) -> Command {
    let env: String = cmd
        .get_envs()
        .filter(|(k, _)| *k != "PATH")
        .filter_map(|(k, v)| Some(format!("{}={} ", k.to_string_lossy(), v?.to_string_lossy())))
        .collect();
    println!("$ {env}{}", describe(&cmd));
    cmd
}

/// The last `lines` lines of the file at `log`, indented.
pub(crate) fn tail(log: &Path, lines: usize) -> String {
    let Ok(file) = File::open(log) else {
        return String::new();
    };
    let all: Vec<String> = BufReader::new(file).lines().map_while(Result::ok).collect();
    all[all.len().saturating_sub(lines)..]
        .iter()
        .map(|l| format!("    | {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// `1.2s`, or `3m04s` past a minute.
pub(crate) fn fmt_duration(d: Duration) -> String {
    let secs = d.as_secs_f64();
    if secs < 60.0 {
        format!("{secs:.1}s")
    } else {
        let whole = d.as_secs();
        format!("{}m{:02}s", whole / 60, whole % 60)
    }
}

/// Whether we run as root (and so may use apt-get).
pub(crate) fn is_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    // /proc/self belongs to the effective user of the process reading it.
    fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}
