//! Refusing an admin request whose body is unread, and closing its connection.
//!
//! actix-http drains a dropped request body that is chunked, and keeps the connection for as
//! long as the client keeps it open — sending nothing or sending forever. When the request's
//! payload is still held at the end of the response, it closes the connection instead (after
//! `Connection: close` and a short linger). So the refusal's body owns the unread payload:
//! the client gets its JSON error, then the connection ends, whatever the body's framing.
//! Meanwhile actix-http buffers at most its small read-ahead of that body (it pauses feeding a
//! payload nobody reads), and nothing here reads it.

use actix_web::body::{BodySize, MessageBody};
use actix_web::dev::Payload;
use actix_web::http::StatusCode;
use actix_web::web::Bytes;
use actix_web::{HttpResponse, http::header};
use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};

/// `status` with `{"error": <error>}`, closing the connection after it (see the module docs).
pub(super) fn refuse(status: StatusCode, error: &str, unread: Payload) -> HttpResponse {
    let json = serde_json::json!({ "error": error }).to_string();
    HttpResponse::build(status)
        .insert_header((header::CONTENT_TYPE, "application/json"))
        .force_close()
        .body(HoldingBody {
            json: Some(Bytes::from(json.into_bytes())),
            _unread: unread,
        })
}

/// A JSON body that keeps the request's payload alive until it has been sent.
struct HoldingBody {
    json: Option<Bytes>,
    _unread: Payload,
}

impl MessageBody for HoldingBody {
    type Error = Infallible;

    fn size(&self) -> BodySize {
        BodySize::Sized(self.json.as_ref().map_or(0, |b| b.len() as u64))
    }

    fn poll_next(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Bytes, Infallible>>> {
        Poll::Ready(self.get_mut().json.take().map(Ok))
    }
}
