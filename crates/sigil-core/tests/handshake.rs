//! The sigil/1 state machines driven by an in-memory client/server pair with
//! a virtual clock: successes, every refusal, replays, and tampering.

#![allow(clippy::unwrap_used)] // test helpers panic on failure by design

use proptest::prelude::*;
use sha2::{Digest, Sha256};
use sigil_core::handshake::{
    ClientAuth, ClientConfig, ClientHandshake, HandshakeError, Limits, Refusal, RefusalCode,
    RefusalDetail, ServerConfig, accept_hello, verify_hello,
};
use sigil_core::keys::{SecretKey, SymmetricKey};
use sigil_core::rand::{RandomError, RandomSource};
use sigil_core::replay::{ReplayCache, ReplayEntry, ReplayVerdict};
use sigil_core::transport::{FrameError, Session};

/// A deterministic random source for tests: SHA-256 of a seed and a counter.
struct TestRng(u64, u64);

impl RandomSource for TestRng {
    fn fill(&mut self, dest: &mut [u8]) -> Result<(), RandomError> {
        for chunk in dest.chunks_mut(32) {
            self.1 += 1;
            let block = Sha256::new()
                .chain_update(self.0.to_be_bytes())
                .chain_update(self.1.to_be_bytes())
                .finalize();
            chunk.copy_from_slice(&block[..chunk.len()]);
        }
        Ok(())
    }
}

const T0: u64 = 1_795_000_000_000;

/// An in-memory client and server with a virtual clock and a shared replay cache.
struct Pair {
    rng: TestRng,
    now: u64,
    server: ServerConfig,
    client: ClientConfig,
    replay: ReplayCache,
}

impl Pair {
    fn new(seed: u64) -> Pair {
        let mut rng = TestRng(seed, 0);
        let server_key = SecretKey::generate(&mut rng).unwrap();
        let client_key = SecretKey::generate(&mut rng).unwrap();
        let client = ClientConfig::new(client_key, server_key.public_key()).unwrap();
        let server =
            ServerConfig::new(server_key, ClientAuth::Keys(vec![client.public_key()])).unwrap();
        Pair {
            rng,
            now: T0,
            server,
            client,
            replay: ReplayCache::new(1024, 60_000),
        }
    }

    fn hello(&mut self, payload: Option<&str>) -> (ClientHandshake, Vec<u8>) {
        ClientHandshake::start(&self.client, &mut self.rng, self.now, payload).unwrap()
    }

    fn server_answer(
        &mut self,
        msg1: &[u8],
        response: Option<&str>,
    ) -> Result<(Vec<u8>, Session), Refusal> {
        let hello = accept_hello(&self.server, &mut self.replay, self.now, msg1)?;
        Ok(hello.accept(&mut self.rng, response).unwrap())
    }

