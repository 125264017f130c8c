//! Static files served beside the endpoint: the web demo.
//!
//! Files are read into memory once, when the server is set up (named one by
//! one, bounded in count and size), and served with a strict
//! Content-Security-Policy. Only the exact paths loaded are served; nothing
//! is looked up on disk per request, so there is no path traversal to get
//! wrong.

use std::collections::HashMap;
use std::path::Path;

use hyper::body::Bytes;

use crate::settings::SetupError;

/// Most files loaded from a directory.
pub(crate) const MAX_FILES: usize = 256;
/// Most bytes loaded from a directory in all.
pub(crate) const MAX_TOTAL_BYTES: usize = 16 * 1024 * 1024;

/// In-memory files by URL path (`/index.html`, `/pkg/sigil_wasm.js`, …).
#[derive(Clone, Default)]
pub struct StaticFiles {
    files: HashMap<String, (&'static str, Bytes)>,
    total: usize,
}

impl StaticFiles {
    /// No files.
    pub fn new() -> StaticFiles {
        StaticFiles::default()
    }

    /// Adds one file under a URL path (it must start with `/`).
    pub fn insert(&mut self, path: &str, content_type: &'static str, body: impl Into<Bytes>) {
        let body = body.into();
        self.total += body.len();
        self.files.insert(path.to_owned(), (content_type, body));
    }

    /// Loads exactly `paths` (relative to `dir`, `/`-separated, for example
    /// `pkg/sigil_wasm.js`) and serves each at `/` + its path. Every path
    /// must exist, have a known type (html, js, mjs, css, wasm, svg, png,
    /// json, txt, ts) and stay inside `dir`; at most 256 files and 16 MiB in
    /// all. Naming the files, rather than serving a whole folder, keeps test
    /// scripts, lock files and build scratch out of the web root.
    pub fn from_dir(dir: &Path, paths: &[&str]) -> Result<StaticFiles, SetupError> {
        let mut files = StaticFiles::new();
        check_count(paths.len())?;
        for rel in paths {
            let content_type = check_path(rel)?;
            let path = dir.join(rel);
            let body = std::fs::read(&path)
                .map_err(|e| SetupError::Config(format!("{}: {e}", path.display())))?;
            files.add(rel, content_type, Bytes::from(body))?;
        }
        Ok(files)
    }

    /// Serves files held in memory (built into the program with
    /// `include_bytes!`): each `(path, contents)` at `/` + its path, with
    /// the rules of [`from_dir`](Self::from_dir).
    pub fn from_memory(files: &[(&str, &'static [u8])]) -> Result<StaticFiles, SetupError> {
        let mut out = StaticFiles::new();
        check_count(files.len())?;
        for (rel, body) in files {
            let content_type = check_path(rel)?;
            out.add(rel, content_type, Bytes::from_static(body))?;
        }
        Ok(out)
    }

    /// Adds a checked file, within the total size.
    fn add(
        &mut self,
        rel: &str,
        content_type: &'static str,
        body: Bytes,
    ) -> Result<(), SetupError> {
        if self.total + body.len() > MAX_TOTAL_BYTES {
            return Err(SetupError::Config(format!(
                "static files over {MAX_TOTAL_BYTES} bytes in all"
            )));
        }
        self.insert(&format!("/{rel}"), content_type, body);
        Ok(())
    }

    /// The file for a request path (`/` is `/index.html`).
    pub(crate) fn get(&self, path: &str) -> Option<&(&'static str, Bytes)> {
        let path = if path == "/" { "/index.html" } else { path };
        self.files.get(path)
    }
}

fn check_count(n: usize) -> Result<(), SetupError> {
    if n > MAX_FILES {
        return Err(SetupError::Config(format!(
            "more than {MAX_FILES} static files"
        )));
    }
    Ok(())
}

/// A relative path that stays inside its folder, with a known type: its type.
fn check_path(rel: &str) -> Result<&'static str, SetupError> {
    let inside = !rel.is_empty()
        && rel
            .split('/')
            .all(|part| !part.is_empty() && part != "." && part != ".." && !part.contains('\\'));
    if !inside {
        return Err(SetupError::Config(format!("bad static file path {rel:?}")));
    }
    content_type(rel)
        .ok_or_else(|| SetupError::Config(format!("unknown type of static file {rel}")))
}

fn content_type(name: &str) -> Option<&'static str> {
    let ext = name.rsplit_once('.')?.1;
    Some(match ext {
        "html" => "text/html; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "wasm" => "application/wasm",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "json" => "application/json",
        "txt" => "text/plain; charset=utf-8",
        "ts" => "text/plain; charset=utf-8",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_in_memory_follow_the_rules_of_a_folder() {
        let files = StaticFiles::from_memory(&[("index.html", b"<p>hi"), ("pkg/a.wasm", b"\0asm")])
            .expect("valid files");
        assert_eq!(
            files.get("/").map(|f| f.0),
            Some("text/html; charset=utf-8")
        );
        assert_eq!(
            files.get("/pkg/a.wasm").map(|f| f.1.as_ref()),
            Some(&b"\0asm"[..])
        );
        assert!(files.get("/other.html").is_none());
        for bad in ["../x.html", "a/./b.js", "tool.exe", ""] {
            assert!(StaticFiles::from_memory(&[(bad, b"x")]).is_err(), "{bad}");
        }
    }
}
