//! Child processes that must not outlive their step.
//!
//! A [`Guard`] stops its process, and whatever that process started, when it
//! is dropped: on success, on an error returned early, and on a panic. And
//! [`run_streamed`] runs a command with its output shown live, hands every
//! line to a parser, and stops the command when it takes too long (a headless
//! browser that hangs must not hang CI).

use std::fs;
use std::io::{self, Read, Write};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::thread;
use std::time::{Duration, Instant};

use crate::ctx::{describe, fmt_duration};
use crate::results::Counts;

/// How long a process has to stop after SIGTERM before it gets SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(3);

/// How long the output of a command that has exited may stay open (held by
/// something it started and left behind) before we stop reading it.
const LINGER: Duration = Duration::from_secs(5);

/// A running child process that is stopped when the guard is dropped.
pub(crate) struct Guard {
    child: Child,
}

impl Guard {
    pub(crate) fn new(child: Child) -> Guard {
        Guard { child }
    }

    /// Its exit status if it has exited.
    pub(crate) fn try_wait(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// Waits until it exits.
    pub(crate) fn wait(&mut self) -> io::Result<ExitStatus> {
        self.child.wait()
    }

    /// Waits until it exits or `deadline` passes (then `None`).
    pub(crate) fn wait_until(&mut self, deadline: Instant) -> Option<ExitStatus> {
        loop {
            if let Some(status) = self.try_wait() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// Stops it, and everything it started: SIGTERM, then SIGKILL after a
    /// grace period. Does nothing if it has exited.
    pub(crate) fn stop(&mut self) {
        if self.try_wait().is_some() {
            return;
        }
        let pid = self.child.id();
        // Its children are reparented once it is gone, so find them first.
        let mut tree = descendants(pid);
        signal("TERM", &[pid]);
        signal("TERM", &tree);
        if self.wait_until(Instant::now() + STOP_GRACE).is_none() {
            tree.extend(descendants(pid));
            // Best effort: there is nothing more to do if SIGKILL fails.
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        // Anything left of the tree (pids are not reused within seconds).
        signal("KILL", &tree);
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Sends signal `sig` (`TERM`, `KILL`) to `pids` with the shell's `kill`
/// (std cannot signal other processes, and `/bin/kill` is not on every
/// machine). Errors are ignored: a process may have exited meanwhile.
fn signal(sig: &str, pids: &[u32]) {
    if pids.is_empty() {
        return;
    }
    let _ = Command::new("sh")
        .args(["-c", "kill -s \"$0\" \"$@\"", sig])
        .args(pids.iter().map(u32::to_string))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// The pids of every process below `root` in the process tree (from /proc;
/// empty where there is no /proc).
fn descendants(root: u32) -> Vec<u32> {
    let Ok(dir) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    let parents: Vec<(u32, u32)> = dir
        .filter_map(|entry| {
            let pid: u32 = entry.ok()?.file_name().to_str()?.parse().ok()?;
            let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            Some((pid, parent_pid(&stat)?))
        })
        .collect();
    let mut found = vec![root];
    let mut i = 0;
    while i < found.len() {
        let parent = found[i];
        found.extend(
            parents
                .iter()
                .filter(|&&(_, p)| p == parent)
                .map(|&(c, _)| c),
        );
        i += 1;
    }
    found.remove(0);
    found
}

/// The parent pid in the text of `/proc/PID/stat`: `pid (comm) state ppid …`,
/// where `comm` may hold spaces and parentheses.
fn parent_pid(stat: &str) -> Option<u32> {
    let (_, rest) = stat.rsplit_once(')')?;
    rest.split_whitespace().nth(1)?.parse().ok()
}

/// Runs `cmd` streamed (see [`run_streamed`]), adding the counts that
/// `parse` finds on its lines (a test runner's summary) to `counts`.
pub(crate) fn run_counted(
    cmd: Command,
    limit: Option<Duration>,
    parse: fn(&str) -> Option<Counts>,
    counts: &mut Counts,
) -> Result<(), String> {
    run_streamed(cmd, limit, &mut io::stdout(), |line| {
        *counts += parse(line).unwrap_or_default();
    })
}

/// Runs `cmd` with its stdout copied live to `out` and handed to `on_line`
/// line by line (stderr goes straight through); stops it (and what it
/// started) when it runs longer than `limit`. `Err` if it fails or is stopped.
pub(crate) fn run_streamed(
    mut cmd: Command,
    limit: Option<Duration>,
    out: &mut dyn Write,
    mut on_line: impl FnMut(&str),
) -> Result<(), String> {
    let what = describe(&cmd);
    let deadline = limit.map(|limit| Instant::now() + limit);
    let too_long = || {
        format!(
            "`{what}` did not finish within {}; stopped it",
            fmt_duration(limit.unwrap_or_default())
        )
    };
    let mut child = cmd
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start {what}: {e}"))?;
    let pipe = child.stdout.take().ok_or("no stdout pipe")?;
    let mut guard = Guard::new(child);
    let chunks = pump(pipe);

    // Pass bytes through as they come (a test that runs long still shows
    // `test name ... `), and parse whole lines on the side.
    let mut line = Vec::new();
    let mut exited_at = None;
    loop {
        if deadline.is_some_and(|d| Instant::now() >= d) {
            return Err(too_long());
        }
        match chunks.recv_timeout(Duration::from_millis(250)) {
            Ok(Ok(chunk)) => {
                // If our own stdout is gone there is no one to show it to;
                // keep reading so the child is not blocked.
                let _ = out.write_all(&chunk).and_then(|()| out.flush());
                for &b in &chunk {
                    if b == b'\n' {
                        on_line(&String::from_utf8_lossy(&line));
                        line.clear();
                    } else {
                        line.push(b);
                    }
                }
            }
            Ok(Err(e)) => return Err(format!("reading the output of `{what}`: {e}")),
            Err(RecvTimeoutError::Disconnected) => break,
            Err(RecvTimeoutError::Timeout) => {
                // Something it started may hold the pipe open after it exits.
                if exited_at.is_none() && guard.try_wait().is_some() {
                    exited_at = Some(Instant::now());
                }
                if exited_at.is_some_and(|at| at.elapsed() >= LINGER) {
                    break;
                }
            }
        }
    }
    if !line.is_empty() {
        on_line(&String::from_utf8_lossy(&line));
    }
    let status = match deadline {
        Some(deadline) => guard.wait_until(deadline).ok_or_else(too_long)?,
        None => guard
            .wait()
            .map_err(|e| format!("waiting for `{what}`: {e}"))?,
    };
    if status.success() {
        Ok(())
    } else {
        Err(format!("`{what}` failed ({status})"))
    }
}

/// Reads `pipe` on a thread of its own, sending each chunk read; the channel
/// closes at the end of the output.
fn pump(mut pipe: impl Read + Send + 'static) -> mpsc::Receiver<io::Result<Vec<u8>>> {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let mut buf = [0u8; 8192];
        loop {
            let sent = match pipe.read(&mut buf) {
                Ok(0) => return,
                Ok(n) => tx.send(Ok(buf[..n].to_vec())),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    let _ = tx.send(Err(e));
                    return;
                }
            };
            if sent.is_err() {
                return; // no one is listening any more
            }
        }
    });
    rx
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parent_pid_of_stat_lines() {
        assert_eq!(parent_pid("1234 (cargo) S 1200 1234 1200 0 -1"), Some(1200));
        // `comm` may hold spaces and parentheses.
        assert_eq!(parent_pid("77 (a (b) c) R 5 77 5 0"), Some(5));
        assert_eq!(parent_pid("garbage"), None);
    }

    #[test]
    fn descendants_of_a_shell() {
        let child = Command::new("sh")
            .args(["-c", "sleep 30 & sleep 30 & wait"])
            .spawn()
            .expect("sh starts");
        let pid = child.id();
        let mut guard = Guard::new(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while descendants(pid).len() < 2 && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(20));
        }
        let below = descendants(pid);
        assert_eq!(below.len(), 2, "{below:?}");
        guard.stop();
        assert!(guard.try_wait().is_some());
        thread::sleep(Duration::from_millis(100));
        for pid in below {
            let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            // Gone, or a zombie waiting for init to reap it.
            assert!(stat.is_empty() || stat.contains(") Z "), "{stat}");
        }
    }

    #[test]
    fn streamed_lines_and_failure() {
        let mut cmd = Command::new("sh");
        cmd.args(["-c", "printf 'a\\nb\\nlast'; exit 3"]);
        let mut lines = Vec::new();
        let mut out = Vec::new();
        let result = run_streamed(cmd, Some(Duration::from_secs(30)), &mut out, |l| {
            lines.push(l.to_owned());
        });
        assert_eq!(lines, ["a", "b", "last"]);
        assert_eq!(out, b"a\nb\nlast");
        assert!(result.is_err_and(|e| e.contains("failed")));
    }

    #[test]
    fn streamed_ends_when_a_leftover_holds_the_output() {
        let mut cmd = Command::new("sh");
        // The background sleep keeps the pipe open after sh exits.
        cmd.args(["-c", "sleep 8 & echo done"]);
        let started = Instant::now();
        let result = run_streamed(cmd, Some(Duration::from_secs(30)), &mut io::sink(), |_| {});
        assert_eq!(result, Ok(()));
        assert!(started.elapsed() < Duration::from_secs(8));
    }

    #[test]
    fn fail_streamed_past_its_limit() {
        let mut cmd = Command::new("sh");
        cmd.args(["-c", "echo started; sleep 30"]);
        let started = Instant::now();
        let result = run_streamed(cmd, Some(Duration::from_secs(1)), &mut io::sink(), |_| {});
        assert!(result.is_err_and(|e| e.contains("did not finish")));
        assert!(started.elapsed() < Duration::from_secs(15));
    }
}
