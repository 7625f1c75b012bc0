//! A TCP proxy a test controls, to put a network fault between the server and a database:
//! forward, `hang` (bytes stop flowing but every connection stays open: a half-open link, as
//! when packets are dropped), `cut` (close connections), each for the connections open now or
//! also for new ones, and `heal`.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// What a link does with its bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Link {
    Forward,
    Hang,
    Cut,
}

/// Which connections a fault applies to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    /// Only the connections open now; new ones are forwarded.
    OpenOnly,
    /// The connections open now and every new one until `heal`.
    OpenAndNew,
}

#[derive(Default)]
struct Links {
    /// How many connections were accepted so far.
    accepted: usize,
    /// What a new connection starts as.
    new: Option<Link>,
    /// One sender per open connection; closed ones are pruned.
    open: Vec<watch::Sender<Link>>,
}

/// The proxy; stops (and closes every connection) when dropped.
pub struct Proxy {
    /// The port it listens on.
    pub port: u16,
    links: Arc<Mutex<Links>>,
    accept: JoinHandle<()>,
}

impl Proxy {
    /// Listens on a free port and forwards every connection to `target`.
    pub async fn start(target: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let port = listener.local_addr().expect("proxy address").port();
        let links = Arc::new(Mutex::new(Links::default()));
        let accept = tokio::spawn(accept(listener, target, Arc::clone(&links)));
        Proxy {
            port,
            links,
            accept,
        }
    }

    /// Stops moving bytes, keeping the connections open.
    pub fn hang(&self, scope: Scope) {
        self.set(Link::Hang, scope);
    }

    /// Closes connections (new ones are accepted and closed at once with `OpenAndNew`).
    pub fn cut(&self, scope: Scope) {
        self.set(Link::Cut, scope);
    }

    /// How many connections it has accepted so far: a positive sign that a client (such as a
    /// starting server reaching for its database) is at the point of connecting.
    pub fn accepted(&self) -> usize {
        self.links.lock().unwrap().accepted
    }

    /// Forwards again: hung connections resume, new ones are forwarded.
    pub fn heal(&self) {
        let mut links = self.links.lock().unwrap();
        links.new = None;
        for link in &links.open {
            link.send_if_modified(|state| {
                let hung = *state == Link::Hang;
                if hung {
                    *state = Link::Forward;
                }
                hung
            });
        }
    }

    fn set(&self, state: Link, scope: Scope) {
        let mut links = self.links.lock().unwrap();
        links.open.retain(|link| !link.is_closed());
        for link in &links.open {
            let _ = link.send(state);
        }
        if scope == Scope::OpenAndNew {
            links.new = Some(state);
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.accept.abort();
        self.set(Link::Cut, Scope::OpenAndNew);
    }
}

async fn accept(listener: TcpListener, target: SocketAddr, links: Arc<Mutex<Links>>) {
    loop {
        let Ok((inbound, _)) = listener.accept().await else {
            continue;
        };
        let (tx, rx) = {
            let mut links = links.lock().unwrap();
            links.accepted += 1;
            let (tx, rx) = watch::channel(links.new.unwrap_or(Link::Forward));
            links.open.retain(|link| !link.is_closed());
            links.open.push(tx.clone());
            (tx, rx)
        };
        tokio::spawn(async move {
            let Ok(outbound) = TcpStream::connect(target).await else {
                return;
            };
            let (in_read, in_write) = inbound.into_split();
            let (out_read, out_write) = outbound.into_split();
            // Each direction ends on its own; the connection closes when both have.
            let up = tokio::spawn(pump(in_read, out_write, rx.clone()));
            let down = tokio::spawn(pump(out_read, in_write, rx));
            let _ = up.await;
            let _ = down.await;
            drop(tx);
        });
    }
}

/// Copies `from` to `to` while the link forwards; holds still while it hangs; returns (closing
/// its halves) when cut or at end of stream.
async fn pump(mut from: OwnedReadHalf, mut to: OwnedWriteHalf, mut link: watch::Receiver<Link>) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        if !wait_forwarding(&mut link).await {
            return;
        }
        let n = tokio::select! {
            read = from.read(&mut buf) => match read {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            },
            _ = link.changed() => continue,
        };
        // Bytes read just as the link hung are held until it heals (or dropped if cut).
        if !wait_forwarding(&mut link).await || to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

/// Waits while the link hangs: true once it forwards, false when it is cut.
async fn wait_forwarding(link: &mut watch::Receiver<Link>) -> bool {
    loop {
        match *link.borrow_and_update() {
            Link::Forward => return true,
            Link::Cut => return false,
            Link::Hang => {}
        }
        if link.changed().await.is_err() {
            return false;
        }
    }
}
