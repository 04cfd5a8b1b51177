//! The report's charts, drawn with plotters into SVG strings (inlined in `report.html`
//! and written as `charts/<name>.svg`). Text is emitted as SVG `<text>` and laid out
//! with plotters' built-in size estimate, so drawing needs no font files; the browser
//! renders the text with its own fonts.
//!
//! Two kinds: timelines (values over the run's clock, with step boundaries and the gaps
//! where the broker did not answer) and percentile curves (ms over a "nines" axis).

use plotters::coord::Shift;
use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;

/// Tableau 10: distinguishable, also in grey print.
const PALETTE: [RGBColor; 8] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(23, 190, 207),
];
/// (dash, gap) in pixels per dash style; style 0 is solid.
const DASHES: [(u32, u32); 4] = [(0, 0), (9, 5), (3, 3), (14, 4)];
const TIMELINE_SIZE: (u32, u32) = (1300, 380);
const PERCENTILE_SIZE: (u32, u32) = (640, 360);
/// Room right of a timeline's plot for its legend, which then never hides data.
const LEGEND_WIDTH: u32 = 250;
/// Rows of step labels, so labels of steps close in time do not overlap.
const LABEL_ROWS: usize = 4;
const FONT: &str = "sans-serif";

fn color(i: usize) -> RGBColor {
    PALETTE[i % PALETTE.len()]
}

/// One named line of a timeline, possibly in several segments (gaps between them).
pub struct Line {
    pub label: String,
    pub color: usize,
    pub dash: usize,
    /// On the secondary (right) axis: a quantity of a different scale.
    pub right: bool,
    /// Drawn wide and pale under the others, so lines with equal values stay visible
    /// (agents connected under agents ready).
    pub underlay: bool,
    pub segments: Vec<Vec<(f64, f64)>>,
}

/// A step boundary: a vertical line, labelled once per step.
pub struct Marker {
    pub t: f64,
    pub label: Option<String>,
    /// The variant's colour; grey in a single run.
    pub color: Option<usize>,
}

pub struct Timeline {
    pub title: String,
    pub y_left: String,
    pub y_right: Option<String>,
    pub lines: Vec<Line>,
    pub markers: Vec<Marker>,
    /// Spans without samples (the broker did not answer), shaded.
    pub gaps: Vec<(f64, f64)>,
}

/// A percentile curve: (percentile in [0, 1], ms, total count) rows of one `.hgrm`.
pub struct Curve {
    pub label: String,
    pub color: usize,
    pub rows: Vec<(f64, f64, f64)>,
}

type Error = String;

fn err<E: std::error::Error>(e: E) -> Error {
    e.to_string()
}

/// A range top with some headroom that is never empty.
fn top(values: impl Iterator<Item = f64>, headroom: f64) -> f64 {
    let max = values.fold(0.0_f64, f64::max);
    if max > 0.0 { max * headroom } else { 1.0 }
}

/// The plot of one chart: its coordinates on the SVG backend.
type Plot<'a, 'b> = ChartContext<'a, SVGBackend<'b>, Cartesian2d<RangedCoordf64, RangedCoordf64>>;

/// An SVG document of `size` on white, drawn by `draw`.
fn svg(
    size: (u32, u32),
    draw: impl FnOnce(&DrawingArea<SVGBackend, Shift>) -> Result<(), Error>,
) -> Result<String, Error> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, size).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        draw(&root)?;
        root.present().map_err(err)?;
    }
    Ok(svg)
}

/// How a chart's axes are labelled: descriptions, the x axis's labels (how many, and
/// as what text); the y axis's numbers are [`number`]s.
struct Axes<'a> {
    x_desc: &'a str,
    y_desc: &'a str,
    x_labels: Option<usize>,
    x_format: &'a dyn Fn(&f64) -> String,
}

/// The grid and axes every chart draws alike: light grid lines, the same label font.
fn mesh(plot: &mut Plot, axes: &Axes) -> Result<(), Error> {
    let mut mesh = plot.configure_mesh();
    mesh.x_desc(axes.x_desc)
        .y_desc(axes.y_desc)
        .x_label_formatter(axes.x_format)
        .y_label_formatter(&number)
        .light_line_style(RGBColor(238, 238, 238))
        .label_style((FONT, 16));
    if let Some(n) = axes.x_labels {
        mesh.x_labels(n);
    }
    mesh.draw().map_err(err)
}

