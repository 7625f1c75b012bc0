//! `collection --shape snapshot`: one collection of M members (values of `--pad` bytes);
//! R subscribe round trips of each kind, timed from sending `mesh/subscribe-collection` to
//! having read its whole reply, which is sized:
//!
//! - warm: the collection is loaded (a holder connection stays subscribed), so the reply is
//!   built from memory; the prober leaves after each reply;
//! - cold: each time a fresh collection id with the same members (`bench:col:<run>:0:t<i>`),
//!   so the server starts the collection and lists its members from the store first. Each
//!   such collection stays loaded on the server for its linger time (5 s) after the prober
//!   leaves it.
//!
//! Runs on one event loop: the round trips are sequential, and nothing else is measured.

use super::{Names, create_records};
use crate::args::Options;
use crate::conn::{Conn, http_client};
use crate::probe::CpuSample;
use crate::report::{Report, round};
use crate::stats::{Latency, new_latency};
use crate::wire::{self, Incoming, Mode};
use std::time::{Duration, Instant};

/// Longest wait for one reply.
const REPLY_LIMIT: Duration = Duration::from_secs(60);
/// Longest the round trips may take in all.
const RUN_LIMIT: Duration = Duration::from_secs(600);

/// Runs the shape; fails when the members cannot be created or a round trip fails.
pub fn run(options: &Options, names: &Names) -> Result<Report, String> {
    let prefix = names.member_prefix(0);
    let ids: Vec<String> = (0..options.members)
        .map(|k| format!("{prefix}{k}"))
        .collect();
    let created = create_records(options.url(), &ids, &"x".repeat(options.pad))?;
    drop(ids);
    let (options, names) = (options.clone(), names.clone());
    actix_rt::System::new().block_on(async move {
        tokio::time::timeout(RUN_LIMIT, measure(&options, &names, created))
            .await
            .map_err(|_| format!("the round trips took longer than {RUN_LIMIT:?}"))?
    })
}

/// The round trips of one kind.
struct Kind {
    latency: Latency,
    bytes: Vec<u64>,
    /// Server CPU seconds over these round trips (with `--server-pid`).
    server_cpu: Option<f64>,
}

async fn measure(options: &Options, names: &Names, created: Duration) -> Result<Report, String> {
    let client = http_client();
    let url = options.url();
    let members = options.members;
    let collection = names.collection(0);
    let mut holder = Conn::open(&client, url).await?;
    let (first_us, first_bytes) = subscribe(&mut holder, &collection, members).await?;
    // The holder stays subscribed; it only has to answer the server's pings meanwhile.
    actix_rt::spawn(async move {
        while let Some(bytes) = holder.recv().await {
            if serde_json::from_slice::<Incoming>(&bytes).is_ok_and(|f| f.command == wire::PING)
                && holder.pong().await.is_err()
            {
                break;
            }
        }
    });
    let mut prober = Conn::open(&client, url).await?;
    let pids = &options.server_pids;
    let cpu_start = CpuSample::take(pids);
    let warm = round_trips(&mut prober, options.repeat, members, pids, |_| {
        collection.clone()
    })
    .await?;
    let cold = round_trips(&mut prober, options.repeat, members, pids, |i| {
        names.alias(0, i)
    })
    .await?;
    let cpu = CpuSample::take(pids).since(&cpu_start);

    let mut report = Report::new(options.scenario.name());
    report.line(format!(
        "snapshot: {collection} of {members} members (pad {} B, created in {:.1} s), {} round \
         trips of each kind",
        options.pad,
        created.as_secs_f64(),
        options.repeat
    ));
    report.line(format!(
        "first subscribe (collection started, members listed): {:.2} ms, {first_bytes} bytes",
        first_us as f64 / 1000.0
    ));
    for (key, label, kind) in [
        ("warm", "warm (collection loaded)", &warm),
        ("cold", "cold (fresh collection id)", &cold),
    ] {
        report.latency(key, &format!("{label} subscribe->reply"), &kind.latency);
        let (p50, max) = (median(&kind.bytes), kind.bytes.iter().copied().max());
        let cpu_ms = kind.server_cpu.map(|s| s * 1000.0 / options.repeat as f64);
        report.line(format!(
            "{label}: reply bytes p50 {p50} max {}, server CPU per subscribe {}",
            max.unwrap_or(0),
            cpu_ms.map_or("n/a (pass --server-pid)".into(), |ms| format!("{ms:.2} ms"))
        ));
        report.set(&format!("{key}_reply_bytes_p50"), p50);
        report.set(&format!("{key}_reply_bytes_max"), max);
        report.set(
            &format!("{key}_server_cpu_ms_per_subscribe"),
            cpu_ms.map(round),
        );
    }
    report.cpu(&cpu, &[("subscribes", 2 * options.repeat as u64)]);
    report.set("shape", options.shape.name());
    report.set("members", members);
    report.set("pad", options.pad);
    report.set("repeat", options.repeat);
    report.set("members_created_s", round(created.as_secs_f64()));
    report.set("first_subscribe_us", first_us);
    report.set("first_reply_bytes", first_bytes);
    Ok(report)
}

