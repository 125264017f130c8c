//! Reading test runners' summary lines: libtest's (also what
//! wasm-bindgen-test-runner prints), e.g.
//! `test result: ok. 12 passed; 0 failed; 1 ignored; 0 measured; 0 filtered out; finished in 0.01s`,
//! and the TAP summary of node's test runner (`# pass 5`, `# fail 0`, …).

use std::ops::AddAssign;

/// Test counts, summed over every test binary and doctest run.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Counts {
    pub(crate) passed: u64,
    pub(crate) failed: u64,
    pub(crate) ignored: u64,
}

impl AddAssign for Counts {
    fn add_assign(&mut self, other: Counts) {
        self.passed += other.passed;
        self.failed += other.failed;
        self.ignored += other.ignored;
    }
}

/// The counts on a `test result:` line, or `None` for any other line.
/// Colour codes are skipped, so coloured output parses too.
pub(crate) fn parse_line(line: &str) -> Option<Counts> {
    let line = strip_ansi(line);
    let rest = line.trim().strip_prefix("test result:")?;
    // "ok. 12 passed; 0 failed; ..." or "FAILED. 3 passed; 1 failed; ..."
    let (_, counts) = rest.split_once('.')?;
    let mut out = Counts::default();
    let mut seen = false;
    for part in counts.split(';') {
        let mut words = part.split_whitespace();
        let (Some(n), Some(what)) = (words.next(), words.next()) else {
            continue;
        };
        let Ok(n) = n.parse::<u64>() else { continue };
        match what {
            "passed" => out.passed = n,
            "failed" => out.failed = n,
            "ignored" => out.ignored = n,
            _ => continue,
        }
        seen = true;
    }
    seen.then_some(out)
}

/// The counts on one line of the summary that `node --test --test-reporter=tap`
/// prints at the end, or `None` for any other line. The summary gives one count
/// per line (`# tests 5`, `# pass 4`, `# fail 1`, `# cancelled 0`,
/// `# skipped 0`, `# todo 0`, …); the groups are disjoint. A cancelled test
/// (a timeout, a failed `before` hook) counts as failed, skipped and todo
/// tests as ignored. Indented lines belong to subtests and are not counted.
pub(crate) fn parse_tap_line(line: &str) -> Option<Counts> {
    let line = strip_ansi(line);
    let rest = line.trim_end().strip_prefix("# ")?;
    let (what, n) = rest.split_once(' ')?;
    let n = n.parse::<u64>().ok()?;
    let mut out = Counts::default();
    match what {
        "pass" => out.passed = n,
        "fail" | "cancelled" => out.failed = n,
        "skipped" | "todo" => out.ignored = n,
        _ => return None,
    }
    Some(out)
}

/// `line` without ANSI escape sequences (`ESC [ … letter`).
fn strip_ansi(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // Skip to the final byte of the sequence (a letter).
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counts(passed: u64, failed: u64, ignored: u64) -> Option<Counts> {
        Some(Counts {
            passed,
            failed,
            ignored,
        })
    }

    #[test]
    fn ok_line() {
        let line = "test result: ok. 12 passed; 0 failed; 1 ignored; 0 measured; \
                    0 filtered out; finished in 0.01s";
        assert_eq!(parse_line(line), counts(12, 0, 1));
    }

    #[test]
    fn failed_line() {
        let line = "test result: FAILED. 3 passed; 2 failed; 0 ignored; 0 measured; \
                    0 filtered out; finished in 1.20s";
        assert_eq!(parse_line(line), counts(3, 2, 0));
    }

    #[test]
    fn coloured_line() {
        let line = "test result: \u{1b}[32mok\u{1b}[0m. 7 passed; 0 failed; 0 ignored; \
                    0 measured; 0 filtered out; finished in 0.00s";
        assert_eq!(parse_line(line), counts(7, 0, 0));
    }

    #[test]
    fn fail_other_lines() {
        for line in [
            "",
            "running 3 tests",
            "test results::tests::ok_line ... ok",
            "test result: garbage",
            "   Doc-tests sigil_core",
        ] {
            assert_eq!(parse_line(line), None, "{line:?}");
        }
    }

    #[test]
    fn tap_summary() {
        let summary = "# tests 5\n# suites 0\n# pass 4\n# fail 1\n# cancelled 0\n\
                       # skipped 2\n# todo 1\n# duration_ms 5130.417\n";
        let mut total = Counts::default();
        for line in summary.lines() {
            total += parse_tap_line(line).unwrap_or_default();
        }
        assert_eq!(Some(total), counts(4, 1, 3));
    }

    #[test]
    fn tap_cancelled_counts_as_failed() {
        assert_eq!(parse_tap_line("# cancelled 3"), counts(0, 3, 0));
    }

    #[test]
    fn tap_line_with_carriage_return() {
        assert_eq!(parse_tap_line("# pass 12\r"), counts(12, 0, 0));
    }

    #[test]
    fn fail_other_tap_lines() {
        for line in [
            "",
            "TAP version 13",
            "# Subtest: the page loads",
            "ok 1 - the page loads",
            "not ok 2 - a wrong pinned server key is refused",
            "# tests 5",
            "# duration_ms 5130.417",
            "    # pass 3",
            "#pass 3",
            "# pass",
            "# pass three",
            "# passed 3",
            "# page http://127.0.0.1:40000/, sigil server ws://127.0.0.1:40000/sigil",
            "test result: ok. 12 passed; 0 failed; 0 ignored",
        ] {
            assert_eq!(parse_tap_line(line), None, "{line:?}");
        }
    }

    #[test]
    fn fail_tap_lines_for_libtest() {
        assert_eq!(parse_line("# pass 4"), None);
    }

    #[test]
    fn sums() {
        let mut total = Counts::default();
        total += Counts {
            passed: 2,
            failed: 1,
            ignored: 0,
        };
        total += Counts {
            passed: 5,
            failed: 0,
            ignored: 3,
        };
        assert_eq!(Some(total), counts(7, 1, 3));
    }
}
