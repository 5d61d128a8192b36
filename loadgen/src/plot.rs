//! `--plot FILE`: one picture of the run, PNG or SVG by the file's extension. Top: latency
//! percentiles of each second (log scale, with the 10 ms line the switch is held to);
//! bottom: requests per second, due, sent and answered, with overload declines (91) and
//! timeouts.
//!
//! Text needs a font: plotters is built without fontconfig (nothing to install to build
//! loadgen), so a TrueType font is read at run time from `LOADGEN_FONT` or the usual
//! system places (Debian's fonts-dejavu-core is on this project's machines).

use crate::report::Report;
use anyhow::{anyhow, bail, Context, Result};
use plotters::coord::Shift;
use plotters::prelude::*;
use std::path::Path;

const WIDTH_PX: u32 = 1400;
const HEIGHT_PX: u32 = 900;

/// Latency every plot marks: the target a switch is held to here.
const LATENCY_TARGET_MS: f64 = 10.0;

const FONT_CANDIDATES: [&str; 6] = [
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
    "/usr/share/fonts/truetype/freefont/FreeSans.ttf",
    "/usr/share/fonts/liberation/LiberationSans-Regular.ttf",
];

/// Which percentile of a sample a line shows.
type Percentile = fn(&crate::run::Sample) -> u64;

/// Which rate of a second a line shows.
type RateOf = fn(&Rates) -> f64;

/// One second's rates, per second.
struct Rates {
    t_s: f64,
    sent: f64,
    due: Option<f64>,
    answered: f64,
    overloaded: f64,
    timeouts: f64,
}

fn register_font() -> Result<()> {
    let override_path = std::env::var("LOADGEN_FONT").ok();
    let candidates = override_path.iter().map(String::as_str).chain(FONT_CANDIDATES);
    for path in candidates {
        if let Ok(bytes) = std::fs::read(path) {
            // plotters keeps fonts for the life of the process; one font, read once.
            let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
            if plotters::style::register_font("sans-serif", FontStyle::Normal, bytes).is_ok() {
                return Ok(());
            }
        }
    }
    bail!("no TrueType font found for the plot's text: install fonts-dejavu-core, or point LOADGEN_FONT at a .ttf file")
}

pub fn write(report: &Report, path: &Path) -> Result<()> {
    register_font()?;
    let extension = path.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase);
    match extension.as_deref() {
        Some("png") => {
            let root = BitMapBackend::new(path, (WIDTH_PX, HEIGHT_PX)).into_drawing_area();
            draw(report, &root)?;
            root.present().map_err(|e| anyhow!("writing {}: {e}", path.display()))?;
        }
        Some("svg") => {
            let root = SVGBackend::new(path, (WIDTH_PX, HEIGHT_PX)).into_drawing_area();
            draw(report, &root)?;
            root.present().map_err(|e| anyhow!("writing {}: {e}", path.display()))?;
        }
        _ => bail!("--plot {}: the file must end in .png or .svg", path.display()),
    }
    Ok(())
}

