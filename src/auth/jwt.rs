//! Verifying JWTs with the `jsonwebtoken` crate: which algorithms are accepted, and with
//! which keys (a shared secret, a PEM public key, or a provider's JWKS).
//!
//! A token's `alg` must be one of the configured algorithms, and the key it is checked
//! with must belong to that algorithm's family, so a token signed with HMAC over a public
//! key's bytes never passes where RS256 is expected (algorithm confusion).

use super::jwks::{Jwks, KeyLookup};
use super::{AuthRejection, Credential, Grant};
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::Value;
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// Where a verifier finds its keys.
#[derive(Clone)]
enum Keys {
    /// A shared secret (HS256/384/512).
    Secret(DecodingKey),
    /// A public key from a PEM file.
    PublicKey(DecodingKey),
    /// An identity provider's published key set, refreshed.
    Jwks(Arc<Jwks>),
}

/// Why a token did not pass, as the verifier sees it: an unknown key id may pass once the
/// key set is fetched again.
#[derive(Debug)]
pub(crate) enum Refusal {
    /// The token names a key id the cached key set lacks.
    UnknownKey(String),
    /// Anything else: the reason.
    Invalid(AuthRejection),
}

impl Refusal {
    /// What the client is told.
    fn into_rejection(self) -> AuthRejection {
        match self {
            Refusal::Invalid(rejection) => rejection,
            Refusal::UnknownKey(kid) => AuthRejection(format!(
                "invalid token: no key with id {kid:?} in the provider's key set"
            )),
        }
    }
}

fn invalid(why: impl std::fmt::Display) -> Refusal {
    Refusal::Invalid(AuthRejection(format!("invalid token: {why}")))
}

/// Checks JWTs: signature (one of the configured algorithms), `exp` and `nbf` with a leeway
/// for clock skew, and optionally `aud` and `iss`.
#[derive(Clone)]
pub struct JwtVerifier {
    keys: Keys,
    algorithms: Arc<[Algorithm]>,
    identity_claim: Arc<str>,
    leeway_seconds: u64,
    audience: Option<String>,
    issuer: Option<String>,
}

impl std::fmt::Debug for JwtVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Keys stay out of logs.
        f.debug_struct("JwtVerifier")
            .field("algorithms", &self.algorithms)
            .field("leeway_seconds", &self.leeway_seconds)
            .field("audience", &self.audience)
            .field("issuer", &self.issuer)
            .finish_non_exhaustive()
    }
}

/// Parses an algorithm name as JWT headers and config spell it (`RS256`, `EdDSA`, ...).
pub fn parse_algorithm(name: &str) -> Result<Algorithm, String> {
    Algorithm::from_str(name).map_err(|_| {
        format!(
            "unknown algorithm {name:?} (HS256, HS384, HS512, RS256, RS384, RS512, PS256, PS384, \
             PS512, ES256, ES384, EdDSA)"
        )
    })
}

/// Why an HMAC algorithm is refused next to a public key.
fn confusion(alg: Algorithm) -> String {
    format!(
        "{alg:?} takes a shared secret, not a public key: accepting it would let anyone holding \
         the public key sign tokens"
    )
}

fn is_hmac(alg: Algorithm) -> bool {
    matches!(alg, Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512)
}

impl JwtVerifier {
    /// HS256 tokens signed with `secret`: no leeway, any audience and issuer.
    pub fn new(secret: impl Into<Vec<u8>>) -> Self {
        let secret: Vec<u8> = secret.into();
        JwtVerifier::with_keys(Keys::Secret(
            DecodingKey::from_secret(&secret).expect("an HMAC key of any length is accepted"),
        ))
        .only(&[Algorithm::HS256])
        .expect("HS256 goes with a secret")
    }

