//! JWT verification, grants and the refresh rules, without a socket.
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
fn leeway_applies_to_exp_and_nbf() {
    let verifier = JwtVerifier::new(SECRET).leeway_seconds(5);
    let expired = sign_hs256(&json!({"exp": 100}), SECRET);
    assert!(verifier.verify(&expired, 104).is_ok());
    assert!(verifier.verify(&expired, 105).is_err());
    let early = sign_hs256(&json!({"nbf": 100}), SECRET);
    assert!(verifier.verify(&early, 95).is_ok());
    assert!(verifier.verify(&early, 94).is_err());
}

#[test]
fn audience_and_issuer_are_checked_when_configured() {
    let verifier = JwtVerifier::new(SECRET).audience("app").issuer("idp");
    let ok = |claims| verifier.verify(&sign_hs256(&claims, SECRET), 0).is_ok();
    assert!(ok(json!({"aud": "app", "iss": "idp"})));
    assert!(ok(json!({"aud": ["other", "app"], "iss": "idp"})));
    assert!(!ok(json!({"aud": "other", "iss": "idp"})));
    assert!(!ok(json!({"iss": "idp"})));
    assert!(!ok(json!({"aud": "app", "iss": "evil"})));
    assert!(!ok(json!({"aud": "app"})));
    // Without configuration, any aud and iss pass.
    let any = JwtVerifier::new(SECRET);
    assert!(
        any.verify(&sign_hs256(&json!({"aud": "x"}), SECRET), 0)
            .is_ok()
    );
}

#[test]
fn grant_closes_at_exp_plus_leeway_or_never() {
    let verifier = JwtVerifier::new(SECRET).leeway_seconds(5);
    let at = |secs| SystemTime::UNIX_EPOCH + Duration::from_secs(secs);
    let grant = verifier
        .grant(
            &sign_hs256(&json!({"sub": "a", "exp": 100}), SECRET),
            at(90),
        )
        .unwrap();
    assert_eq!(grant.closes_at, Some(at(105)));
    assert_eq!(
        grant.credential,
        Credential::Token {
            subject: Some(json!("a"))
        }
    );
    let forever = verifier
        .grant(&sign_hs256(&json!({"sub": "a"}), SECRET), at(90))
        .unwrap();
    assert_eq!(forever.closes_at, None);
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
    let now = SystemTime::UNIX_EPOCH;
    let subject = |claims: Value| match verifier.grant(&sign_hs256(&claims, SECRET), now) {
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
