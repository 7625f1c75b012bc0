//! `collection`: the three figures of the collections issue, one file per `--shape`.
//!
//! - `members`: subscribers on one collection while its members are written (latency to
//!   them, every delivery accounted for, diff versions gap-free);
//! - `unrelated`: many subscribed collections while records in none of them are written
//!   (what those writes cost the server; `--no-collections` is the baseline);
//! - `snapshot`: subscribing to one large collection (time to the reply, its size).
//!
//! Every id is built here. One `[[collections.expose]]` rule of
//! `bench/config-collections.toml` serves all three: `bench:col:<run>:<n>` holds the records
//! `bench:item:<run>:<n>:*`, and `bench:col:<run>:<n>:<tag>` another collection with the same
//! members (a cold subscribe). `<run>` is fresh each run, so runs never share records.

mod members;
mod snapshot;
mod unrelated;

use crate::args::{Options, Shape};
use crate::conn::{Conn, http_client};
use crate::control;
use crate::probe;
use crate::report::Report;
use crate::wire;
use std::ops::Range;
use std::time::{Duration, Instant};

/// Requests one setup connection keeps unanswered (writes, subscribes): enough to keep the
/// server busy, few enough that neither side's socket buffers fill.
const WINDOW: usize = 256;

/// Runs the shape the options name; fails when it cannot be set up.
pub fn run(options: &Options) -> Result<Report, String> {
    let names = Names::fresh();
    match options.shape {
        Shape::MembersWrites => members::run(options, &names),
        Shape::UnrelatedWrites => unrelated::run(options, &names),
        Shape::Snapshot => snapshot::run(options, &names),
    }
}

/// The ids of one run.
#[derive(Clone)]
struct Names {
    run: String,
}

impl Names {
    fn fresh() -> Names {
        Names {
            run: control::unique_suffix(),
        }
    }

    /// Collection `n`.
    fn collection(&self, n: usize) -> String {
        format!("bench:col:{}:{n}", self.run)
    }

    /// Another collection id with the members of collection `n`: a fresh one per `tag`.
    fn alias(&self, n: usize, tag: usize) -> String {
        format!("bench:col:{}:{n}:t{tag}", self.run)
    }

    /// What the ids of collection `n`'s members start with.
    fn member_prefix(&self, n: usize) -> String {
        format!("bench:item:{}:{n}:", self.run)
    }

    /// Record `k` of the records in no collection: the same prefix as the members up to the
    /// collection number (so the server's routing has to tell them apart), then `x`.
    fn unrelated(&self, k: usize) -> String {
        format!("bench:item:{}:x:{k}", self.run)
    }
}

/// The collections connection `index` of `unrelated-writes` subscribes to: collections are
/// cut into blocks of `per_connection`, and connections take the blocks in turn, so each
/// collection gets `subscribers` distinct connections when there are
/// `blocks x subscribers` of them.
fn block_of(index: usize, collections: usize, per_connection: usize) -> Range<usize> {
    let blocks = collections.div_ceil(per_connection);
    let start = (index % blocks) * per_connection;
    start..(start + per_connection).min(collections)
}

/// The server's resident memory before and after a setup, and at the end of the window
/// (read with `--server-pid`). Right after setup it still holds buffers the setup used (the
/// snapshots sent); what the subscriptions keep is counted at the end.
struct SetupMemory {
    pid: Option<u32>,
    before: Option<u64>,
    after: Option<u64>,
    end: Option<u64>,
}

impl SetupMemory {
    /// Reads the first `--server-pid`'s RSS now, before the setup.
    fn before(options: &Options) -> SetupMemory {
        let pid = options.server_pids.first().copied();
        SetupMemory {
            pid,
            before: pid.and_then(|p| probe::rss_bytes(Some(p))),
            after: None,
            end: None,
        }
    }

    /// Reads it again, once set up.
    fn set_up(&mut self) {
        self.after = self.pid.and_then(|p| probe::rss_bytes(Some(p)));
    }

    /// Reads it again at the end of the window, the subscriptions still held.
    fn ended(&mut self) {
        self.end = self.pid.and_then(|p| probe::rss_bytes(Some(p)));
    }

