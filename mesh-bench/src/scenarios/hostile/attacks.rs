//! The hostile clients. Each kind runs on its own connection (reconnecting when the server
//! cuts it off), from the warmup until the measurement window ends, at a fixed rate: every
//! hostile cost in a run is bounded by these rates and the run's length, and all of it goes
//! to loopback (the command line refuses anything else for this scenario).

use super::frames;
use crate::conn::Conn;
use crate::control::{Phase, Worker};
use crate::stats::Ctr;
use crate::wire::{self, Incoming, Mode};
use futures_util::FutureExt;
use std::time::Duration;

/// The hostile kinds, assigned to hostile connections in turn.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Attack {
    /// `{K: []}` then `{K: [0, …]}` (`--bomb` long key and zeros), 1 write a second.
    DiffBomb,
    /// ~1 MB frames of `1e15` (stored ~3.8 times larger), 1 write a second; the connection
    /// also follows its own record in full mode, so the stored size is sent back.
    Numbers,
    /// deepMerge writes 120 levels deep, 5 a second; every tenth 5,000 deep (refused).
    Deep,
    /// Subscribes in full mode to every well-behaved and every `Numbers` record, then never
    /// reads its socket; drops it after 15 s and does it again.
    Stalled,
    /// Noops and small writes as fast as 5,000 a second: five times the shipped limit.
    Flood,
    /// One 2 MiB text frame (twice the shipped `max_frame_bytes`) a second, each on a new
    /// connection.
    Oversized,
    /// 50 frames a second the server must refuse: not JSON, wrong types, unknown commands,
    /// oversized record ids, unexposed records, binary frames.
    Garbage,
    /// 10 connections a second opened, subscribed and dropped without a close.
    Churn,
}

/// Every kind, in the order hostile connections take them.
pub const ALL: [Attack; 8] = [
    Attack::DiffBomb,
    Attack::Numbers,
    Attack::Deep,
    Attack::Stalled,
    Attack::Flood,
    Attack::Oversized,
    Attack::Garbage,
    Attack::Churn,
];

impl Attack {
    /// The name in the summary.
    pub fn name(self) -> &'static str {
        match self {
            Attack::DiffBomb => "diff-bomb",
            Attack::Numbers => "numbers",
            Attack::Deep => "deep",
            Attack::Stalled => "stalled",
            Attack::Flood => "flood",
            Attack::Oversized => "oversized",
            Attack::Garbage => "garbage",
            Attack::Churn => "churn",
        }
    }

    /// Frames (or connections, for churn and oversized) per second.
    fn per_second(self) -> u32 {
        match self {
            Attack::DiffBomb | Attack::Numbers | Attack::Oversized => 1,
            Attack::Deep => 5,
            Attack::Stalled => 1,
            Attack::Flood => 5_000,
            Attack::Garbage => 50,
            Attack::Churn => 10,
        }
    }
}

/// What a hostile client needs to know.
pub struct Target<'a> {
    pub url: &'a str,
    /// This client's own record (under `bench:`, so writable).
    pub record: String,
    /// `--bomb`: the diff bomb's key length and zeros.
    pub bomb: usize,
    /// What a stalled client subscribes to.
    pub follow: &'a [String],
}

/// How long a stalled client holds its unread socket before starting over.
const STALL: Duration = Duration::from_secs(15);
/// The flood sends this many frames per wake-up (every millisecond).
const FLOOD_BURST: u64 = 5;
/// The numbers writer's frame size: just under the shipped `max_frame_bytes` (1 MiB).
const NUMBERS_BYTES: usize = 1_000_000;
/// The oversized frame.
const OVERSIZED_BYTES: usize = 2 << 20;
/// A pause before reconnecting after a refused connection, so a server that refuses
/// everyone is not hammered.
const RECONNECT_PAUSE: Duration = Duration::from_millis(100);

/// Runs `attack` until the measurement window ends.
pub async fn run(w: Worker, attack: Attack, target: Target<'_>) {
    w.ctl.reached(Phase::Warmup).await;
    let mut tick = tokio::time::interval(match attack {
        Attack::Flood => Duration::from_millis(1),
        _ => Duration::from_secs(1) / attack.per_second(),
    });
    // A late tick is not made up with a burst: the rate is a ceiling.
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut conn: Option<Conn> = None;
    let mut n = 0u64;
    while w.ctl.phase() < Phase::Draining {
        tick.tick().await;
        n += 1;
        match attack {
            Attack::Oversized | Attack::Churn => {
                one_shot(&w, attack, &target, n).await;
                continue;
            }
            Attack::Stalled => {
                stall(&w, &target).await;
                continue;
            }
            _ => {}
        }
        let Some(open) = connected(&w, &mut conn, attack, &target).await else {
            tokio::time::sleep(RECONNECT_PAUSE).await;
            continue;
        };
        if send_next(&w, open, attack, &target, n).await.is_err() || drain(&w, open).await.is_err()
        {
            w.counters.bump(Ctr::HostileCutOff);
            conn = None;
        }
    }
}

/// The connection, opened (and for `Numbers` subscribed to its own record) if needed.
async fn connected<'c>(
    w: &Worker,
    conn: &'c mut Option<Conn>,
    attack: Attack,
    target: &Target<'_>,
) -> Option<&'c mut Conn> {
    if conn.is_none() {
        let mut fresh = dial(w, target.url).await?;
        if attack == Attack::Numbers {
            let id = fresh.next_id();
            fresh
                .send(wire::subscribe(id, &target.record, Mode::Full))
                .await
                .ok()?;
        }
        *conn = Some(fresh);
    }
    conn.as_mut()
}

