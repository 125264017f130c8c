//! Memory per session: the resident memory (`VmRSS`) of a fresh `sigil
//! serve` process with no session, with 1,000 and 10,000 idle
//! authenticated sessions (handshake and one call each, then nothing),
//! and after they all closed.
//!
//! The sessions come from this process, from 64 loopback addresses (see
//! `load::source`) so that no address runs out of ephemeral ports; both
//! processes need about 10,000 file descriptors (`main` raises the soft
//! limit to the hard one; the server inherits it).

use std::time::Duration;

use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::load::{SigilProto, Ws, sigil_session, source};
use crate::procs::SigilSetup;
use crate::report::Report;

const GROUP: &str = "memory of sigil serve (VmRSS)";
/// Handshakes going on at once while the sessions are opened.
const CONNECTORS: usize = 32;
/// How long the server may take to notice that every session closed.
const CLOSE_WAIT: Duration = Duration::from_secs(20);

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

/// Opens sessions `from..to` on `server` and makes one call on each.
async fn open(
    setup: &SigilSetup,
    server: &crate::procs::ServerProcess,
    from: usize,
    to: usize,
    sessions: &mut Vec<Ws>,
) -> Result<(), String> {
    let addr = server.addr;
    let server_key = server.public_key.ok_or("no server key")?;
    let mut set = JoinSet::new();
    for i in from..to {
        if set.len() >= CONNECTORS
            && let Some(done) = set.join_next().await
        {
            sessions.push(done.map_err(|e| e.to_string())??);
        }
        let key = setup.clients[i % setup.clients.len()].dangerous_to_bytes();
        set.spawn(async move {
            let key = sigil_core::keys::SecretKey::from_bytes(&key);
            let (mut ws, conn) = sigil_session(source(i + 1), addr, &key, server_key).await?;
            SigilProto::new(conn, "calculator", "add", "[1,2]")
                .call_once(&mut ws)
                .await?;
            Ok::<Ws, String>(ws)
        });
    }
    while let Some(done) = set.join_next().await {
        sessions.push(done.map_err(|e| e.to_string())??);
    }
    Ok(())
}

/// The session rows (skipped, with the reason, when they cannot run).
pub(crate) async fn sessions(setup: &SigilSetup, report: &mut Report, counts: &[usize]) {
    let need = counts.iter().max().copied().unwrap_or(0) as u64 + 1024;
    let (soft, _) = rlimit::getrlimit(rlimit::Resource::NOFILE).unwrap_or((0, 0));
    if soft < need {
        report.skip(
            GROUP,
            &format!("{need} file descriptors needed, the limit is {soft}"),
        );
        return;
    }
    let server = match setup.serve() {
        Ok(s) => s,
        Err(e) => return report.skip(GROUP, &e),
    };
    // Let the server settle before the empty reading.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let empty = server.rss().unwrap_or(0);
    let fds_empty = server.open_fds().unwrap_or(0);
    report.sample(GROUP, "0 sessions", "MiB", mib(empty));
    let mut sessions = Vec::new();
    let mut per_session = f64::NAN;
    let mut peak = 0;
    let mut from = 0;
    for &n in counts {
        let t = Instant::now();
        if let Err(e) = open(setup, &server, from, n, &mut sessions).await {
            return report.skip(GROUP, &format!("opening {n} sessions: {e}"));
        }
        let rate = (n - from) as f64 / t.elapsed().as_secs_f64();
        from = n;
        tokio::time::sleep(Duration::from_millis(300)).await;
        let rss = server.rss().unwrap_or(0);
        peak = rss;
        per_session = rss.saturating_sub(empty) as f64 / n as f64 / 1024.0;
        report.sample(GROUP, &format!("{n} idle sessions"), "MiB", mib(rss));
        report.sample(
            GROUP,
            &format!("{n} idle sessions: per session"),
            "KiB",
            per_session,
        );
        report.sample(
            GROUP,
            &format!("{n} idle sessions: opened at"),
            "sessions/s",
            rate,
        );
    }
    // Close them all (the server sees each TCP connection end), then wait
    // until the server holds no more descriptors than when it was empty.
    drop(sessions);
    let t = Instant::now();
    while server.open_fds().unwrap_or(0) > fds_empty && t.elapsed() < CLOSE_WAIT {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let closed_in = t.elapsed();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let after = server.rss().unwrap_or(0);
    report.sample(GROUP, "after they all closed", "MiB", mib(after));
    report.sample(
        GROUP,
        "after they all closed, × empty",
        "×",
        after as f64 / empty as f64,
    );
    report.print_group(GROUP);
    let n = counts.last().copied().unwrap_or(0);
    report.at_most(
        &format!("memory: KiB per session at {n} sessions"),
        per_session,
        10.0,
    );
    report.at_most(&format!("memory: MiB at {n} sessions"), mib(peak), 100.0);
    report.at_most(
        "memory: after closing, × the empty server",
        after as f64 / empty as f64,
        2.0,
    );
    println!(
        "  (the server closed them all in {:.1} s)",
        closed_in.as_secs_f64()
    );
}
