//! The `--report` page: one HTML file with the summary and the charts of a run, so a load test
//! can be looked at instead of read as JSON. It must open anywhere, offline and years later:
//! the style is inline, the charts are SVG drawn here, hover details are SVG `<title>`s (no
//! script), and nothing is fetched (no fonts, no libraries). Every text from outside (the
//! command line, error messages in the summary) is escaped.

use crate::report::Report;
use crate::stats::Latency;
use crate::timeline::{Sample, Timeline};
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::fmt::Write;
use std::time::{SystemTime, UNIX_EPOCH};

/// Writes the page for `report` to `path`; fails when the file cannot be written.
pub fn write(path: &str, report: &Report, command: &str) -> Result<(), String> {
    let seconds = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    std::fs::write(path, render(report, command, &utc_date(seconds)))
        .map_err(|e| format!("--report {path}: {e}"))
}

/// Fails, before a run that may take minutes, when `path` is in a directory that does not
/// exist or names a directory.
pub fn check_writable(path: &str) -> Result<(), String> {
    let path = std::path::Path::new(path);
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => std::path::Path::new("."),
    };
    if !dir.is_dir() {
        return Err(format!("--report: no directory {}", dir.display()));
    }
    if path.is_dir() {
        return Err(format!("--report: {} is a directory", path.display()));
    }
    Ok(())
}

/// The whole page. `command` is the command line as typed, `date` when the run ended.
pub fn render(report: &Report, command: &str, date: &str) -> String {
    let scenario = report
        .json
        .get("scenario")
        .and_then(Value::as_str)
        .unwrap_or("run");
    let mut page = String::with_capacity(64 * 1024);
    let _ = writeln!(
        page,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>mesh-bench {scenario} ({date})</title>\n<style>{STYLE}</style>\n</head>\n<body>\n\
         <h1>mesh-bench {scenario}</h1>\n\
         <p class=\"meta\"><code>{command}</code><br>{date}</p>",
        scenario = escape(scenario),
        date = escape(date),
        command = escape(command),
    );
    page += &summary(report);
    let none = Timeline::default();
    let timeline = report.timeline.as_ref().unwrap_or(&none);
    page += "<h2>Throughput per second</h2>\n";
    page += &throughput(timeline);
    page += "<h2>Latency per second</h2>\n";
    page += &latency_over_time(timeline);
    page += "<h2>Latency histogram, whole measurement window</h2>\n";
    page += &histograms(&report.histograms);
    page += "<h2>CPU and memory</h2>\n";
    page += &resources(timeline);
    page += "<p class=\"meta\">Shaded: the measurement window (the summary's figures). \
             Hover a chart for the figures of each second.</p>\n</body>\n</html>\n";
    page
}

const STYLE: &str = "\
body{font:14px/1.45 system-ui,-apple-system,'Segoe UI',sans-serif;color:#222;\
max-width:1000px;margin:24px auto;padding:0 16px}\
h1{font-size:22px;margin:0 0 4px}\
h2{font-size:17px;margin:30px 0 8px;padding-bottom:3px;border-bottom:1px solid #ddd}\
.meta{color:#555}\
code,pre{font:12.5px ui-monospace,SFMono-Regular,Menlo,Consolas,monospace}\
pre{background:#f6f8fa;padding:10px;overflow-x:auto;white-space:pre-wrap}\
.figures{display:flex;flex-wrap:wrap;gap:0 32px}\
table{border-collapse:collapse;font-size:13px}\
td{padding:2px 8px;border-bottom:1px solid #eee;vertical-align:top}\
td.v{text-align:right;font-variant-numeric:tabular-nums}\
figure{margin:0 0 16px}\
figcaption{font-weight:600;margin-bottom:2px}\
svg{width:100%;height:auto;display:block}\
svg text{font-size:12px;fill:#333}\
.grid{stroke:#e6e6e6}\
.axis{stroke:#999}\
.window{fill:#e8f1fb}\
.hit{fill:transparent}\
.hit:hover{fill:rgba(0,0,0,.07)}\
.no-data{border:1px dashed #bbb;padding:14px;color:#777;text-align:center}";

/// Line colors, in the order lines are added; the tool's own CPU is dashed.
const COLORS: [&str; 6] = [
    "#1f6fb4", "#d62728", "#2e9a2e", "#e67e00", "#8a5cc2", "#7f7f7f",
];

