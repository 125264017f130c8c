//! Short import and export names for the browser module.
//!
//! wasm-bindgen names each import after the JavaScript it calls and a hash
//! (`__wbg_send_d83d0891cf698779`); a hundred of them are about 5 KB of the
//! module and 2 KB of it gzipped, hashes that do not compress. binaryen's
//! `--minify-imports-and-exports-and-modules` renames them (`a`, `b`, …
//! `Ab`; the module `./sigil_wasm_bg.js` becomes `a`) and prints the
//! renaming as JSON; this module applies it to the JavaScript glue
//! (`sigil_wasm.js`: the keys of its import object, the object's module
//! name, and every `wasm.NAME`) and to the declarations of the exports
//! (`sigil_wasm_bg.wasm.d.ts`, `InitOutput` in `sigil_wasm.d.ts`). The
//! result is deterministic, as the rest of the build.

use std::collections::HashMap;
use std::fs;
use std::path::Path;

use crate::ctx::{Ctx, checked_output, header};
use crate::json::Json;

/// Renames the imports and exports of `out_dir/sigil_wasm_bg.wasm` with
/// `wasm_opt` and rewrites the glue beside it to match.
pub(crate) fn minify(ctx: &Ctx, wasm_opt: &Path, out_dir: &Path) -> Result<(), String> {
    let wasm = out_dir.join("sigil_wasm_bg.wasm");
    let mut cmd = ctx.cmd(wasm_opt);
    cmd.arg(&wasm)
        .arg("--minify-imports-and-exports-and-modules")
        .arg("-o")
        .arg(&wasm);
    let (_, map) = checked_output(header(cmd))?;
    let map = Json::parse(&String::from_utf8_lossy(&map))
        .map_err(|e| format!("wasm-opt's renaming is not JSON: {e}"))?;
    let pairs =
        |section: &str, from: usize, to: usize| -> Result<HashMap<String, String>, String> {
            let list = map
                .get(section)
                .ok_or_else(|| format!("wasm-opt's renaming has no {section}"))?;
            list.items()
                .iter()
                .map(|row| {
                    let at = |i: usize| row.items().get(i).and_then(Json::as_str);
                    match (at(from), at(to)) {
                        (Some(old), Some(new)) => Ok((old.to_owned(), new.to_owned())),
                        _ => Err(format!(
                            "a row of wasm-opt's {section} is not [.., old, new]"
                        )),
                    }
                })
                .collect()
        };
    let imports = pairs("imports", 1, 2)?;
    let exports = pairs("exports", 0, 1)?;

    let module = import_module(
        &fs::read(&wasm).map_err(|e| format!("cannot read {}: {e}", wasm.display()))?,
    )?;

    let glue = out_dir.join("sigil_wasm.js");
    let text = read(&glue)?;
    let text = rename_keys(&text, &imports, "        ", ": function")?;
    let old_module = format!("\"{GLUE_MODULE}\": import0");
    if !text.contains(&old_module) {
        return Err(format!(
            "the glue has no `{old_module}`: xtask/src/minify.rs must follow wasm-bindgen"
        ));
    }
    let text = text.replace(&old_module, &format!("\"{module}\": import0"));
    let text = rename_after(&text, "wasm.", &exports);
    write(&glue, &text)?;

    let types = out_dir.join("sigil_wasm_bg.wasm.d.ts");
    if types.is_file() {
        let text = rename_after(&read(&types)?, "export const ", &exports);
        write(&types, &text)?;
    }
    // The declarations' `InitOutput` lists the exports too (and only it:
    // the classes have getters named like some exports).
    let types = out_dir.join("sigil_wasm.d.ts");
    let text = read(&types)?;
    let start = text
        .find("export interface InitOutput {")
        .ok_or("sigil_wasm.d.ts has no InitOutput: xtask/src/minify.rs must follow wasm-bindgen")?;
    let end = start + text[start..].find("\n}").unwrap_or(text.len() - start);
    let renamed = rename_after(&text[start..end], "readonly ", &exports);
    write(
        &types,
        &format!("{}{renamed}{}", &text[..start], &text[end..]),
    )?;
    Ok(())
}

/// The module wasm-bindgen's glue provides the imports from.
const GLUE_MODULE: &str = "./sigil_wasm_bg.js";

