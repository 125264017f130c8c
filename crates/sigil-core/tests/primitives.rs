//! The primitives under sigil/1 against published vectors: RFC 7748 (X25519),
//! RFC 5869 (HKDF-SHA256), RFC 4231 (HMAC-SHA256), and Wycheproof's edge
//! cases for X25519 (raw, DER and PEM keys), HKDF-SHA256 and HMAC-SHA256.

#![allow(clippy::unwrap_used)] // test helpers panic on failure by design

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::Value;
use sigil_core::kdf::{hkdf_sha256, hmac_sha256};
use sigil_core::keys::{KeyError, PublicKey, SecretKey};

fn json(text: &str) -> Value {
    serde_json::from_str(text).expect("vector file parses")
}

fn hexs(v: &Value) -> Vec<u8> {
    hex::decode(v.as_str().expect("hex string")).expect("valid hex")
}

fn b32(v: &Value) -> [u8; 32] {
    hexs(v).try_into().expect("32 bytes")
}

fn x25519(k: [u8; 32], u: [u8; 32]) -> Result<[u8; 32], KeyError> {
    let shared = SecretKey::from_bytes(&k).diffie_hellman(&PublicKey::from_bytes(u))?;
    Ok(*shared.dangerous_as_bytes())
}

/// Every test of a Wycheproof file, with its group.
fn wycheproof_tests(v: &Value) -> Vec<(&Value, &Value)> {
    let groups = v["testGroups"].as_array().expect("groups");
    groups
        .iter()
        .flat_map(|g| {
            g["tests"]
                .as_array()
                .expect("tests")
                .iter()
                .map(move |t| (g, t))
        })
        .collect()
}

fn flagged(t: &Value, flag: &str) -> bool {
    t["flags"]
        .as_array()
        .is_some_and(|f| f.iter().any(|x| x == flag))
}

#[test]
fn rfc7748_function_and_dh() {
    let v = json(include_str!("../../../tests/vectors/rfc7748_x25519.json"));
    for case in v["function"].as_array().unwrap() {
        let out = x25519(b32(&case["scalar_hex"]), b32(&case["u_hex"])).unwrap();
        assert_eq!(hex::encode(out), case["output_hex"].as_str().unwrap());
    }
    let dh = &v["diffie_hellman"];
    let alice = SecretKey::from_bytes(&b32(&dh["alice_secret_hex"]));
    let bob = SecretKey::from_bytes(&b32(&dh["bob_secret_hex"]));
    assert_eq!(alice.public_key().as_bytes(), &b32(&dh["alice_public_hex"]));
    assert_eq!(bob.public_key().as_bytes(), &b32(&dh["bob_public_hex"]));
    let ab = alice.diffie_hellman(&bob.public_key()).unwrap();
    let ba = bob.diffie_hellman(&alice.public_key()).unwrap();
    assert_eq!(ab.dangerous_as_bytes(), &b32(&dh["shared_hex"]));
    assert_eq!(ba.dangerous_as_bytes(), &b32(&dh["shared_hex"]));
}

#[test]
fn rfc7748_iterated_1_and_1000() {
    let v = json(include_str!("../../../tests/vectors/rfc7748_x25519.json"));
    let it = &v["iterated"];
    let (mut k, mut u) = (b32(&it["start_hex"]), b32(&it["start_hex"]));
    for i in 1..=1000 {
        let r = x25519(k, u).unwrap();
        u = k;
        k = r;
        if i == 1 {
            assert_eq!(k, b32(&it["after_1_hex"]));
        }
    }
    assert_eq!(k, b32(&it["after_1000_hex"]));
}

#[test]
fn rfc5869_hkdf() {
    let v = json(include_str!(
        "../../../tests/vectors/rfc5869_hkdf_sha256.json"
    ));
    for case in v["cases"].as_array().unwrap() {
        let mut okm = vec![0u8; case["length"].as_u64().unwrap() as usize];
        hkdf_sha256(
            &hexs(&case["salt_hex"]),
            &hexs(&case["ikm_hex"]),
            &hexs(&case["info_hex"]),
            &mut okm,
        )
        .unwrap();
        assert_eq!(okm, hexs(&case["okm_hex"]), "{}", case["name"]);
    }
}

#[test]
fn rfc4231_hmac() {
    let v = json(include_str!(
        "../../../tests/vectors/rfc4231_hmac_sha256.json"
    ));
    for case in v["cases"].as_array().unwrap() {
        let mac = hmac_sha256(&hexs(&case["key_hex"]), &hexs(&case["data_hex"]));
        let n = case["truncated_to_bytes"].as_u64().unwrap() as usize;
        assert_eq!(&mac[..n], &hexs(&case["mac_hex"])[..], "{}", case["name"]);
    }
}