/// A small chart (percentiles, by size): `title` over a plot of `[0, x_max] × [0,
/// y_max]` with its axes drawn.
fn small_plot<'a, 'b>(
    root: &'a DrawingArea<SVGBackend<'b>, Shift>,
    title: &str,
    (x_max, y_max): (f64, f64),
    axes: &Axes,
) -> Result<Plot<'a, 'b>, Error> {
    let mut plot = ChartBuilder::on(root)
        .caption(title, (FONT, 22))
        .margin(10)
        .margin_right(20)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(0.0..x_max, 0.0..y_max)
        .map_err(err)?;
    mesh(&mut plot, axes)?;
    Ok(plot)
}

/// Draws `chart` and returns the SVG document.
pub fn timeline(chart: &Timeline) -> Result<String, Error> {
    let points = |right: bool| {
        chart
            .lines
            .iter()
            .filter(move |l| l.right == right)
            .flat_map(|l| l.segments.iter().flatten())
    };
    let x_max = top(
        points(false)
            .chain(points(true))
            .map(|p| p.0)
            .chain(chart.markers.iter().map(|m| m.t))
            .chain(chart.gaps.iter().map(|g| g.1)),
        1.02,
    );
    // Headroom above the data for the rows of step labels.
    let y_max = top(points(false).map(|p| p.1), 1.4);
    let y2_max = top(points(true).map(|p| p.1), 1.4);

    svg(TIMELINE_SIZE, |root| {
        let mut ctx = ChartBuilder::on(root)
            .caption(&chart.title, (FONT, 24))
            .margin(10)
            .margin_right(LEGEND_WIDTH)
            .x_label_area_size(40)
            .y_label_area_size(70)
            .right_y_label_area_size(if chart.y_right.is_some() { 70 } else { 0 })
            .build_cartesian_2d(0.0..x_max, 0.0..y_max)
            .map_err(err)?
            .set_secondary_coord(0.0..x_max, 0.0..y2_max);
        let axes = Axes {
            x_desc: "seconds since the first step",
            y_desc: &chart.y_left,
            x_labels: None,
            x_format: &number,
        };
        mesh(&mut ctx, &axes)?;
        if let Some(y_right) = &chart.y_right {
            ctx.configure_secondary_axes()
                .y_desc(y_right)
                .y_label_formatter(&number)
                .label_style((FONT, 16))
                .draw()
                .map_err(err)?;
        }

        let grey = RGBColor(150, 150, 150);
        ctx.draw_series(
            chart
                .gaps
                .iter()
                .map(|&(a, b)| Rectangle::new([(a, 0.0), (b, y_max)], grey.mix(0.25).filled())),
        )
        .map_err(err)?;
        // Step lines; each label in the first row where it overlaps no earlier label.
        let data_per_px = x_max / f64::from(TIMELINE_SIZE.0 - LEGEND_WIDTH - 160);
        let mut row_ends = [f64::MIN; LABEL_ROWS];
        for m in &chart.markers {
            let c = m.color.map_or(RGBColor(90, 90, 90), color);
            ctx.draw_series(std::iter::once(PathElement::new(
                vec![(m.t, 0.0), (m.t, y_max)],
                c.mix(0.5).stroke_width(1),
            )))
            .map_err(err)?;
            if let Some(label) = &m.label {
                let free = (0..LABEL_ROWS).find(|&r| row_ends[r] <= m.t);
                let row = free
                    .or_else(|| {
                        (0..LABEL_ROWS).min_by(|&a, &b| row_ends[a].total_cmp(&row_ends[b]))
                    })
                    .unwrap_or(0);
                row_ends[row] = m.t + (label.len() as f64 * 8.0 + 12.0) * data_per_px;
                let y = y_max * (0.985 - 0.065 * row as f64);
                let style = (FONT, 15).into_font().color(&BLACK.mix(0.75));
                ctx.draw_series(std::iter::once(
                    EmptyElement::at((m.t, y)) + Text::new(label.clone(), (3, 0), style),
                ))
                .map_err(err)?;
            }
        }

        let columns = (TIMELINE_SIZE.0 - LEGEND_WIDTH - 80) as usize;
        for line in &chart.lines {
            let style = line_style(line);
            let (dash, gap) = DASHES[line.dash % DASHES.len()];
            // A right-axis value drawn in left-axis units lands on the same pixel.
            let scale = if line.right { y_max / y2_max } else { 1.0 };
            for segment in &line.segments {
                let thinned = thin(segment, x_max, columns);
                let points = thinned.iter().map(|&(t, v)| (t, v * scale));
                if dash == 0 {
                    ctx.draw_series(LineSeries::new(points, style)).map(drop)
                } else {
                    ctx.draw_series(DashedLineSeries::new(points, dash, gap, style))
                        .map(drop)
                }
                .map_err(err)?;
            }
        }

        legend(root, chart)
    })
}

