//! One proxied connection: two links (client → upstream, upstream → client), their reader and writer
//! tasks, and a supervisor that tears everything down the way Toxiproxy does.

use crate::link::{Chunk, Link, LinkCmd};
use crate::metrics::ProxyCounters;
use crate::model::Direction;
use crate::proxy::Proxy;
use bytes::BytesMut;
use socket2::{SockRef, Socket};
use std::net::{Shutdown, SocketAddr};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;

/// Go's io.Copy buffer: at most this many bytes per chunk.
const READ_SIZE: usize = 32 * 1024;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kill {
    /// Close both sockets (FIN), as disabling or deleting a proxy does.
    Close,
    /// Close both sockets with SO_LINGER 0 (RST), as reset_peer does.
    Reset,
}

/// The handle toxics and the proxy use to end a connection.
pub struct ConnCtl {
    kill: watch::Sender<Option<Kill>>,
}

impl ConnCtl {
    fn new() -> Self {
        Self { kill: watch::channel(None).0 }
    }

    /// The first kill wins; later ones are ignored.
    pub fn kill(&self, how: Kill) {
        self.kill.send_if_modified(|current| current.is_none() && current.replace(how).is_none());
    }

    fn killed(&self) -> watch::Receiver<Option<Kill>> {
        self.kill.subscribe()
    }
}

/// What the proxy keeps of a live connection.
pub struct ConnEntry {
    pub links: [mpsc::UnboundedSender<LinkCmd>; 2],
    pub ctl: Arc<ConnCtl>,
    pub done: watch::Receiver<bool>,
}

impl ConnEntry {
    /// Kills the connection and waits (bounded) until its sockets are closed.
    pub async fn close(mut self, how: Kill) {
        self.ctl.kill(how);
        let _ = tokio::time::timeout(Duration::from_secs(5), self.done.wait_for(|done| *done)).await;
    }
}

/// A link's pieces, created under the proxy's lock so the chain matches the proxy's toxics.
pub struct NewLink {
    pub link: Link,
    pub input: mpsc::Sender<Chunk>,
    pub output: mpsc::Receiver<Chunk>,
    pub commands: mpsc::UnboundedReceiver<LinkCmd>,
}

pub struct Registration {
    pub id: u64,
    pub links: [NewLink; 2],
}

pub fn new_ctl() -> (Arc<ConnCtl>, watch::Sender<bool>, watch::Receiver<bool>) {
    let (done_tx, done_rx) = watch::channel(false);
    (Arc::new(ConnCtl::new()), done_tx, done_rx)
}

#[derive(PartialEq)]
enum Role {
    Reader,
    Writer,
}

