//! Checking a configuration before anything starts: every limit, path and secret, and the
//! `[[records.expose]]` rules turned into exposures with their guards.

use super::{Config, ExposeConfig, GuardConfig, SchemaSource};
use crate::access::{Exposure, Guard, Matcher};
use crate::connection::Connection;
use crate::error::{Error, Result};
use crate::rules::Schema;
use serde_json::Value;

impl Config {
    /// `[admin] max_body_bytes` and `bind`, `[server] allowed_origins`.
    fn validate_admin_and_origins(&self) -> Result<()> {
        if self.admin.max_body_bytes == 0 {
            return Err(Error::Config(
                "admin.max_body_bytes must be greater than 0".into(),
            ));
        }
        if let Some(bind) = &self.admin.bind {
            if self.admin.token.is_none() {
                return Err(Error::Config(
                    "admin.bind needs admin.token (or MESH_ADMIN_TOKEN)".into(),
                ));
            }
            let port = bind
                .rsplit_once(':')
                .map(|(host, port)| (host, port.parse::<u16>()));
            if !matches!(port, Some((host, Ok(_))) if !host.is_empty()) {
                return Err(Error::Config(format!(
                    "admin.bind: {bind:?} is not host:port (such as \"127.0.0.1:3001\")"
                )));
            }
        }
        self.origin_policy().map(|_| ())
    }

    /// The parsed `[server] allowed_origins`.
    ///
    /// Fails with [`Error::Config`] naming an entry that is not an origin.
    pub(crate) fn origin_policy(&self) -> Result<crate::origin::OriginPolicy> {
        crate::origin::OriginPolicy::new(&self.server.allowed_origins)
            .map_err(|e| Error::Config(format!("server.allowed_origins: {e}")))
    }

    /// Checks everything that can be checked before starting.
    pub fn validate(&self) -> Result<()> {
        let s = &self.server;
        if !s.ws_path.starts_with('/') {
            return Err(Error::Config("server.ws_path must start with '/'".into()));
        }
        for (key, value) in [
            ("server.ping_interval_ms", s.ping_interval_ms as usize),
            ("server.max_frame_bytes", s.max_frame_bytes),
            ("server.max_outbound_bytes", s.max_outbound_bytes),
            ("server.max_record_id_bytes", s.max_record_id_bytes),
            ("server.max_value_bytes", s.max_value_bytes),
            (
                "records.expiry_sweep_ms",
                self.records.expiry_sweep_ms as usize,
            ),
            (
                "server.max_subscriptions_per_connection",
                s.max_subscriptions_per_connection,
            ),
            ("server.max_connections", s.max_connections),
            ("server.max_write_batch", s.max_write_batch),
            ("server.max_write_batch_bytes", s.max_write_batch_bytes),
            ("server.max_pending_writes", s.max_pending_writes),
            ("server.max_in_flight_requests", s.max_in_flight_requests),
            ("server.shutdown_timeout_ms", s.shutdown_timeout_ms as usize),
            (
                "persistence.postgres_statement_timeout_ms",
                self.persistence.postgres_statement_timeout_ms as usize,
            ),
            (
                "persistence.postgres_connect_timeout_ms",
                self.persistence.postgres_connect_timeout_ms as usize,
            ),
            (
                "persistence.max_buffered_records",
                self.persistence.max_buffered_records,
            ),
        ] {
            if value == 0 {
                return Err(Error::Config(format!("{key} must be greater than 0")));
            }
        }
        if self.auth.required && !self.auth.checks_tokens() {
            return Err(Error::Config(
                "auth.required = true needs a key source: auth.jwt_secret (or MESH_JWT_SECRET), \
                 auth.jwt_public_key_file or auth.jwks_url"
                    .into(),
            ));
        }
        for (key, value) in [
            ("auth.jwt_public_key_file", &self.auth.jwt_public_key_file),
            ("auth.jwks_url", &self.auth.jwks_url),
        ] {
            if value.as_deref() == Some("") {
                return Err(Error::Config(format!("{key} must not be empty")));
            }
        }
        for name in &self.auth.algorithms {
            crate::auth::parse_algorithm(name)
                .map_err(|e| Error::Config(format!("auth.algorithms: {e}")))?;
        }
        if self.auth.jwks_url.is_some() && self.auth.jwks_refresh_seconds == 0 {
            return Err(Error::Config(
                "auth.jwks_refresh_seconds must be greater than 0".into(),
            ));
        }
        if self.auth.identity_claim.is_empty() {
            return Err(Error::Config(
                "auth.identity_claim must not be empty".into(),
            ));
        }
        if self.auth.jwt_secret.as_deref() == Some("") {
            return Err(Error::Config("auth.jwt_secret must not be empty".into()));
        }
        for (key, value) in [
            ("auth.audience", &self.auth.audience),
            ("auth.issuer", &self.auth.issuer),
        ] {
            match value.as_deref() {
                Some("") => return Err(Error::Config(format!("{key} must not be empty"))),
                // Checked only on tokens: without a key it would silently check nothing.
                Some(_) if !self.auth.checks_tokens() => {
                    return Err(Error::Config(format!(
                        "{key} needs a key source (auth.jwt_secret, jwt_public_key_file or \
                         jwks_url)"
                    )));
                }
                _ => {}
            }
        }
        if self.admin.token.as_deref() == Some("") {
            return Err(Error::Config("admin.token must not be empty".into()));
        }
        self.validate_admin_and_origins()?;
        for (n, rule) in self.records.persist.iter().enumerate() {
            let at = |key: &str| format!("records.persist[{n}].{key}");
            match (&rule.write_pattern, &rule.write_id) {
                (Some(pattern), None) => {
                    regex::Regex::new(pattern).map_err(|e| {
                        Error::Config(format!(
                            "{}: invalid regex {pattern:?}: {e}",
                            at("write_pattern")
                        ))
                    })?;
                }
                (None, Some(id)) if !id.is_empty() => {}
                _ => {
                    return Err(Error::Config(format!(
                        "{}: give exactly one of write_pattern and write_id",
                        at("write_pattern")
                    )));
                }
            }
            if rule.flush_interval_ms == 0 || rule.max_buffer_size == 0 {
                return Err(Error::Config(format!(
                    "{}: flush_interval_ms and max_buffer_size must be greater than 0",
                    at("flush_interval_ms")
                )));
            }
            if rule.ack_timeout_ms == 0 {
                return Err(Error::Config(format!(
                    "{} must be greater than 0",
                    at("ack_timeout_ms")
                )));
            }
        }
        self.exposures().map(|_| ())
    }

