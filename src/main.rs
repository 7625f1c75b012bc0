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

fn config_path() -> Result<(PathBuf, bool), String> {
    let mut args = std::env::args().skip(1);
    match (args.next().as_deref(), args.next(), args.next()) {
        (None, _, _) => Ok((PathBuf::from("config.toml"), false)),
        (Some("--config"), Some(path), None) => Ok((PathBuf::from(path), true)),
        (Some("-h" | "--help"), None, _) => Err(USAGE.to_owned()),
        _ => Err(format!("unexpected arguments\n{USAGE}")),
    }
}

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let (path, explicit) = match config_path() {
        Ok(found) => found,
        Err(message) => {
            eprintln!("{message}");
            return ExitCode::from(2);
        }
    };
    let config = if !explicit && !path.exists() {
        log::warn!("no ./config.toml; running with built-in defaults");
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