    /// What the subscriptions held at the end of the window, each.
    fn per(&self, subscriptions: u64) -> Option<f64> {
        match (self.before, self.end) {
            (Some(before), Some(end)) if subscriptions > 0 => {
                Some(end.saturating_sub(before) as f64 / subscriptions as f64)
            }
            _ => None,
        }
    }

    /// "server RSS before .., after setup .., at the end .. (.. bytes per subscription)".
    fn describe(&self, subscriptions: u64) -> String {
        let mib =
            |b: Option<u64>| b.map_or("n/a".into(), |b| format!("{:.1} MiB", b as f64 / 1048576.0));
        let per = self.per(subscriptions);
        format!(
            "server RSS before {}, after setup {}, at the end {}{}",
            mib(self.before),
            mib(self.after),
            mib(self.end),
            per.map_or(String::new(), |b| format!(
                " ({b:.0} bytes per subscription)"
            ))
        )
    }

    /// The figures in the JSON line.
    fn set(&self, report: &mut Report, subscriptions: u64) {
        report.set("server_rss_before_bytes", self.before);
        report.set("server_rss_after_setup_bytes", self.after);
        report.set("server_rss_end_bytes", self.end);
        let per = self.per(subscriptions).map(f64::round);
        report.set("server_bytes_per_subscription", per);
    }
}

/// Writes `ids` with the stamped value (seq 0, sent_us 0, `pad`) on one connection,
/// pipelined, from a thread of its own; returns how long it took. Fails on any refusal.
fn create_records(url: &str, ids: &[String], pad: &str) -> Result<Duration, String> {
    let started = Instant::now();
    actix_rt::System::new().block_on(async {
        let mut conn = Conn::open(&http_client(), url).await?;
        let mut refused: Option<String> = None;
        conn.pipeline(
            ids.len(),
            WINDOW,
            |id, i| wire::publish(id, &ids[i], |out| wire::stamped_value(out, 0, 0, pad)),
            |payload| match payload {
                Some(p) if p.succeeded() => {}
                other => {
                    refused.get_or_insert_with(|| {
                        other.map_or("unreadable reply".into(), |p| p.describe())
                    });
                }
            },
        )
        .await?;
        match refused {
            Some(error) => Err(format!("creating the records: {error}")),
            None => Ok(started.elapsed()),
        }
    })
}

/// Writes on `schedule` until the window ends, waits up to `settle` for the last replies, and
/// counts the writer as done (an error is noted for the report).
async fn write_until_done(
    w: &crate::control::Worker,
    schedule: &super::openloop::Schedule<'_>,
    conn: &mut Conn,
    settle: Duration,
) {
    use super::openloop;
    let written = match openloop::write(w, schedule, conn).await {
        Ok(unanswered) => openloop::await_replies(w, conn, unanswered, settle).await,
        Err(e) => Err(e),
    };
    if let Err(e) = written {
        w.ctl.note_error(format!("writer: {e}"));
    }
    w.counters.bump(crate::stats::Ctr::WritersDone);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_collection_gets_its_subscribers_on_distinct_connections() {
        for (collections, per_connection, subscribers) in [(10_000usize, 1000, 10), (25, 10, 3)] {
            let blocks = collections.div_ceil(per_connection);
            let mut held = vec![Vec::new(); collections];
            for index in 0..blocks * subscribers {
                let block = block_of(index, collections, per_connection);
                assert!(block.len() <= per_connection);
                for n in block {
                    held[n].push(index);
                }
            }
            for connections in held {
                assert_eq!(connections.len(), subscribers);
                let mut distinct = connections.clone();
                distinct.dedup();
                assert_eq!(distinct, connections);
            }
        }
    }

    #[test]
    fn unrelated_records_are_in_no_collection() {
        let names = Names::fresh();
        let unrelated = names.unrelated(7);
        for n in [0, 7, 99] {
            assert!(!unrelated.starts_with(&names.member_prefix(n)));
        }
        let collection = names.collection(3);
        assert!(names.alias(3, 1).starts_with(&collection));
        assert!(names.member_prefix(3).ends_with(":3:"));
    }
}
