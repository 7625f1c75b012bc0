//! When a record actor may stop (`Lifecycle`): linger, one question at a time, leaving with
//! its thread.

use crate::actors::record::lifecycle::{Lifecycle, Next};

#[test]
fn a_new_actor_lingers_a_whole_tick_before_asking_to_retire() {
    let mut life = Lifecycle::default();
    assert_eq!(life.tick(true), Next::Stay);
    assert_eq!(life.tick(true), Next::AskToRetire);
}

#[test]
fn a_use_during_the_tick_keeps_it_another_tick() {
    let mut life = Lifecycle::default();
    life.tick(true);
    life.used();
    assert_eq!(life.tick(true), Next::Stay);
    assert_eq!(life.tick(true), Next::AskToRetire);
}

#[test]
fn a_busy_actor_never_asks() {
    let mut life = Lifecycle::default();
    for _ in 0..3 {
        assert_eq!(life.tick(false), Next::Stay);
    }
    assert_eq!(life.tick(true), Next::AskToRetire);
}

#[test]
fn one_question_at_a_time_and_only_a_yes_stops_it() {
    let mut life = Lifecycle::default();
    life.tick(true);
    assert_eq!(life.tick(true), Next::AskToRetire);
    // Still waiting for the registry: no second question.
    assert_eq!(life.tick(true), Next::Stay);
    assert_eq!(life.answered(false), Next::Stay);
    assert_eq!(life.tick(true), Next::AskToRetire);
    assert_eq!(life.answered(true), Next::Stop);
}

#[test]
fn a_leaving_actor_asks_as_soon_as_it_is_idle_linger_or_not() {
    let mut life = Lifecycle::default();
    life.used();
    assert_eq!(life.leaving_check(true), Next::Stay, "not leaving yet");
    assert_eq!(life.leave(), Next::CheckOften);
    assert_eq!(life.leave(), Next::Stay, "checks are started once");
    assert_eq!(life.leaving_check(false), Next::Stay);
    assert_eq!(life.leaving_check(true), Next::AskToRetire);
    assert_eq!(life.leaving_check(true), Next::Stay);
    assert_eq!(life.answered(true), Next::Stop);
}
