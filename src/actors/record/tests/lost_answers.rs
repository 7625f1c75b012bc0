//! Store calls whose answer never came or that could not be made: the core finds out what
//! happened before it answers the client.

use super::*;

#[test]
fn a_lost_answer_for_an_applied_write_is_found_and_acknowledged() {
    // Issue scenario 3: Redis stalled past the response timeout, then ran the write.
    let mut h = Harness::new(live(json!(1), 1));
    h.store.fault = Some(Fault::AnswerLostAfterApplying);
    h.write(1, json!(2), Strategy::Replace);
    assert_eq!(
        h.take_seen(),
        vec![
            Seen::Update(2, json!(2)),
            Seen::Persist(2),
            reply(1, "ok v2 changed=true"),
        ]
    );
}

#[test]
fn a_lost_answer_for_a_write_never_applied_is_unavailable() {
    let mut h = Harness::new(live(json!(1), 1));
    h.store.fault = Some(Fault::AnswerLostBeforeApplying);
    h.write(1, json!(2), Strategy::Replace);
    assert_eq!(h.take_seen(), vec![reply(1, "EUNAVAILABLE")]);
    assert_eq!(h.store.record, live(json!(1), 1));
}

#[test]
fn a_store_that_cannot_be_asked_gives_unknown_then_a_reload() {
    let mut h = Harness::new(live(json!(1), 1));
    h.store.fault = Some(Fault::AnswerLostAfterApplying);
    h.store.failing_checks = usize::MAX;
    h.write(1, json!(2), Strategy::Replace);
    assert!(h.take_seen().is_empty(), "still asking");
    h.fire(Timer::Check);
    h.now += Deadlines::default().check + Duration::from_secs(1);
    h.fire(Timer::Check);
    assert_eq!(h.take_seen(), vec![reply(1, "EUNKNOWN")]);
    // Once the store answers, the write that did happen reaches subscribers.
    h.store.failing_checks = 0;
    h.fire(Timer::Reload);
    assert_eq!(h.take_seen(), vec![Seen::Resync(2, json!(2))]);
}

#[test]
fn a_lost_answer_with_other_writes_since_is_unknown_and_persisted() {
    let mut h = Harness::new(live(json!(1), 1));
    h.store.fault = Some(Fault::AnswerLostAfterApplying);
    h.store.failing_checks = 1;
    h.write(1, json!(2), Strategy::Replace);
    // Before the store can be asked again, another instance writes on top.
    h.store.other_writes(json!(3));
    h.fire(Timer::Check);
    assert_eq!(
        h.take_seen(),
        vec![
            reply(1, "EUNKNOWN"),
            Seen::Persist(3),
            Seen::Resync(3, json!(3)),
        ]
    );
}

#[test]
fn a_store_refusing_the_connection_is_unavailable_at_once() {
    let mut h = Harness::new(live(json!(1), 1));
    h.store.fault = Some(Fault::Down);
    h.write(1, json!(2), Strategy::Replace);
    assert_eq!(h.take_seen(), vec![reply(1, "EUNAVAILABLE")]);
}

#[test]
fn a_delete_whose_answer_was_lost_is_found() {
    let mut h = Harness::new(live(json!(1), 3));
    h.store.fault = Some(Fault::AnswerLostAfterApplying);
    h.delete(1);
    assert_eq!(
        h.take_seen(),
        vec![
            Seen::Deleted(3),
            Seen::PersistDeletion(3),
            reply(1, "deleted v3")
        ]
    );
}

#[test]
fn a_delete_whose_answer_was_lost_while_the_store_lost_everything_still_deletes() {
    // The chaos run's case: Redis was killed with the delete in flight and came back empty.
    let mut h = Harness::new(live(json!({"n": 211}), 211));
    h.store.fault = Some(Fault::AnswerLostBeforeApplying);
    h.store.failing_checks = 1;
    h.delete(1);
    h.store.record = Stored::default();
    h.fire(Timer::Check);
    assert_eq!(
        h.take_seen(),
        vec![
            Seen::Deleted(211),
            Seen::PersistDeletion(211),
            reply(1, "deleted v211")
        ]
    );
    assert_eq!(
        h.store.record,
        Stored::absent(211 + WRITE_BACK_JUMP),
        "not written back as live"
    );
}
