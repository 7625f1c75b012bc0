//! Authentication: HS256 JWTs (binary mode) or an app-supplied function (library mode), at the
//! WebSocket upgrade and again when a connection refreshes its token.
//!
//! The result is a [`Grant`]: the metadata guards read, when the connection must close unless
//! it refreshes, and which identity a refresh must keep ([`SessionToken`]).

use actix_http::RequestHead;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::Sha256;
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
type RefreshFn = dyn Fn(&str) -> Result<Grant, AuthRejection> + Send + Sync;

/// Upgrade request → [`Grant`] or refusal; optionally, a fresh token → [`Grant`].
#[derive(Clone)]
pub struct Authenticator {
    upgrade: Arc<dyn Fn(&UpgradeRequest<'_>) -> GrantFuture + Send + Sync>,
    /// Synchronous on purpose: the session applies a refresh before it reads the next request,
    /// so guards see the new claims from that request on.
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

    /// HS256 JWTs from the `token` query parameter or `Authorization: Bearer`; the claims
    /// become the metadata and `exp` (plus leeway) closes the connection unless it sends
    /// `mesh/refresh-token`. Without a token: anonymous, or refused when `required`.
    pub fn with_jwt(verifier: JwtVerifier, required: bool) -> Self {
        let verifier = Arc::new(verifier);
        let at_upgrade = Arc::clone(&verifier);
        Authenticator {
            upgrade: Arc::new(move |req| {
                let result = match request_token(req) {
                    Some(token) => at_upgrade.grant(&token, SystemTime::now()),
                    None if required => Err(AuthRejection("a token is required".into())),
                    None => Ok(Grant::untokened(Value::Null)),
                };
                Box::pin(std::future::ready(result))
            }),
            refresh: Some(Arc::new(move |token| {
                verifier.grant(token, SystemTime::now())
            })),
        }
    }

    /// Runs the authenticator on an upgrade request.
    pub fn authenticate(&self, req: &UpgradeRequest<'_>) -> GrantFuture {
        (self.upgrade)(req)
    }

    /// Checks a token sent with `mesh/refresh-token`. Fails when the token is bad or when this
    /// authenticator does not take tokens.
    pub fn refresh(&self, token: &str) -> Result<Grant, AuthRejection> {
        match &self.refresh {
            Some(refresh) => refresh(token),
            None => Err(AuthRejection(
                "this server does not accept token refreshes".into(),
            )),
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

fn unix_seconds(at: SystemTime) -> u64 {
    at.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}

/// Checks HS256 JWTs: signature, `exp` and `nbf` with a leeway for clock skew, and optionally
/// `aud` and `iss`.
#[derive(Clone)]
pub struct JwtVerifier {
    secret: Arc<[u8]>,
    identity_claim: Arc<str>,
    leeway_seconds: u64,
    audience: Option<String>,
    issuer: Option<String>,
}

impl std::fmt::Debug for JwtVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The secret stays out of logs.
        f.debug_struct("JwtVerifier")
            .field("leeway_seconds", &self.leeway_seconds)
            .field("audience", &self.audience)
            .field("issuer", &self.issuer)
            .finish_non_exhaustive()
    }
}

impl JwtVerifier {
    /// A verifier for tokens signed with `secret`: no leeway, any audience and issuer.
    pub fn new(secret: impl Into<Vec<u8>>) -> Self {
        JwtVerifier {
            secret: secret.into().into(),
            identity_claim: "sub".into(),
            leeway_seconds: 0,
            audience: None,
            issuer: None,
        }
    }

    /// Accepts `exp` up to this many seconds past and `nbf` this many seconds ahead, and keeps
    /// a connection open this long after its token's `exp`.
    pub fn leeway_seconds(mut self, seconds: u64) -> Self {
        self.leeway_seconds = seconds;
        self
    }

    /// The claim that says who the connection is (default `sub`): a refresh must carry the
    /// same value, and a token without it cannot refresh.
    pub fn identity_claim(mut self, claim: impl Into<String>) -> Self {
        self.identity_claim = claim.into().into();
        self
    }

    /// Requires `aud` to be this string, or an array holding it.
    pub fn audience(mut self, audience: impl Into<String>) -> Self {
        self.audience = Some(audience.into());
        self
    }

    /// Requires `iss` to be this string.
    pub fn issuer(mut self, issuer: impl Into<String>) -> Self {
        self.issuer = Some(issuer.into());
        self
    }

    /// Verifies a token at time `now` (Unix seconds) and returns its claims. Refuses any other
    /// `alg` (including `none`), a bad signature, an `exp` in the past or an `nbf` in the
    /// future (beyond the leeway), and a mismatched `aud` or `iss` when those are configured.
    pub fn verify(&self, token: &str, now: u64) -> Result<Value, AuthRejection> {
        let reject = |why: &str| AuthRejection(format!("invalid token: {why}"));
        let mut parts = token.split('.');
        let (Some(header), Some(claims), Some(signature), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(reject("not a JWT"));
        };
        let decode_json = |part: &str| -> Result<Value, AuthRejection> {
            let bytes = URL_SAFE_NO_PAD
                .decode(part)
                .map_err(|_| reject("bad base64"))?;
            serde_json::from_slice(&bytes).map_err(|_| reject("bad JSON"))
        };
        let header_json = decode_json(header)?;
        if header_json.get("alg").and_then(Value::as_str) != Some("HS256") {
            return Err(reject("only HS256 is accepted"));
        }
        let signature = URL_SAFE_NO_PAD
            .decode(signature)
            .map_err(|_| reject("bad signature encoding"))?;
        let mut mac =
            Hmac::<Sha256>::new_from_slice(&self.secret).map_err(|_| reject("bad secret"))?;
        mac.update(header.as_bytes());
        mac.update(b".");
        mac.update(claims.as_bytes());
        mac.verify_slice(&signature)
            .map_err(|_| reject("bad signature"))?;
        let claims = decode_json(claims)?;
        if !claims.is_object() {
            return Err(reject("claims are not an object"));
        }
        let (now, leeway) = (now as f64, self.leeway_seconds as f64);
        if let Some(exp) = claims.get("exp") {
            match exp.as_f64() {
                Some(exp) if exp + leeway > now => {}
                _ => return Err(reject("expired")),
            }
        }
        if let Some(nbf) = claims.get("nbf") {
            match nbf.as_f64() {
                Some(nbf) if nbf <= now + leeway => {}
                _ => return Err(reject("not valid yet")),
            }
        }
        if let Some(expected) = &self.audience {
            let matches = match claims.get("aud") {
                Some(Value::String(aud)) => aud == expected,
                Some(Value::Array(auds)) => auds.iter().any(|a| a.as_str() == Some(expected)),
                _ => false,
            };
            if !matches {
                return Err(reject("wrong audience (aud)"));
            }
        }
        if let Some(expected) = &self.issuer
            && claims.get("iss").and_then(Value::as_str) != Some(expected.as_str())
        {
            return Err(reject("wrong issuer (iss)"));
        }
        Ok(claims)
    }

    /// Verifies a token at `now` and turns its claims into a [`Grant`] that closes the
    /// connection at `exp` plus the leeway (never, without `exp`).
    pub fn grant(&self, token: &str, now: SystemTime) -> Result<Grant, AuthRejection> {
        let claims = self.verify(token, unix_seconds(now))?;
        // `verify` accepted `exp`, so it is a number; one too large for a time never expires.
        let closes_at = claims
            .get("exp")
            .and_then(Value::as_f64)
            .and_then(|exp| Duration::try_from_secs_f64(exp + self.leeway_seconds as f64).ok())
            .and_then(|since_epoch| SystemTime::UNIX_EPOCH.checked_add(since_epoch));
        Ok(Grant {
            credential: Credential::Token {
                subject: claims
                    .get(&*self.identity_claim)
                    .filter(|value| !value.is_null())
                    .cloned(),
            },
            closes_at,
            metadata: claims,
        })
    }
}

/// Verifies an HS256 JWT and returns its claims, with no leeway and no `aud`/`iss` check
/// (see [`JwtVerifier::verify`]).
pub fn verify_hs256(token: &str, secret: &[u8], now: u64) -> Result<Value, AuthRejection> {
    JwtVerifier::new(secret).verify(token, now)
}

/// Signs claims as an HS256 JWT (for tests, tools and services that mint tokens).
pub fn sign_hs256(claims: &Value, secret: &[u8]) -> String {
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
    let body = URL_SAFE_NO_PAD.encode(claims.to_string());
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes keys of any length");
    mac.update(header.as_bytes());
    mac.update(b".");
    mac.update(body.as_bytes());
    let signature = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
    format!("{header}.{body}.{signature}")
}

#[cfg(test)]
mod tests;