/// `repeat` round trips on `conn`, the `i`th to collection `id(i)`, each left again after its
/// reply.
async fn round_trips(
    conn: &mut Conn,
    repeat: usize,
    members: usize,
    pids: &[u32],
    id: impl Fn(usize) -> String,
) -> Result<Kind, String> {
    let mut kind = Kind {
        latency: new_latency(),
        bytes: Vec::with_capacity(repeat),
        server_cpu: None,
    };
    let cpu_start = CpuSample::take(pids);
    for i in 0..repeat {
        let collection = id(i);
        let (us, bytes) = subscribe(conn, &collection, members).await?;
        kind.latency.saturating_record(us.max(1));
        kind.bytes.push(bytes);
        let request = conn.next_id();
        conn.send(wire::unsubscribe_collection(request, &collection))
            .await?;
        within(conn.reply_to(request)).await?;
    }
    kind.server_cpu = CpuSample::take(pids).since(&cpu_start).server_total;
    Ok(kind)
}

/// Subscribes to `collection`; returns the microseconds from sending the request to having
/// read its whole reply, and the reply's size. Fails unless the reply holds `members`.
async fn subscribe(
    conn: &mut Conn,
    collection: &str,
    members: usize,
) -> Result<(u64, u64), String> {
    let request = conn.next_id();
    let started = Instant::now();
    conn.send(wire::subscribe_collection(request, collection, Mode::Full))
        .await?;
    let reply = within(conn.reply_to(request)).await?;
    let us = started.elapsed().as_micros() as u64;
    let frame: Incoming =
        serde_json::from_slice(&reply).map_err(|e| format!("unreadable reply: {e}"))?;
    match frame.payload.0 {
        Some(p) if p.succeeded() && p.ids.0 == Some(members) => Ok((us, reply.len() as u64)),
        Some(p) if p.succeeded() => Err(format!(
            "the snapshot of {collection} has {:?} members, not {members}",
            p.ids.0
        )),
        Some(p) => Err(format!("subscribe {collection} refused: {}", p.describe())),
        None => Err(format!("subscribe {collection}: unreadable reply")),
    }
}

async fn within<T>(
    reply: impl std::future::Future<Output = Result<T, String>>,
) -> Result<T, String> {
    tokio::time::timeout(REPLY_LIMIT, reply)
        .await
        .map_err(|_| format!("no reply within {REPLY_LIMIT:?}"))?
}

/// The middle value (the upper one of an even count); 0 for none.
fn median(values: &[u64]) -> u64 {
    let mut sorted = values.to_vec();
    sorted.sort_unstable();
    sorted.get(sorted.len() / 2).copied().unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_a_few() {
        assert_eq!(median(&[]), 0);
        assert_eq!(median(&[5, 1, 3]), 3);
        assert_eq!(median(&[4, 1, 3, 2]), 3);
    }
}