    /// Tokens signed with the private half of the PEM public key `pem` (RSA, EC or Ed25519),
    /// in one of `algorithms`. Fails when the key does not parse for their family, or when
    /// an algorithm is HMAC (a public key is not a secret).
    pub fn public_key_pem(pem: &[u8], algorithms: &[Algorithm]) -> Result<Self, String> {
        let first = *algorithms.first().ok_or("no algorithm given")?;
        let key = match first {
            Algorithm::RS256
            | Algorithm::RS384
            | Algorithm::RS512
            | Algorithm::PS256
            | Algorithm::PS384
            | Algorithm::PS512 => DecodingKey::from_rsa_pem(pem),
            Algorithm::ES256 | Algorithm::ES384 => DecodingKey::from_ec_pem(pem),
            Algorithm::EdDSA => DecodingKey::from_ed_pem(pem),
            _ => return Err(confusion(first)),
        }
        .map_err(|e| format!("not a {first:?} public key in PEM: {e}"))?;
        JwtVerifier::with_keys(Keys::PublicKey(key)).only(algorithms)
    }

    /// Tokens signed with a key of the provider's key set `jwks`, in one of `algorithms`.
    pub fn jwks(jwks: Arc<Jwks>, algorithms: &[Algorithm]) -> Result<Self, String> {
        JwtVerifier::with_keys(Keys::Jwks(jwks)).only(algorithms)
    }

    fn with_keys(keys: Keys) -> Self {
        JwtVerifier {
            keys,
            algorithms: Arc::new([]),
            identity_claim: "sub".into(),
            leeway_seconds: 0,
            audience: None,
            issuer: None,
        }
    }

