//! The command line: scenario, options, their defaults and caps.

pub use crate::wire::Mode;
use std::net::IpAddr;
use std::str::FromStr;
use std::time::Duration;

/// Most connections one run opens: the per-process descriptor limit here is 20,000, and the
/// process needs a few descriptors of its own.
pub const MAX_CONNECTIONS: usize = 19_000;
/// Longest measured (or held) period, so a typo cannot leave a load running for hours.
pub const MAX_DURATION: Duration = Duration::from_secs(600);
/// Longest warmup.
const MAX_WARMUP: Duration = Duration::from_secs(60);
/// Most publishes one fanout writer keeps in flight.
const MAX_IN_FLIGHT: usize = 1024;
/// Highest open-loop rate: a write every 50 µs, already finer than the writer's sleeps.
const MAX_RATE: usize = 20_000;
/// Largest pad: the server refuses values above `max_value_bytes` (1 MiB by default).
const MAX_PAD: usize = 512 * 1024;
/// Most publishes one race writer makes.
const MAX_WRITES: usize = 1_000_000;
/// Most worker threads (the machine has 2 cores; more only adds switching).
const MAX_THREADS: usize = 16;
/// Most connection handshakes in progress at once.
const MAX_CONNECT_CONCURRENCY: usize = 2_000;
/// Most hostile connections (each kind's rate is fixed; this bounds their sum).
const MAX_HOSTILE: usize = 200;
/// Longest diff-bomb key (and zeros): the filled frame is about 3 bytes per unit, so this
/// stays under the shipped `max_frame_bytes` (1 MiB).
const MAX_BOMB: usize = 300_000;

/// The `--help` text; also the documentation of every option and default.
pub const USAGE: &str = "\
usage: mesh-bench <scenario> [options]

Load test for a mesh-records server. Run the server with the per-connection rate limit off
(max_requests_per_second = 0), e.g. `mesh-records --config bench/config.toml` (memory store) or
bench/config-redis.toml (Redis store); both expose ^bench: records as writable.

Every scenario prints a progress line every second, then a summary, then one line of JSON;
--report FILE.html also writes them as one page with charts.

scenarios:
  fanout   S subscribers on one record, one writer keeping W publishes in flight;
       writes/s, deliveries/s, write-to-delivery latency, gaps.
         --subscribers S (100)  --mode patch|full (patch)  --in-flight W (16)
         --pad BYTES (100)  --record ID (default: a fresh bench:fanout:<n>)
         --rate N  open loop instead: N writes per second at fixed, evenly spaced
           times whatever the acks (--in-flight ignored), from a writer on its own
           thread. Latency counts from each write's scheduled time, so a server (or
           tool) that falls behind shows as latency, not as fewer samples. Also
           reports writes sent more than 1 ms late (missed schedule) and the send lag.
  records  C connections, each writing its own record in a closed loop (publish, wait
       for its own push, repeat); writes/s and write-to-push latency.
         --connections C (100)  --pad BYTES (100)
  idle     N connections each subscribed to one of 100 records, then held idle;
       server memory per connection (needs --server-pid).
         --connections N (1000)  --hold SECS (10)
  race     W writers spread over the --url list each make K publishes (up to 16 in
       flight) to one record; one subscriber per URL; lost updates, duplicate and
       out-of-order versions. --duration is the time limit here (default 60).
         --writers W (8)  --writes K (500)  --mode patch|full (patch)
  reconnect  C clients holding a record of --pad bytes reconnect after one small change:
       bytes and time to catch up by resubscribing (full snapshot) vs resuming
       (sinceVersion, one patch).
         --connections C (100)  --pad BYTES (100)
  hostile  well-behaved clients beside hostile ones: W writers, each writing its own
       record at --rate writes/s (open loop, stamped with the due time), and S patch
       subscribers spread over those records; write-to-delivery latency p50/p99,
       throughput, the server's RSS over time and its peak (needs --server-pid),
       whether the server still answers afterwards. M hostile connections (loopback
       only) take these kinds in turn, each at a fixed rate, from the warmup on:
       diff-bomb ({K: []} then {K: [0,...]}, 1/s), numbers (~1 MB of 1e15, 1/s,
       following its own record), deep (deepMerge 120 levels, 5/s; every tenth 5,000,
       refused), stalled (subscribes to every record and never reads; 15 s, again),
       flood (5,000 requests/s), oversized (a 2 MiB frame on a new connection, 1/s),
       garbage (50 refusable frames/s), churn (10 connect-subscribe-drop/s).
       Run the server with bench/config-hostile.toml (shipped limits, ^bench: writable).
         --writers W (4)  --subscribers S (200)  --rate N (50)  --pad BYTES (100)
         --hostile M (16)  --baseline  the same run without hostile clients (M = 0)
         --bomb LEN (20000)  diff-bomb key length and zeros
         --rss-limit MIB (4096)  end the run early when a --server-pid's RSS passes it
           (reported; protects a shared machine from a server without bounds)

