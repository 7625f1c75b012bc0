//! How a subscriber starts: a snapshot, or resumed from the version it holds.

use super::*;
use crate::actors::record::state::Joining;
use crate::model::Mode;
use crate::store::Change as Published;

fn with_versions(count: u64) -> Harness {
    let mut h = Harness::new(Stored::absent(0));
    for n in 1..=count {
        h.write(n as u32, json!({ "n": n }), Strategy::Replace);
    }
    h
}

fn versions(changes: &[Published]) -> Vec<Version> {
    changes.iter().map(|c| c.version).collect()
}

#[test]
fn a_subscriber_that_does_not_ask_to_resume_gets_the_snapshot() {
    let h = with_versions(3);
    let joining = h.core.join(None, Mode::Patch);
    assert_eq!(joining, Joining::Snapshot { resumed: None });
}

#[test]
fn a_patch_subscriber_resumes_with_the_versions_it_missed() {
    let h = with_versions(5);
    let Joining::Resumed { since, changes } = h.core.join(Some(Some(2)), Mode::Patch) else {
        panic!("not resumed");
    };
    assert_eq!((since, versions(&changes)), (2, vec![3, 4, 5]));
}

#[test]
fn an_up_to_date_subscriber_resumes_with_nothing_in_either_mode() {
    let h = with_versions(4);
    for mode in [Mode::Full, Mode::Patch] {
        let joining = h.core.join(Some(Some(4)), mode);
        let expected = Joining::Resumed {
            since: 4,
            changes: Vec::new(),
        };
        assert_eq!(joining, expected, "{mode:?}");
    }
}

#[test]
fn a_full_subscriber_that_missed_versions_gets_the_snapshot() {
    let h = with_versions(4);
    let joining = h.core.join(Some(Some(2)), Mode::Full);
    assert_eq!(
        joining,
        Joining::Snapshot {
            resumed: Some(false)
        }
    );
}

#[test]
fn a_subscriber_that_cannot_follow_gets_the_snapshot_marked_not_resumed() {
    // Older than the history (it keeps 10 versions), newer than the record, not a version,
    // and a deleted record.
    let mut h = with_versions(15);
    for since in [Some(Some(2)), Some(Some(16)), Some(None)] {
        let joining = h.core.join(since, Mode::Patch);
        assert_eq!(
            joining,
            Joining::Snapshot {
                resumed: Some(false)
            },
            "{since:?}"
        );
    }
    h.delete(99);
    let joining = h.core.join(Some(Some(15)), Mode::Patch);
    assert_eq!(
        joining,
        Joining::Snapshot {
            resumed: Some(false)
        }
    );
}

#[test]
fn a_resume_reaches_back_only_as_far_as_published_patches_go() {
    let mut h = with_versions(2);
    // Another instance's change with its patch continues the history ...
    let mut change = h.store.other_writes(json!({ "n": 3 }));
    if let RemoteChange::Updated { patch, .. } = &mut change {
        *patch = Some(Arc::new(
            json!([{ "op": "replace", "path": "/n", "value": 3 }]),
        ));
    }
    h.deliver(change);
    let Joining::Resumed { changes, .. } = h.core.join(Some(Some(1)), Mode::Patch) else {
        panic!("not resumed");
    };
    assert_eq!(versions(&changes), vec![2, 3]);
    // ... one without a patch restarts it there.
    let change = h.store.other_writes(json!({ "n": 4 }));
    h.deliver(change);
    let joining = h.core.join(Some(Some(3)), Mode::Patch);
    assert_eq!(
        joining,
        Joining::Snapshot {
            resumed: Some(false)
        }
    );
}
