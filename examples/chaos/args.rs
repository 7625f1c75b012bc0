//! The command line: every count and duration is capped so a run always ends by itself.

use crate::faults::FaultKind;
use std::path::PathBuf;
use std::time::Duration;

/// Printed by `--help` and after a bad argument.
pub const USAGE: &str = "\
usage: chaos [options]
  --minutes M          how long writes and faults run (default 2, at most 60; fractions allowed)
  --records N          records written and watched (default 200, 1..=1000)
  --rate R             operations per second over all records (default 100, 1..=2000)
  --faults a,b         faults to pick from (default all): pubsub-kill, block-reconnect,
                       debug-sleep, redis-restart, instance-kill
  --fault-gap S        seconds between the end of one fault and the next, at random
                       between S and 2*S (default 6, 2..=120)
  --seed N             seed of the random choices (default: from the clock)
  --binary PATH        mesh-records binary (default target/release/mesh-records)
  --redis-server PATH  redis-server binary (default redis-server on PATH)
  --run-dir PATH       where configs, logs and pid files go (default a new temp dir)";

/// Everything a run needs to know.
#[derive(Clone, Debug)]
pub struct Options {
    pub duration: Duration,
    pub minutes: f64,
    pub records: usize,
    pub rate: u32,
    pub faults: Vec<FaultKind>,
    pub fault_gap: Duration,
    pub seed: u64,
    pub binary: PathBuf,
    pub redis_server: PathBuf,
    pub run_dir: Option<PathBuf>,
}

/// What the command line asks for.
pub enum Command {
    Help,
    Run(Options),
}

/// Parses the arguments (without the program name); an error names the bad argument.
pub fn parse(args: impl IntoIterator<Item = String>) -> Result<Command, String> {
    let mut options = Options {
        duration: Duration::from_secs(120),
        minutes: 2.0,
        records: 200,
        rate: 100,
        faults: FaultKind::ALL.to_vec(),
        fault_gap: Duration::from_secs(6),
        seed: clock_seed(),
        binary: PathBuf::from("target/release/mesh-records"),
        redis_server: PathBuf::from("redis-server"),
        run_dir: None,
    };
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        if arg == "-h" || arg == "--help" {
            return Ok(Command::Help);
        }
        let value = args.next().ok_or_else(|| format!("{arg} needs a value"))?;
        match arg.as_str() {
            "--minutes" => {
                let minutes: f64 = number(&arg, &value)?;
                if !(minutes > 0.0 && minutes <= 60.0) {
                    return Err("--minutes must be in (0, 60]".into());
                }
                options.minutes = minutes;
                options.duration = Duration::from_secs_f64(minutes * 60.0);
            }
            "--records" => options.records = ranged(&arg, &value, 1, 1000)?,
            "--rate" => options.rate = ranged(&arg, &value, 1, 2000)? as u32,
            "--faults" => options.faults = fault_list(&value)?,
            "--fault-gap" => {
                options.fault_gap = Duration::from_secs(ranged(&arg, &value, 2, 120)? as u64)
            }
            "--seed" => options.seed = number(&arg, &value)?,
            "--binary" => options.binary = PathBuf::from(value),
            "--redis-server" => options.redis_server = PathBuf::from(value),
            "--run-dir" => options.run_dir = Some(PathBuf::from(value)),
            _ => return Err(format!("unknown argument {arg}")),
        }
    }
    Ok(Command::Run(options))
}

fn number<T: std::str::FromStr>(arg: &str, value: &str) -> Result<T, String> {
    value
        .parse()
        .map_err(|_| format!("{arg}: not a number: {value}"))
}

fn ranged(arg: &str, value: &str, low: usize, high: usize) -> Result<usize, String> {
    let n: usize = number(arg, value)?;
    if n < low || n > high {
        return Err(format!("{arg} must be in {low}..={high}"));
    }
    Ok(n)
}

/// `a,b,c` into fault kinds; an empty list is allowed (a run without faults is a baseline).
fn fault_list(value: &str) -> Result<Vec<FaultKind>, String> {
    let mut kinds = Vec::new();
    for name in value.split(',').map(str::trim).filter(|n| !n.is_empty()) {
        let kind = FaultKind::from_name(name).ok_or_else(|| format!("unknown fault {name}"))?;
        if !kinds.contains(&kind) {
            kinds.push(kind);
        }
    }
    Ok(kinds)
}

fn clock_seed() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(args: &[&str]) -> Result<Options, String> {
        match parse(args.iter().map(|s| s.to_string()))? {
            Command::Run(options) => Ok(options),
            Command::Help => Err("help".into()),
        }
    }

    #[test]
    fn parses_and_caps() {
        let options = run(&["--minutes", "0.5", "--faults", "debug-sleep,pubsub-kill"]).unwrap();
        assert_eq!(options.duration, Duration::from_secs(30));
        assert_eq!(
            options.faults,
            vec![FaultKind::DebugSleep, FaultKind::PubsubKill]
        );
        assert!(run(&["--minutes", "100"]).is_err());
        assert!(run(&["--records", "0"]).is_err());
        assert!(run(&["--faults", "meteor"]).is_err());
        assert!(run(&["--rate"]).is_err());
        assert!(run(&["--faults", ""]).unwrap().faults.is_empty());
    }
}
