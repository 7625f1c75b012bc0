//! Per-thread clocks: one task per thread (and actor kind, period and shutdown signal) sends a
//! [`Tick`] to every actor that joined it, instead of a timer in each actor. A timer per actor
//! (`run_interval`) is a boxed tokio `Sleep` (~120 bytes) and a timer-wheel entry; a watched
//! shutdown signal per actor is another boxed future (~140 bytes). With tens of thousands of
//! idle connections and record actors that is most of what an idle one costs beyond its socket.
//! Record actors tick their linger here; sessions their keepalive and, at shutdown, their close.
//!
//! What must stay true:
//! - An actor is ticked every `period` from when it joins, as its own interval did; only the
//!   phase is the clock's, so the first tick comes within one period.
//! - The members are spread over up to [`MAX_SLICES`] slices, ticked in turn: one period's
//!   ticks (tens of thousands of pings) never land on a thread at one instant, where they
//!   would hold up every write queued behind them. Each member is in one slice, so it is
//!   ticked exactly once a period. Measured with 10,000 connections writing once a second
//!   and pinged every 5 s: 16 slices (~300 pings per thread at a time) took the p99 from 3 to
//!   17 ms; with 256 (~20 at a time) it is where one timer per session left it.
//! - With a shutdown signal, every member gets [`Tick::Shutdown`] once, when the signal turns
//!   true or its sender is dropped, and an actor joining after that gets it at once: none is
//!   missed or told twice, whichever thread flips it.
//! - A clock holds weak addresses only: it never keeps an actor alive. A stopped actor is
//!   forgotten at the next tick (its address's allocation lives until then).
//! - The clock's task runs while its thread has members and ends with the last one; if it is
//!   dropped (its runtime stopped), the next actor to join starts another.

use actix::WeakAddr;
use actix::prelude::*;
use std::any::{Any, TypeId};
use std::cell::RefCell;
use std::rc::{Rc, Weak};
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::{Instant, MissedTickBehavior};

/// Most slices a period is cut into.
const MAX_SLICES: usize = 256;

/// Shortest time between two slices' ticks.
const MIN_SLICE: Duration = Duration::from_millis(10);

/// How many slices `period` is cut into: as many as fit at least [`MIN_SLICE`] apart.
fn slices(period: Duration) -> usize {
    let fit = period.as_millis() / MIN_SLICE.as_millis();
    (fit as usize).clamp(1, MAX_SLICES)
}

/// What a clock sends its members.
#[derive(Message, Clone, Copy, Debug, PartialEq, Eq)]
#[rtype(result = "()")]
pub(crate) enum Tick {
    /// Another period has passed.
    Period,
    /// The clock's shutdown signal turned true.
    Shutdown,
}

/// An actor a clock can tick.
pub(crate) trait Ticked: Actor<Context = Context<Self>> + Handler<Tick> {}

impl<A: Actor<Context = Context<A>> + Handler<Tick>> Ticked for A {}

/// Which clock: members of one kind, ticked every `period`, told when `shutdown` turns true.
struct Key {
    kind: TypeId,
    period: Duration,
    shutdown: Option<watch::Receiver<bool>>,
}

impl Key {
    fn same(&self, other: &Key) -> bool {
        self.kind == other.kind
            && self.period == other.period
            && match (&self.shutdown, &other.shutdown) {
                (None, None) => true,
                (Some(a), Some(b)) => a.same_channel(b),
                _ => false,
            }
    }
}

/// One clock's members, whatever their kind.
trait Members {
    /// Sends `tick` to the live members of one slice (all slices when `slice` is `None`) and
    /// forgets the others of those; whether any member is left.
    fn tick(&mut self, slice: Option<usize>, tick: Tick) -> bool;
    fn as_any(&mut self) -> &mut dyn Any;
}

/// Members by slice; joiners go to the slices in turn.
struct Of<A: Actor> {
    slices: Vec<Vec<WeakAddr<A>>>,
    next: usize,
}

impl<A: Actor> Of<A> {
    fn new(slices: usize) -> Self {
        Of {
            slices: (0..slices).map(|_| Vec::new()).collect(),
            next: 0,
        }
    }

    fn push(&mut self, member: WeakAddr<A>) {
        self.slices[self.next].push(member);
        self.next = (self.next + 1) % self.slices.len();
    }
}

impl<A: Ticked> Members for Of<A> {
    fn tick(&mut self, slice: Option<usize>, tick: Tick) -> bool {
        let send = |member: &WeakAddr<A>| match member.upgrade() {
            Some(addr) if addr.connected() => {
                addr.do_send(tick);
                true
            }
            _ => false,
        };
        match slice {
            Some(at) => self.slices[at].retain(send),
            None => self.slices.iter_mut().for_each(|slice| slice.retain(send)),
        }
        self.slices.iter().any(|slice| !slice.is_empty())
    }

