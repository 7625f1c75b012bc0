//! Other instances' changes: lost races, remote deletions and re-creations, gaps, reconnects
//! and a store that lost everything.

use super::*;

#[test]
fn a_lost_race_follows_the_published_versions_then_retries() {
    let mut h = Harness::new(live(json!({"n": 1}), 1));
    let v2 = h.store.other_writes(json!({"n": 2}));
    let v3 = h.store.other_writes(json!({"n": 3}));
    h.write(1, json!({"mine": true}), Strategy::Merge);
    // Conflict: waiting for versions 2 and 3, nothing answered yet.
    assert!(h.take_seen().is_empty());
    h.deliver(v2);
    h.deliver(v3);
    assert_eq!(
        h.take_seen(),
        vec![
            Seen::Update(2, json!({"n": 2})),
            Seen::Update(3, json!({"n": 3})),
            Seen::Update(4, json!({"n": 3, "mine": true})),
            Seen::Persist(4),
            reply(1, "ok v4 changed=true"),
        ]
    );
    // The catch-up timer that fires late belongs to a finished phase.
    h.fire(Timer::CatchUp);
    assert!(h.take_seen().is_empty());
}

#[test]
fn a_lost_race_whose_messages_never_come_reloads() {
    let mut h = Harness::new(live(json!({"n": 1}), 1));
    h.store.other_writes(json!({"n": 2}));
    h.write(1, json!({"mine": true}), Strategy::Merge);
    assert!(h.take_seen().is_empty());
    h.fire(Timer::CatchUp);
    assert_eq!(
        h.take_seen(),
        vec![
            Seen::Resync(2, json!({"n": 2})),
            Seen::Update(3, json!({"n": 2, "mine": true})),
            Seen::Persist(3),
            reply(1, "ok v3 changed=true"),
        ]
    );
}

#[test]
fn a_write_racing_a_deletion_learns_of_it_and_creates_anew() {
    let mut h = Harness::new(live(json!({"old": true}), 4));
    // Deleted elsewhere; the message has not arrived.
    let deletion = h.store.other_deletes();
    h.write(1, json!({"a": 1}), Strategy::Merge);
    assert_eq!(
        h.take_seen(),
        vec![
            Seen::Deleted(4),
            // Merged onto nothing: the old value is gone for good.
            Seen::Update(5, json!({"a": 1})),
            Seen::Persist(5),
            reply(1, "ok v5 changed=true"),
        ]
    );
    // The late deletion message is old news.
    h.deliver(deletion);
    assert!(h.take_seen().is_empty());
}

#[test]
fn a_record_recreated_elsewhere_is_never_written_over_with_the_old_value() {
    // Issue scenario 2: at version 10 here; deleted and created again elsewhere, unheard of.
    let mut h = Harness::new(live(json!({"old": 1}), 10));
    h.store.other_deletes();
    h.store.other_writes(json!({"new": 1}));
    h.write(1, json!({"a": 1}), Strategy::Merge);
    // The conflict shows a newer live record: follow it; its messages were lost.
    h.fire(Timer::CatchUp);
    assert_eq!(
        h.take_seen(),
        vec![
            Seen::Resync(11, json!({"new": 1})),
            Seen::Update(12, json!({"new": 1, "a": 1})),
            Seen::Persist(12),
            reply(1, "ok v12 changed=true"),
        ]
    );
    assert_eq!(h.store.record, live(json!({"new": 1, "a": 1}), 12));
}

#[test]
fn a_deletion_missed_during_a_reconnect_is_applied_not_undone() {
    // Issue scenario 1: the pub/sub connection dropped while another instance deleted.
    let mut h = Harness::new(live(json!({"x": 1}), 1));
    let _lost = h.store.other_deletes();
    h.deliver(RemoteChange::Resync);
    assert_eq!(h.take_seen(), vec![Seen::Deleted(1)]);
    assert_eq!(h.store.record, Stored::absent(1), "nothing written back");
    assert_eq!(h.core.record(), &Stored::absent(1));
}

