//! The results: one row per figure (what, figure, target, how measured),
//! grouped in sections, written to `BENCHMARKS.md` and printed.

use std::fmt::Write;

/// One measured figure.
#[derive(Debug, Clone)]
pub struct Row {
    pub what: String,
    pub figure: String,
    /// The target, if the figure has one.
    pub target: Option<String>,
    /// Whether the target was met (`None`: no target).
    pub met: Option<bool>,
    pub how: String,
}

impl Row {
    pub fn new(what: impl Into<String>, figure: impl Into<String>, how: impl Into<String>) -> Self {
        Self {
            what: what.into(),
            figure: figure.into(),
            target: None,
            met: None,
            how: how.into(),
        }
    }

    /// Sets a target and whether the figure meets it.
    pub fn target(mut self, target: impl Into<String>, met: bool) -> Self {
        self.target = Some(target.into());
        self.met = Some(met);
        self
    }
}

/// A titled group of rows, with notes under the table.
#[derive(Debug, Default)]
pub struct Section {
    pub title: String,
    pub rows: Vec<Row>,
    pub notes: Vec<String>,
}

impl Section {
    pub fn new(title: &str) -> Self {
        Self {
            title: title.into(),
            ..Self::default()
        }
    }
}

/// The whole report.
#[derive(Debug, Default)]
pub struct Report {
    pub machine: String,
    pub command: String,
    pub date: String,
    pub duration_s: f64,
    pub sections: Vec<Section>,
}

/// A ratio as the report prints it.
pub fn ratio_text(r: f64) -> String {
    format!("{r:.2}×")
}

fn cell(text: &str) -> String {
    text.replace('|', "\\|").replace('\n', " ")
}

impl Report {
    /// Every row that has a target, as (section, row).
    pub fn targets(&self) -> impl Iterator<Item = (&Section, &Row)> {
        self.sections
            .iter()
            .flat_map(|s| s.rows.iter().map(move |r| (s, r)))
            .filter(|(_, r)| r.met.is_some())
    }

    pub fn markdown(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "# Stockroom benchmarks\n");
        let _ = writeln!(
            out,
            "Written by `{}` on {} in {:.0} s. Machine: {}.\n",
            self.command, self.date, self.duration_s, self.machine
        );
        let _ = writeln!(
            out,
            "Figures are medians of repeated runs unless a row says otherwise; ratios compare \
             two things measured in the same run against the same local emulator (moto's server, \
             which serves one request at a time). `make bench` rewrites this file.\n"
        );
        let met = self.targets().filter(|(_, r)| r.met == Some(true)).count();
        let total = self.targets().count();
        let _ = writeln!(out, "**Targets met: {met} of {total}.**");
        let missed: Vec<String> = self
            .targets()
            .filter(|(_, r)| r.met == Some(false))
            .map(|(s, r)| format!("{} / {}", s.title, r.what))
            .collect();
        if !missed.is_empty() {
            let _ = writeln!(
                out,
                "Missed: {} (see the notes under each table).",
                missed.join("; ")
            );
        }
        for s in &self.sections {
            let _ = writeln!(out, "\n## {}\n", s.title);
            let _ = writeln!(out, "| what | figure | target | how measured |");
            let _ = writeln!(out, "| --- | --- | --- | --- |");
            for r in &s.rows {
                let target = match (&r.target, r.met) {
                    (Some(t), Some(true)) => format!("{t} ✅"),
                    (Some(t), Some(false)) => format!("{t} ❌ missed"),
                    (Some(t), None) => t.clone(),
                    (None, _) => "—".into(),
                };
                let _ = writeln!(
                    out,
                    "| {} | {} | {} | {} |",
                    cell(&r.what),
                    cell(&r.figure),
                    cell(&target),
                    cell(&r.how)
                );
            }
            if !s.notes.is_empty() {
                let _ = writeln!(out);
                for n in &s.notes {
                    let _ = writeln!(out, "- {n}");
                }
            }
        }
        out
    }

    /// A compact view for the terminal.
    pub fn text(&self) -> String {
        let mut out = format!("Stockroom benchmarks — {}\n", self.machine);
        for s in &self.sections {
            let _ = writeln!(out, "\n{}", s.title);
            for r in &s.rows {
                let target = match (&r.target, r.met) {
                    (Some(t), Some(true)) => format!("  [target {t}: met]"),
                    (Some(t), Some(false)) => format!("  [target {t}: MISSED]"),
                    _ => String::new(),
                };
                let _ = writeln!(out, "  {:<58} {}{}", r.what, r.figure, target);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_targets_and_escapes_cells() {
        let mut s = Section::new("Cold start");
        s.rows
            .push(Row::new("sale-webhook", "9.1 ms", "spawn to answer").target("< 20 ms", true));
        s.rows
            .push(Row::new("a | b", "41 MiB", "VmHWM").target("< 40 MiB", false));
        s.rows.push(Row::new("machine", "2 cores", "/proc"));
        s.notes.push("why".into());
        let r = Report {
            machine: "m".into(),
            command: "make bench".into(),
            date: "d".into(),
            duration_s: 1.0,
            sections: vec![s],
        };
        let md = r.markdown();
        assert!(
            md.contains("| sale-webhook | 9.1 ms | < 20 ms ✅ | spawn to answer |"),
            "{md}"
        );
        assert!(md.contains("| a \\| b | 41 MiB | < 40 MiB ❌ missed |"), "{md}");
        assert!(md.contains("Targets met: 1 of 2"));
        assert!(md.contains("Missed: Cold start / a | b"));
        assert!(md.contains("| machine | 2 cores | — | /proc |"));
        assert!(r.text().contains("MISSED"));
    }
}
