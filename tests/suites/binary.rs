//! The `mesh-records` binary: serves from a config file, refuses bad configs, stops promptly.

use crate::common;

use common::process::{mesh_records, serve, sigterm, write_config};
use common::{Client, free_port, wait_for_health};
use serde_json::json;
use std::process::Stdio;
use std::time::{Duration, Instant};

/// Stops the child with SIGTERM and returns what it wrote to stderr (it must exit 0).
fn stop_and_read_stderr(child: std::process::Child) -> String {
    sigterm(&child);
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(output.status.success(), "exit {}: {stderr}", output.status);
    stderr
}

/// `GET path` without following redirects: (status, location header).
async fn get(port: u16, path: &str) -> (u16, Option<String>) {
    let client = awc::Client::builder().disable_redirects().finish();
    let response = client
        .get(format!("http://127.0.0.1:{port}{path}"))
        .send()
        .await
        .unwrap();
    let location = response
        .headers()
        .get("location")
        .map(|v| v.to_str().unwrap().to_owned());
    (response.status().as_u16(), location)
}

#[actix_web::test]
async fn binary_serves_and_stops_promptly_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let path = write_config(
        dir.path(),
        &format!(
            "[server]\nport = {port}\n\n[admin]\ntoken = \"t\"\n\n[[records.expose]]\npattern = \"^todo:\"\nwritable = true\n"
        ),
    );
    let mut child = serve(&path);
    wait_for_health(port).await;
    let mut client = Client::connect(&format!("ws://127.0.0.1:{port}/ws")).await;
    assert_eq!(client.subscribe("todo:1", "patch").await["version"], 0);
    assert_eq!(
        client.publish("todo:1", json!({"done": false})).await,
        json!({"success": true})
    );
    assert_eq!(client.next_push().await["payload"]["version"], 1);
    // An idle WebSocket stays open while we stop the server: it must not wait 30 s.
    let started = Instant::now();
    sigterm(&child);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(
            started.elapsed() < common::patience() * 2,
            "still running after SIGTERM"
        );
        actix_rt::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(status.success(), "exit status {status}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "stop took {:?}",
        started.elapsed()
    );
    assert_eq!(client.closed().await, Some(1001));
}

#[test]
fn bad_configs_fail_at_startup_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    for (text, key) in [
        ("[server]\nprot = 1\n", "prot"),
        ("[server\n", "TOML parse error"),
        (
            "[[records.expose]]\npattern = \"(\"\n",
            "records.expose[0].pattern: invalid regex \"(\"",
        ),
        // The regex crate's reason, not just "invalid".
        ("[[records.expose]]\npattern = \"(\"\n", "unclosed group"),
        (
            "[[records.persist]]\nwrite_pattern = \"[\"\nrestore_pattern = \"%\"\n",
            "records.persist[0].write_pattern: invalid regex \"[\"",
        ),
        ("[auth]\nrequired = true\n", "auth.required"),
    ] {
        let path = write_config(dir.path(), text);
        let output = mesh_records().arg("--config").arg(&path).output().unwrap();
        assert!(!output.status.success());
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(key), "stderr for {text:?}: {stderr}");
        // Said once, not `config: …: config: …`.
        assert_eq!(stderr.matches("config:").count(), 1, "stderr: {stderr}");
    }
    let output = mesh_records()
        .arg("--config")
        .arg(dir.path().join("missing.toml"))
        .output()
        .unwrap();
    assert!(!output.status.success());
}

