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
//! Layout of this file:
//! - `args`: the command line, every count and duration capped, and the loopback check.
//! - `wire`: the few frame shapes the tool reads (borrowed, lenient) and the frames it writes.
//! - `conn`: one WebSocket connection: open with a timeout, send, receive, answer pings.
//! - `probe`: /proc readings: CPU seconds and resident memory of a process.
//! - `stats`: per-thread counters, latency histograms, the once-a-second progress line.
//! - `control`: worker threads (one actix-rt System each) and the phases they follow.
//! - `fanout`, `records`, `idle`, `race`: the scenarios, each ending in a `report::Report`.
//! - `report`: the human summary and the one-line JSON.
//!
//! The tool shares the machine's cores with the server, so it keeps its per-frame work small:
//! frames are parsed into small structs with borrowed fields, and each thread counts into its
//! own counters. Every run is bounded: counts are capped, each phase has a time limit, and the
//! process ends by itself.

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

/// The command line: scenario, options, their defaults and caps.
mod args {
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
    /// Largest pad: the server refuses values above `max_value_bytes` (1 MiB by default).
    const MAX_PAD: usize = 512 * 1024;
    /// Most publishes one race writer makes.
    const MAX_WRITES: usize = 1_000_000;
    /// Most worker threads (the machine has 2 cores; more only adds switching).
    const MAX_THREADS: usize = 16;
    /// Most connection handshakes in progress at once.
    const MAX_CONNECT_CONCURRENCY: usize = 2_000;

    pub const USAGE: &str = "\
usage: mesh-bench <scenario> [options]

Load test for a mesh-records server. Run the server with the per-connection rate limit off
(max_requests_per_second = 0), e.g. `mesh-records --config bench/config.toml` (memory store) or
bench/config-redis.toml (Redis store); both expose ^bench: records as writable.

Every scenario prints a progress line every second, then a summary, then one line of JSON.

scenarios:
  fanout   S subscribers on one record, one writer keeping W publishes in flight;
           writes/s, deliveries/s, write-to-delivery latency, gaps.
             --subscribers S (100)  --mode patch|full (patch)  --in-flight W (16)
             --pad BYTES (100)
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

common options:
  --url URL            server WebSocket URL (ws://127.0.0.1:3000/ws); race takes several
  --allow-remote       allow a URL whose host is not loopback (refused by default)
  --server-pid PID     report the server's CPU seconds over the measurement window and the
                       work done per server CPU-second (repeatable: one per instance)
  --duration SECS      measured period (10; at most 600)
  --warmup SECS        unmeasured load before measuring (1)
  --threads N          client threads, each with its own event loop (2)
  --connect-concurrency N  handshakes in progress at once (200)
  -h, --help           this text

Connections per run are capped at 19000 (the descriptor limit here is 20000).";

    /// What the command line asks for.
    pub enum Command {
        Help,
        Run(Options),
    }

    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub enum Scenario {
        Fanout,
        Records,
        Idle,
        Race,
    }

    impl Scenario {
        pub fn name(self) -> &'static str {
            match self {
                Scenario::Fanout => "fanout",
                Scenario::Records => "records",
                Scenario::Idle => "idle",
                Scenario::Race => "race",
            }
        }
    }

    /// Subscription mode, as the protocol spells it.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub enum Mode {
        Full,
        Patch,
    }

    impl Mode {
        pub fn as_str(self) -> &'static str {
            match self {
                Mode::Full => "full",
                Mode::Patch => "patch",
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
        pub pad: usize,
        pub connections: usize,
        pub hold: Duration,
        pub writers: usize,
        pub writes: usize,
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
                subscribers: 100,
                mode: Mode::Patch,
                in_flight: 16,
                pad: 100,
                connections: if scenario == Scenario::Idle {
                    1000
                } else {
                    100
                },
                hold: Duration::from_secs(10),
                writers: 8,
                writes: 500,
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
                Scenario::Race => self.writers + 2 * self.urls.len(),
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
        Ok(Command::Run(options))
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
            "--pad" => options.pad = bounded(name, value, 0, MAX_PAD)?,
            "--writes" => options.writes = bounded(name, value, 1, MAX_WRITES)?,
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
    }
}

/// The frames the tool reads, reduced to the fields it looks at, and the frames it writes.
mod wire {
    use crate::args::Mode;
    use serde::Deserialize;
    use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
    use std::borrow::Cow;
    use std::fmt::{self, Write as _};
    use std::marker::PhantomData;

    /// The keepalive answer to the server's `ping` push.
    pub const PONG: &str = r#"{"command":"pong","payload":{}}"#;

