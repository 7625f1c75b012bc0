//! Write rules over real WebSockets and the admin API: a writable exposure's JSON Schema,
//! guards that see the value, and per-exposure size limits. Every test runs on each store.

use crate::common;
use crate::suites::admin::call;

use common::{Backend, start, start_with};
use mesh_bench::wire::PUBLISH;
use mesh_records::rules::{ProposedWrite, ValueGuard};
use mesh_records::{Exposure, Strategy};
use serde_json::{Value, json};

/// Todo lists: a title and items, each item a text and a done flag, nothing else.
const TODO_SCHEMA: &str = r#"
[admin]
token = "admin-secret"

[[records.expose]]
pattern = "^todo:"
writable = true
schema = { type = "object", required = ["title"], additionalProperties = false, properties = { title = { type = "string", maxLength = 40 }, items = { type = "object", additionalProperties = { type = "object", required = ["text"], additionalProperties = false, properties = { text = { type = "string" }, done = { type = "boolean" } } } } } }

[[records.expose]]
pattern = "^free:"
writable = true
"#;

on_every_store!(
    a_value_breaking_the_schema_is_refused_with_its_paths,
    a_merge_whose_result_breaks_the_schema_is_refused,
    the_admin_api_is_held_to_the_schema,
    a_value_guard_refuses_and_allows_by_value,
    an_exposure_sets_its_own_size_limit,
);

async fn publish_with(
    client: &mut common::Client,
    record: &str,
    value: Value,
    strategy: &str,
) -> Value {
    let payload = json!({"recordId": record, "newValue": value, "options": {"strategy": strategy}});
    client.request(PUBLISH, payload).await
}

async fn a_value_breaking_the_schema_is_refused_with_its_paths(backend: Backend) {
    let server = start(backend, TODO_SCHEMA).await;
    let mut watcher = server.client().await;
    watcher.subscribe("todo:1", "full").await;
    let mut client = server.client().await;
    let good = json!({"title": "groceries", "items": {"a": {"text": "milk"}}});
    assert_eq!(
        client.publish("todo:1", good.clone()).await["success"],
        true
    );
    assert_eq!(watcher.next_push().await["payload"]["version"], 1);

    let bad = json!({"title": 7, "items": {"a": {"text": "milk", "done": "yes"}}});
    let reply = client.publish("todo:1", bad).await;
    assert_eq!(reply["code"], "ESCHEMA", "{reply}");
    assert_eq!(reply["name"], "ValidationError");
    let mut paths: Vec<&str> = reply["violations"]
        .as_array()
        .expect("violations listed")
        .iter()
        .map(|v| v["path"].as_str().unwrap())
        .collect();
    paths.sort();
    assert_eq!(paths, vec!["/items/a/done", "/title"], "{reply}");
    assert!(
        reply["error"].as_str().unwrap().contains("schema"),
        "{reply}"
    );

    // Nothing written, nothing pushed.
    let record = server
        .records()
        .get_record("todo:1")
        .await
        .unwrap()
        .unwrap();
    assert_eq!((*record.value).clone(), good);
    assert_eq!(record.version, 1);
    server
        .assert_nothing_pushed_before_marker(&mut watcher, "free:marker")
        .await;
    // Records no schema covers take anything.
    assert_eq!(
        client.publish("free:1", json!([1, "x"])).await["success"],
        true
    );
    server.stop().await;
}

