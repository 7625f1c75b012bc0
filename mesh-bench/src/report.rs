//! The human summary and the JSON line.

use crate::probe::CpuWindow;
use crate::stats::Latency;
use crate::timeline::Timeline;
use serde_json::{Map, Value, json};

/// What a scenario prints at the end, and what the `--report` page draws besides.
pub struct Report {
    pub lines: Vec<String>,
    pub json: Map<String, Value>,
    /// Every latency summarized by [`Report::latency`], with its label.
    pub histograms: Vec<(String, Latency)>,
    /// The per-second samples; `None` for a scenario without the progress tick.
    pub timeline: Option<Timeline>,
}

impl Report {
    /// An empty report headed with the scenario's name.
    pub fn new(scenario: &str) -> Report {
        let mut json = Map::new();
        json.insert("scenario".into(), scenario.into());
        Report {
            lines: vec![format!("== {scenario} ==")],
            json,
            histograms: Vec::new(),
            timeline: None,
        }
    }

    /// Adds a line to the human summary.
    pub fn line(&mut self, text: String) {
        self.lines.push(text);
    }

    /// Sets one figure of the JSON line.
    pub fn set(&mut self, key: &str, value: impl Into<Value>) {
        self.json.insert(key.into(), value.into());
    }

    /// The summary, then the JSON on one line: the last line of output.
    pub fn print(&self) {
        for line in &self.lines {
            println!("{line}");
        }
        println!("{}", Value::Object(self.json.clone()));
    }

    /// Latency percentiles in the summary and the JSON (`<key>_us`).
    pub fn latency(&mut self, key: &str, label: &str, h: &Latency) {
        let ms = |us: u64| us as f64 / 1000.0;
        if h.is_empty() {
            self.line(format!("{label}: no samples"));
        } else {
            self.line(format!(
                "{label}: p50 {:.2} ms  p90 {:.2} ms  p99 {:.2} ms  mean {:.2} ms  max {:.2} ms  \
                 ({} samples)",
                ms(h.value_at_quantile(0.5)),
                ms(h.value_at_quantile(0.9)),
                ms(h.value_at_quantile(0.99)),
                h.mean() / 1000.0,
                ms(h.max()),
                h.len()
            ));
        }
        self.set(
            &format!("{key}_us"),
            json!({
                "samples": h.len(),
                "p50": h.value_at_quantile(0.5),
                "p90": h.value_at_quantile(0.9),
                "p99": h.value_at_quantile(0.99),
                "p999": h.value_at_quantile(0.999),
                "max": h.max(),
                "mean": h.mean().round(),
            }),
        );
        self.histograms.push((label.to_owned(), h.clone()));
    }

    /// CPU seconds and the per-server-CPU-second figures for `counts`.
    pub fn cpu(&mut self, cpu: &CpuWindow, counts: &[(&str, u64)]) {
        let fmt = |v: Option<f64>| v.map_or("n/a".to_owned(), |v| format!("{v:.2}"));
        let server = match cpu.servers.len() {
            0 => "server n/a (pass --server-pid)".to_owned(),
            1 => format!("server {} s", fmt(cpu.server_total)),
            _ => {
                let each: Vec<String> = cpu.servers.iter().map(|&s| fmt(s)).collect();
                format!(
                    "servers {} s (each {})",
                    fmt(cpu.server_total),
                    each.join(" + ")
                )
            }
        };
        self.line(format!(
            "CPU over {:.1} s: {server}, tool {} s, other processes {} s",
            cpu.seconds,
            fmt(cpu.tool),
            fmt(cpu.others)
        ));
        self.set("window_s", round(cpu.seconds));
        self.set("server_cpu_s", cpu.server_total.map(round));
        self.set(
            "server_cpu_s_each",
            cpu.servers.iter().map(|s| s.map(round)).collect::<Vec<_>>(),
        );
        self.set("tool_cpu_s", cpu.tool.map(round));
        self.set("other_processes_cpu_s", cpu.others.map(round));
        for &(name, count) in counts {
            let per_cpu = cpu.per_server_cpu_second(count);
            if let Some(v) = per_cpu {
                self.line(format!("{name} per server CPU-second: {v:.0}"));
            }
            self.set(&format!("{name}_per_server_cpu_s"), per_cpu.map(round));
        }
    }
}

/// Two decimals are plenty for every figure.
pub fn round(v: f64) -> f64 {
    (v * 100.0).round() / 100.0
}

/// Per second, rounded.
pub fn rate(count: u64, seconds: f64) -> f64 {
    round(count as f64 / seconds.max(1e-9))
}
