//! The load tool's `--report FILE.html` against the real server binary: a fanout run writes one
//! self-contained page with every chart drawn, the server's CPU and memory included.

use crate::common::process::{serve, sigterm, write_config};
use crate::common::{free_port, wait_for_health};
use std::process::ExitCode;

/// Runs `mesh-bench <args>` with `--report` against the server binary started with `server`
/// lines under `[server]` (the port is added) and `^bench:` records writable; returns the page.
async fn report_of(server: &str, args: &[&str]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let config = write_config(
        dir.path(),
        &format!(
            "[server]\nport = {port}\n{server}\n\
             [[records.expose]]\npattern = \"^bench:\"\nwritable = true\n"
        ),
    );
    let mut child = serve(&config);
    wait_for_health(port).await;
    let page_path = dir.path().join("report.html");
    let url = format!("ws://127.0.0.1:{port}/ws");
    let pid = child.id().to_string();
    let target = [
        "--url",
        &url,
        "--server-pid",
        &pid,
        "--report",
        page_path.to_str().unwrap(),
    ];
    let args: Vec<String> = args.iter().chain(&target).map(|a| a.to_string()).collect();
    // The tool runs its own runtimes: give it a thread of its own.
    let status = std::thread::spawn(move || mesh_bench::run(args))
        .join()
        .expect("mesh-bench does not panic");
    sigterm(&child);
    let _ = child.wait();
    assert_eq!(status, ExitCode::SUCCESS);
    std::fs::read_to_string(&page_path).expect("the report is written")
}

#[actix_web::test]
async fn a_fanout_run_writes_a_self_contained_page_with_every_chart() {
    let page = report_of(
        "max_requests_per_second = 0",
        &[
            "fanout",
            "--subscribers",
            "20",
            "--duration",
            "2",
            "--warmup",
            "0.5",
        ],
    )
    .await;
    assert!(page.contains("<h1>mesh-bench fanout</h1>"));
    assert!(
        !page.contains("http://") && !page.contains("https://"),
        "the page must not load anything from elsewhere"
    );
    // Write and delivery rates, latency per second, the histogram, CPU and memory.
    assert_eq!(page.matches("<svg ").count(), 6, "{page}");
    assert!(!page.contains("no data"), "every chart has data: {page}");
    // Both measured seconds are on the time charts.
    let measured = page.matches(" s, measuring\n").count();
    assert!(measured >= 2, "{measured} measured seconds in hover texts");
}

/// `mesh-bench hostile` against the real server binary with the shipped limits: a short run
/// with every hostile kind (a small diff bomb) completes, the hostile clients got error replies,
/// and the page reports the server up afterwards and its memory.
#[actix_web::test]
async fn a_hostile_run_reports_the_hostile_clients_and_a_live_server() {
    let page = report_of(
        "",
        &[
            "hostile",
            "--writers",
            "2",
            "--subscribers",
            "10",
            "--hostile",
            "8",
            "--bomb",
            "200",
            "--duration",
            "2",
            "--warmup",
            "1",
        ],
    )
    .await;
    assert!(
        page.contains("1 diff-bomb, 1 numbers, 1 deep, 1 stalled"),
        "{page}"
    );
    assert!(page.contains("server up after the run: yes"), "{page}");
    assert!(page.contains("server RSS (MiB): start "), "{page}");
    let refused = page
        .split("error replies ")
        .nth(1)
        .and_then(|rest| rest.split(',').next())
        .and_then(|n| n.parse::<u64>().ok())
        .expect("the hostile line");
    assert!(
        refused > 0,
        "the garbage and the flood got error replies: {page}"
    );
}
