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
        if paths.len() > MAX_FILES {
            return Err(SetupError::Config(format!(
                "more than {MAX_FILES} static files"
            )));
        }
        for rel in paths {
            let inside = !rel.is_empty()
                && rel.split('/').all(|part| {
                    !part.is_empty() && part != "." && part != ".." && !part.contains('\\')
                });
            if !inside {
                return Err(SetupError::Config(format!("bad static file path {rel:?}")));
            }
            let Some(content_type) = content_type(rel) else {
                return Err(SetupError::Config(format!(
                    "unknown type of static file {rel}"
                )));
            };
            let path = dir.join(rel);
            let body = std::fs::read(&path)
                .map_err(|e| SetupError::Config(format!("{}: {e}", path.display())))?;
            if files.total + body.len() > MAX_TOTAL_BYTES {
                return Err(SetupError::Config(format!(
                    "static files over {MAX_TOTAL_BYTES} bytes in all"
                )));
            }
            files.insert(&format!("/{rel}"), content_type, body);
        }
        Ok(files)
    }

    /// The file for a request path (`/` is `/index.html`).
    pub(crate) fn get(&self, path: &str) -> Option<&(&'static str, Bytes)> {
        let path = if path == "/" { "/index.html" } else { path };
        self.files.get(path)
    }
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