/// The printed summary as it was printed, then every figure of the JSON line.
fn summary(report: &Report) -> String {
    let mut out = String::from("<h2>Summary</h2>\n<pre>");
    for line in &report.lines {
        out += &escape(line);
        out.push('\n');
    }
    out += "</pre>\n";
    let mut figures = Vec::new();
    flatten("", &report.json, &mut figures);
    let half = figures.len().div_ceil(2);
    out += "<div class=\"figures\">\n";
    for column in figures.chunks(half.max(1)) {
        out += "<table>\n";
        for (key, value) in column {
            let _ = writeln!(
                out,
                "<tr><td>{}</td><td class=\"v\">{}</td></tr>",
                escape(key),
                escape(value)
            );
        }
        out += "</table>\n";
    }
    out += "</div>\n";
    out
}

/// Nested objects become `outer.inner` keys; `null` reads "n/a" as in the summary.
fn flatten(prefix: &str, map: &Map<String, Value>, out: &mut Vec<(String, String)>) {
    for (key, value) in map {
        let key = if prefix.is_empty() {
            key.clone()
        } else {
            format!("{prefix}.{key}")
        };
        match value {
            Value::Object(inner) => flatten(&key, inner, out),
            Value::Null => out.push((key, "n/a".into())),
            Value::String(s) => out.push((key, s.clone())),
            other => out.push((key, other.to_string())),
        }
    }
}

/// One chart per rate of the progress line: their scales differ (a fanout delivers
/// subscribers times more than it writes).
fn throughput(timeline: &Timeline) -> String {
    if timeline.samples.is_empty() {
        return no_data(NO_SAMPLES);
    }
    let mut out = String::new();
    for (i, name) in timeline.rate_names.iter().enumerate() {
        let title = format!("{} per second", name.replace('_', " "));
        let line = Line {
            name: name.replace('_', " "),
            values: timeline
                .samples
                .iter()
                .map(|s| s.rates.get(i).copied())
                .collect(),
            dashed: false,
        };
        out += &time_chart(&TimeChart {
            title: &title,
            unit: "/s",
            timeline,
            lines: vec![line],
            empty: "no samples",
            details: no_details,
        });
    }
    out
}

/// p50 and p99 of each second's latencies; the max is in the hover text (it would flatten
/// the other two).
fn latency_over_time(timeline: &Timeline) -> String {
    let ms = |pick: fn(&crate::timeline::Percentiles) -> u64| -> Vec<Option<f64>> {
        timeline
            .samples
            .iter()
            .map(|s| s.latency.as_ref().map(|l| pick(l) as f64 / 1000.0))
            .collect()
    };
    time_chart(&TimeChart {
        title: "p50 and p99 latency of each second",
        unit: "ms",
        timeline,
        lines: vec![
            Line {
                name: "p50".into(),
                values: ms(|l| l.p50),
                dashed: false,
            },
            Line {
                name: "p99".into(),
                values: ms(|l| l.p99),
                dashed: false,
            },
        ],
        empty: "no latency was recorded in any second of this run",
        details: |s| match &s.latency {
            Some(l) => format!(
                "\nmax: {} ms\nsamples: {}",
                grouped(l.max as f64 / 1000.0),
                grouped(l.samples as f64)
            ),
            None => String::new(),
        },
    })
}

/// Each server's cores busy, and the tool's; each server's resident memory.
fn resources(timeline: &Timeline) -> String {
    let mut cpu: Vec<Line> = timeline
        .pids
        .iter()
        .enumerate()
        .map(|(i, pid)| Line {
            name: format!("server {pid}"),
            values: each(timeline, |s| s.servers.get(i).and_then(|r| r.cores)),
            dashed: false,
        })
        .collect();
    cpu.push(Line {
        name: "mesh-bench".into(),
        values: each(timeline, |s| s.tool_cores),
        dashed: true,
    });
    let rss = timeline
        .pids
        .iter()
        .enumerate()
        .map(|(i, pid)| Line {
            name: format!("server {pid}"),
            values: each(timeline, |s| {
                s.servers
                    .get(i)
                    .and_then(|r| r.rss_bytes)
                    .map(|b| b as f64 / 1_048_576.0)
            }),
            dashed: false,
        })
        .collect();
    let no_server = if timeline.pids.is_empty() {
        "pass --server-pid PID (once per server) to chart the server"
    } else {
        "/proc could not be read for the --server-pid given"
    };
    time_chart(&TimeChart {
        title: "CPU: cores busy",
        unit: "cores",
        timeline,
        lines: cpu,
        empty: "/proc could not be read",
        details: no_details,
    }) + &time_chart(&TimeChart {
        title: "Server resident memory",
        unit: "MiB",
        timeline,
        lines: rss,
        empty: no_server,
        details: no_details,
    })
}

