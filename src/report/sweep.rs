//! `report.html` of a sweep directory: the sizing table of `sizing.md` and the
//! broker's costs charted over fleet size, with the knee marked, so the figures a
//! capacity plan rests on are seen next to how they grow. Built only from `sweep.csv`
//! and `sizing.md` (see [`crate::sweep`]); each size's own run directory has its own
//! report.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use super::charts::{self, BySize};
use super::html::{self, STYLE};
use super::read::{self, Table};
use super::{CHARTS_DIR, Chart, ReportError, chart, write_charts, write_page};

pub const SWEEP_FILE: &str = "sweep.csv";
pub const SIZING_FILE: &str = "sizing.md";

/// Charts of a sweep: name, title, y axis, and (label, sweep.csv column, scale) lines.
type SizeSpec = (
    &'static str,
    &'static str,
    &'static str,
    &'static [(&'static str, &'static str, f64)],
);

const CHARTS: [SizeSpec; 5] = [
    (
        "sweep-consumers",
        "Consumers and connections on the broker",
        "count",
        &[
            ("consumers", "consumers", 1.0),
            ("connections", "connections", 1.0),
        ],
    ),
    (
        "sweep-broker-memory",
        "Broker memory (peak RSS)",
        "MiB",
        &[("broker RSS", "broker_mem_mib", 1.0)],
    ),
    (
        "sweep-bandwidth",
        "Broker bandwidth (/varz message bytes)",
        "Mbps",
        &[
            ("in, hold", "broker_in_mbps_hold", 1.0),
            ("out, hold", "broker_out_mbps_hold", 1.0),
            ("in, peak", "broker_in_mbps_peak", 1.0),
            ("out, peak", "broker_out_mbps_peak", 1.0),
        ],
    ),
    (
        "sweep-api",
        "JetStream API requests per agent",
        "requests per agent",
        &[
            ("cold start", "api_per_agent_cold_start", 1.0),
            ("per herd", "api_per_agent_herd", 1.0),
        ],
    ),
    (
        "sweep-latency",
        "Ready p99 and herd recovery",
        "seconds",
        &[
            ("ready p99", "ready_p99_ms", 0.001),
            ("recovery p99", "recovery_p99_s", 1.0),
            ("recovery p100", "recovery_p100_s", 1.0),
        ],
    ),
];

/// True when `dir` is a sweep directory (it has `sweep.csv`).
pub fn is_sweep(dir: &Path) -> bool {
    dir.join(SWEEP_FILE).is_file()
}

/// Writes `dir/report.html` and `dir/charts/sweep-*.svg` for a sweep directory.
pub fn write(dir: &Path) -> Result<PathBuf, ReportError> {
    let table = read::csv(dir, SWEEP_FILE)?.ok_or_else(|| ReportError::NotARun {
        dir: dir.to_path_buf(),
    })?;
    let sizing_path = dir.join(SIZING_FILE);
    let sizing = match std::fs::read_to_string(&sizing_path) {
        Ok(text) => Some(text),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(source) => {
            return Err(ReportError::Io {
                path: sizing_path,
                source,
            });
        }
    };
    let knee = knee(&table)?;
    let charts_dir = dir.join(CHARTS_DIR);
    let charts = size_charts(&table, knee, &charts_dir)?;
    write_charts(&charts_dir, &charts)?;
    let page = page(dir, &table, knee, sizing.as_deref(), &charts);
    write_page(dir, page)
}

/// The smallest size whose status is not `ok`.
fn knee(table: &Table) -> Result<Option<f64>, ReportError> {
    let agents = table.floats("agents")?;
    Ok((0..table.rows.len())
        .filter(|&i| table.get(i, "status") != Some("ok"))
        .filter_map(|i| agents[i])
        .reduce(f64::min))
}

fn size_charts(
    table: &Table,
    knee: Option<f64>,
    charts_dir: &Path,
) -> Result<Vec<Chart>, ReportError> {
    let agents = table.floats("agents")?;
    let mut out = Vec::new();
    for (name, title, y_desc, columns) in CHARTS {
        let mut lines = Vec::new();
        for (label, column, scale) in columns {
            let values = table.floats(column)?;
            let points: Vec<(f64, f64)> = agents
                .iter()
                .zip(&values)
                .filter_map(|(a, v)| Some(((*a)?, (*v)? * scale)))
                .collect();
            if !points.is_empty() {
                lines.push((label.to_string(), points));
            }
        }
        if lines.is_empty() {
            continue;
        }
        let size_chart = BySize {
            title: title.to_string(),
            y_desc: y_desc.to_string(),
            lines,
            knee,
        };
        out.push(chart(name.to_string(), charts_dir, || {
            charts::by_size(&size_chart)
        })?);
    }
    Ok(out)
}

