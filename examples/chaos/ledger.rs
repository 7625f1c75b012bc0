//! What each record's single writer did, and what that allows the store to hold at the end.
//!
//! Each record has exactly one writer, so its last acknowledged operation is well defined.
//! Operations whose outcome is not known (an error reply, a timeout, a connection that died
//! with the request in flight) are kept as "maybe" until the next acknowledged operation:
//! the store may or may not reflect them.

use std::collections::BTreeMap;

/// One operation of a writer; a write carries the `n` it wrote.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    Write { n: u64 },
    Delete,
}

/// The history that matters for one record.
#[derive(Clone, Debug, Default)]
pub struct RecordLedger {
    /// The last operation the server acknowledged.
    pub last_acked: Option<Op>,
    /// Operations after `last_acked` whose outcome is unknown.
    pub maybe: Vec<Op>,
}

impl RecordLedger {
    /// The server acknowledged `op`: everything before it is settled.
    pub fn acked(&mut self, op: Op) {
        self.last_acked = Some(op);
        self.maybe.clear();
    }

    /// `op` was sent but its outcome is unknown.
    pub fn uncertain(&mut self, op: Op) {
        self.maybe.push(op);
    }

    /// Whether the writer must consider the record present (to choose delete or re-create).
    pub fn believes_present(&self) -> bool {
        match self.maybe.last().or(self.last_acked.as_ref()) {
            Some(Op::Write { .. }) => true,
            Some(Op::Delete) | None => false,
        }
    }
}

/// What the store holds for a record at the end: absent, or present with the `n` of its value
/// (`None` when the value has no integer `n`, which no writer produces).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Final {
    Absent,
    Present { n: Option<u64> },
}

/// A broken promise found in the store.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Broken {
    /// The last acknowledged write (`acked_n`) is missing or overwritten by an older value.
    Lost { acked_n: u64, found: Final },
    /// The last acknowledged operation was a delete, and the record is back.
    Resurrected { found_n: Option<u64> },
}

/// Checks one record: `None` when the store is consistent with the ledger.
pub fn check(ledger: &RecordLedger, found: &Final) -> Option<Broken> {
    let maybe_deleted = ledger.maybe.contains(&Op::Delete);
    let maybe_wrote = |n: Option<u64>| n.is_some_and(|n| ledger.maybe.contains(&Op::Write { n }));
    match (ledger.last_acked, found) {
        (Some(Op::Write { n: acked_n }), Final::Absent) if !maybe_deleted => Some(Broken::Lost {
            acked_n,
            found: found.clone(),
        }),
        (Some(Op::Write { n: acked_n }), Final::Present { n }) => {
            // A newer write can only be one of this writer's unknown ones, and those all have
            // a larger n; anything smaller than the acknowledged n is an older value.
            if n.is_some_and(|n| n >= acked_n) {
                None
            } else {
                Some(Broken::Lost {
                    acked_n,
                    found: found.clone(),
                })
            }
        }
        (Some(Op::Delete) | None, Final::Present { n }) if !maybe_wrote(*n) => {
            Some(Broken::Resurrected { found_n: *n })
        }
        _ => None,
    }
}

/// Every record's ledger, by record index.
pub type Ledgers = BTreeMap<usize, RecordLedger>;

#[cfg(test)]
mod tests {
    use super::*;

    fn ledger(acked: Option<Op>, maybe: &[Op]) -> RecordLedger {
        RecordLedger {
            last_acked: acked,
            maybe: maybe.to_vec(),
        }
    }

    const fn w(n: u64) -> Op {
        Op::Write { n }
    }

    fn present(n: u64) -> Final {
        Final::Present { n: Some(n) }
    }

    #[test]
    fn acknowledged_writes_must_be_there() {
        assert_eq!(check(&ledger(Some(w(4)), &[]), &present(4)), None);
        assert_eq!(check(&ledger(Some(w(4)), &[w(5)]), &present(5)), None);
        assert!(matches!(
            check(&ledger(Some(w(4)), &[]), &present(3)),
            Some(Broken::Lost { acked_n: 4, .. })
        ));
        assert!(matches!(
            check(&ledger(Some(w(4)), &[]), &Final::Absent),
            Some(Broken::Lost { .. })
        ));
        // A delete whose answer was lost may have happened.
        assert_eq!(
            check(&ledger(Some(w(4)), &[Op::Delete]), &Final::Absent),
            None
        );
    }

    #[test]
    fn acknowledged_deletes_must_stay() {
        assert_eq!(check(&ledger(Some(Op::Delete), &[]), &Final::Absent), None);
        assert_eq!(
            check(&ledger(Some(Op::Delete), &[]), &present(7)),
            Some(Broken::Resurrected { found_n: Some(7) })
        );
        // Re-created by a write whose answer was lost: fine, but only with that write's n.
        assert_eq!(check(&ledger(Some(Op::Delete), &[w(8)]), &present(8)), None);
        assert!(check(&ledger(Some(Op::Delete), &[w(8)]), &present(7)).is_some());
        // Never written at all: must be absent.
        assert!(check(&ledger(None, &[]), &present(1)).is_some());
        assert_eq!(check(&ledger(None, &[w(1)]), &present(1)), None);
    }

    #[test]
    fn an_ack_settles_what_came_before() {
        let mut l = ledger(Some(w(1)), &[]);
        l.uncertain(Op::Delete);
        assert!(!l.believes_present());
        l.acked(w(2));
        assert!(l.maybe.is_empty());
        assert!(l.believes_present());
        assert!(check(&l, &Final::Absent).is_some());
    }
}
