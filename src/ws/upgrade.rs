//! The upgrade service: checks a WebSocket upgrade from its request head, answers it, and
//! hands the socket to the session (see the module docs of `ws`).

use super::LeanSocket;
use super::reader::SocketFrames;
use super::writer::Writer;
use crate::outbox::Outbox;
use crate::session::{Refusal, Sessions};
use crate::socket::ConnectionSocket;
use actix_codec::{Encoder as _, Framed};
use actix_http::body::{BodySize, BoxBody};
use actix_http::{Request, Response, StatusCode, h1, ws};
use actix_web::rt::net::TcpStream;
use actix_web::web::{Bytes, BytesMut};
use std::rc::Rc;

/// Serves one upgrade request the HTTP/1 dispatcher handed over with its connection. Every
/// refusal is an HTTP answer after which the connection is closed: 404 off the WebSocket path,
/// 400/405 for a malformed handshake, 503 while shutting down or over `max_connections`,
/// 403 for an `Origin` not in `allowed_origins`, 401 when authentication fails.
pub(crate) async fn serve(
    sessions: Sessions,
    req: Request,
    framed: Framed<TcpStream, h1::Codec>,
) -> Result<(), std::convert::Infallible> {
    let parts = framed.into_parts();
    let (io, mut codec, early) = (parts.io, parts.codec, parts.read_buf);
    let admitted = async {
        if req.path() != sessions.ws_path() {
            return Err(Refusal::json(StatusCode::NOT_FOUND, "not found"));
        }
        if let Err(e) = ws::verify_handshake(req.head()) {
            let status = Response::<BoxBody>::from(&e).status();
            return Err(Refusal::json(status, &e.to_string()));
        }
        sessions.admit(req.head()).await
    };
    let (metadata, permit) = match admitted.await {
        Ok(admitted) => admitted,
        Err(refusal) => {
            let mut response = Response::with_body(refusal.status, ());
            response
                .head_mut()
                .set_connection_type(actix_http::ConnectionType::Close);
            response.headers_mut().insert(
                actix_http::header::CONTENT_TYPE,
                actix_http::header::HeaderValue::from_static(refusal.content_type),
            );
            let body = Bytes::from(refusal.body);
            let mut out = BytesMut::new();
            let head = h1::Message::Item((response, BodySize::Sized(body.len() as u64)));
            if codec.encode(head, &mut out).is_ok() {
                out.extend_from_slice(&body);
                let _ = write_all(&io, &out).await;
            }
            return Ok(());
        }
    };
    let response = ws::handshake_response(req.head()).finish().drop_body();
    let mut out = BytesMut::new();
    let head = h1::Message::Item((response, BodySize::None));
    if codec.encode(head, &mut out).is_err() || write_all(&io, &out).await.is_err() {
        return Ok(());
    }
    let socket = req.conn_data::<ConnectionSocket>().copied();
    let io = Rc::new(LeanSocket::new(io, permit));
    let (outbox, receiver) = Outbox::new(sessions.max_outbound_bytes());
    actix_web::rt::spawn(Writer::new(Rc::clone(&io), receiver.into_drain()));
    // The dispatcher's 8 KiB read buffer is dropped here; early frames are copied out.
    let frames = SocketFrames::new(io, &early, sessions.max_frame_bytes());
    sessions.start(metadata, outbox, frames, socket);
    Ok(())
}

/// Writes all of `bytes` (a handshake answer: small, so normally one call).
async fn write_all(io: &TcpStream, mut bytes: &[u8]) -> std::io::Result<()> {
    while !bytes.is_empty() {
        io.writable().await?;
        match io.try_write(bytes) {
            Ok(n) => bytes = &bytes[n..],
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}
