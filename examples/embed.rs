//! Embedding mesh-records in an existing actix-web app, with a guard written in Rust and a
//! custom command served by an actor of the app's own.
//!
//! Run: `cargo run --example embed`; once it prints its URL, connect a Mesh client to
//! ws://127.0.0.1:8080/records?user=alice (`?user=` is this example's toy authentication) and
//! call `chat/post`.

use actix::prelude::*;
use actix_web::{App, HttpResponse, HttpServer, web};
use mesh_records::{
    AuthRejection, Authenticator, CommandRequest, CommandResult, Config, Error, Exposure, Guard,
    RecordServer, Strategy,
};
use serde_json::{Value, json};

/// The app's own actor: keeps the last messages of a chat room and publishes them as a record.
struct ChatRoom {
    messages: Vec<Value>,
}

impl Actor for ChatRoom {
    type Context = Context<Self>;
}

/// One `chat/post` request from a client.
#[derive(Message)]
#[rtype(result = "CommandResult")]
struct Post(CommandRequest);

impl From<CommandRequest> for Post {
    fn from(request: CommandRequest) -> Self {
        Post(request)
    }
}

impl Handler<Post> for ChatRoom {
    type Result = ResponseFuture<CommandResult>;

    fn handle(&mut self, Post(request): Post, _ctx: &mut Context<Self>) -> Self::Result {
        let Some(text) = request.payload["text"].as_str().filter(|t| t.len() <= 500) else {
            return Box::pin(async { Err(Error::invalid("text: a string of at most 500 bytes")) });
        };
        let author = request.context.connection.metadata_field("user");
        self.messages
            .push(json!({ "author": author, "text": text }));
        let excess = self.messages.len().saturating_sub(50);
        self.messages.drain(..excess);
        let room = Value::Array(self.messages.clone());
        let records = request.context.records.clone();
        Box::pin(async move {
            let outcome = records
                .write_record("chat:lobby", room, Strategy::Replace)
                .await?;
            Ok(json!({ "version": outcome.version }))
        })
    }
}

#[actix_web::main]
async fn main() -> std::io::Result<()> {
    env_logger::init();
    let mut config = Config::default();
    config.server.ws_path = "/records".into();

    let chat = ChatRoom {
        messages: Vec::new(),
    }
    .start();
    let records = RecordServer::builder(config)
        // Anyone may read the lobby; nobody writes it directly (only through chat/post).
        .expose(Exposure::id("chat:lobby"))
        // Notes are private: only their owner reads or writes `notes:<user>`.
        .expose(
            Exposure::pattern(r"^notes:(\w+)$")
                .map_err(std::io::Error::other)?
                .writable()
                .guard(Guard::sync(is_owner))
                .write_guard(Guard::sync(is_owner)),
        )
        .actor_command::<ChatRoom, Post>("chat/post", chat)
        .authenticate(Authenticator::new(|req| {
            // Toy authentication for the example: ?user=<name>. Use a real check in an app.
            let user = req
                .query_string()
                .strip_prefix("user=")
                .map(str::to_owned)
                .filter(|u| !u.is_empty() && u.chars().all(char::is_alphanumeric));
            async move {
                user.map(|u| json!({ "user": u }))
                    .ok_or_else(|| AuthRejection("add ?user=<name>".into()))
            }
        }))
        .build()
        .await
        .map_err(std::io::Error::other)?;

    let app_records = records.clone();
    let server = HttpServer::new(move || {
        let records = app_records.clone();
        App::new()
            .route(
                "/hello",
                web::get().to(|| async { HttpResponse::Ok().body("the app's own route") }),
            )
            .configure(move |cfg| records.configure(cfg))
    })
    // Lets sessions cut off clients that stop reading (see mesh_records::socket).
    .on_connect(mesh_records::on_connect)
    .bind(("127.0.0.1", 8080))?;
    // Bound and accepting: say where to connect.
    for addr in server.addrs() {
        println!(
            "serving ws://{addr}/records?user=alice (chat/post, chat:lobby, notes:alice) and \
             http://{addr}/hello; Ctrl-C stops"
        );
    }
    server.run().await
}

fn is_owner(conn: &mesh_records::Connection, id: &mesh_records::RecordId) -> bool {
    let owner = id.as_str().strip_prefix("notes:");
    conn.metadata_field("user").as_ref().and_then(Value::as_str) == owner
}
