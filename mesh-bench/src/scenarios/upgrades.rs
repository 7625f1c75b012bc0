//! `upgrades`: C loops on one event loop, each opening a connection (with `--token` when
//! given), answering one request on it and closing it, again and again for `--duration`:
//! upgrades per second and per server CPU-second, which is what authentication costs at the
//! door (issue 23 measured its JWT verifier with it).

use crate::args::Options;
use crate::conn::{Conn, http_client};
use crate::probe::CpuSample;
use crate::report::{Report, rate};
use crate::wire;
use futures_util::future::join_all;
use serde_json::json;
use std::rc::Rc;
use std::time::Instant;

/// Runs the scenario on one event loop (the server does the work being measured).
pub fn run(options: &Options) -> Result<Report, String> {
    let options = options.clone();
    actix_rt::System::new().block_on(async move { measure(&options).await })
}

async fn measure(options: &Options) -> Result<Report, String> {
    let client = Rc::new(http_client());
    let url = match &options.token {
        Some(token) => format!("{}?token={token}", options.url()),
        None => options.url().to_owned(),
    };
    // Refused tokens fail here, before anything is measured.
    one(&client, &url).await?;
    let until = Instant::now() + options.duration;
    let before = CpuSample::take(&options.server_pids);
    let loops = (0..options.connections).map(|_| {
        let (client, url) = (client.clone(), url.clone());
        async move {
            let (mut done, mut failed) = (0u64, 0u64);
            while Instant::now() < until {
                match one(&client, &url).await {
                    Ok(()) => done += 1,
                    Err(_) => failed += 1,
                }
            }
            (done, failed)
        }
    });
    let counts = join_all(loops).await;
    let cpu = CpuSample::take(&options.server_pids).since(&before);
    let upgrades: u64 = counts.iter().map(|(done, _)| done).sum();
    let failed: u64 = counts.iter().map(|(_, failed)| failed).sum();
    let mut report = Report::new(options.scenario.name());
    report.line(format!(
        "{} loops, token: {}; {upgrades} upgrades ({:.0}/s), {failed} failed",
        options.connections,
        if options.token.is_some() { "yes" } else { "no" },
        rate(upgrades, cpu.seconds)
    ));
    report.set("loops", options.connections as u64);
    report.set("token", options.token.is_some());
    report.set("upgrades", upgrades);
    report.set("failed", failed);
    report.set("upgrades_per_s", rate(upgrades, cpu.seconds));
    report.cpu(&cpu, &[("upgrades", upgrades)]);
    Ok(report)
}

/// One connection: upgrade, one request answered (so the session is really up), dropped.
async fn one(client: &awc::Client, url: &str) -> Result<(), String> {
    let mut conn = Conn::open(client, url).await?;
    let id = conn.next_id();
    conn.send(wire::request(id, "mesh/noop", &json!({})))
        .await?;
    conn.reply_to(id).await?;
    Ok(())
}