fn each(timeline: &Timeline, f: impl Fn(&Sample) -> Option<f64>) -> Vec<Option<f64>> {
    timeline.samples.iter().map(f).collect()
}

/// One figure per latency of the report (the open loop adds its send lag).
fn histograms(histograms: &[(String, Latency)]) -> String {
    let drawn: Vec<String> = histograms
        .iter()
        .filter(|(_, h)| !h.is_empty())
        .map(|(label, h)| histogram_chart(label, h))
        .collect();
    if drawn.is_empty() {
        return no_data("no latency was recorded in this run");
    }
    drawn.concat()
}

/// Why a run has no timeline: reconnect runs without the progress line; a race can end
/// before the first tick.
const NO_SAMPLES: &str = "no per-second samples (this scenario prints no progress lines, \
                          or the run was shorter than a second)";

fn no_data(why: &str) -> String {
    format!("<p class=\"no-data\">no data: {}</p>\n", escape(why))
}

/// The drawing area of every chart, in SVG units (scaled to the page width).
const WIDTH: f64 = 960.0;
const HEIGHT: f64 = 260.0;
const LEFT: f64 = 64.0;
const RIGHT: f64 = 16.0;
const TOP: f64 = 36.0;
const BOTTOM: f64 = 34.0;
const PLOT_W: f64 = WIDTH - LEFT - RIGHT;
const PLOT_H: f64 = HEIGHT - TOP - BOTTOM;

/// One line of a chart over time: a value per sample, `None` where there is none (the line
/// breaks there).
struct Line {
    name: String,
    values: Vec<Option<f64>>,
    dashed: bool,
}

struct TimeChart<'a> {
    title: &'a str,
    /// After each value in the hover text, and on the y axis.
    unit: &'a str,
    timeline: &'a Timeline,
    lines: Vec<Line>,
    /// Why there is nothing to draw, when no line has a value.
    empty: &'a str,
    /// More lines for a sample's hover text, after the lines' values.
    details: fn(&Sample) -> String,
}

fn no_details(_: &Sample) -> String {
    String::new()
}

/// A chart over the run's seconds: x is seconds since the start, each sample drawn at the
/// middle of its interval; the measurement window is shaded.
fn time_chart(chart: &TimeChart) -> String {
    let samples = &chart.timeline.samples;
    let caption = format!("<figure><figcaption>{}</figcaption>\n", escape(chart.title));
    let values = || chart.lines.iter().flat_map(|l| l.values.iter().flatten());
    if samples.is_empty() {
        return caption + &no_data(NO_SAMPLES) + "</figure>\n";
    }
    if values().next().is_none() {
        return caption + &no_data(chart.empty) + "</figure>\n";
    }
    // The axis ends with the data; its ticks are round.
    let end = samples.iter().map(|s| s.at).fold(0.0, f64::max);
    let end = chart
        .timeline
        .window
        .1
        .map_or(end, |w| end.max(w))
        .max(1e-3);
    let (step_x, _) = nice_scale(end);
    let (step_y, top) = nice_scale(values().copied().fold(0.0, f64::max));
    let x = |t: f64| LEFT + t / end * PLOT_W;
    let y = |v: f64| TOP + PLOT_H - v / top * PLOT_H;

    let mut svg = svg_open();
    if let (Some(from), to) = chart.timeline.window {
        let to = to.unwrap_or(end);
        let _ = writeln!(
            svg,
            "<rect class=\"window\" x=\"{:.1}\" y=\"{TOP}\" width=\"{:.1}\" height=\"{PLOT_H}\"/>\
             <text x=\"{:.1}\" y=\"{:.1}\" fill-opacity=\"0.7\">measured</text>",
            x(from),
            (x(to) - x(from)).max(0.0),
            x(from) + 2.0,
            TOP - 5.0
        );
    }
    svg += &y_grid(step_y, top, chart.unit, &|v| y(v));
    svg += &x_axis_seconds(step_x, end, &|t| x(t));
    for (i, line) in chart.lines.iter().enumerate() {
        let points: Vec<Option<(f64, f64)>> = samples
            .iter()
            .zip(&line.values)
            .map(|(s, v)| v.map(|v| (x(s.at - s.seconds / 2.0), y(v))))
            .collect();
        svg += &polyline(&points, COLORS[i % COLORS.len()], line.dashed);
    }
    let entries: Vec<(&str, &str, bool)> = chart
        .lines
        .iter()
        .enumerate()
        .map(|(i, l)| (l.name.as_str(), COLORS[i % COLORS.len()], l.dashed))
        .collect();
    svg += &legend(&entries);
    for (k, s) in samples.iter().enumerate() {
        let mut text = format!("{:.1}–{:.1} s, {}", s.from(), s.at, s.phase);
        for line in &chart.lines {
            if let Some(Some(v)) = line.values.get(k) {
                let _ = write!(
                    text,
                    "\n{}: {}{}",
                    line.name,
                    grouped(*v),
                    spaced(chart.unit)
                );
            }
        }
        text += &(chart.details)(s);
        svg += &hover_area(x(s.from()), x(s.at), &text);
    }
    caption + &svg + "</svg></figure>\n"
}

