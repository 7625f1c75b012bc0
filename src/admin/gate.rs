//! The admin API's token check, as a middleware in front of every admin route: it answers 401
//! from the request head, before any handler (and any body extractor) runs, so a client
//! without the token costs the server one request head — never a body.
//!
//! The refused request's body is not read, and its connection is closed after the answer
//! (`refusal`), so a client cannot keep the server reading a body it never sends.

use super::AdminState;
use super::refusal::refuse;
use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::StatusCode;
use actix_web::middleware::Next;
use actix_web::{Error, web};

/// Passes the request on only with `Authorization: Bearer <[admin] token>` (the scheme in any
/// case); otherwise 401 with a JSON error.
pub(super) async fn require_token<B: MessageBody>(
    req: ServiceRequest,
    next: Next<B>,
) -> Result<ServiceResponse<EitherBody<B>>, Error> {
    let allowed = req
        .app_data::<web::Data<AdminState>>()
        .is_some_and(|state| presents(&req, &state.token));
    if allowed {
        return next
            .call(req)
            .await
            .map(ServiceResponse::map_into_left_body);
    }
    crate::metrics::metrics().admin_refusals.inc();
    let (req, unread) = req.into_parts();
    let refused = refuse(
        StatusCode::UNAUTHORIZED,
        "missing or wrong admin token",
        unread,
    );
    Ok(ServiceResponse::new(req, refused).map_into_right_body())
}

fn presents(req: &ServiceRequest, token: &str) -> bool {
    let presented = req
        .headers()
        .get(actix_web::http::header::AUTHORIZATION)
        .and_then(|h| h.to_str().ok())
        .and_then(crate::auth::bearer_token)
        .unwrap_or("");
    constant_time_eq(presented.as_bytes(), token.as_bytes())
}

/// Compares without stopping at the first difference, so timing does not reveal the token.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