    /// An incoming frame. Strings borrow from the frame's bytes, so parsing a push allocates
    /// nothing in the common case.
    #[derive(Deserialize)]
    pub struct Incoming<'a> {
        #[serde(default)]
        pub id: Option<u64>,
        #[serde(borrow)]
        pub command: Cow<'a, str>,
        #[serde(default, borrow)]
        pub payload: Lenient<Payload<'a>>,
    }

    /// The payload fields of replies and record pushes; every one is optional because one
    /// struct serves all the shapes.
    #[derive(Deserialize)]
    pub struct Payload<'a> {
        pub success: Option<bool>,
        pub version: Option<u64>,
        /// The value in a full-mode push (for a patch subscriber: a resync).
        #[serde(default)]
        pub full: Lenient<Stamp>,
        #[serde(default)]
        pub patch: PatchStamp,
        #[serde(borrow)]
        pub code: Option<Cow<'a, str>>,
        #[serde(borrow)]
        pub error: Option<Cow<'a, str>>,
    }

    impl Payload<'_> {
        /// `{"success": true, ...}`.
        pub fn succeeded(&self) -> bool {
            self.success == Some(true)
        }

        /// A short description of a failed reply, for the report.
        pub fn describe(&self) -> String {
            match (&self.code, &self.error) {
                (Some(code), Some(error)) => format!("{code}: {error}"),
                (Some(code), None) => code.to_string(),
                (None, Some(error)) => error.to_string(),
                (None, None) => "success is not true".into(),
            }
        }
    }

    /// The fields of the bench's own record values (`{"seq","sent_us","pad"}` and
    /// `{"writer","seq"}`); other fields are skipped without being kept.
    #[derive(Deserialize, Default, Clone, Copy)]
    pub struct Stamp {
        pub seq: Option<u64>,
        pub sent_us: Option<u64>,
    }

    /// What a patch push says about `/seq` and `/sent_us`. A patch leaves out fields that did
    /// not change, so the reader keeps its own copy of the last values.
    #[derive(Default, Clone, Copy)]
    pub struct PatchStamp {
        pub present: bool,
        pub seq: Option<u64>,
        pub sent_us: Option<u64>,
    }

    /// An object parsed as `T`, or `None` for any other JSON value, so one odd frame does not
    /// fail the parse of the whole frame.
    pub struct Lenient<T>(pub Option<T>);

    impl<T> Default for Lenient<T> {
        fn default() -> Self {
            Lenient(None)
        }
    }

    /// Visitor methods that accept JSON values of the given kinds and yield `$empty`,
    /// consuming nested arrays and objects.
    macro_rules! ignore {
        ($de:lifetime, $empty:expr; $($kind:ident)*) => { $( ignore!(@$kind $de $empty); )* };
        (@bool $de:lifetime $e:expr) => {
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> { Ok($e) }
        };
        (@i64 $de:lifetime $e:expr) => {
            fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> { Ok($e) }
        };
        (@u64 $de:lifetime $e:expr) => {
            fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> { Ok($e) }
        };
        (@f64 $de:lifetime $e:expr) => {
            fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> { Ok($e) }
        };
        (@str $de:lifetime $e:expr) => {
            fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> { Ok($e) }
        };
        (@unit $de:lifetime $e:expr) => {
            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> { Ok($e) }
        };
        (@seq $de:lifetime $e:expr) => {
            fn visit_seq<A: SeqAccess<$de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok($e)
            }
        };
        (@map $de:lifetime $e:expr) => {
            fn visit_map<A: MapAccess<$de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok($e)
            }
        };
    }

    impl<'de, T: Deserialize<'de>> Deserialize<'de> for Lenient<T> {
        fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
            deserializer.deserialize_any(LenientVisitor(PhantomData))
        }
    }

    struct LenientVisitor<T>(PhantomData<T>);

    impl<'de, T: Deserialize<'de>> Visitor<'de> for LenientVisitor<T> {
        type Value = Lenient<T>;

        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("any JSON value")
        }

        fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
            T::deserialize(de::value::MapAccessDeserializer::new(map)).map(|t| Lenient(Some(t)))
        }

        ignore!('de, Lenient(None); bool i64 u64 f64 str unit seq);
    }

    impl<'de> Deserialize<'de> for PatchStamp {
        fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
            deserializer.deserialize_any(PatchVisitor)
        }
    }

    /// One RFC 6902 operation; only `path` and a numeric `value` matter here.
    #[derive(Deserialize)]
    struct PatchOp<'a> {
        #[serde(borrow)]
        path: Cow<'a, str>,
        #[serde(default)]
        value: Number,
    }

    struct PatchVisitor;

    impl<'de> Visitor<'de> for PatchVisitor {
        type Value = PatchStamp;

        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a JSON patch")
        }

        /// Walks the operations without collecting them.
        fn visit_seq<A: SeqAccess<'de>>(self, mut ops: A) -> Result<PatchStamp, A::Error> {
            let mut stamp = PatchStamp {
                present: true,
                ..PatchStamp::default()
            };
            while let Some(Lenient(op)) = ops.next_element::<Lenient<PatchOp<'de>>>()? {
                match op {
                    Some(op) if op.path == "/seq" => stamp.seq = op.value.0,
                    Some(op) if op.path == "/sent_us" => stamp.sent_us = op.value.0,
                    _ => {}
                }
            }
            Ok(stamp)
        }

        ignore!('de, PatchStamp::default(); bool i64 u64 f64 str unit map);
    }

    /// A non-negative integer, or `None` for any other JSON value.
    #[derive(Default)]
    struct Number(Option<u64>);

    impl<'de> Deserialize<'de> for Number {
        fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
            deserializer.deserialize_any(NumberVisitor)
        }
    }

    struct NumberVisitor;

    impl<'de> Visitor<'de> for NumberVisitor {
        type Value = Number;

        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("any JSON value")
        }

        fn visit_u64<E: de::Error>(self, v: u64) -> Result<Number, E> {
            Ok(Number(Some(v)))
        }

        fn visit_i64<E: de::Error>(self, v: i64) -> Result<Number, E> {
            Ok(Number(u64::try_from(v).ok()))
        }

        ignore!('de, Number(None); bool f64 str unit seq map);
    }

    /// `mesh/subscribe-record`. Record ids are the bench's own ASCII names: no escaping needed.
    pub fn subscribe(id: u64, record: &str, mode: Mode) -> String {
        format!(
            r#"{{"id":{id},"command":"mesh/subscribe-record","payload":{{"recordId":"{record}","mode":"{}"}}}}"#,
            mode.as_str()
        )
    }

    /// `mesh/publish-record-update`; `value` appends the new value as JSON.
    pub fn publish(id: u64, record: &str, value: impl FnOnce(&mut String)) -> String {
        let mut out = String::with_capacity(128);
        out.push_str(r#"{"id":"#);
        push_number(&mut out, id);
        out.push_str(r#","command":"mesh/publish-record-update","payload":{"recordId":""#);
        out.push_str(record);
        out.push_str(r#"","newValue":"#);
        value(&mut out);
        out.push_str("}}");
        out
    }

    /// The fanout and records value: only `seq` and `sent_us` change between writes, so a
    /// patch push stays small whatever the pad.
    pub fn stamped_value(out: &mut String, seq: u64, sent_us: u64, pad: &str) {
        out.push_str(r#"{"seq":"#);
        push_number(out, seq);
        out.push_str(r#","sent_us":"#);
        push_number(out, sent_us);
        out.push_str(r#","pad":""#);
        out.push_str(pad);
        out.push_str(r#""}"#);
    }

    /// The race value.
    pub fn race_value(out: &mut String, writer: usize, seq: usize) {
        // Writing into a String cannot fail.
        let _ = write!(out, r#"{{"writer":{writer},"seq":{seq}}}"#);
    }

    fn push_number(out: &mut String, n: u64) {
        // Writing into a String cannot fail.
        let _ = write!(out, "{n}");
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        fn parse(text: &str) -> Incoming<'_> {
            serde_json::from_str(text).unwrap()
        }

        #[test]
        fn reads_patch_and_full_pushes() {
            let frame = parse(
                r#"{"command":"mesh/record-update","payload":{"recordId":"r","patch":[
                {"op":"add","path":"/pad","value":"xx"},{"op":"replace","path":"/seq","value":7},
                {"op":"replace","path":"/sent_us","value":99}],"version":7}}"#,
            );
            let payload = frame.payload.0.unwrap();
            assert_eq!(payload.version, Some(7));
            assert!(payload.patch.present);
            assert_eq!(
                (payload.patch.seq, payload.patch.sent_us),
                (Some(7), Some(99))
            );
            let frame = parse(
                r#"{"command":"mesh/record-update","payload":{"recordId":"r",
                "full":{"seq":3,"sent_us":5,"pad":"x"},"version":3}}"#,
            );
            let full = frame.payload.0.unwrap().full.0.unwrap();
            assert_eq!((full.seq, full.sent_us), (Some(3), Some(5)));
        }

        #[test]
        fn tolerates_other_payloads() {
            assert!(
                parse(r#"{"command":"mesh/assign-id","payload":"abc"}"#)
                    .payload
                    .0
                    .is_none()
            );
            assert!(
                parse(r#"{"command":"latency","payload":12}"#)
                    .payload
                    .0
                    .is_none()
            );
            let reply = parse(
                r#"{"id":4,"command":"mesh/publish-record-update","payload":{"error":"no",
                "code":"EFORBIDDEN","name":"CommandError"}}"#,
            );
            assert_eq!(reply.id, Some(4));
            assert_eq!(reply.payload.0.unwrap().describe(), "EFORBIDDEN: no");
        }

        #[test]
        fn written_frames_are_json() {
            let text = publish(3, "bench:x", |out| stamped_value(out, 1, 2, "ab"));
            let value: serde_json::Value = serde_json::from_str(&text).unwrap();
            assert_eq!(value["payload"]["newValue"]["pad"], "ab");
            let text = publish(4, "bench:x", |out| race_value(out, 2, 9));
            let value: serde_json::Value = serde_json::from_str(&text).unwrap();
            assert_eq!(value["payload"]["newValue"]["seq"], 9);
            let text = subscribe(5, "bench:x", Mode::Patch);
            let value: serde_json::Value = serde_json::from_str(&text).unwrap();
            assert_eq!(value["payload"]["mode"], "patch");
        }
    }
}

/// One client WebSocket connection speaking the Mesh protocol.
mod conn {
    use crate::args::Mode;
    use crate::wire::{self, Incoming};
    use actix_codec::Framed;
    use actix_rt::net::TcpStream;
    use actix_service::ServiceExt;
    use actix_tls::connect::Connection as TcpConnection;
    use actix_web::web::Bytes;
    use awc::BoxedSocket;
    use awc::http::Uri;
    use awc::ws::{Codec, Frame, Message};
    use futures_util::{SinkExt, StreamExt};
    use std::time::Duration;

    /// Time for the TCP connect, the upgrade and the server's `mesh/assign-id`.
    const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
    /// Time for a reply during setup (a subscribe).
    const REPLY_TIMEOUT: Duration = Duration::from_secs(10);
    /// Largest frame accepted from the server (a full push carries the whole value).
    const MAX_FRAME: usize = 16 * 1024 * 1024;

    /// An HTTP client for one thread's connections. Each open WebSocket holds one of the
    /// connector's pool permits for its whole life, so the default limit of 100 would cap
    /// the connections a thread can hold: the limit is lifted. Sockets get TCP_NODELAY, as
    /// browsers' WebSockets do: with Nagle's algorithm a small frame sent while an earlier
    /// one is unacknowledged waits for the peer's delayed ACK (up to 40 ms on Linux), and the
    /// tool would measure its own delay.
    pub fn http_client() -> awc::Client {
        let tcp = actix_tls::connect::Connector::default().service().map(
            |connection: TcpConnection<Uri, TcpStream>| {
                // Best effort: a socket without the option only measures a little slower.
                let _ = connection.io_ref().set_nodelay(true);
                connection
            },
        );
        let connector = awc::Connector::new()
            .connector(tcp)
            .limit(0)
            .timeout(CONNECT_TIMEOUT);
        awc::Client::builder()
            .connector(connector)
            .timeout(CONNECT_TIMEOUT)
            .finish()
    }

    pub struct Conn {
        framed: Framed<BoxedSocket, Codec>,
        next_id: u64,
    }

    impl Conn {
        /// Connects and waits for the server's `mesh/assign-id`; fails after a timeout.
        pub async fn open(client: &awc::Client, url: &str) -> Result<Conn, String> {
            tokio::time::timeout(CONNECT_TIMEOUT, Self::handshake(client, url))
                .await
                .map_err(|_| "connect timed out".to_owned())?
        }

        async fn handshake(client: &awc::Client, url: &str) -> Result<Conn, String> {
            let (_response, framed) = client
                .ws(url)
                .max_frame_size(MAX_FRAME)
                .connect()
                .await
                .map_err(|e| format!("connect: {e}"))?;
            let mut conn = Conn { framed, next_id: 0 };
            let first = conn.recv().await.ok_or("closed before mesh/assign-id")?;
            let frame: Incoming = serde_json::from_slice(&first)
                .map_err(|e| format!("unreadable first frame: {e}"))?;
            if frame.command != "mesh/assign-id" {
                return Err(format!(
                    "first frame is {}, not mesh/assign-id",
                    frame.command
                ));
            }
            Ok(conn)
        }

        /// A fresh request id.
        pub fn next_id(&mut self) -> u64 {
            self.next_id += 1;
            self.next_id
        }

        /// Sends one text frame and flushes it.
        pub async fn send(&mut self, text: String) -> Result<(), String> {
            self.framed
                .send(Message::Text(text.into()))
                .await
                .map_err(|e| format!("send: {e}"))
        }

        /// Queues one text frame without flushing: a batch then goes out in one write.
        pub async fn feed(&mut self, text: String) -> Result<(), String> {
            self.framed
                .feed(Message::Text(text.into()))
                .await
                .map_err(|e| format!("send: {e}"))
        }

        pub async fn flush(&mut self) -> Result<(), String> {
            self.framed.flush().await.map_err(|e| format!("send: {e}"))
        }

        /// Answers the server's `ping` push.
        pub async fn pong(&mut self) -> Result<(), String> {
            self.send(wire::PONG.to_owned()).await
        }

        /// The next text frame; `None` once the connection has ended. WebSocket-level pings
        /// are answered here.
        pub async fn recv(&mut self) -> Option<Bytes> {
            loop {
                match self.framed.next().await? {
                    Ok(Frame::Text(bytes) | Frame::Binary(bytes)) => return Some(bytes),
                    Ok(Frame::Ping(data)) => self.framed.send(Message::Pong(data)).await.ok()?,
                    Ok(Frame::Close(_)) | Err(_) => return None,
                    Ok(_) => {}
                }
            }
        }

        /// Subscribes and returns the version in the reply. Setup only: anything else that
        /// arrives before the reply (other than a ping) is dropped.
        pub async fn subscribe(&mut self, record: &str, mode: Mode) -> Result<u64, String> {
            let id = self.next_id();
            self.send(wire::subscribe(id, record, mode)).await?;
            tokio::time::timeout(REPLY_TIMEOUT, self.subscribe_reply(id))
                .await
                .map_err(|_| "no subscribe reply in time".to_owned())?
        }

        async fn subscribe_reply(&mut self, id: u64) -> Result<u64, String> {
            loop {
                let bytes = self.recv().await.ok_or("closed while subscribing")?;
                let frame: Incoming =
                    serde_json::from_slice(&bytes).map_err(|e| format!("unreadable frame: {e}"))?;
                if frame.id == Some(id) {
                    return match frame.payload.0 {
                        Some(payload) if payload.succeeded() => Ok(payload.version.unwrap_or(0)),
                        Some(payload) => Err(format!("subscribe refused: {}", payload.describe())),
                        None => Err("subscribe refused".into()),
                    };
                }
                if frame.id.is_none() && frame.command == "ping" {
                    self.pong().await?;
                }
            }
        }
    }
}

/// Readings from /proc: CPU time and resident memory of a process.
mod probe {
    use std::time::Instant;

    /// CPU seconds (user + system, all threads) of `pid`, or of this process for `None`.
    pub fn cpu_seconds(pid: Option<u32>) -> Option<f64> {
        let path = match pid {
            Some(pid) => format!("/proc/{pid}/stat"),
            None => "/proc/self/stat".to_owned(),
        };
        let stat = std::fs::read_to_string(path).ok()?;
        // The command name (field 2) may hold spaces and parentheses: fields after the last
        // ')' are the fixed ones, starting with field 3 (state); utime and stime are 14, 15.
        let (_, rest) = stat.rsplit_once(')')?;
        let mut fields = rest.split_whitespace().skip(11);
        let utime: u64 = fields.next()?.parse().ok()?;
        let stime: u64 = fields.next()?.parse().ok()?;
        Some((utime + stime) as f64 / clock_ticks_per_second())
    }

    /// CPU seconds the whole machine has spent busy (all cores, everything but idle and
    /// iowait), from the first line of /proc/stat.
    pub fn machine_busy_seconds() -> Option<f64> {
        let stat = std::fs::read_to_string("/proc/stat").ok()?;
        let line = stat.lines().next()?.strip_prefix("cpu ")?;
        let ticks: Vec<u64> = line
            .split_whitespace()
            .map(|t| t.parse().ok())
            .collect::<Option<_>>()?;
        // user nice system idle iowait irq softirq steal (guest time is already in user).
        let busy: u64 = ticks.iter().take(8).sum::<u64>() - ticks.get(3)? - ticks.get(4)?;
        Some(busy as f64 / clock_ticks_per_second())
    }

    fn clock_ticks_per_second() -> f64 {
        // SAFETY: sysconf only reads a system constant.
        let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
        if ticks > 0 { ticks as f64 } else { 100.0 }
    }

    /// Resident memory of `pid` (or this process), in bytes, from VmRSS.
    pub fn rss_bytes(pid: Option<u32>) -> Option<u64> {
        let path = match pid {
            Some(pid) => format!("/proc/{pid}/status"),
            None => "/proc/self/status".to_owned(),
        };
        let status = std::fs::read_to_string(path).ok()?;
        let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
        let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
        Some(kib * 1024)
    }

    /// Raises the soft descriptor limit to the hard one, so thousands of connections fit.
    pub fn raise_fd_limit() {
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit/setrlimit only read and write the struct passed by pointer.
        unsafe {
            if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0
                && limit.rlim_cur < limit.rlim_max
            {
                limit.rlim_cur = limit.rlim_max;
                libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
            }
        }
    }

    /// CPU readings at one moment: each server, and this tool.
    pub struct CpuSample {
        at: Instant,
        servers: Vec<Option<f64>>,
        tool: Option<f64>,
        machine: Option<f64>,
    }

    impl CpuSample {
        pub fn take(server_pids: &[u32]) -> CpuSample {
            CpuSample {
                at: Instant::now(),
                servers: server_pids
                    .iter()
                    .map(|&pid| cpu_seconds(Some(pid)))
                    .collect(),
                tool: cpu_seconds(None),
                machine: machine_busy_seconds(),
            }
        }

        /// CPU spent between `earlier` and this sample.
        pub fn since(&self, earlier: &CpuSample) -> CpuWindow {
            let delta = |a: Option<f64>, b: Option<f64>| Some(a? - b?);
            let servers: Vec<Option<f64>> = self
                .servers
                .iter()
                .zip(&earlier.servers)
                .map(|(&now, &then)| delta(now, then))
                .collect();
            let server_total = if servers.is_empty() {
                None
            } else {
                servers.iter().copied().sum::<Option<f64>>()
            };
            let tool = delta(self.tool, earlier.tool);
            let machine = delta(self.machine, earlier.machine);
            CpuWindow {
                seconds: (self.at - earlier.at).as_secs_f64(),
                servers,
                server_total,
                tool,
                others: others(machine, tool, server_total),
            }
        }
    }

    /// What the rest of the machine used: on a shared machine, why figures move between runs.
    fn others(machine: Option<f64>, tool: Option<f64>, servers: Option<f64>) -> Option<f64> {
        Some((machine? - tool? - servers.unwrap_or(0.0)).max(0.0))
    }

    /// CPU used over a window of wall time.
    pub struct CpuWindow {
        /// Wall-clock length of the window.
        pub seconds: f64,
        /// Per `--server-pid`; `None` where /proc could not be read (the process ended?).
        pub servers: Vec<Option<f64>>,
        /// Sum over the servers; `None` without `--server-pid` or when one was unreadable.
        pub server_total: Option<f64>,
        pub tool: Option<f64>,
        /// CPU seconds used by every other process on the machine.
        pub others: Option<f64>,
    }

    impl CpuWindow {
        /// `count` per server CPU-second.
        pub fn per_server_cpu_second(&self, count: u64) -> Option<f64> {
            self.server_total
                .filter(|&cpu| cpu > 0.0)
                .map(|cpu| count as f64 / cpu)
        }
    }
}

/// Counters, latency histograms and the progress line.
mod stats {
    use hdrhistogram::Histogram;
    use std::cell::RefCell;
    use std::rc::Rc;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::time::{Duration, Instant};

    /// What the tool counts. Each thread has its own set; the main thread adds them up.
    #[derive(Clone, Copy, Debug)]
    pub enum Ctr {
        /// WebSocket handshakes that succeeded.
        Connected,
        /// Connections that failed to open or to subscribe.
        ConnectFailed,
        /// Connections set up as the scenario needs (subscribed, or a connected writer).
        Ready,
        /// Connections the server ended while the bench ran.
        Closed,
        WritesSent,
        /// Publishes answered `{"success": true}`.
        WritesAcked,
        /// Publishes answered with an error payload.
        WriteErrors,
        /// `mesh/record-update` pushes received.
        Deliveries,
        /// Pushes whose version skipped ahead of the previous one + 1.
        Gaps,
        /// Full pushes received by a patch subscriber: a resync after skipped updates, or a
        /// patch that would have been larger than the value (the first write of a record).
        FullPushes,
        /// Pushes whose version equals the previous one.
        Duplicates,
        /// Pushes whose version is below the previous one.
        OutOfOrder,
        /// Frames that did not parse.
        BadFrames,
        /// Race writers that have finished (or could not start).
        WritersDone,
    }

    const COUNTERS: usize = 14;

    impl Ctr {
        const ALL: [Ctr; COUNTERS] = [
            Ctr::Connected,
            Ctr::ConnectFailed,
            Ctr::Ready,
            Ctr::Closed,
            Ctr::WritesSent,
            Ctr::WritesAcked,
            Ctr::WriteErrors,
            Ctr::Deliveries,
            Ctr::Gaps,
            Ctr::FullPushes,
            Ctr::Duplicates,
            Ctr::OutOfOrder,
            Ctr::BadFrames,
            Ctr::WritersDone,
        ];

        pub fn name(self) -> &'static str {
            match self {
                Ctr::Connected => "connected",
                Ctr::ConnectFailed => "connect_failed",
                Ctr::Ready => "ready",
                Ctr::Closed => "closed",
                Ctr::WritesSent => "writes_sent",
                Ctr::WritesAcked => "writes_acked",
                Ctr::WriteErrors => "write_errors",
                Ctr::Deliveries => "deliveries",
                Ctr::Gaps => "gaps",
                Ctr::FullPushes => "full_pushes",
                Ctr::Duplicates => "duplicates",
                Ctr::OutOfOrder => "out_of_order",
                Ctr::BadFrames => "bad_frames",
                Ctr::WritersDone => "writers_done",
            }
        }
    }

    /// One thread's counters, on their own cache lines so threads never contend.
    #[repr(align(128))]
    #[derive(Default)]
    pub struct Counters([AtomicU64; COUNTERS]);

    impl Counters {
        pub fn add(&self, counter: Ctr, n: u64) {
            self.0[counter as usize].fetch_add(n, Ordering::Relaxed);
        }

        pub fn bump(&self, counter: Ctr) {
            self.add(counter, 1);
        }
    }

    /// Totals over all threads at one moment.
    #[derive(Clone, Copy, Default)]
    pub struct Snapshot([u64; COUNTERS]);

    impl Snapshot {
        pub fn of(all: &[Arc<Counters>]) -> Snapshot {
            let mut totals = [0; COUNTERS];
            for counters in all {
                for (total, counter) in totals.iter_mut().zip(&counters.0) {
                    *total += counter.load(Ordering::Relaxed);
                }
            }
            Snapshot(totals)
        }

        pub fn get(&self, counter: Ctr) -> u64 {
            self.0[counter as usize]
        }

        /// Counts between `earlier` and this snapshot.
        pub fn since(&self, earlier: &Snapshot) -> Snapshot {
            let mut delta = [0; COUNTERS];
            for (i, d) in delta.iter_mut().enumerate() {
                *d = self.0[i].saturating_sub(earlier.0[i]);
            }
            Snapshot(delta)
        }

        /// Every counter by name, for the JSON line.
        pub fn to_json(self) -> serde_json::Map<String, serde_json::Value> {
            Ctr::ALL
                .iter()
                .map(|&c| (c.name().to_owned(), self.get(c).into()))
                .collect()
        }
    }

    /// Microsecond latencies, 1 µs to 60 s at 3 significant digits.
    pub type Latency = Histogram<u64>;

    pub fn new_latency() -> Latency {
        // Setup: fixed, valid bounds cannot fail.
        Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid histogram bounds")
    }

    /// The histogram the connection tasks of one thread record into.
    pub type LocalLatency = Rc<RefCell<Latency>>;

    /// Version bookkeeping for one subscriber: pushed versions must go up by exactly one.
    pub fn check_sequence(counters: &Counters, last: &mut u64, version: u64) {
        let expected = *last + 1;
        if version > expected {
            counters.bump(Ctr::Gaps);
        } else if version == *last {
            counters.bump(Ctr::Duplicates);
        } else if version < *last {
            counters.bump(Ctr::OutOfOrder);
        }
        *last = (*last).max(version);
    }

    /// Prints a progress line every second while the main thread waits for a phase to end.
    pub struct Monitor {
        counters: Vec<Arc<Counters>>,
        started: Instant,
        next_line: Instant,
        last: Snapshot,
        last_at: Instant,
        /// Shown as per-second rates.
        rates: &'static [Ctr],
        /// Shown as running totals (errors and anomalies).
        totals: &'static [Ctr],
    }

    /// How often a waiting phase checks its end condition.
    const POLL: Duration = Duration::from_millis(20);

    impl Monitor {
        pub fn new(
            counters: Vec<Arc<Counters>>,
            rates: &'static [Ctr],
            totals: &'static [Ctr],
        ) -> Monitor {
            let now = Instant::now();
            Monitor {
                counters,
                started: now,
                next_line: now + Duration::from_secs(1),
                last: Snapshot::default(),
                last_at: now,
                rates,
                totals,
            }
        }

        pub fn snapshot(&self) -> Snapshot {
            Snapshot::of(&self.counters)
        }

        /// Waits until `done` holds or `limit` has passed, printing progress; true if `done`.
        pub fn wait(
            &mut self,
            phase: &str,
            limit: Duration,
            done: impl Fn(&Snapshot) -> bool,
        ) -> bool {
            let until = Instant::now() + limit;
            loop {
                let snapshot = self.snapshot();
                if done(&snapshot) {
                    return true;
                }
                let now = Instant::now();
                if now >= until {
                    return false;
                }
                if now >= self.next_line {
                    self.print(phase, snapshot, now);
                    self.next_line = (self.next_line + Duration::from_secs(1)).max(now);
                }
                std::thread::sleep(POLL.min(until - now).min(self.next_line - now));
            }
        }

        fn print(&mut self, phase: &str, snapshot: Snapshot, now: Instant) {
            let seconds = (now - self.last_at).as_secs_f64().max(1e-9);
            let delta = snapshot.since(&self.last);
            let mut line = format!("[{:6.1}s {phase:>9}]", (now - self.started).as_secs_f64());
            for &c in self.rates {
                line += &format!(" {} {:.0}/s", c.name(), delta.get(c) as f64 / seconds);
            }
            line.push_str(" |");
            for &c in self.totals {
                line += &format!(" {} {}", c.name(), snapshot.get(c));
            }
            println!("{line}");
            self.last = snapshot;
            self.last_at = now;
        }
    }
}

