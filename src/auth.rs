//! Authentication at the WebSocket upgrade: HS256 JWTs (binary mode) or an app-supplied
//! function (library mode). The result becomes the connection's metadata, which guards read.

use actix_http::RequestHead;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::Sha256;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

/// Why an upgrade was refused (answered with HTTP 401 and this text).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct AuthRejection(pub String);

type AuthFuture = Pin<Box<dyn Future<Output = Result<Value, AuthRejection>> + Send>>;

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

/// Upgrade request → metadata (`null` for anonymous) or refusal.
#[derive(Clone)]
pub struct Authenticator(Arc<dyn Fn(&UpgradeRequest<'_>) -> AuthFuture + Send + Sync>);

impl Authenticator {
    /// An authenticator from an async function of the upgrade request.
    pub fn new<F, Fut>(f: F) -> Self
    where
        F: Fn(&UpgradeRequest<'_>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Value, AuthRejection>> + Send + 'static,
    {
        Authenticator(Arc::new(move |req| Box::pin(f(req))))
    }

    /// Everyone is anonymous.
    pub fn anonymous() -> Self {
        Authenticator::new(|_| std::future::ready(Ok(Value::Null)))
    }

    /// HS256 JWTs from the `token` query parameter or `Authorization: Bearer`; the claims
    /// become the metadata. Without a token: anonymous, or refused when `required`.
    pub fn jwt(secret: impl Into<Vec<u8>>, required: bool) -> Self {
        let secret: Arc<[u8]> = secret.into().into();
        Authenticator::new(move |req| {
            let result = match request_token(req) {
                Some(token) => verify_hs256(&token, &secret, unix_now()),
                None if required => Err(AuthRejection("a token is required".into())),
                None => Ok(Value::Null),
            };
            std::future::ready(result)
        })
    }

    /// Runs the authenticator.
    pub fn authenticate(&self, req: &UpgradeRequest<'_>) -> AuthFuture {
        (self.0)(req)
    }
}

/// The token from `?token=` or `Authorization: Bearer`.
pub fn request_token(req: &UpgradeRequest<'_>) -> Option<String> {
    let header = req.headers().get(actix_http::header::AUTHORIZATION);
    if let Some(token) = header
        .and_then(|h| h.to_str().ok())
        .and_then(|h| h.strip_prefix("Bearer "))
    {
        return Some(token.trim().to_owned());
    }
    req.query_string().split('&').find_map(|pair| {
        let (key, value) = pair.split_once('=')?;
        (key == "token").then(|| percent_decode(value))
    })
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

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}

/// Verifies an HS256 JWT and returns its claims. Refuses any other `alg` (including `none`),
/// a bad signature, an `exp` in the past and an `nbf` in the future.
pub fn verify_hs256(token: &str, secret: &[u8], now: u64) -> Result<Value, AuthRejection> {
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
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).map_err(|_| reject("bad secret"))?;
    mac.update(header.as_bytes());
    mac.update(b".");
    mac.update(claims.as_bytes());
    mac.verify_slice(&signature)
        .map_err(|_| reject("bad signature"))?;
    let claims = decode_json(claims)?;
    if !claims.is_object() {
        return Err(reject("claims are not an object"));
    }
    if let Some(exp) = claims.get("exp") {
        match exp.as_f64() {
            Some(exp) if exp > now as f64 => {}
            _ => return Err(reject("expired")),
        }
    }
    if let Some(nbf) = claims.get("nbf") {
        match nbf.as_f64() {
            Some(nbf) if nbf <= now as f64 => {}
            _ => return Err(reject("not valid yet")),
        }
    }
    Ok(claims)
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
mod tests {
    use super::*;
    use serde_json::json;

    const SECRET: &[u8] = b"s3cret";

    #[test]
    fn accepts_a_valid_token() {
        let token = sign_hs256(&json!({"userId": "5", "exp": 2000}), SECRET);
        assert_eq!(verify_hs256(&token, SECRET, 1000).unwrap()["userId"], "5");
    }

    #[test]
    fn refuses_bad_tokens() {
        let good = sign_hs256(&json!({"userId": "5"}), SECRET);
        assert!(verify_hs256(&good, b"other", 0).is_err());
        let expired = sign_hs256(&json!({"exp": 10}), SECRET);
        assert!(verify_hs256(&expired, SECRET, 11).is_err());
        let none_header = URL_SAFE_NO_PAD.encode(br#"{"alg":"none"}"#);
        let body = good.split('.').nth(1).unwrap();
        assert!(verify_hs256(&format!("{none_header}.{body}."), SECRET, 0).is_err());
        let hs512 = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS512"}"#);
        let sig = good.split('.').nth(2).unwrap();
        assert!(verify_hs256(&format!("{hs512}.{body}.{sig}"), SECRET, 0).is_err());
        assert!(verify_hs256("a.b", SECRET, 0).is_err());
    }

    #[test]
    fn decodes_percent_escapes() {
        assert_eq!(percent_decode("a%2Eb%zz"), "a.b%zz");
    }
}
