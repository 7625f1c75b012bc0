//! Library extension points: custom commands served by functions and by user actors.

use crate::common;

use actix::prelude::*;
use common::{Backend, start_with};
use mesh_records::{CommandRequest, CommandResult, Error, Strategy};
use serde_json::{Value, json};

/// A user actor that counts calls and writes the count into a record.
struct Counter {
    count: u64,
}

impl Actor for Counter {
    type Context = Context<Self>;
}

#[derive(Message)]
#[rtype(result = "CommandResult")]
struct Increment(CommandRequest);

impl From<CommandRequest> for Increment {
    fn from(request: CommandRequest) -> Self {
        Increment(request)
    }
}

impl Handler<Increment> for Counter {
    type Result = ResponseFuture<CommandResult>;

    fn handle(&mut self, msg: Increment, _ctx: &mut Context<Self>) -> Self::Result {
        self.count += 1;
        let count = self.count;
        let request = msg.0;
        Box::pin(async move {
            let by = request.payload["by"].as_str().unwrap_or("?").to_owned();
            request
                .context
                .records
                .write_record(
                    "counter",
                    json!({"count": count, "by": by}),
                    Strategy::Replace,
                )
                .await?;
            Ok(json!({"count": count, "connection": request.context.connection.id()}))
        })
    }
}

#[actix_web::test]
async fn custom_commands_reach_functions_and_actors() {
    let counter = Counter { count: 0 }.start();
    let server = start_with(
        Backend::Memory,
        "[[records.expose]]\nid = \"counter\"\n",
        |b| {
            b.command("echo", |ctx, payload: Value| async move {
                Ok(json!({"echo": payload, "from": ctx.connection.id()}))
            })
            .command("fail", |_, _| async {
                Err(Error::command("ENOPE", "not today"))
            })
            .command("crash", |_, _| async { panic!("handler bug") })
            .actor_command::<Counter, Increment>("counter/increment", counter)
        },
    )
    .await;
    let mut client = server.client().await;
    let id = client.id.clone();
    let reply = client.request_frame("echo", json!({"x": [1]})).await;
    assert_eq!(reply["command"], "echo");
    assert_eq!(reply["payload"], json!({"echo": {"x": [1]}, "from": id}));
    let reply = client.request("fail", json!({})).await;
    assert_eq!(
        reply,
        json!({"error": "not today", "code": "ENOPE", "name": "CommandError"})
    );
    let reply = client.request("crash", json!({})).await;
    assert_eq!(reply["code"], "ESERVER");
    client.subscribe("counter", "full").await;
    for n in 1..=3u64 {
        let reply = client
            .request("counter/increment", json!({"by": "test"}))
            .await;
        assert_eq!(reply["count"], n);
        let push = client.next_push().await;
        assert_eq!(push["payload"]["full"], json!({"count": n, "by": "test"}));
    }
    server.stop().await;
}
