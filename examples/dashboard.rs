//! A server-side producer: writes a `dashboard:live` record 10 times a second (merge strategy),
//! which clients watch in patch mode — only the changed fields travel.
//!
//! Run: `cargo run --example dashboard` (port 3000; `MESH_PORT=3100 cargo run --example
//! dashboard` picks another), then subscribe to `dashboard:live` at the URL it prints (for
//! example with the demo's client, or websocat). Stops on Ctrl-C.

use mesh_records::{Config, Exposure, Strategy};
use serde_json::json;
use std::time::{Duration, Instant};

#[actix_web::main]
async fn main() -> std::io::Result<()> {
    env_logger::init();
    let mut config = Config::default();
    // MESH_PORT (and the other MESH_* variables) as for the binary; port 3000 without it.
    config
        .apply_env(|key| std::env::var(key).ok())
        .map_err(std::io::Error::other)?;
    let builder = mesh_records::RecordServer::builder(config.clone())
        // Clients may read the dashboard; only this process writes it.
        .expose(Exposure::id("dashboard:live"));
    let running = mesh_records::start_with(config, builder)
        .await
        .map_err(std::io::Error::other)?;
    println!(
        "serving ws://{}/ws; writing dashboard:live 10 times a second (Ctrl-C stops)",
        running.addr
    );

    let records = running.records.clone();
    let producer = actix_web::rt::spawn(async move {
        let started = Instant::now();
        let mut tick = actix_web::rt::time::interval(Duration::from_millis(100));
        for n in 0u64.. {
            tick.tick().await;
            // A made-up metric that moves; the merge keeps fields this write does not name.
            let load = ((n as f64) / 10.0).sin() * 50.0 + 50.0;
            let update = json!({
                "uptime_s": started.elapsed().as_secs(),
                "load": (load * 10.0).round() / 10.0,
                "ticks": n,
            });
            if let Err(e) = records
                .write_record("dashboard:live", update, Strategy::Merge)
                .await
            {
                log::warn!("dashboard write failed: {e}");
            }
        }
    });

    let _ = tokio::signal::ctrl_c().await;
    producer.abort();
    running.stop().await;
    Ok(())
}