/// At most four points per pixel column of the plot: the first, lowest, highest and
/// last of the points that fall into it, in time order. A long run (hours at 100 ms)
/// then draws the same picture, peaks and dips included, from a bounded SVG.
fn thin(points: &[(f64, f64)], x_max: f64, columns: usize) -> Vec<(f64, f64)> {
    if points.len() <= 4 * columns || x_max <= 0.0 {
        return points.to_vec();
    }
    let column = |t: f64| ((t / x_max * columns as f64) as usize).min(columns);
    let mut out = Vec::with_capacity(4 * (columns + 1));
    let mut start = 0;
    while start < points.len() {
        let c = column(points[start].0);
        let end = start
            + points[start..]
                .iter()
                .position(|p| column(p.0) != c)
                .unwrap_or(points.len() - start);
        let bucket = &points[start..end];
        let lowest = (0..bucket.len()).min_by(|&a, &b| bucket[a].1.total_cmp(&bucket[b].1));
        let highest = (0..bucket.len()).max_by(|&a, &b| bucket[a].1.total_cmp(&bucket[b].1));
        let mut keep = [Some(0), lowest, highest, Some(bucket.len() - 1)];
        keep.sort();
        let mut last = None;
        for i in keep.into_iter().flatten() {
            if last != Some(i) {
                out.push(bucket[i]);
                last = Some(i);
            }
        }
        start = end;
    }
    out
}

/// The boxed legend of the labelled series, top left (percentile and by-size charts).
fn series_legend<'a, 'b: 'a>(ctx: &mut Plot<'a, 'b>) -> Result<(), Error> {
    ctx.configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK.mix(0.3))
        .label_font((FONT, 16))
        .draw()
        .map_err(err)
}

fn line_style(line: &Line) -> ShapeStyle {
    if line.underlay {
        color(line.color).mix(0.45).stroke_width(5)
    } else {
        color(line.color).stroke_width(2)
    }
}

/// Axis numbers without a useless `.0`: `25`, `0.25`.
fn number(v: &f64) -> String {
    if (v - v.round()).abs() < 1e-9 {
        format!("{v:.0}")
    } else {
        let text = format!("{v:.3}");
        text.trim_end_matches('0').to_string()
    }
}

/// The legend in the margin right of the plot: one row per line (and one for gaps).
fn legend(root: &DrawingArea<SVGBackend, Shift>, chart: &Timeline) -> Result<(), Error> {
    let x = (TIMELINE_SIZE.0 - LEGEND_WIDTH + 12) as i32;
    let text = (FONT, 16).into_font().color(&BLACK);
    let mut y = 50;
    for line in &chart.lines {
        let style = line_style(line);
        let (dash, gap) = DASHES[line.dash % DASHES.len()];
        let (dash, step) = if dash == 0 {
            (24, 24)
        } else {
            (dash as i32, (dash + gap) as i32)
        };
        for start in (0..24).step_by(step as usize) {
            let end = (start + dash).min(24);
            root.draw(&PathElement::new(vec![(x + start, y), (x + end, y)], style))
                .map_err(err)?;
        }
        let suffix = if line.right { " (right)" } else { "" };
        root.draw(&Text::new(
            format!("{}{suffix}", line.label),
            (x + 30, y - 7),
            text.clone(),
        ))
        .map_err(err)?;
        y += 20;
    }
    if !chart.gaps.is_empty() {
        let grey = RGBColor(150, 150, 150).mix(0.25).filled();
        root.draw(&Rectangle::new([(x, y - 6), (x + 24, y + 6)], grey))
            .map_err(err)?;
        root.draw(&Text::new("no sample", (x + 30, y - 7), text))
            .map_err(err)?;
    }
    Ok(())
}