/// Worker threads and the phases the main thread walks them through.
mod control {
    use crate::conn::{self, Conn};
    use crate::stats::{Counters, Ctr, Latency, LocalLatency, new_latency};
    use std::cell::RefCell;
    use std::future::Future;
    use std::rc::Rc;
    use std::sync::atomic::{AtomicU8, Ordering};
    use std::sync::{Arc, Mutex};
    use std::thread::JoinHandle;
    use std::time::{Duration, Instant};
    use tokio::sync::{Semaphore, watch};

    /// Where a run is. Only the main thread moves it, always forward.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
    #[repr(u8)]
    pub enum Phase {
        /// Connecting and subscribing.
        Setup = 0,
        /// Load runs but is not measured.
        Warmup = 1,
        /// Load runs and latencies are recorded.
        Measuring = 2,
        /// Load may still run; nothing more is recorded.
        Draining = 3,
        /// Every connection task is ended.
        Done = 4,
    }

    /// Shared by the main thread and every worker.
    pub struct Control {
        /// Mirror of the watch value for the hot path (a load instead of a lock).
        phase: AtomicU8,
        changes: watch::Sender<Phase>,
        /// The zero of `sent_us` stamps; `Instant` is the same clock on every thread.
        start: Instant,
        /// The first error a connection met, for the report.
        first_error: Mutex<Option<String>>,
    }

