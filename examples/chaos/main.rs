//! `chaos`: drives two mesh-records instances on a private Redis under random faults and
//! checks that records never lie. `scripts/chaos.sh MINUTES` builds and runs it.
//!
//! The run starts its own `redis-server` and two instances (free ports, one key prefix),
//! writes to many records (one writer per record, alternating instances, now and then a
//! delete through the admin API), follows every record from both instances in full and patch
//! mode, and injects faults one at a time. At the end it stops faults and writes, waits for
//! convergence, reads the store straight from Redis and prints one verdict line:
//!
//! ```text
//! chaos: PASS|FAIL minutes=M writes=W acked=A faults=F lost=L resurrected=R behind=B regressions=G forks=K crashes=C
//! ```
//!
//! Layout (this file and one file per module beside it; the protocol frames and the HTTP
//! client come from the `mesh-bench` library's `wire` and `conn`):
//! - `args`: the command line, every count and duration capped.
//! - `procs`: starting, killing and restarting Redis and the instances; pid files.
//! - `faults`: the fault kinds and the thread that injects them.
//! - `client`: one WebSocket connection with replies matched by id.
//! - `workload`: the writers and the ledger of what was acknowledged.
//! - `ledger`: what each record's writer did, and what that allows the store to hold.
//! - `follow`: one subscriber's view of one record and the per-push checks.
//! - `subscriber`: the subscriber connections; values seen per version across subscribers.
//! - `store`: reading records straight from Redis.
//! - `verdict`: the final comparisons and the report.
//! - `rng`: a small seeded random generator.

mod args;
mod client;
mod faults;
mod follow;
mod ledger;
mod procs;
mod rng;
mod store;
mod subscriber;
mod verdict;
mod workload;

use std::cell::RefCell;
use std::process::ExitCode;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Longest wait for subscribers to agree with the store once writes and faults have stopped.
const CONVERGENCE: Duration = Duration::from_secs(20);
/// Shortest wait before the first comparison ("a few seconds").
const SETTLE: Duration = Duration::from_secs(3);

fn main() -> ExitCode {
    let options = match args::parse(std::env::args().skip(1)) {
        Ok(args::Command::Help) => {
            println!("{}", args::USAGE);
            return ExitCode::SUCCESS;
        }
        Ok(args::Command::Run(options)) => options,
        Err(message) => {
            eprintln!("chaos: {message}\n\n{}", args::USAGE);
            return ExitCode::from(2);
        }
    };
    let dir = match &options.run_dir {
        Some(dir) => dir.clone(),
        None => match tempfile::Builder::new().prefix("chaos.").tempdir() {
            Ok(dir) => dir.keep(),
            Err(e) => {
                eprintln!("chaos: no temp dir: {e}");
                return ExitCode::from(2);
            }
        },
    };
    let spec = procs::ClusterSpec {
        dir: dir.clone(),
        binary: options.binary.clone(),
        redis_server: options.redis_server.clone(),
        prefix: format!("chaos-{}-{}:", std::process::id(), options.seed % 1_000_000),
    };
    let cluster = match procs::Cluster::start(spec) {
        Ok(cluster) => cluster,
        Err(e) => {
            eprintln!("chaos: setup failed: {e} (logs in {})", dir.display());
            return ExitCode::from(2);
        }
    };
    let faults: Vec<&str> = options.faults.iter().map(|k| k.name()).collect();
    println!(
        "chaos: seed={} records={} rate={}/s faults={} redis=127.0.0.1:{} instances=127.0.0.1:{},{} prefix={} logs={}",
        options.seed,
        options.records,
        options.rate,
        if faults.is_empty() {
            "none".into()
        } else {
            faults.join(",")
        },
        cluster.redis_port,
        cluster.ports[0],
        cluster.ports[1],
        cluster.prefix(),
        dir.display()
    );
    let passed = actix_rt::System::new().block_on(run(options, cluster));
    match passed {
        Ok(true) => {
            let _ = std::fs::remove_dir_all(&dir);
            ExitCode::SUCCESS
        }
        Ok(false) => {
            println!("chaos: logs kept in {}", dir.display());
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("chaos: {e} (logs in {})", dir.display());
            ExitCode::from(2)
        }
    }
}

