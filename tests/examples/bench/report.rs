//! The benchmark's figures: every measurement is repeated, the repetitions
//! of rows that are compared run interleaved (one repetition of each row in
//! turn, so a slow moment of the shared machine hits all of them), and each
//! row is printed as min / median / max over its repetitions. A ratio is
//! taken repetition by repetition (row A's i-th against row B's i-th), and
//! shown the same way. Everything is also written as JSON, so runs can be
//! compared.

use std::fmt::Write as _;
use std::path::Path;

use serde_json::{Value, json};

/// One figure, measured once per repetition.
struct Row {
    group: String,
    name: String,
    unit: &'static str,
    samples: Vec<f64>,
}

/// A comparison of two rows, with the goal it should meet, if any.
struct Ratio {
    name: String,
    of: String,
    to: String,
    /// The median ratio must be at least this; `None`: just reported.
    goal: Option<f64>,
    values: Vec<f64>,
}

/// min, median, max of `v` (NaN for an empty `v`).
pub(crate) fn spread(v: &[f64]) -> (f64, f64, f64) {
    let mut s: Vec<f64> = v.iter().copied().filter(|x| !x.is_nan()).collect();
    if s.is_empty() {
        return (f64::NAN, f64::NAN, f64::NAN);
    }
    s.sort_by(f64::total_cmp);
    let median = if s.len() % 2 == 1 {
        s[s.len() / 2]
    } else {
        (s[s.len() / 2 - 1] + s[s.len() / 2]) / 2.0
    };
    (s[0], median, s[s.len() - 1])
}

/// A number with a precision that suits its size.
fn num(x: f64) -> String {
    match x.abs() {
        a if a.is_nan() => "—".to_owned(),
        a if a >= 100.0 => format!("{x:.0}"),
        a if a >= 10.0 => format!("{x:.1}"),
        _ => format!("{x:.2}"),
    }
}

/// Every figure of a run, in the order they were first measured.
#[derive(Default)]
pub(crate) struct Report {
    rows: Vec<Row>,
    ratios: Vec<Ratio>,
    /// Figures with an upper bound: name, value, bound.
    bounds: Vec<(String, f64, f64)>,
    /// Rows that could not be measured, and why.
    skipped: Vec<(String, String)>,
}

/// `value ≤ bound: met`, or `NOT met`.
fn bound_line(name: &str, value: f64, bound: f64) -> String {
    let verdict = if value <= bound { "met" } else { "NOT met" };
    format!("{name:<58} {:>7} (goal ≤ {bound}: {verdict})", num(value))
}

impl Report {
    /// Adds one repetition's value of row `group` / `name`.
    pub(crate) fn sample(&mut self, group: &str, name: &str, unit: &'static str, value: f64) {
        match self
            .rows
            .iter_mut()
            .find(|r| r.group == group && r.name == name)
        {
            Some(row) => row.samples.push(value),
            None => self.rows.push(Row {
                group: group.to_owned(),
                name: name.to_owned(),
                unit,
                samples: vec![value],
            }),
        }
    }

    /// A figure that must stay at most `bound`. Printed at once.
    pub(crate) fn at_most(&mut self, name: &str, value: f64, bound: f64) {
        println!("  {}", bound_line(name, value, bound));
        self.bounds.push((name.to_owned(), value, bound));
    }

    /// Notes that `what` was not measured, and why.
    pub(crate) fn skip(&mut self, what: &str, why: &str) {
        println!("  SKIPPED {what}: {why}");
        self.skipped.push((what.to_owned(), why.to_owned()));
    }

    fn samples(&self, name: &str) -> Option<&[f64]> {
        self.rows
            .iter()
            .find(|r| r.name == name)
            .map(|r| r.samples.as_slice())
    }

