//! RPC calls per second over loopback WebSocket, sigil beside its peers,
//! and handshakes per second over loopback.
//!
//! Servers: `sigil serve --demo` (its own process, as users run it), the
//! raw echo and jsonrpsee's server (children of this program). Each
//! repetition runs every contender once, in turn, for [`BUDGET`].

use std::sync::Arc;
use std::time::Duration;

use sigil_client::{Client, ClientOptions};
use sigil_core::connection::ClientConnection;
use sigil_core::keys::{PublicKey, SecretKey};
use sigil_core::rpc::write_request;
use sigil_core::transport::FRAME_OVERHEAD;
use tokio::time::Instant;

use crate::load::{
    EchoProto, JsonRpcProto, Proto, Run, SigilProto, Ws, handle_loop, raw_loop, sigil_session,
    source, ws_connect,
};
use crate::procs::ServerProcess;
use crate::pyro::PYROS;
use crate::report::Report;

/// How long each contender runs in each repetition.
const BUDGET: Duration = Duration::from_secs(1);

pub(crate) const GROUP: &str = "RPC over loopback WebSocket, calls/s";
const LATENCY: &str = "sequential latency, µs (median run's p50 and p99)";
const PAYLOAD: &str = "RPC with a 16 KiB argument, sequential, calls/s";

/// The servers of the RPC rows.
pub(crate) struct Servers {
    pub(crate) sigil: ServerProcess,
    pub(crate) sigil_key: PublicKey,
    pub(crate) client_key: SecretKey,
    /// Every key the server authorises (the loopback handshakes take turns).
    pub(crate) client_keys: Vec<SecretKey>,
    pub(crate) echo: ServerProcess,
    pub(crate) jsonrpsee: ServerProcess,
    /// Pyro4 and Pyro5, where Python could run them.
    pub(crate) pyro: Option<crate::pyro::Pyro>,
}

/// How many connections, and calls in flight on each.
#[derive(Clone, Copy)]
struct Mode {
    label: &'static str,
    conns: usize,
    per_conn: usize,
}

const MODES: [Mode; 3] = [
    Mode {
        label: "sequential",
        conns: 1,
        per_conn: 1,
    },
    Mode {
        label: "64 in flight, 1 connection",
        conns: 1,
        per_conn: 64,
    },
    Mode {
        label: "16 connections × 4 in flight",
        conns: 16,
        per_conn: 4,
    },
];

/// The contenders, by the name their rows carry.
const SIGIL_CLIENT: &str = "sigil (sigil-client)";
const SIGIL_RAW: &str = "sigil (raw loop)";
const ECHO: &str = "raw echo, tokio-tungstenite (raw loop)";
const JSONRPSEE: &str = "jsonrpsee (its own client)";
const JSONRPSEE_RAW: &str = "jsonrpsee (raw loop)";

fn pyro_row(name: &str) -> String {
    if name == "Pyro4" {
        "Pyro4 with HMAC (Python)".to_owned()
    } else {
        format!("{name} (Python)")
    }
}

fn row(mode: &str, who: &str) -> String {
    format!("{mode}: {who}")
}

