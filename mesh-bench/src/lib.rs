//! `mesh-bench`: a load generator for a mesh-records server, over real WebSockets.
//!
//! The server must run with the per-connection rate limit off (`max_requests_per_second = 0`),
//! or the bench measures the limiter instead of the server; `bench/config.toml` (memory store)
//! and `bench/config-redis.toml` are ready-made configs:
//!
//! ```text
//! target/release/mesh-records --config bench/config.toml &
//! cargo run --release -p mesh-bench -- fanout --subscribers 1000 --server-pid $!
//! ```
//!
//! The binary is this library's [`run`]; `cargo install --path mesh-bench` installs it.
//!
//! Layout:
//! - [`wire`]: the protocol as a client speaks it: the frames the tool writes, the replies and
//!   pushes it reads (borrowed, lenient), and the few JSON-value helpers the mesh-records tests
//!   and the chaos checker share with it.
//! - [`conn`]: one WebSocket connection: open with a timeout, send, receive, answer pings.
//! - `args`: the command line, every count and duration capped, and the loopback check.
//! - `probe`: /proc readings: CPU seconds and resident memory of a process.
//! - `stats`: per-thread counters and latency histograms.
//! - `progress`: the once-a-second progress line.
//! - `control`: worker threads (one actix-rt System each) and the phases they follow.
//! - `runner`: what the load scenarios share: start the workers, set up, warm up, measure, stop.
//! - `scenarios`: `fanout` (with `openloop`, its `--rate` writer), `records`, `idle`, `race`,
//!   `reconnect`, `hostile` (a small fan-out beside hostile clients: `attacks`, `frames`),
//!   `collection` (one file per `--shape`: `members`, `unrelated`, `snapshot`); each ends in a
//!   `report::Report`.
//! - `report`: the human summary and the one-line JSON.
//! - `timeline`: the run second by second (rates, latency percentiles, CPU and memory),
//!   sampled at the progress line's tick.
//! - `html`: the `--report` page (`mod`), its SVG charts (`charts`) and text formatting
//!   (`text`): the summary and the timeline in one file.
//!
//! The tool shares the machine's cores with the server, so it keeps its per-frame work small:
//! frames are parsed into small structs with borrowed fields, and each thread counts into its
//! own counters. Every run is bounded: counts are capped, each phase has a time limit, and the
//! process ends by itself.

mod args;
pub mod conn;
mod control;
mod html;
mod probe;
mod progress;
mod report;
mod runner;
mod scenarios;
mod stats;
mod timeline;
pub mod wire;

use std::process::ExitCode;

/// Runs the tool on the arguments after the program name: parses them, runs the scenario and
/// prints its report. Exit status 2 for a bad command line, 1 when the run fails.
pub fn run(args: impl IntoIterator<Item = String>) -> ExitCode {
    let args: Vec<String> = args.into_iter().collect();
    let options = match args::parse(args.iter().cloned()) {
        Ok(args::Command::Help) => {
            println!("{}", args::USAGE);
            return ExitCode::SUCCESS;
        }
        Ok(args::Command::Run(options)) => options,
        Err(message) => {
            eprintln!("mesh-bench: {message}\n\n{}", args::USAGE);
            return ExitCode::from(2);
        }
    };
    if let Some(path) = &options.report
        && let Err(message) = html::check_writable(path)
    {
        eprintln!("mesh-bench: {message}");
        return ExitCode::from(2);
    }
    probe::raise_fd_limit();
    let report = match scenarios::run(&options) {
        Ok(report) => report,
        Err(message) => {
            eprintln!("mesh-bench: {message}");
            return ExitCode::FAILURE;
        }
    };
    report.print();
    if let Some(path) = &options.report {
        // On stderr: the JSON stays the last line of stdout, for scripts.
        match html::write(path, &report, &html::command_line(&args)) {
            Ok(()) => eprintln!("mesh-bench: report written to {path}"),
            Err(message) => {
                eprintln!("mesh-bench: {message}");
                return ExitCode::FAILURE;
            }
        }
    }
    ExitCode::SUCCESS
}