/// The one module all of `wasm`'s imports come from (its import section).
fn import_module(wasm: &[u8]) -> Result<String, String> {
    let bad = || "the minified module's import section is not what wasm-bindgen makes".to_owned();
    let mut at = 8; // magic and version
    let leb = |at: &mut usize| -> Result<usize, String> {
        let (mut value, mut shift) = (0usize, 0);
        loop {
            let byte = *wasm.get(*at).ok_or_else(bad)?;
            *at += 1;
            value |= usize::from(byte & 0x7f) << shift;
            if byte < 0x80 {
                return Ok(value);
            }
            shift += 7;
        }
    };
    while at < wasm.len() {
        let id = wasm[at];
        at += 1;
        let size = leb(&mut at)?;
        if id != 2 {
            at += size;
            continue;
        }
        let mut modules = Vec::new();
        for _ in 0..leb(&mut at)? {
            for part in 0..2 {
                let len = leb(&mut at)?;
                let name = wasm.get(at..at + len).ok_or_else(bad)?;
                at += len;
                if part == 0 && !modules.iter().any(|m: &String| m.as_bytes() == name) {
                    modules.push(String::from_utf8(name.to_vec()).map_err(|_| bad())?);
                }
            }
            // Functions only (kind 0, a type index), as wasm-bindgen imports.
            if wasm.get(at) != Some(&0) {
                return Err(bad());
            }
            at += 1;
            leb(&mut at)?;
        }
        return match &modules[..] {
            [one] => Ok(one.clone()),
            _ => Err(format!(
                "the module imports from {modules:?}, not from one module"
            )),
        };
    }
    Err(bad())
}

fn read(path: &Path) -> Result<String, String> {
    fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))
}

fn write(path: &Path, text: &str) -> Result<(), String> {
    fs::write(path, text).map_err(|e| format!("cannot write {}: {e}", path.display()))
}

/// Renames the keys of the import object: lines `{indent}NAME{after}…`.
/// Every import must be found exactly once.
fn rename_keys(
    text: &str,
    names: &HashMap<String, String>,
    indent: &str,
    after: &str,
) -> Result<String, String> {
    let mut found = 0;
    let mut out = String::with_capacity(text.len());
    for line in text.split_inclusive('\n') {
        let renamed = line
            .strip_prefix(indent)
            .and_then(|rest| rest.split_once(after))
            .and_then(|(key, rest)| Some((names.get(key)?, rest)));
        match renamed {
            Some((new, rest)) => {
                found += 1;
                out.push_str(indent);
                out.push_str(new);
                out.push_str(after);
                out.push_str(rest);
            }
            None => out.push_str(line),
        }
    }
    if found != names.len() {
        return Err(format!(
            "the glue defines {found} of the module's {} imports: wasm-bindgen's output \
             has changed shape, and xtask/src/minify.rs must follow it",
            names.len()
        ));
    }
    Ok(out)
}

/// Renames every identifier that follows `prefix` and is a key of `names`.
fn rename_after(text: &str, prefix: &str, names: &HashMap<String, String>) -> String {
    let is_ident = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == '$';
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find(prefix) {
        let start = at + prefix.len();
        out.push_str(&rest[..start]);
        rest = &rest[start..];
        let end = rest.find(|c| !is_ident(c)).unwrap_or(rest.len());
        let name = &rest[..end];
        out.push_str(names.get(name).map_or(name, String::as_str));
        rest = &rest[end..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
            .collect()
    }

    #[test]
    fn renames_import_keys_and_export_uses() {
        let glue = "    const import0 = {\n        __proto__: null,\n        __wbg_send_1: function(a) {\n            a.send();\n        },\n    };\n    wasm.client_call(wasm.memory, wasm.client_callback);\n";
        let keys = rename_keys(
            glue,
            &map(&[("__wbg_send_1", "A")]),
            "        ",
            ": function",
        )
        .expect("every import found");
        assert!(keys.contains("        A: function(a) {\n"));
        let both = rename_after(
            &keys,
            "wasm.",
            &map(&[("client_call", "B"), ("memory", "C")]),
        );
        assert!(both.ends_with("wasm.B(wasm.C, wasm.client_callback);\n"));
    }

    #[test]
    fn reads_the_module_of_the_imports() {
        // magic, version; a type section to skip; two imports from "a".
        let mut wasm = b"\0asm\x01\0\0\0".to_vec();
        wasm.extend([1, 4, 1, 0x60, 0, 0]);
        wasm.extend([2, 13, 2, 1, b'a', 1, b'x', 0, 0, 1, b'a', 1, b'y', 0, 0]);
        assert_eq!(import_module(&wasm).expect("one module"), "a");
    }

    #[test]
    fn fail_an_import_the_glue_does_not_define() {
        let err = rename_keys(
            "x\n",
            &map(&[("__wbg_gone", "A")]),
            "        ",
            ": function",
        );
        assert!(err.is_err());
    }
}