#[test]
fn a_store_that_lost_everything_gets_our_state_back() {
    let mut h = Harness::new(live(json!({"x": 5}), 5));
    h.store.record = Stored::default();
    h.deliver(RemoteChange::Resync);
    // Past any version another instance may have shown before the loss.
    let back = 5 + WRITE_BACK_JUMP;
    assert_eq!(h.take_seen(), vec![Seen::Resync(back, json!({"x": 5}))]);
    assert_eq!(h.store.record, live(json!({"x": 5}), back));
    h.write(1, json!({"x": 6}), Strategy::Replace);
    assert_eq!(h.store.record, live(json!({"x": 6}), back + 1));
}

#[test]
fn a_write_back_that_finds_a_newer_state_takes_it() {
    // Another instance, further ahead, wrote its copy back first.
    let mut h = Harness::new(live(json!(10), 10));
    h.store.record = live(json!(11), 11 + WRITE_BACK_JUMP);
    h.deliver(RemoteChange::Resync);
    assert_eq!(
        h.take_seen(),
        vec![Seen::Resync(11 + WRITE_BACK_JUMP, json!(11))]
    );
}

#[test]
fn a_gap_reloads_and_resyncs() {
    let mut h = Harness::new(live(json!(1), 1));
    h.store.other_writes(json!(2));
    let v3 = h.store.other_writes(json!(3));
    h.deliver(v3);
    assert_eq!(h.take_seen(), vec![Seen::Resync(3, json!(3))]);
}

#[test]
fn a_failed_reload_is_retried() {
    let mut h = Harness::new(live(json!(1), 1));
    h.store.other_writes(json!(2));
    h.store.failing_loads = 1;
    h.deliver(RemoteChange::Resync);
    assert!(h.take_seen().is_empty());
    assert!(!h.core.is_idle(), "a reload is owed");
    h.fire(Timer::Reload);
    assert_eq!(h.take_seen(), vec![Seen::Resync(2, json!(2))]);
    assert!(h.core.is_idle());
}

#[test]
fn a_reconnect_during_a_write_waits_for_the_write() {
    let mut h = Harness::new(live(json!(1), 1));
    let write = h.queued(1, json!(2), Strategy::Replace);
    // The write is in flight when the reconnect notice comes: it waits in the backlog.
    let effects = h.core.write(write);
    assert!(matches!(effects.as_slice(), [Effect::Write { .. }]));
    assert!(h.core.remote(RemoteChange::Resync).is_empty());
    let Some(Effect::Write {
        expected,
        values,
        op,
        ..
    }) = effects.into_iter().next()
    else {
        unreachable!("matched above");
    };
    let result = h.store.write(expected, values, op);
    let effects = h.core.written(result, h.now);
    h.run(effects);
    assert_eq!(
        h.take_seen(),
        vec![
            Seen::Update(2, json!(2)),
            Seen::Persist(2),
            reply(1, "ok v2 changed=true"),
        ]
    );
    // The reload it then made found the same state: nothing more.
    assert!(h.core.is_idle());
}

#[test]
fn an_update_function_runs_again_on_the_fresh_value_after_a_lost_race() {
    let mut h = Harness::new(live(json!(1), 1));
    h.store.other_writes(json!(10));
    let increment = Edit::Update(Arc::new(|current: Option<&Value>| {
        Ok(json!(current.and_then(Value::as_i64).unwrap_or(0) + 1))
    }));
    let write = h.queued_change(1, increment);
    let effects = h.core.write(write);
    h.run(effects);
    h.fire(Timer::CatchUp);
    assert_eq!(
        h.take_seen(),
        vec![
            Seen::Resync(2, json!(10)),
            Seen::Update(3, json!(11)),
            Seen::Persist(3),
            reply(1, "ok v3 changed=true"),
        ]
    );
}
