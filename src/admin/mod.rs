//! The admin HTTP API: server-side get/put/delete of records for services that are not Rust.
//! Mounted only when `[admin] token` is set, on the public listener or alone on `[admin] bind`.
//!
//! - `gate`: every route requires `Authorization: Bearer` (the scheme in any case), checked
//!   from the request head before anything reads a body;
//! - `body`: a PUT's body, read only then and only up to `[admin] max_body_bytes`;
//! - `refusal`: answers that close the connection instead of draining an unread body.

mod body;
mod gate;
mod refusal;

use crate::collections::Collections;
use crate::error::Error;
use crate::model::Strategy;
use crate::records::Records;
use actix_web::http::StatusCode;
use actix_web::middleware::from_fn;
use actix_web::{HttpRequest, HttpResponse, web};
use serde::Deserialize;
use serde_json::json;
use std::sync::Arc;

/// What the admin API is configured with (`[admin]`).
#[derive(Clone, Debug)]
pub(crate) struct AdminSettings {
    /// The bearer token every request must present.
    pub token: String,
    /// Largest body read (413 above it).
    pub max_body_bytes: usize,
}

#[derive(Clone)]
struct AdminState {
    records: Records,
    collections: Collections,
    token: Arc<str>,
    max_body_bytes: usize,
}

#[derive(Deserialize)]
struct PutQuery {
    strategy: Option<String>,
}

#[derive(Deserialize)]
struct HistoryQuery {
    since: u64,
}

/// Adds the admin routes, each behind the token check (`gate`).
pub(crate) fn configure(
    cfg: &mut web::ServiceConfig,
    (records, collections): (Records, Collections),
    settings: &AdminSettings,
) {
    let state = AdminState {
        records,
        collections,
        token: settings.token.as_str().into(),
        max_body_bytes: settings.max_body_bytes,
    };
    let data = web::Data::new(state);
    // Before the record route, which would take `…/history` as part of the id.
    cfg.service(
        web::resource("/api/records/{id:.*}/history")
            .app_data(data.clone())
            .wrap(from_fn(gate::require_token))
            .route(web::get().to(get_history)),
    );
    cfg.service(
        web::resource("/api/collections/{id:.*}")
            .app_data(data.clone())
            .wrap(from_fn(gate::require_token))
            .route(web::get().to(get_collection)),
    );
    cfg.service(
        web::resource("/api/records/{id:.*}")
            .app_data(data)
            .wrap(from_fn(gate::require_token))
            .route(web::get().to(get_record))
            .route(web::put().to(put_record))
            .route(web::delete().to(delete_record)),
    );
}

