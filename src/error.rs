//! The crate's one public error type and the stable codes it maps to on the wire.

use serde::Serialize;

/// Everything that can go wrong in a request, a write or at startup.
///
/// Clients only ever see [`Error::code`], [`Error::name`] and the `Display` text; variants that
/// wrap backend failures keep the backend's text out of `Display` so it never reaches a client.
#[derive(Clone, Debug, thiserror::Error)]
pub enum Error {
    /// The request was malformed or violated a limit; nothing was changed.
    #[error("{0}")]
    Invalid(String),
    /// The record is not exposed for this operation, or its guard refused.
    #[error("access denied")]
    Forbidden,
    /// The command name is not registered.
    #[error("Command \"{0}\" not found")]
    UnknownCommand(String),
    /// The store could not be reached; nothing was acknowledged.
    #[error("record store unavailable, try again")]
    Unavailable,
    /// The store did not answer in time and could not be asked afterwards: the write may or
    /// may not have been applied. Subscribers will see the record's real state.
    #[error("the record store did not answer in time; the change may or may not have been applied")]
    Unknown,
    /// The change was applied in the store (subscribers see it), but with `ack = "flushed"`
    /// the persistence database did not confirm it in time, or refused it: it is durable only
    /// once a later flush writes it, and lost if every server stops before that.
    #[error(
        "the change was applied, but the database did not confirm it in time; it is lost if \
         the server stops before writing it"
    )]
    NotDurable,
    /// A conditional write or delete found the record at another version; nothing changed.
    #[error("the record is at version {current}, not the expected one")]
    VersionMismatch {
        /// The record's version now (0 when it does not exist).
        current: u64,
    },
    /// Other writers kept winning the race for this record; nothing was written.
    #[error("too many concurrent writes to this record, try again")]
    Conflict,
    /// A configured limit was exceeded; nothing was changed.
    #[error("{0}")]
    Limit(String),
    /// The value that would be stored does not satisfy the record's JSON Schema; nothing was
    /// changed. Carries the first few violations (`{path, message}`).
    #[error("{}", schema_message(.0))]
    Schema(Vec<Violation>),
    /// The connection exceeded its request rate.
    #[error("too many requests")]
    RateLimited,
    /// A token sent to refresh the connection's access was refused; the connection keeps its
    /// old token until that expires.
    #[error("{0}")]
    Auth(String),
    /// A failure inside the server; details are logged, not sent.
    #[error("internal server error")]
    Internal,
    /// The configuration is unusable; the message names the key.
    #[error("config: {0}")]
    Config(String),
    /// A custom command handler failed with its own code and message.
    #[error("{message}")]
    Command {
        /// Stable code chosen by the handler (for example `EINVALID`).
        code: String,
        /// Human message sent to the client.
        message: String,
    },
}

impl Error {
    /// Shorthand for [`Error::Invalid`].
    pub fn invalid(msg: impl Into<String>) -> Self {
        Error::Invalid(msg.into())
    }

    /// A custom command error with the given code and message.
    pub fn command(code: impl Into<String>, message: impl Into<String>) -> Self {
        Error::Command {
            code: code.into(),
            message: message.into(),
        }
    }

    /// The stable wire code clients can branch on.
    pub fn code(&self) -> &str {
        match self {
            Error::Invalid(_) => "EINVALID",
            Error::Forbidden => "EFORBIDDEN",
            Error::UnknownCommand(_) => "ENOTFOUND",
            Error::Unavailable => "EUNAVAILABLE",
            Error::Unknown | Error::NotDurable => "EUNKNOWN",
            Error::VersionMismatch { .. } => "EVERSION",
            Error::Conflict => "ECONFLICT",
            Error::Limit(_) => "ELIMIT",
            Error::Schema(_) => "ESCHEMA",
            Error::RateLimited => "ERATELIMIT",
            Error::Auth(_) => "EAUTH",
            Error::Internal | Error::Config(_) => "ESERVER",
            Error::Command { code, .. } => code,
        }
    }