/// `-log10(1 - p)`: 0 at p0, 1 at p90, 2 at p99, 3 at p99.9: the tail gets the room.
fn nines(p: f64) -> f64 {
    -(1.0 - p).log10()
}

/// An axis position back as a percentile label: `99.9%`.
fn nines_label(x: &f64) -> String {
    let decimals = (x.ceil() as usize).saturating_sub(2);
    format!("{:.*}%", decimals, 100.0 * (1.0 - 10f64.powf(-x.max(0.0))))
}

/// The curve's points on the nines axis. The last row (percentile 1, the max, which
/// has no finite position) is put at `1 - 1/count`, where the max of `count` values
/// sits.
fn curve_points(rows: &[(f64, f64, f64)]) -> Vec<(f64, f64)> {
    let mut last = 0.0;
    rows.iter()
        .map(|&(p, ms, count)| {
            let x = if p < 1.0 {
                nines(p)
            } else {
                nines(1.0 - 1.0 / count.max(1.0))
            };
            last = x.max(last);
            (last, ms)
        })
        .collect()
}

/// Draws the percentile curves of one metric; one line per curve.
pub fn percentiles(title: &str, curves: &[Curve]) -> Result<String, Error> {
    let lines: Vec<(&Curve, Vec<(f64, f64)>)> =
        curves.iter().map(|c| (c, curve_points(&c.rows))).collect();
    let all = || lines.iter().flat_map(|(_, p)| p.iter());
    let x_max = top(all().map(|p| p.0), 1.0).ceil().max(2.0);
    let y_max = top(all().map(|p| p.1), 1.1);

    svg(PERCENTILE_SIZE, |root| {
        let axes = Axes {
            x_desc: "percentile",
            y_desc: "ms",
            x_labels: Some(2 * x_max as usize + 1),
            x_format: &nines_label,
        };
        let mut ctx = small_plot(root, title, (x_max, y_max), &axes)?;
        for (curve, points) in &lines {
            let style = color(curve.color).stroke_width(2);
            ctx.draw_series(LineSeries::new(points.iter().copied(), style))
                .map_err(err)?
                .label(curve.label.clone())
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], style));
        }
        if curves.len() > 1 {
            series_legend(&mut ctx)?;
        }
        Ok(())
    })
}

/// A quantity over fleet size (a sweep): one line per quantity through the measured
/// sizes, each size a dot, the knee a red vertical line.
pub struct BySize {
    pub title: String,
    pub y_desc: String,
    /// (label, (agents, value) points).
    pub lines: Vec<(String, Vec<(f64, f64)>)>,
    pub knee: Option<f64>,
}

