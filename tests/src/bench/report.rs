//! The benchmark's output: one row per figure (its median over the runs,
//! the spread, the goal and whether it was met), printed as a markdown
//! table, and the same plus every run's raw numbers as JSON.

use std::fmt::Write as _;

use serde::Serialize;
use serde_json::Value;

use super::env::{Machine, Stat};

/// What a figure should be.
#[derive(Debug, Clone, Copy, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Goal {
    AtLeast(f64),
    AtMost(f64),
}

impl Goal {
    fn met(self, value: f64) -> bool {
        match self {
            Goal::AtLeast(goal) => value >= goal,
            Goal::AtMost(goal) => value <= goal,
        }
    }

    fn describe(self, unit: &str) -> String {
        match self {
            Goal::AtLeast(goal) => format!(">= {} {unit}", number(goal)),
            Goal::AtMost(goal) => format!("<= {} {unit}", number(goal)),
        }
    }
}

/// One figure of one benchmark.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    /// The benchmark's number (1 to 6 from issue 6, 7 users' kernels).
    pub bench: u32,
    pub figure: String,
    pub unit: String,
    pub stat: Option<Stat>,
    pub goal: Option<Goal>,
    pub note: String,
}

impl Row {
    pub fn new(bench: u32, figure: &str, unit: &str, values: &[f64]) -> Row {
        Row {
            bench,
            figure: figure.to_string(),
            unit: unit.to_string(),
            stat: Stat::of(values),
            goal: None,
            note: String::new(),
        }
    }

    pub fn goal(mut self, goal: Goal) -> Row {
        self.goal = Some(goal);
        self
    }

    pub fn note(mut self, note: impl Into<String>) -> Row {
        self.note = note.into();
        self
    }

    /// A row for a figure that could not be measured, saying why.
    pub fn missing(bench: u32, figure: &str, why: impl Into<String>) -> Row {
        Row {
            bench,
            figure: figure.to_string(),
            unit: String::new(),
            stat: None,
            goal: None,
            note: why.into(),
        }
    }

    pub fn met(&self) -> Option<bool> {
        Some(self.goal?.met(self.stat?.median))
    }
}

/// A number for people: thousands separated, a sensible number of digits.
pub fn number(x: f64) -> String {
    if !x.is_finite() {
        return x.to_string();
    }
    let magnitude = x.abs();
    if magnitude >= 1000.0 {
        let rounded = x.round() as i64;
        let digits = rounded.unsigned_abs().to_string();
        let mut out = String::new();
        for (i, c) in digits.chars().enumerate() {
            if i > 0 && (digits.len() - i).is_multiple_of(3) {
                out.push(',');
            }
            out.push(c);
        }
        if rounded < 0 { format!("-{out}") } else { out }
    } else if magnitude >= 100.0 {
        format!("{x:.0}")
    } else if magnitude >= 10.0 {
        format!("{x:.1}")
    } else if magnitude >= 1.0 {
        format!("{x:.2}")
    } else {
        format!("{x:.3}")
    }
}

/// The rows as a markdown table.
pub fn table(rows: &[Row]) -> String {
    let mut out = String::new();
    out.push_str("| # | figure | median | spread (min-max) | runs | goal | met | notes |\n");
    out.push_str("|---|---|---:|---:|---:|---|---|---|\n");
    for row in rows {
        let (median, spread, runs) = match row.stat {
            Some(s) => (
                format!("{} {}", number(s.median), row.unit),
                format!("{}-{}", number(s.min), number(s.max)),
                s.runs.to_string(),
            ),
            None => ("-".into(), "-".into(), "0".into()),
        };
        let goal = row.goal.map(|g| g.describe(&row.unit)).unwrap_or_default();
        let met = match row.met() {
            Some(true) => "yes",
            Some(false) => "**no**",
            None => "",
        };
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} | {} |",
            row.bench, row.figure, median, spread, runs, goal, met, row.note
        );
    }
    out
}

/// Everything a run of the benchmark found, as written to `results.json`.
#[derive(Debug, Serialize)]
pub struct Results<'a> {
    pub machine: &'a Machine,
    pub started_unix_ms: u64,
    pub command: String,
    pub rows: &'a [Row],
    /// Each benchmark's raw runs, by name.
    pub raw: &'a serde_json::Map<String, Value>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_read_well() {
        assert_eq!(number(123_456.7), "123,457");
        assert_eq!(number(1000.0), "1,000");
        assert_eq!(number(512.4), "512");
        assert_eq!(number(42.26), "42.3");
        assert_eq!(number(4.567), "4.57");
        assert_eq!(number(0.01234), "0.012");
    }

    #[test]
    fn goals_decide_met() {
        let row = Row::new(1, "x", "tasks/s", &[90.0, 110.0, 120.0]).goal(Goal::AtLeast(100.0));
        assert_eq!(row.met(), Some(true));
        let row = Row::new(4, "y", "KiB", &[30.0]).goal(Goal::AtMost(20.0));
        assert_eq!(row.met(), Some(false));
        assert_eq!(Row::missing(6, "z", "not built").met(), None);
    }
}