/// The whole-window latency histogram: buckets a tenth of a decade wide on a log axis, bar
/// height the share of samples, p50/p99/max marked.
fn histogram_chart(label: &str, h: &Latency) -> String {
    // Bucket k holds [10^(k/10), 10^((k+1)/10)) microseconds.
    let mut buckets: BTreeMap<i32, u64> = BTreeMap::new();
    for v in h.iter_recorded() {
        let k = (10.0 * (v.value_iterated_to().max(1) as f64).log10()).floor() as i32;
        *buckets.entry(k).or_default() += v.count_at_value();
    }
    let (Some((&first, _)), Some((&last, _))) =
        (buckets.first_key_value(), buckets.last_key_value())
    else {
        return no_data("no latency was recorded");
    };
    let total = h.len().max(1) as f64;
    let share = |count: u64| count as f64 * 100.0 / total;
    let (step_y, top) = nice_scale(buckets.values().map(|&c| share(c)).fold(0.0, f64::max));
    let (lo, hi) = (f64::from(first), f64::from(last + 1));
    let x = |k: f64| LEFT + (k - lo) / (hi - lo) * PLOT_W;
    let x_us = |us: u64| x(10.0 * (us.max(1) as f64).log10());
    let y = |v: f64| TOP + PLOT_H - v / top * PLOT_H;

    let (p50, p99, max) = (h.value_at_quantile(0.5), h.value_at_quantile(0.99), h.max());
    let caption = format!(
        "<figure><figcaption>{} — p50 {}, p99 {}, max {}, {} samples</figcaption>\n",
        escape(label),
        duration_us(p50 as f64),
        duration_us(p99 as f64),
        duration_us(max as f64),
        grouped(h.len() as f64)
    );
    let mut svg = svg_open();
    svg += &y_grid(step_y, top, "% of samples", &|v| y(v));
    // Ticks at 1, 2 and 5 of each decade, or only at decades when the range is wide.
    let multiples: &[f64] = if hi - lo > 30.0 {
        &[1.0]
    } else {
        &[1.0, 2.0, 5.0]
    };
    let _ = writeln!(
        svg,
        "<line class=\"axis\" x1=\"{LEFT}\" x2=\"{:.1}\" y1=\"{b:.1}\" y2=\"{b:.1}\"/>",
        LEFT + PLOT_W,
        b = TOP + PLOT_H
    );
    for decade in (first / 10 - 1)..=(last / 10 + 1) {
        for &m in multiples {
            let us = m * 10f64.powi(decade);
            let k = 10.0 * us.log10();
            if k < lo - 1e-9 || k > hi + 1e-9 {
                continue;
            }
            let _ = writeln!(
                svg,
                "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text>",
                x(k),
                TOP + PLOT_H + 16.0,
                duration_us(us)
            );
        }
    }
    for (&k, &count) in &buckets {
        let (from, to) = (x(f64::from(k)), x(f64::from(k + 1)));
        let top_y = y(share(count));
        let _ = writeln!(
            svg,
            "<rect x=\"{:.1}\" y=\"{top_y:.1}\" width=\"{:.1}\" height=\"{:.1}\" fill=\"{}\"/>",
            from + 0.5,
            (to - from - 1.0).max(0.5),
            TOP + PLOT_H - top_y,
            COLORS[0]
        );
        let text = format!(
            "{} – {}: {} samples ({:.2} %)",
            duration_us(10f64.powf(f64::from(k) / 10.0)),
            duration_us(10f64.powf(f64::from(k + 1) / 10.0)),
            grouped(count as f64),
            share(count)
        );
        svg += &hover_area(from, to, &text);
    }
    let markers = [
        ("p50", COLORS[2], true),
        ("p99", COLORS[1], true),
        ("max", COLORS[5], true),
    ];
    for ((_, color, _), us) in markers.iter().zip([p50, p99, max]) {
        let at = x_us(us);
        let _ = writeln!(
            svg,
            "<line x1=\"{at:.1}\" x2=\"{at:.1}\" y1=\"{TOP}\" y2=\"{:.1}\" stroke=\"{color}\"{}/>",
            TOP + PLOT_H,
            dash(true)
        );
    }
    svg += &legend(&markers);
    caption + &svg + "</svg></figure>\n"
}