common options:
  --url URL            server WebSocket URL (ws://127.0.0.1:3000/ws); race takes several
  --allow-remote       allow a URL whose host is not loopback (refused by default)
  --server-pid PID     report the server's CPU seconds over the measurement window and the
                   work done per server CPU-second (repeatable: one per instance)
  --duration SECS      measured period (10; at most 600)
  --warmup SECS        unmeasured load before measuring (1)
  --threads N          client threads, each with its own event loop (2)
  --report FILE.html   also write the run as one self-contained HTML page (opens offline):
                   command line, summary, and charts of throughput and p50/p99 latency
                   per second, the latency histogram, and the CPU and memory of the
                   tool and of each --server-pid per second
  --connect-concurrency N  handshakes in progress at once (200)
  -h, --help           this text

Connections per run are capped at 19000 (the descriptor limit here is 20000).";

/// What the command line asks for.
pub enum Command {
    Help,
    /// Boxed: the options are far larger than `Help`.
    Run(Box<Options>),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scenario {
    Fanout,
    Records,
    Idle,
    Race,
    Reconnect,
    Hostile,
}

impl Scenario {
    /// The name on the command line and in the report.
    pub fn name(self) -> &'static str {
        match self {
            Scenario::Fanout => "fanout",
            Scenario::Records => "records",
            Scenario::Idle => "idle",
            Scenario::Race => "race",
            Scenario::Reconnect => "reconnect",
            Scenario::Hostile => "hostile",
        }
    }
}

/// Every option, defaults applied and caps checked.
#[derive(Clone, Debug)]
pub struct Options {
    pub scenario: Scenario,
    pub urls: Vec<String>,
    pub server_pids: Vec<u32>,
    pub warmup: Duration,
    pub duration: Duration,
    pub threads: usize,
    pub connect_concurrency: usize,
    pub subscribers: usize,
    pub mode: Mode,
    pub in_flight: usize,
    /// `fanout`: open loop at this many writes per second instead of `in_flight`.
    pub rate: Option<usize>,
    pub pad: usize,
    pub connections: usize,
    pub hold: Duration,
    pub writers: usize,
    pub writes: usize,
    /// `fanout`: the record id to use instead of a fresh one (so another client can join it).
    pub record: Option<String>,
    /// Where to write the HTML report.
    pub report: Option<String>,
    /// `hostile`: hostile connections (0: the baseline).
    pub hostile: usize,
    /// `hostile`: the diff bomb's key length and zeros.
    pub bomb: usize,
    /// `hostile`: end the run once a server's RSS passes this many bytes.
    pub rss_limit: u64,
}

impl Options {
    fn defaults(scenario: Scenario) -> Options {
        Options {
            scenario,
            urls: Vec::new(),
            server_pids: Vec::new(),
            warmup: Duration::from_secs(1),
            duration: Duration::from_secs(if scenario == Scenario::Race { 60 } else { 10 }),
            threads: 2,
            connect_concurrency: 200,
            subscribers: if scenario == Scenario::Hostile {
                200
            } else {
                100
            },
            mode: Mode::Patch,
            in_flight: 16,
            rate: None,
            record: None,
            report: None,
            pad: 100,
            connections: if scenario == Scenario::Idle {
                1000
            } else {
                100
            },
            hold: Duration::from_secs(10),
            writers: if scenario == Scenario::Hostile { 4 } else { 8 },
            writes: 500,
            hostile: 16,
            bomb: 20_000,
            rss_limit: 4096 << 20,
        }
    }

    /// The single URL of a scenario other than race.
    pub fn url(&self) -> &str {
        &self.urls[0]
    }

    /// Connections this run opens, for the cap.
    fn total_connections(&self) -> usize {
        match self.scenario {
            Scenario::Fanout => self.subscribers + 1,
            Scenario::Records | Scenario::Idle => self.connections,
            Scenario::Reconnect => self.connections + 1,
            Scenario::Race => self.writers + 2 * self.urls.len(),
            // Churn and oversized open a connection per attempt, closed at once.
            Scenario::Hostile => self.writers + self.subscribers + self.hostile,
        }
    }
}

/// Parses the arguments after the program name.
pub fn parse(args: impl IntoIterator<Item = String>) -> Result<Command, String> {
    let mut args = args.into_iter();
    let scenario = match args.next().as_deref() {
        None | Some("-h" | "--help") => return Ok(Command::Help),
        Some("fanout") => Scenario::Fanout,
        Some("records") => Scenario::Records,
        Some("idle") => Scenario::Idle,
        Some("race") => Scenario::Race,
        Some("reconnect") => Scenario::Reconnect,
        Some("hostile") => Scenario::Hostile,
        Some(other) => return Err(format!("unknown scenario {other:?}")),
    };
    let mut options = Options::defaults(scenario);
    let mut allow_remote = false;
    while let Some(arg) = args.next() {
        let (name, inline) = match arg.split_once('=') {
            Some((name, value)) => (name.to_owned(), Some(value.to_owned())),
            None => (arg, None),
        };
        match name.as_str() {
            "-h" | "--help" => return Ok(Command::Help),
            "--allow-remote" => allow_remote = true,
            "--baseline" => options.hostile = 0,
            _ => {
                let value = match inline {
                    Some(value) => value,
                    None => args.next().ok_or_else(|| format!("{name} needs a value"))?,
                };
                set(&mut options, &name, &value)?;
            }
        }
    }
    if options.urls.is_empty() {
        options.urls.push("ws://127.0.0.1:3000/ws".into());
    }
    check(&options, allow_remote)?;
    Ok(Command::Run(Box::new(options)))
}

/// Sets one `--name value` option.
fn set(options: &mut Options, name: &str, value: &str) -> Result<(), String> {
    match name {
        "--url" => options.urls.push(value.to_owned()),
        "--server-pid" => options.server_pids.push(number(name, value)?),
        "--warmup" => options.warmup = seconds(name, value, MAX_WARMUP)?,
        "--duration" => options.duration = seconds(name, value, MAX_DURATION)?,
        "--hold" => options.hold = seconds(name, value, MAX_DURATION)?,
        "--threads" => options.threads = bounded(name, value, 1, MAX_THREADS)?,
        "--connect-concurrency" => {
            options.connect_concurrency = bounded(name, value, 1, MAX_CONNECT_CONCURRENCY)?
        }
        "--subscribers" => options.subscribers = bounded(name, value, 1, MAX_CONNECTIONS)?,
        "--connections" => options.connections = bounded(name, value, 1, MAX_CONNECTIONS)?,
        "--writers" => options.writers = bounded(name, value, 1, MAX_CONNECTIONS)?,
        "--in-flight" => options.in_flight = bounded(name, value, 1, MAX_IN_FLIGHT)?,
        "--rate" => options.rate = Some(bounded(name, value, 1, MAX_RATE)?),
        "--pad" => options.pad = bounded(name, value, 0, MAX_PAD)?,
        "--writes" => options.writes = bounded(name, value, 1, MAX_WRITES)?,
        "--record" => options.record = Some(value.to_owned()),
        "--hostile" => options.hostile = bounded(name, value, 0, MAX_HOSTILE)?,
        "--bomb" => options.bomb = bounded(name, value, 1, MAX_BOMB)?,
        "--rss-limit" => {
            options.rss_limit = bounded(name, value, 1, 1 << 20)? as u64 * (1 << 20);
        }
        "--report" => options.report = Some(value.to_owned()),
        "--mode" => {
            options.mode = match value {
                "full" => Mode::Full,
                "patch" => Mode::Patch,
                _ => return Err(format!("--mode: full or patch, not {value:?}")),
            }
        }
        _ => return Err(format!("unknown option {name}")),
    }
    Ok(())
}

/// Checks what single options cannot: the connection cap and the URLs.
fn check(options: &Options, allow_remote: bool) -> Result<(), String> {
    let total = options.total_connections();
    if total > MAX_CONNECTIONS {
        return Err(format!(
            "this run would open {total} connections; the cap is {MAX_CONNECTIONS}"
        ));
    }
    if options.rate.is_some() && !matches!(options.scenario, Scenario::Fanout | Scenario::Hostile) {
        return Err("--rate is a fanout and hostile option".into());
    }
    if options.scenario == Scenario::Hostile && allow_remote {
        return Err("hostile runs against loopback only (--allow-remote refused)".into());
    }
    if options.scenario != Scenario::Race && options.urls.len() > 1 {
        return Err("only race takes several --url".into());
    }
    for url in &options.urls {
        let host = host_of(url)?;
        if !allow_remote && !is_loopback(host) {
            return Err(format!(
                "{url}: {host} is not a loopback address (pass --allow-remote to insist)"
            ));
        }
    }
    Ok(())
}

/// The host of a `ws://` URL (brackets of an IPv6 literal removed).
fn host_of(url: &str) -> Result<&str, String> {
    let rest = url
        .strip_prefix("ws://")
        .ok_or_else(|| format!("{url}: only ws:// URLs are supported"))?;
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let authority = authority
        .rsplit_once('@')
        .map_or(authority, |(_, host)| host);
    let host = match authority.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or_default(),
        None => authority.split(':').next().unwrap_or_default(),
    };
    if host.is_empty() {
        return Err(format!("{url}: no host"));
    }
    Ok(host)
}

