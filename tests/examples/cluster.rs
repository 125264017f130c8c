//! A sigil cluster on loopback for a person to try (`cargo xtask cluster`):
//! Redis, two `sigil serve --demo` instances sharing it as their replay
//! store, and nginx balancing WebSocket upgrades between them, all on ports
//! chosen at run time. Prints how to reach it; Ctrl-C (or SIGTERM) stops
//! every process and removes its files.
//!
//! usage: cluster --sigil PATH [--instances N]

use std::path::PathBuf;
use std::process::{Command, ExitCode};

use sigil_tests::cluster::{Cluster, ClusterOptions};
use tokio::signal::unix::{SignalKind, signal};

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("cluster: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<(), String> {
    let mut sigil = None;
    let mut instances = 2usize;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--sigil" => sigil = args.next().map(PathBuf::from),
            "--instances" => {
                instances = args
                    .next()
                    .and_then(|n| n.parse().ok())
                    .filter(|n| (1..=8).contains(n))
                    .ok_or("--instances takes a number from 1 to 8")?;
            }
            other => return Err(format!("unknown argument {other}")),
        }
    }
    let sigil = sigil.ok_or("usage: cluster --sigil PATH [--instances N]")?;
    let sigil = std::fs::canonicalize(&sigil)
        .map_err(|e| format!("no sigil binary at {}: {e}", sigil.display()))?;
    let dir = tempfile::Builder::new()
        .prefix("sigil-cluster-")
        .tempdir()
        .map_err(|e| format!("cannot make a folder: {e}"))?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start: {e}"))?;
    // Catch the signals before anything starts, so that a Ctrl-C during
    // the start still stops everything.
    let (mut interrupt, mut terminate) = runtime
        .block_on(async {
            Ok::<_, std::io::Error>((
                signal(SignalKind::interrupt())?,
                signal(SignalKind::terminate())?,
            ))
        })
        .map_err(|e| format!("cannot catch signals: {e}"))?;

    let client_key = dir.path().join("client.key");
    let made = Command::new(&sigil)
        .args(["keygen", "--out"])
        .arg(&client_key)
        .output()
        .map_err(|e| format!("cannot run {}: {e}", sigil.display()))?;
    if !made.status.success() {
        return Err(String::from_utf8_lossy(&made.stderr).into_owned());
    }
    let cluster = Cluster::start(
        dir.path(),
        &ClusterOptions {
            sigil: sigil.clone(),
            instances,
            authorized_keys: None,
            extra_config: String::new(),
            shared_store: true,
        },
    );
    println!(
        "cluster: {} instances of one service behind nginx, sharing a Redis replay store\n",
        cluster.instances.len()
    );
    println!("url: {}", cluster.url());
    println!("public key: {}", cluster.public_key);
    println!(
        "web demo: http://127.0.0.1:{}/ (if web/pkg is built)",
        cluster.port
    );
    println!(
        "redis: redis://127.0.0.1:{}/0 (replay_store of every instance)",
        cluster.redis.port()
    );
    for instance in &cluster.instances {
        println!(
            "instance {}: 127.0.0.1:{} (pid {}), metrics http://{}/metrics",
            instance.name,
            instance.port,
            instance.pid(),
            instance.metrics
        );
    }
    println!(
        "\ntry, a few times (nginx alternates between the instances):\n  {} call {} instance name --server-key {} --key {}",
        sigil.display(),
        cluster.url(),
        cluster.public_key,
        client_key.display()
    );
    println!(
        "files and logs: {}\n\nCtrl-C stops everything.",
        cluster.dir().display()
    );
    runtime.block_on(async {
        tokio::select! {
            _ = interrupt.recv() => {}
            _ = terminate.recv() => {}
        }
    });
    drop(cluster);
    println!("stopped");
    Ok(())
}
