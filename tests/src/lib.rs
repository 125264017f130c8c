//! Cross-crate integration tests for sigil live in `tests/tests/`.
//!
//! This library holds what tests share across crates ([`certs`]: TLS
//! certificates made at run time; [`services`]: Redis and nginx, which the
//! tests start themselves; [`cluster`]: instances behind nginx sharing a
//! Redis). It also exists so that every Rust example
//! in the book (`book/src/*.md`) is compiled and run as a doctest by
//! `cargo test --doc -p sigil-tests`: each chapter is included below as the
//! documentation of a private item that exists only under `cfg(doctest)`.

pub mod certs;
pub mod cluster;
pub mod services;

/// The "Keys and provisioning" chapter.
#[cfg(doctest)]
#[doc = include_str!("../../book/src/keys.md")]
struct BookKeys;

/// The "Configuration" chapter.
#[cfg(doctest)]
#[doc = include_str!("../../book/src/configuration.md")]
struct BookConfiguration;

/// The "sigil/1 protocol" chapter.
#[cfg(doctest)]
#[doc = include_str!("../../book/src/protocol.md")]
struct BookProtocol;

/// The "Serving objects" chapter.
#[cfg(doctest)]
#[doc = include_str!("../../book/src/serving.md")]
struct BookServing;

/// The "TLS and client certificates" chapter.
#[cfg(doctest)]
#[doc = include_str!("../../book/src/tls.md")]
struct BookTls;

/// The "Threat model and hardening" chapter.
#[cfg(doctest)]
#[doc = include_str!("../../book/src/hardening.md")]
struct BookHardening;

/// The "Calling from Rust and from the shell" chapter.
#[cfg(doctest)]
#[doc = include_str!("../../book/src/calling.md")]
struct BookCalling;

/// The "Streams and live data" chapter.
#[cfg(doctest)]
#[doc = include_str!("../../book/src/streams.md")]
struct BookStreams;
/// The "Using sigil in your project" chapter.
#[cfg(doctest)]
#[doc = include_str!("../../book/src/using.md")]
struct BookUsing;
/// The "Operating sigil" chapter.
#[cfg(doctest)]
#[doc = include_str!("../../book/src/operating.md")]
struct BookOperating;

/// The "Scaling out" chapter.
#[cfg(doctest)]
#[doc = include_str!("../../book/src/scaling.md")]
struct BookScaling;
