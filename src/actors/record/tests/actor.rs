//! The record actor itself on virtual time (`tokio::time::pause`: timers fire in order and the
//! clock jumps when everything waits, so minutes of linger take no real time and "nothing
//! happened by then" is exact). The registry is scripted: it answers every question to retire
//! as the test says and counts the actors that stopped.

use crate::actors::persistence::PersistRoutes;
use crate::actors::record::state::Deadlines;
use crate::actors::record::{
    ApplyWrite, GetSnapshot, RecordActor, RecordActorStopped, RecordEnv, RecordSettings,
    RetireRecordActor, RetireWhenIdle,
};
use crate::model::{RecordId, Strategy};
use crate::store::{HistoryLimits, MemoryStore, SharedStore};
use actix::prelude::*;
use serde_json::json;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::{Instant, sleep};

const LINGER: Duration = Duration::from_secs(5);

/// Answers `RetireRecordActor` with `grant`, noting when it was asked.
struct ScriptedRegistry {
    grant: bool,
    asked: Arc<Mutex<Vec<Instant>>>,
    stopped: Arc<AtomicUsize>,
}

impl Actor for ScriptedRegistry {
    type Context = Context<Self>;
}

impl Handler<RetireRecordActor> for ScriptedRegistry {
    type Result = bool;

    fn handle(&mut self, _: RetireRecordActor, _: &mut Context<Self>) -> bool {
        self.asked.lock().unwrap().push(Instant::now());
        self.grant
    }
}

impl Handler<RecordActorStopped> for ScriptedRegistry {
    type Result = ();

    fn handle(&mut self, _: RecordActorStopped, _: &mut Context<Self>) {
        self.stopped.fetch_add(1, Ordering::SeqCst);
    }
}

/// What a record actor runs with: `store`, a linger of [`LINGER`], the scripted `registry`.
fn env(
    registry: &Addr<ScriptedRegistry>,
    store: SharedStore,
    deadlines: Deadlines,
) -> Arc<RecordEnv> {
    Arc::new(RecordEnv {
        store,
        settings: RecordSettings {
            persist: Arc::new(PersistRoutes::default()),
            linger: LINGER,
            max_value_bytes: 1 << 20,
            max_write_batch: 64,
            max_write_batch_bytes: 1 << 20,
            max_pending_writes: 100,
            history: HistoryLimits {
                versions: 10,
                bytes: 1 << 20,
            },
            deadlines,
        },
        live: Arc::new(AtomicUsize::new(0)),
        registry: registry.clone().recipient(),
        retire: registry.clone().recipient(),
        shared_limits: Default::default(),
    })
}

/// A record actor on the memory store, its registry's record of questions and stops.
struct World {
    actor: Addr<RecordActor>,
    asked: Arc<Mutex<Vec<Instant>>>,
    stopped: Arc<AtomicUsize>,
    born: Instant,
}

impl World {
    async fn start(grant: bool) -> World {
        tokio::time::pause();
        let asked = Arc::new(Mutex::new(Vec::new()));
        let stopped = Arc::new(AtomicUsize::new(0));
        let registry = ScriptedRegistry {
            grant,
            asked: Arc::clone(&asked),
            stopped: Arc::clone(&stopped),
        }
        .start();
        let env = env(
            &registry,
            Arc::new(MemoryStore::new()),
            Deadlines::default(),
        );
        let id = RecordId::parse("doc:1", 64).unwrap();
        let actor = RecordActor::new(id, env, Default::default()).start();
        let born = Instant::now();
        actor.send(GetSnapshot).await.unwrap().unwrap();
        World {
            actor,
            asked,
            stopped,
            born,
        }
    }

    /// When the registry was asked, counted from the actor's start, in tenths of a second
    /// (tokio's timers round up to the next millisecond).
    fn asked(&self) -> Vec<u128> {
        let asked = self.asked.lock().unwrap();
        asked
            .iter()
            .map(|at| (*at - self.born).as_millis() / 100)
            .collect()
    }