    impl Control {
        pub fn new() -> Arc<Control> {
            Arc::new(Control {
                phase: AtomicU8::new(Phase::Setup as u8),
                changes: watch::Sender::new(Phase::Setup),
                start: Instant::now(),
                first_error: Mutex::new(None),
            })
        }

        pub fn set(&self, phase: Phase) {
            self.phase.store(phase as u8, Ordering::Release);
            self.changes.send_replace(phase);
        }

        pub fn phase(&self) -> Phase {
            match self.phase.load(Ordering::Acquire) {
                0 => Phase::Setup,
                1 => Phase::Warmup,
                2 => Phase::Measuring,
                3 => Phase::Draining,
                _ => Phase::Done,
            }
        }

        pub fn measuring(&self) -> bool {
            self.phase() == Phase::Measuring
        }

        /// Waits until the run has reached `phase` (or a later one).
        pub async fn reached(&self, phase: Phase) {
            let mut changes = self.changes.subscribe();
            // The sender lives in `self`, so waiting cannot fail for a closed channel.
            let _ = changes.wait_for(|&now| now >= phase).await;
        }

        /// Microseconds since the tool started: the `sent_us` clock.
        pub fn now_us(&self) -> u64 {
            self.start.elapsed().as_micros() as u64
        }

        /// Keeps the first error for the report (later ones only count).
        pub fn note_error(&self, error: String) {
            if let Ok(mut first) = self.first_error.lock() {
                first.get_or_insert(error);
            }
        }

        pub fn first_error(&self) -> Option<String> {
            self.first_error.lock().ok().and_then(|first| first.clone())
        }
    }

    /// What the connection tasks of one worker thread share.
    #[derive(Clone)]
    pub struct Worker {
        pub index: usize,
        pub ctl: Arc<Control>,
        pub counters: Arc<Counters>,
        pub latency: LocalLatency,
        client: awc::Client,
        /// Bounds the handshakes in progress, so thousands of connections open smoothly.
        connect_slots: Rc<Semaphore>,
        tasks: Rc<RefCell<Vec<tokio::task::JoinHandle<()>>>>,
    }

    impl Worker {
        /// Runs a connection task on this thread until it ends or the run is done.
        pub fn spawn(&self, task: impl Future<Output = ()> + 'static) {
            self.tasks.borrow_mut().push(actix_rt::spawn(task));
        }

        /// Opens a connection, counting the outcome.
        pub async fn open(&self, url: &str) -> Option<Conn> {
            let _slot = self.connect_slots.acquire().await.ok()?;
            self.counted(Conn::open(&self.client, url).await)
        }