    /// The error class name Mesh clients expect next to the code: one name per code, whichever
    /// variant carries it (a handler's `Error::command("EFORBIDDEN", ..)` is a
    /// `ForbiddenError` like [`Error::Forbidden`]); codes of the handler's own are
    /// `CommandError`.
    pub fn name(&self) -> &'static str {
        name_of(self.code())
    }

    /// The JSON object sent as a failed request's payload.
    pub fn to_wire(&self) -> WireError {
        WireError {
            error: self.to_string(),
            code: self.code().to_owned(),
            name: self.name(),
            version: match self {
                Error::VersionMismatch { current } => Some(*current),
                _ => None,
            },
            violations: match self {
                Error::Schema(violations) => Some(violations.clone()),
                _ => None,
            },
        }
    }
}

/// Every code the server itself sends, with its one name (docs/protocol.md, "Errors").
pub const CODE_NAMES: [(&str, &str); 12] = [
    ("EINVALID", "ValidationError"),
    ("EFORBIDDEN", "ForbiddenError"),
    ("ENOTFOUND", "CommandError"),
    ("EUNAVAILABLE", "UnavailableError"),
    ("EUNKNOWN", "UnknownOutcomeError"),
    ("EVERSION", "VersionMismatchError"),
    ("ECONFLICT", "ConflictError"),
    ("ELIMIT", "LimitError"),
    ("ESCHEMA", "ValidationError"),
    ("ERATELIMIT", "RateLimitError"),
    ("EAUTH", "AuthError"),
    ("ESERVER", "ServerError"),
];

/// The name that goes with `code`: its entry in [`CODE_NAMES`], else `CommandError` (a code a
/// command handler chose).
fn name_of(code: &str) -> &'static str {
    CODE_NAMES
        .iter()
        .find(|(known, _)| *known == code)
        .map_or("CommandError", |(_, name)| name)
}

/// The payload of a failed request: `{"error", "code", "name"}`.
#[derive(Debug, Serialize)]
pub struct WireError {
    /// Human-readable message.
    pub error: String,
    /// Stable code such as `EFORBIDDEN`.
    pub code: String,
    /// Error class name such as `CommandError`.
    pub name: &'static str,
    /// The record's current version, on `EVERSION`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<u64>,
    /// What the value breaks, on `ESCHEMA`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub violations: Option<Vec<Violation>>,
}

/// `ESCHEMA`'s text: the first violation, and how many more.
fn schema_message(violations: &[Violation]) -> String {
    let Some(first) = violations.first() else {
        return "the value does not match the record's schema".into();
    };
    let at = if first.path.is_empty() {
        "/"
    } else {
        &first.path
    };
    let more = match violations.len() - 1 {
        0 => String::new(),
        n => format!(" (and {n} more)"),
    };
    format!(
        "the value does not match the record's schema: at {at}: {}{more}",
        first.message
    )
}

/// One way a value fails its exposure's JSON Schema (`ESCHEMA`), as clients see it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Violation {
    /// Where in the value, as a JSON Pointer (`""` is the whole value).
    pub path: String,
    /// What is wrong there.
    pub message: String,
}

/// Result alias used across the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_code_comes_back_under_one_name() {
        let every_variant = [
            Error::Invalid("x".into()),
            Error::Forbidden,
            Error::UnknownCommand("x".into()),
            Error::Unavailable,
            Error::Unknown,
            Error::NotDurable,
            Error::VersionMismatch { current: 1 },
            Error::Conflict,
            Error::Limit("x".into()),
            Error::Schema(Vec::new()),
            Error::RateLimited,
            Error::Auth("x".into()),
            Error::Internal,
            Error::Config("x".into()),
        ];
        let handlers = CODE_NAMES
            .iter()
            .map(|(code, _)| Error::command(*code, "x"));
        let mut seen = std::collections::HashMap::new();
        for error in every_variant.into_iter().chain(handlers) {
            let name = error.name();
            let first = *seen.entry(error.code().to_owned()).or_insert(name);
            assert_eq!(first, name, "{} under two names", error.code());
        }
        assert_eq!(
            seen.len(),
            CODE_NAMES.len(),
            "a variant's code is missing from CODE_NAMES"
        );
        assert_eq!(Error::command("ENOPE", "x").name(), "CommandError");
    }
}