    /// The `[[records.expose]]` rules as exposures with their config guards.
    ///
    /// Fails with [`Error::Config`] naming the rule (`records.expose[N]`) at fault.
    pub fn exposures(&self) -> Result<Vec<Exposure>> {
        self.records
            .expose
            .iter()
            .enumerate()
            .map(|(n, rule)| {
                rule.to_exposure(self)
                    .map_err(|e| Error::Config(format!("records.expose[{n}].{e}")))
            })
            .collect()
    }
}

/// The message of a config error without its `config: ` prefix, for wrapping in another one
/// (so nothing reads `config: …: config: …`).
pub(super) fn detail(e: Error) -> String {
    match e {
        Error::Config(message) => message,
        other => other.to_string(),
    }
}

impl ExposeConfig {
    fn to_exposure(&self, config: &Config) -> std::result::Result<Exposure, String> {
        let mut exposure = match (&self.id, &self.pattern) {
            (Some(id), None) if !id.is_empty() => Exposure::id(id.clone()),
            (None, Some(pattern)) => {
                Exposure::pattern(pattern).map_err(|e| format!("pattern: {}", detail(e)))?
            }
            _ => return Err("id / pattern: give exactly one, non-empty".into()),
        };
        exposure.writable = self.writable;
        if let Some(guard) = &self.guard {
            exposure.guard = Some(
                guard
                    .to_guard(&exposure.matcher)
                    .map_err(|e| format!("guard.{e}"))?,
            );
        }
        if let Some(guard) = &self.write_guard {
            if !self.writable {
                return Err("write_guard: the exposure is not writable".into());
            }
            exposure.write_guard = Some(
                guard
                    .to_guard(&exposure.matcher)
                    .map_err(|e| format!("write_guard.{e}"))?,
            );
        }
        let rules_given = [
            ("schema", self.schema.is_some()),
            ("ttl_seconds", self.ttl_seconds.is_some()),
            ("max_value_bytes", self.max_value_bytes.is_some()),
        ];
        if let Some((key, _)) = rules_given.iter().find(|(_, given)| *given)
            && !self.writable
        {
            return Err(format!("{key}: the exposure is not writable"));
        }
        if let Some(source) = &self.schema {
            let schema = match source {
                SchemaSource::File(path) => {
                    let path = match &config.base_dir {
                        Some(dir) => dir.join(path),
                        None => std::path::PathBuf::from(path),
                    };
                    Schema::load(&path)
                }
                SchemaSource::Inline(schema) => Schema::compile(schema, "(inline)"),
            };
            exposure = exposure.schema(schema.map_err(|e| format!("schema: {}", detail(e)))?);
        }
        if let Some(seconds) = self.ttl_seconds {
            let ttl = std::time::Duration::try_from_secs_f64(seconds)
                .ok()
                .filter(|ttl| !ttl.is_zero())
                .ok_or_else(|| format!("ttl_seconds: must be a positive number, not {seconds}"))?;
            exposure = exposure.ttl(ttl);
        }
        if let Some(bytes) = self.max_value_bytes {
            let frame = config.server.max_frame_bytes;
            if bytes == 0 || bytes > frame {
                return Err(format!(
                    "max_value_bytes: must be between 1 and server.max_frame_bytes ({frame}), \
                     not {bytes}"
                ));
            }
            exposure = exposure.max_value_bytes(bytes);
        }
        Ok(exposure)
    }
}

impl GuardConfig {
    /// The guard these conditions make, for ids `matcher` covers (captures refer to it).
    pub fn to_guard(&self, matcher: &Matcher) -> std::result::Result<Guard, String> {
        if self.require_metadata.is_none() && self.metadata_equals_capture.is_none() {
            return Err("require_metadata: a guard needs at least one condition".into());
        }
        if let Some(rule) = &self.metadata_equals_capture {
            let groups = match matcher {
                Matcher::Pattern(re) => re.captures_len(),
                Matcher::Exact(_) => 1,
            };
            if rule.group >= groups {
                return Err(format!(
                    "metadata_equals_capture.group: the pattern has no group {}",
                    rule.group
                ));
            }
        }
        let required = self.require_metadata.clone();
        let capture = self.metadata_equals_capture.clone();
        let matcher = matcher.clone();
        Ok(Guard::sync(move |conn: &Connection, id| {
            let missing = |key: &String| conn.metadata_field(key).is_none_or(|v| v.is_null());
            if required.as_ref().is_some_and(missing) {
                return false;
            }
            if let Some(rule) = &capture {
                let Some(expected) = matcher.capture(id.as_str(), rule.group) else {
                    return false;
                };
                let actual = match conn.metadata_field(&rule.key) {
                    Some(Value::String(s)) => s,
                    Some(Value::Number(n)) => n.to_string(),
                    Some(Value::Bool(b)) => b.to_string(),
                    _ => return false,
                };
                if actual != expected {
                    return false;
                }
            }
            true
        }))
    }
}