        /// Opens a connection and subscribes; returns it with the subscribed version.
        pub async fn open_subscribed(
            &self,
            url: &str,
            record: &str,
            mode: crate::args::Mode,
        ) -> Option<(Conn, u64)> {
            let _slot = self.connect_slots.acquire().await.ok()?;
            let mut conn = self.counted(Conn::open(&self.client, url).await)?;
            match conn.subscribe(record, mode).await {
                Ok(version) => {
                    self.counters.bump(Ctr::Ready);
                    Some((conn, version))
                }
                Err(e) => {
                    self.fail(e);
                    None
                }
            }
        }

        fn counted(&self, opened: Result<Conn, String>) -> Option<Conn> {
            match opened {
                Ok(conn) => {
                    self.counters.bump(Ctr::Connected);
                    Some(conn)
                }
                Err(e) => {
                    self.fail(e);
                    None
                }
            }
        }

        fn fail(&self, error: String) {
            self.counters.bump(Ctr::ConnectFailed);
            self.ctl.note_error(error);
        }

        /// Records `now - sent_us` while measuring.
        pub fn record_latency(&self, sent_us: u64) {
            if self.ctl.measuring() {
                let us = self.ctl.now_us().saturating_sub(sent_us).max(1);
                self.latency.borrow_mut().saturating_record(us);
            }
        }
    }

    /// The worker threads of a run.
    pub struct Workers {
        pub counters: Vec<Arc<Counters>>,
        handles: Vec<JoinHandle<Latency>>,
    }

    /// Starts `threads` threads, each on its own actix-rt System (awc connections are tied to
    /// one thread). `body` runs once per thread and spawns that thread's connection tasks;
    /// they are ended when the run reaches `Phase::Done`.
    pub fn spawn_workers<F, Fut>(
        threads: usize,
        connect_concurrency: usize,
        ctl: &Arc<Control>,
        body: F,
    ) -> Workers
    where
        F: Fn(Worker) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + 'static,
    {
        let body = Arc::new(body);
        let counters: Vec<Arc<Counters>> = (0..threads).map(|_| Arc::default()).collect();
        let slots = connect_concurrency.div_ceil(threads);
        let handles = (0..threads)
            .map(|index| {
                let (body, ctl, counters) = (body.clone(), ctl.clone(), counters[index].clone());
                std::thread::Builder::new()
                    .name(format!("bench-{index}"))
                    .spawn(move || {
                        actix_rt::System::new()
                            .block_on(run_thread(index, ctl, counters, slots, body))
                    })
                    // Setup: without its threads the tool cannot run at all.
                    .expect("spawn a worker thread")
            })
            .collect();
        Workers { counters, handles }
    }

    async fn run_thread<F, Fut>(
        index: usize,
        ctl: Arc<Control>,
        counters: Arc<Counters>,
        slots: usize,
        body: Arc<F>,
    ) -> Latency
    where
        F: Fn(Worker) -> Fut,
        Fut: Future<Output = ()>,
    {
        let worker = Worker {
            index,
            ctl: ctl.clone(),
            counters,
            latency: Rc::new(RefCell::new(new_latency())),
            client: conn::http_client(),
            connect_slots: Rc::new(Semaphore::new(slots)),
            tasks: Rc::default(),
        };
        body(worker.clone()).await;
        ctl.reached(Phase::Done).await;
        for task in worker.tasks.borrow_mut().drain(..) {
            task.abort();
        }
        worker.latency.borrow().clone()
    }

    impl Workers {
        /// Waits for the threads (after `Phase::Done`) up to `limit`; merges their histograms.
        /// A thread still running after the limit is left behind: the process ends anyway.
        pub fn finish(self, limit: Duration) -> Latency {
            let until = Instant::now() + limit;
            let mut merged = new_latency();
            for handle in self.handles {
                while !handle.is_finished() && Instant::now() < until {
                    std::thread::sleep(Duration::from_millis(10));
                }
                if !handle.is_finished() {
                    eprintln!("mesh-bench: a worker thread did not stop in time");
                    continue;
                }
                if let Ok(latency) = handle.join() {
                    // Same bounds on both sides: adding cannot fail.
                    let _ = merged.add(&latency);
                }
            }
            merged
        }
    }

    /// A record id no earlier run used.
    pub fn unique_suffix() -> String {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default();
        format!("{:x}{:x}", std::process::id(), nanos & 0xffff_ffff_ffff)
    }

    /// Time allowed to open `connections` connections.
    pub fn setup_limit(connections: usize) -> Duration {
        Duration::from_secs(30 + connections as u64 / 100).min(Duration::from_secs(300))
    }

    /// Time allowed for worker threads to stop after `Phase::Done`.
    pub const STOP_LIMIT: Duration = Duration::from_secs(10);
}

/// The human summary and the JSON line.
mod report {
    use crate::probe::CpuWindow;
    use crate::stats::Latency;
    use serde_json::{Map, Value, json};

    /// What a scenario prints at the end.
    pub struct Report {
        pub lines: Vec<String>,
        pub json: Map<String, Value>,
    }

    impl Report {
        pub fn new(scenario: &str) -> Report {
            let mut json = Map::new();
            json.insert("scenario".into(), scenario.into());
            Report {
                lines: vec![format!("== {scenario} ==")],
                json,
            }
        }

        pub fn line(&mut self, text: String) {
            self.lines.push(text);
        }

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
                    "{label}: p50 {:.2} ms  p90 {:.2} ms  p99 {:.2} ms  max {:.2} ms  ({} samples)",
                    ms(h.value_at_quantile(0.5)),
                    ms(h.value_at_quantile(0.9)),
                    ms(h.value_at_quantile(0.99)),
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
        }