    async fn write(&self, n: u64) {
        let write = ApplyWrite {
            value: Arc::new(json!({ "n": n })),
            strategy: Strategy::Replace,
            expected_version: None,
            writer: None,
            skip_schema: false,
        };
        self.actor.send(write).await.unwrap().unwrap();
    }

    /// Lets virtual time run until the actor stopped, at most `within`.
    async fn until_stopped(&self, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        while self.actor.connected() && Instant::now() < deadline {
            sleep(Duration::from_millis(10)).await;
        }
        !self.actor.connected()
    }
}

#[actix_rt::test]
async fn an_unused_actor_asks_after_a_whole_linger_and_stops_when_the_registry_agrees() {
    let world = World::start(true).await;
    assert!(world.until_stopped(LINGER * 3).await);
    // The first tick finds it just used; the second, a whole linger later, asks.
    assert_eq!(world.asked(), vec![100], "tenths of a second");
    sleep(Duration::from_millis(1)).await;
    assert_eq!(world.stopped.load(Ordering::SeqCst), 1);
}

#[actix_rt::test]
async fn an_actor_in_use_never_asks() {
    let world = World::start(true).await;
    for n in 0..20 {
        sleep(LINGER / 2).await;
        world.write(n).await;
    }
    // Ten lingers in use: never asked, still there.
    assert_eq!(world.asked(), Vec::<u128>::new());
    assert!(world.actor.connected());
    // Unused from now: it asks after the next tick that finds it unused.
    assert!(world.until_stopped(LINGER * 3).await);
    assert_eq!(world.asked().len(), 1);
}

#[actix_rt::test]
async fn a_refused_actor_keeps_serving_and_asks_again_each_tick() {
    let world = World::start(false).await;
    sleep(LINGER * 4 + Duration::from_millis(1)).await;
    assert_eq!(world.asked(), vec![100, 150, 200], "tenths of a second");
    world.write(1).await;
    assert!(world.actor.connected());
    assert_eq!(world.stopped.load(Ordering::SeqCst), 0);
}

#[actix_rt::test]
async fn a_leaving_actor_stops_as_soon_as_it_is_idle_without_lingering() {
    let world = World::start(true).await;
    world.actor.send(RetireWhenIdle).await.unwrap();
    assert!(world.until_stopped(LINGER / 2).await);
    // Within its next idleness check (10 ms), not after a linger.
    assert_eq!(world.asked(), vec![0], "tenths of a second");
}

#[actix_rt::test]
async fn a_lost_answer_is_checked_until_the_check_deadline_then_answered_unknown() {
    use super::fake_store::{FakeStore, Fault, Shared};
    tokio::time::pause();
    let registry = ScriptedRegistry {
        grant: false,
        asked: Default::default(),
        stopped: Default::default(),
    }
    .start();
    // The write's answer is lost and the store cannot tell afterwards.
    let store = Shared(Mutex::new(FakeStore {
        fault: Some(Fault::AnswerLostBeforeApplying),
        failing_checks: usize::MAX,
        ..FakeStore::default()
    }));
    let deadlines = Deadlines {
        check: Duration::from_secs(2),
        ..Deadlines::default()
    };
    let env = env(&registry, Arc::new(store), deadlines);
    let actor = RecordActor::new(
        RecordId::parse("doc:2", 64).unwrap(),
        env,
        Default::default(),
    )
    .start();
    let sent = Instant::now();
    let write = ApplyWrite {
        value: Arc::new(json!(1)),
        strategy: Strategy::Replace,
        expected_version: None,
        writer: None,
        skip_schema: false,
    };
    let answer = actor.send(write).await.unwrap();
    let waited = Instant::now() - sent;
    assert_eq!(answer.unwrap_err().code(), "EUNKNOWN");
    // Asked every 250 ms until the (shortened) deadline, then gave up: on virtual time.
    assert!(waited >= deadlines.check, "{waited:?}");
    assert!(
        waited < deadlines.check + deadlines.check_retry * 2,
        "{waited:?}"
    );
}
