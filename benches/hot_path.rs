//! The per-update hot path: diff + frame serialization, fan-out of one frame to N session
//! queues, exposure matching with many patterns, and routing a write through the collections'
//! feed index, and a JSON Schema check per write. `cargo bench --features bench --bench
//! hot_path`.

use criterion::{BatchSize, BenchmarkId, Criterion, criterion_group, criterion_main};
use mesh_records::access::{Exposure, ExposureTable, Operation};
use mesh_records::collections::index::GlobIndex;
use mesh_records::model::{Glob, RecordId, change_patch, full_frame, patch_frame};
use mesh_records::outbox::Outbox;
use mesh_records::rules::Schema;
use serde_json::{Value, json};
use std::hint::black_box;

fn value(seq: u64, pad: usize) -> Value {
    json!({"seq": seq, "sent_us": seq * 1000, "pad": "x".repeat(pad)})
}

fn diff_and_frames(c: &mut Criterion) {
    let id = RecordId::parse("bench:fanout", 64).unwrap();
    let mut group = c.benchmark_group("update");
    for pad in [100usize, 10_000] {
        let (old, new) = (value(1, pad), value(2, pad));
        group.bench_with_input(BenchmarkId::new("diff+patch_frame", pad), &pad, |b, _| {
            b.iter(|| {
                let patch = change_patch(black_box(&old), black_box(&new));
                patch_frame(&id, &patch, 2)
            })
        });
        group.bench_with_input(BenchmarkId::new("full_frame", pad), &pad, |b, _| {
            b.iter(|| full_frame(&id, black_box(&new), 2))
        });
    }
    group.finish();
}

/// A board of 200 cards, one of which changes: the bounded diff against json-patch's.
fn diff_kinds(c: &mut Criterion) {
    let board = |changed: u64| {
        let cards: Vec<Value> = (0..200u64)
            .map(|i| json!({"id": i, "title": format!("card {i}"), "done": i == changed, "tags": ["a", "b"]}))
            .collect();
        json!({"name": "board", "cards": cards})
    };
    let (old, new) = (board(1), board(2));
    let mut group = c.benchmark_group("diff");
    group.bench_function("change_patch/board", |b| {
        b.iter(|| change_patch(black_box(&old), black_box(&new)))
    });
    group.bench_function("json_patch::diff/board", |b| {
        b.iter(|| json_patch::diff(black_box(&old), black_box(&new)))
    });
    group.finish();
}

fn fan_out(c: &mut Criterion) {
    let id = RecordId::parse("bench:fanout", 64).unwrap();
    let frame = full_frame(&id, &value(1, 100), 1);
    let mut group = c.benchmark_group("fan_out");
    for subscribers in [100usize, 1000] {
        // Fresh queues per iteration (not timed), so nothing accumulates.
        let queues = || {
            (0..subscribers)
                .map(|_| Outbox::new(1 << 30))
                .collect::<Vec<_>>()
        };
        group.bench_with_input(
            BenchmarkId::from_parameter(subscribers),
            &subscribers,
            |b, _| {
                b.iter_batched_ref(
                    queues,
                    |queues| {
                        for (outbox, _) in queues.iter() {
                            let _ = outbox.push_update(&id, frame.clone());
                        }
                    },
                    BatchSize::LargeInput,
                )
            },
        );
    }
    group.finish();
}

fn exposure_matching(c: &mut Criterion) {
    let mut group = c.benchmark_group("exposure");
    for rules in [10usize, 100, 1000] {
        // Built in one go (pushing one rule at a time rebuilds the matcher set each time).
        let exposures = (0..rules)
            .map(|n| {
                Exposure::pattern(&format!("^tenant{n}:[a-z]+:\\d+$"))
                    .unwrap()
                    .writable()
            })
            .collect();
        let table = ExposureTable::new(exposures);
        // The id matches the last rule: the worst case, every rule is tried.
        let id = format!("tenant{}:doc:42", rules - 1);
        group.bench_with_input(BenchmarkId::from_parameter(rules), &rules, |b, _| {
            b.iter(|| table.decide(black_box(&id), Operation::Write))
        });
    }
    group.finish();
}

/// What a write costs in collections it cannot belong to: the feed index's lookup with
/// 10,000 active collections shaped like `mesh-bench collection`'s (`bench:item:<run>:<n>:*`),
/// for a record in none of them and for a member of one.
fn collection_routing(c: &mut Criterion) {
    let mut group = c.benchmark_group("collection_feed_lookup");
    for collections in [0usize, 10_000] {
        let mut index: GlobIndex<usize, usize> = GlobIndex::default();
        for n in 0..collections {
            let glob = Glob::new(&format!("bench:item:5f3a9c:{n}:*")).unwrap();
            index.insert(n, glob, n);
        }
        let unrelated = "bench:other:5f3a9c:12345";
        let member = "bench:item:5f3a9c:4321:7";
        group.bench_with_input(
            BenchmarkId::new("unrelated", collections),
            &collections,
            |b, _| b.iter(|| index.lookup(black_box(unrelated))),
        );
        group.bench_with_input(
            BenchmarkId::new("member", collections),
            &collections,
            |b, _| b.iter(|| index.lookup(black_box(member))),
        );
    }
    group.finish();
}

/// What a write pays for its exposure's JSON Schema: the bench's own value against the schema
/// of bench/config-schema.toml, and the 200-card board against a schema of its cards.
fn schema_checks(c: &mut Criterion) {
    let stamped = Schema::compile(
        &json!({
            "type": "object",
            "required": ["seq", "sent_us", "pad"],
            "additionalProperties": false,
            "properties": {
                "seq": {"type": "integer", "minimum": 0},
                "sent_us": {"type": "integer", "minimum": 0},
                "pad": {"type": "string", "maxLength": 100000}
            }
        }),
        "bench",
    )
    .unwrap();
    let board = Schema::compile(
        &json!({
            "type": "object",
            "properties": {
                "name": {"type": "string"},
                "cards": {"type": "array", "maxItems": 1000, "items": {
                    "type": "object",
                    "required": ["id", "title", "done"],
                    "properties": {
                        "id": {"type": "integer"},
                        "title": {"type": "string", "maxLength": 200},
                        "done": {"type": "boolean"},
                        "tags": {"type": "array", "items": {"type": "string"}}
                    }
                }}
            }
        }),
        "board",
    )
    .unwrap();
    let cards: Vec<Value> = (0..200u64)
        .map(|i| json!({"id": i, "title": format!("card {i}"), "done": false, "tags": ["a"]}))
        .collect();
    let big = json!({"name": "board", "cards": cards});
    let mut group = c.benchmark_group("schema");
    group.bench_function("check/stamped_value_pad100", |b| {
        let v = value(1, 100);
        b.iter(|| stamped.check(black_box(&v)))
    });
    group.bench_function("check/board_200_cards", |b| {
        b.iter(|| board.check(black_box(&big)))
    });
    group.bench_function("refuse/stamped_value_two_violations", |b| {
        let v = json!({"seq": -1, "sent_us": "x", "pad": ""});
        b.iter(|| stamped.check(black_box(&v)))
    });
    group.finish();
}

criterion_group!(
    benches,
    schema_checks,
    diff_and_frames,
    diff_kinds,
    fan_out,
    exposure_matching,
    collection_routing
);
criterion_main!(benches);