    /// Prints the rows of `group` as a table.
    pub(crate) fn print_group(&self, group: &str) {
        println!("{group}");
        println!(
            "  {:<46} {:>10} {:>10} {:>10}  unit",
            "", "min", "median", "max"
        );
        for row in self.rows.iter().filter(|r| r.group == group) {
            let (min, med, max) = spread(&row.samples);
            println!(
                "  {:<46} {:>10} {:>10} {:>10}  {}",
                row.name,
                num(min),
                num(med),
                num(max),
                row.unit
            );
        }
    }

    /// Row `of` against row `to`, repetition by repetition (rows measured
    /// interleaved have as many repetitions), with an optional goal for
    /// the median. Printed at once.
    pub(crate) fn ratio(&mut self, name: &str, of: &str, to: &str, goal: Option<f64>) {
        let values: Vec<f64> = match (self.samples(of), self.samples(to)) {
            (Some(a), Some(b)) => a.iter().zip(b).map(|(a, b)| a / b).collect(),
            _ => Vec::new(),
        };
        let ratio = Ratio {
            name: name.to_owned(),
            of: of.to_owned(),
            to: to.to_owned(),
            goal,
            values,
        };
        println!("  {}", ratio.line());
        self.ratios.push(ratio);
    }

    /// Writes the whole run as JSON to `path` (its folder is created).
    pub(crate) fn write_json(&self, path: &Path, machine: &str) -> std::io::Result<()> {
        let rows: Vec<Value> = self
            .rows
            .iter()
            .map(|r| {
                let (min, median, max) = spread(&r.samples);
                json!({
                    "group": r.group, "name": r.name, "unit": r.unit,
                    "min": min, "median": median, "max": max, "samples": r.samples,
                })
            })
            .collect();
        let ratios: Vec<Value> = self
            .ratios
            .iter()
            .map(|r| {
                let (min, median, max) = spread(&r.values);
                json!({
                    "name": r.name, "of": r.of, "to": r.to, "goal_at_least": r.goal,
                    "met": r.met(), "min": min, "median": median, "max": max,
                })
            })
            .collect();
        let bounds: Vec<Value> = self
            .bounds
            .iter()
            .map(|(name, value, bound)| {
                json!({"name": name, "value": value, "goal_at_most": bound, "met": value <= bound})
            })
            .collect();
        let skipped: Vec<Value> = self
            .skipped
            .iter()
            .map(|(what, why)| json!({"what": what, "why": why}))
            .collect();
        let doc = json!({
            "machine": machine,
            "release_build": !cfg!(debug_assertions),
            "rows": rows,
            "ratios": ratios,
            "bounds": bounds,
            "skipped": skipped,
        });
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::write(path, serde_json::to_string_pretty(&doc)? + "\n")
    }

    /// The ratios again, with their goals, as the run's summary.
    pub(crate) fn print_summary(&self) {
        println!("summary: ratios (median of the per-repetition ratios; min–max)");
        for r in &self.ratios {
            println!("  {}", r.line());
        }
        for (name, value, bound) in &self.bounds {
            println!("  {}", bound_line(name, *value, *bound));
        }
        for (what, why) in &self.skipped {
            println!("  skipped: {what}: {why}");
        }
    }
}

impl Ratio {
    fn met(&self) -> Option<bool> {
        let (_, median, _) = spread(&self.values);
        self.goal.map(|g| median >= g)
    }

    fn line(&self) -> String {
        let (min, median, max) = spread(&self.values);
        let mut s = format!(
            "{:<58} {:>6}× ({}–{})",
            self.name,
            num(median),
            num(min),
            num(max)
        );
        if let Some(goal) = self.goal {
            let verdict = if self.met() == Some(true) {
                "met"
            } else {
                "NOT met"
            };
            let _ = write!(s, "  goal ≥ {goal}: {verdict}");
        }
        s
    }
}

/// One line about the machine: CPU model, cores, kernel.
pub(crate) fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".to_owned());
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|_| std::env::consts::OS.to_owned());
    format!("{cpu}, {cores} cores, Linux {kernel}")
}
