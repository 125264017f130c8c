//! The layered configuration: `Config::builder()` with a TOML file's text
//! and `SIGIL_*` environment variables, then `build()`.
//!
//! Input: UTF-8 text. Up to the first NUL byte it is the file `fuzz.toml`;
//! after it, each line `NAME=VALUE` is an environment variable (`SIGIL_` is
//! prepended to names that lack it), so that every value parser sees
//! arbitrary text from both layers. Errors and the resolved config are
//! rendered as `sigil config show` would.

#![no_main]

use libfuzzer_sys::fuzz_target;
use sigil_core::config::Config;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (file, env) = text.split_once('\0').unwrap_or((text, ""));
    let vars: Vec<(String, String)> = env
        .lines()
        .filter_map(|line| line.split_once('='))
        .map(|(name, value)| {
            let name = if name.starts_with("SIGIL_") {
                name.to_owned()
            } else {
                format!("SIGIL_{name}")
            };
            (name, value.to_owned())
        })
        .collect();
    match Config::builder().file("fuzz.toml", file).env(vars).build() {
        Ok(resolved) => {
            for entry in resolved.config.entries() {
                let _ = format!("{entry:?}");
            }
            for ignored in &resolved.ignored_env {
                let _ = format!("{ignored:?}");
            }
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
});
