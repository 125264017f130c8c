//! The options of an xtask command: switches (`--no-install`), options with
//! one value (`--out DIR` or `--out=DIR`), a few positional arguments, and
//! `-h`/`--help`.

use std::process::ExitCode;

/// What was given on the command line.
pub(crate) struct Args {
    switches: Vec<&'static str>,
    values: Vec<(&'static str, String)>,
    positional: Vec<String>,
}

impl Args {
    /// Parses `args` against the command's `switches`, `valued` options
    /// and at most `positional` other arguments. Help (printed) and errors
    /// (printed, with the help) end the command: `Err` holds its exit code.
    pub(crate) fn parse(
        args: &[String],
        help: &str,
        switches: &[&'static str],
        valued: &[&'static str],
        positional: usize,
    ) -> Result<Args, ExitCode> {
        let mut out = Args {
            switches: Vec::new(),
            values: Vec::new(),
            positional: Vec::new(),
        };
        let mut args = args.iter();
        while let Some(arg) = args.next() {
            let arg = arg.as_str();
            if arg == "-h" || arg == "--help" {
                print!("{help}");
                return Err(ExitCode::SUCCESS);
            }
            let inline = valued.iter().find_map(|o| {
                arg.strip_prefix(o)
                    .and_then(|rest| rest.strip_prefix('='))
                    .map(|v| (*o, v))
            });
            if let Some(switch) = switches.iter().find(|s| **s == arg) {
                out.switches.push(switch);
            } else if let Some((option, value)) = inline {
                out.values.push((option, value.to_owned()));
            } else if let Some(option) = valued.iter().find(|s| **s == arg) {
                let Some(value) = args.next() else {
                    eprintln!("error: {option} needs a value\n\n{help}");
                    return Err(ExitCode::from(2));
                };
                out.values.push((option, value.clone()));
            } else if !arg.starts_with('-') && out.positional.len() < positional {
                out.positional.push(arg.to_owned());
            } else {
                let what = if arg.starts_with('-') {
                    "unknown option"
                } else {
                    "unexpected argument"
                };
                eprintln!("error: {what} `{arg}`\n\n{help}");
                return Err(ExitCode::from(2));
            }
        }
        Ok(out)
    }

    /// Whether the switch was given.
    pub(crate) fn has(&self, switch: &str) -> bool {
        self.switches.contains(&switch)
    }

    /// The positional arguments, in order.
    pub(crate) fn positional(&self) -> &[String] {
        &self.positional
    }

    /// The value of an option, the last one given.
    pub(crate) fn value(&self, option: &str) -> Option<&str> {
        self.values
            .iter()
            .rev()
            .find(|(o, _)| *o == option)
            .map(|(_, v)| v.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(args: &[&str]) -> Vec<String> {
        args.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn switches_values_and_errors() {
        let a = Args::parse(
            &strings(&["--twice", "--out", "d", "t", "--port=7"]),
            "",
            &["--twice"],
            &["--out", "--port"],
            1,
        )
        .unwrap_or_else(|_| panic!("parses"));
        assert!(a.has("--twice") && !a.has("--no-install"));
        assert_eq!(a.value("--out"), Some("d"));
        assert_eq!(a.value("--port"), Some("7"));
        assert_eq!(a.positional(), ["t"]);
        assert!(Args::parse(&strings(&["--out"]), "", &[], &["--out"], 0).is_err());
        assert!(Args::parse(&strings(&["--nope"]), "", &["--twice"], &[], 0).is_err());
        assert!(Args::parse(&strings(&["a", "b"]), "", &[], &[], 1).is_err());
        assert!(Args::parse(&strings(&["-h"]), "", &[], &[], 0).is_err());
    }
}
