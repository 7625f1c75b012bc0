//! Signing keys made by the test (`openssl genpkey`), and a JWKS endpoint of the test's own
//! on loopback whose key set can be changed, broken and counted.

use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::Value;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A key pair: the private half signs, the public half verifies.
pub struct KeyPair {
    pub private_pem: Vec<u8>,
    pub public_pem: Vec<u8>,
    pub alg: Algorithm,
}

/// A fresh key pair for `alg` (RSA 2048 for RS*/PS*, P-256 / P-384, Ed25519).
pub fn generate(alg: Algorithm) -> KeyPair {
    let args: &[&str] = match alg {
        Algorithm::RS256
        | Algorithm::RS384
        | Algorithm::RS512
        | Algorithm::PS256
        | Algorithm::PS384
        | Algorithm::PS512 => &["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"],
        Algorithm::ES256 => &["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"],
        Algorithm::ES384 => &["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-384"],
        Algorithm::EdDSA => &["-algorithm", "ED25519"],
        other => panic!("{other:?} has no key pair"),
    };
    let private = Command::new("openssl")
        .arg("genpkey")
        .args(args)
        .output()
        .expect("openssl is installed (scripts/services.sh installs it)");
    assert!(private.status.success(), "openssl genpkey {args:?}");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("key.pem");
    std::fs::write(&path, &private.stdout).unwrap();
    let public = Command::new("openssl")
        .args(["pkey", "-pubout", "-in"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(public.status.success(), "openssl pkey -pubout");
    KeyPair {
        private_pem: private.stdout,
        public_pem: public.stdout,
        alg,
    }
}

impl KeyPair {
    fn encoding_key(&self) -> EncodingKey {
        match self.alg {
            Algorithm::ES256 | Algorithm::ES384 => EncodingKey::from_ec_pem(&self.private_pem),
            Algorithm::EdDSA => EncodingKey::from_ed_pem(&self.private_pem),
            _ => EncodingKey::from_rsa_pem(&self.private_pem),
        }
        .expect("the generated key parses")
    }

    /// `claims` signed with this key as `alg`, naming key id `kid` when given.
    pub fn sign(&self, alg: Algorithm, kid: Option<&str>, claims: &Value) -> String {
        let mut header = Header::new(alg);
        header.kid = kid.map(str::to_owned);
        jsonwebtoken::encode(&header, claims, &self.encoding_key()).unwrap()
    }

    /// The public key as a JWK with id `kid`, for algorithm `alg`.
    pub fn jwk_for(&self, kid: &str, alg: Algorithm) -> Jwk {
        let mut jwk = Jwk::from_encoding_key(&self.encoding_key(), alg).unwrap();
        jwk.common.key_id = Some(kid.to_owned());
        jwk
    }
}

/// An HTTP endpoint serving a key set: `GET` anything answers the current set (or 503 while
/// `down`), counting requests.
#[derive(Clone)]
pub struct JwksServer {
    pub url: String,
    set: Arc<Mutex<JwkSet>>,
    down: Arc<AtomicBool>,
    requests: Arc<AtomicU64>,
}

impl JwksServer {
    pub async fn start(keys: Vec<Jwk>) -> JwksServer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!(
            "http://{}/.well-known/jwks.json",
            listener.local_addr().unwrap()
        );
        let server = JwksServer {
            url,
            set: Arc::new(Mutex::new(JwkSet { keys })),
            down: Arc::default(),
            requests: Arc::default(),
        };
        let serving = server.clone();
        actix_rt::spawn(async move {
            while let Ok((mut tcp, _)) = listener.accept().await {
                let serving = serving.clone();
                actix_rt::spawn(async move {
                    let mut buf = vec![0u8; 8192];
                    let mut read = 0;
                    while !buf[..read].windows(4).any(|w| w == b"\r\n\r\n") {
                        match tcp.read(&mut buf[read..]).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => read += n,
                        }
                    }
                    serving.requests.fetch_add(1, Ordering::SeqCst);
                    let (status, body) = if serving.down.load(Ordering::SeqCst) {
                        ("503 Service Unavailable", String::new())
                    } else {
                        let set = serving.set.lock().unwrap();
                        ("200 OK", serde_json::to_string(&*set).unwrap())
                    };
                    let response = format!(
                        "HTTP/1.1 {status}\r\ncontent-type: application/json\r\n\
                         content-length: {}\r\nconnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = tcp.write_all(response.as_bytes()).await;
                });
            }
        });
        server
    }

    /// Replaces the key set served.
    pub fn serve(&self, keys: Vec<Jwk>) {
        *self.set.lock().unwrap() = JwkSet { keys };
    }

    /// Answers 503 (`true`) or the key set (`false`).
    pub fn set_down(&self, down: bool) {
        self.down.store(down, Ordering::SeqCst);
    }

    /// Requests answered so far.
    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::SeqCst)
    }
}