fn draw<DB: DrawingBackend>(report: &Report, root: &DrawingArea<DB, Shift>) -> Result<()>
where
    DB::ErrorType: 'static,
{
    let fail = |e: DrawingAreaErrorKind<DB::ErrorType>| anyhow!("drawing the plot: {e:?}");
    root.fill(&WHITE).map_err(fail)?;
    let title = format!(
        "loadgen {}: {}, {} connection(s){}",
        report.mode,
        report.pacing,
        report.connections,
        if report.loadgen_saturated_seconds > 0 { " - LOADGEN SATURATED" } else { "" },
    );
    let summary = format!(
        "latency from the scheduled send, per second (log scale); whole run: p50 {:.2} ms, p99 {:.2} ms, p99.9 {:.2} \
         ms, max {:.1} ms",
        report.latency_us_p50 as f64 / 1e3,
        report.latency_us_p99 as f64 / 1e3,
        report.latency_us_p999 as f64 / 1e3,
        report.latency_us_max as f64 / 1e3,
    );
    let root = root.titled(&title, ("sans-serif", 20)).map_err(fail)?;
    let (top, bottom) = root.split_vertically((HEIGHT_PX as f64 * 0.52) as u32);
    let series = &report.series;
    let t_max = series.last().map_or(1.0, |s| s.t_s).max(1.0);

    // Latency percentiles per second, in ms on a log scale.
    let to_ms = |us: u64| (us as f64 / 1e3).max(0.01);
    let latency_max_ms = series.iter().map(|s| to_ms(s.latency_us_max)).fold(LATENCY_TARGET_MS, f64::max) * 1.5;
    let latency_min_ms = series
        .iter()
        .filter(|s| s.answered > 0)
        .map(|s| to_ms(s.latency_us_p50))
        .fold(f64::INFINITY, f64::min)
        .clamp(0.01, LATENCY_TARGET_MS)
        / 1.5;
    let mut chart = ChartBuilder::on(&top)
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(70)
        .caption(&summary, ("sans-serif", 17))
        .build_cartesian_2d(0f64..t_max, (latency_min_ms..latency_max_ms).log_scale())
        .map_err(fail)?;
    chart
        .configure_mesh()
        .x_desc("seconds")
        .y_desc("ms")
        .light_line_style(WHITE)
        .y_label_formatter(&|v| if *v >= 1.0 { format!("{v:.0}") } else { format!("{v:.2}") })
        .label_style(("sans-serif", 14))
        .draw()
        .map_err(fail)?;
    chart
        .draw_series(LineSeries::new(
            [(0.0, LATENCY_TARGET_MS), (t_max, LATENCY_TARGET_MS)],
            ShapeStyle::from(&BLACK.mix(0.35)).stroke_width(1),
        ))
        .map_err(fail)?
        .label("10 ms")
        .legend(|(x, y)| PathElement::new([(x, y), (x + 18, y)], BLACK.mix(0.35)));
    // Each sample covers the time since the one before it: drawn at its middle.
    let middles: Vec<f64> = series
        .iter()
        .scan(0.0, |previous: &mut f64, s| {
            let middle = (*previous + s.t_s) / 2.0;
            *previous = s.t_s;
            Some(middle)
        })
        .collect();
    let answered: Vec<(f64, &crate::run::Sample)> =
        middles.iter().copied().zip(series.iter()).filter(|(_, s)| s.answered > 0).collect();
    let percentiles: [(&str, RGBColor, Percentile); 5] = [
        ("p50", RGBColor(31, 119, 180), |s| s.latency_us_p50),
        ("p90", RGBColor(44, 160, 44), |s| s.latency_us_p90),
        ("p99", RGBColor(255, 127, 14), |s| s.latency_us_p99),
        ("p99.9", RGBColor(214, 39, 40), |s| s.latency_us_p999),
        ("max", RGBColor(120, 120, 120), |s| s.latency_us_max),
    ];
    for (name, color, value) in percentiles {
        chart
            .draw_series(LineSeries::new(
                answered.iter().map(|(t, s)| (*t, to_ms(value(s)))),
                ShapeStyle::from(&color).stroke_width(2),
            ))
            .map_err(fail)?
            .label(name)
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 18, y)], ShapeStyle::from(&color).stroke_width(2)));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK.mix(0.3))
        .label_font(("sans-serif", 14))
        .draw()
        .map_err(fail)?;

    // Requests per second.
    let mut previous_t = 0.0;
    let rates: Vec<Rates> = series
        .iter()
        .map(|s| {
            let width = (s.t_s - previous_t).max(1e-3);
            let previous_t_of_sample = previous_t;
            previous_t = s.t_s;
            let per_s = |n: u64| n as f64 / width;
            Rates {
                t_s: (previous_t_of_sample + s.t_s) / 2.0,
                sent: per_s(s.sent),
                due: s.target.map(|t| t / width),
                answered: per_s(s.answered),
                overloaded: per_s(s.overloaded),
                timeouts: per_s(s.timeouts),
            }
        })
        .collect();
    let rate_max = rates.iter().map(|r| r.sent.max(r.due.unwrap_or(0.0)).max(r.answered)).fold(1.0, f64::max) * 1.15;
    let mut chart = ChartBuilder::on(&bottom)
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(70)
        .caption(
            format!(
                "requests per second; whole run: {} sent, {:.0} answers/s, {} timeouts",
                report.requests_sent, report.throughput_per_s, report.timeouts
            ),
            ("sans-serif", 17),
        )
        .build_cartesian_2d(0f64..t_max, 0f64..rate_max)
        .map_err(fail)?;
    chart
        .configure_mesh()
        .x_desc("seconds")
        .y_desc("per second")
        .light_line_style(WHITE)
        .y_label_formatter(&|v| if *v >= 10_000.0 { format!("{:.0}k", v / 1e3) } else { format!("{v:.0}") })
        .label_style(("sans-serif", 14))
        .draw()
        .map_err(fail)?;
    let lines: [(&str, RGBColor, u32, RateOf); 4] = [
        ("sent", RGBColor(158, 202, 225), 4, |r| r.sent),
        ("answered", RGBColor(31, 119, 180), 2, |r| r.answered),
        ("declined 91 (overload)", RGBColor(214, 39, 40), 2, |r| r.overloaded),
        ("timeouts", RGBColor(148, 103, 189), 2, |r| r.timeouts),
    ];
    for (name, color, width, value) in lines {
        chart
            .draw_series(LineSeries::new(
                rates.iter().map(|r| (r.t_s, value(r))),
                ShapeStyle::from(&color).stroke_width(width),
            ))
            .map_err(fail)?
            .label(name)
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 18, y)], ShapeStyle::from(&color).stroke_width(2)));
    }
    // The schedule last, dashed, so it shows over the lines that should follow it.
    if rates.iter().any(|r| r.due.is_some()) {
        chart
            .draw_series(DashedLineSeries::new(
                rates.iter().filter_map(|r| r.due.map(|t| (r.t_s, t))),
                6,
                4,
                ShapeStyle::from(&BLACK).stroke_width(1),
            ))
            .map_err(fail)?
            .label("due (schedule)")
            .legend(|(x, y)| PathElement::new([(x, y), (x + 18, y)], BLACK));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK.mix(0.3))
        .label_font(("sans-serif", 14))
        .draw()
        .map_err(fail)?;
    Ok(())
}

/// Writes the plot, saying where; a failure is reported but does not fail the run.
pub fn write_reporting(report: &Report, path: &Path) -> Result<()> {
    write(report, path).with_context(|| format!("writing the plot {}", path.display()))?;
    eprintln!("loadgen: plot written to {}", path.display());
    Ok(())
}
