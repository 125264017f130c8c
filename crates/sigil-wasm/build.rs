//! Browser copies of sigil-core's integration tests.
//!
//! `tests/core_in_browser.rs` runs sigil-core's own test files
//! (`crates/sigil-core/tests/{vectors,primitives,handshake,connection}.rs`) under
//! wasm-bindgen-test, unchanged in substance. This script writes a copy of
//! each into `OUT_DIR` that `include!` can take: inner attributes and `//!`
//! docs are dropped, `include_str!` paths are made absolute, and the
//! `proptest!` block of `handshake.rs` is left out (proptest does not run on
//! wasm32-unknown-unknown; `tests/core_in_browser.rs` has deterministic
//! versions of those properties). The library itself does not use them.

use std::path::{Path, PathBuf};
use std::{env, fs};

const CORE_TESTS: [&str; 4] = [
    "vectors.rs",
    "primitives.rs",
    "handshake.rs",
    "connection.rs",
];

fn main() {
    let manifest = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("set by cargo"));
    let dir = manifest.join("../sigil-core/tests");
    for name in CORE_TESTS {
        let path = dir.join(name);
        println!("cargo::rerun-if-changed={}", path.display());
        let text = fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
        let copy = browser_copy(&text, &dir);
        fs::write(out.join(format!("core_{name}")), copy).expect("OUT_DIR is writable");
    }
}

fn browser_copy(text: &str, dir: &Path) -> String {
    let mut out = String::new();
    for line in text.lines() {
        let t = line.trim_start();
        if t.starts_with("proptest! {") {
            break; // the property tests run as deterministic loops instead
        }
        if t.starts_with("//!") || t.starts_with("#![") || t.starts_with("use proptest::") {
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    absolute_includes(&out, dir)
}

/// Rewrites `include_str!("relative")` to an absolute path below `dir`.
fn absolute_includes(text: &str, dir: &Path) -> String {
    const MACRO: &str = "include_str!(";
    let mut out = String::new();
    let mut rest = text;
    while let Some(at) = rest.find(MACRO) {
        let after = at + MACRO.len();
        out.push_str(&rest[..after]);
        rest = &rest[after..];
        let lead = rest.len() - rest.trim_start().len();
        out.push_str(&rest[..lead]);
        rest = &rest[lead..];
        let Some(quoted) = rest.strip_prefix('"') else {
            continue;
        };
        let end = quoted.find('"').expect("a closing quote");
        let path = dir.join(&quoted[..end]);
        let path = path
            .canonicalize()
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        out.push_str(&format!("{:?}", path.display().to_string()));
        rest = &quoted[end + 1..];
    }
    out.push_str(rest);
    out
}
