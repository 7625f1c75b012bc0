//! JWT verification, grants and the refresh rules, without a socket.
use super::*;
use serde_json::json;

const SECRET: &[u8] = b"s3cret";

/// Unix seconds now, shifted by `delta`.
fn now_plus(delta: i64) -> i64 {
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    now + delta
}

#[test]
fn accepts_a_valid_token() {
    let token = sign_hs256(&json!({"userId": "5", "exp": now_plus(100)}), SECRET);
    assert_eq!(
        JwtVerifier::new(SECRET).verify(&token).unwrap()["userId"],
        "5"
    );
}

#[test]
fn refuses_bad_tokens_with_a_reason() {
    let verifier = JwtVerifier::new(SECRET);
    let why = |token: &str| verifier.verify(token).unwrap_err().0;
    let good = sign_hs256(&json!({"userId": "5"}), SECRET);
    assert!(why(&sign_hs256(&json!({"userId": "5"}), b"other")).contains("bad signature"));
    assert!(why(&sign_hs256(&json!({"exp": now_plus(-10)}), SECRET)).contains("expired"));
    let body = good.split('.').nth(1).unwrap();
    // {"alg":"none"}
    assert!(why(&format!("eyJhbGciOiJub25lIn0.{body}.")).contains("not a JWT"));
    // {"alg":"HS512"} with the HS256 signature: not an accepted algorithm.
    let sig = good.split('.').nth(2).unwrap();
    let hs512 = format!("eyJhbGciOiJIUzUxMiJ9.{body}.{sig}");
    assert!(why(&hs512).contains("algorithm HS512 is not accepted"));
    assert!(why("a.b").contains("not a JWT"));
    assert!(why(&sign_hs256(&json!([1, 2]), SECRET)).contains("malformed"));
}

#[test]
fn leeway_applies_to_exp_and_nbf() {
    let verifier = JwtVerifier::new(SECRET).leeway_seconds(5);
    let ok = |claims: Value| verifier.verify(&sign_hs256(&claims, SECRET)).is_ok();
    assert!(ok(json!({"exp": now_plus(-3)})));
    assert!(!ok(json!({"exp": now_plus(-8)})));
    assert!(ok(json!({"nbf": now_plus(3)})));
    assert!(!ok(json!({"nbf": now_plus(8)})));
}

#[test]
fn audience_and_issuer_are_checked_when_configured() {
    let verifier = JwtVerifier::new(SECRET).audience("app").issuer("idp");
    let ok = |claims| verifier.verify(&sign_hs256(&claims, SECRET)).is_ok();
    assert!(ok(json!({"aud": "app", "iss": "idp"})));
    assert!(ok(json!({"aud": ["other", "app"], "iss": "idp"})));
    assert!(!ok(json!({"aud": "other", "iss": "idp"})));
    assert!(!ok(json!({"iss": "idp"})));
    assert!(!ok(json!({"aud": "app", "iss": "evil"})));
    assert!(!ok(json!({"aud": "app"})));
    // Without configuration, any aud and iss pass.
    let any = JwtVerifier::new(SECRET);
    assert!(
        any.verify(&sign_hs256(&json!({"aud": "x"}), SECRET))
            .is_ok()
    );
}

#[test]
fn a_secret_takes_only_hmac_algorithms() {
    use jsonwebtoken::Algorithm;
    assert!(JwtVerifier::new(SECRET).only(&[Algorithm::HS384]).is_ok());
    let refused = JwtVerifier::new(SECRET)
        .only(&[Algorithm::RS256])
        .unwrap_err();
    assert!(refused.contains("shared secret"), "{refused}");
    assert!(JwtVerifier::new(SECRET).only(&[]).is_err());
}