fn error_response(error: &Error) -> HttpResponse {
    let status = match error {
        Error::Invalid(_) => StatusCode::BAD_REQUEST,
        Error::Forbidden => StatusCode::FORBIDDEN,
        Error::Unavailable | Error::Unknown | Error::NotDurable => StatusCode::SERVICE_UNAVAILABLE,
        Error::Conflict => StatusCode::CONFLICT,
        Error::VersionMismatch { .. } => StatusCode::PRECONDITION_FAILED,
        Error::Limit(_) => StatusCode::PAYLOAD_TOO_LARGE,
        Error::Schema(_) => StatusCode::UNPROCESSABLE_ENTITY,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    HttpResponse::build(status).json(error.to_wire())
}

/// The version an `If-Match: "<version>"` header requires, if any. Only a single version tag
/// is understood (quoted as HTTP wants, or bare); anything else is a bad request.
fn if_match(req: &HttpRequest) -> Result<Option<u64>, Error> {
    let Some(header) = req.headers().get(actix_web::http::header::IF_MATCH) else {
        return Ok(None);
    };
    let text = header.to_str().unwrap_or_default().trim();
    let tag = text
        .strip_prefix('"')
        .and_then(|t| t.strip_suffix('"'))
        .unwrap_or(text);
    tag.parse().map(Some).map_err(|_| {
        Error::invalid(format!(
            "If-Match must be one version tag such as \"12\", not {text:?}"
        ))
    })
}

async fn get_record(id: web::Path<String>, state: web::Data<AdminState>) -> HttpResponse {
    match state.records.get_record(&id).await {
        Ok(Some(record)) => HttpResponse::Ok()
            .insert_header((
                actix_web::http::header::ETAG,
                format!("\"{}\"", record.version),
            ))
            .json(json!({
                "recordId": id.as_str(), "value": &*record.value, "version": record.version
            })),
        Ok(None) => HttpResponse::NotFound().json(json!({ "error": "no such record" })),
        Err(e) => error_response(&e),
    }
}

/// A collection's members now, as a subscriber with every read allowed would see them:
/// `{collectionId, ids, members: [{id, version, record}]}` (collections have no version of
/// their own: each subscriber's diffs count from its snapshot).
async fn get_collection(id: web::Path<String>, state: web::Data<AdminState>) -> HttpResponse {
    match state.collections.members(&id).await {
        Ok(Some(members)) => {
            let ids: Vec<&str> = members.iter().map(|(id, _)| id.as_str()).collect();
            let members: Vec<_> = members
                .iter()
                .map(|(id, r)| {
                    json!({
                        "id": id.as_str(),
                        "version": r.version,
                        "record": crate::collections::frames::member(id, &r.value),
                    })
                })
                .collect();
            HttpResponse::Ok().json(json!({
                "collectionId": id.as_str(), "ids": ids, "members": members
            }))
        }
        Ok(None) => HttpResponse::NotFound().json(json!({ "error": "no such collection" })),
        Err(e) => error_response(&e),
    }
}

async fn put_record(
    req: HttpRequest,
    id: web::Path<String>,
    query: web::Query<PutQuery>,
    payload: web::Payload,
    state: web::Data<AdminState>,
) -> HttpResponse {
    let strategy = match query.strategy.as_deref().map(str::parse::<Strategy>) {
        None => Strategy::Replace,
        Some(Ok(strategy)) => strategy,
        Some(Err(e)) => return error_response(&e),
    };
    let body = match body::read_limited(&req, payload, state.max_body_bytes).await {
        Ok(body) => body,
        Err(refused) => return refused,
    };
    let value = match serde_json::from_slice(&body) {
        Ok(value) => value,
        Err(e) => return error_response(&Error::invalid(format!("body is not JSON: {e}"))),
    };
    let written = match if_match(&req) {
        Err(e) => return error_response(&e),
        Ok(None) => state.records.write_record(&id, value, strategy).await,
        Ok(Some(version)) => {
            state
                .records
                .write_record_if(&id, value, strategy, version)
                .await
        }
    };
    match written {
        Ok(outcome) => HttpResponse::Ok().json(json!({
            "version": outcome.version, "changed": outcome.changed
        })),
        Err(e) => error_response(&e),
    }
}

async fn delete_record(
    req: HttpRequest,
    id: web::Path<String>,
    state: web::Data<AdminState>,
) -> HttpResponse {
    let deleted = match if_match(&req) {
        Err(e) => return error_response(&e),
        Ok(None) => state.records.delete_record(&id).await,
        Ok(Some(version)) => state.records.delete_record_if(&id, version).await,
    };
    match deleted {
        Ok(Some(version)) => HttpResponse::Ok().json(json!({ "version": version })),
        Ok(None) => HttpResponse::NotFound().json(json!({ "error": "no such record" })),
        Err(e) => error_response(&e),
    }
}

async fn get_history(
    id: web::Path<String>,
    query: web::Query<HistoryQuery>,
    state: web::Data<AdminState>,
) -> HttpResponse {
    match state.records.get_record(&id).await {
        Ok(Some(_)) => {}
        Ok(None) => return HttpResponse::NotFound().json(json!({ "error": "no such record" })),
        Err(e) => return error_response(&e),
    }
    match state.records.record_history(&id, query.since).await {
        Ok(Some((version, changes))) => {
            let changes: Vec<_> = changes
                .iter()
                .map(|c| json!({ "version": c.version, "patch": &*c.patch }))
                .collect();
            HttpResponse::Ok().json(json!({
                "recordId": id.as_str(), "version": version, "changes": changes
            }))
        }
        Ok(None) => HttpResponse::Gone().json(json!({
            "error": format!("the history does not reach back to version {}", query.since)
        })),
        Err(e) => error_response(&e),
    }
}
