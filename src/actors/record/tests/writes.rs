//! Writes, batches and deletes when the store answers: what is applied, pushed, persisted
//! and refused.

use super::*;

#[test]
fn a_write_is_applied_persisted_and_answered() {
    let mut h = Harness::new(live(json!({"a": 1}), 1));
    h.write(1, json!({"b": 2}), Strategy::Merge);
    assert_eq!(
        h.take_seen(),
        vec![
            Seen::Update(2, json!({"a": 1, "b": 2})),
            Seen::Persist(2),
            reply(1, "ok v2 changed=true"),
        ]
    );
    // Its own echo changes nothing.
    h.deliver(RemoteChange::Updated {
        version: 2,
        value: Arc::new(json!({"a": 1, "b": 2})),
        patch: None,
    });
    assert!(h.take_seen().is_empty());
    assert!(h.core.is_idle());
}

#[test]
fn a_delete_leaves_a_tombstone_and_a_new_record_continues_after_it() {
    let mut h = Harness::new(live(json!(1), 3));
    h.delete(1);
    assert_eq!(
        h.take_seen(),
        vec![
            Seen::Deleted(3),
            Seen::PersistDeletion(3),
            reply(1, "deleted v3")
        ]
    );
    // Deleting what is already gone changes nothing: it vouches for the tombstone.
    h.delete(2);
    assert_eq!(h.take_seen(), vec![Seen::Vouch, reply(2, "absent")]);
    h.write(3, json!("again"), Strategy::Replace);
    assert_eq!(
        h.take_seen(),
        vec![
            Seen::Update(4, json!("again")),
            Seen::Persist(4),
            reply(3, "ok v4 changed=true"),
        ]
    );
}

#[test]
fn a_remote_deletion_then_creation_reaches_subscribers_in_order() {
    let mut h = Harness::new(live(json!(1), 1));
    let deleted = h.store.other_deletes();
    let created = h.store.other_writes(json!("new"));
    h.deliver(deleted);
    h.deliver(created);
    assert_eq!(
        h.take_seen(),
        vec![Seen::Deleted(1), Seen::Update(2, json!("new"))]
    );
}

#[test]
fn queued_writes_beyond_the_limit_are_refused() {
    let mut limits = limits();
    limits.max_pending = 2;
    let mut h = Harness::with_limits(live(json!(0), 1), limits);
    // Hold the first write in flight by losing its answer and failing the check.
    h.store.fault = Some(Fault::AnswerLostBeforeApplying);
    h.store.failing_checks = 1;
    h.write(1, json!(1), Strategy::Replace);
    h.write(2, json!(2), Strategy::Replace);
    h.write(3, json!(3), Strategy::Replace);
    h.write(4, json!(4), Strategy::Replace);
    assert_eq!(h.take_seen(), vec![reply(4, "ELIMIT")]);
    h.fire(Timer::Check);
    assert_eq!(
        h.take_seen(),
        vec![
            reply(1, "EUNAVAILABLE"),
            Seen::Update(2, json!(2)),
            Seen::Update(3, json!(3)),
            Seen::Persist(3),
            reply(2, "ok v2 changed=true"),
            reply(3, "ok v3 changed=true"),
        ]
    );
}

#[test]
fn a_batch_stops_at_its_byte_limit() {
    let mut limits = limits();
    limits.batch.max_bytes = 30;
    let mut h = Harness::with_limits(live(json!(0), 1), limits);
    // The first write is in flight; the next three queue behind it.
    h.store.fault = Some(Fault::AnswerLostBeforeApplying);
    h.store.failing_checks = 1;
    h.write(1, json!("first"), Strategy::Replace);
    for (ticket, text) in [(2, "a".repeat(20)), (3, "b".repeat(20)), (4, "c".repeat(5))] {
        h.write(ticket, json!(text), Strategy::Replace);
    }
    h.fire(Timer::Check);
    let seen = h.take_seen();
    // Three writes, two store calls: 22 + 22 bytes do not fit in 30, 22 + 7 do.
    let replies: Vec<_> = seen
        .iter()
        .filter(|s| matches!(s, Seen::Reply(..)))
        .collect();
    assert_eq!(replies.len(), 4);
    let persisted: Vec<_> = seen
        .iter()
        .filter(|s| matches!(s, Seen::Persist(_)))
        .collect();
    assert_eq!(persisted, vec![&Seen::Persist(2), &Seen::Persist(4)]);
}

#[test]
fn a_write_that_changes_nothing_sends_nothing() {
    let mut h = Harness::new(live(json!({"a": 1}), 1));
    h.write(1, json!({"a": 1}), Strategy::Merge);
    // No update, no store call; the reply vouches for the current state (persisted again
    // under `ack = "flushed"`, where it may not have landed yet).
    assert_eq!(
        h.take_seen(),
        vec![Seen::Vouch, reply(1, "ok v1 changed=false")]
    );
}

#[test]
fn a_batch_with_a_change_persists_once_and_vouches_for_nothing_more() {
    let mut h = Harness::new(live(json!({"a": 1}), 1));
    // Queued behind a write in flight, the three form one batch: the unchanged one is
    // covered by the batch's persist.
    let effects = h
        .core
        .write(h.queued(1, json!({"a": 2}), Strategy::Replace));
    let more = h
        .core
        .write(h.queued(2, json!({"a": 3}), Strategy::Replace));
    let same = h
        .core
        .write(h.queued(3, json!({"a": 3}), Strategy::Replace));
    h.run(effects.into_iter().chain(more).chain(same).collect());
    let seen = h.take_seen();
    assert!(!seen.contains(&Seen::Vouch), "{seen:?}");
    assert!(seen.contains(&reply(3, "ok v3 changed=false")), "{seen:?}");
}

#[test]
fn a_merge_too_large_is_refused_alone() {
    let mut limits = limits();
    limits.batch.max_value_bytes = 20;
    let mut h = Harness::with_limits(live(json!({"a": 1}), 1), limits);
    h.write(1, json!({"b": "x".repeat(30)}), Strategy::Merge);
    assert_eq!(h.take_seen(), vec![reply(1, "ELIMIT")]);
}

#[test]
fn a_delete_when_the_store_lost_the_record_deletes_it_and_keeps_the_tombstone() {
    // Redis restarted empty; this instance still holds version 26.
    let mut h = Harness::new(live(json!({"n": 26}), 26));
    h.store.record = Stored::default();
    h.delete(1);
    assert_eq!(
        h.take_seen(),
        vec![
            Seen::Deleted(26),
            Seen::PersistDeletion(26),
            reply(1, "deleted v26")
        ]
    );
    assert_eq!(h.store.record, Stored::absent(26 + WRITE_BACK_JUMP));
    // And a new record continues after it.
    h.write(2, json!("new"), Strategy::Replace);
    assert_eq!(h.store.record, live(json!("new"), 27 + WRITE_BACK_JUMP));
}
