//! The linger tick: one clock per thread (and linger length) ticks every record actor living
//! on that thread, instead of a timer in each actor (`run_interval`: a boxed tokio `Sleep`,
//! ~128 bytes per live actor, and one timer-wheel entry each).
//!
//! What must stay true:
//! - An actor is ticked every `period` from when it joins, as its own interval did; only the
//!   phase is the clock's, so an unused idle actor still asks to retire after one to two
//!   periods ([`super::lifecycle`] needs a whole tick without use).
//! - A clock holds weak addresses only: it never keeps an actor alive. A stopped actor is
//!   forgotten at the next tick (its address's allocation lives until then).
//! - The clock's task runs while its thread has actors to tick and ends with the last one; if
//!   it is dropped (its runtime stopped), the next actor to join starts another.

use super::RecordActor;
use actix::WeakAddr;
use actix::prelude::*;
use std::cell::RefCell;
use std::rc::{Rc, Weak};
use std::time::Duration;
use tokio::time::{Instant, MissedTickBehavior};

/// The linger tick, sent by the clock of the actor's thread.
#[derive(Message)]
#[rtype(result = "()")]
pub(super) struct LingerTick;

/// The actors of one thread ticked every `period`.
struct Clock {
    period: Duration,
    actors: Vec<WeakAddr<RecordActor>>,
    /// Alive while the clock's task is: the task holds the only strong count, so a task that
    /// ended, or was dropped with its runtime, leaves nothing to upgrade.
    task: Weak<()>,
}

thread_local! {
    /// This thread's clocks: usually one (every actor of a server has the same linger).
    static CLOCKS: RefCell<Vec<Clock>> = const { RefCell::new(Vec::new()) };
}

/// Ticks `actor` every `period` from now on, until it stops. Called on the actor's thread.
pub(super) fn join(period: Duration, actor: WeakAddr<RecordActor>) {
    let start = CLOCKS.with_borrow_mut(|clocks| {
        let clock = match clocks.iter().position(|clock| clock.period == period) {
            Some(at) => &mut clocks[at],
            None => {
                clocks.push(Clock {
                    period,
                    actors: Vec::new(),
                    task: Weak::new(),
                });
                let last = clocks.len() - 1;
                &mut clocks[last]
            }
        };
        clock.actors.push(actor);
        if clock.task.strong_count() > 0 {
            return None;
        }
        let alive = Rc::new(());
        clock.task = Rc::downgrade(&alive);
        Some(alive)
    });
    if let Some(alive) = start {
        actix::spawn(run(period, alive));
    }
}

/// The clock's task: a tick to each live actor every `period`. `_alive` is the clock's
/// sign of life (see [`Clock::task`]).
async fn run(period: Duration, _alive: Rc<()>) {
    let mut ticks = tokio::time::interval_at(Instant::now() + period, period);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        if !tick(period) {
            // No await between the last look and the end: an actor joining from now on finds
            // the clock stopped and starts it again.
            return;
        }
    }
}

/// Ticks the clock's live actors and forgets the others; whether any is left.
fn tick(period: Duration) -> bool {
    CLOCKS.with_borrow_mut(|clocks| {
        let Some(clock) = clocks.iter_mut().find(|clock| clock.period == period) else {
            return false;
        };
        clock.actors.retain(|actor| match actor.upgrade() {
            Some(addr) if addr.connected() => {
                addr.do_send(LingerTick);
                true
            }
            _ => false,
        });
        !clock.actors.is_empty()
    })
}
