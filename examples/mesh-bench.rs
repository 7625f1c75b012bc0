//! `mesh-bench`: a load generator for a mesh-records server, over real WebSockets.
//!
//! The server must run with the per-connection rate limit off (`max_requests_per_second = 0`),
//! or the bench measures the limiter instead of the server; `bench/config.toml` (memory store)
//! and `bench/config-redis.toml` are ready-made configs:
//!
//! ```text
//! target/release/mesh-records --config bench/config.toml &
//! cargo run --release --example mesh-bench -- fanout --subscribers 1000 --server-pid $!
//! ```
//!
//! Layout (one file per module under `examples/mesh-bench/`):
//! - `args`: the command line, every count and duration capped, and the loopback check.
//! - `wire`: the few frame shapes the tool reads (borrowed, lenient) and the frames it writes.
//! - `conn`: one WebSocket connection: open with a timeout, send, receive, answer pings.
//! - `probe`: /proc readings: CPU seconds and resident memory of a process.
//! - `stats`: per-thread counters, latency histograms, the once-a-second progress line.
//! - `control`: worker threads (one actix-rt System each) and the phases they follow.
//! - `openloop`: fanout's `--rate` writer, sending at fixed times whatever the acks.
//! - `fanout`, `records`, `idle`, `race`, `reconnect`: the scenarios, each ending in a `report::Report`.
//! - `window`: warmup and measurement window, shared by fanout and records.
//! - `report`: the human summary and the one-line JSON.
//!
//! The tool shares the machine's cores with the server, so it keeps its per-frame work small:
//! frames are parsed into small structs with borrowed fields, and each thread counts into its
//! own counters. Every run is bounded: counts are capped, each phase has a time limit, and the
//! process ends by itself.

#[path = "mesh-bench/args.rs"]
mod args;
#[path = "mesh-bench/conn.rs"]
mod conn;
#[path = "mesh-bench/control.rs"]
mod control;
#[path = "mesh-bench/fanout.rs"]
mod fanout;
#[path = "mesh-bench/idle.rs"]
mod idle;
#[path = "mesh-bench/openloop.rs"]
mod openloop;
#[path = "mesh-bench/probe.rs"]
mod probe;
#[path = "mesh-bench/race.rs"]
mod race;
#[path = "mesh-bench/reconnect.rs"]
mod reconnect;
#[path = "mesh-bench/records.rs"]
mod records;
#[path = "mesh-bench/report.rs"]
mod report;
#[path = "mesh-bench/stats.rs"]
mod stats;
#[path = "mesh-bench/window.rs"]
mod window;
#[path = "mesh-bench/wire.rs"]
mod wire;

use std::process::ExitCode;

fn main() -> ExitCode {
    let options = match args::parse(std::env::args().skip(1)) {
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
    probe::raise_fd_limit();
    let outcome = match options.scenario {
        args::Scenario::Fanout => fanout::run(&options),
        args::Scenario::Records => records::run(&options),
        args::Scenario::Idle => idle::run(&options),
        args::Scenario::Race => race::run(&options),
        args::Scenario::Reconnect => reconnect::run(&options),
    };
    match outcome {
        Ok(report) => {
            report.print();
            ExitCode::SUCCESS
        }
        Err(message) => {
            eprintln!("mesh-bench: {message}");
            ExitCode::FAILURE
        }
    }
}
