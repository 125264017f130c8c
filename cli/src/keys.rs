//! `sigil keygen`, `pubkey`, `fingerprint` and `derive`.

use std::path::PathBuf;

use clap::{Args, ValueEnum};
use sigil_core::keys::KeyFormat;
use sigil_core::{KeyError, OsRandom, SecretKey, kdf};

use crate::error::Failure;
use crate::input::{self, Source};
use crate::output;

/// Text form of keys written by sigil.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum)]
pub(crate) enum Format {
    /// base64 of the 32 raw bytes, as `wg genkey` and `wg pubkey` write
    #[default]
    Base64,
    /// PKCS#8 / SPKI PEM, as OpenSSL writes X25519 keys
    Pem,
}

impl From<Format> for KeyFormat {
    fn from(format: Format) -> KeyFormat {
        match format {
            Format::Base64 => KeyFormat::Base64,
            Format::Pem => KeyFormat::Pem,
        }
    }
}

/// Arguments of `sigil keygen`.
#[derive(Debug, Args)]
pub(crate) struct KeygenArgs {
    /// Write the secret to PATH (created 0600) and print the public key instead
    #[arg(long, value_name = "PATH")]
    out: Option<PathBuf>,
    /// Replace PATH if it exists (the old key is lost)
    #[arg(long, requires = "out")]
    force: bool,
    /// Text form of the keys written
    #[arg(long, value_enum, default_value_t)]
    format: Format,
}

/// Arguments of `sigil pubkey`.
#[derive(Debug, Args)]
pub(crate) struct PubkeyArgs {
    /// Secret key file, base64 or PEM (`-` or nothing: stdin)
    #[arg(value_name = "PATH|-")]
    secret: Option<PathBuf>,
    /// Text form of the public key printed
    #[arg(long, value_enum, default_value_t)]
    format: Format,
}

/// Arguments of `sigil fingerprint`.
#[derive(Debug, Args)]
pub(crate) struct FingerprintArgs {
    /// A public key: base64 inline, a file (base64 or PEM), or `-`/nothing for stdin
    #[arg(value_name = "PUBLIC|PATH|-")]
    public: Option<String>,
}

/// Arguments of `sigil derive`.
#[derive(Debug, Args)]
pub(crate) struct DeriveArgs {
    /// Your secret key file, base64 or PEM (`-`: stdin)
    #[arg(long, value_name = "PATH")]
    secret: PathBuf,
    /// The peer's public key: base64 inline, or a file (base64 or PEM)
    #[arg(long, value_name = "PUBLIC")]
    peer: String,
    /// HKDF info string, to derive separate keys for separate uses [default: "sigil/1 psk"]
    #[arg(long, value_name = "TEXT")]
    context: Option<String>,
}

/// `sigil keygen`: a new secret on stdout, or into a 0600 file with its
/// public key on stdout.
pub(crate) fn keygen(args: &KeygenArgs) -> Result<(), Failure> {
    let format = KeyFormat::from(args.format);
    let secret = SecretKey::generate(&mut OsRandom).map_err(Failure::runtime)?;
    match &args.out {
        None => output::stdout(&secret.to_text(format)),
        Some(path) => {
            output::secret_file(path, secret.to_text(format).as_bytes(), args.force)?;
            output::stdout(&public_text(&secret, format))
        }
    }
}

/// `sigil pubkey`: the public key of a secret key.
pub(crate) fn pubkey(args: &PubkeyArgs) -> Result<(), Failure> {
    let source = Source::from_arg(args.secret.as_deref());
    let secret = read_secret_key(&source)?;
    output::stdout(&public_text(&secret, args.format.into()))
}

/// `sigil fingerprint`: `SHA256:…` of a public key.
pub(crate) fn fingerprint(args: &FingerprintArgs) -> Result<(), Failure> {
    let public = input::public_key_arg(args.public.as_deref())?;
    output::stdout(&format!("{}\n", public.fingerprint()))
}

/// `sigil derive`: the pairwise key shared with a peer, in base64.
pub(crate) fn derive(args: &DeriveArgs) -> Result<(), Failure> {
    let source = Source::from_arg(Some(&args.secret));
    if source == Source::Stdin && args.peer == "-" {
        return Err(
            Failure::usage("--secret and --peer cannot both be read from stdin")
                .hint("give the peer's public key inline or as a file"),
        );
    }
    let secret = read_secret_key(&source)?;
    let peer = input::public_key_arg(Some(&args.peer))?;
    let context = args.context.as_deref().map(str::as_bytes);
    let key = kdf::pairwise_key(&secret, &peer, context).map_err(|err| match err {
        KeyError::NonContributory => Failure::runtime(
            "the peer's public key is of low order: Diffie-Hellman with it gives no shared secret",
        )
        .hint("check that --peer is the peer's real public key (as `sigil pubkey` prints it)"),
        other => Failure::runtime(other),
    })?;
    output::stdout(&key.to_base64_line())
}

/// The public key of `secret` as text ending in a newline.
fn public_text(secret: &SecretKey, format: KeyFormat) -> String {
    let mut text = secret.public_key().to_text(format);
    if !text.ends_with('\n') {
        text.push('\n');
    }
    text
}

/// Reads and parses a secret key, explaining a public key given by mistake.
pub(crate) fn read_secret_key(source: &Source) -> Result<SecretKey, Failure> {
    let text = input::read_secret(source)?;
    SecretKey::parse(&text).map_err(|err| match err {
        KeyError::WrongKind {
            found: "public", ..
        } => Failure::runtime(format_args!(
            "{} holds a public key, not a secret key",
            source.name()
        ))
        .hint("give the secret key file (as written by `sigil keygen --out`)"),
        other => Failure::runtime(format_args!("{}: {other}", source.name())),
    })
}
