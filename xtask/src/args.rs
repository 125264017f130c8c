//! The options of an xtask command: switches (`--no-install`), options with
//! one value (`--out DIR`), and `-h`/`--help`.

use std::process::ExitCode;

/// What was given on the command line.
pub(crate) struct Args {
    switches: Vec<&'static str>,
    values: Vec<(&'static str, String)>,
}

impl Args {
    /// Parses `args` against the command's `switches` and `valued` options.
    /// Help (printed) and errors (printed, with the help) end the command:
    /// `Err` holds its exit code.
    pub(crate) fn parse(
        args: &[String],
        help: &str,
        switches: &[&'static str],
        valued: &[&'static str],
    ) -> Result<Args, ExitCode> {
        let mut out = Args {
            switches: Vec::new(),
            values: Vec::new(),
        };
        let mut args = args.iter();
        while let Some(arg) = args.next() {
            let arg = arg.as_str();
            if arg == "-h" || arg == "--help" {
                print!("{help}");
                return Err(ExitCode::SUCCESS);
            }
            if let Some(switch) = switches.iter().find(|s| **s == arg) {
                out.switches.push(switch);
            } else if let Some(option) = valued.iter().find(|s| **s == arg) {
                let Some(value) = args.next() else {
                    eprintln!("error: {option} needs a value\n\n{help}");
                    return Err(ExitCode::from(2));
                };
                out.values.push((option, value.clone()));
            } else {
                eprintln!("error: unknown option `{arg}`\n\n{help}");
                return Err(ExitCode::from(2));
            }
        }
        Ok(out)
    }

    /// Whether the switch was given.
    pub(crate) fn has(&self, switch: &str) -> bool {
        self.switches.contains(&switch)
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
            &strings(&["--twice", "--out", "d"]),
            "",
            &["--twice"],
            &["--out"],
        )
        .unwrap_or_else(|_| panic!("parses"));
        assert!(a.has("--twice") && !a.has("--no-install"));
        assert_eq!(a.value("--out"), Some("d"));
        assert!(Args::parse(&strings(&["--out"]), "", &[], &["--out"]).is_err());
        assert!(Args::parse(&strings(&["--nope"]), "", &["--twice"], &[]).is_err());
        assert!(Args::parse(&strings(&["-h"]), "", &[], &[]).is_err());
    }
}