fn page(
    dir: &Path,
    table: &Table,
    knee: Option<f64>,
    sizing: Option<&str>,
    charts: &[Chart],
) -> String {
    let name = dir
        .file_name()
        .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
    let mut out = String::new();
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <title>fleetsim sweep: {name}</title><style>{STYLE}</style></head><body>\n\
         <header id=\"summary\"><h1>fleetsim sweep: {name}</h1><p>{sizes} fleet sizes · {knee}</p></header>\n",
        name = html::escape(&name),
        sizes = table.rows.len(),
        knee = match knee {
            Some(k) => format!("knee: {k} agents"),
            None => "no knee: every size passed".to_string(),
        },
    );
    out.push_str("<section id=\"charts\"><h2>Over fleet size</h2><div class=\"grid\">");
    for c in charts {
        out.push_str(&c.svg);
    }
    out.push_str("</div></section>\n");
    if let Some(md) = sizing {
        out.push_str("<section id=\"sizing\"><h2>Sizing table (sizing.md)</h2>");
        out.push_str(&markdown(md));
        out.push_str("</section>\n");
    }
    let _ = write!(
        out,
        "<section id=\"sweep\"><h2>{SWEEP_FILE}</h2>{}</section>\n</body></html>\n",
        html::table(table, |_| true, "")
    );
    out
}

/// The little markdown `sizing.md` uses, as HTML: `#` headings, `|` tables (the
/// alignment row dropped), `- ` items, `**bold**` and `*italic*`; everything escaped.
fn markdown(md: &str) -> String {
    let inline = |text: &str| {
        let mut out = String::new();
        for (i, part) in html::escape(text).split("**").enumerate() {
            if i % 2 == 1 {
                let _ = write!(out, "<strong>{part}</strong>");
            } else {
                for (j, p) in part.split('*').enumerate() {
                    if j % 2 == 1 {
                        let _ = write!(out, "<em>{p}</em>");
                    } else {
                        out.push_str(p);
                    }
                }
            }
        }
        out
    };
    let cells = |line: &str| -> Vec<String> {
        line.trim()
            .trim_matches('|')
            .split('|')
            .map(|c| inline(c.trim()))
            .collect()
    };
    let mut out = String::new();
    let mut lines = md.lines().peekable();
    while let Some(line) = lines.next() {
        let trimmed = line.trim();
        if let Some(heading) = trimmed.strip_prefix('#') {
            let level = 2 + heading.chars().take_while(|&c| c == '#').count().min(3);
            let _ = write!(
                out,
                "<h{level}>{}</h{level}>",
                inline(heading.trim_start_matches('#').trim())
            );
        } else if trimmed.starts_with('|') {
            out.push_str("<div class=\"scroll\"><table><tr>");
            for c in cells(trimmed) {
                let _ = write!(out, "<th>{c}</th>");
            }
            out.push_str("</tr>");
            while let Some(row) = lines.next_if(|l| l.trim().starts_with('|')) {
                if row.contains("---") {
                    continue;
                }
                out.push_str("<tr>");
                for c in cells(row) {
                    let numeric = c.parse::<f64>().is_ok();
                    let class = if numeric { " class=\"num\"" } else { "" };
                    let _ = write!(out, "<td{class}>{c}</td>");
                }
                out.push_str("</tr>");
            }
            out.push_str("</table></div>");
        } else if let Some(item) = trimmed.strip_prefix("- ") {
            out.push_str("<ul>");
            let _ = write!(out, "<li>{}</li>", inline(item));
            while let Some(next) = lines.next_if(|l| l.trim().starts_with("- ")) {
                let _ = write!(out, "<li>{}</li>", inline(&next.trim()[2..]));
            }
            out.push_str("</ul>");
        } else if !trimmed.is_empty() {
            let _ = write!(out, "<p>{}</p>", inline(trimmed));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::markdown;

    #[test]
    fn sizing_markdown_becomes_escaped_html_tables() {
        let md = "# Sizing\n\n**Knee: 80 agents**, <why>.\n\n| agents | source |\n|---:|---|\n| 20 | measured |\n| 500 | *extrapolated* |\n\n- consumers: 7 per agent\n- RAM: 1 MiB\n";
        let html = markdown(md);
        assert_eq!(
            html,
            "<h2>Sizing</h2>\
             <p><strong>Knee: 80 agents</strong>, &lt;why&gt;.</p>\
             <div class=\"scroll\"><table><tr><th>agents</th><th>source</th></tr>\
             <tr><td class=\"num\">20</td><td>measured</td></tr>\
             <tr><td class=\"num\">500</td><td><em>extrapolated</em></td></tr></table></div>\
             <ul><li>consumers: 7 per agent</li><li>RAM: 1 MiB</li></ul>"
        );
    }
}
