//! Pyro4 (with HMAC, as sigil's users run it today) and Pyro5, in a
//! virtualenv this benchmark makes (`target/bench/pyro-venv`, with pip
//! from PyPI), sequential calls of `add(1, 2)` over loopback. Each server
//! is a Python process of its own, and each repetition's client another.
//! Without Python, venv or pip, the rows are skipped with the reason.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::procs::ServerProcess;

/// The script that serves and calls (next to this file).
const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/bench/pyro_bench.py");

pub(crate) const PYROS: [&str; 2] = ["Pyro4", "Pyro5"];

/// Running Pyro servers and the Python that runs them.
pub(crate) struct Pyro {
    python: PathBuf,
    servers: Vec<(&'static str, ServerProcess)>,
}

/// Runs `cmd` quietly; its stderr's last line if it fails.
fn quiet(cmd: &mut Command) -> Result<(), String> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("{:?}: {e}", cmd.get_program()))?;
    if out.status.success() {
        return Ok(());
    }
    let err = String::from_utf8_lossy(&out.stderr);
    Err(format!(
        "{:?} failed: {}",
        cmd.get_program(),
        err.lines().last().unwrap_or("(no output)")
    ))
}

/// The venv's python, with Pyro4 and Pyro5 installed (made if missing).
fn venv(dir: &Path) -> Result<PathBuf, String> {
    let python = dir.join("bin").join("python");
    let has_pyro = |py: &Path| quiet(Command::new(py).args(["-c", "import Pyro4, Pyro5"])).is_ok();
    if python.exists() && has_pyro(&python) {
        return Ok(python);
    }
    quiet(Command::new("python3").arg("-m").arg("venv").arg(dir))?;
    quiet(Command::new(dir.join("bin").join("pip")).args([
        "install",
        "--quiet",
        "--disable-pip-version-check",
        "Pyro4",
        "Pyro5",
    ]))?;
    if has_pyro(&python) {
        Ok(python)
    } else {
        Err("Pyro4 or Pyro5 does not import after pip install".into())
    }
}

impl Pyro {
    /// Makes the venv and starts both servers.
    pub(crate) fn start(bench_dir: &Path) -> Result<Pyro, String> {
        let python = venv(&bench_dir.join("pyro-venv"))?;
        let mut servers = Vec::new();
        for name in PYROS {
            let mut cmd = Command::new(&python);
            cmd.args([SCRIPT, "serve", name]);
            let log = bench_dir.join(format!("{name}.log"));
            servers.push((name, ServerProcess::start_text(cmd, &log, "uri: ")?));
        }
        Ok(Pyro { python, servers })
    }

    /// One repetition: `seconds` of sequential calls to `name`, calls/s.
    pub(crate) fn calls(&self, name: &str, seconds: f64) -> Result<f64, String> {
        let (_, server) = self
            .servers
            .iter()
            .find(|(n, _)| *n == name)
            .ok_or("no such Pyro")?;
        let uri = server.text.as_deref().ok_or("no URI")?;
        let out = Command::new(&self.python)
            .args([SCRIPT, "call", name, uri, &seconds.to_string()])
            .stdin(Stdio::null())
            .output()
            .map_err(|e| e.to_string())?;
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .map_err(|_| {
                let err = String::from_utf8_lossy(&out.stderr);
                format!(
                    "{name} client: {}",
                    err.lines().last().unwrap_or("no output")
                )
            })
    }
}
