//! Authentication: JWTs (binary mode; checked by the `jsonwebtoken` crate with a shared
//! secret, a public key or an identity provider's JWKS, see [`jwt`] and [`jwks`]) or an
//! app-supplied function (library mode), at the WebSocket upgrade and again when a connection
//! refreshes its token.
//!
//! The result is a [`Grant`]: the metadata guards read, when the connection must close unless
//! it refreshes, and which identity a refresh must keep ([`SessionToken`]).

pub mod jwks;
pub mod jwt;

pub use jsonwebtoken::Algorithm;
pub use jwks::Jwks;
pub use jwt::{JwtVerifier, parse_algorithm, sign_hs256};

use actix_http::RequestHead;
use serde_json::Value;
use std::borrow::Cow;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// Why an upgrade or a refresh was refused (HTTP 401 at the upgrade, `EAUTH` on refresh).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct AuthRejection(pub String);

/// What the connection authenticated with; decides whether and how it may refresh.
#[derive(Debug, Clone, PartialEq)]
pub enum Credential {
    /// No token (anonymous), or an app's own authentication: nothing to refresh.
    Untokened,
    /// A JWT. A refresh must carry the same identity claim (`sub` unless configured, see
    /// [`JwtVerifier::identity_claim`]), so a connection can renew its access but never become
    /// somebody else; a token without that claim cannot be refreshed at all.
    Token {
        /// The identity claim's value, if the token had one (null counts as none).
        subject: Option<Value>,
    },
}

/// What an authenticator sees of a WebSocket upgrade request: its head (path, query string,
/// headers, peer). Only the head exists here: the upgrade is served before any actix-web
/// routing or middleware, so there is no `HttpRequest` (see `ws`).
#[derive(Clone, Copy)]
pub struct UpgradeRequest<'a>(&'a RequestHead);

impl<'a> UpgradeRequest<'a> {
    /// Wraps a request head.
    pub fn new(head: &'a RequestHead) -> Self {
        UpgradeRequest(head)
    }

    /// The request headers.
    pub fn headers(&self) -> &'a actix_http::header::HeaderMap {
        &self.0.headers
    }

    /// The query string without the `?` (empty when there is none).
    pub fn query_string(&self) -> &'a str {
        self.0.uri.query().unwrap_or_default()
    }

    /// The request path.
    pub fn path(&self) -> &'a str {
        self.0.uri.path()
    }

    /// The peer's address, when known.
    pub fn peer_addr(&self) -> Option<std::net::SocketAddr> {
        self.0.peer_addr
    }

    /// The whole request head.
    pub fn head(&self) -> &'a RequestHead {
        self.0
    }
}

/// The outcome of authenticating: who the connection is, and until when.
#[derive(Debug, Clone, PartialEq)]
pub struct Grant {
    /// Becomes the connection's metadata (`null` for anonymous).
    pub metadata: Value,
    /// When the connection is closed unless it refreshes first: `exp` plus the leeway.
    /// `None` never expires (no token, or a token without `exp`).
    pub closes_at: Option<SystemTime>,
    /// What a refresh is checked against.
    pub credential: Credential,
}

impl Grant {
    /// A grant that never expires and cannot be refreshed.
    pub fn untokened(metadata: Value) -> Self {
        Grant {
            metadata,
            closes_at: None,
            credential: Credential::Untokened,
        }
    }
}

type GrantFuture = Pin<Box<dyn Future<Output = Result<Grant, AuthRejection>> + Send>>;
type RefreshFn = dyn Fn(&str) -> GrantFuture + Send + Sync;