    /// A whole handshake; panics unless it succeeds.
    fn connect(&mut self) -> (Session, Session) {
        let (hs, msg1) = self.hello(Some(r#"{"hi":1}"#));
        let (msg2, server) = self.server_answer(&msg1, Some(r#"{"ok":true}"#)).unwrap();
        let (client, payload) = hs.finish(&msg2).unwrap();
        assert_eq!(payload.as_deref(), Some(r#"{"ok":true}"#));
        assert_eq!(client.session_hash(), server.session_hash());
        (client, server)
    }

    fn refusal(&mut self, msg1: &[u8]) -> Refusal {
        match accept_hello(&self.server, &mut self.replay, self.now, msg1) {
            Err(r) => r,
            Ok(_) => panic!("hello was accepted"),
        }
    }
}

/// The secret key of the client of `Pair::new(seed)` (the second key its
/// random source makes).
fn client_secret(seed: u64) -> SecretKey {
    let mut rng = TestRng(seed, 0);
    SecretKey::generate(&mut rng).unwrap();
    SecretKey::generate(&mut rng).unwrap()
}

/// A second handle on the same secret key.
trait CopyKey {
    fn copy(&self) -> SecretKey;
}

impl CopyKey for SecretKey {
    fn copy(&self) -> SecretKey {
        SecretKey::from_bytes(&self.dangerous_to_bytes())
    }
}

fn assert_generic(r: &Refusal, detail: RefusalDetail) {
    assert_eq!(r.code(), RefusalCode::HandshakeFailed);
    assert_eq!(r.reason(), "handshake failed");
    assert_eq!(r.detail(), detail);
}

#[test]
fn success_without_psk_or_prologue() {
    let mut p = Pair::new(1);
    let (mut c, mut s) = p.connect();
    let mut frame = Vec::new();
    c.seal(br#"{"id":1}"#, &mut frame).unwrap();
    assert_eq!(s.open(&frame).unwrap(), br#"{"id":1}"#);
    frame.clear();
    s.seal(br#"{"id":1,"result":3}"#, &mut frame).unwrap();
    assert_eq!(c.open(&frame).unwrap(), br#"{"id":1,"result":3}"#);
}

#[test]
fn success_with_psk_and_prologue() {
    let mut p = Pair::new(2);
    let psk = SymmetricKey::from_bytes(&[42; 32]);
    p.client = p.client.with_psk(psk.clone()).with_prologue(b"app/2");
    p.server = p.server.with_psk(psk).with_prologue(b"app/2");
    let (mut c, mut s) = p.connect();
    let f = c_seal(&mut c, b"[]");
    assert_eq!(s.open(&f).unwrap(), b"[]");
}

#[test]
fn sessions_differ_per_connection() {
    let mut p = Pair::new(3);
    let (a, _) = p.connect();
    let (b, _) = p.connect();
    assert_ne!(a.session_hash(), b.session_hash());
}

#[test]
fn empty_payloads_mean_none() {
    let mut p = Pair::new(4);
    let (hs, msg1) = p.hello(None);
    let hello = accept_hello(&p.server, &mut p.replay, p.now, &msg1).unwrap();
    assert_eq!(hello.payload(), None);
    let (msg2, _) = hello.accept(&mut p.rng, None).unwrap();
    let (_, payload) = hs.finish(&msg2).unwrap();
    assert_eq!(payload, None);
}

#[test]
fn fail_wrong_server_key() {
    let mut p = Pair::new(5);
    let other = SecretKey::generate(&mut p.rng).unwrap();
    let client_key = SecretKey::generate(&mut p.rng).unwrap();
    p.server = ServerConfig::new(other, ClientAuth::AllowAny).unwrap();
    p.client = ClientConfig::new(client_key, p.client.server_key()).unwrap();
    let (_, msg1) = p.hello(None);
    assert_generic(&p.refusal(&msg1), RefusalDetail::BadTag);
}

/// A server rotating its key holds the new key and the old one: clients
/// pinned to either are served, and the hello says which key it was made
/// for. Dropping the old key refuses its clients as a wrong server key.
#[test]
fn rotation_serves_clients_of_every_key() {
    for psk_first in [false, true] {
        let mut p = Pair::new(40);
        let old_key = SecretKey::generate(&mut p.rng).unwrap();
        let new_key = SecretKey::generate(&mut p.rng).unwrap();
        let client_key = SecretKey::generate(&mut p.rng).unwrap();
        let (old, new) = (old_key.public_key(), new_key.public_key());
        let psk = SymmetricKey::from_bytes(&[9; 32]);
        let server =
            ServerConfig::new(old_key, ClientAuth::Keys(vec![client_key.public_key()])).unwrap();
        p.server = if psk_first {
            server
                .with_psk(psk.clone())
                .with_additional_key(new_key.copy())
                .unwrap()
        } else {
            server
                .with_additional_key(new_key.copy())
                .unwrap()
                .with_psk(psk.clone())
        };
        // A key it holds already is not added twice.
        p.server = p.server.with_additional_key(new_key.copy()).unwrap();
        assert_eq!(p.server.public_keys(), [old, new]);
        assert_eq!(p.server.public_key(), old);

        for (index, pinned) in [(0, old), (1, new)] {
            p.client = ClientConfig::new(client_key.copy(), pinned)
                .unwrap()
                .with_psk(psk.clone());
            let (hs, msg1) = p.hello(None);
            let hello = accept_hello(&p.server, &mut p.replay, p.now, &msg1).unwrap();
            assert_eq!(hello.server_key_index(), index);
            assert_eq!(*hello.server_key(), pinned);
            let (msg2, mut server) = hello.accept(&mut p.rng, None).unwrap();
            let (mut client, _) = hs.finish(&msg2).unwrap();
            assert_eq!(client.session_hash(), server.session_hash());
            let f = c_seal(&mut client, b"[1]");
            assert_eq!(server.open(&f).unwrap(), b"[1]");
        }

        // The old key dropped: its clients are refused, the new key's served.
        p.server = ServerConfig::new(new_key, ClientAuth::Keys(vec![client_key.public_key()]))
            .unwrap()
            .with_psk(psk.clone());
        p.client = ClientConfig::new(client_key.copy(), old)
            .unwrap()
            .with_psk(psk.clone());
        let (_, msg1) = p.hello(None);
        assert_generic(&p.refusal(&msg1), RefusalDetail::BadTag);
        p.client = ClientConfig::new(client_key, new).unwrap().with_psk(psk);
        p.connect();
    }
}

/// With two server keys, a client that is not authorised is refused as
/// before (after trying both keys, as a bad tag is).
#[test]
fn fail_unknown_client_key_with_two_server_keys() {
    let mut p = Pair::new(41);
    let extra = SecretKey::generate(&mut p.rng).unwrap();
    let pinned = extra.public_key();
    p.server = p_server_with(&mut p, extra);
    let stranger = SecretKey::generate(&mut p.rng).unwrap();
    p.client = ClientConfig::new(stranger, pinned).unwrap();
    let (_, msg1) = p.hello(None);
    assert_generic(&p.refusal(&msg1), RefusalDetail::UnauthorizedClient);
}

/// The pair's server with `extra` as its second key.
fn p_server_with(p: &mut Pair, extra: SecretKey) -> ServerConfig {
    let placeholder = ServerConfig::new(extra.copy(), ClientAuth::AllowAny).unwrap();
    std::mem::replace(&mut p.server, placeholder)
        .with_additional_key(extra)
        .unwrap()
}

#[test]
fn fail_unknown_client_key() {
    let mut p = Pair::new(6);
    let stranger = SecretKey::generate(&mut p.rng).unwrap();
    p.client = ClientConfig::new(stranger, p.server.public_key()).unwrap();
    let (_, msg1) = p.hello(None);
    assert_generic(&p.refusal(&msg1), RefusalDetail::UnauthorizedClient);
    // Under allow-any the same client is let in.
    let server_key = SecretKey::generate(&mut TestRng(6, 0)).unwrap();
    p.server = ServerConfig::new(server_key, ClientAuth::AllowAny).unwrap();
    p.connect();
}

#[test]
fn a_new_client_policy_applies_to_the_next_hello_only() {
    let mut p = Pair::new(61);
    let psk = SymmetricKey::from_bytes(&[7; 32]);
    p.client = p.client.with_psk(psk.clone()).with_prologue(b"app/3");
    p.server = p.server.with_psk(psk).with_prologue(b"app/3");
    let newcomer = SecretKey::generate(&mut p.rng).unwrap();
    let newcomer_public = newcomer.public_key();
    // Remove the client and add another: psk, prologue and limits stay.
    let reloaded = p
        .server
        .with_client_auth(ClientAuth::Keys(vec![newcomer_public]))
        .unwrap();
    assert!(!reloaded.is_authorized(&p.client.public_key()));
    assert!(p.server.is_authorized(&p.client.public_key()));
    let before = std::mem::replace(&mut p.server, reloaded);
    let (_, msg1) = p.hello(None);
    assert_generic(&p.refusal(&msg1), RefusalDetail::UnauthorizedClient);
    p.client = ClientConfig::new(newcomer, p.server.public_key())
        .unwrap()
        .with_psk(SymmetricKey::from_bytes(&[7; 32]))
        .with_prologue(b"app/3");
    p.connect();
    // The config it was made from is unchanged: the newcomer is not in it.
    assert!(!before.is_authorized(&p.client.public_key()));
    // Any client, then: the newcomer still gets in.
    p.server = p.server.with_client_auth(ClientAuth::AllowAny).unwrap();
    p.connect();
    // A low-order key is refused, as by `new`.
    assert!(
        p.server
            .with_client_auth(ClientAuth::Keys(vec![sigil_core::PublicKey::from_bytes(
                [0; 32]
            )]))
            .is_err()
    );
}

/// A reload while the server rotates its key: the new client policy holds
/// for both keys, and the old clients' `ss` is kept for both.
#[test]
fn a_new_client_policy_covers_every_server_key() {
    let mut p = Pair::new(62);
    let second = SecretKey::generate(&mut p.rng).unwrap();
    let (first_key, second_key) = (p.server.public_key(), second.public_key());
    p.server = p_server_with(&mut p, second);
    let newcomer = SecretKey::generate(&mut p.rng).unwrap();
    let old_client = p.client.public_key();
    p.server = p
        .server
        .with_client_auth(ClientAuth::Keys(vec![old_client, newcomer.public_key()]))
        .unwrap();
    assert_eq!(p.server.public_keys(), [first_key, second_key]);
    for pinned in [first_key, second_key] {
        p.client = ClientConfig::new(newcomer.copy(), pinned).unwrap();
        p.connect();
        p.client = ClientConfig::new(client_secret(62), pinned).unwrap();
        p.connect();
    }
    // Then the old client leaves: refused whichever key it pinned.
    p.server = p
        .server
        .with_client_auth(ClientAuth::Keys(vec![newcomer.public_key()]))
        .unwrap();
    for pinned in [first_key, second_key] {
        p.client = ClientConfig::new(client_secret(62), pinned).unwrap();
        assert_eq!(p.client.public_key(), old_client);
        let (_, msg1) = p.hello(None);
        assert_generic(&p.refusal(&msg1), RefusalDetail::UnauthorizedClient);
    }
}

#[test]
fn fail_psk_mismatch() {
    let mut p = Pair::new(7);
    p.client = p.client.with_psk(SymmetricKey::from_bytes(&[1; 32]));
    p.server = p.server.with_psk(SymmetricKey::from_bytes(&[2; 32]));
    let (_, msg1) = p.hello(None);
    assert_generic(&p.refusal(&msg1), RefusalDetail::BadTag);
    // psk on one side only fails the same way.
    let mut p = Pair::new(7);
    p.server = p.server.with_psk(SymmetricKey::from_bytes(&[2; 32]));
    let (_, msg1) = p.hello(None);
    assert_generic(&p.refusal(&msg1), RefusalDetail::BadTag);
}

#[test]
fn fail_prologue_mismatch() {
    let mut p = Pair::new(8);
    p.client = p.client.with_prologue(b"a");
    p.server = p.server.with_prologue(b"b");
    let (_, msg1) = p.hello(None);
    assert_generic(&p.refusal(&msg1), RefusalDetail::BadTag);
}

#[test]
fn clock_skew_window_is_inclusive() {
    let mut p = Pair::new(9);
    // A hello exactly max_clock_skew old is accepted...
    let (_, msg1) = p.hello(None);
    p.now = T0 + 60_000;
    assert!(p.server_answer(&msg1, None).is_ok());
    // ...and so is one exactly max_clock_skew in the future.
    p.now = T0;
    let (_, msg1) = p.hello(None);
    p.now = T0 - 60_000;
    assert!(p.server_answer(&msg1, None).is_ok());
}

#[test]
fn fail_stale_and_future_timestamps() {
    let mut p = Pair::new(10);
    let (_, msg1) = p.hello(None);
    p.now = T0 + 60_001;
    let r = p.refusal(&msg1);
    assert_eq!(
        (r.code(), r.detail()),
        (RefusalCode::StaleOrReplayed, RefusalDetail::ClockSkew)
    );
    p.now = T0 - 60_001;
    let r = p.refusal(&msg1);
    assert_eq!(
        (r.code(), r.detail()),
        (RefusalCode::StaleOrReplayed, RefusalDetail::ClockSkew)
    );
}

#[test]
fn fail_replayed_hello_is_code_5() {
    let mut p = Pair::new(11);
    let (_, msg1) = p.hello(None);
    assert!(p.server_answer(&msg1, None).is_ok());
    p.now += 1000;
    let r = p.refusal(&msg1);
    assert_eq!(
        (r.code(), r.detail()),
        (RefusalCode::StaleOrReplayed, RefusalDetail::Replayed)
    );
    // Once outside the window it is stale instead, never accepted.
    p.now = T0 + 60_001;
    assert_eq!(p.refusal(&msg1).detail(), RefusalDetail::ClockSkew);
}

/// A store that answers later (shared by several servers) checks the
/// hello in two steps: the verified hello names its entry, and only the
/// store's verdict turns it into a ClientHello or a refusal.
#[test]
fn a_verified_hello_waits_for_the_replay_verdict() {
    let mut p = Pair::new(15);
    let (hs, msg1) = p.hello(Some(r#"{"hi":1}"#));
    let verified = verify_hello(&p.server, p.now, &msg1).unwrap();
    let entry = *verified.replay_entry();
    assert_eq!(entry.server_key, p.server.public_key());
    assert_eq!(entry.client_key, p.client.public_key());
    assert_eq!(entry.client_ephemeral.as_bytes()[..], msg1[2..34]);
    assert_eq!(entry.timestamp_ms, p.now);
    assert_eq!(entry.expires_ms, p.now + 60_000);
    // Kept through its last fresh millisecond.
    assert_eq!(entry.ttl_ms(p.now), 60_001);
    assert_eq!(entry.ttl_ms(p.now + 60_000), 1);
    // Nothing entered the in-memory cache: the verdict is the store's.
    assert!(p.replay.is_empty());

    let cases = [
        (
            ReplayVerdict::Replayed,
            RefusalCode::StaleOrReplayed,
            RefusalDetail::Replayed,
        ),
        (
            ReplayVerdict::Full,
            RefusalCode::Busy,
            RefusalDetail::ReplayCacheFull,
        ),
        (
            ReplayVerdict::OverQuota,
            RefusalCode::Busy,
            RefusalDetail::OverQuota,
        ),
        (
            ReplayVerdict::Unavailable,
            RefusalCode::Busy,
            RefusalDetail::ReplayStoreUnavailable,
        ),
    ];
    for (verdict, code, detail) in cases {
        let verified = verify_hello(&p.server, p.now, &msg1).unwrap();
        let Err(r) = verified.with_verdict(verdict) else {
            panic!("{verdict:?} was accepted");
        };
        assert_eq!((r.code(), r.detail()), (code, detail), "{verdict:?}");
    }
    let hello = verify_hello(&p.server, p.now, &msg1)
        .unwrap()
        .with_verdict(ReplayVerdict::Fresh)
        .unwrap();
    assert_eq!(hello.payload(), Some(r#"{"hi":1}"#));
    let (msg2, server) = hello.accept(&mut p.rng, None).unwrap();
    let (client, _) = hs.finish(&msg2).unwrap();
    assert_eq!(client.session_hash(), server.session_hash());
}

/// The entry's name binds the server key that verified, the client key
/// and the ephemeral key: two services sharing a store never meet, and a
/// server rotating its key names a hello by the key it was made for.
#[test]
fn replay_entry_ids_bind_the_server_key() {
    let mut p = Pair::new(16);
    let extra = SecretKey::generate(&mut p.rng).unwrap();
    let (first, second) = (p.server.public_key(), extra.public_key());
    p.server = p_server_with(&mut p, extra);
    let (_, msg1) = p.hello(None);
    let entry = *verify_hello(&p.server, p.now, &msg1)
        .unwrap()
        .replay_entry();
    assert_eq!(entry.server_key, first);
    p.client = ClientConfig::new(client_secret(16), second).unwrap();
    let (_, msg1) = p.hello(None);
    let other = *verify_hello(&p.server, p.now, &msg1)
        .unwrap()
        .replay_entry();
    assert_eq!(other.server_key, second);

    let id = entry.id();
    for changed in [
        ReplayEntry {
            server_key: second,
            ..entry
        },
        ReplayEntry {
            client_key: second,
            ..entry
        },
        ReplayEntry {
            client_ephemeral: second,
            ..entry
        },
    ] {
        assert_ne!(changed.id(), id);
    }
    // The timestamp is not part of the name: a replay repeats it anyway.
    let later = ReplayEntry {
        timestamp_ms: entry.timestamp_ms + 1,
        ..entry
    };
    assert_eq!(later.id(), id);
}

#[test]
fn fail_client_over_its_replay_share_is_busy() {
    let mut p = Pair::new(12);
    // A cache of 64 gives each client key a share of one entry.
    p.replay = ReplayCache::new(64, 60_000);
    p.connect();
    let (_, msg1) = p.hello(None);
    let r = p.refusal(&msg1);
    assert_eq!(
        (r.code(), r.detail()),
        (RefusalCode::Busy, RefusalDetail::OverQuota)
    );
    // After the first entry's window has passed there is room again.
    p.now = T0 + 60_001;
    p.connect();
}

#[test]
fn unauthenticated_hellos_do_not_enter_the_replay_cache() {
    let mut p = Pair::new(13);
    p.replay = ReplayCache::new(1, 60_000);
    let (_, mut msg1) = p.hello(None);
    let last = msg1.len() - 1;
    msg1[last] ^= 1;
    assert_generic(&p.refusal(&msg1), RefusalDetail::BadTag);
    assert!(p.replay.is_empty());
    p.connect();
}

#[test]
fn application_refusal_and_client_sees_it() {
    let mut p = Pair::new(14);
    let (hs, msg1) = p.hello(Some(r#"{"token":"wrong"}"#));
    let hello = accept_hello(&p.server, &mut p.replay, p.now, &msg1).unwrap();
    assert_eq!(hello.payload(), Some(r#"{"token":"wrong"}"#));
    let refusal = hello.refuse("bad token");
    match hs.finish(&refusal.to_bytes()) {
        Err(HandshakeError::Refused(r)) => {
            assert_eq!(r.code(), RefusalCode::Rejected);
            assert_eq!(r.reason(), "bad token");
        }
        other => panic!("expected a refusal, got {:?}", other.map(|_| ())),
    }
}

#[test]
fn fail_version_type_and_size() {
    let mut p = Pair::new(15);
    let (_, msg1) = p.hello(None);
    let mut v2 = msg1.clone();
    v2[1] = 2;
    assert_eq!(p.refusal(&v2).code(), RefusalCode::UnsupportedVersion);
    let mut wrong_type = msg1.clone();
    wrong_type[0] = 0x10;
    assert_generic(&p.refusal(&wrong_type), RefusalDetail::Malformed);
    // A declared payload over the limit is refused before any cryptography.
    let mut big = msg1.clone();
    big[74..78].copy_from_slice(&5000u32.to_be_bytes());
    let r = p.refusal(&big);
    assert_eq!(
        (r.code(), r.detail()),
        (RefusalCode::HandshakeFailed, RefusalDetail::PayloadTooLarge)
    );
    assert_generic(&p.refusal(&[]), RefusalDetail::Malformed);
}

#[test]
fn fail_non_json_payload_is_refused_by_both_sides() {
    let mut p = Pair::new(16);
    assert!(matches!(
        ClientHandshake::start(&p.client, &mut p.rng, p.now, Some("not json")),
        Err(HandshakeError::InvalidPayload)
    ));
    let big = format!("\"{}\"", "x".repeat(5000));
    assert!(matches!(
        ClientHandshake::start(&p.client, &mut p.rng, p.now, Some(&big)),
        Err(HandshakeError::PayloadTooLarge { .. })
    ));
}

#[test]
fn limits_apply_to_sessions() {
    let mut p = Pair::new(17);
    let limits = Limits {
        max_message_size: 8,
        ..Limits::default()
    };
    p.client = p.client.with_limits(limits);
    p.server = p.server.with_limits(limits);
    let (mut c, mut s) = p.connect();
    let mut out = Vec::new();
    assert!(matches!(
        c.seal(&[0; 9], &mut out),
        Err(FrameError::TooLarge { .. })
    ));
    let f = c_seal(&mut c, b"12345678");
    assert_eq!(s.open(&f).unwrap(), b"12345678");
}

fn c_seal(s: &mut Session, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    s.seal(payload, &mut out).unwrap();
    out
}

#[test]
fn fail_frames_replayed_reordered_reflected_or_trailing() {
    let mut p = Pair::new(18);
    // Replayed.
    let (mut c, mut s) = p.connect();
    let f0 = c_seal(&mut c, b"0");
    s.open(&f0).unwrap();
    assert!(matches!(
        s.open(&f0),
        Err(FrameError::BadSequence {
            got: 0,
            expected: 1
        })
    ));
    // Reordered.
    let (mut c, mut s) = p.connect();
    let _f0 = c_seal(&mut c, b"0");
    let f1 = c_seal(&mut c, b"1");
    assert!(matches!(
        s.open(&f1),
        Err(FrameError::BadSequence {
            got: 1,
            expected: 0
        })
    ));
    // Reflected back to its sender.
    let (mut c, _s) = p.connect();
    let f0 = c_seal(&mut c, b"0");
    assert_eq!(c.open(&f0), Err(FrameError::BadTag));
    // Trailing bytes.
    let (mut c, mut s) = p.connect();
    let mut f0 = c_seal(&mut c, b"0");
    f0.push(0);
    assert_eq!(s.open(&f0), Err(FrameError::Malformed));
    // A frame from another session.
    let (mut c1, _) = p.connect();
    let (_, mut s2) = p.connect();
    assert_eq!(s2.open(&c_seal(&mut c1, b"0")), Err(FrameError::BadTag));
}

#[test]
fn fail_oversize_declared_length_without_allocation() {
    let mut p = Pair::new(19);
    let (_, mut s) = p.connect();
    let mut frame = vec![0x10];
    frame.extend_from_slice(&0u64.to_be_bytes());
    frame.extend_from_slice(&u32::MAX.to_be_bytes());
    frame.extend_from_slice(&[0; 32]);
    assert!(matches!(s.open(&frame), Err(FrameError::TooLarge { .. })));
}

fn flip(msg: &[u8], bit: usize) -> Vec<u8> {
    let mut m = msg.to_vec();
    m[bit / 8] ^= 1 << (bit % 8);
    m
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn any_bit_flip_or_truncation_of_message_1_is_refused(seed in 0u64..1000, bit in any::<prop::sample::Index>(), cut in any::<prop::sample::Index>()) {
        let mut p = Pair::new(seed);
        let (_, msg1) = p.hello(Some(r#"{"a":[1,2,3]}"#));
        let flipped = flip(&msg1, bit.index(msg1.len() * 8));
        prop_assert!(accept_hello(&p.server, &mut p.replay, p.now, &flipped).is_err());
        let truncated = &msg1[..cut.index(msg1.len())];
        prop_assert!(accept_hello(&p.server, &mut p.replay, p.now, truncated).is_err());
        // The untouched message still goes through: nothing above was recorded.
        prop_assert!(accept_hello(&p.server, &mut p.replay, p.now, &msg1).is_ok());
    }

    #[test]
    fn any_bit_flip_or_truncation_of_message_2_is_refused(seed in 0u64..1000, bit in any::<prop::sample::Index>(), cut in any::<prop::sample::Index>(), which in 0u8..2) {
        let mut p = Pair::new(seed);
        let (hs, msg1) = p.hello(None);
        let (msg2, _) = p.server_answer(&msg1, Some(r#"{"welcome":true}"#)).unwrap();
        let bad = if which == 0 {
            flip(&msg2, bit.index(msg2.len() * 8))
        } else {
            msg2[..cut.index(msg2.len())].to_vec()
        };
        prop_assert!(hs.finish(&bad).is_err());
    }

    #[test]
    fn any_bit_flip_or_truncation_of_a_frame_is_refused(seed in 0u64..1000, payload in prop::collection::vec(any::<u8>(), 0..200), bit in any::<prop::sample::Index>(), cut in any::<prop::sample::Index>()) {
        let mut p = Pair::new(seed);
        let (mut c, mut s) = p.connect();
        let frame = c_seal(&mut c, &payload);
        prop_assert!(s.open(&flip(&frame, bit.index(frame.len() * 8))).is_err());
        let (mut c, mut s) = p.connect();
        let frame = c_seal(&mut c, &payload);
        prop_assert!(s.open(&frame[..cut.index(frame.len())]).is_err());
        let (mut c, mut s) = p.connect();
        let frame = c_seal(&mut c, &payload);
        prop_assert_eq!(s.open(&frame).unwrap(), &payload[..]);
    }
}
