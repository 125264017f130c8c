//! Where `sigil serve` finds the browser demo page: `--web DIR`; or, with
//! `--demo`, the page built into the binary (feature `embed-web`, which
//! `cargo xtask install` turns on), a built `web/` in the current folder,
//! or (debug builds only) the `web/` of the source tree the binary came
//! from. A release build holds no path of the machine that built it, so
//! that it can be rebuilt byte for byte elsewhere.

use std::path::{Path, PathBuf};

use sigil_server::StaticFiles;

use crate::error::Failure;

/// The files of the browser demo, relative to its folder (`cargo xtask demo`
/// builds `pkg/`).
const WEB_FILES: &[&str] = &[
    "index.html",
    "app.js",
    "style.css",
    "hello.html",
    "hello.js",
    "pkg/sigil_wasm.js",
    "pkg/sigil_wasm_bg.wasm",
];

/// What `sigil serve --demo` says when it finds no page.
pub(crate) const NOT_FOUND: &str = "no web demo page: this sigil has none built in \
     (`cargo xtask install` builds one with the page), and there is no built web/ here; \
     pass --web DIR, a folder with index.html, app.js, style.css, hello.html, hello.js \
     and pkg/ (`cargo xtask demo` builds web/pkg in the checkout)\n";

/// The demo page's files, built in with the feature `embed-web`.
#[cfg(feature = "embed-web")]
const EMBEDDED: &[(&str, &[u8])] = &[
    ("index.html", include_bytes!("../../web/index.html")),
    ("app.js", include_bytes!("../../web/app.js")),
    ("style.css", include_bytes!("../../web/style.css")),
    ("hello.html", include_bytes!("../../web/hello.html")),
    ("hello.js", include_bytes!("../../web/hello.js")),
    (
        "pkg/sigil_wasm.js",
        include_bytes!("../../web/pkg/sigil_wasm.js"),
    ),
    (
        "pkg/sigil_wasm_bg.wasm",
        include_bytes!("../../web/pkg/sigil_wasm_bg.wasm"),
    ),
];

/// Without the feature, nothing is built in.
#[cfg(not(feature = "embed-web"))]
const EMBEDDED: &[(&str, &[u8])] = &[];

/// Where the page comes from.
#[derive(Debug)]
pub(crate) enum WebPage {
    /// A folder of files.
    Dir(PathBuf),
    /// The files built into this binary.
    Embedded,
}

/// The page to serve: `--web DIR`, or with `--demo` the first of the built-in
/// page, a built `web/` here, and the source tree's `web/` (debug builds).
pub(crate) fn find(web: Option<&Path>, demo: bool) -> Option<WebPage> {
    if let Some(dir) = web {
        return Some(WebPage::Dir(dir.to_path_buf()));
    }
    if !demo {
        return None;
    }
    if !EMBEDDED.is_empty() {
        return Some(WebPage::Embedded);
    }
    [Some(PathBuf::from("web")), source_tree_web()]
        .into_iter()
        .flatten()
        .find(|dir| WEB_FILES.iter().all(|f| dir.join(f).is_file()))
        .map(WebPage::Dir)
}

impl WebPage {
    /// Reads the files.
    pub(crate) fn load(&self) -> Result<StaticFiles, Failure> {
        match self {
            WebPage::Dir(dir) => StaticFiles::from_dir(dir, WEB_FILES).map_err(|e| {
                Failure::usage(format_args!("the web demo in {}: {e}", dir.display()))
                    .hint("build it with `cargo xtask demo`, or leave out --web")
            }),
            WebPage::Embedded => StaticFiles::from_memory(EMBEDDED)
                .map_err(|e| Failure::runtime(format_args!("the built-in web demo: {e}"))),
        }
    }
}

/// The `web/` of the source tree this binary was built from: debug builds only.
#[cfg(debug_assertions)]
fn source_tree_web() -> Option<PathBuf> {
    Some(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../web"))
}

/// Release builds hold no path of the machine that built them.
#[cfg(not(debug_assertions))]
fn source_tree_web() -> Option<PathBuf> {
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_built_in_page_has_every_file() {
        if EMBEDDED.is_empty() {
            return;
        }
        let names: Vec<&str> = EMBEDDED.iter().map(|(name, _)| *name).collect();
        assert_eq!(names, WEB_FILES);
        assert!(EMBEDDED.iter().all(|(_, body)| !body.is_empty()));
    }
}