#[actix_web::test]
async fn a_write_acknowledged_right_before_sigterm_is_in_the_database() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let db = dir.path().join("data").join("records.db");
    let path = write_config(
        dir.path(),
        &format!(
            r#"
[server]
port = {port}

[persistence]
sqlite_path = "{}"

[[records.persist]]
write_pattern = "^todo:"
restore_pattern = "todo:%"
flush_interval_ms = 600000

[[records.expose]]
pattern = "^todo:"
writable = true
"#,
            db.display()
        ),
    );
    let mut child = serve(&path);
    wait_for_health(port).await;
    let mut client = Client::connect(&format!("ws://127.0.0.1:{port}/ws")).await;
    for n in 1..=3 {
        assert_eq!(
            client.publish("todo:last", json!({"n": n})).await,
            json!({"success": true})
        );
    }
    sigterm(&child);
    let status = child.wait().unwrap();
    assert!(status.success(), "exit status {status}");
    let adapter = mesh_records::database::SqliteAdapter::open(&db)
        .await
        .unwrap();
    use mesh_records::database::PersistenceAdapter;
    let rows = adapter.load_matching("todo:%", None, 10).await.unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!((rows[0].id.as_str(), rows[0].version), ("todo:last", 3));
    assert_eq!(&*rows[0].value_json, r#"{"n":3}"#);
}

#[test]
fn the_shipped_config_is_valid() {
    let config = mesh_records::Config::load(std::path::Path::new("config.toml")).unwrap();
    assert_eq!(config.server.port, 3000);
    assert_eq!(config.records.persist.len(), 2);
    assert_eq!(config.persistence.sqlite_path, "./data/records.db");
    // The demo's write rules (README, "Quick start"); Config::load compiled the schemas.
    let rule = |pattern: &str| {
        (config.records.expose.iter())
            .find(|e| e.pattern.as_deref() == Some(pattern))
            .unwrap_or_else(|| panic!("no [[records.expose]] pattern {pattern}"))
    };
    let todo = rule("^todo:[A-Za-z0-9_-]{1,64}$");
    assert!(matches!(
        &todo.schema,
        Some(mesh_records::config::SchemaSource::File(path)) if path == "schemas/todo.json"
    ));
    let cursor = rule("^cursor:[A-Za-z0-9_-]{1,64}:[A-Za-z0-9_-]{1,64}$");
    assert_eq!(
        (cursor.ttl_seconds, cursor.max_value_bytes),
        (Some(5.0), Some(128))
    );
    assert!(cursor.schema.is_some());
    assert!(
        config
            .collections
            .expose
            .iter()
            .any(|c| c.members == "cursor:{1}:*"),
        "the demo's cursors:<room> collection"
    );
}

#[test]
fn a_taken_port_fails_cleanly_before_any_database_is_touched() {
    let dir = tempfile::tempdir().unwrap();
    // Another server holds the port.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let db = dir.path().join("data").join("records.db");
    let path = write_config(
        dir.path(),
        &format!(
            r#"
[server]
port = {port}

[persistence]
sqlite_path = "{}"

[[records.persist]]
write_pattern = "^todo:"
restore_pattern = "todo:%"
"#,
            db.display()
        ),
    );
    let output = mesh_records()
        .arg("--config")
        .arg(&path)
        .env("RUST_LOG", "info")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "stderr: {stderr}");
    assert!(
        stderr.contains(&format!("cannot bind 127.0.0.1:{port}")),
        "stderr: {stderr}"
    );
    // The way out is named: the environment variable and the key.
    assert!(
        stderr.contains("MESH_PORT") && stderr.contains("[server] port"),
        "stderr: {stderr}"
    );
    assert!(!stderr.contains("panicked"), "stderr: {stderr}");
    assert!(
        !stderr.contains("restor"),
        "restored before binding: {stderr}"
    );
    assert!(
        !db.exists(),
        "the database was opened before the port was ours"
    );
    drop(taken);
}