    /// Accepts only these algorithms. A secret takes HMAC ones only, a public key or a key
    /// set none of them; and one key file serves one family.
    pub fn only(mut self, algorithms: &[Algorithm]) -> Result<Self, String> {
        if algorithms.is_empty() {
            return Err("no algorithm given".into());
        }
        for &alg in algorithms {
            let fits = match &self.keys {
                Keys::Secret(_) => is_hmac(alg),
                Keys::PublicKey(key) => !is_hmac(alg) && key.family() == alg.family(),
                Keys::Jwks(_) => !is_hmac(alg),
            };
            if !fits {
                return Err(match &self.keys {
                    Keys::Secret(_) => format!("{alg:?} does not use a shared secret"),
                    _ if is_hmac(alg) => confusion(alg),
                    _ => format!("{alg:?} does not fit the configured public key"),
                });
            }
        }
        self.algorithms = algorithms.into();
        Ok(self)
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

    /// The key set, when keys come from one.
    pub(crate) fn key_set(&self) -> Option<&Arc<Jwks>> {
        match &self.keys {
            Keys::Jwks(jwks) => Some(jwks),
            _ => None,
        }
    }

    /// Verifies a token now, with the keys at hand, and returns its claims. Refuses an `alg`
    /// outside the accepted ones (and `none`), a key of another family, a bad signature, an
    /// `exp` in the past or an `nbf` in the future (beyond the leeway), a mismatched `aud` or
    /// `iss` when configured, and claims that are not an object.
    pub fn verify(&self, token: &str) -> Result<Value, AuthRejection> {
        self.check(token).map_err(Refusal::into_rejection)
    }

    pub(crate) fn check(&self, token: &str) -> Result<Value, Refusal> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| invalid("not a JWT"))?;
        let alg = header.alg;
        if !self.algorithms.contains(&alg) {
            return Err(invalid(format_args!("algorithm {alg:?} is not accepted")));
        }
        let looked_up;
        let key = match &self.keys {
            Keys::Secret(key) | Keys::PublicKey(key) => key,
            Keys::Jwks(jwks) => match jwks.key(header.kid.as_deref(), alg) {
                KeyLookup::Found(key) => {
                    looked_up = key;
                    &looked_up
                }
                KeyLookup::Unknown(kid) => return Err(Refusal::UnknownKey(kid)),
                KeyLookup::Refused(why) => return Err(invalid(why)),
            },
        };
        let mut validation = Validation::new(alg);
        // `exp` is optional (a token without it never expires); when present it is checked.
        validation.required_spec_claims.clear();
        validation.validate_nbf = true;
        validation.leeway = self.leeway_seconds;
        validation.validate_aud = self.audience.is_some();
        // A configured `aud` / `iss` must be present, not just right when present.
        if let Some(audience) = &self.audience {
            validation.set_audience(&[audience]);
            validation.required_spec_claims.insert("aud".into());
        }
        if let Some(issuer) = &self.issuer {
            validation.set_issuer(&[issuer]);
            validation.required_spec_claims.insert("iss".into());
        }
        let data = jsonwebtoken::decode::<Value>(token, key, &validation).map_err(|e| {
            invalid(match e.kind() {
                ErrorKind::InvalidSignature => "bad signature",
                ErrorKind::ExpiredSignature => "expired",
                ErrorKind::ImmatureSignature => "not valid yet",
                ErrorKind::InvalidAudience => "wrong audience (aud)",
                ErrorKind::InvalidIssuer => "wrong issuer (iss)",
                ErrorKind::MissingRequiredClaim(claim) if claim == "aud" => "wrong audience (aud)",
                ErrorKind::MissingRequiredClaim(claim) if claim == "iss" => "wrong issuer (iss)",
                ErrorKind::MissingRequiredClaim(_) => "a required claim is missing",
                ErrorKind::InvalidAlgorithm | ErrorKind::InvalidAlgorithmName => {
                    "the algorithm does not fit the key"
                }
                ErrorKind::InvalidClaimFormat(_) => "a time claim is not a whole number",
                _ => "malformed",
            })
        })?;
        if !data.claims.is_object() {
            return Err(invalid("claims are not an object"));
        }
        Ok(data.claims)
    }

    /// Turns verified claims into a [`Grant`] that closes the connection at `exp` plus the
    /// leeway (never, without `exp`).
    pub(crate) fn grant_from(&self, claims: Value) -> Grant {
        // `check` accepted `exp`, so it is a whole number.
        let closes_at = claims
            .get("exp")
            .and_then(Value::as_u64)
            .and_then(|exp| exp.checked_add(self.leeway_seconds))
            .and_then(|secs| SystemTime::UNIX_EPOCH.checked_add(Duration::from_secs(secs)));
        Grant {
            credential: Credential::Token {
                subject: claims
                    .get(&*self.identity_claim)
                    .filter(|value| !value.is_null())
                    .cloned(),
            },
            closes_at,
            metadata: claims,
        }
    }

    /// Verifies a token with the keys at hand and makes its [`Grant`].
    pub fn grant(&self, token: &str) -> Result<Grant, AuthRejection> {
        self.verify(token).map(|claims| self.grant_from(claims))
    }

    /// Like [`grant`](Self::grant), but a token naming a key id the provider's key set lacks
    /// makes the set be fetched again (at most once per `min_refetch`, see [`Jwks`]) before
    /// it is refused: a key the provider just added is used at once.
    pub async fn grant_fetching(&self, token: &str) -> Result<Grant, AuthRejection> {
        let checked = self.check(token);
        if let (Err(Refusal::UnknownKey(_)), Some(jwks)) = (&checked, self.key_set()) {
            jwks.refetch_for_unknown_key().await;
            return self.grant(token);
        }
        checked
            .map(|claims| self.grant_from(claims))
            .map_err(Refusal::into_rejection)
    }
}

/// Signs claims as an HS256 JWT (for tests, tools and services that mint tokens).
pub fn sign_hs256(claims: &Value, secret: &[u8]) -> String {
    let key = jsonwebtoken::EncodingKey::from_secret(secret)
        .expect("an HMAC key of any length is accepted");
    jsonwebtoken::encode(&jsonwebtoken::Header::new(Algorithm::HS256), claims, &key)
        .expect("HMAC signing of JSON claims cannot fail")
}