/// The whole run; `Ok(true)` on PASS. The cluster is shut down before it returns.
async fn run(options: args::Options, cluster: procs::Cluster) -> Result<bool, String> {
    let started = Instant::now();
    let mut rng = rng::Rng::new(options.seed);
    let http = client::http_client();
    let urls: Vec<String> = cluster
        .ports
        .iter()
        .map(|p| format!("ws://127.0.0.1:{p}/ws"))
        .collect();
    let ports = cluster.ports;
    let redis_url = cluster.redis_url();
    let prefix = cluster.prefix().to_owned();

    let history = faults::History::default();

    // Subscribers first, so every record is held by both instances from the start.
    let forks = Rc::new(RefCell::new(subscriber::Forks::default()));
    let mut subscribers = Vec::new();
    for (i, url) in urls.iter().enumerate() {
        for mode in ["full", "patch"] {
            let label = format!("{}/{mode}", procs::NAMES[i]);
            let sub = Rc::new(RefCell::new(subscriber::Subscriber::new(
                label,
                mode,
                options.records,
                started,
            )));
            actix_rt::spawn(subscriber::run(
                sub.clone(),
                forks.clone(),
                http.clone(),
                url.clone(),
            ));
            subscribers.push(sub);
        }
    }

    let work = Rc::new(workload::Workload::new(started, history.clone()));
    for (i, url) in urls.iter().enumerate() {
        actix_rt::spawn(workload::keep_connected(
            work.clone(),
            http.clone(),
            url.clone(),
            i,
        ));
    }
    let period = Duration::from_secs_f64(options.records as f64 / f64::from(options.rate));
    let writers: Vec<_> = (0..options.records)
        .map(|index| {
            actix_rt::spawn(workload::write_record(
                work.clone(),
                http.clone(),
                ports,
                index,
                period,
                rng.fork(),
            ))
        })
        .collect();

    let stop_faults = Arc::new(AtomicBool::new(false));
    let (done_tx, done_rx) = tokio::sync::oneshot::channel();
    {
        let (kinds, gap, fault_rng) = (options.faults.clone(), options.fault_gap, rng.fork());
        let (stop, history) = (stop_faults.clone(), history.clone());
        std::thread::spawn(move || {
            let report = faults::run(cluster, kinds, gap, fault_rng, started, stop, history);
            let _ = done_tx.send(report);
        });
    }

    // The run proper, with a progress line every 10 s.
    let progress = |phase: &str| {
        let (pushes, findings, connects) = subscribers.iter().fold((0, 0, 0), |acc, s| {
            let s = s.borrow();
            (
                acc.0 + s.pushes,
                acc.1 + s.findings.len(),
                acc.2 + s.connects,
            )
        });
        faults::log(
            started,
            &format!(
                "{phase} writes={} acked={} deletes={} faults={} pushes={pushes} regressions={findings} subscriber_connects={connects}",
                work.writes.get(),
                work.acked.get(),
                work.deletes.get(),
                history.lock().map_or(0, |h| h.len())
            ),
        );
    };
    while started.elapsed() < options.duration {
        let left = options.duration.saturating_sub(started.elapsed());
        actix_rt::time::sleep(left.min(Duration::from_secs(10))).await;
        progress("progress");
    }

    stop_faults.store(true, Ordering::SeqCst);
    let report = done_rx
        .await
        .map_err(|_| "the fault thread ended without a report".to_owned())?;
    work.stop.set(true);
    for writer in writers {
        let _ = writer.await;
    }
    progress("stopped;");

    // Convergence: compare until every subscriber agrees with the store, or time is up.
    let mut con = report.cluster.connect_redis()?;
    let waited = Instant::now();
    actix_rt::time::sleep(SETTLE).await;
    let (stored, behind) = loop {
        let stored = store::read_all(&mut con, &prefix, options.records)
            .map_err(|e| format!("reading the store at {redis_url}: {e}"))?;
        let behind: Vec<String> = subscribers
            .iter()
            .flat_map(|s| verdict::check_subscriber(&s.borrow(), &stored))
            .collect();
        if behind.is_empty() || waited.elapsed() > CONVERGENCE {
            break (stored, behind);
        }
        actix_rt::time::sleep(Duration::from_secs(1)).await;
    };
    let mut report = report;
    let crashes = {
        let mut crashes = report.crashes.clone();
        crashes.extend(report.cluster.reap_crashed());
        crashes
    };
    let store_findings = verdict::check_store(&work.ledgers.borrow(), &stored);
    let mut lost = work.lost_early.borrow().clone();
    lost.extend(store_findings.lost);
    let regressions: Vec<String> = subscribers
        .iter()
        .flat_map(|s| {
            let s = s.borrow();
            s.findings
                .iter()
                .map(|(index, finding, at)| {
                    format!(
                        "{} at {}: {finding:?} ({})",
                        store::record_id(*index),
                        s.label,
                        faults::context(&history, *at)
                    )
                })
                .collect::<Vec<_>>()
        })
        .collect();
    let forks_found = forks.borrow().found.clone();
    let pass = lost.is_empty()
        && store_findings.resurrected.is_empty()
        && behind.is_empty()
        && regressions.is_empty()
        && forks_found.is_empty()
        && crashes.is_empty();
    report.cluster.shutdown();

    let failures: Vec<String> = work
        .failures
        .borrow()
        .iter()
        .map(|(what, count)| format!("{what}: {count}"))
        .collect();
    if !failures.is_empty() {
        println!(
            "chaos: unacknowledged operations (tolerated): {}",
            failures.join(", ")
        );
    }
    verdict::print_details("lost acknowledged writes", &lost, 20);
    verdict::print_details("resurrected deletions", &store_findings.resurrected, 20);
    verdict::print_details("subscribers behind the store", &behind, 20);
    verdict::print_details("regressions at subscribers", &regressions, 20);
    verdict::print_details("one version, two values", &forks_found, 20);
    verdict::print_details("crashes", &crashes, 20);
    println!(
        "chaos: {} minutes={} writes={} acked={} faults={} lost={} resurrected={} behind={} regressions={} forks={} crashes={}",
        if pass { "PASS" } else { "FAIL" },
        options.minutes,
        work.writes.get(),
        work.acked.get(),
        report.injected,
        lost.len(),
        store_findings.resurrected.len(),
        behind.len(),
        regressions.len(),
        forks_found.len(),
        crashes.len(),
    );
    Ok(pass)
}