/// The sizes of a sigil call of `calculator.add(1, 2)` (or any call):
/// the request frame and the response frame, in bytes.
fn sigil_sizes(
    object: &str,
    method: &str,
    args: &serde_json::Value,
    result: &str,
) -> (usize, usize) {
    let id = 100_000u64;
    let mut req = Vec::new();
    write_request(&mut req, id, object, method, args, false).unwrap();
    let resp = format!(r#"{{"id":{id},"result":{result}}}"#);
    (req.len() + FRAME_OVERHEAD, resp.len() + FRAME_OVERHEAD)
}

impl Servers {
    pub(crate) async fn sigil_client(&self) -> Client {
        let key = SecretKey::from_bytes(&self.client_key.dangerous_to_bytes());
        let url = format!("ws://{}/sigil", self.sigil.addr);
        Client::connect(&url, ClientOptions::new(key, self.sigil_key))
            .await
            .unwrap()
    }

    async fn sigil_raw(&self, i: usize, args: &'static str) -> (Ws, SigilProto) {
        let (ws, conn): (Ws, ClientConnection) =
            sigil_session(source(i), self.sigil.addr, &self.client_key, self.sigil_key)
                .await
                .unwrap();
        (ws, SigilProto::new(conn, "calculator", "add", args))
    }

    async fn raw<P: Proto>(
        &self,
        addr: std::net::SocketAddr,
        path: &str,
        n: usize,
        proto: impl Fn() -> P,
    ) -> Vec<(Ws, P)> {
        let mut conns = Vec::new();
        for i in 0..n {
            let ws = ws_connect(source(i), addr, path, None).await.unwrap();
            conns.push((ws, proto()));
        }
        conns
    }

    /// One repetition of `who` in `mode`.
    async fn run(&self, who: &str, mode: Mode) -> Run {
        let Mode {
            conns, per_conn, ..
        } = mode;
        match who {
            SIGIL_CLIENT => {
                let mut clients = Vec::new();
                for _ in 0..conns {
                    clients.push(self.sigil_client().await);
                }
                let run = handle_loop(&clients, per_conn, BUDGET, |c: Client| async move {
                    c.call::<i64>("calculator", "add", (1, 2))
                        .await
                        .map(drop)
                        .map_err(|e| e.to_string())
                })
                .await;
                for c in clients {
                    c.close().await;
                }
                run
            }
            SIGIL_RAW => {
                let mut v = Vec::new();
                for i in 0..conns {
                    v.push(self.sigil_raw(i, "[1,2]").await);
                }
                raw_loop(v, per_conn, BUDGET).await
            }
            ECHO => {
                let (req, resp) = sigil_sizes("calculator", "add", &serde_json::json!([1, 2]), "3");
                let v = self
                    .raw(self.echo.addr, "/", conns, || EchoProto::new(req, resp))
                    .await;
                raw_loop(v, per_conn, BUDGET).await
            }
            JSONRPSEE => {
                let mut clients = Vec::new();
                for _ in 0..conns {
                    clients.push(
                        crate::peers::jsonrpsee_client(self.jsonrpsee.addr)
                            .await
                            .unwrap(),
                    );
                }
                handle_loop(&clients, per_conn, BUDGET, crate::peers::jsonrpsee_add).await
            }
            JSONRPSEE_RAW => {
                let v = self
                    .raw(self.jsonrpsee.addr, "/", conns, JsonRpcProto::default)
                    .await;
                raw_loop(v, per_conn, BUDGET).await
            }
            other => unreachable!("{other}"),
        }
    }
}

/// Prints a failed run's errors (a benchmark with failures is no benchmark).
fn check(who: &str, run: &Run) {
    if run.failed > 0 {
        println!(
            "  WARNING {who}: {} calls FAILED, first: {}",
            run.failed,
            run.first_error.as_deref().unwrap_or("?")
        );
    }
}

/// The RPC rows: every mode, every contender, `reps` times.
pub(crate) async fn rpc(servers: &Servers, reps: usize, report: &mut Report) {
    let who = [SIGIL_CLIENT, SIGIL_RAW, ECHO, JSONRPSEE, JSONRPSEE_RAW];
    // `SIGIL_BENCH_ROWS=TEXT`: only the rows whose names contain TEXT (to
    // profile one of them).
    let filter = std::env::var("SIGIL_BENCH_ROWS").ok();
    for rep in 0..reps {
        for mode in MODES {
            for w in who {
                if filter
                    .as_deref()
                    .is_some_and(|f| !row(mode.label, w).contains(f))
                {
                    continue;
                }
                let run = servers.run(w, mode).await;
                check(w, &run);
                report.sample(GROUP, &row(mode.label, w), "calls/s", run.per_s());
                if mode.per_conn * mode.conns == 1 {
                    report.sample(LATENCY, &format!("{w} p50"), "µs", run.p(0.5));
                    report.sample(LATENCY, &format!("{w} p99"), "µs", run.p(0.99));
                }
            }
        }
        if let Some(pyro) = servers.pyro.as_ref().filter(|_| filter.is_none()) {
            for name in PYROS {
                match pyro.calls(name, BUDGET.as_secs_f64()) {
                    Ok(per_s) => {
                        report.sample(GROUP, &row("sequential", &pyro_row(name)), "calls/s", per_s)
                    }
                    Err(e) => println!("  WARNING {name}: {e}"),
                }
            }
        }
        println!("  RPC repetition {} of {reps} done", rep + 1);
    }
    if filter.as_deref().is_none_or(|f| f.contains("16 KiB")) {
        payload_rows(servers, reps, report).await;
    }
    report.print_group(GROUP);
    report.print_group(LATENCY);
    report.print_group(PAYLOAD);
    for mode in MODES {
        let m = mode.label;
        let echo_goal = if mode.per_conn * mode.conns == 1 {
            1.0
        } else {
            0.85
        };
        report.ratio(
            &format!("{m}: sigil (sigil-client) / raw echo"),
            &row(m, SIGIL_CLIENT),
            &row(m, ECHO),
            Some(echo_goal),
        );
        report.ratio(
            &format!("{m}: sigil (raw loop) / raw echo"),
            &row(m, SIGIL_RAW),
            &row(m, ECHO),
            None,
        );
        report.ratio(
            &format!("{m}: sigil (sigil-client) / jsonrpsee (its client)"),
            &row(m, SIGIL_CLIENT),
            &row(m, JSONRPSEE),
            (mode.per_conn * mode.conns > 1).then_some(1.5),
        );
        report.ratio(
            &format!("{m}: sigil (raw loop) / jsonrpsee (raw loop)"),
            &row(m, SIGIL_RAW),
            &row(m, JSONRPSEE_RAW),
            None,
        );
    }
    if servers.pyro.is_some() {
        for name in PYROS {
            report.ratio(
                &format!("sequential: sigil (sigil-client) / {}", pyro_row(name)),
                &row("sequential", SIGIL_CLIENT),
                &row("sequential", &pyro_row(name)),
                None,
            );
        }
    }
    report.ratio(
        "16 KiB argument: sigil (sigil-client) / raw echo",
        &format!("16 KiB: {SIGIL_CLIENT}"),
        &format!("16 KiB: {ECHO}"),
        None,
    );
}

/// Sequential calls of `echo.echo` with a 16 KiB string, against the raw
/// echo of the same sizes: what a byte of payload costs.
async fn payload_rows(servers: &Servers, reps: usize, report: &mut Report) {
    let text = "x".repeat(16 * 1024);
    let arg = serde_json::json!([text]);
    let (req, resp) = sigil_sizes("echo", "echo", &arg, &serde_json::to_string(&text).unwrap());
    for _ in 0..reps {
        let c = servers.sigil_client().await;
        let arg = Arc::new(text.clone());
        let run = handle_loop(std::slice::from_ref(&c), 1, BUDGET, move |c: Client| {
            let arg = arg.clone();
            async move {
                let back: String = c
                    .call("echo", "echo", (&*arg,))
                    .await
                    .map_err(|e| e.to_string())?;
                if back.len() == arg.len() {
                    Ok(())
                } else {
                    Err("short echo".into())
                }
            }
        })
        .await;
        check(SIGIL_CLIENT, &run);
        c.close().await;
        report.sample(
            PAYLOAD,
            &format!("16 KiB: {SIGIL_CLIENT}"),
            "calls/s",
            run.per_s(),
        );
        let v = servers
            .raw(servers.echo.addr, "/", 1, || EchoProto::new(req, resp))
            .await;
        let run = raw_loop(v, 1, BUDGET).await;
        check(ECHO, &run);
        report.sample(PAYLOAD, &format!("16 KiB: {ECHO}"), "calls/s", run.per_s());
    }
}

/// Handshakes per second over loopback: `connectors` tasks each
/// connecting (TCP, upgrade, handshake) and closing, one after another;
/// and the CPU time both processes spent per handshake.
pub(crate) async fn handshakes(
    servers: &Servers,
    connectors: usize,
    reps: usize,
    floor_us: f64,
    report: &mut Report,
) {
    const G: &str = "handshakes over loopback (sigil-client connect + close, 4 connectors)";
    let url = format!("ws://{}/sigil", servers.sigil.addr);
    for _ in 0..reps {
        let cpu0 = (crate::flood::process_cpu(), servers.sigil.cpu());
        let start = Instant::now();
        let until = start + BUDGET;
        let mut set = tokio::task::JoinSet::new();
        for c in 0..connectors {
            let url = url.clone();
            // Each connector its own key: the replay cache gives one key a
            // 64th of its room.
            let key = servers.client_keys[c % servers.client_keys.len()].dangerous_to_bytes();
            let server = servers.sigil_key;
            set.spawn(async move {
                let mut n = 0u64;
                let mut failed = None;
                while Instant::now() < until {
                    let options = ClientOptions::new(SecretKey::from_bytes(&key), server);
                    match Client::connect(&url, options).await {
                        Ok(c) => {
                            c.close().await;
                            n += 1;
                        }
                        Err(e) => {
                            failed.get_or_insert(e.to_string());
                        }
                    }
                }
                (n, failed)
            });
        }
        let mut n = 0;
        while let Some(done) = set.join_next().await {
            let (k, failed) = done.unwrap();
            n += k;
            if let Some(e) = failed {
                println!("  WARNING handshakes over loopback: a connect FAILED: {e}");
            }
        }
        let secs = start.elapsed().as_secs_f64();
        let cpu1 = (crate::flood::process_cpu(), servers.sigil.cpu());
        report.sample(G, "handshakes/s", "1/s", n as f64 / secs);
        if let ((Some(b0), Some(s0)), (Some(b1), Some(s1))) = (cpu0, cpu1) {
            let server = (s1 - s0).as_secs_f64() * 1e6 / n as f64;
            let client = (b1 - b0).as_secs_f64() * 1e6 / n as f64;
            report.sample(G, "server CPU per handshake", "µs", server);
            report.sample(G, "client CPU per handshake", "µs", client);
            report.sample(
                G,
                "CPU per handshake beyond the X25519 floor",
                "µs",
                server + client - floor_us,
            );
        }
    }
    report.print_group(G);
    println!("  (X25519 floor, both sides: {floor_us:.0} µs per handshake)");
}
