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
/// Highest open-loop rate of one `records` connection (its timer has millisecond steps).
const MAX_RATE_PER_CONNECTION: f64 = 1000.0;
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
/// Most collections of the `unrelated-writes` shape (each an actor on the server).
const MAX_COLLECTIONS: usize = 100_000;
/// Most members of one collection (the server's `max_members` must allow them too).
const MAX_MEMBERS: usize = 100_000;
/// Largest collection snapshot the tool accepts, in bytes (`conn`'s frame limit).
const MAX_SNAPSHOT_BYTES: usize = 16 << 20;
/// Bytes a member adds to a snapshot besides its pad: its id twice (`ids` and the member),
/// `seq`, `sent_us` and the JSON around them. An estimate, for the check above.
const MEMBER_OVERHEAD: usize = 140;
/// Most subscribe round trips of the `snapshot` shape (each cold one leaves a collection
/// loaded on the server for a few seconds).
const MAX_REPEAT: usize = 1_000;

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
       for its own push, repeat); writes/s and write-to-push latency, and the spread
       between connections (own pushes and mean latency per connection, per tool thread).
         --connections C (100)  --pad BYTES (100)
         --rate-per-connection R  open loop instead: each connection writes R times a
           second (e.g. 1 or 0.5) at fixed times, the connections spread evenly over
           the interval, whatever the pushes; latency counts from each write's due time.
           Also reports writes sent more than 1 ms late and the send lag (tokio's timer
           wakes on whole milliseconds, so up to 1 ms of lag is the tool's own).
  idle     N connections each subscribed to one of 100 records, then held idle;
       server memory per connection (needs --server-pid).
         --connections N (1000)  --hold SECS (10)
         --own-records  connection i subscribes to its own record bench:idle:<i>
           instead (absent: the server starts a record actor for it all the same), so
           the figure includes one record actor per connection
  race     W writers spread over the --url list each make K publishes (up to 16 in
       flight) to one record; one subscriber per URL; lost updates, duplicate and
       out-of-order versions. --duration is the time limit here (default 60).
         --writers W (8)  --writes K (500)  --mode patch|full (patch)
  reconnect  C clients holding a record of --pad bytes reconnect after one small change:
       bytes and time to catch up by resubscribing (full snapshot) vs resuming
       (sinceVersion, one patch).
         --connections C (100)  --pad BYTES (100)
  upgrades  C loops each opening a connection (with --token as ?token=), answering one
       request on it and dropping it, for --duration: upgrades/s and per server CPU-s,
       what authentication costs at the door.
         --connections C (100)  --token JWT (none)
  collection  collections (mesh/subscribe-collection), three shapes; run the server with
       bench/config-collections.toml. Members are written with the value
       {seq, sent_us, pad}; setup creates them pipelined.
         --shape members-writes|unrelated-writes|snapshot (members-writes; or a|b|c)
       members-writes: S subscribers (a connection each) on one collection of M members;
         open-loop writes to the members, round robin, stamped with their due time;
         write-to-record-update latency, deliveries counted against writes x S once
         the load has settled, each subscriber's diff versions checked gap-free.
           --subscribers S (1000)  --members M (1000)  --rate N (100)  --pad BYTES (100)
           --mode full|patch (full)  --create-every K (100)  every Kth write creates a
             new member instead (a diff, then its record-update); 0: never
       unrelated-writes: C collections (none with members) with S subscribers each,
         P collections per connection (C/P x S connections, subscribes pipelined),
         then open-loop writes to 100 records in none of them; server CPU per write
         (needs --server-pid), write-to-push latency (one connection follows the
         written records), setup time and server memory per subscription.
           --collections C (10000)  --subscribers S (10)  --per-connection P (1000;
             at most the server's max_subscriptions_per_connection)  --rate N (1000)
           --no-collections  the same connections and writes, no subscription
       snapshot: one collection of M members (values of --pad bytes); R times each,
         the time from mesh/subscribe-collection to its reply and the reply's bytes,
         warm (the collection loaded: another connection holds it) and cold (a fresh
         collection id with the same members: the server lists them from the store).
           --members M (10000)  --pad BYTES (100)  --repeat R (20)
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
  --url URL            server WebSocket URL (ws://127.0.0.1:3000/ws); race and records take
                       several (records: connection i goes to the (i mod n)-th, a fleet)
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
    Collection,
    Upgrades,
}

/// What the `collection` scenario measures (the three figures of the collections issue).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shape {
    /// Writes to the members of one collection with many subscribers: latency to them.
    MembersWrites,
    /// Writes to records in none of many subscribed collections: what they cost the server.
    UnrelatedWrites,
    /// Subscribing to one large collection: time to the reply and its size.
    Snapshot,
}

impl Shape {
    /// The name on the command line and in the report.
    pub fn name(self) -> &'static str {
        match self {
            Shape::MembersWrites => "members-writes",
            Shape::UnrelatedWrites => "unrelated-writes",
            Shape::Snapshot => "snapshot",
        }
    }

    fn parse(value: &str) -> Result<Shape, String> {
        match value {
            "members-writes" | "a" | "A" => Ok(Shape::MembersWrites),
            "unrelated-writes" | "b" | "B" => Ok(Shape::UnrelatedWrites),
            "snapshot" | "c" | "C" => Ok(Shape::Snapshot),
            _ => Err(format!(
                "--shape: members-writes, unrelated-writes or snapshot (a, b, c), not {value:?}"
            )),
        }
    }
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
            Scenario::Collection => "collection",
            Scenario::Upgrades => "upgrades",
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
    /// `records`: open loop at this many writes per second on each connection.
    pub rate_per_connection: Option<f64>,
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
    /// `collection`: which figure.
    pub shape: Shape,
    /// `collection`: members of the collection (members-writes, snapshot).
    pub members: usize,
    /// `collection`: collections subscribed (unrelated-writes).
    pub collections: usize,
    /// `collection`: collections one connection subscribes to (unrelated-writes).
    pub per_connection: usize,
    /// `collection`: the unrelated-writes baseline, without subscriptions.
    pub no_collections: bool,
    /// `upgrades`: the JWT each connection presents (`?token=`).
    pub token: Option<String>,
    /// `collection`: every this many writes one creates a member (0: never).
    pub create_every: usize,
    /// `collection`: subscribe round trips per kind (snapshot).
    pub repeat: usize,
    /// `idle`: each connection subscribes to a record of its own, not one of 100.
    pub own_records: bool,
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
            rate_per_connection: None,
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
            shape: Shape::MembersWrites,
            members: 1000,
            collections: 10_000,
            per_connection: 1000,
            no_collections: false,
            token: None,
            create_every: 100,
            repeat: 20,
            own_records: false,
        }
    }

    /// The defaults that depend on `--shape`, for the options `given` does not name.
    fn shape_defaults(&mut self, given: &[String]) {
        let unset = |name: &str| !given.iter().any(|g| g == name);
        let (subscribers, members, rate) = match self.shape {
            Shape::MembersWrites => (1000, 1000, Some(100)),
            Shape::UnrelatedWrites => (10, 0, Some(1000)),
            Shape::Snapshot => (0, 10_000, None),
        };
        if unset("--subscribers") {
            self.subscribers = subscribers;
        }
        if unset("--members") {
            self.members = members;
        }
        if unset("--rate") {
            self.rate = rate;
        }
        if unset("--mode") {
            // Mesh's collection subscriptions are full; patch is this server's extension.
            self.mode = Mode::Full;
        }
    }

    /// `collection` unrelated-writes: connections holding the subscriptions (every
    /// collection gets `subscribers` of them, each holding up to `per_connection`).
    pub fn holder_connections(&self) -> usize {
        self.collections.div_ceil(self.per_connection) * self.subscribers
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
            // One connection per loop at a time, plus the check before measuring.
            Scenario::Upgrades => self.connections + 1,
            Scenario::Race => self.writers + 2 * self.urls.len(),
            // Churn and oversized open a connection per attempt, closed at once.
            Scenario::Hostile => self.writers + self.subscribers + self.hostile,
            // Each shape also opens one setup connection first, closed before the load.
            Scenario::Collection => match self.shape {
                Shape::MembersWrites => self.subscribers + 2,
                // The holders, the writer and the connection following the writes.
                Shape::UnrelatedWrites => self.holder_connections() + 3,
                // The holder keeping the collection loaded, the prober.
                Shape::Snapshot => 3,
            },
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
        Some("collection") => Scenario::Collection,
        Some("upgrades") => Scenario::Upgrades,
        Some(other) => return Err(format!("unknown scenario {other:?}")),
    };
    let mut options = Options::defaults(scenario);
    let mut allow_remote = false;
    let mut given = Vec::new();
    while let Some(arg) = args.next() {
        let (name, inline) = match arg.split_once('=') {
            Some((name, value)) => (name.to_owned(), Some(value.to_owned())),
            None => (arg, None),
        };
        given.push(name.clone());
        match name.as_str() {
            "-h" | "--help" => return Ok(Command::Help),
            "--allow-remote" => allow_remote = true,
            "--baseline" => options.hostile = 0,
            "--no-collections" => options.no_collections = true,
            "--own-records" => options.own_records = true,
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
    if scenario == Scenario::Collection {
        options.shape_defaults(&given);
    }
    check(&options, allow_remote, &given)?;
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
        "--rate-per-connection" => {
            options.rate_per_connection = Some(rate_per_connection(value)?);
        }
        "--pad" => options.pad = bounded(name, value, 0, MAX_PAD)?,
        "--writes" => options.writes = bounded(name, value, 1, MAX_WRITES)?,
        "--record" => options.record = Some(value.to_owned()),
        "--token" => options.token = Some(value.to_owned()),
        "--hostile" => options.hostile = bounded(name, value, 0, MAX_HOSTILE)?,
        "--bomb" => options.bomb = bounded(name, value, 1, MAX_BOMB)?,
        "--rss-limit" => {
            options.rss_limit = bounded(name, value, 1, 1 << 20)? as u64 * (1 << 20);
        }
        "--report" => options.report = Some(value.to_owned()),
        "--shape" => options.shape = Shape::parse(value)?,
        "--members" => options.members = bounded(name, value, 1, MAX_MEMBERS)?,
        "--collections" => options.collections = bounded(name, value, 1, MAX_COLLECTIONS)?,
        "--per-connection" => {
            options.per_connection = bounded(name, value, 1, MAX_COLLECTIONS)?;
        }
        "--create-every" => options.create_every = bounded(name, value, 0, MAX_WRITES)?,
        "--repeat" => options.repeat = bounded(name, value, 1, MAX_REPEAT)?,
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
fn check(options: &Options, allow_remote: bool, given: &[String]) -> Result<(), String> {
    let total = options.total_connections();
    if total > MAX_CONNECTIONS {
        return Err(format!(
            "this run would open {total} connections; the cap is {MAX_CONNECTIONS}"
        ));
    }
    let collection = options.scenario == Scenario::Collection;
    if options.rate.is_some()
        && !matches!(options.scenario, Scenario::Fanout | Scenario::Hostile)
        && !(collection && options.shape != Shape::Snapshot)
    {
        return Err("--rate is a fanout, hostile and collection (not snapshot) option".into());
    }
    if options.rate_per_connection.is_some() && options.scenario != Scenario::Records {
        return Err("--rate-per-connection is a records option".into());
    }
    let only = |names: &[&str], holds: bool, what: &str| match given
        .iter()
        .find(|g| names.contains(&g.as_str()))
    {
        Some(name) if !holds => Err(format!("{name} is a {what} option")),
        _ => Ok(()),
    };
    only(
        &["--shape", "--members", "--repeat", "--collections"],
        collection,
        "collection",
    )?;
    only(
        &["--per-connection", "--no-collections", "--create-every"],
        collection,
        "collection",
    )?;
    only(
        &["--own-records"],
        options.scenario == Scenario::Idle,
        "idle",
    )?;
    let shape = collection.then_some(options.shape);
    only(
        &["--collections", "--per-connection", "--no-collections"],
        shape == Some(Shape::UnrelatedWrites),
        "collection --shape unrelated-writes",
    )?;
    only(
        &["--create-every"],
        shape == Some(Shape::MembersWrites),
        "collection --shape members-writes",
    )?;
    only(
        &["--repeat"],
        shape == Some(Shape::Snapshot),
        "collection --shape snapshot",
    )?;
    only(
        &["--members"],
        shape != Some(Shape::UnrelatedWrites),
        "collection members-writes and snapshot",
    )?;
    if collection {
        let snapshot = options.members * (options.pad + MEMBER_OVERHEAD);
        if options.shape != Shape::UnrelatedWrites && snapshot > MAX_SNAPSHOT_BYTES {
            return Err(format!(
                "--members {} with --pad {} makes a snapshot of about {} MiB; the tool reads \
                 frames up to {} MiB",
                options.members,
                options.pad,
                snapshot >> 20,
                MAX_SNAPSHOT_BYTES >> 20
            ));
        }
        if options.shape == Shape::Snapshot && given.iter().any(|g| g == "--subscribers") {
            return Err("--subscribers is not a collection snapshot option".into());
        }
    }
    if options.scenario == Scenario::Hostile && allow_remote {
        return Err("hostile runs against loopback only (--allow-remote refused)".into());
    }
    if !matches!(options.scenario, Scenario::Race | Scenario::Records) && options.urls.len() > 1 {
        return Err("only race and records take several --url".into());
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

/// `--rate-per-connection`: writes per second on one connection, 0.01 (one every 100 s) to
/// `MAX_RATE_PER_CONNECTION`.
fn rate_per_connection(value: &str) -> Result<f64, String> {
    let rate: f64 = number("--rate-per-connection", value)?;
    if !(0.01..=MAX_RATE_PER_CONNECTION).contains(&rate) {
        return Err(format!(
            "--rate-per-connection: between 0.01 and {MAX_RATE_PER_CONNECTION}, not {rate}"
        ));
    }
    Ok(rate)
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
    fn collection_defaults_follow_the_shape() {
        let a = run(&["collection"]).unwrap();
        assert_eq!(a.shape, Shape::MembersWrites);
        assert_eq!((a.subscribers, a.members, a.rate), (1000, 1000, Some(100)));
        assert_eq!((a.mode, a.create_every), (Mode::Full, 100));
        let b = run(&["collection", "--rate", "50", "--shape", "b"]).unwrap();
        assert_eq!(b.shape, Shape::UnrelatedWrites);
        assert_eq!(
            (b.subscribers, b.collections, b.rate),
            (10, 10_000, Some(50))
        );
        assert_eq!(b.holder_connections(), 100);
        assert_eq!(b.total_connections(), 103);
        let b = run(&["collection", "--shape=b", "--per-connection", "300"]).unwrap();
        assert_eq!(
            b.holder_connections(),
            34 * 10,
            "the last connection holds 100"
        );
        assert!(
            run(&["collection", "--shape", "b", "--no-collections"])
                .unwrap()
                .no_collections
        );
        let c = run(&["collection", "--shape", "snapshot", "--repeat", "5"]).unwrap();
        assert_eq!((c.members, c.repeat, c.rate), (10_000, 5, None));
        let patch = run(&["collection", "--subscribers", "10", "--mode", "patch"]).unwrap();
        assert_eq!((patch.subscribers, patch.mode), (10, Mode::Patch));
    }

    #[test]
    fn collection_options_belong_to_their_shape() {
        for args in [
            &["collection", "--shape", "snapshot", "--rate", "10"][..],
            &["collection", "--no-collections"],
            &["collection", "--shape", "c", "--create-every", "3"],
            &["collection", "--shape", "b", "--members", "3"],
            &["collection", "--repeat", "3"],
            &["collection", "--shape", "c", "--subscribers", "3"],
            &["collection", "--shape", "d"],
            &["records", "--shape", "a"],
            // 10,000 members of 2 KB: a 21 MB snapshot.
            &["collection", "--shape", "c", "--pad", "2000"],
            // 100,000 collections by 10 subscribers at 10 per connection: 100,000 connections.
            &[
                "collection",
                "--shape",
                "b",
                "--collections",
                "100000",
                "--per-connection",
                "10",
            ],
        ] {
            assert!(run(args).is_err(), "{args:?}");
        }
    }

    #[test]
    fn records_open_loop_rate() {
        let open = run(&["records", "--rate-per-connection", "0.5"]).unwrap();
        assert_eq!(open.rate_per_connection, Some(0.5));
        assert_eq!(run(&["records"]).unwrap().rate_per_connection, None);
        for args in [
            &["records", "--rate-per-connection", "0"][..],
            &["records", "--rate-per-connection", "NaN"],
            &["records", "--rate-per-connection", "1001"],
            &["fanout", "--rate-per-connection", "1"],
        ] {
            assert!(run(args).is_err(), "{args:?}");
        }
    }

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
        assert!(run(&["fanout", "--url", "ws://[::1]/a", "--url", "ws://[::1]/b"]).is_err());
        let fleet = run(&["records", "--url", "ws://[::1]/a", "--url", "ws://[::1]/b"]).unwrap();
        assert_eq!(fleet.urls.len(), 2);
        let race = run(&["race", "--url", "ws://[::1]/a", "--url", "ws://[::1]/b"]).unwrap();
        assert_eq!(race.urls.len(), 2);
        assert_eq!(run(&["fanout", "--rate", "1000"]).unwrap().rate, Some(1000));
        let report = run(&["idle", "--report", "/tmp/r.html"]).unwrap().report;
        assert_eq!(report.as_deref(), Some("/tmp/r.html"));
        assert!(run(&["idle", "--report"]).is_err());
        assert!(!run(&["idle"]).unwrap().own_records);
        assert!(run(&["idle", "--own-records"]).unwrap().own_records);
        assert!(run(&["records", "--own-records"]).is_err());
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
        assert!(run(&["fanout", "--members", "10"]).is_err());
        assert!(run(&["records", "--nope", "1"]).is_err());
    }
}
