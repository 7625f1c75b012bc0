//! The `mesh-records` binary: reads the config, sets up logging, runs the server.

use mesh_records::Config;
use std::path::PathBuf;
use std::process::ExitCode;

// jemalloc (default feature): less memory per idle connection and more work per CPU-second
// than the system allocator here; see BENCHMARKS.md, "Lean connections".
#[cfg(feature = "jemalloc")]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;
#[cfg(all(feature = "mimalloc", not(feature = "jemalloc")))]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const USAGE: &str = "usage: mesh-records [--config PATH]   (default: ./config.toml)";

/// What `--help` prints: the usage, then the environment variables that override the file.
fn help() -> String {
    let mut text = format!(
        "mesh-records: a WebSocket server for versioned JSON records\n\n{USAGE}\n\n\
         The commented config.toml in the repository documents every setting.\n\n\
         Environment (overrides the file):\n"
    );
    for (name, key) in mesh_records::config::ENV_VARS {
        text.push_str(&format!("  {name:<24}{key}\n"));
    }
    text.push_str("  RUST_LOG                log level (default: info)\n");
    text
}

/// What the command line asks for.
enum Args {
    /// Serve with this config file; `true` when it was named with `--config`.
    Serve(PathBuf, bool),
    /// Print the help and exit successfully.
    Help,
}

fn parse_args() -> Result<Args, String> {
    let mut args = std::env::args().skip(1);
    match (args.next().as_deref(), args.next(), args.next()) {
        (None, _, _) => Ok(Args::Serve(PathBuf::from("config.toml"), false)),
        (Some("--config"), Some(path), None) => Ok(Args::Serve(PathBuf::from(path), true)),
        (Some("-h" | "--help"), None, _) => Ok(Args::Help),
        _ => Err(format!("unexpected arguments\n{USAGE}")),
    }
}

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let (path, explicit) = match parse_args() {
        Ok(Args::Serve(path, explicit)) => (path, explicit),
        Ok(Args::Help) => {
            print!("{}", help());
            return ExitCode::SUCCESS;
        }
        Err(message) => {
            eprintln!("{message}");
            return ExitCode::from(2);
        }
    };
    let config = if !explicit && !path.exists() {
        log::warn!(
            "no ./config.toml, so running with built-in defaults: no records are exposed \
             (every subscribe is refused) and the demo page is off; pass --config PATH or \
             create ./config.toml (the repository's config.toml is a commented example)"
        );
        let mut config = Config::default();
        config
            .apply_env(|key| std::env::var(key).ok())
            .and_then(|()| config.validate().map(|()| config))
    } else {
        Config::load(&path)
    };
    let config = match config {
        Ok(config) => config,
        Err(e) => {
            eprintln!("mesh-records: {e}");
            return ExitCode::from(2);
        }
    };
    match actix_web::rt::System::new().block_on(mesh_records::run(config)) {
        Ok(report) if report.unpersisted > 0 => {
            eprintln!(
                "mesh-records: stopped with {} persisted records not written to the database",
                report.unpersisted
            );
            ExitCode::FAILURE
        }
        Ok(_) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("mesh-records: {e}");
            ExitCode::FAILURE
        }
    }
}