/// Upgrade request → [`Grant`] or refusal; optionally, a fresh token → [`Grant`].
#[derive(Clone)]
pub struct Authenticator {
    upgrade: Arc<dyn Fn(&UpgradeRequest<'_>) -> GrantFuture + Send + Sync>,
    /// The session reads no request while a refresh runs, so guards see the new claims from
    /// the next request on.
    refresh: Option<Arc<RefreshFn>>,
}

impl Authenticator {
    /// An authenticator from an async function of the upgrade request returning the
    /// connection's metadata. Such connections never expire and cannot refresh.
    pub fn new<F, Fut>(f: F) -> Self
    where
        F: Fn(&UpgradeRequest<'_>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Value, AuthRejection>> + Send + 'static,
    {
        Authenticator {
            upgrade: Arc::new(move |req| {
                let metadata = f(req);
                Box::pin(async move { metadata.await.map(Grant::untokened) })
            }),
            refresh: None,
        }
    }

    /// Everyone is anonymous.
    pub fn anonymous() -> Self {
        Authenticator::new(|_| std::future::ready(Ok(Value::Null)))
    }

    /// HS256 JWTs signed with `secret`, no leeway and no audience or issuer check; see
    /// [`Authenticator::with_jwt`].
    pub fn jwt(secret: impl Into<Vec<u8>>, required: bool) -> Self {
        Authenticator::with_jwt(JwtVerifier::new(secret), required)
    }

    /// JWTs from the `token` query parameter or `Authorization: Bearer`, checked by
    /// `verifier`; the claims become the metadata and `exp` (plus leeway) closes the
    /// connection unless it sends `mesh/refresh-token`. Without a token: anonymous, or
    /// refused when `required`.
    pub fn with_jwt(verifier: JwtVerifier, required: bool) -> Self {
        let verifier = Arc::new(verifier);
        let at_upgrade = Arc::clone(&verifier);
        Authenticator {
            upgrade: Arc::new(move |req| {
                let token = request_token(req);
                let verifier = Arc::clone(&at_upgrade);
                Box::pin(async move {
                    match token {
                        Some(token) => verifier.grant_fetching(&token).await,
                        None if required => Err(AuthRejection("a token is required".into())),
                        None => Ok(Grant::untokened(Value::Null)),
                    }
                })
            }),
            refresh: Some(Arc::new(move |token| {
                let (verifier, token) = (Arc::clone(&verifier), token.to_owned());
                Box::pin(async move { verifier.grant_fetching(&token).await })
            })),
        }
    }

    /// Runs the authenticator on an upgrade request.
    pub fn authenticate(&self, req: &UpgradeRequest<'_>) -> GrantFuture {
        (self.upgrade)(req)
    }

    /// Checks a token sent with `mesh/refresh-token`. Fails when the token is bad or when this
    /// authenticator does not take tokens.
    pub fn refresh(&self, token: &str) -> GrantFuture {
        match &self.refresh {
            Some(refresh) => refresh(token),
            None => Box::pin(std::future::ready(Err(AuthRejection(
                "this server does not accept token refreshes".into(),
            )))),
        }
    }
}

/// A connection's credential over its life: when it runs out, and refreshes that must keep
/// its identity. Plain data, so the rules are tested without a socket.
#[derive(Debug, Clone)]
pub struct SessionToken {
    credential: Credential,
    closes_at: Option<SystemTime>,
    /// Bumped by every accepted refresh, so an expiry timer armed earlier does nothing.
    epoch: u64,
}

impl Default for SessionToken {
    fn default() -> Self {
        SessionToken {
            credential: Credential::Untokened,
            closes_at: None,
            epoch: 0,
        }
    }
}

impl SessionToken {
    /// The state right after the upgrade.
    pub fn new(grant: &Grant) -> Self {
        SessionToken {
            credential: grant.credential.clone(),
            closes_at: grant.closes_at,
            epoch: 0,
        }
    }

    /// When the connection must close; `None` = never.
    pub fn closes_at(&self) -> Option<SystemTime> {
        self.closes_at
    }

    /// Changes with every accepted refresh.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// Whether the connection must be closed at `now`.
    pub fn expired(&self, now: SystemTime) -> bool {
        self.closes_at.is_some_and(|at| at <= now)
    }

