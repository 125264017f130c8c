//! `sigil`: keys, fingerprints, pairwise keys and configuration from the
//! command line; a server (`sigil serve`) and single calls to one (`sigil call`).
//!
//! Exit codes: 0 on success, 1 when something fails while running (I/O, a bad
//! key file, a refused key or handshake, a call that failed on the server, a
//! port in use), 2 for usage and configuration errors. Errors are
//! one or two plain lines on stderr: what is wrong, then what to do.

mod call;
mod call_tls;
mod check;
mod config;
mod error;
mod input;
mod keys;
mod output;
mod serve;
mod web;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Keys, configuration, a server and calls for sigil, the authenticated RPC toolkit.
#[derive(Parser)]
#[command(name = "sigil", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Make a new secret key (stdout, as `wg genkey`, or a 0600 file with --out)
    Keygen(keys::KeygenArgs),
    /// Read a secret key (base64 or PEM) and print its public key (as `wg pubkey`)
    Pubkey(keys::PubkeyArgs),
    /// Print the SHA256 fingerprint of a public key
    Fingerprint(keys::FingerprintArgs),
    /// Derive the pairwise key shared with a peer, without talking to it
    Derive(keys::DeriveArgs),
    /// Inspect the resolved configuration
    #[command(subcommand)]
    Config(config::ConfigCommand),
    /// Serve the built-in object (and the demo objects with --demo) until Ctrl-C
    Serve(serve::ServeArgs),
    /// Call one method of a sigil server and print its result as JSON
    Call(call::CallArgs),
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) => {
            // Help and version exit 0, usage errors 2 (clap's own codes).
            let _ = err.print();
            return ExitCode::from(u8::try_from(err.exit_code()).unwrap_or(2));
        }
    };
    let result = match cli.command {
        Command::Keygen(args) => keys::keygen(&args),
        Command::Pubkey(args) => keys::pubkey(&args),
        Command::Fingerprint(args) => keys::fingerprint(&args),
        Command::Derive(args) => keys::derive(&args),
        Command::Config(cmd) => config::run(&cmd),
        Command::Serve(args) => serve::serve(&args),
        Command::Call(args) => call::call(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => failure.report(),
    }
}
