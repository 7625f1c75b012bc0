//! Mints a JWT for trying a configuration or load-testing sign-in:
//!
//! ```sh
//! cargo run --example mint_token -- --secret change-me --sub alice
//! cargo run --example mint_token -- --key private.pem --alg RS256 --kid k1 --sub alice --ttl 600
//! ```
//!
//! Prints the token. `--secret` signs with HMAC (HS256 unless `--alg`), `--key` with a PEM
//! private key (RSA, EC or Ed25519; `--alg` required). Claims: `sub`, `iat`, `exp` (`--ttl`
//! seconds, default 3600), plus `--aud` / `--iss` when given.

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use mesh_records::auth::parse_algorithm;
use serde_json::json;
use std::time::{SystemTime, UNIX_EPOCH};

fn main() {
    if let Err(e) = run(std::env::args().skip(1).collect()) {
        eprintln!("mint_token: {e}");
        std::process::exit(2);
    }
}

fn run(args: Vec<String>) -> Result<(), String> {
    let value = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let alg = value("--alg").map(|a| parse_algorithm(&a)).transpose()?;
    let (key, alg) = match (value("--secret"), value("--key")) {
        (Some(secret), None) => (
            EncodingKey::from_secret(secret.as_bytes()).map_err(|e| e.to_string())?,
            alg.unwrap_or(Algorithm::HS256),
        ),
        (None, Some(file)) => {
            let alg = alg.ok_or("--key needs --alg")?;
            let pem = std::fs::read(&file).map_err(|e| format!("{file}: {e}"))?;
            let key = match alg {
                Algorithm::ES256 | Algorithm::ES384 => EncodingKey::from_ec_pem(&pem),
                Algorithm::EdDSA => EncodingKey::from_ed_pem(&pem),
                _ => EncodingKey::from_rsa_pem(&pem),
            };
            (key.map_err(|e| format!("{file}: {e}"))?, alg)
        }
        _ => return Err("give --secret S or --key FILE.pem".into()),
    };
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_err(|e| e.to_string())?
        .as_secs();
    let ttl: u64 = value("--ttl").map_or(Ok(3600), |t| t.parse().map_err(|_| "--ttl: seconds"))?;
    let mut claims = json!({
        "sub": value("--sub").unwrap_or_else(|| "user".into()),
        "iat": now,
        "exp": now + ttl,
    });
    for (flag, claim) in [("--aud", "aud"), ("--iss", "iss")] {
        if let Some(v) = value(flag) {
            claims[claim] = json!(v);
        }
    }
    let mut header = Header::new(alg);
    header.kid = value("--kid");
    let token = jsonwebtoken::encode(&header, &claims, &key).map_err(|e| e.to_string())?;
    println!("{token}");
    Ok(())
}