fn is_loopback(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost")
        || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

fn number<T: FromStr>(name: &str, value: &str) -> Result<T, String> {
    value
        .parse()
        .map_err(|_| format!("{name}: not a number: {value:?}"))
}

fn bounded(name: &str, value: &str, low: usize, high: usize) -> Result<usize, String> {
    let n: usize = number(name, value)?;
    if n < low || n > high {
        return Err(format!("{name}: between {low} and {high}, not {n}"));
    }
    Ok(n)
}

fn seconds(name: &str, value: &str, cap: Duration) -> Result<Duration, String> {
    let secs: f64 = number(name, value)?;
    if !(0.0..=cap.as_secs_f64()).contains(&secs) {
        return Err(format!("{name}: between 0 and {} s", cap.as_secs()));
    }
    Ok(Duration::from_secs_f64(secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_hosts() {
        for url in [
            "ws://127.0.0.1:3000/ws",
            "ws://localhost/ws",
            "ws://[::1]:9/x",
        ] {
            assert!(is_loopback(host_of(url).unwrap()), "{url}");
        }
        for url in ["ws://10.0.0.1:3000/ws", "ws://example.com/ws"] {
            assert!(!is_loopback(host_of(url).unwrap()), "{url}");
        }
    }

    fn run(args: &[&str]) -> Result<Options, String> {
        match parse(args.iter().map(|a| a.to_string()))? {
            Command::Run(options) => Ok(*options),
            Command::Help => Err("help".into()),
        }
    }

    #[test]
    fn defaults_and_caps() {
        let options = run(&["fanout", "--subscribers=1000", "--mode", "full"]).unwrap();
        assert_eq!(options.url(), "ws://127.0.0.1:3000/ws");
        assert_eq!((options.subscribers, options.mode), (1000, Mode::Full));
        assert_eq!(options.duration, Duration::from_secs(10));
        assert_eq!(run(&["race"]).unwrap().duration, Duration::from_secs(60));
        assert!(run(&["idle", "--connections", "19001"]).is_err());
        assert!(
            run(&["fanout", "--subscribers", "19000"]).is_err(),
            "writer makes 19001"
        );
        assert!(run(&["records", "--duration", "601"]).is_err());
        assert!(run(&["records", "--url", "ws://192.168.1.2:3000/ws"]).is_err());
        assert!(run(&["records", "--url", "ws://192.168.1.2/ws", "--allow-remote"]).is_ok());
        assert!(run(&["records", "--url", "ws://[::1]/a", "--url", "ws://[::1]/b"]).is_err());
        let race = run(&["race", "--url", "ws://[::1]/a", "--url", "ws://[::1]/b"]).unwrap();
        assert_eq!(race.urls.len(), 2);
        assert_eq!(run(&["fanout", "--rate", "1000"]).unwrap().rate, Some(1000));
        let report = run(&["idle", "--report", "/tmp/r.html"]).unwrap().report;
        assert_eq!(report.as_deref(), Some("/tmp/r.html"));
        assert!(run(&["idle", "--report"]).is_err());
        assert!(run(&["fanout", "--rate", "0"]).is_err());
        assert!(run(&["records", "--rate", "10"]).is_err());
        let hostile = run(&["hostile", "--rate", "20"]).unwrap();
        assert_eq!(
            (hostile.writers, hostile.subscribers, hostile.hostile),
            (4, 200, 16)
        );
        assert_eq!(hostile.rate, Some(20));
        assert_eq!(run(&["hostile", "--baseline"]).unwrap().hostile, 0);
        assert_eq!(
            run(&["hostile", "--rss-limit", "100"]).unwrap().rss_limit,
            100 << 20
        );
        assert!(run(&["hostile", "--hostile", "201"]).is_err());
        assert!(run(&["hostile", "--url", "ws://10.0.0.1/ws", "--allow-remote"]).is_err());
        assert!(run(&["bogus"]).is_err());
        assert!(run(&["records", "--nope", "1"]).is_err());
    }
}