        /// CPU seconds and the per-server-CPU-second figures for `counts`.
        pub fn cpu(&mut self, cpu: &CpuWindow, counts: &[(&str, u64)]) {
            let fmt = |v: Option<f64>| v.map_or("n/a".to_owned(), |v| format!("{v:.2}"));
            let each: Vec<String> = cpu.servers.iter().map(|&s| fmt(s)).collect();
            self.line(format!(
                "CPU over {:.1} s: server {} s (each: {}), tool {} s, other processes {} s",
                cpu.seconds,
                fmt(cpu.server_total),
                each.join(", "),
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
}

/// The measured part shared by fanout and records: warmup, then the measurement window.
mod window {
    use crate::args::Options;
    use crate::control::{Control, Phase};
    use crate::probe::{CpuSample, CpuWindow};
    use crate::stats::{Monitor, Snapshot};

    /// Counts and CPU over the measurement window.
    pub struct Measured {
        pub counts: Snapshot,
        pub cpu: CpuWindow,
    }

    /// Runs the warmup and the measurement window, then lets the load drain; the caller
    /// ends the run.
    pub fn measure(ctl: &Control, monitor: &mut Monitor, options: &Options) -> Measured {
        ctl.set(Phase::Warmup);
        monitor.wait("warmup", options.warmup, |_| false);
        let (counts_before, cpu_before) =
            (monitor.snapshot(), CpuSample::take(&options.server_pids));
        ctl.set(Phase::Measuring);
        monitor.wait("measuring", options.duration, |_| false);
        ctl.set(Phase::Draining);
        let (counts_after, cpu_after) = (monitor.snapshot(), CpuSample::take(&options.server_pids));
        Measured {
            counts: counts_after.since(&counts_before),
            cpu: cpu_after.since(&cpu_before),
        }
    }
}

/// `fanout`: many subscribers on one record, one pipelined writer.
mod fanout {
    use crate::args::{Mode, Options};
    use crate::conn::Conn;
    use crate::control::{self, Control, Phase, Worker, spawn_workers};
    use crate::report::{Report, rate};
    use crate::stats::{Ctr, Monitor, check_sequence};
    use crate::wire::{self, Incoming, Payload};
    use std::sync::Arc;

    /// What every thread needs to know.
    struct Plan {
        url: String,
        record: String,
        mode: Mode,
        subscribers: usize,
        threads: usize,
        in_flight: usize,
        pad: String,
    }

    pub fn run(options: &Options) -> Result<Report, String> {
        let plan = Arc::new(Plan {
            url: options.url().to_owned(),
            record: format!("bench:fanout:{}", control::unique_suffix()),
            mode: options.mode,
            subscribers: options.subscribers,
            threads: options.threads,
            in_flight: options.in_flight,
            pad: "x".repeat(options.pad),
        });
        let ctl = Control::new();
        let thread_plan = plan.clone();
        let workers = spawn_workers(
            options.threads,
            options.connect_concurrency,
            &ctl,
            move |w| start_thread(w, thread_plan.clone()),
        );
        let mut monitor = Monitor::new(
            workers.counters.clone(),
            &[Ctr::WritesAcked, Ctr::Deliveries],
            &[
                Ctr::Ready,
                Ctr::Gaps,
                Ctr::FullPushes,
                Ctr::WriteErrors,
                Ctr::Closed,
            ],
        );
        let expected = (plan.subscribers + 1) as u64;
        let set_up = monitor.wait("setup", control::setup_limit(plan.subscribers), |s| {
            s.get(Ctr::Ready) + s.get(Ctr::ConnectFailed) >= expected
        });
        let setup = monitor.snapshot();
        if !set_up || setup.get(Ctr::ConnectFailed) > 0 {
            ctl.set(Phase::Done);
            workers.finish(control::STOP_LIMIT);
            return Err(format!(
                "setup failed: {} of {expected} connections ready, {} failed; first error: {}",
                setup.get(Ctr::Ready),
                setup.get(Ctr::ConnectFailed),
                ctl.first_error()
                    .unwrap_or_else(|| "none (timed out)".into())
            ));
        }
        let measured = crate::window::measure(&ctl, &mut monitor, options);
        ctl.set(Phase::Done);
        let latency = workers.finish(control::STOP_LIMIT);
        let mut report = summarize(options, &plan, measured, &latency, &ctl);
        report.set("connections_ready", setup.get(Ctr::Ready));
        Ok(report)
    }

    fn summarize(
        options: &Options,
        plan: &Plan,
        measured: crate::window::Measured,
        latency: &crate::stats::Latency,
        ctl: &Control,
    ) -> Report {
        let counts = measured.counts;
        let seconds = measured.cpu.seconds;
        let (acked, deliveries) = (counts.get(Ctr::WritesAcked), counts.get(Ctr::Deliveries));
        let mut report = Report::new(options.scenario.name());
        report.line(format!(
            "{} {} subscribers on {}, {} writes in flight, pad {} B, {:.1} s measured",
            plan.subscribers,
            plan.mode.as_str(),
            plan.record,
            plan.in_flight,
            options.pad,
            seconds
        ));
        report.line(format!(
            "writes acked {acked} ({:.0}/s), deliveries {deliveries} ({:.0}/s), {:.3} of writes x subscribers",
            rate(acked, seconds),
            rate(deliveries, seconds),
            deliveries as f64 / (acked * plan.subscribers as u64).max(1) as f64
        ));
        report.line(format!(
            "gaps {}, full pushes to patch subscribers {}, write errors {}, closed {}, bad frames {}",
            counts.get(Ctr::Gaps),
            counts.get(Ctr::FullPushes),
            counts.get(Ctr::WriteErrors),
            counts.get(Ctr::Closed),
            counts.get(Ctr::BadFrames)
        ));
        report.latency("latency", "write->delivery latency", latency);
        report.cpu(
            &measured.cpu,
            &[("deliveries", deliveries), ("writes", acked)],
        );
        report.set("subscribers", plan.subscribers);
        report.set("mode", plan.mode.as_str());
        report.set("in_flight", plan.in_flight);
        report.set("pad", options.pad);
        report.set("threads", options.threads);
        report.set("writes_per_s", rate(acked, seconds));
        report.set("deliveries_per_s", rate(deliveries, seconds));
        report.set("counts", counts.to_json());
        report.set("first_error", ctl.first_error());
        report
    }

    /// Spawns this thread's share of the subscribers, and the writer on thread 0.
    async fn start_thread(w: Worker, plan: Arc<Plan>) {
        for _ in (w.index..plan.subscribers).step_by(plan.threads) {
            w.spawn(subscriber(w.clone(), plan.clone()));
        }
        if w.index == 0 {
            w.spawn(writer(w.clone(), plan));
        }
    }

    async fn subscriber(w: Worker, plan: Arc<Plan>) {
        let Some((mut conn, version)) = w.open_subscribed(&plan.url, &plan.record, plan.mode).await
        else {
            return;
        };
        let mut state = SubscriberState {
            last_version: version,
            last_sent_us: None,
        };
        while let Some(bytes) = conn.recv().await {
            let Ok(frame) = serde_json::from_slice::<Incoming>(&bytes) else {
                w.counters.bump(Ctr::BadFrames);
                continue;
            };
            match (&*frame.command, frame.payload.0) {
                ("mesh/record-update", Some(payload)) => state.on_update(&w, plan.mode, &payload),
                ("ping", _) if conn.pong().await.is_err() => break,
                _ => {}
            }
        }
        w.counters.bump(Ctr::Closed);
    }

    /// What a subscriber remembers between pushes.
    struct SubscriberState {
        last_version: u64,
        /// The record's `sent_us` as last seen: a patch omits it when it did not change.
        last_sent_us: Option<u64>,
    }

    impl SubscriberState {
        fn on_update(&mut self, w: &Worker, mode: Mode, payload: &Payload) {
            w.counters.bump(Ctr::Deliveries);
            check_sequence(
                &w.counters,
                &mut self.last_version,
                payload.version.unwrap_or(0),
            );
            let sent_us = match &payload.full.0 {
                Some(full) => {
                    if mode == Mode::Patch {
                        w.counters.bump(Ctr::FullPushes);
                    }
                    full.sent_us
                }
                None if payload.patch.present => payload.patch.sent_us.or(self.last_sent_us),
                None => {
                    w.counters.bump(Ctr::BadFrames);
                    return;
                }
            };
            self.last_sent_us = sent_us;
            if let Some(sent_us) = sent_us {
                w.record_latency(sent_us);
            }
        }
    }

    /// Keeps `in_flight` publishes outstanding from the warmup on.
    async fn writer(w: Worker, plan: Arc<Plan>) {
        let Some(mut conn) = w.open(&plan.url).await else {
            return;
        };
        w.counters.bump(Ctr::Ready);
        w.ctl.reached(Phase::Warmup).await;
        if let Err(e) = write_loop(&w, &plan, &mut conn).await {
            w.ctl.note_error(format!("writer: {e}"));
        }
        w.counters.bump(Ctr::Closed);
    }

    async fn write_loop(w: &Worker, plan: &Plan, conn: &mut Conn) -> Result<(), String> {
        let (mut seq, mut in_flight) = (0u64, 0usize);
        loop {
            let mut fed = false;
            while in_flight < plan.in_flight && w.ctl.phase() < Phase::Draining {
                seq += 1;
                let id = conn.next_id();
                let sent_us = w.ctl.now_us();
                conn.feed(wire::publish(id, &plan.record, |out| {
                    wire::stamped_value(out, seq, sent_us, &plan.pad)
                }))
                .await?;
                w.counters.bump(Ctr::WritesSent);
                in_flight += 1;
                fed = true;
            }
            if fed {
                conn.flush().await?;
            }
            let bytes = conn.recv().await.ok_or("connection closed")?;
            let Ok(frame) = serde_json::from_slice::<Incoming>(&bytes) else {
                w.counters.bump(Ctr::BadFrames);
                continue;
            };
            if frame.id.is_some() {
                in_flight = in_flight.saturating_sub(1);
                count_ack(w, frame.payload.0.as_ref());
            } else if frame.command == "ping" {
                conn.pong().await?;
            }
        }
    }

    /// Counts a publish reply; keeps the first error's text.
    pub fn count_ack(w: &Worker, payload: Option<&Payload>) {
        match payload {
            Some(p) if p.succeeded() => w.counters.bump(Ctr::WritesAcked),
            other => {
                w.counters.bump(Ctr::WriteErrors);
                let text = other.map_or("unreadable reply".into(), |p| p.describe());
                w.ctl.note_error(format!("publish: {text}"));
            }
        }
    }
}

/// `records`: every connection writes its own record in a closed loop.
mod records {
    use crate::args::{Mode, Options};
    use crate::conn::Conn;
    use crate::control::{self, Control, Phase, Worker, spawn_workers};
    use crate::fanout::count_ack;
    use crate::report::{Report, rate};
    use crate::stats::{Ctr, Monitor, check_sequence};
    use crate::wire::{self, Incoming};
    use std::sync::Arc;
    use std::time::Duration;

    /// Pause after a failed write, so a server that refuses everything is not hammered.
    const ERROR_BACKOFF: Duration = Duration::from_millis(10);

    struct Plan {
        url: String,
        connections: usize,
        threads: usize,
        pad: String,
    }

    pub fn run(options: &Options) -> Result<Report, String> {
        let plan = Arc::new(Plan {
            url: options.url().to_owned(),
            connections: options.connections,
            threads: options.threads,
            pad: "x".repeat(options.pad),
        });
        let ctl = Control::new();
        let thread_plan = plan.clone();
        let workers = spawn_workers(
            options.threads,
            options.connect_concurrency,
            &ctl,
            move |w| start_thread(w, thread_plan.clone()),
        );
        let mut monitor = Monitor::new(
            workers.counters.clone(),
            &[Ctr::WritesAcked, Ctr::Deliveries],
            &[Ctr::Ready, Ctr::Gaps, Ctr::WriteErrors, Ctr::Closed],
        );
        let expected = plan.connections as u64;
        let set_up = monitor.wait("setup", control::setup_limit(plan.connections), |s| {
            s.get(Ctr::Ready) + s.get(Ctr::ConnectFailed) >= expected
        });
        let setup = monitor.snapshot();
        if !set_up || setup.get(Ctr::ConnectFailed) > 0 {
            ctl.set(Phase::Done);
            workers.finish(control::STOP_LIMIT);
            return Err(format!(
                "setup failed: {} of {expected} connections ready; first error: {}",
                setup.get(Ctr::Ready),
                ctl.first_error()
                    .unwrap_or_else(|| "none (timed out)".into())
            ));
        }
        let measured = crate::window::measure(&ctl, &mut monitor, options);
        ctl.set(Phase::Done);
        let latency = workers.finish(control::STOP_LIMIT);

        let counts = measured.counts;
        let seconds = measured.cpu.seconds;
        let acked = counts.get(Ctr::WritesAcked);
        let mut report = Report::new(options.scenario.name());
        report.line(format!(
            "{} connections, each writing bench:rec:<i> in a closed loop, {seconds:.1} s measured",
            plan.connections
        ));
        report.line(format!(
            "writes acked {acked} ({:.0}/s), own pushes {} ({:.0}/s)",
            rate(acked, seconds),
            counts.get(Ctr::Deliveries),
            rate(counts.get(Ctr::Deliveries), seconds)
        ));
        report.line(format!(
            "gaps {}, write errors {}, closed {}, bad frames {}",
            counts.get(Ctr::Gaps),
            counts.get(Ctr::WriteErrors),
            counts.get(Ctr::Closed),
            counts.get(Ctr::BadFrames)
        ));
        report.latency("latency", "write->push latency", &latency);
        report.cpu(&measured.cpu, &[("writes", acked)]);
        report.set("connections", plan.connections);
        report.set("connections_ready", setup.get(Ctr::Ready));
        report.set("pad", options.pad);
        report.set("threads", options.threads);
        report.set("writes_per_s", rate(acked, seconds));
        report.set("counts", counts.to_json());
        report.set("first_error", ctl.first_error());
        Ok(report)
    }

    async fn start_thread(w: Worker, plan: Arc<Plan>) {
        for i in (w.index..plan.connections).step_by(plan.threads) {
            w.spawn(writer(w.clone(), plan.clone(), i));
        }
    }

    async fn writer(w: Worker, plan: Arc<Plan>, index: usize) {
        let record = format!("bench:rec:{index}");
        let Some((mut conn, version)) = w.open_subscribed(&plan.url, &record, Mode::Full).await
        else {
            return;
        };
        w.ctl.reached(Phase::Warmup).await;
        let mut last_version = version;
        let mut seq = 0;
        loop {
            seq += 1;
            let id = conn.next_id();
            let sent_us = w.ctl.now_us();
            let frame = wire::publish(id, &record, |out| {
                wire::stamped_value(out, seq, sent_us, &plan.pad)
            });
            if conn.send(frame).await.is_err() {
                break;
            }
            w.counters.bump(Ctr::WritesSent);
            match own_push(&w, &mut conn, id, seq, &mut last_version).await {
                Outcome::Pushed => {}
                Outcome::Refused => tokio::time::sleep(ERROR_BACKOFF).await,
                Outcome::Closed => break,
            }
        }
        w.counters.bump(Ctr::Closed);
    }

    enum Outcome {
        Pushed,
        Refused,
        Closed,
    }

    /// Reads until the push of value `seq` arrives (or the write `id` is refused). The
    /// reply of a write may come after its push: it is counted when it arrives.
    async fn own_push(w: &Worker, conn: &mut Conn, id: u64, seq: u64, last: &mut u64) -> Outcome {
        loop {
            let Some(bytes) = conn.recv().await else {
                return Outcome::Closed;
            };
            let Ok(frame) = serde_json::from_slice::<Incoming>(&bytes) else {
                w.counters.bump(Ctr::BadFrames);
                continue;
            };
            let payload = frame.payload.0;
            if let Some(reply_id) = frame.id {
                let refused = !payload.as_ref().is_some_and(|p| p.succeeded());
                count_ack(w, payload.as_ref());
                if reply_id == id && refused {
                    return Outcome::Refused;
                }
                continue;
            }
            match (&*frame.command, payload) {
                ("mesh/record-update", Some(p)) => {
                    w.counters.bump(Ctr::Deliveries);
                    check_sequence(&w.counters, last, p.version.unwrap_or(0));
                    if let Some(full) = p.full.0
                        && full.seq == Some(seq)
                    {
                        if let Some(sent_us) = full.sent_us {
                            w.record_latency(sent_us);
                        }
                        return Outcome::Pushed;
                    }
                }
                ("ping", _) if conn.pong().await.is_err() => return Outcome::Closed,
                _ => {}
            }
        }
    }
}

/// `idle`: many subscribed connections held open; server memory per connection.
mod idle {
    use crate::args::{Mode, Options};
    use crate::control::{self, Control, Phase, Worker, spawn_workers};
    use crate::probe::{self, CpuSample};
    use crate::report::{Report, rate, round};
    use crate::stats::{Ctr, Monitor};
    use crate::wire::Incoming;
    use std::sync::Arc;
    use std::time::Instant;

    /// The records the idle connections spread over.
    const RECORDS: usize = 100;

    struct Plan {
        url: String,
        connections: usize,
        threads: usize,
    }

    pub fn run(options: &Options) -> Result<Report, String> {
        let plan = Arc::new(Plan {
            url: options.url().to_owned(),
            connections: options.connections,
            threads: options.threads,
        });
        let pid = options.server_pids.first().copied();
        let rss_before = pid.and_then(|p| probe::rss_bytes(Some(p)));
        let ctl = Control::new();
        let thread_plan = plan.clone();
        let started = Instant::now();
        let workers = spawn_workers(
            options.threads,
            options.connect_concurrency,
            &ctl,
            move |w| start_thread(w, thread_plan.clone()),
        );
        let mut monitor = Monitor::new(
            workers.counters.clone(),
            &[Ctr::Ready],
            &[Ctr::Ready, Ctr::ConnectFailed, Ctr::Closed, Ctr::Deliveries],
        );
        let expected = plan.connections as u64;
        monitor.wait("setup", control::setup_limit(plan.connections), |s| {
            s.get(Ctr::Ready) + s.get(Ctr::ConnectFailed) >= expected
        });
        let setup_seconds = started.elapsed().as_secs_f64();
        let setup = monitor.snapshot();
        // Let the server settle (buffers freed after the handshakes) before reading RSS.
        std::thread::sleep(std::time::Duration::from_millis(500));
        let rss_after = pid.and_then(|p| probe::rss_bytes(Some(p)));
        let cpu_before = CpuSample::take(&options.server_pids);
        ctl.set(Phase::Measuring);
        monitor.wait("holding", options.hold, |_| false);
        let cpu = CpuSample::take(&options.server_pids).since(&cpu_before);
        let rss_end = pid.and_then(|p| probe::rss_bytes(Some(p)));
        let held = monitor.snapshot();
        let tool_rss = probe::rss_bytes(None);
        ctl.set(Phase::Done);
        workers.finish(control::STOP_LIMIT);

        let ready = setup.get(Ctr::Ready);
        let per_connection = match (rss_before, rss_after) {
            (Some(before), Some(after)) if ready > 0 => {
                Some(after.saturating_sub(before) as f64 / ready as f64)
            }
            _ => None,
        };
        let mib =
            |b: Option<u64>| b.map_or("n/a".into(), |b| format!("{:.1} MiB", b as f64 / 1048576.0));
        let mut report = Report::new(options.scenario.name());
        report.line(format!(
            "{ready} of {} connections subscribed in {setup_seconds:.1} s ({:.0}/s), {} failed, {} closed while held",
            plan.connections,
            rate(ready, setup_seconds),
            setup.get(Ctr::ConnectFailed),
            held.get(Ctr::Closed)
        ));
        report.line(format!(
            "server RSS: before {}, after setup {}, after holding {:.0} s {}",
            mib(rss_before),
            mib(rss_after),
            options.hold.as_secs_f64(),
            mib(rss_end)
        ));
        report.line(format!(
            "server memory per connection: {}",
            per_connection.map_or("n/a (needs --server-pid)".into(), |b| format!(
                "{b:.0} bytes"
            ))
        ));
        report.line(format!("tool RSS: {}", mib(tool_rss)));
        report.cpu(&cpu, &[]);
        report.set("connections", plan.connections);
        report.set("ready", ready);
        report.set("connect_failed", setup.get(Ctr::ConnectFailed));
        report.set("closed_while_held", held.get(Ctr::Closed));
        report.set("setup_s", round(setup_seconds));
        report.set("server_rss_before_bytes", rss_before);
        report.set("server_rss_after_setup_bytes", rss_after);
        report.set("server_rss_after_hold_bytes", rss_end);
        report.set(
            "server_bytes_per_connection",
            per_connection.map(f64::round),
        );
        report.set("tool_rss_bytes", tool_rss);
        report.set("first_error", ctl.first_error());
        Ok(report)
    }

    async fn start_thread(w: Worker, plan: Arc<Plan>) {
        for i in (w.index..plan.connections).step_by(plan.threads) {
            w.spawn(hold(w.clone(), plan.clone(), i));
        }
    }

    /// Subscribes, then only answers pings until the run ends.
    async fn hold(w: Worker, plan: Arc<Plan>, index: usize) {
        let record = format!("bench:idle:{}", index % RECORDS);
        let Some((mut conn, _)) = w.open_subscribed(&plan.url, &record, Mode::Full).await else {
            return;
        };
        while let Some(bytes) = conn.recv().await {
            match serde_json::from_slice::<Incoming>(&bytes) {
                Ok(frame) if frame.command == "ping" => {
                    if conn.pong().await.is_err() {
                        break;
                    }
                }
                Ok(frame) if frame.command == "mesh/record-update" => {
                    w.counters.bump(Ctr::Deliveries)
                }
                Ok(_) => {}
                Err(_) => w.counters.bump(Ctr::BadFrames),
            }
        }
        w.counters.bump(Ctr::Closed);
    }
}

/// `race`: concurrent writers on one record, possibly through several server instances.
mod race {
    use crate::args::{Mode, Options};
    use crate::conn::{self, Conn};
    use crate::control::{self, Control, Phase, Worker, spawn_workers};
    use crate::fanout::count_ack;
    use crate::probe::CpuSample;
    use crate::report::{Report, rate};
    use crate::stats::{Ctr, Monitor, check_sequence};
    use crate::wire::{self, Incoming};
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::time::{Duration, Instant};

    /// Publishes one writer keeps in flight.
    const PIPELINE: usize = 16;
    /// Time the subscribers get to catch up with the final version after the writes.
    const CATCH_UP: Duration = Duration::from_secs(5);

    struct Plan {
        urls: Vec<String>,
        record: String,
        mode: Mode,
        writers: usize,
        writes: usize,
        threads: usize,
        /// Per subscriber (one per URL): the version in its subscribe reply.
        first_version: Vec<AtomicU64>,
        /// Per subscriber: the highest version pushed to it so far.
        last_version: Vec<AtomicU64>,
    }

    pub fn run(options: &Options) -> Result<Report, String> {
        let plan = Arc::new(Plan {
            urls: options.urls.clone(),
            record: format!("bench:race:{}", control::unique_suffix()),
            mode: options.mode,
            writers: options.writers,
            writes: options.writes,
            threads: options.threads,
            first_version: options.urls.iter().map(|_| AtomicU64::new(0)).collect(),
            last_version: options.urls.iter().map(|_| AtomicU64::new(0)).collect(),
        });
        let ctl = Control::new();
        let thread_plan = plan.clone();
        let workers = spawn_workers(
            options.threads,
            options.connect_concurrency,
            &ctl,
            move |w| start_thread(w, thread_plan.clone()),
        );
        let mut monitor = Monitor::new(
            workers.counters.clone(),
            &[Ctr::WritesAcked, Ctr::Deliveries],
            &[
                Ctr::WritersDone,
                Ctr::WriteErrors,
                Ctr::Gaps,
                Ctr::Duplicates,
                Ctr::OutOfOrder,
            ],
        );
        let expected = (plan.writers + plan.urls.len()) as u64;
        let set_up = monitor.wait("setup", control::setup_limit(plan.writers), |s| {
            s.get(Ctr::Ready) + s.get(Ctr::ConnectFailed) >= expected
        });
        let setup = monitor.snapshot();
        if !set_up || setup.get(Ctr::ConnectFailed) > 0 {
            ctl.set(Phase::Done);
            workers.finish(control::STOP_LIMIT);
            return Err(format!(
                "setup failed: {} of {expected} connections ready; first error: {}",
                setup.get(Ctr::Ready),
                ctl.first_error()
                    .unwrap_or_else(|| "none (timed out)".into())
            ));
        }

        let cpu_before = CpuSample::take(&options.server_pids);
        let started = Instant::now();
        ctl.set(Phase::Measuring);
        let writers = plan.writers as u64;
        let finished = monitor.wait("writing", options.duration, |s| {
            s.get(Ctr::WritersDone) >= writers
        });
        let write_seconds = started.elapsed().as_secs_f64();
        let finals = final_versions(&plan.urls, &plan.record);
        let final_version = finals.iter().filter_map(|v| v.as_ref().ok()).copied().max();
        if let Some(target) = final_version {
            monitor.wait("catch-up", CATCH_UP, |_| {
                plan.last_version
                    .iter()
                    .all(|v| v.load(Ordering::Relaxed) >= target)
            });
        }
        let cpu = CpuSample::take(&options.server_pids).since(&cpu_before);
        let counts = monitor.snapshot().since(&setup);
        ctl.set(Phase::Done);
        workers.finish(control::STOP_LIMIT);

        let acked = counts.get(Ctr::WritesAcked);
        let first = plan.first_version[0].load(Ordering::Relaxed);
        let lost = final_version.map(|f| acked as i64 - (f as i64 - first as i64));
        let mut report = Report::new(options.scenario.name());
        report.line(format!(
            "{} writers x {} writes on {} through {} URL(s){}",
            plan.writers,
            plan.writes,
            plan.record,
            plan.urls.len(),
            if finished {
                ""
            } else {
                " -- TIME LIMIT HIT before every writer finished"
            }
        ));
        report.line(format!(
            "writes acked {acked} of {} ({:.0}/s over {write_seconds:.2} s), write errors {}",
            plan.writers * plan.writes,
            rate(acked, write_seconds),
            counts.get(Ctr::WriteErrors)
        ));
        report.line(format!(
            "final version per URL {:?} (started at {first}); lost updates (acked - versions): {}",
            finals,
            lost.map_or("n/a".into(), |l| l.to_string())
        ));
        report.line(format!(
            "subscribers: {} pushes, gaps {}, duplicates {}, out of order {}, full pushes {}, last seen {:?}",
            counts.get(Ctr::Deliveries),
            counts.get(Ctr::Gaps),
            counts.get(Ctr::Duplicates),
            counts.get(Ctr::OutOfOrder),
            counts.get(Ctr::FullPushes),
            plan.last_version.iter().map(|v| v.load(Ordering::Relaxed)).collect::<Vec<_>>()
        ));
        report.cpu(&cpu, &[("writes", acked)]);
        report.set("writers", plan.writers);
        report.set("writes_per_writer", plan.writes);
        report.set("urls", plan.urls.clone());
        report.set("record", plan.record.clone());
        report.set("finished", finished);
        report.set("write_s", crate::report::round(write_seconds));
        report.set("writes_acked", acked);
        report.set("writes_per_s", rate(acked, write_seconds));
        report.set("initial_version", first);
        report.set(
            "final_versions",
            finals
                .iter()
                .map(|v| v.as_ref().ok().copied())
                .collect::<Vec<_>>(),
        );
        report.set("lost_updates", lost);
        report.set("counts", counts.to_json());
        report.set("first_error", ctl.first_error());
        Ok(report)
    }

    /// The record's version seen by a fresh subscribe through each URL.
    fn final_versions(urls: &[String], record: &str) -> Vec<Result<u64, String>> {
        actix_rt::System::new().block_on(async {
            let client = conn::http_client();
            let mut versions = Vec::new();
            for url in urls {
                let version = match Conn::open(&client, url).await {
                    Ok(mut conn) => conn.subscribe(record, Mode::Full).await,
                    Err(e) => Err(e),
                };
                versions.push(version);
            }
            versions
        })
    }

    async fn start_thread(w: Worker, plan: Arc<Plan>) {
        for u in (w.index..plan.urls.len()).step_by(plan.threads) {
            w.spawn(subscriber(w.clone(), plan.clone(), u));
        }
        for i in (w.index..plan.writers).step_by(plan.threads) {
            w.spawn(writer(w.clone(), plan.clone(), i));
        }
    }

    async fn subscriber(w: Worker, plan: Arc<Plan>, u: usize) {
        let Some((mut conn, version)) = w
            .open_subscribed(&plan.urls[u], &plan.record, plan.mode)
            .await
        else {
            return;
        };
        plan.first_version[u].store(version, Ordering::Relaxed);
        plan.last_version[u].store(version, Ordering::Relaxed);
        let mut last = version;
        while let Some(bytes) = conn.recv().await {
            let Ok(frame) = serde_json::from_slice::<Incoming>(&bytes) else {
                w.counters.bump(Ctr::BadFrames);
                continue;
            };
            match (&*frame.command, frame.payload.0) {
                ("mesh/record-update", Some(p)) => {
                    w.counters.bump(Ctr::Deliveries);
                    if plan.mode == Mode::Patch && p.full.0.is_some() {
                        w.counters.bump(Ctr::FullPushes);
                    }
                    check_sequence(&w.counters, &mut last, p.version.unwrap_or(0));
                    plan.last_version[u].store(last, Ordering::Relaxed);
                }
                ("ping", _) if conn.pong().await.is_err() => break,
                _ => {}
            }
        }
        w.counters.bump(Ctr::Closed);
    }

    async fn writer(w: Worker, plan: Arc<Plan>, index: usize) {
        let url = &plan.urls[index % plan.urls.len()];
        if let Some(mut conn) = w.open(url).await {
            w.counters.bump(Ctr::Ready);
            w.ctl.reached(Phase::Measuring).await;
            if let Err(e) = write_all(&w, &plan, &mut conn, index).await {
                w.ctl.note_error(format!("writer {index}: {e}"));
            }
        }
        w.counters.bump(Ctr::WritersDone);
    }

    /// Makes `plan.writes` publishes with up to `PIPELINE` in flight; returns once all are
    /// answered.
    async fn write_all(
        w: &Worker,
        plan: &Plan,
        conn: &mut Conn,
        index: usize,
    ) -> Result<(), String> {
        let (mut sent, mut answered) = (0usize, 0usize);
        while answered < plan.writes {
            let mut fed = false;
            while sent < plan.writes && sent - answered < PIPELINE {
                let id = conn.next_id();
                conn.feed(wire::publish(id, &plan.record, |out| {
                    wire::race_value(out, index, sent)
                }))
                .await?;
                w.counters.bump(Ctr::WritesSent);
                sent += 1;
                fed = true;
            }
            if fed {
                conn.flush().await?;
            }
            let bytes = conn.recv().await.ok_or("connection closed")?;
            let Ok(frame) = serde_json::from_slice::<Incoming>(&bytes) else {
                w.counters.bump(Ctr::BadFrames);
                continue;
            };
            if frame.id.is_some() {
                answered += 1;
                count_ack(w, frame.payload.0.as_ref());
            } else if frame.command == "ping" {
                conn.pong().await?;
            }
        }
        Ok(())
    }
}
