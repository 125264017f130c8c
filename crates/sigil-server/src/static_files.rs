//! Static files served beside the endpoint: the web demo.
//!
//! Files are read into memory once, when the server is set up (bounded in
//! count and size), and served with a strict Content-Security-Policy. Only
//! the exact paths loaded are served; nothing is looked up on disk per
//! request, so there is no path traversal to get wrong.

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

    /// Loads every file below `dir` whose type it knows (html, js, mjs, css,
    /// wasm, svg, png, json, txt, ts; at most 256 files and 16 MiB in all),
    /// skipping `node_modules`, hidden entries and symbolic links.
    pub fn from_dir(dir: &Path) -> Result<StaticFiles, SetupError> {
        let mut files = StaticFiles::new();
        files.load(dir, "")?;
        if !files.files.contains_key("/index.html") {
            return Err(SetupError::Config(format!(
                "{} has no index.html",
                dir.display()
            )));
        }
        Ok(files)
    }

    fn load(&mut self, dir: &Path, prefix: &str) -> Result<(), SetupError> {
        let io = |e: std::io::Error| SetupError::Config(format!("{}: {e}", dir.display()));
        let mut entries = std::fs::read_dir(dir)
            .map_err(io)?
            .collect::<Result<Vec<_>, _>>()
            .map_err(io)?;
        entries.sort_by_key(|e| e.file_name());
        for entry in entries {
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            if name.starts_with('.') || name == "node_modules" {
                continue;
            }
            let kind = entry.file_type().map_err(io)?;
            let url = format!("{prefix}/{name}");
            if kind.is_dir() {
                self.load(&entry.path(), &url)?;
            } else if kind.is_file()
                && let Some(content_type) = content_type(name)
            {
                if self.files.len() >= MAX_FILES {
                    return Err(SetupError::Config(format!(
                        "more than {MAX_FILES} files below the web root"
                    )));
                }
                let body = std::fs::read(entry.path()).map_err(io)?;
                if self.total + body.len() > MAX_TOTAL_BYTES {
                    return Err(SetupError::Config(format!(
                        "the web root holds more than {MAX_TOTAL_BYTES} bytes"
                    )));
                }
                self.insert(&url, content_type, body);
            }
        }
        Ok(())
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
