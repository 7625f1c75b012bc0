//! `--report` end to end: a real fanout run against a running server writes a page with every
//! chart drawn. Needs a server (mesh-bench cannot start one: the server depends on it), so it
//! is ignored by default:
//!
//! ```text
//! MESH_PORT=3391 target/debug/mesh-records --config bench/config.toml &
//! MESH_BENCH_URL=ws://127.0.0.1:3391/ws MESH_BENCH_SERVER_PID=$! \
//!     cargo test -p mesh-bench --test report -- --ignored
//! ```

use std::process::ExitCode;

#[test]
#[ignore = "needs a running server: MESH_BENCH_URL (and MESH_BENCH_SERVER_PID)"]
fn a_fanout_run_writes_a_page_with_every_chart() {
    let url = std::env::var("MESH_BENCH_URL").expect("MESH_BENCH_URL=ws://host:port/ws");
    let path = std::env::temp_dir().join(format!("mesh-bench-report-{}.html", std::process::id()));
    let mut args: Vec<String> = [
        "fanout",
        "--subscribers",
        "20",
        "--duration",
        "2",
        "--warmup",
        "0.5",
        "--url",
        &url,
        "--report",
        path.to_str().expect("a UTF-8 temp path"),
    ]
    .map(String::from)
    .into();
    let pid = std::env::var("MESH_BENCH_SERVER_PID").ok();
    if let Some(pid) = &pid {
        args.extend(["--server-pid".to_owned(), pid.clone()]);
    }

    assert_eq!(mesh_bench::run(args), ExitCode::SUCCESS);
    let page = std::fs::read_to_string(&path).expect("the report is written");
    let _ = std::fs::remove_file(&path);

    assert!(page.contains("<h1>mesh-bench fanout</h1>"));
    assert!(!page.contains("http://") && !page.contains("https://"));
    // Two rates, latency per second, histogram, CPU, and memory when a pid was given.
    let charts = 5 + usize::from(pid.is_some());
    assert_eq!(page.matches("<svg ").count(), charts, "{page}");
    // The measured window is two whole seconds, each with its latencies.
    let measured = page.matches(" s, measuring\n").count();
    assert!(measured >= 2, "{measured} measured seconds in hover texts");
}
