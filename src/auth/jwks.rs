//! An identity provider's published keys (a JWKS URL): fetched at start, again on a
//! schedule and when a token names a key id the set lacks (at most once per
//! `min_refetch`), with the last good set kept while the provider is unreachable.
//!
//! Fetches run on the actix runtime of the thread that asks (the HTTP client is not `Send`);
//! whoever waits for one gets its result through a channel.

use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

/// Largest key set document read.
const MAX_BODY: usize = 1 << 20;
/// How long one fetch may take.
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);

/// One usable key of the set.
struct Entry {
    kid: Option<String>,
    /// The algorithm the provider says the key is for, if it says.
    alg: Option<Algorithm>,
    key: DecodingKey,
}

/// What [`Jwks::key`] found for a token.
pub(crate) enum KeyLookup {
    Found(DecodingKey),
    /// The token's `kid` is not in the set.
    Unknown(String),
    /// No key may check this token: the reason.
    Refused(String),
}

/// See the module docs. Shared by every verifier that uses the URL.
pub struct Jwks {
    url: String,
    keys: RwLock<Arc<Vec<Entry>>>,
    min_refetch: Duration,
    /// When a fetch for an unknown key id last started.
    last_refetch: Mutex<Option<Instant>>,
    /// Fetches made, successful or not (for tests and logs).
    fetches: std::sync::atomic::AtomicU64,
}

impl std::fmt::Debug for Jwks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Jwks")
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

impl Jwks {
    /// Fetches the key set at `url`; fails (with the reason) when it cannot be fetched or
    /// holds no usable key. Tokens naming an unknown key id make it fetch again at most once
    /// per `min_refetch`.
    pub async fn fetch(url: &str, min_refetch: Duration) -> Result<Arc<Jwks>, String> {
        let jwks = Arc::new(Jwks {
            url: url.to_owned(),
            keys: RwLock::new(Arc::new(Vec::new())),
            min_refetch,
            last_refetch: Mutex::new(None),
            fetches: Default::default(),
        });
        jwks.refresh().await?;
        Ok(jwks)
    }

    /// Fetches the set now; on failure the keys held stay. Returns how many keys it holds.
    pub async fn refresh(&self) -> Result<usize, String> {
        self.fetches
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let (tx, rx) = tokio::sync::oneshot::channel();
        let url = self.url.clone();
        actix::spawn(async move {
            let _ = tx.send(download(&url).await);
        });
        let fetched = rx
            .await
            .map_err(|_| "the fetch was dropped".to_owned())
            .and_then(|r| r)
            .map_err(|e| format!("fetching the key set from {}: {e}", self.url))?;
        let count = fetched.len();
        *self.keys.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(fetched);
        Ok(count)
    }

    /// Fetches the set again because a token named a key id it lacks, unless that was done
    /// less than `min_refetch` ago (a stream of made-up key ids costs the provider nothing).
    pub(crate) async fn refetch_for_unknown_key(&self) {
        {
            let mut last = self.last_refetch.lock().unwrap_or_else(|p| p.into_inner());
            if last.is_some_and(|at| at.elapsed() < self.min_refetch) {
                return;
            }
            *last = Some(Instant::now());
        }
        match self.refresh().await {
            Ok(count) => {
                log::info!("auth: key set fetched again for an unknown key id: {count} keys")
            }
            Err(e) => log::warn!("auth: {e}; keeping the keys held"),
        }
    }

    /// Refreshes the set every `every` for as long as it is in use (on this thread's
    /// runtime).
    pub fn keep_fresh(self: &Arc<Self>, every: Duration) {
        let weak = Arc::downgrade(self);
        actix::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                let Some(jwks) = weak.upgrade() else { return };
                match jwks.refresh().await {
                    Ok(count) => log::debug!("auth: key set refreshed: {count} keys"),
                    Err(e) => log::warn!("auth: {e}; keeping the keys held"),
                }
            }
        });
    }

    /// How many fetches were made.
    pub fn fetches(&self) -> u64 {
        self.fetches.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The key that checks a token with key id `kid` signed with `alg`.
    pub(crate) fn key(&self, kid: Option<&str>, alg: Algorithm) -> KeyLookup {
        let keys = self.keys.read().unwrap_or_else(|p| p.into_inner()).clone();
        let fits = |e: &&Entry| e.alg.is_none_or(|a| a == alg) && e.key.family() == alg.family();
        match kid {
            Some(kid) => match keys.iter().find(|e| e.kid.as_deref() == Some(kid)) {
                None => KeyLookup::Unknown(kid.to_owned()),
                Some(entry) if fits(&entry) => KeyLookup::Found(entry.key.clone()),
                Some(_) => KeyLookup::Refused(format!("key {kid:?} is not for {alg:?}")),
            },
            None => {
                let mut candidates = keys.iter().filter(fits);
                match (candidates.next(), candidates.next()) {
                    (Some(only), None) => KeyLookup::Found(only.key.clone()),
                    (None, _) => KeyLookup::Refused(format!("the provider has no {alg:?} key")),
                    (Some(_), Some(_)) => KeyLookup::Refused(
                        "the token names no key (kid) and the provider has several".into(),
                    ),
                }
            }
        }
    }
}

/// GETs and parses a key set: its usable keys (others are skipped with a log line).
async fn download(url: &str) -> Result<Vec<Entry>, String> {
    let client = awc::Client::builder()
        .connector(awc::Connector::new().rustls_0_23(Arc::new(tls_config())))
        .timeout(FETCH_TIMEOUT)
        .finish();
    let mut response = client.get(url).send().await.map_err(|e| e.to_string())?;
    if !response.status().is_success() {
        return Err(format!("HTTP {}", response.status()));
    }
    let body = response
        .body()
        .limit(MAX_BODY)
        .await
        .map_err(|e| e.to_string())?;
    let set: JwkSet = serde_json::from_slice(&body).map_err(|e| format!("not a JWK set: {e}"))?;
    let mut keys = Vec::new();
    for jwk in &set.keys {
        let kid = jwk.common.key_id.clone();
        match DecodingKey::from_jwk(jwk) {
            Ok(key) => keys.push(Entry {
                kid,
                alg: jwk
                    .common
                    .key_algorithm
                    .and_then(|a| Algorithm::try_from(a).ok()),
                key,
            }),
            Err(e) => log::warn!("auth: skipping key {kid:?} of {url}: {e}"),
        }
    }
    if keys.is_empty() {
        return Err("no usable key in the set".into());
    }
    Ok(keys)
}

/// TLS for fetching from https URLs: the Mozilla root certificates, ring for crypto.
fn tls_config() -> rustls::ClientConfig {
    let roots = rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .expect("ring supports the default TLS versions")
        .with_root_certificates(roots)
        .with_no_client_auth()
}
