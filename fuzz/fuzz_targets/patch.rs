//! Fuzzes the write path on values built straight from the fuzz bytes (long keys, long arrays,
//! `1e15` numbers, deep nesting, values sharing structure): the strategy's result, the diff
//! replaying to the new value, the push frames. Any panic is a bug.
#![no_main]

use arbitrary::Unstructured;
use libfuzzer_sys::fuzz_target;
use mesh_records_fuzz::{check_write, mutated, strategy, value};
use std::sync::Arc;

fuzz_target!(|data: &[u8]| {
    let mut u = Unstructured::new(data);
    let Ok(old) = value(&mut u, 0) else { return };
    let Ok(new) = mutated(&mut u, &old, 0) else {
        return;
    };
    let Ok(strategy) = strategy(&mut u) else {
        return;
    };
    let absent: bool = u.arbitrary().unwrap_or(false);
    let current = (!absent).then(|| Arc::new(old));
    check_write(current.as_ref(), Arc::new(new), strategy);
});
