//! JUnit XML, the report format CI systems show natively: one `<testcase>` per threshold
//! or compared metric, a `<failure>` (or `<error>`, `<skipped>`) with a message when it
//! did not pass.
//!
//! The shape follows the common JUnit schema (the one Jenkins, GitLab and the GitHub
//! test-report actions read): `<testsuites>` with `tests`/`failures`/`errors`/`skipped`
//! totals, each `<testsuite>` with its own, each `<testcase>` with `name`, `classname` and
//! `time`.

use std::fmt::Write as _;
use std::path::Path;

/// One `<testcase>`.
#[derive(Debug, Clone, PartialEq)]
pub struct Case {
    pub name: String,
    pub classname: String,
    /// Seconds.
    pub time: f64,
    pub status: Status,
    /// Extra text for `<system-out>` (values, notes); empty for none.
    pub output: String,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Status {
    Passed,
    /// A check that did not hold: message and details.
    Failed {
        message: String,
        details: String,
    },
    /// Could not be judged at all (the run did not reach its results).
    Error {
        message: String,
    },
    Skipped {
        message: String,
    },
}

/// One `<testsuite>`.
#[derive(Debug, Clone, PartialEq)]
pub struct Suite {
    pub name: String,
    pub time: f64,
    pub cases: Vec<Case>,
}

impl Suite {
    fn count(&self, f: impl Fn(&Status) -> bool) -> usize {
        self.cases.iter().filter(|c| f(&c.status)).count()
    }
}

/// The whole document.
pub fn render(name: &str, suites: &[Suite]) -> String {
    let failures = |s: &Suite| s.count(|st| matches!(st, Status::Failed { .. }));
    let errors = |s: &Suite| s.count(|st| matches!(st, Status::Error { .. }));
    let skipped = |s: &Suite| s.count(|st| matches!(st, Status::Skipped { .. }));
    let total = |f: &dyn Fn(&Suite) -> usize| suites.iter().map(f).sum::<usize>();
    let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let _ = writeln!(
        out,
        "<testsuites name=\"{}\" tests=\"{}\" failures=\"{}\" errors=\"{}\" skipped=\"{}\" time=\"{:.3}\">",
        escape(name),
        total(&|s| s.cases.len()),
        total(&failures),
        total(&errors),
        total(&skipped),
        suites.iter().map(|s| s.time).sum::<f64>(),
    );
    for suite in suites {
        let _ = writeln!(
            out,
            "  <testsuite name=\"{}\" tests=\"{}\" failures=\"{}\" errors=\"{}\" skipped=\"{}\" time=\"{:.3}\">",
            escape(&suite.name),
            suite.cases.len(),
            failures(suite),
            errors(suite),
            skipped(suite),
            suite.time
        );
        for case in &suite.cases {
            let _ = write!(
                out,
                "    <testcase name=\"{}\" classname=\"{}\" time=\"{:.3}\"",
                escape(&case.name),
                escape(&case.classname),
                case.time
            );
            if case.status == Status::Passed && case.output.is_empty() {
                out.push_str("/>\n");
                continue;
            }
            out.push_str(">\n");
            match &case.status {
                Status::Passed => {}
                Status::Failed { message, details } => {
                    let _ = writeln!(
                        out,
                        "      <failure message=\"{}\" type=\"failure\">{}</failure>",
                        escape(message),
                        escape(details)
                    );
                }
                Status::Error { message } => {
                    let _ = writeln!(
                        out,
                        "      <error message=\"{}\" type=\"error\">{}</error>",
                        escape(message),
                        escape(message)
                    );
                }
                Status::Skipped { message } => {
                    let _ = writeln!(out, "      <skipped message=\"{}\"/>", escape(message));
                }
            }
            if !case.output.is_empty() {
                let _ = writeln!(
                    out,
                    "      <system-out>{}</system-out>",
                    escape(&case.output)
                );
            }
            out.push_str("    </testcase>\n");
        }
        out.push_str("  </testsuite>\n");
    }
    out.push_str("</testsuites>\n");
    out
}

/// Writes the document to `path`, creating its directory.
pub fn write(path: &Path, name: &str, suites: &[Suite]) -> std::io::Result<()> {
    if let Some(parent) = path.parent()
        && !parent.as_os_str().is_empty()
    {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::write(path, render(name, suites))
}

/// Text and attribute escaping: the report's HTML escaping (`&`, `<`, `>`, quotes), plus
/// what XML attributes need besides: a newline kept as `&#10;`, tabs and carriage
/// returns as spaces, and the control characters XML 1.0 cannot hold at all dropped.
fn escape(text: &str) -> String {
    let xml: String = text
        .chars()
        .filter_map(|c| match c {
            '\t' | '\r' => Some(' '),
            '\n' => Some('\n'),
            c if (c as u32) < 0x20 => None,
            c => Some(c),
        })
        .collect();
    crate::report::escape(&xml).replace('\n', "&#10;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_statuses_and_escapes_every_string() {
        let suite = Suite {
            name: "thresholds <gate>".into(),
            time: 1.5,
            cases: vec![
                Case {
                    name: "ready.p99 < 5s".into(),
                    classname: "gate".into(),
                    time: 0.0,
                    status: Status::Passed,
                    output: String::new(),
                },
                Case {
                    name: "errors.total == 0".into(),
                    classname: "gate".into(),
                    time: 0.0,
                    status: Status::Failed {
                        message: "3 \"errors\" & more".into(),
                        details: "a\nb\u{1}".into(),
                    },
                    output: "value 3".into(),
                },
                Case {
                    name: "x".into(),
                    classname: "gate".into(),
                    time: 0.0,
                    status: Status::Skipped {
                        message: "below floor".into(),
                    },
                    output: String::new(),
                },
            ],
        };
        let xml = render("fleetsim", &[suite]);
        assert!(xml.contains("<testsuites name=\"fleetsim\" tests=\"3\" failures=\"1\" errors=\"0\" skipped=\"1\" time=\"1.500\">"), "{xml}");
        assert!(
            xml.contains("<testsuite name=\"thresholds &lt;gate&gt;\""),
            "{xml}"
        );
        assert!(
            xml.contains(
                "<testcase name=\"ready.p99 &lt; 5s\" classname=\"gate\" time=\"0.000\"/>"
            ),
            "{xml}"
        );
        assert!(
            xml.contains("message=\"3 &quot;errors&quot; &amp; more\""),
            "{xml}"
        );
        assert!(xml.contains(">a&#10;b</failure>"), "{xml}");
        assert!(xml.contains("<skipped message=\"below floor\"/>"), "{xml}");
    }
}