fn svg_open() -> String {
    format!(
        "<svg viewBox=\"0 0 {WIDTH} {HEIGHT}\" role=\"img\" preserveAspectRatio=\"xMidYMid meet\">\n"
    )
}

/// Horizontal grid lines and their labels at every `step` up to `top`, and the unit.
fn y_grid(step: f64, top: f64, unit: &str, y: &dyn Fn(f64) -> f64) -> String {
    let mut out = String::new();
    let ticks = (top / step).round() as usize;
    for i in 0..=ticks {
        let v = step * i as f64;
        let at = y(v);
        let _ = writeln!(
            out,
            "<line class=\"grid\" x1=\"{LEFT}\" x2=\"{:.1}\" y1=\"{at:.1}\" y2=\"{at:.1}\"/>\
             <text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>",
            LEFT + PLOT_W,
            LEFT - 6.0,
            at + 4.0,
            short(v)
        );
    }
    let _ = writeln!(
        out,
        "<text x=\"14\" y=\"{:.1}\" text-anchor=\"middle\" transform=\"rotate(-90 14 {:.1})\">{}</text>",
        TOP + PLOT_H / 2.0,
        TOP + PLOT_H / 2.0,
        escape(unit)
    );
    out
}

/// The time axis: a tick every `step` seconds up to `end`.
fn x_axis_seconds(step: f64, end: f64, x: &dyn Fn(f64) -> f64) -> String {
    let bottom = TOP + PLOT_H;
    let mut out = format!(
        "<line class=\"axis\" x1=\"{LEFT}\" x2=\"{:.1}\" y1=\"{bottom:.1}\" y2=\"{bottom:.1}\"/>\n",
        LEFT + PLOT_W
    );
    let ticks = (end / step + 1e-9).floor() as usize;
    for i in 0..=ticks {
        let t = step * i as f64;
        let _ = writeln!(
            out,
            "<line class=\"axis\" x1=\"{at:.1}\" x2=\"{at:.1}\" y1=\"{bottom:.1}\" y2=\"{:.1}\"/>\
             <text x=\"{at:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{} s</text>",
            bottom + 4.0,
            bottom + 16.0,
            short(t),
            at = x(t),
        );
    }
    out
}

/// A line through the points, broken where a point is missing; dots as well when they are
/// few, so a lone point still shows.
fn polyline(points: &[Option<(f64, f64)>], color: &str, dashed: bool) -> String {
    let mut d = String::new();
    let mut pen_down = false;
    for point in points {
        match point {
            Some((px, py)) => {
                let _ = write!(d, "{}{px:.1},{py:.1} ", if pen_down { 'L' } else { 'M' });
                pen_down = true;
            }
            None => pen_down = false,
        }
    }
    let mut out = format!(
        "<path d=\"{}\" fill=\"none\" stroke=\"{color}\" stroke-width=\"1.8\"{}/>\n",
        d.trim_end(),
        dash(dashed)
    );
    if points.len() <= 120 {
        for (px, py) in points.iter().flatten() {
            let _ = write!(
                out,
                "<circle cx=\"{px:.1}\" cy=\"{py:.1}\" r=\"2.2\" fill=\"{color}\"/>"
            );
        }
        out.push('\n');
    }
    out
}

