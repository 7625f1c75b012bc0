//! A subscriber connection: follows every record on one instance in one mode, checks each
//! push (see `follow`), resubscribes after a deletion or a broken view, and reconnects when
//! the connection drops (every record is then subscribed afresh).

use crate::client::Client;
use crate::follow::{Applied, Finding, Follow, View};
use crate::store::{record_id, record_index};
use mesh_bench::wire::{self, error_code};
use serde_json::{Value, json};
use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::time::{Duration, Instant};

/// One subscriber's state, read by the progress line and the final check.
pub struct Subscriber {
    /// `a/full`, `b/patch`, ...
    pub label: String,
    pub mode: &'static str,
    pub follows: Vec<Follow>,
    /// Each broken promise with its record and when it was seen (seconds since `started`).
    pub findings: Vec<(usize, Finding, f64)>,
    started: Instant,
    pub pushes: u64,
    pub stray: u64,
    pub connects: u64,
}

impl Subscriber {
    fn found(&mut self, index: usize, finding: Finding) {
        let at = self.started.elapsed().as_secs_f64();
        self.findings.push((index, finding, at));
    }

    /// A subscriber of `records` records, not yet connected.
    pub fn new(label: String, mode: &'static str, records: usize, started: Instant) -> Subscriber {
        Subscriber {
            started,
            label,
            mode,
            follows: vec![Follow::default(); records],
            findings: Vec::new(),
            pushes: 0,
            stray: 0,
            connects: 0,
        }
    }
}

/// Values seen under each (record, version), by any subscriber: two different values under one
/// version means one of them was a lie.
#[derive(Default)]
pub struct Forks {
    seen: HashMap<(usize, u64), Value>,
    pub found: Vec<String>,
}

impl Forks {
    fn saw(&mut self, sub: &Subscriber, index: usize) {
        let (label, follow) = (&sub.label, &sub.follows[index]);
        let View::Live {
            value: Some(value),
            version,
        } = &follow.view
        else {
            return;
        };
        match self.seen.get(&(index, *version)) {
            Some(first) if first != value => {
                if self.found.len() < 1000 {
                    self.found.push(format!(
                        "{} v{version}: {label} saw {value}, another subscriber saw {first} (at t={:.1}s)",
                        record_id(index),
                        sub.started.elapsed().as_secs_f64()
                    ));
                }
            }
            Some(_) => {}
            None => {
                self.seen.insert((index, *version), value.clone());
            }
        }
    }
}

/// Runs the subscriber forever (the run ends by stopping the actix system).
pub async fn run(
    sub: Rc<RefCell<Subscriber>>,
    forks: Rc<RefCell<Forks>>,
    http: awc::Client,
    url: String,
) {
    loop {
        let Ok((client, mut events)) = Client::connect(&http, &url).await else {
            actix_rt::time::sleep(Duration::from_millis(300)).await;
            continue;
        };
        let mode = {
            let mut s = sub.borrow_mut();
            s.connects += 1;
            s.follows.iter_mut().for_each(|f| f.view = View::Waiting);
            s.mode
        };
        let records = sub.borrow().follows.len();
        // Request id -> record, for the subscribe replies.
        let mut asked: HashMap<u64, usize> = HashMap::new();
        let mut refused: Vec<usize> = Vec::new();
        for index in 0..records {
            subscribe(&client, mode, index, &mut asked);
        }
        let mut retry = actix_rt::time::interval(Duration::from_secs(1));
        loop {
            tokio::select! {
                event = events.recv() => {
                    let Some(event) = event else { break };
                    let resubscribe = handle(&sub, &forks, event, &mut asked, &mut refused);
                    if let Some(index) = resubscribe {
                        subscribe(&client, mode, index, &mut asked);
                    }
                }
                _ = retry.tick() => {
                    for index in refused.drain(..) {
                        subscribe(&client, mode, index, &mut asked);
                    }
                }
            }
        }
        actix_rt::time::sleep(Duration::from_millis(100)).await;
    }
}

fn subscribe(client: &Client, mode: &str, index: usize, asked: &mut HashMap<u64, usize>) {
    let payload = json!({"recordId": record_id(index), "mode": mode});
    if let Some(id) = client.send(wire::SUBSCRIBE, payload) {
        asked.insert(id, index);
    }
}

/// Applies one frame; returns a record to subscribe again, if any.
fn handle(
    sub: &RefCell<Subscriber>,
    forks: &RefCell<Forks>,
    event: Value,
    asked: &mut HashMap<u64, usize>,
    refused: &mut Vec<usize>,
) -> Option<usize> {
    let mut sub = sub.borrow_mut();
    let sub = &mut *sub;
    let payload = &event["payload"];
    if let Some(request) = event["id"].as_u64() {
        let index = asked.remove(&request)?;
        if payload["success"] == true && error_code(payload).is_none() {
            let record = Some(payload["record"].clone()).filter(|v| !v.is_null());
            let version = payload["version"].as_u64().unwrap_or(0);
            let follow = &mut sub.follows[index];
            if let Some(finding) = follow.snapshot(record, version) {
                sub.found(index, finding);
            }
            forks.borrow_mut().saw(sub, index);
        } else {
            refused.push(index);
        }
        return None;
    }
    let index = record_index(payload["recordId"].as_str()?)?;
    let follow = sub.follows.get_mut(index)?;
    let version = payload["version"].as_u64().unwrap_or(0);
    let (applied, ended) = match event["command"].as_str()? {
        wire::RECORD_UPDATE => {
            let applied = if let Some(full) = payload.get("full") {
                follow.full(full.clone(), version)
            } else {
                follow.patch(&payload["patch"], version)
            };
            (applied, false)
        }
        "mesh/record-deleted" => (follow.deleted(version), true),
        _ => return None,
    };
    sub.pushes += 1;
    match applied {
        Applied::Moved => {
            forks.borrow_mut().saw(sub, index);
            // A deletion ends the subscription: subscribe again to see a re-creation.
            ended.then_some(index)
        }
        Applied::Stray => {
            sub.stray += 1;
            None
        }
        Applied::Broken(finding) => {
            sub.found(index, finding);
            sub.follows[index].view = View::Waiting;
            Some(index)
        }
    }
}
