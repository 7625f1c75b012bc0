//! `[auth]`: where JWT keys come from and what a token must satisfy.

use crate::error::{Error, Result};
use serde::Deserialize;

/// `[auth]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// Shared secret for HMAC tokens (env `MESH_JWT_SECRET`). One key source at most: this,
    /// `jwt_public_key_file` or `jwks_url`; none = no token checking.
    pub jwt_secret: Option<String>,
    /// A PEM file holding the public key tokens are signed for (RSA, EC or Ed25519).
    pub jwt_public_key_file: Option<String>,
    /// An identity provider's key set (JWKS), fetched at start and refreshed.
    pub jwks_url: Option<String>,
    /// The `alg` values accepted; a token with another is refused. Default: `["HS256"]` with
    /// a secret; required with a public key or a key set.
    pub algorithms: Vec<String>,
    /// How often the key set is fetched again.
    pub jwks_refresh_seconds: u64,
    /// A token naming a key id the set lacks makes it be fetched again, at most this often.
    pub jwks_min_refetch_seconds: u64,
    /// Refuse connections without a valid token.
    pub required: bool,
    /// Clock skew tolerated on `exp` and `nbf`; a connection closes this long after `exp`.
    pub leeway_seconds: u64,
    /// Required `aud` claim (a string, or an array holding it); unset = not checked.
    pub audience: Option<String>,
    /// Required `iss` claim; unset = not checked.
    pub issuer: Option<String>,
    /// The claim that is the connection's identity: a refresh must carry the same value, and
    /// a token without it cannot refresh.
    pub identity_claim: String,
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            jwt_secret: None,
            jwt_public_key_file: None,
            jwks_url: None,
            algorithms: Vec::new(),
            jwks_refresh_seconds: 300,
            jwks_min_refetch_seconds: 10,
            required: false,
            leeway_seconds: 5,
            audience: None,
            issuer: None,
            identity_claim: "sub".into(),
        }
    }
}

impl AuthConfig {
    /// Whether tokens are checked (some key source is set).
    pub fn checks_tokens(&self) -> bool {
        self.jwt_secret.is_some() || self.jwt_public_key_file.is_some() || self.jwks_url.is_some()
    }

    /// The JWT checks these settings ask for (`None` without a key source). Reads the key
    /// file or fetches the key set (and keeps it fresh on this thread's runtime); fails with
    /// [`Error::Config`] naming the setting and the reason when no key is usable.
    pub async fn jwt_verifier(&self) -> Result<Option<crate::auth::JwtVerifier>> {
        self.verifier(true).await
    }

    /// Every check of [`AuthConfig::jwt_verifier`] that needs no network: the key source, the
    /// algorithms, the key file (read and parsed); a key set is not fetched.
    ///
    /// Fails with [`Error::Config`] as `jwt_verifier` would.
    pub(crate) async fn check_key_source(&self) -> Result<()> {
        self.verifier(false).await.map(|_| ())
    }

    /// The verifier; with `fetch_jwks` false, `None` for a `jwks_url` once its settings passed.
    async fn verifier(&self, fetch_jwks: bool) -> Result<Option<crate::auth::JwtVerifier>> {
        use crate::auth::{Jwks, JwtVerifier, parse_algorithm};
        let config = |key: &str, why: String| Error::Config(format!("auth.{key}: {why}"));
        let algorithms = self
            .algorithms
            .iter()
            .map(|name| parse_algorithm(name))
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|e| config("algorithms", e))?;
        let needs_algorithms = |key: &str| {
            if algorithms.is_empty() {
                Err(config(
                    "algorithms",
                    format!("list the accepted algorithms (such as [\"RS256\"]) to use {key}"),
                ))
            } else {
                Ok(())
            }
        };
        let verifier = match (&self.jwt_secret, &self.jwt_public_key_file, &self.jwks_url) {
            (None, None, None) => return Ok(None),
            (Some(secret), None, None) => {
                let verifier = JwtVerifier::new(secret.as_bytes());
                if algorithms.is_empty() {
                    verifier
                } else {
                    verifier
                        .only(&algorithms)
                        .map_err(|e| config("algorithms", e))?
                }
            }
            (None, Some(file), None) => {
                needs_algorithms("jwt_public_key_file")?;
                let pem = std::fs::read(file)
                    .map_err(|e| config("jwt_public_key_file", format!("{file}: {e}")))?;
                JwtVerifier::public_key_pem(&pem, &algorithms)
                    .map_err(|e| config("jwt_public_key_file", format!("{file}: {e}")))?
            }
            (None, None, Some(url)) => {
                needs_algorithms("jwks_url")?;
                if !fetch_jwks {
                    return Ok(None);
                }
                let min_refetch = std::time::Duration::from_secs(self.jwks_min_refetch_seconds);
                let jwks = Jwks::fetch(url, min_refetch)
                    .await
                    .map_err(|e| config("jwks_url", e))?;
                jwks.keep_fresh(std::time::Duration::from_secs(self.jwks_refresh_seconds));
                JwtVerifier::jwks(jwks, &algorithms).map_err(|e| config("algorithms", e))?
            }
            _ => {
                return Err(Error::Config(
                    "auth: set one key source: jwt_secret, jwt_public_key_file or jwks_url".into(),
                ));
            }
        };
        let mut verifier = verifier
            .leeway_seconds(self.leeway_seconds)
            .identity_claim(self.identity_claim.as_str());
        if let Some(audience) = &self.audience {
            verifier = verifier.audience(audience.as_str());
        }
        if let Some(issuer) = &self.issuer {
            verifier = verifier.issuer(issuer.as_str());
        }
        Ok(Some(verifier))
    }
}
