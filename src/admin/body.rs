//! Reading an admin request's body under `[admin] max_body_bytes`: refused from its
//! `Content-Length` when that is already over, and otherwise never buffered past the limit
//! (a chunked body is cut off at the chunk that would cross it).

use actix_web::http::{StatusCode, header};
use actix_web::web::{self, Bytes, BytesMut};
use actix_web::{HttpRequest, HttpResponse};
use futures_util::StreamExt as _;
use serde_json::json;

/// Reads the whole body, at most `limit` bytes; otherwise the response to send instead: 413
/// over the limit, 400 when the client broke the body off.
pub(super) async fn read_limited(
    req: &HttpRequest,
    mut payload: web::Payload,
    limit: usize,
) -> Result<Bytes, HttpResponse> {
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(too_large(limit, payload));
    }
    let mut body = BytesMut::with_capacity(declared.map_or(0, |n| n as usize));
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|e| {
            HttpResponse::BadRequest().json(json!({ "error": format!("reading the body: {e}") }))
        })?;
        if body.len() + chunk.len() > limit {
            return Err(too_large(limit, payload));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}

/// 413, closing the connection rather than draining the rest of the body (`refusal`).
fn too_large(limit: usize, unread: web::Payload) -> HttpResponse {
    crate::metrics::metrics().admin_refusals.inc();
    let error = format!("the body is over {limit} bytes (admin.max_body_bytes)");
    super::refusal::refuse(StatusCode::PAYLOAD_TOO_LARGE, &error, unread.into_inner())
}