    fn as_any(&mut self) -> &mut dyn Any {
        self
    }
}

struct Clock {
    key: Key,
    members: Box<dyn Members>,
    /// Alive while the clock's task is: the task holds the only strong count, so a task that
    /// ended, or was dropped with its runtime, leaves nothing to upgrade.
    task: Weak<()>,
    /// The shutdown has been sent to the members (or the task started after it): a member
    /// joining now is told by `join` itself.
    told: bool,
}

/// Whether a shutdown signal says stop: it turned true, or its sender is gone.
fn stopping(signal: &watch::Receiver<bool>) -> bool {
    *signal.borrow() || signal.has_changed().is_err()
}

thread_local! {
    /// This thread's clocks: usually one per actor kind (a server's actors share settings).
    static CLOCKS: RefCell<Vec<Clock>> = const { RefCell::new(Vec::new()) };
}

/// Ticks `actor` every `period` from now on, until it stops, and tells it when `shutdown`
/// turns true (at once if it already is). Called on the actor's thread.
pub(crate) fn join<A: Ticked>(
    period: Duration,
    shutdown: Option<&watch::Receiver<bool>>,
    actor: WeakAddr<A>,
) {
    let key = Key {
        kind: TypeId::of::<A>(),
        period,
        shutdown: shutdown.cloned(),
    };
    let shut = shutdown.is_some_and(stopping);
    let tell = actor.clone();
    let (start, tell_now) = CLOCKS.with_borrow_mut(|clocks| {
        let at = match clocks.iter().position(|clock| clock.key.same(&key)) {
            Some(at) => at,
            None => {
                clocks.push(Clock {
                    key: Key {
                        kind: key.kind,
                        period,
                        shutdown: key.shutdown.clone(),
                    },
                    members: Box::new(Of::<A>::new(slices(period))),
                    task: Weak::new(),
                    told: false,
                });
                clocks.len() - 1
            }
        };
        let clock = &mut clocks[at];
        let members = clock.members.as_any().downcast_mut::<Of<A>>();
        members
            .expect("a clock's members are of its kind")
            .push(actor);
        // Once shut down, a running task that has not told its members yet will tell this
        // one with them; otherwise it is told here, once.
        let running = clock.task.strong_count() > 0;
        let tell_now = shut && (clock.told || !running);
        if running {
            return (None, tell_now);
        }
        // A task started after the shutdown need not watch the signal.
        clock.told = shut;
        let alive = Rc::new(());
        clock.task = Rc::downgrade(&alive);
        (Some(alive), tell_now)
    });
    if tell_now && let Some(addr) = tell.upgrade() {
        addr.do_send(Tick::Shutdown);
    }
    if let Some(alive) = start {
        let watch = key.shutdown.clone().filter(|_| !shut);
        actix::spawn(run(key, watch, alive));
    }
}

/// The clock's task: a tick to each live member every period, one slice at a time, and the
/// shutdown to all when `shutdown` turns true. `_alive` is the clock's sign of life (see
/// [`Clock::task`]).
async fn run(key: Key, mut shutdown: Option<watch::Receiver<bool>>, _alive: Rc<()>) {
    let slices = slices(key.period);
    let every = key.period / slices as u32;
    let mut ticks = tokio::time::interval_at(Instant::now() + every, every);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut slice = 0;
    // Watched until it says stop; looked at first, so a flip after the first member looked
    // and before this task started is seen too.
    loop {
        let shut = shutdown.as_mut().is_some_and(|signal| {
            signal.borrow_and_update();
            stopping(signal)
        });
        let tick = match &mut shutdown {
            Some(_) if shut => {
                shutdown = None;
                Tick::Shutdown
            }
            Some(signal) => tokio::select! {
                _ = ticks.tick() => Tick::Period,
                // Turned true, or its sender went: the loop's first look decides.
                _ = signal.changed() => continue,
            },
            None => {
                ticks.tick().await;
                Tick::Period
            }
        };
        let to = match tick {
            Tick::Period => {
                slice = (slice + 1) % slices;
                Some(slice)
            }
            Tick::Shutdown => None,
        };
        if !send(&key, to, tick) {
            // No await between the last look and the end: an actor joining from now on finds
            // the clock stopped and starts it again.
            return;
        }
    }
}

