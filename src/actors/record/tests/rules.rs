//! Write rules in the record's queue: the schema judges the value that would be stored, value
//! guards judge a client's proposal against the current value, and an async guard holds the
//! record's later writes until it answers.

use super::*;
use crate::connection::Connection;
use crate::rules::{ProposedWrite, Schema, ValueGuard, WriteRules};

fn todo_schema() -> WriteRules {
    let schema = json!({
        "type": "object",
        "properties": {"title": {"type": "string"}, "done": {"type": "boolean"}},
        "additionalProperties": false
    });
    WriteRules {
        schema: Some(Arc::new(Schema::compile(&schema, "todo").unwrap())),
        ..WriteRules::default()
    }
}

fn client(user: &str) -> Option<Connection> {
    Some(Connection::new("c1", json!({ "user": user })))
}

fn reply(ticket: u32, text: &str) -> Seen {
    Seen::Reply(ticket, text.to_string())
}

/// Only the owner may change `owner`.
fn owner_guard() -> ValueGuard {
    ValueGuard::sync(|write: &ProposedWrite| {
        let owner = |v: Option<&Value>| v.and_then(|v| v.get("owner")).cloned();
        let before = owner(write.current.as_deref());
        let after = owner(Some(&write.proposed));
        let user = write.connection.metadata()["user"].clone();
        before == after || before == Some(user)
    })
}

#[test]
fn the_schema_judges_the_merged_value_not_the_partial_one() {
    let mut h = Harness::with_rules(live(json!({"title": "milk"}), 1), limits(), todo_schema());
    h.write(1, json!({"done": true}), Strategy::Merge);
    // `{"colour": "red"}` alone is a fine object for a partial check; merged, it adds a
    // property the schema forbids.
    h.write(2, json!({"colour": "red"}), Strategy::Merge);
    h.write(3, json!({"title": 5}), Strategy::DeepMerge);
    assert_eq!(
        h.take_seen(),
        vec![
            Seen::Update(2, json!({"title": "milk", "done": true})),
            Seen::Persist(2),
            reply(1, "ok v2 changed=true"),
            reply(2, "ESCHEMA"),
            reply(3, "ESCHEMA"),
        ]
    );
    assert_eq!(
        h.store.record.version, 2,
        "nothing refused reached the store"
    );
}

#[test]
fn the_servers_unchecked_write_skips_the_schema_only() {
    let mut h = Harness::with_rules(live(json!({"title": "a"}), 1), limits(), todo_schema());
    let write = QueuedWrite {
        skip_schema: true,
        ..h.queued(1, json!({"legacy": 1}), Strategy::Replace)
    };
    let effects = h.core.write(write);
    h.run(effects);
    assert_eq!(h.take_seen().last(), Some(&reply(1, "ok v2 changed=true")));
}

#[test]
fn a_sync_value_guard_sees_current_and_proposed_values() {
    let rules = WriteRules {
        value_guard: Some(owner_guard()),
        ..WriteRules::default()
    };
    let mut h = Harness::with_rules(live(json!({"owner": "ann", "n": 1}), 1), limits(), rules);
    h.write_from(1, json!({"n": 2}), Strategy::Merge, client("bob"));
    h.write_from(2, json!({"owner": "bob"}), Strategy::Merge, client("bob"));
    h.write_from(3, json!({"owner": "bob"}), Strategy::Merge, client("ann"));
    // The server is not a client: guards decide what clients may do.
    h.write(4, json!({"owner": "cy"}), Strategy::Merge);
    assert_eq!(
        h.take_seen(),
        vec![
            Seen::Update(2, json!({"owner": "ann", "n": 2})),
            Seen::Persist(2),
            reply(1, "ok v2 changed=true"),
            reply(2, "EFORBIDDEN"),
            Seen::Update(3, json!({"owner": "bob", "n": 2})),
            Seen::Persist(3),
            reply(3, "ok v3 changed=true"),
            Seen::Update(4, json!({"owner": "cy", "n": 2})),
            Seen::Persist(4),
            reply(4, "ok v4 changed=true"),
        ]
    );
}

