//! authorized_keys files: `config::parse_authorized_keys` on arbitrary text.
//!
//! Every key it returns is written back one per line (with a comment) and
//! the file reads back to the same keys in the same order.

#![no_main]

use libfuzzer_sys::fuzz_target;
use sigil_core::config::parse_authorized_keys;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match parse_authorized_keys("authorized_keys", text) {
        Ok(keys) => {
            let mut file = String::from("# written back\n");
            for (i, key) in keys.iter().enumerate() {
                file.push_str(&format!("{key} key-{i}\n"));
            }
            let back =
                parse_authorized_keys("authorized_keys", &file).expect("written keys read back");
            assert_eq!(back, keys);
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
});