#[test]
fn a_config_error_reads_the_same_whether_or_not_the_port_is_free() {
    let dir = tempfile::tempdir().unwrap();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    // Each is found only by starting the server (not by `Config::load`), yet before binding.
    let mistakes = [
        // A members glob naming a capture group the pattern does not have.
        (
            "[[collections.expose]]\npattern = \"^list:\\\\w+$\"\nmembers = \"item:{1}:*\"\n",
            "collections.expose[0].pattern: members \"item:{1}:*\": names a capture group",
        ),
        // A public key file that is not there.
        (
            "[auth]\njwt_public_key_file = \"/nonexistent/key.pem\"\nalgorithms = [\"RS256\"]\n",
            "auth.jwt_public_key_file",
        ),
    ];
    for (text, key) in mistakes {
        let mut stderrs = Vec::new();
        for port in [taken.local_addr().unwrap().port(), free_port()] {
            let path = write_config(dir.path(), &format!("[server]\nport = {port}\n\n{text}"));
            let output = mesh_records().arg("--config").arg(&path).output().unwrap();
            let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
            assert!(
                !output.status.success(),
                "{text:?} on port {port}: {stderr}"
            );
            assert!(stderr.contains(key), "{key} on port {port}: {stderr}");
            assert!(!stderr.contains("cannot bind"), "port {port}: {stderr}");
            stderrs.push(stderr.lines().last().unwrap_or_default().to_owned());
        }
        assert_eq!(stderrs[0], stderrs[1], "{text:?}");
    }
    drop(taken);
}

#[test]
fn help_exits_zero_and_lists_every_environment_variable() {
    for flag in ["--help", "-h"] {
        let output = mesh_records().arg(flag).output().unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert_eq!(output.status.code(), Some(0), "{flag}: {stdout}");
        assert!(stdout.contains("--config PATH"), "{stdout}");
        for (name, key) in mesh_records::config::ENV_VARS {
            assert!(
                stdout.contains(name) && stdout.contains(key),
                "{name}: {stdout}"
            );
        }
    }
    // A wrong argument is still a usage error.
    let output = mesh_records().arg("--confg").output().unwrap();
    assert_eq!(output.status.code(), Some(2));
}

#[actix_web::test]
async fn the_startup_log_says_where_to_go_and_the_root_leads_to_the_demo() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let db = dir.path().join("records.db");
    let path = write_config(
        dir.path(),
        &format!(
            "[server]\nport = {port}\ndemo = true\n\n[persistence]\nsqlite_path = \"{}\"\n\n\
             [[records.persist]]\nwrite_pattern = \"^todo:\"\nrestore_pattern = \"todo:%\"\n\n\
             [[records.persist]]\nwrite_id = \"settings\"\nrestore_pattern = \"settings\"\n",
            db.display()
        ),
    );
    let child = mesh_records()
        .arg("--config")
        .arg(&path)
        .env("RUST_LOG", "info")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_for_health(port).await;
    assert_eq!(get(port, "/").await, (302, Some("/demo/".to_owned())));
    assert_eq!(get(port, "/demo/").await.0, 200);
    let stderr = stop_and_read_stderr(child);
    assert!(
        stderr.contains(&format!("ws://127.0.0.1:{port}/ws")),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!("http://127.0.0.1:{port}/demo/")),
        "{stderr}"
    );
    // One final-flush line per rule, each naming its rule.
    assert!(
        stderr.contains(r#"final persistence flush (write_pattern "^todo:")"#),
        "{stderr}"
    );
    assert!(
        stderr.contains(r#"final persistence flush (write_id "settings")"#),
        "{stderr}"
    );
    assert!(!stderr.contains("0 rows"), "{stderr}");
}

#[actix_web::test]
async fn without_a_config_file_the_warning_says_what_is_off_and_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let child = mesh_records()
        .current_dir(dir.path())
        .env("MESH_PORT", port.to_string())
        .env("RUST_LOG", "info")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_for_health(port).await;
    // Demo off: the root stays a 404, and nothing is exposed.
    assert_eq!(get(port, "/").await.0, 404);
    let mut client = Client::connect(&format!("ws://127.0.0.1:{port}/ws")).await;
    assert_eq!(
        client.subscribe("todo:1", "patch").await,
        json!({"success": false})
    );
    client.close().await;
    let stderr = stop_and_read_stderr(child);
    for words in [
        "no records are exposed",
        "demo page is off",
        "--config",
        "create ./config.toml",
    ] {
        assert!(stderr.contains(words), "{words:?} missing: {stderr}");
    }
    assert!(!stderr.contains("/demo/"), "{stderr}");
    assert!(
        stderr.contains(&format!("ws://127.0.0.1:{port}/ws")),
        "{stderr}"
    );
}
