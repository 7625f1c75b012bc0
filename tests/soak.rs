//! Soak: waves of connections that connect, subscribe, write and disconnect. Afterwards the
//! server must be back where it started: no live record actors, no extra descriptors, bounded
//! memory. `SOAK_SECONDS` (default 40) sets the length; `scripts/soak.sh` runs the long one.

mod common;

// The allocator the binary runs with (src/main.rs): what RSS does over many waves depends on
// it, and glibc's malloc keeps growing its arenas for longer than jemalloc does.
#[cfg(feature = "jemalloc")]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

use common::{Backend, Client, eventually, start};
use serde_json::json;
use std::time::{Duration, Instant};

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").map_or(0, |dir| dir.count())
}

fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

#[actix_web::test]
async fn connection_churn_leaves_nothing_behind() {
    let seconds: u64 = std::env::var("SOAK_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(40);
    let per_wave: usize = std::env::var("SOAK_CONNECTIONS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(2000);
    let server = start(
        Backend::Memory,
        r#"
[server]
record_linger_ms = 200
max_requests_per_second = 0

[[records.expose]]
pattern = "^soak:"
writable = true
"#,
    )
    .await;
    // Warm up once so lazily allocated runtime structures count in the baseline.
    server.client().await.close().await;
    let records = server.records().clone();
    eventually("warm-up to end", common::patience(), async || {
        records.connection_count() == 0
    })
    .await;
    let (fds_before, rss_before) = (open_fds(), rss_kib());

    let deadline = Instant::now() + Duration::from_secs(seconds);
    let mut waves = 0;
    // RSS at two thirds of the run: the last third must not add to it (the allocator keeps
    // the peak of the first waves, so growth early on is expected; growth that scales with
    // the number of waves is a leak).
    let half_time = Instant::now() + Duration::from_secs(seconds * 2 / 3);
    let mut rss_half = None;
    while Instant::now() < deadline {
        waves += 1;
        let mut tasks = Vec::new();
        // Connections in groups of 100 per task, all open at once.
        for group in 0..per_wave.div_ceil(100) {
            let url = server.ws.clone();
            tasks.push(actix_rt::spawn(async move {
                let mut clients = Vec::new();
                for i in 0..100 {
                    let mut client = Client::connect(&url).await;
                    let id = format!("soak:{}", (group * 100 + i) % 300);
                    client
                        .subscribe(&id, if i % 2 == 0 { "patch" } else { "full" })
                        .await;
                    clients.push((client, id));
                }
                for (client, id) in clients.iter_mut() {
                    let reply = client.publish(id, json!({"wave": 1, "by": group})).await;
                    assert_eq!(reply, json!({"success": true}));
                }
                for (client, _) in clients {
                    client.close().await;
                }
            }));
        }
        for task in tasks {
            task.await.unwrap();
        }
        eprintln!("soak: wave {waves}: RSS {} KiB", rss_kib());
        if rss_half.is_none() && Instant::now() >= half_time {
            rss_half = Some(rss_kib());
        }
    }
    eventually("every session to end", common::patience(), async || {
        records.connection_count() == 0
    })
    .await;
    let wait = common::patience() * 2;
    eventually("every record actor to stop", wait, async || {
        records.live_record_actors() == 0
    })
    .await;
    // Descriptors are released as the kernel finishes closing; allow a moment.
    let start = Instant::now();
    while open_fds() > fds_before + 5 && start.elapsed() < wait {
        actix_rt::time::sleep(Duration::from_millis(50)).await;
    }
    let (fds_after, rss_after) = (open_fds(), rss_kib());
    eprintln!(
        "soak: {waves} waves of {per_wave} connections in {seconds} s; fds {fds_before} -> {fds_after}; \
         RSS {rss_before} KiB -> {rss_half:?} KiB at two thirds -> {rss_after} KiB"
    );
    assert!(
        fds_after <= fds_before + 5,
        "descriptors leaked: {fds_before} -> {fds_after}"
    );
    // Server and 2,000 clients share this process, and the allocator keeps the pages of a full
    // wave after it ends (measured: ~125 MiB in a debug build after a few waves, ~148 MiB in a
    // release build after 50 waves, then flat). What must hold: a stated ceiling, and no
    // growth with the number of waves.
    assert!(
        rss_after < 256 * 1024,
        "RSS {rss_after} KiB is over the 256 MiB bound"
    );
    // The allocator's footprint rises steeply and then flattens. Measured in a debug build
    // (jemalloc, 2026-12-03): +70 MiB over the first 15 waves (~20 s), then flat within
    // ±12 MiB up to wave 54 (70 s); the same on the commit before; at 20 s the run ended on
    // the shoulder and failed the rule below. A leak grows with every wave instead, so the
    // last third may add at most a quarter of what came before it (or 16 MiB, whichever is
    // more).
    let rss_half = rss_half.unwrap_or(rss_after);
    let allowed = (rss_half.saturating_sub(rss_before) / 4).max(16 * 1024);
    assert!(
        rss_after <= rss_half + allowed,
        "RSS kept growing: {rss_before} KiB at the start, {rss_half} KiB at two thirds, \
         {rss_after} KiB at the end (allowed +{allowed} KiB in the last third)"
    );
    server.stop().await;
}