    /// How long until the connection must close (zero when overdue); `None` = never.
    pub fn remaining(&self, now: SystemTime) -> Option<Duration> {
        self.closes_at
            .map(|at| at.duration_since(now).unwrap_or(Duration::ZERO))
    }

    /// Takes a verified fresh grant if it keeps the connection's identity; returns the metadata
    /// to install. Refused (nothing changes) for an untokened connection or another subject.
    pub fn refresh(&mut self, grant: Grant) -> Result<Value, AuthRejection> {
        match (&self.credential, &grant.credential) {
            (Credential::Untokened, _) => Err(AuthRejection(
                "this connection did not authenticate with a token, so it has none to refresh"
                    .into(),
            )),
            (Credential::Token { .. }, Credential::Untokened) => {
                Err(AuthRejection("a refresh needs a token".into()))
            }
            (Credential::Token { subject: None }, _) => Err(AuthRejection(
                "this connection's token has no identity claim, so it cannot be refreshed; \
                 reconnect with a new token"
                    .into(),
            )),
            (Credential::Token { subject: old }, Credential::Token { subject: new })
                if old != new =>
            {
                Err(AuthRejection(
                    "the token is for another identity (or has none); reconnect to change \
                     identity"
                        .into(),
                ))
            }
            (Credential::Token { .. }, Credential::Token { .. }) => {
                self.closes_at = grant.closes_at;
                self.epoch += 1;
                Ok(grant.metadata)
            }
        }
    }
}

/// The token from `?token=` or `Authorization: Bearer` (scheme in any case).
pub fn request_token(req: &UpgradeRequest<'_>) -> Option<String> {
    let header = req.headers().get(actix_http::header::AUTHORIZATION);
    if let Some(token) = header.and_then(|h| h.to_str().ok()).and_then(bearer_token) {
        return Some(token.to_owned());
    }
    req.query_string().split('&').find_map(|pair| {
        let (key, value) = pair.split_once('=')?;
        (key == "token").then(|| percent_decode(value))
    })
}

/// The credentials of an `Authorization` header value using the Bearer scheme. Auth schemes are
/// case-insensitive (RFC 7235), so `bearer x` and `BEARER x` work too.
pub fn bearer_token(header: &str) -> Option<&str> {
    let header = header.trim();
    let (scheme, rest) = header.split_once([' ', '\t'])?;
    let token = rest.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

fn percent_decode(s: &str) -> String {
    fn hex(b: u8) -> Option<u8> {
        (b as char).to_digit(16).map(|d| d as u8)
    }
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escaped = (bytes[i] == b'%' && i + 2 < bytes.len())
            .then(|| Some(hex(bytes[i + 1])? * 16 + hex(bytes[i + 2])?))
            .flatten();
        match (escaped, bytes[i]) {
            (Some(b), _) => {
                out.push(b);
                i += 3;
                continue;
            }
            (None, b'+') => out.push(b' '),
            (None, b) => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `text` (a request line, URI or query string) with the value of every `token` query
/// parameter replaced by `REDACTED`, for anything logged from a request.
pub fn redact_token(text: &str) -> Cow<'_, str> {
    let Some(query_at) = text
        .find('?')
        .map(|q| q + 1)
        .or((!text.contains('/')).then_some(0))
    else {
        return Cow::Borrowed(text);
    };
    let (head, query) = text.split_at(query_at);
    if !query.split('&').any(|pair| pair.starts_with("token=")) {
        return Cow::Borrowed(text);
    }
    let redacted: Vec<&str> = query
        .split('&')
        .map(|pair| {
            if pair.starts_with("token=") {
                "token=REDACTED"
            } else {
                pair
            }
        })
        .collect();
    Cow::Owned(format!("{head}{}", redacted.join("&")))
}

#[cfg(test)]
mod tests;