/// Serves one accepted client: dials the upstream, wires the links, supervises until the end.
pub async fn serve(
    proxy: Arc<Proxy>,
    generation: u64,
    client: TcpStream,
    peer: SocketAddr,
    upstream_addr: String,
    counters: Arc<ProxyCounters>,
) {
    let upstream = match TcpStream::connect(&upstream_addr).await {
        Ok(upstream) => upstream,
        Err(err) => {
            crate::warn!(
                "proxy={} client={peer} upstream={upstream_addr}: unable to open connection to upstream: {err}",
                proxy.name
            );
            return; // dropping the client closes it, as Toxiproxy does
        }
    };
    // Go sets TCP_NODELAY on every connection by default.
    let _ = client.set_nodelay(true);
    let _ = upstream.set_nodelay(true);
    // Duplicated descriptors to shut down or reset a socket while its halves live in other tasks.
    let (Ok(client_sock), Ok(upstream_sock)) =
        (SockRef::from(&client).try_clone(), SockRef::from(&upstream).try_clone())
    else {
        crate::warn!("proxy={} client={peer}: cannot duplicate socket", proxy.name);
        return;
    };
    let (client_sock, upstream_sock) = (Arc::new(client_sock), Arc::new(upstream_sock));
    let (ctl, done_tx, done_rx) = new_ctl();
    let Some(Registration { id, links: [up, down] }) = proxy.register(generation, &ctl, done_rx) else {
        return; // the proxy stopped while we were dialing
    };
    crate::debug!("proxy={} client={peer}: connected to {upstream_addr}", proxy.name);

    let (client_read, client_write) = client.into_split();
    let (upstream_read, upstream_write) = upstream.into_split();
    let mut io = JoinSet::new();
    let up_counts = (counters.clone(), Direction::Upstream);
    let down_counts = (counters, Direction::Downstream);
    io.spawn(read_loop(client_read, up.input, up_counts.clone(), ctl.killed()));
    io.spawn(write_loop(up.output, upstream_write, upstream_sock.clone(), up_counts, ctl.killed()));
    io.spawn(read_loop(upstream_read, down.input, down_counts.clone(), ctl.killed()));
    io.spawn(write_loop(down.output, client_write, client_sock.clone(), down_counts, ctl.killed()));
    let controllers = [tokio::spawn(up.link.run(up.commands)), tokio::spawn(down.link.run(down.commands))];

    // Toxiproxy closes a connection when both writers have finished (each closes its destination),
    // or at once when the proxy stops or reset_peer fires.
    let mut killed = ctl.killed();
    let mut writers_left = 2;
    let mut how = None;
    while writers_left > 0 && how.is_none() {
        tokio::select! {
            finished = io.join_next() => match finished {
                Some(Ok(Role::Reader)) => {}
                Some(_) => writers_left -= 1,
                None => break,
            },
            kill = killed.wait_for(Option::is_some) => how = kill.ok().and_then(|kill| *kill),
        }
    }
    match how.or(*killed.borrow()) {
        Some(Kill::Reset) => {
            crate::debug!("proxy={} client={peer}: reset", proxy.name);
            let _ = client_sock.set_linger(Some(Duration::ZERO));
            let _ = upstream_sock.set_linger(Some(Duration::ZERO));
        }
        Some(Kill::Close) | None => {
            let _ = client_sock.shutdown(Shutdown::Both);
            let _ = upstream_sock.shutdown(Shutdown::Both);
        }
    }
    ctl.kill(Kill::Close); // stops whatever reader or writer is still running
    while io.join_next().await.is_some() {}
    for controller in controllers {
        controller.abort();
    }
    proxy.deregister(id);
    drop((client_sock, upstream_sock)); // the last descriptors: the sockets close (RST after linger 0)
    let _ = done_tx.send(true);
    crate::debug!("proxy={} client={peer}: closed", proxy.name);
}

async fn read_loop(
    mut source: OwnedReadHalf,
    input: mpsc::Sender<Chunk>,
    (counters, direction): (Arc<ProxyCounters>, Direction),
    mut killed: watch::Receiver<Option<Kill>>,
) -> Role {
    let copy = async {
        let mut buffer = BytesMut::with_capacity(READ_SIZE);
        loop {
            buffer.reserve(READ_SIZE);
            let mut limited = (&mut source).take(READ_SIZE as u64);
            match limited.read_buf(&mut buffer).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    counters.received[direction as usize].fetch_add(n as u64, Ordering::Relaxed);
                    let chunk = Chunk { data: buffer.split().freeze(), ts: std::time::Instant::now() };
                    if input.send(chunk).await.is_err() {
                        break;
                    }
                }
            }
        }
    };
    tokio::select! {
        _ = killed.wait_for(Option::is_some) => {}
        _ = copy => {}
    }
    Role::Reader // dropping `input` ends the link's chain
}

async fn write_loop(
    mut output: mpsc::Receiver<Chunk>,
    mut dest: OwnedWriteHalf,
    dest_socket: Arc<Socket>,
    (counters, direction): (Arc<ProxyCounters>, Direction),
    mut killed: watch::Receiver<Option<Kill>>,
) -> Role {
    let copy = async {
        while let Some(chunk) = output.recv().await {
            if dest.write_all(&chunk.data).await.is_err() {
                break;
            }
            counters.sent[direction as usize].fetch_add(chunk.data.len() as u64, Ordering::Relaxed);
        }
    };
    // A kill is set before toxics close their output, so it is seen even when the copy ended first.
    let killed_first = tokio::select! {
        biased;
        _ = killed.wait_for(Option::is_some) => true,
        _ = copy => false,
    };
    let was_killed = killed_first || killed.borrow().is_some();
    if was_killed {
        // The supervisor decides between FIN and RST: no shutdown from this half.
        dest.forget();
    } else {
        // Toxiproxy closes the destination when its link ends; shutting down both directions sends
        // FIN and ends the other link's reader on the same socket.
        let _ = dest_socket.shutdown(Shutdown::Both);
    }
    Role::Writer
}