async fn a_merge_whose_result_breaks_the_schema_is_refused(backend: Backend) {
    let server = start(backend, TODO_SCHEMA).await;
    let mut client = server.client().await;
    // A partial value without a title is not a valid todo on its own, yet the merged result
    // is: the schema judges what would be stored.
    let created = client
        .publish("todo:2", json!({"title": "chores", "items": {}}))
        .await;
    assert_eq!(created["success"], true);
    let item = json!({"items": {"x": {"text": "dishes"}}});
    let reply = publish_with(&mut client, "todo:2", item, "deepMerge").await;
    assert_eq!(reply["success"], true, "{reply}");
    // `{"colour": "red"}` is a fine object alone; merged, it adds a property the schema
    // forbids.
    let reply = publish_with(&mut client, "todo:2", json!({"colour": "red"}), "merge").await;
    assert_eq!(reply["code"], "ESCHEMA", "{reply}");
    assert_eq!(reply["violations"][0]["path"], "");
    // A deep merge that breaks an item deep inside.
    let broken = json!({"items": {"x": {"done": "soon"}}});
    let reply = publish_with(&mut client, "todo:2", broken, "deepMerge").await;
    assert_eq!(reply["code"], "ESCHEMA", "{reply}");
    assert_eq!(reply["violations"][0]["path"], "/items/x/done");
    let record = server
        .records()
        .get_record("todo:2")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(record.version, 2);
    server.stop().await;
}

