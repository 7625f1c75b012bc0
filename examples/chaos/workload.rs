//! The writers: one task per record (so the record's last acknowledged value is well defined),
//! writing `{"n": k, ...}` with k increasing, alternating between the two instances and mixing
//! strategies, and now and then deleting the record through the admin API of a random
//! instance and later re-creating it. Every outcome goes into the record's ledger.

use crate::client::{Client, Reply};
use crate::faults::{History, context};
use crate::ledger::{Ledgers, Op};
use crate::procs::{ADMIN_TOKEN, NAMES};
use crate::rng::Rng;
use crate::store::record_id;
use mesh_bench::wire;
use serde_json::{Value, json};
use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::rc::Rc;
use std::time::{Duration, Instant};

/// How long a write or delete may take before its outcome counts as unknown.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Chance that an operation on a present record is a delete.
const DELETE_CHANCE: f64 = 0.03;
/// Chance, per turn, that a deleted record is re-created.
const RECREATE_CHANCE: f64 = 0.3;
/// Keeps values large enough that patch subscribers get patches rather than full values.
const PAD: &str = "chaos-padding-so-that-a-patch-is-smaller-than-the-whole-value-0123456789";

/// Counters and ledgers shared by the writer tasks and the report.
pub struct Workload {
    started: Instant,
    history: History,
    pub ledgers: RefCell<Ledgers>,
    pub writes: Cell<u64>,
    pub acked: Cell<u64>,
    pub deletes: Cell<u64>,
    pub deletes_acked: Cell<u64>,
    /// Error replies and unknown outcomes, by code or reason.
    pub failures: RefCell<BTreeMap<String, u64>>,
    /// Broken promises seen while writing (an admin delete saying "no such record" right
    /// after an acknowledged write).
    pub lost_early: RefCell<Vec<String>>,
    pub stop: Cell<bool>,
    /// One writer connection per instance, replaced when it drops.
    pub conns: [RefCell<Option<Client>>; 2],
}

impl Workload {
    /// An empty ledger; `started` and `history` place findings in time.
    pub fn new(started: Instant, history: History) -> Workload {
        Workload {
            started,
            history,
            ledgers: Default::default(),
            writes: Default::default(),
            acked: Default::default(),
            deletes: Default::default(),
            deletes_acked: Default::default(),
            failures: Default::default(),
            lost_early: Default::default(),
            stop: Default::default(),
            conns: Default::default(),
        }
    }

    fn failed(&self, what: String) {
        *self.failures.borrow_mut().entry(what).or_default() += 1;
    }
}

/// Keeps instance `i`'s writer connection open until the workload stops.
pub async fn keep_connected(work: Rc<Workload>, http: awc::Client, url: String, i: usize) {
    while !work.stop.get() {
        let open = work.conns[i].borrow().as_ref().is_some_and(Client::is_open);
        if !open {
            *work.conns[i].borrow_mut() = None;
            if let Ok((client, mut events)) = Client::connect(&http, &url).await {
                // Nothing unsolicited matters to a writer; drain it.
                actix_rt::spawn(async move { while events.recv().await.is_some() {} });
                *work.conns[i].borrow_mut() = Some(client);
            }
        }
        actix_rt::time::sleep(Duration::from_millis(200)).await;
    }
    if let Some(client) = work.conns[i].borrow_mut().take() {
        client.close();
    }
}

/// The writer of record `index`: one operation every `period` on average.
pub async fn write_record(
    work: Rc<Workload>,
    http: awc::Client,
    ports: [u16; 2],
    index: usize,
    period: Duration,
    mut rng: Rng,
) {
    let id = record_id(index);
    let mut n = 0u64;
    // Spread the writers' first turns over one period.
    actix_rt::time::sleep(period.mul_f64(rng.below(1000) as f64 / 1000.0)).await;
    while !work.stop.get() {
        let present = work
            .ledgers
            .borrow_mut()
            .entry(index)
            .or_default()
            .believes_present();
        let deleted = matches!(work.ledgers.borrow()[&index].last_acked, Some(Op::Delete));
        if present && rng.chance(DELETE_CHANCE) {
            let port = ports[rng.below(2) as usize];
            delete(&work, &http, port, index, &id).await;
        } else if !deleted || rng.chance(RECREATE_CHANCE) {
            n += 1;
            write(&work, index, &id, n, &mut rng).await;
        }
        let jitter = 0.5 + rng.below(1000) as f64 / 1000.0;
        actix_rt::time::sleep(period.mul_f64(jitter)).await;
    }
}

