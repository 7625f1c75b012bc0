//! The final comparison: the store against the writers' ledgers (lost, resurrected), every
//! subscriber against the store (behind), and the findings collected on the way.

use crate::ledger::{Broken, Final, Ledgers, RecordLedger, check};
use crate::store::{Stored, record_id};
use crate::subscriber::Subscriber;
use crate::workload::n_of;

/// Problems found in the store, as report lines, split by kind.
#[derive(Default)]
pub struct StoreFindings {
    pub lost: Vec<String>,
    pub resurrected: Vec<String>,
}

/// Checks every record's stored state against its writer's ledger.
pub fn check_store(ledgers: &Ledgers, stored: &[Stored]) -> StoreFindings {
    let mut findings = StoreFindings::default();
    let empty = RecordLedger::default();
    for (index, stored) in stored.iter().enumerate() {
        let found = match stored {
            Stored::Absent => Final::Absent,
            Stored::Present { value, .. } => Final::Present { n: n_of(value) },
        };
        let ledger = ledgers.get(&index).unwrap_or(&empty);
        let id = record_id(index);
        match check(ledger, &found) {
            None => {}
            Some(Broken::Lost { acked_n, found }) => findings.lost.push(format!(
                "{id}: write n={acked_n} was acknowledged, store has {} (unknown outcomes since: {:?})",
                describe(&found),
                ledger.maybe
            )),
            Some(Broken::Resurrected { found_n }) => findings.resurrected.push(format!(
                "{id}: delete was acknowledged, store has n={} (unknown outcomes since: {:?})",
                found_n.map_or("?".into(), |n| n.to_string()),
                ledger.maybe
            )),
        }
    }
    findings
}

fn describe(found: &Final) -> String {
    match found {
        Final::Absent => "no value".into(),
        Final::Present { n: Some(n) } => format!("n={n}"),
        Final::Present { n: None } => "a value without n".into(),
    }
}

/// Records where `sub` does not show what the store holds.
pub fn check_subscriber(sub: &Subscriber, stored: &[Stored]) -> Vec<String> {
    let mut behind = Vec::new();
    for (index, (follow, stored)) in sub.follows.iter().zip(stored).enumerate() {
        let shown = follow.shown();
        let agrees = match (stored, shown) {
            (_, None) => false,
            (Stored::Absent, Some((value, _))) => value.is_none(),
            (Stored::Present { value, version }, Some((shown, shown_version))) => {
                shown == Some(value) && *version == Some(shown_version)
            }
        };
        if !agrees {
            let store = match stored {
                Stored::Absent => "absent".to_owned(),
                Stored::Present { value, version } => format!(
                    "n={} v{}",
                    n_of(value).map_or("?".into(), |n| n.to_string()),
                    version.map_or("?".into(), |v| v.to_string())
                ),
            };
            let seen = match shown {
                None => "no subscription".to_owned(),
                Some((None, v)) => format!("absent (v{v})"),
                Some((Some(value), v)) => format!(
                    "n={} v{v}",
                    n_of(value).map_or("?".into(), |n| n.to_string())
                ),
            };
            behind.push(format!(
                "{} at {}: shows {seen}, store has {store}",
                record_id(index),
                sub.label
            ));
        }
    }
    behind
}

/// Prints up to `limit` lines of one kind of problem.
pub fn print_details(title: &str, lines: &[String], limit: usize) {
    if lines.is_empty() {
        return;
    }
    println!("chaos: {title} ({}):", lines.len());
    for line in lines.iter().take(limit) {
        println!("  {line}");
    }
    if lines.len() > limit {
        println!("  ... and {} more", lines.len() - limit);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::Op;
    use serde_json::json;

    #[test]
    fn store_and_subscribers_are_compared() {
        let mut ledgers = Ledgers::new();
        ledgers.entry(0).or_default().acked(Op::Write { n: 3 });
        ledgers.entry(1).or_default().acked(Op::Delete);
        let stored = vec![
            Stored::Present {
                value: json!({"n": 2}),
                version: Some(9),
            },
            Stored::Present {
                value: json!({"n": 1}),
                version: Some(2),
            },
        ];
        let findings = check_store(&ledgers, &stored);
        assert_eq!((findings.lost.len(), findings.resurrected.len()), (1, 1));

        let mut sub = Subscriber::new("a/full".into(), "full", 2, std::time::Instant::now());
        sub.follows[0].snapshot(Some(json!({"n": 2})), 9);
        assert_eq!(
            check_subscriber(&sub, &stored).len(),
            1,
            "record 1 unsubscribed"
        );
        sub.follows[1].snapshot(Some(json!({"n": 1})), 1);
        assert_eq!(
            check_subscriber(&sub, &stored).len(),
            1,
            "record 1 one version behind"
        );
        sub.follows[1].snapshot(Some(json!({"n": 1})), 2);
        assert!(check_subscriber(&sub, &stored).is_empty());
    }
}
