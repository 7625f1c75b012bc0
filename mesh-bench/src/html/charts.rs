//! The charts' SVG: a time chart (lines over the run's seconds, the measurement window
//! shaded), a histogram on log buckets, and the axes, grid, legend and hover areas they share.

use super::*;

/// The drawing area of every chart, in SVG units (scaled to the page width).
pub(super) const WIDTH: f64 = 960.0;
pub(super) const HEIGHT: f64 = 260.0;
pub(super) const LEFT: f64 = 64.0;
pub(super) const RIGHT: f64 = 16.0;
pub(super) const TOP: f64 = 36.0;
pub(super) const BOTTOM: f64 = 34.0;
pub(super) const PLOT_W: f64 = WIDTH - LEFT - RIGHT;
pub(super) const PLOT_H: f64 = HEIGHT - TOP - BOTTOM;

/// One line of a chart over time: a value per sample, `None` where there is none (the line
/// breaks there).
pub(super) struct Line {
    pub(super) name: String,
    pub(super) values: Vec<Option<f64>>,
    pub(super) dashed: bool,
}

pub(super) struct TimeChart<'a> {
    pub(super) title: &'a str,
    /// After each value in the hover text, and on the y axis.
    pub(super) unit: &'a str,
    pub(super) timeline: &'a Timeline,
    pub(super) lines: Vec<Line>,
    /// Why there is nothing to draw, when no line has a value.
    pub(super) empty: &'a str,
    /// More lines for a sample's hover text, after the lines' values.
    pub(super) details: fn(&Sample) -> String,
}

pub(super) fn no_details(_: &Sample) -> String {
    String::new()
}

/// A chart over the run's seconds: x is seconds since the start, each sample drawn at the
/// middle of its interval; the measurement window is shaded.
pub(super) fn time_chart(chart: &TimeChart) -> String {
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
pub(super) fn histogram_chart(label: &str, h: &Latency) -> String {
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

pub(super) fn svg_open() -> String {
    format!(
        "<svg viewBox=\"0 0 {WIDTH} {HEIGHT}\" role=\"img\" preserveAspectRatio=\"xMidYMid meet\">\n"
    )
}

/// Horizontal grid lines and their labels at every `step` up to `top`, and the unit.
pub(super) fn y_grid(step: f64, top: f64, unit: &str, y: &dyn Fn(f64) -> f64) -> String {
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
pub(super) fn x_axis_seconds(step: f64, end: f64, x: &dyn Fn(f64) -> f64) -> String {
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
pub(super) fn polyline(points: &[Option<(f64, f64)>], color: &str, dashed: bool) -> String {
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
pub(super) fn legend(entries: &[(&str, &str, bool)]) -> String {
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

pub(super) fn dash(dashed: bool) -> &'static str {
    if dashed {
        " stroke-dasharray=\"6 4\""
    } else {
        ""
    }
}

/// A transparent band over the plot's height between `from` and `to` whose `<title>` the
/// browser shows on hover; it darkens a little under the pointer (CSS only).
pub(super) fn hover_area(from: f64, to: f64, text: &str) -> String {
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
pub(super) fn nice_scale(max: f64) -> (f64, f64) {
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
