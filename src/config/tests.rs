//! Parsing, environment overrides and validation of configurations.

use super::*;

#[test]
fn defaults_parse_from_nothing() {
    let config = Config::parse("").unwrap();
    assert_eq!(config.server.port, 3000);
    assert_eq!(config.store.key_prefix, "mesh:");
    config.validate().unwrap();
}

#[test]
fn unknown_keys_are_named() {
    let err = Config::parse("[server]\nprot = 1\n")
        .unwrap_err()
        .to_string();
    assert!(err.contains("prot"), "{err}");
}

#[test]
fn bad_rules_are_named() {
    let config = Config::parse("[[records.expose]]\npattern = \"(\"\n").unwrap();
    let err = config.validate().unwrap_err().to_string();
    assert!(err.contains("records.expose[0].pattern"), "{err}");
    let config = Config::parse("[auth]\nrequired = true\n").unwrap();
    assert!(
        config
            .validate()
            .unwrap_err()
            .to_string()
            .contains("auth.required")
    );
    let config = Config::parse(
        "[[records.expose]]\npattern = \"^u:(\\\\d+)$\"\nwritable = true\nwrite_guard = { metadata_equals_capture = { key = \"userId\", group = 2 } }\n",
    )
    .unwrap();
    let err = config.validate().unwrap_err().to_string();
    assert!(
        err.contains("records.expose[0].write_guard.metadata_equals_capture.group"),
        "{err}"
    );
}

#[actix_rt::test]
async fn auth_leeway_defaults_to_five_and_aud_iss_need_a_key() {
    assert_eq!(Config::default().auth.leeway_seconds, 5);
    let config = Config::parse("[auth]\naudience = \"app\"\n").unwrap();
    let err = config.validate().unwrap_err().to_string();
    assert!(err.contains("auth.audience"), "{err}");
    let config = Config::parse("[auth]\njwt_secret = \"s\"\nissuer = \"\"\n").unwrap();
    let err = config.validate().unwrap_err().to_string();
    assert!(err.contains("auth.issuer"), "{err}");
    let config = Config::parse(
        "[auth]\njwt_secret = \"s\"\nleeway_seconds = 0\naudience = \"app\"\nissuer = \"idp\"\n",
    )
    .unwrap();
    config.validate().unwrap();
    assert!(config.auth.jwt_verifier().await.unwrap().is_some());
    // One key source at most; a public key names its algorithms.
    let both = Config::parse("[auth]\njwt_secret = \"s\"\njwks_url = \"http://x\"\n").unwrap();
    let err = both.auth.jwt_verifier().await.unwrap_err().to_string();
    assert!(err.contains("one key source"), "{err}");
    let bare = Config::parse("[auth]\njwt_public_key_file = \"k.pem\"\n").unwrap();
    let err = bare.auth.jwt_verifier().await.unwrap_err().to_string();
    assert!(err.contains("auth.algorithms"), "{err}");
    let unknown = Config::parse("[auth]\njwt_secret = \"s\"\nalgorithms = [\"HS999\"]\n").unwrap();
    let err = unknown.auth.jwt_verifier().await.unwrap_err().to_string();
    assert!(err.contains("unknown algorithm"), "{err}");
}

#[test]
fn regex_errors_give_the_reason_and_the_pattern() {
    let config = Config::parse("[[records.expose]]\npattern = \"(\"\n").unwrap();
    let err = config.validate().unwrap_err().to_string();
    assert!(
        err.starts_with("config: records.expose[0].pattern: invalid regex \"(\""),
        "{err}"
    );
    assert!(err.contains("unclosed group"), "{err}");
    assert_eq!(err.matches("config:").count(), 1, "{err}");
    let config = Config::parse(
        "[[records.persist]]\nwrite_pattern = \"^todo:[\"\nrestore_pattern = \"todo:%\"\n",
    )
    .unwrap();
    let err = config.validate().unwrap_err().to_string();
    assert!(
        err.contains("records.persist[0].write_pattern: invalid regex \"^todo:[\""),
        "{err}"
    );
    assert!(err.contains("unclosed character class"), "{err}");
}

#[test]
fn a_file_error_names_the_file_once_and_says_config_once() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(&path, "[server\n").unwrap();
    let err = Config::load(&path).unwrap_err().to_string();
    assert!(
        err.starts_with(&format!("config: {}: ", path.display())),
        "{err}"
    );
    assert_eq!(err.matches("config:").count(), 1, "{err}");
}

#[test]
fn every_listed_env_var_overrides_its_setting() {
    let before = format!("{:?}", Config::default());
    for (name, key) in ENV_VARS {
        let mut config = Config::default();
        config
            .apply_env(|k| (k == name).then(|| "4001".to_string()))
            .unwrap();
        assert_ne!(format!("{config:?}"), before, "{name} did not change {key}");
    }
}

#[test]
fn env_overrides_apply() {
    let mut config = Config::default();
    config
        .apply_env(|k| (k == "MESH_PORT").then(|| "4001".to_string()))
        .unwrap();
    assert_eq!(config.server.port, 4001);
    assert!(config.apply_env(|_| Some("x".into())).is_err());
}

#[test]
fn admin_listener_and_origins_are_checked() {
    for (toml, key) in [
        ("[admin]\nmax_body_bytes = 0\n", "admin.max_body_bytes"),
        ("[admin]\ntoken = \"t\"\nbind = \"3001\"\n", "admin.bind"),
        (
            "[admin]\ntoken = \"t\"\nbind = \"localhost:http\"\n",
            "admin.bind",
        ),
        ("[admin]\nbind = \"127.0.0.1:3001\"\n", "admin.token"),
        (
            "[server]\nallowed_origins = [\"https://app.example.com/\"]\n",
            "server.allowed_origins",
        ),
    ] {
        let err = Config::parse(toml)
            .unwrap()
            .validate()
            .unwrap_err()
            .to_string();
        assert!(err.contains(key), "{toml}: {err}");
    }
    let config = Config::parse(
        "[server]\nallowed_origins = [\"*\", \"https://app.example.com\"]\n\
         [admin]\ntoken = \"t\"\nbind = \"127.0.0.1:3001\"\n",
    )
    .unwrap();
    config.validate().unwrap();
    assert_eq!(config.admin.max_body_bytes, 2 * 1024 * 1024);
}

#[test]
fn persist_ack_defaults_to_stored_and_its_timeout_must_be_positive() {
    let rule = "[[records.persist]]\nwrite_pattern = \"^todo:\"\nrestore_pattern = \"todo:%\"\n";
    let config = Config::parse(rule).unwrap();
    config.validate().unwrap();
    assert_eq!(config.records.persist[0].ack, PersistAck::Stored);
    assert_eq!(config.records.persist[0].ack_timeout_ms, 5_000);
    let config =
        Config::parse(&format!("{rule}ack = \"flushed\"\nack_timeout_ms = 250\n")).unwrap();
    config.validate().unwrap();
    assert_eq!(config.records.persist[0].ack, PersistAck::Flushed);
    assert_eq!(config.records.persist[0].ack_timeout_ms, 250);
    let err = Config::parse(&format!("{rule}ack = \"synced\"\n"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("synced"), "{err}");
    let config = Config::parse(&format!("{rule}ack = \"flushed\"\nack_timeout_ms = 0\n")).unwrap();
    let err = config.validate().unwrap_err().to_string();
    assert!(err.contains("records.persist[0].ack_timeout_ms"), "{err}");
}