/// Sends `tick` to the clock's live members of `slice` (all when `None`); whether any is left.
fn send(key: &Key, slice: Option<usize>, tick: Tick) -> bool {
    CLOCKS.with_borrow_mut(|clocks| {
        let Some(at) = clocks.iter().position(|clock| clock.key.same(key)) else {
            return false;
        };
        let clock = &mut clocks[at];
        clock.told |= tick == Tick::Shutdown;
        let left = clock.members.tick(slice, tick);
        if !left {
            // A clock without members is dropped with its task (a server that is gone leaves
            // no clock behind on its threads).
            clocks.swap_remove(at);
        }
        left
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::Mutex;

    /// Records what it is sent.
    struct Member(Arc<Mutex<Vec<Tick>>>);

    impl Actor for Member {
        type Context = Context<Self>;
    }

    impl Handler<Tick> for Member {
        type Result = ();
        fn handle(&mut self, tick: Tick, _: &mut Context<Self>) {
            self.0.lock().unwrap().push(tick);
        }
    }

    fn member() -> (Addr<Member>, Arc<Mutex<Vec<Tick>>>) {
        let seen = Arc::new(Mutex::new(Vec::new()));
        (Member(seen.clone()).start(), seen)
    }

    #[actix::test]
    async fn members_are_ticked_each_period_and_told_of_the_shutdown_once() {
        let (signal, receiver) = watch::channel(false);
        let (addr, seen) = member();
        join(Duration::from_millis(20), Some(&receiver), addr.downgrade());
        tokio::time::sleep(Duration::from_millis(70)).await;
        let periods = seen.lock().unwrap().len();
        assert!((2..=4).contains(&periods), "{periods} ticks in 70 ms");
        signal.send(true).unwrap();
        tokio::time::sleep(Duration::from_millis(10)).await;
        // Periods go on: a member still there after its shutdown tick is ticked as before.
        assert!(seen.lock().unwrap().contains(&Tick::Shutdown));

        // Joining after the shutdown is told at once.
        let (late, late_seen) = member();
        join(Duration::from_millis(20), Some(&receiver), late.downgrade());
        tokio::time::sleep(Duration::from_millis(5)).await;
        assert_eq!(late_seen.lock().unwrap().first(), Some(&Tick::Shutdown));
        let shutdowns = seen
            .lock()
            .unwrap()
            .iter()
            .filter(|t| **t == Tick::Shutdown)
            .count();
        assert_eq!(shutdowns, 1);
    }

    #[actix::test]
    async fn a_join_after_the_flip_but_before_the_clock_looked_is_told_once() {
        let (signal, receiver) = watch::channel(false);
        let (first, _) = member();
        join(Duration::from_secs(60), Some(&receiver), first.downgrade());
        // The clock's task has not run since: the flip and the join come before it looks.
        signal.send(true).unwrap();
        let (second, seen) = member();
        join(Duration::from_secs(60), Some(&receiver), second.downgrade());
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert_eq!(*seen.lock().unwrap(), vec![Tick::Shutdown]);
    }

    #[actix::test]
    async fn a_dropped_signal_is_a_shutdown() {
        let (signal, receiver) = watch::channel(false);
        let (addr, seen) = member();
        join(Duration::from_secs(60), Some(&receiver), addr.downgrade());
        drop(signal);
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert_eq!(*seen.lock().unwrap(), vec![Tick::Shutdown]);
    }

    #[actix::test]
    async fn a_clock_ends_with_its_last_member_and_starts_again() {
        let (addr, _) = member();
        join(Duration::from_millis(10), None, addr.downgrade());
        drop(addr);
        tokio::time::sleep(Duration::from_millis(40)).await;
        assert_eq!(CLOCKS.with_borrow(|clocks| clocks.len()), 0);

        let (again, seen) = member();
        join(Duration::from_millis(10), None, again.downgrade());
        tokio::time::sleep(Duration::from_millis(35)).await;
        assert!(!seen.lock().unwrap().is_empty());
    }

    #[actix::test]
    async fn clocks_of_other_signals_or_periods_are_apart() {
        let (_a_signal, a) = watch::channel(false);
        let (b_signal, b) = watch::channel(false);
        let (first, first_seen) = member();
        let (second, second_seen) = member();
        join(Duration::from_secs(60), Some(&a), first.downgrade());
        join(Duration::from_secs(60), Some(&b), second.downgrade());
        b_signal.send(true).unwrap();
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert!(first_seen.lock().unwrap().is_empty());
        assert_eq!(*second_seen.lock().unwrap(), vec![Tick::Shutdown]);
    }

    #[actix::test]
    async fn a_periods_ticks_are_spread_over_its_slices() {
        tokio::time::pause();
        // Four slices, 10 ms apart.
        let period = Duration::from_millis(40);
        let members: Vec<_> = (0..4).map(|_| member()).collect();
        for (addr, _) in &members {
            join(period, None, addr.downgrade());
        }
        let ticks = || -> Vec<usize> {
            members
                .iter()
                .map(|(_, seen)| seen.lock().unwrap().len())
                .collect()
        };
        tokio::time::sleep(Duration::from_millis(15)).await;
        assert_eq!(ticks().iter().sum::<usize>(), 1);
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert_eq!(ticks().iter().sum::<usize>(), 2);
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert_eq!(ticks(), vec![1; 4], "each once a period");
        tokio::time::sleep(Duration::from_millis(40)).await;
        assert_eq!(ticks(), vec![2; 4]);
    }
}
