//! The HdrHistogram percentile-distribution text format (`.hgrm`).
//!
//! This is the format of Java HdrHistogram's `outputPercentileDistribution`, which
//! `HistogramLogProcessor` writes and the online HdrHistogram plotter
//! (hdrhistogram.github.io/HdrHistogram/plotFiles.html) reads. Writing it, rather than a
//! format of our own, lets anyone overlay the latency curves of two runs with tools that
//! already exist. The Rust crate has the percentile iterator but not the printer, so the
//! printer is reproduced here, format string for format string:
//!
//! ```text
//!        Value     Percentile TotalCount 1/(1-Percentile)
//!
//!        1.000 0.000000000000          1           1.00
//!       10.007 0.100000000000         10           1.11
//!        ...
//!      100.031 0.990625000000        100         106.67
//!      100.031 1.000000000000        100
//! #[Mean    =       50.504, StdDeviation   =       28.866]
//! #[Max     =      100.031, Total count    =          100]
//! #[Buckets =            7, SubBuckets     =         2048]
//! ```
//!
//! Values use as many decimals as the histogram has significant digits; the last row
//! (percentile 1.0) has no `1/(1-Percentile)` column because it would be infinite.

use std::io::{self, Write};

use hdrhistogram::Histogram;

/// Percentile ticks per half distance to 100 %, the value every HdrHistogram tool uses.
pub const TICKS_PER_HALF_DISTANCE: u32 = 5;

/// Writes `hist` as a percentile distribution, every value divided by `unit_ratio`
/// (1000.0 turns µs into ms).
pub fn write_percentile_distribution<W: Write>(
    hist: &Histogram<u64>,
    ticks_per_half_distance: u32,
    unit_ratio: f64,
    out: &mut W,
) -> io::Result<()> {
    let digits = usize::from(hist.sigfig());
    writeln!(
        out,
        "{:>12} {:>14} {:>10} {:>14}\n",
        "Value", "Percentile", "TotalCount", "1/(1-Percentile)"
    )?;
    let mut total_count = 0u64;
    for step in hist.iter_quantiles(ticks_per_half_distance) {
        total_count = total_count.saturating_add(step.count_since_last_iteration());
        let value = step.value_iterated_to() as f64 / unit_ratio;
        let quantile = step.quantile_iterated_to();
        if quantile < 1.0 {
            let inverse = 1.0 / (1.0 - quantile);
            writeln!(
                out,
                "{value:12.digits$} {quantile:2.12} {total_count:10} {inverse:14.2}"
            )?;
        } else {
            writeln!(out, "{value:12.digits$} {quantile:2.12} {total_count:10}")?;
        }
    }
    let mean = hist.mean() / unit_ratio;
    let stdev = hist.stdev() / unit_ratio;
    let max = hist.max() as f64 / unit_ratio;
    writeln!(
        out,
        "#[Mean    = {mean:12.digits$}, StdDeviation   = {stdev:12.digits$}]"
    )?;
    writeln!(
        out,
        "#[Max     = {max:12.digits$}, Total count    = {:12}]",
        hist.len()
    )?;
    writeln!(
        out,
        "#[Buckets = {:12}, SubBuckets     = {:12}]",
        hist.buckets(),
        sub_bucket_count(hist.sigfig())
    )
}

/// HdrHistogram's sub-bucket count: the power of two that holds 2 × 10^sigfig values at
/// unit resolution (2048 for 3 significant digits). The Rust crate keeps it private.
fn sub_bucket_count(sigfig: u8) -> u64 {
    (2 * 10u64.pow(u32::from(sigfig))).next_power_of_two()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render(hist: &Histogram<u64>) -> String {
        let mut out = Vec::new();
        write_percentile_distribution(hist, TICKS_PER_HALF_DISTANCE, 1000.0, &mut out)
            .expect("write to a Vec");
        String::from_utf8(out).expect("utf-8")
    }

    #[test]
    fn known_values_end_at_the_max_with_the_total_count() {
        let mut hist = Histogram::<u64>::new(3).expect("histogram");
        for ms in 1..=100u64 {
            hist.record(ms * 1000).expect("record");
        }
        let text = render(&hist);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[0],
            "       Value     Percentile TotalCount 1/(1-Percentile)"
        );
        assert_eq!(lines[1], "");
        assert_eq!(
            lines[2],
            "       1.000 0.000000000000          1           1.00"
        );

        let rows: Vec<&str> = lines[2..]
            .iter()
            .copied()
            .take_while(|l| !l.starts_with('#'))
            .collect();
        let last = rows.last().expect("rows");
        let fields: Vec<&str> = last.split_whitespace().collect();
        // 100 ms is recorded as the highest value equivalent to 100000 µs.
        let max_ms = format!("{:.3}", hist.max() as f64 / 1000.0);
        assert_eq!(
            fields,
            [max_ms.as_str(), "1.000000000000", "100"],
            "{last:?}"
        );
        // Every row but the last has the 1/(1-Percentile) column; counts never decrease.
        assert!(
            rows[..rows.len() - 1]
                .iter()
                .all(|r| r.split_whitespace().count() == 4),
            "{text}"
        );
        let counts: Vec<u64> = rows
            .iter()
            .map(|r| r.split_whitespace().nth(2).unwrap().parse().unwrap())
            .collect();
        assert!(counts.windows(2).all(|w| w[0] <= w[1]), "{counts:?}");

        let footer = &lines[lines.len() - 3..];
        assert!(
            footer[0].starts_with("#[Mean    =       50.5"),
            "{footer:?}"
        );
        assert_eq!(
            footer[1],
            format!("#[Max     = {max_ms:>12}, Total count    =          100]")
        );
        assert_eq!(
            footer[2],
            format!(
                "#[Buckets = {:12}, SubBuckets     =         2048]",
                hist.buckets()
            )
        );
    }

    #[test]
    fn a_single_value_is_one_row_at_zero_and_one_at_one() {
        let mut hist = Histogram::<u64>::new(3).expect("histogram");
        hist.record(1500).expect("record");
        let text = render(&hist);
        let rows: Vec<&str> = text
            .lines()
            .skip(2)
            .take_while(|l| !l.starts_with('#'))
            .collect();
        assert_eq!(
            rows,
            [
                "       1.500 0.000000000000          1           1.00",
                "       1.500 1.000000000000          1",
            ]
        );
    }
}