/// Each entry's name, color and dash across the top, in order.
fn legend(entries: &[(&str, &str, bool)]) -> String {
    let mut out = String::new();
    let mut at = LEFT;
    for &(name, color, dashed) in entries {
        let _ = writeln!(
            out,
            "<line x1=\"{at:.1}\" x2=\"{:.1}\" y1=\"10\" y2=\"10\" stroke=\"{color}\" \
             stroke-width=\"2.5\"{}/><text x=\"{:.1}\" y=\"14\">{}</text>",
            at + 22.0,
            dash(dashed),
            at + 27.0,
            escape(name)
        );
        at += 40.0 + 7.0 * name.chars().count() as f64;
    }
    out
}

fn dash(dashed: bool) -> &'static str {
    if dashed {
        " stroke-dasharray=\"6 4\""
    } else {
        ""
    }
}

/// A transparent band over the plot's height between `from` and `to` whose `<title>` the
/// browser shows on hover; it darkens a little under the pointer (CSS only).
fn hover_area(from: f64, to: f64, text: &str) -> String {
    format!(
        "<rect class=\"hit\" x=\"{from:.1}\" y=\"{TOP}\" width=\"{:.1}\" height=\"{PLOT_H}\">\
         <title>{}</title></rect>\n",
        (to - from).max(1.0),
        escape(text)
    )
}

/// A step of 1, 2 or 5 times a power of ten that cuts `0..max` into about five, and the
/// first multiple of it at or above `max`: the axis end. A zero or missing maximum gives
/// the axis 0..1.
fn nice_scale(max: f64) -> (f64, f64) {
    if !(max.is_finite() && max > 0.0) {
        return (0.2, 1.0);
    }
    let rough = max / 5.0;
    let power = 10f64.powf(rough.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * power)
        .find(|&s| s >= rough)
        .unwrap_or(10.0 * power);
    let top = (max / step - 1e-9).ceil().max(1.0) * step;
    (step, top)
}

/// A tick label: 1500 as "1.5k", 2000000 as "2M", 0.25 as "0.25".
fn short(v: f64) -> String {
    let (v, suffix) = if v >= 1e6 {
        (v / 1e6, "M")
    } else if v >= 1e3 {
        (v / 1e3, "k")
    } else {
        (v, "")
    };
    let text = format!("{v:.2}");
    let text = text.trim_end_matches('0').trim_end_matches('.');
    format!("{text}{suffix}")
}

/// A unit after a number: "/s" sticks to it, words get a space.
fn spaced(unit: &str) -> String {
    if unit.starts_with('/') {
        unit.to_owned()
    } else {
        format!(" {unit}")
    }
}

/// A value in hover text: whole numbers as integers, thousands grouped for large numbers,
/// two decimals for small ones.
fn grouped(v: f64) -> String {
    if v.abs() >= 100.0 || v.fract() == 0.0 {
        let digits = format!("{:.0}", v.abs());
        let mut out = String::new();
        for (i, c) in digits.chars().enumerate() {
            if i > 0 && (digits.len() - i) % 3 == 0 {
                out.push(',');
            }
            out.push(c);
        }
        if v < 0.0 { format!("-{out}") } else { out }
    } else if v.abs() >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

/// Microseconds in the unit that reads best: "850 µs", "1.2 ms", "3 s".
fn duration_us(us: f64) -> String {
    let (v, unit) = if us >= 1e6 {
        (us / 1e6, "s")
    } else if us >= 1e3 {
        (us / 1e3, "ms")
    } else {
        (us, "µs")
    };
    let text = if v >= 100.0 {
        format!("{v:.0}")
    } else if v >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    };
    let text = if text.contains('.') {
        text.trim_end_matches('0').trim_end_matches('.')
    } else {
        &text
    };
    format!("{text} {unit}")
}