/// Writes `n` through instance `n % 2`, with a random strategy.
async fn write(work: &Workload, index: usize, id: &str, n: u64, rng: &mut Rng) {
    let instance = (n % 2) as usize;
    let Some(client) = work.conns[instance].borrow().clone() else {
        return; // that instance is down: nothing sent, nothing to record
    };
    let x = rng.below(1000);
    let (strategy, value) = match rng.below(100) {
        0..60 => (
            "replace",
            json!({"n": n, "by": NAMES[instance], "x": x, "pad": PAD}),
        ),
        60..85 => ("merge", json!({"n": n, "y": x})),
        _ => ("deepMerge", json!({"n": n, "deep": {"z": x}})),
    };
    let payload = json!({"recordId": id, "newValue": value, "options": {"strategy": strategy}});
    let reply = client
        .request(wire::PUBLISH, payload, REQUEST_TIMEOUT)
        .await;
    let op = Op::Write { n };
    let mut ledgers = work.ledgers.borrow_mut();
    let ledger = ledgers.entry(index).or_default();
    match reply {
        Reply::NotSent => return,
        Reply::Ok => {
            ledger.acked(op);
            work.acked.set(work.acked.get() + 1);
        }
        Reply::Err(code) => {
            ledger.uncertain(op);
            work.failed(format!("write {code}"));
        }
        Reply::Unknown(why) => {
            ledger.uncertain(op);
            work.failed(format!("write {why}"));
        }
    }
    work.writes.set(work.writes.get() + 1);
}

/// Deletes the record through the admin API of the instance on `port`.
async fn delete(work: &Workload, http: &awc::Client, port: u16, index: usize, id: &str) {
    let url = format!("http://127.0.0.1:{port}/api/records/{id}");
    let sent = http
        .delete(url)
        .insert_header(("Authorization", format!("Bearer {ADMIN_TOKEN}")))
        .timeout(REQUEST_TIMEOUT)
        .send()
        .await;
    let mut ledgers = work.ledgers.borrow_mut();
    let ledger = ledgers.entry(index).or_default();
    let status = match sent {
        Err(awc::error::SendRequestError::Connect(_)) => return, // never reached the server
        Err(e) => {
            ledger.uncertain(Op::Delete);
            work.failed(format!("delete {}", short(&e.to_string())));
            work.deletes.set(work.deletes.get() + 1);
            return;
        }
        Ok(response) => response.status().as_u16(),
    };
    work.deletes.set(work.deletes.get() + 1);
    match status {
        200 => {
            ledger.acked(Op::Delete);
            work.deletes_acked.set(work.deletes_acked.get() + 1);
        }
        404 => {
            // "No such record": the server says it is absent now. Right after an
            // acknowledged write with nothing uncertain since, that write was lost.
            if let (Some(Op::Write { n }), true) = (ledger.last_acked, ledger.maybe.is_empty()) {
                let when = context(&work.history, work.started.elapsed().as_secs_f64());
                work.lost_early.borrow_mut().push(format!(
                    "{id}: admin DELETE on port {port} answered 404 (no such record) after write n={n} was acknowledged ({when})"
                ));
            }
            ledger.acked(Op::Delete);
            work.deletes_acked.set(work.deletes_acked.get() + 1);
        }
        other => {
            ledger.uncertain(Op::Delete);
            work.failed(format!("delete HTTP {other}"));
        }
    }
}

fn short(text: &str) -> String {
    text.chars().take(40).collect()
}

/// The n of a stored or pushed value.
pub fn n_of(value: &Value) -> Option<u64> {
    value.get("n").and_then(Value::as_u64)
}