/// Raw keys: valid cases agree; low-order cases (all-zero result) are refused.
#[test]
fn wycheproof_x25519_raw() {
    let v = json(include_str!(
        "../../../tests/vectors/wycheproof/x25519_test.json"
    ));
    let tests = wycheproof_tests(&v);
    assert!(tests.len() > 500);
    for (_, t) in tests {
        let got = x25519(b32(&t["private"]), b32(&t["public"]));
        check_x25519_result(t, got);
    }
}

fn check_x25519_result(t: &Value, got: Result<[u8; 32], KeyError>) {
    let id = &t["tcId"];
    if flagged(t, "ZeroSharedSecret") {
        assert_eq!(got, Err(KeyError::NonContributory), "tcId {id}");
    } else {
        assert_eq!(
            got.map(hex::encode).ok().as_deref(),
            t["shared"].as_str(),
            "tcId {id}"
        );
    }
}

fn pem(label: &str, der: &[u8]) -> String {
    let body = STANDARD.encode(der);
    let lines: Vec<&str> = body
        .as_bytes()
        .chunks(64)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect();
    format!(
        "-----BEGIN {label}-----\n{}\n-----END {label}-----\n",
        lines.join("\n")
    )
}

/// Keys in DER (PKCS#8 and SPKI): wrong algorithm identifiers and malformed
/// structures are refused; the rest agree.
#[test]
fn wycheproof_x25519_der() {
    let v = json(include_str!(
        "../../../tests/vectors/wycheproof/x25519_asn_test.json"
    ));
    let (mut valid, mut invalid) = (0, 0);
    for (_, t) in wycheproof_tests(&v) {
        let sk = SecretKey::parse(&pem("PRIVATE KEY", &hexs(&t["private"])));
        let pk = PublicKey::parse(&pem("PUBLIC KEY", &hexs(&t["public"])));
        if t["result"] == "invalid" {
            assert!(
                sk.is_err() || pk.is_err(),
                "tcId {} must be refused",
                t["tcId"]
            );
            invalid += 1;
            continue;
        }
        let got = sk
            .unwrap()
            .diffie_hellman(&pk.unwrap())
            .map(|s| *s.dangerous_as_bytes());
        check_x25519_result(t, got);
        valid += 1;
    }
    assert!(valid > 500 && invalid > 10, "{valid} {invalid}");
}

#[test]
fn wycheproof_x25519_pem() {
    let v = json(include_str!(
        "../../../tests/vectors/wycheproof/x25519_pem_test.json"
    ));
    for (_, t) in wycheproof_tests(&v) {
        let sk = SecretKey::parse(t["private"].as_str().unwrap());
        let pk = PublicKey::parse(t["public"].as_str().unwrap());
        if t["result"] == "invalid" {
            assert!(
                sk.is_err() || pk.is_err(),
                "tcId {} must be refused",
                t["tcId"]
            );
            continue;
        }
        let got = sk
            .unwrap()
            .diffie_hellman(&pk.unwrap())
            .map(|s| *s.dangerous_as_bytes());
        check_x25519_result(t, got);
    }
}

#[test]
fn wycheproof_hkdf_sha256() {
    let v = json(include_str!(
        "../../../tests/vectors/wycheproof/hkdf_sha256_test.json"
    ));
    for (_, t) in wycheproof_tests(&v) {
        let mut okm = vec![0u8; t["size"].as_u64().unwrap() as usize];
        let r = hkdf_sha256(
            &hexs(&t["salt"]),
            &hexs(&t["ikm"]),
            &hexs(&t["info"]),
            &mut okm,
        );
        if t["result"] == "invalid" {
            assert!(r.is_err(), "tcId {}", t["tcId"]);
        } else {
            r.unwrap();
            assert_eq!(okm, hexs(&t["okm"]), "tcId {}", t["tcId"]);
        }
    }
}

#[test]
fn wycheproof_hmac_sha256() {
    let v = json(include_str!(
        "../../../tests/vectors/wycheproof/hmac_sha256_test.json"
    ));
    for (g, t) in wycheproof_tests(&v) {
        let n = g["tagSize"].as_u64().unwrap() as usize / 8;
        let mac = hmac_sha256(&hexs(&t["key"]), &hexs(&t["msg"]));
        let matches = mac[..n] == hexs(&t["tag"])[..];
        assert_eq!(matches, t["result"] == "valid", "tcId {}", t["tcId"]);
    }
}