/// Text made safe for HTML content and attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// The command line as it could be typed again: arguments with spaces or shell
/// metacharacters single-quoted.
pub fn command_line(args: &[String]) -> String {
    let mut line = String::from("mesh-bench");
    for arg in args {
        line.push(' ');
        let plain = !arg.is_empty()
            && arg
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_./:=,@+%".contains(c));
        if plain {
            line += arg;
        } else {
            line += &format!("'{}'", arg.replace('\'', "'\\''"));
        }
    }
    line
}

/// `seconds` since the Unix epoch as a UTC date and time, "2026-12-01 14:03:09 UTC".
fn utc_date(seconds: u64) -> String {
    let (days, rest) = (seconds / 86_400, seconds % 86_400);
    // Days since 1970-01-01 to a civil date, counting from 0000-03-01 so the leap day is
    // the last day of a year (400-year eras of 146,097 days).
    let z = days + 719_468;
    let era = z / 146_097;
    let day_of_era = z % 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_from_march = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_from_march + 2) / 5 + 1;
    let month = if month_from_march < 10 {
        month_from_march + 3
    } else {
        month_from_march - 9
    };
    let year = year_of_era + era * 400 + u64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02} UTC",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::new_latency;
    use crate::timeline::{Percentiles, Resources, Sample};

    /// A fanout-like run: 2 s of warmup, 5 s measured, one server.
    fn timeline() -> Timeline {
        let samples = (1..=7)
            .map(|t| {
                let measured = t > 2;
                Sample {
                    at: t as f64,
                    seconds: 1.0,
                    phase: if measured { "measuring" } else { "warmup" }.into(),
                    rates: vec![1000.0 + t as f64, 50_000.0],
                    latency: measured.then_some(Percentiles {
                        p50: 800 + t * 10,
                        p99: 4_000,
                        max: 9_000,
                        samples: 50_000,
                    }),
                    servers: vec![Resources {
                        cores: Some(0.9),
                        rss_bytes: Some(40 << 20),
                    }],
                    tool_cores: Some(0.6),
                }
            })
            .collect();
        Timeline {
            rate_names: vec!["writes_acked", "deliveries"],
            pids: vec![4242],
            samples,
            window: (Some(2.0), Some(7.0)),
        }
    }

    fn report(timeline: Option<Timeline>) -> Report {
        let mut report = Report::new("fanout");
        report.line("first error: <script>alert('x')</script> & more".into());
        report.set("first_error", "bad \"frame\" <b>");
        report.set("server_cpu_s", Value::Null);
        let mut h = new_latency();
        for us in [150, 900, 950, 1_000, 1_200, 3_000, 45_000] {
            h.record(us).unwrap();
        }
        report.latency("latency", "write->delivery latency", &h);
        report.timeline = timeline;
        report
    }

    /// Everything the page points at is inside it: no script, stylesheet, font or image
    /// from anywhere else.
    fn assert_self_contained(page: &str) {
        for outside in [
            "http://", "https://", "src=", "href=", "url(", "@import", "<script",
        ] {
            assert!(!page.contains(outside), "page has {outside:?}");
        }
    }

    #[test]
    fn a_full_report_draws_every_chart_inline() {
        let args = ["fanout", "--record", "a b<c>"].map(String::from);
        let page = render(
            &report(Some(timeline())),
            &command_line(&args),
            "2026-12-01",
        );
        assert_self_contained(&page);
        assert!(page.starts_with("<!DOCTYPE html>"));
        assert!(page.contains("<title>mesh-bench fanout (2026-12-01)</title>"));
        assert!(page.contains("<code>mesh-bench fanout --record &#39;a b&lt;c&gt;&#39;</code>"));
        // Throughput (two rates), latency per second, histogram, CPU, memory.
        assert_eq!(page.matches("<svg ").count(), 6, "{page}");
        assert_eq!(
            page.matches("<svg ").count(),
            page.matches("</svg>").count()
        );
        assert!(!page.contains("no data"), "{page}");
        assert!(page.contains("<path d=\"M"));
        assert!(page.contains("class=\"window\""));
        // The time axis ends with the data (7 s): ticks every 2 s up to 6 s.
        assert!(page.contains(">6 s</text>") && !page.contains(">8 s</text>"));
        assert!(page.contains("server 4242"));
        // Hover text of a measured second, and the histogram's caption.
        assert!(page.contains("6.0–7.0 s, measuring\np50: 0.87 ms\np99: 4 ms\nmax: 9 ms"));
        let caption = page
            .lines()
            .find(|l| l.contains("<figcaption>write-"))
            .unwrap_or_default();
        assert!(
            caption.contains("write-&gt;delivery latency — p50 1 ms, p99 45"),
            "{caption}"
        );
        // The summary as printed, and the figures; nothing from outside unescaped.
        assert!(page.contains("&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; more"));
        assert!(page.contains("bad &quot;frame&quot; &lt;b&gt;"));
        assert!(page.contains("<td>latency_us.p99</td>"));
        assert!(page.contains("<td>server_cpu_s</td><td class=\"v\">n/a</td>"));
        assert!(!page.contains("<script>") && !page.contains("<b>"));
    }

    #[test]
    fn charts_without_data_say_so() {
        // No timeline at all (reconnect), no latency.
        let mut empty = Report::new("reconnect");
        empty.line("resume received 10x fewer bytes".into());
        let page = render(&empty, "mesh-bench reconnect", "2026-12-01");
        assert_self_contained(&page);
        assert!(!page.contains("<svg"), "{page}");
        assert_eq!(page.matches("no data").count(), 5, "{page}");
        assert_eq!(page.matches("no data: no per-second samples").count(), 4);

        // Samples, but no latency and no --server-pid (idle without a pid).
        let mut idle = timeline();
        idle.pids.clear();
        for s in &mut idle.samples {
            s.latency = None;
            s.servers.clear();
        }
        let page = render(&report(Some(idle)), "mesh-bench idle", "2026-12-01");
        assert!(page.contains("no data: no latency was recorded in any second"));
        assert!(page.contains("no data: pass --server-pid"));
        // The tool's own CPU is still drawn; so are the rates and the histogram.
        assert_eq!(page.matches("<svg ").count(), 4, "{page}");

        // A server whose /proc could not be read.
        let mut gone = timeline();
        for s in &mut gone.samples {
            s.servers[0] = Resources::default();
        }
        let page = render(&report(Some(gone)), "mesh-bench fanout", "2026-12-01");
        assert!(page.contains("no data: /proc could not be read"));
    }

    #[test]
    fn scales_and_labels() {
        assert_eq!(nice_scale(0.0), (0.2, 1.0));
        assert_eq!(nice_scale(47.0), (10.0, 50.0));
        assert_eq!(nice_scale(50.0), (10.0, 50.0));
        assert_eq!(nice_scale(51_000.0), (20_000.0, 60_000.0));
        let (step, top) = nice_scale(0.73);
        assert!((step - 0.2).abs() < 1e-12 && (top - 0.8).abs() < 1e-9);
        assert_eq!(short(1500.0), "1.5k");
        assert_eq!(short(2_000_000.0), "2M");
        assert_eq!(short(0.25), "0.25");
        assert_eq!(grouped(1_234_567.4), "1,234,567");
        assert_eq!(grouped(999.6), "1,000");
        assert_eq!((grouped(96.0), grouped(2.5)), ("96".into(), "2.50".into()));
        assert_eq!(duration_us(850.0), "850 µs");
        assert_eq!(duration_us(1_250.0), "1.25 ms");
        assert_eq!(duration_us(2_000_000.0), "2 s");
    }

    #[test]
    fn dates_are_utc() {
        assert_eq!(utc_date(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(utc_date(951_782_400), "2000-02-29 00:00:00 UTC");
        assert_eq!(utc_date(1_735_689_599), "2024-12-31 23:59:59 UTC");
        assert_eq!(utc_date(1_709_251_199), "2024-02-29 23:59:59 UTC");
    }

    #[test]
    fn command_lines_can_be_typed_again() {
        let args = ["race", "--url=ws://[::1]:3/ws", "--record", "it's", ""].map(String::from);
        assert_eq!(
            command_line(&args),
            "mesh-bench race '--url=ws://[::1]:3/ws' --record 'it'\\''s' ''"
        );
    }

    #[test]
    fn a_missing_directory_is_refused_before_the_run() {
        assert!(check_writable("report.html").is_ok());
        assert!(check_writable("/tmp/report.html").is_ok());
        assert!(check_writable("/no/such/dir/report.html").is_err());
        assert!(check_writable("/tmp").is_err());
    }
}