/// Draws a [`BySize`] chart and returns the SVG document.
pub fn by_size(chart: &BySize) -> Result<String, Error> {
    let all = || chart.lines.iter().flat_map(|(_, p)| p.iter());
    let x_max = top(all().map(|p| p.0).chain(chart.knee), 1.05);
    let y_max = top(all().map(|p| p.1), 1.15);

    svg(PERCENTILE_SIZE, |root| {
        let axes = Axes {
            x_desc: "agents",
            y_desc: &chart.y_desc,
            x_labels: None,
            x_format: &number,
        };
        let mut ctx = small_plot(root, &chart.title, (x_max, y_max), &axes)?;
        if let Some(knee) = chart.knee {
            let red = color(3);
            ctx.draw_series(std::iter::once(PathElement::new(
                vec![(knee, 0.0), (knee, y_max)],
                red.stroke_width(2),
            )))
            .map_err(err)?
            .label(format!("knee: {}", number(&knee)))
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], red.stroke_width(2)));
        }
        for (i, (label, points)) in chart.lines.iter().enumerate() {
            let style = color(i).stroke_width(2);
            ctx.draw_series(LineSeries::new(points.iter().copied(), style))
                .map_err(err)?
                .label(label.clone())
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], style));
            ctx.draw_series(points.iter().map(|&p| Circle::new(p, 4, color(i).filled())))
                .map_err(err)?;
        }
        series_legend(&mut ctx)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nines_axis_labels_the_tail() {
        assert_eq!(nines_label(&0.0), "0%");
        assert_eq!(nines_label(&1.0), "90%");
        assert_eq!(nines_label(&2.0), "99%");
        assert_eq!(nines_label(&3.0), "99.9%");
        assert!((nines(0.999) - 3.0).abs() < 1e-9);
    }

    #[test]
    fn thinning_bounds_the_points_and_keeps_every_peak_and_dip() {
        // Two hours at 100 ms: a slow wave with one spike and one dip in it.
        let mut points: Vec<(f64, f64)> = (0..72_000)
            .map(|i| (i as f64 / 10.0, 100.0 + (i as f64 / 500.0).sin()))
            .collect();
        points[40_000].1 = 5_000.0;
        points[50_001].1 = -7.0;
        let thinned = thin(&points, 7_200.0, 1_000);
        assert!(thinned.len() <= 4 * 1_001, "{} points", thinned.len());
        assert!(thinned.contains(&points[40_000]), "the spike survives");
        assert!(thinned.contains(&points[50_001]), "the dip survives");
        assert_eq!(thinned.first(), points.first());
        assert_eq!(thinned.last(), points.last());
        assert!(thinned.windows(2).all(|w| w[0].0 < w[1].0), "time order");
        // A short series is drawn as it is.
        assert_eq!(thin(&points[..100], 10.0, 1_000), points[..100].to_vec());
    }

    #[test]
    fn every_kind_of_chart_draws_its_axes_and_lines() {
        let by_size = by_size(&BySize {
            title: "Consumers".into(),
            y_desc: "count".into(),
            lines: vec![(
                "consumers".into(),
                vec![(20.0, 140.0), (40.0, 280.0), (80.0, 560.0)],
            )],
            knee: Some(80.0),
        })
        .expect("by size");
        for text in [
            "Consumers",
            "\nagents\n",
            "\ncount\n",
            "knee: 80",
            "consumers",
        ] {
            assert!(by_size.contains(text), "{text} in {by_size}");
        }
        let curve = Curve {
            label: "ready".into(),
            color: 0,
            rows: vec![
                (0.0, 1.0, 1.0),
                (0.9, 2.0, 9.0),
                (0.99, 3.0, 10.0),
                (1.0, 4.0, 10.0),
            ],
        };
        let percentiles = percentiles("ready in 1:start (ms)", &[curve]).expect("percentiles");
        for text in ["\npercentile\n", "\nms\n", "\n90%\n", "\n99%\n"] {
            assert!(percentiles.contains(text), "{text} in {percentiles}");
        }
        let timeline = timeline(&Timeline {
            title: "Broker".into(),
            y_left: "consumers".into(),
            y_right: Some("API in flight".into()),
            lines: vec![Line {
                label: "consumers".into(),
                color: 0,
                dash: 0,
                right: false,
                underlay: false,
                segments: vec![vec![(0.0, 1.0), (1.0, 2.0), (2.0, 3.0)]],
            }],
            markers: Vec::new(),
            gaps: Vec::new(),
        })
        .expect("timeline");
        for text in [
            "\nseconds since the first step\n",
            "\nconsumers\n",
            "\nAPI in flight\n",
        ] {
            assert!(timeline.contains(text), "{text} in {timeline}");
        }
    }

    #[test]
    fn the_max_sits_at_one_minus_one_over_count() {
        let points = curve_points(&[(0.0, 1.0, 1.0), (0.5, 2.0, 50.0), (1.0, 3.0, 100.0)]);
        assert_eq!(points[0], (0.0, 1.0));
        assert!((points[2].0 - 2.0).abs() < 1e-9, "{points:?}");
    }
}