async fn dial(w: &Worker, url: &str) -> Option<Conn> {
    match w.dial(url).await {
        Ok(conn) => {
            w.counters.bump(Ctr::HostileConnects);
            Some(conn)
        }
        Err(_) => {
            w.counters.bump(Ctr::HostileCutOff);
            None
        }
    }
}

/// This tick's frames on an open connection.
async fn send_next(
    w: &Worker,
    conn: &mut Conn,
    attack: Attack,
    target: &Target<'_>,
    n: u64,
) -> Result<(), String> {
    let record = &target.record;
    let frames: u64 = match attack {
        Attack::DiffBomb => {
            let id = conn.next_id();
            conn.send(frames::diff_bomb(
                id,
                record,
                target.bomb,
                n.is_multiple_of(2),
            ))
            .await?;
            1
        }
        Attack::Numbers => {
            let id = conn.next_id();
            conn.send(frames::long_numbers(id, record, NUMBERS_BYTES))
                .await?;
            1
        }
        Attack::Deep => {
            let id = conn.next_id();
            let depth = if n.is_multiple_of(10) { 5_000 } else { 120 };
            conn.send(frames::deep(id, record, depth, n)).await?;
            1
        }
        Attack::Flood => {
            for _ in 0..FLOOD_BURST {
                let id = conn.next_id();
                let frame = if id.is_multiple_of(2) {
                    frames::small_write(id, record)
                } else {
                    wire::request(id, "mesh/noop", &serde_json::Value::Null)
                };
                conn.feed(frame).await?;
            }
            conn.flush().await?;
            FLOOD_BURST
        }
        Attack::Garbage => {
            if n.is_multiple_of(5) {
                conn.send_binary(garbage_bytes(n)).await?;
            } else {
                conn.send(frames::garbage(n)).await?;
            }
            1
        }
        Attack::Stalled | Attack::Oversized | Attack::Churn => 0,
    };
    w.counters.add(Ctr::HostileFrames, frames);
    Ok(())
}

/// Bytes that are no frame of any kind (not UTF-8 either).
fn garbage_bytes(n: u64) -> Vec<u8> {
    (0..64u64)
        .map(|i| (n.wrapping_mul(31).wrapping_add(i * 97) % 256) as u8 | 0x80)
        .collect()
}

/// Reads what has arrived without waiting: error replies (`code`) are counted, pings answered (a
/// hostile client that is cut off for missing pongs would test the keepalive, not its
/// attack).
async fn drain(w: &Worker, conn: &mut Conn) -> Result<(), String> {
    while let Some(next) = conn.recv().now_or_never() {
        let bytes = next.ok_or("connection closed")?;
        let Ok(frame) = serde_json::from_slice::<Incoming>(&bytes) else {
            continue;
        };
        let error = frame.payload.0.as_ref().is_some_and(|p| p.code.is_some());
        if frame.id.is_some() && error {
            w.counters.bump(Ctr::HostileRefused);
        } else if frame.command == wire::PING {
            conn.pong().await?;
        }
    }
    Ok(())
}

/// Oversized: a new connection, one frame over the limit, then see whether the server closes
/// it. Churn: a new connection, one subscribe, dropped without a close frame.
async fn one_shot(w: &Worker, attack: Attack, target: &Target<'_>, n: u64) {
    let Some(mut conn) = dial(w, target.url).await else {
        return;
    };
    let id = conn.next_id();
    let frame = match attack {
        Attack::Oversized => frames::oversized(id, &target.record, OVERSIZED_BYTES),
        _ => {
            let followed = &target.follow[n as usize % target.follow.len().max(1)];
            wire::subscribe(id, followed, Mode::Full)
        }
    };
    if conn.send(frame).await.is_err() {
        w.counters.bump(Ctr::HostileCutOff);
        return;
    }
    w.counters.bump(Ctr::HostileFrames);
    if attack == Attack::Oversized {
        // The server should end the connection; give it a moment to say so.
        let closed = tokio::time::timeout(Duration::from_secs(2), async {
            while conn.recv().await.is_some() {}
        })
        .await;
        if closed.is_ok() {
            w.counters.bump(Ctr::HostileCutOff);
        }
    }
}

/// Subscribes to everything `target.follow` names without reading a reply, then leaves the
/// socket unread for `STALL` (or until the window ends).
async fn stall(w: &Worker, target: &Target<'_>) {
    let Some(mut conn) = dial(w, target.url).await else {
        return;
    };
    for record in target.follow {
        let id = conn.next_id();
        if conn
            .feed(wire::subscribe(id, record, Mode::Full))
            .await
            .is_err()
        {
            break;
        }
        w.counters.bump(Ctr::HostileFrames);
    }
    let _ = conn.flush().await;
    let _ = tokio::time::timeout(STALL, w.ctl.reached(Phase::Draining)).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_is_bounded_and_named_once() {
        let names: std::collections::HashSet<&str> = ALL.iter().map(|a| a.name()).collect();
        assert_eq!(names.len(), ALL.len());
        for attack in ALL {
            assert!((1..=5_000).contains(&attack.per_second()), "{attack:?}");
        }
        assert!(std::str::from_utf8(&garbage_bytes(3)).is_err());
    }
}
