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

mod charts;
mod text;

use charts::*;
use text::*;
pub use text::{command_line, escape};

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