async fn the_admin_api_is_held_to_the_schema(backend: Backend) {
    let server = start(backend, TODO_SCHEMA).await;
    let url = format!("{}/api/records/todo:3", server.http);
    let token = Some("admin-secret");
    let (status, body) = call("PUT", &url, token, Some(r#"{"title": ["no"]}"#)).await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["code"], "ESCHEMA");
    assert_eq!(body["violations"][0]["path"], "/title");
    let (status, _) = call("PUT", &url, token, Some(r#"{"title": "yes"}"#)).await;
    assert_eq!(status, 200);
    let merge = format!("{url}?strategy=merge");
    let (status, body) = call("PUT", &merge, token, Some(r#"{"extra": 1}"#)).await;
    assert_eq!((status, body["code"].clone()), (422, json!("ESCHEMA")));
    // The Rust API checks too, unless the server explicitly opts out.
    let records = server.records();
    let refused = records
        .write_record("todo:3", json!({"nope": true}), Strategy::Replace)
        .await
        .unwrap_err();
    assert_eq!(refused.code(), "ESCHEMA");
    let forced = records
        .write_record_unchecked("todo:3", json!({"legacy": true}), Strategy::Replace)
        .await
        .unwrap();
    assert_eq!(forced.version, 2);
    server.stop().await;
}

/// Anyone may edit a note's text; only its owner may hand it to someone else, and a note
/// must be created by the owner it names.
fn owner_rule() -> ValueGuard {
    ValueGuard::new(|write: ProposedWrite| async move {
        let user = write.connection.metadata()["userId"].clone();
        let owner_now = write.current.as_ref().map(|v| v["owner"].clone());
        let owner_next = write.proposed["owner"].clone();
        Ok(match owner_now {
            None => owner_next == user,
            Some(owner) => owner == owner_next || owner == user,
        })
    })
}

async fn a_value_guard_refuses_and_allows_by_value(backend: Backend) {
    let server = start_with(backend, "", |builder| {
        builder
            .expose(
                Exposure::pattern("^note:")
                    .unwrap()
                    .writable()
                    .value_guard(owner_rule()),
            )
            .authenticate(common::user_from_query())
    })
    .await;
    let mut ann = common::Client::connect(&format!("{}?user=ann", server.ws)).await;
    let mut bob = common::Client::connect(&format!("{}?user=bob", server.ws)).await;
    let mine = json!({"owner": "ann", "text": "hello"});
    // Bob cannot create a note in Ann's name; Ann can.
    assert_eq!(
        bob.publish("note:1", mine.clone()).await["code"],
        "EFORBIDDEN"
    );
    assert_eq!(ann.publish("note:1", mine).await["success"], true);
    // Bob may edit the text, but not take the note.
    let edit = publish_with(&mut bob, "note:1", json!({"text": "hi"}), "merge").await;
    assert_eq!(edit["success"], true, "{edit}");
    let take = publish_with(&mut bob, "note:1", json!({"owner": "bob"}), "merge").await;
    assert_eq!(take["code"], "EFORBIDDEN", "{take}");
    // Ann may give it away.
    let give = publish_with(&mut ann, "note:1", json!({"owner": "bob"}), "merge").await;
    assert_eq!(give["success"], true, "{give}");
    let record = server
        .records()
        .get_record("note:1")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (*record.value).clone(),
        json!({"owner": "bob", "text": "hi"})
    );
    assert_eq!(record.version, 3);
    // Server code is not a client: the guard does not judge it.
    server
        .records()
        .write_record("note:2", json!({"owner": "nobody"}), Strategy::Replace)
        .await
        .unwrap();
    server.stop().await;
}

async fn an_exposure_sets_its_own_size_limit(backend: Backend) {
    let config = r#"
[server]
max_value_bytes = 100

[[records.expose]]
pattern = "^big:"
writable = true
max_value_bytes = 1000

[[records.expose]]
pattern = "^tiny:"
writable = true
max_value_bytes = 20

[[records.expose]]
pattern = "^doc:"
writable = true
"#;
    let server = start(backend, config).await;
    let mut client = server.client().await;
    let medium = json!({"blob": "y".repeat(300)});
    assert_eq!(
        client.publish("doc:1", medium.clone()).await["code"],
        "ELIMIT"
    );
    assert_eq!(client.publish("big:1", medium).await["success"], true);
    let huge = json!({"blob": "y".repeat(2000)});
    assert_eq!(client.publish("big:1", huge).await["code"], "ELIMIT");
    assert_eq!(
        client.publish("tiny:1", json!({"a": 1})).await["success"],
        true
    );
    let reply = client.publish("tiny:1", json!({"a": "x".repeat(30)})).await;
    assert_eq!(reply["code"], "ELIMIT", "{reply}");
    server.stop().await;
}

#[actix_web::test]
async fn a_schema_that_cannot_be_used_stops_the_server_at_start() {
    let dir = std::env::temp_dir().join(common::unique_prefix("schemas").replace(':', "-"));
    std::fs::create_dir_all(dir.join("schemas")).unwrap();
    let config_file = dir.join("config.toml");
    let write_config = |schema: &str| {
        let text = format!(
            "[[records.expose]]\npattern = \"^todo:\"\nwritable = true\nschema = \"{schema}\"\n"
        );
        std::fs::write(&config_file, text).unwrap();
    };
    // Relative to the config file's folder.
    std::fs::write(dir.join("schemas/ok.json"), r#"{"type": "object"}"#).unwrap();
    write_config("schemas/ok.json");
    mesh_records::Config::load(&config_file).expect("a good schema loads");

    std::fs::write(dir.join("schemas/typo.json"), r#"{"type": "objekt"}"#).unwrap();
    std::fs::write(dir.join("schemas/broken.json"), r#"{"type": "#).unwrap();
    for (file, reason) in [
        ("schemas/typo.json", "objekt"),
        ("schemas/broken.json", "not JSON"),
        ("schemas/missing.json", "cannot read"),
    ] {
        write_config(file);
        let err = mesh_records::Config::load(&config_file)
            .unwrap_err()
            .to_string();
        assert!(err.contains("records.expose[0].schema"), "{err}");
        assert!(err.contains(file), "{err}");
        assert!(err.contains(reason), "{err}");
    }
    // Through the server's own start, too (a config built in code).
    let config = common::test_config(
        "[[records.expose]]\npattern = \"^t:\"\nwritable = true\nschema = { type = 5 }\n",
    );
    let err = mesh_records::start(config).await.err().expect("refused");
    assert!(
        err.to_string().contains("records.expose[0].schema"),
        "{err}"
    );
    // Rules on a read-only exposure are a mistake, said as such.
    let config = mesh_records::Config::parse(
        "[[records.expose]]\npattern = \"^t:\"\nschema = { type = \"object\" }\n",
    )
    .unwrap();
    let err = config.validate().unwrap_err().to_string();
    assert!(err.contains("not writable"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}
