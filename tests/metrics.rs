//! `GET /metrics`: Prometheus text that moves with what the server does.

mod common;

use common::{Backend, start_with};
use mesh_records::{Exposure, Guard, Strategy};
use serde_json::json;
use std::collections::HashMap;

async fn scrape(base: &str) -> HashMap<String, f64> {
    let mut response = awc::Client::default()
        .get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap();
    assert!(response.status().is_success());
    let body = String::from_utf8(response.body().await.unwrap().to_vec()).unwrap();
    body.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| {
            let (name, value) = l.rsplit_once(' ')?;
            Some((name.to_owned(), value.parse().ok()?))
        })
        .collect()
}

fn get(metrics: &HashMap<String, f64>, name: &str) -> f64 {
    metrics.get(name).copied().unwrap_or(0.0)
}

#[actix_web::test]
async fn counters_move_with_activity() {
    let server = start_with(
        Backend::Memory,
        "[[records.expose]]\npattern = \"^doc:\"\nwritable = true\n",
        |b| {
            b.expose(
                Exposure::pattern("^secret:")
                    .unwrap()
                    .guard(Guard::sync(|_, _| false)),
            )
        },
    )
    .await;
    let before = scrape(&server.http).await;
    let mut full = server.client().await;
    let mut patch = server.client().await;
    full.subscribe("doc:m", "full").await;
    patch.subscribe("doc:m", "patch").await;
    assert_eq!(
        full.subscribe("secret:1", "full").await,
        json!({"success": false})
    );
    let records = server.records();
    records
        .write_record("doc:m", json!({"a": 1}), Strategy::Replace)
        .await
        .unwrap();
    records
        .write_record("doc:m", json!({"a": 1}), Strategy::Replace)
        .await
        .unwrap();
    assert_eq!(full.publish("nope:1", json!(1)).await["code"], "EFORBIDDEN");
    full.next_push().await;
    patch.next_push().await;
    let during = scrape(&server.http).await;
    let delta = |name: &str| get(&during, name) - get(&before, name);
    assert_eq!(delta("mesh_connections"), 2.0);
    assert_eq!(delta("mesh_subscriptions{mode=\"full\"}"), 1.0);
    assert_eq!(delta("mesh_subscriptions{mode=\"patch\"}"), 1.0);
    assert!(delta("mesh_record_actors") >= 1.0);
    assert_eq!(delta("mesh_writes_total{outcome=\"applied\"}"), 1.0);
    assert_eq!(delta("mesh_writes_total{outcome=\"unchanged\"}"), 1.0);
    assert_eq!(delta("mesh_writes_total{outcome=\"refused\"}"), 1.0);
    assert_eq!(delta("mesh_pushes_total"), 2.0);
    assert_eq!(delta("mesh_guard_denials_total"), 1.0);
    full.close().await;
    patch.close().await;
    let records = records.clone();
    common::eventually("sessions to end", common::patience(), async || {
        records.connection_count() == 0
    })
    .await;
    let after = scrape(&server.http).await;
    assert_eq!(
        get(&after, "mesh_connections"),
        get(&before, "mesh_connections")
    );
    assert_eq!(
        get(&after, "mesh_subscriptions{mode=\"full\"}"),
        get(&before, "mesh_subscriptions{mode=\"full\"}")
    );
    server.stop().await;
}