fn async_rules() -> WriteRules {
    // The harness answers for it (`answer_guard`); the future is never run.
    WriteRules {
        value_guard: Some(ValueGuard::new(|_: ProposedWrite| async { Ok(true) })),
        ..WriteRules::default()
    }
}

#[test]
fn an_async_guard_holds_later_writes_and_each_is_judged_on_the_value_before_it() {
    let mut h = Harness::with_rules(live(json!({"n": 1}), 1), limits(), async_rules());
    h.write_from(1, json!({"n": 2}), Strategy::Replace, client("a"));
    h.write_from(2, json!({"n": 3}), Strategy::Replace, client("a"));
    assert_eq!(
        h.take_seen(),
        vec![Seen::Guard(Some(json!({"n": 1})), json!({"n": 2}))]
    );
    h.answer_guard(true);
    assert_eq!(
        h.take_seen(),
        vec![
            Seen::Update(2, json!({"n": 2})),
            Seen::Persist(2),
            reply(1, "ok v2 changed=true"),
            // The second is judged on the value the first left.
            Seen::Guard(Some(json!({"n": 2})), json!({"n": 3})),
        ]
    );
    h.answer_guard(false);
    assert_eq!(h.take_seen(), vec![reply(2, "EFORBIDDEN")]);
    assert_eq!(h.store.record.version, 2);
}

#[test]
fn a_change_published_while_the_guard_decides_waits_then_the_guard_judges_again() {
    let mut h = Harness::with_rules(live(json!({"n": 1}), 1), limits(), async_rules());
    let other = h.store.other_writes(json!({"n": 10}));
    h.write_from(1, json!({"mine": true}), Strategy::Merge, client("a"));
    assert_eq!(
        h.take_seen(),
        vec![Seen::Guard(
            Some(json!({"n": 1})),
            json!({"n": 1, "mine": true})
        )]
    );
    // Another instance's version arrives while the guard thinks: it waits.
    h.deliver(other);
    assert!(h.take_seen().is_empty());
    h.answer_guard(true);
    // The approval was for version 1; the record is now at 2, so the guard is asked again.
    assert_eq!(
        h.take_seen(),
        vec![
            Seen::Update(2, json!({"n": 10})),
            Seen::Guard(Some(json!({"n": 10})), json!({"n": 10, "mine": true})),
        ]
    );
    h.answer_guard(true);
    assert_eq!(
        h.take_seen(),
        vec![
            Seen::Update(3, json!({"n": 10, "mine": true})),
            Seen::Persist(3),
            reply(1, "ok v3 changed=true"),
        ]
    );
}

#[test]
fn a_lost_race_after_approval_asks_the_guard_again() {
    let mut h = Harness::with_rules(live(json!({"n": 1}), 1), limits(), async_rules());
    h.write_from(1, json!({"mine": true}), Strategy::Merge, client("a"));
    h.take_seen();
    // Written elsewhere after the guard was asked; its message has not arrived.
    let other = h.store.other_writes(json!({"n": 7}));
    h.answer_guard(true);
    assert!(
        h.take_seen().is_empty(),
        "lost the race: waits for version 2"
    );
    h.deliver(other);
    assert_eq!(
        h.take_seen(),
        vec![
            Seen::Update(2, json!({"n": 7})),
            Seen::Guard(Some(json!({"n": 7})), json!({"n": 7, "mine": true})),
        ]
    );
}

#[test]
fn a_guard_outrun_by_other_writers_gives_up_with_econflict() {
    use crate::actors::record::queue::MAX_GUARD_ASKS;
    let mut h = Harness::with_rules(live(json!({"n": 0}), 1), limits(), async_rules());
    h.write_from(1, json!({"mine": true}), Strategy::Merge, client("a"));
    for n in 1..=MAX_GUARD_ASKS {
        let seen = h.take_seen();
        assert!(
            matches!(seen.last(), Some(Seen::Guard(..))),
            "ask {n}: {seen:?}"
        );
        // Another instance writes while the guard thinks: its answer comes for a stale state.
        let other = h.store.other_writes(json!({ "n": n }));
        h.deliver(other);
        h.answer_guard(true);
    }
    assert_eq!(h.take_seen().last(), Some(&reply(1, "ECONFLICT")));
    assert!(h.core.is_idle(), "the queue moves on");
}