#[test]
fn grant_closes_at_exp_plus_leeway_or_never() {
    let verifier = JwtVerifier::new(SECRET).leeway_seconds(5);
    let exp = now_plus(100) as u64;
    let grant = verifier
        .grant(&sign_hs256(&json!({"sub": "a", "exp": exp}), SECRET))
        .unwrap();
    let at = |secs| SystemTime::UNIX_EPOCH + Duration::from_secs(secs);
    assert_eq!(grant.closes_at, Some(at(exp + 5)));
    assert_eq!(
        grant.credential,
        Credential::Token {
            subject: Some(json!("a"))
        }
    );
    let forever = verifier
        .grant(&sign_hs256(&json!({"sub": "a"}), SECRET))
        .unwrap();
    assert_eq!(forever.closes_at, None);
}

#[test]
fn tokens_are_redacted_from_logged_requests() {
    assert_eq!(
        redact_token("/ws?token=abc.def&x=1"),
        "/ws?token=REDACTED&x=1"
    );
    assert_eq!(redact_token("/ws?x=1&token=abc"), "/ws?x=1&token=REDACTED");
    assert_eq!(redact_token("token=abc"), "token=REDACTED");
    assert_eq!(redact_token("/ws?tokens=1"), "/ws?tokens=1");
    assert_eq!(redact_token("/ws"), "/ws");
}

#[test]
fn refresh_keeps_the_subject_and_moves_the_deadline() {
    let at = |secs| SystemTime::UNIX_EPOCH + Duration::from_secs(secs);
    let grant = |sub: Option<&str>, closes: u64| Grant {
        metadata: json!({"sub": sub, "n": closes}),
        closes_at: Some(at(closes)),
        credential: Credential::Token {
            subject: sub.map(|s| json!(s)),
        },
    };
    let mut token = SessionToken::new(&grant(Some("a"), 10));
    assert!(!token.expired(at(9)));
    assert!(token.expired(at(10)));
    assert_eq!(token.remaining(at(4)), Some(Duration::from_secs(6)));
    assert!(token.refresh(grant(Some("b"), 50)).is_err());
    assert!(token.refresh(grant(None, 50)).is_err());
    assert!(token.refresh(Grant::untokened(json!(null))).is_err());
    assert_eq!((token.closes_at(), token.epoch()), (Some(at(10)), 0));
    assert_eq!(token.refresh(grant(Some("a"), 50)).unwrap()["n"], 50);
    assert_eq!((token.closes_at(), token.epoch()), (Some(at(50)), 1));

    let mut anonymous = SessionToken::new(&Grant::untokened(json!(null)));
    assert!(anonymous.refresh(grant(Some("a"), 50)).is_err());
    assert_eq!(anonymous.remaining(at(0)), None);

    // No identity, no refresh: {userId: "a"} must not become {userId: "b"}.
    let mut nobody = SessionToken::new(&grant(None, 10));
    assert!(nobody.refresh(grant(None, 50)).is_err());
    assert_eq!(nobody.closes_at(), Some(at(10)));
}

#[test]
fn the_identity_claim_is_configurable_and_null_is_none() {
    let verifier = JwtVerifier::new(SECRET).identity_claim("userId");
    let subject = |claims: Value| match verifier.grant(&sign_hs256(&claims, SECRET)) {
        Ok(Grant {
            credential: Credential::Token { subject },
            ..
        }) => subject,
        other => panic!("unexpected {other:?}"),
    };
    assert_eq!(
        subject(json!({"userId": "a", "sub": "x"})),
        Some(json!("a"))
    );
    assert_eq!(subject(json!({"sub": "x"})), None);
    assert_eq!(subject(json!({"userId": null})), None);
}

#[test]
fn bearer_scheme_is_case_insensitive() {
    assert_eq!(bearer_token("Bearer abc"), Some("abc"));
    assert_eq!(bearer_token("bearer abc"), Some("abc"));
    assert_eq!(bearer_token("BEARER   abc "), Some("abc"));
    assert_eq!(bearer_token("Basic abc"), None);
    assert_eq!(bearer_token("Bearer"), None);
    assert_eq!(bearer_token("Bearer "), None);
    assert_eq!(bearer_token("Bearerabc"), None);
}

#[test]
fn decodes_percent_escapes() {
    assert_eq!(percent_decode("a%2Eb%zz"), "a.b%zz");
}
