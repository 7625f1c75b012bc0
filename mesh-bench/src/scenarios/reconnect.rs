//! `reconnect`: C clients hold a large record, drop their connections, miss one small change,
//! and come back. Measured twice on fresh connections: subscribing again (the whole value per
//! client, what a Mesh client does) and resuming with `sinceVersion` (one patch per client).
//! Reports the bytes each way received and the time until every client was up to date.

use crate::args::Options;
use crate::conn::{Conn, http_client};
use crate::report::Report;
use crate::wire::{self, Incoming, Mode};
use futures_util::future::join_all;
use serde_json::json;
use std::rc::Rc;
use std::time::{Duration, Instant};

/// Longest time one phase may take.
const PHASE_LIMIT: Duration = Duration::from_secs(120);

/// What one way of catching up cost.
struct Phase {
    bytes: u64,
    frames: u64,
    seconds: f64,
    resumed: u64,
}

/// Runs the scenario on one event loop (the clients mostly wait).
pub fn run(options: &Options) -> Result<Report, String> {
    let options = options.clone();
    actix_rt::System::new().block_on(async move { measure(&options).await })
}

async fn measure(options: &Options) -> Result<Report, String> {
    let client = Rc::new(http_client());
    let url = options.url().to_owned();
    let record = format!("bench:reconnect:{:x}", rand_seed());
    let mut writer = Conn::open(&client, &url).await?;
    let blob = "x".repeat(options.pad);
    request(
        &mut writer,
        &record,
        json!({"n": 0, "blob": blob}),
        "replace",
    )
    .await?;

    // The clients subscribe, holding the record at its version...
    let clients = options.connections;
    let conns = open_all(&client, &url, clients, options.connect_concurrency).await?;
    let mut held = 0;
    for mut conn in conns {
        held = conn.subscribe(&record, Mode::Patch).await?;
    }
    // ... drop their connections (the conns are gone), and miss one small change.
    request(&mut writer, &record, json!({"n": 1}), "merge").await?;

    let full = catch_up(options, &client, &url, &record, held, false).await?;
    let resumed = catch_up(options, &client, &url, &record, held, true).await?;

    let mut report = Report::new(options.scenario.name());
    report.line(format!(
        "{clients} clients, record of {} bytes, one small change missed",
        options.pad
    ));
    for (label, phase) in [("resubscribe (full)", &full), ("resume (patch)", &resumed)] {
        report.line(format!(
            "{label:<20} {:>12} bytes received  ({:.0} per client)  {:.3} s  resumed {}",
            phase.bytes,
            phase.bytes as f64 / clients as f64,
            phase.seconds,
            phase.resumed
        ));
    }
    report.line(format!(
        "resume received {:.1}x fewer bytes",
        full.bytes as f64 / resumed.bytes.max(1) as f64
    ));
    report.set("clients", clients as u64);
    report.set("record_bytes", options.pad as u64);
    for (key, phase) in [("full", &full), ("resume", &resumed)] {
        report.set(&format!("{key}_bytes"), phase.bytes);
        report.set(&format!("{key}_frames"), phase.frames);
        report.set(&format!("{key}_seconds"), phase.seconds);
        report.set(&format!("{key}_resumed"), phase.resumed);
    }
    Ok(report)
}

/// A process-local seed, so two runs use different record ids.
fn rand_seed() -> u64 {
    use std::hash::BuildHasher;
    std::collections::hash_map::RandomState::new().hash_one(std::process::id())
}

/// Publishes and waits for the reply.
async fn request(
    conn: &mut Conn,
    record: &str,
    value: serde_json::Value,
    strategy: &str,
) -> Result<(), String> {
    let id = conn.next_id();
    let payload = json!({"recordId": record, "newValue": value, "options": {"strategy": strategy}});
    conn.send(wire::request(id, wire::PUBLISH, &payload))
        .await?;
    loop {
        let bytes = conn.recv().await.ok_or("closed while writing")?;
        let frame: Incoming = serde_json::from_slice(&bytes).map_err(|e| e.to_string())?;
        if frame.id == Some(id) {
            return match frame.payload.0 {
                Some(p) if p.succeeded() => Ok(()),
                other => Err(format!("write refused: {:?}", other.map(|p| p.describe()))),
            };
        }
    }
}

/// Opens `n` connections, at most `concurrency` handshakes at a time.
async fn open_all(
    client: &Rc<awc::Client>,
    url: &str,
    n: usize,
    concurrency: usize,
) -> Result<Vec<Conn>, String> {
    let mut conns = Vec::with_capacity(n);
    while conns.len() < n {
        let batch = concurrency.min(n - conns.len());
        let opened = join_all((0..batch).map(|_| Conn::open(client, url))).await;
        for conn in opened {
            conns.push(conn?);
        }
    }
    Ok(conns)
}

/// Fresh connections (opened before the clock starts) catch up on `record`, which they held at
/// version `held`: by subscribing again, or by resuming from `held`.
async fn catch_up(
    options: &Options,
    client: &Rc<awc::Client>,
    url: &str,
    record: &str,
    held: u64,
    resume: bool,
) -> Result<Phase, String> {
    let conns = open_all(
        client,
        url,
        options.connections,
        options.connect_concurrency,
    )
    .await?;
    let started = Instant::now();
    let target = held + 1;
    let tasks = conns.into_iter().map(|mut conn| {
        let record = record.to_owned();
        async move {
            let mut payload = json!({"recordId": record, "mode": Mode::Patch.as_str()});
            if resume {
                payload["sinceVersion"] = held.into();
            }
            conn.send(wire::request(1, wire::SUBSCRIBE, &payload))
                .await?;
            let (mut bytes, mut frames, mut resumed) = (0u64, 0u64, false);
            let mut version = 0;
            while version < target {
                let frame = conn.recv().await.ok_or("closed while catching up")?;
                bytes += frame.len() as u64;
                frames += 1;
                let parsed: serde_json::Value =
                    serde_json::from_slice(&frame).map_err(|e| e.to_string())?;
                let payload = &parsed["payload"];
                if parsed["id"] == 1 {
                    resumed = payload["resumed"] == true;
                    if !resumed {
                        version = payload["version"].as_u64().unwrap_or(0);
                    }
                } else if parsed["command"] == wire::RECORD_UPDATE {
                    version = payload["version"].as_u64().unwrap_or(0);
                }
            }
            Ok::<_, String>((bytes, frames, resumed))
        }
    });
    let results = tokio::time::timeout(PHASE_LIMIT, join_all(tasks))
        .await
        .map_err(|_| "catching up timed out".to_owned())?;
    let seconds = started.elapsed().as_secs_f64();
    let mut phase = Phase {
        bytes: 0,
        frames: 0,
        seconds,
        resumed: 0,
    };
    for result in results {
        let (bytes, frames, resumed) = result?;
        phase.bytes += bytes;
        phase.frames += frames;
        phase.resumed += u64::from(resumed);
    }
    Ok(phase)
}
