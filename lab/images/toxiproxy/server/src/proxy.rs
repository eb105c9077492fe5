//! A proxy: its listener, its toxics (one chain per direction), and its live connections.

use crate::conn::{self, ConnCtl, ConnEntry, Kill, NewLink, Registration};
use crate::link::{Link, LinkCmd, LinkOp};
use crate::metrics::Metrics;
use crate::model::{ApiError, Direction, Toxic};
use crate::net;
use serde::Serialize;
use serde_json::Value;
use std::collections::HashMap;
use std::mem;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;

/// How long an API call waits for live connections to apply a toxic change.
const REWIRE_TIMEOUT: Duration = Duration::from_secs(10);

struct Acceptor {
    stop: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

struct Inner {
    listen: String,
    upstream: String,
    enabled: bool,
    /// Indexed by `Direction`, in the order added.
    toxics: [Vec<Arc<Toxic>>; 2],
    connections: HashMap<u64, ConnEntry>,
    next_connection: u64,
    /// Bumped on every start, so a connection accepted by an older listener cannot register.
    generation: u64,
    acceptor: Option<Acceptor>,
}

pub struct Proxy {
    pub name: String,
    metrics: Arc<Metrics>,
    inner: Mutex<Inner>,
}

/// A proxy as the API shows it.
#[derive(Serialize)]
pub struct ProxyView {
    pub name: String,
    pub listen: String,
    pub upstream: String,
    pub enabled: bool,
    pub toxics: Vec<Toxic>,
}

impl Proxy {
    pub fn new(name: String, listen: String, upstream: String, metrics: Arc<Metrics>) -> Arc<Self> {
        Arc::new(Self {
            name,
            metrics,
            inner: Mutex::new(Inner {
                listen,
                upstream,
                enabled: false,
                toxics: [Vec::new(), Vec::new()],
                connections: HashMap::new(),
                next_connection: 0,
                generation: 0,
                acceptor: None,
            }),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn view(&self) -> ProxyView {
        let inner = self.lock();
        ProxyView {
            name: self.name.clone(),
            listen: inner.listen.clone(),
            upstream: inner.upstream.clone(),
            enabled: inner.enabled,
            toxics: toxic_list(&inner),
        }
    }

    pub fn toxics(&self) -> Vec<Toxic> {
        toxic_list(&self.lock())
    }

    pub fn toxic(&self, name: &str) -> Option<Toxic> {
        let inner = self.lock();
        find(&inner, name).map(|(direction, index)| (*inner.toxics[direction][index]).clone())
    }

    pub fn listen_upstream_enabled(&self) -> (String, String, bool) {
        let inner = self.lock();
        (inner.listen.clone(), inner.upstream.clone(), inner.enabled)
    }

    /// Binds and starts accepting; the listen address becomes the bound one (port 0 → real port).
    /// Starting a running proxy does nothing.
    pub async fn start(self: &Arc<Self>) -> Result<(), ApiError> {
        let (listen, upstream) = {
            let inner = self.lock();
            if inner.enabled {
                return Ok(());
            }
            (inner.listen.clone(), inner.upstream.clone())
        };
        let listener = net::bind(&listen).await.map_err(ApiError::internal)?;
        let local = listener.local_addr().map_err(|e| ApiError::internal(e.to_string()))?.to_string();
        let mut inner = self.lock();
        inner.listen = local.clone();
        inner.enabled = true;
        inner.generation += 1;
        let counters = self.metrics.counters(&self.name, &local, &upstream);
        let (stop, stopped) = oneshot::channel();
        let task = tokio::spawn(accept_loop(
            self.clone(),
            listener,
            inner.generation,
            upstream.clone(),
            stopped,
            counters,
        ));
        inner.acceptor = Some(Acceptor { stop, task });
        crate::info!("proxy={} listen={local} upstream={upstream}: started proxy", self.name);
        Ok(())
    }

    /// Stops listening and closes every connection (FIN), returning once they are closed.
    pub async fn stop(&self) {
        let (acceptor, connections) = {
            let mut inner = self.lock();
            if !inner.enabled {
                return;
            }
            inner.enabled = false;
            (inner.acceptor.take(), mem::take(&mut inner.connections))
        };
        if let Some(Acceptor { stop, task }) = acceptor {
            let _ = stop.send(());
            let _ = task.await;
        }
        let count = connections.len();
        join_all_spawned(connections.into_values().map(|entry| entry.close(Kill::Close))).await;
        crate::info!("proxy={}: terminated proxy ({count} connections closed)", self.name);
    }

    /// PATCH semantics: a new listen or upstream restarts the proxy; `enabled` starts or stops it.
    pub async fn update(
        self: &Arc<Self>,
        listen: String,
        upstream: String,
        enabled: bool,
    ) -> Result<(), ApiError> {
        let (current_listen, current_upstream, _) = self.listen_upstream_enabled();
        if listen != current_listen || upstream != current_upstream {
            self.stop().await;
            let mut inner = self.lock();
            inner.listen = listen;
            inner.upstream = upstream;
        }
        let is_enabled = self.lock().enabled;
        match (enabled, is_enabled) {
            (true, false) => self.start().await,
            (false, true) => {
                self.stop().await;
                Ok(())
            }
            _ => Ok(()),
        }
    }

    /// Adds a toxic at the end of its direction's chain, on live connections too.
    pub async fn add_toxic(&self, toxic: Toxic, attributes: Option<&Value>) -> Result<Toxic, ApiError> {
        let (added, acks) = {
            let mut inner = self.lock();
            if find(&inner, &toxic.name).is_some() {
                return Err(ApiError::toxic_exists());
            }
            let added = Arc::new(toxic.with_attributes(attributes)?);
            inner.toxics[added.direction as usize].push(added.clone());
            let acks = broadcast(&inner, added.direction, || LinkOp::Add(added.clone()));
            (added, acks)
        };
        wait_all(acks).await;
        Ok((*added).clone())
    }

    /// Merges `attributes` and `toxicity` into a toxic and restarts it on live connections.
    pub async fn update_toxic(&self, name: &str, body: &Value) -> Result<Toxic, ApiError> {
        let (updated, acks) = {
            let mut inner = self.lock();
            let (direction, index) = find(&inner, name).ok_or_else(ApiError::toxic_not_found)?;
            let updated = Arc::new(inner.toxics[direction][index].updated(body)?);
            inner.toxics[direction][index] = updated.clone();
            let acks = broadcast(&inner, updated.direction, || LinkOp::Update(index + 1, updated.clone()));
            (updated, acks)
        };
        wait_all(acks).await;
        Ok((*updated).clone())
    }

    pub async fn remove_toxic(&self, name: &str) -> Result<(), ApiError> {
        let acks = {
            let mut inner = self.lock();
            let (direction, index) = find(&inner, name).ok_or_else(ApiError::toxic_not_found)?;
            let removed = inner.toxics[direction].remove(index);
            broadcast(&inner, removed.direction, || LinkOp::Remove(index + 1))
        };
        wait_all(acks).await;
        Ok(())
    }

    /// Removes every toxic, first to last, as Toxiproxy's reset does.
    pub async fn remove_all_toxics(&self) {
        let names: Vec<String> = self.toxics().into_iter().map(|t| t.name).collect();
        for name in names {
            let _ = self.remove_toxic(&name).await;
        }
    }

    /// Registers an accepted connection and builds its links from the current toxics, atomically
    /// with respect to toxic changes (which are broadcast under the same lock).
    pub(crate) fn register(
        &self,
        generation: u64,
        ctl: &Arc<ConnCtl>,
        done: watch::Receiver<bool>,
    ) -> Option<Registration> {
        let mut inner = self.lock();
        if !inner.enabled || inner.generation != generation {
            return None;
        }
        let id = inner.next_connection;
        inner.next_connection += 1;
        let [(up, up_commands), (down, down_commands)] = Direction::ALL.map(|direction| {
            let (link, ends) = Link::start(&inner.toxics[direction as usize], ctl.clone());
            let (commands_tx, commands) = mpsc::unbounded_channel();
            let new_link = NewLink { link, input: ends.input, output: ends.output, commands };
            (new_link, commands_tx)
        });
        let entry = ConnEntry { links: [up_commands, down_commands], ctl: ctl.clone(), done };
        inner.connections.insert(id, entry);
        Some(Registration { id, links: [up, down] })
    }

    pub(crate) fn deregister(&self, id: u64) {
        self.lock().connections.remove(&id);
    }
}

fn toxic_list(inner: &Inner) -> Vec<Toxic> {
    inner.toxics.iter().flatten().map(|t| (**t).clone()).collect()
}

fn find(inner: &Inner, name: &str) -> Option<(usize, usize)> {
    inner.toxics.iter().enumerate().find_map(|(direction, toxics)| {
        toxics.iter().position(|t| t.name == name).map(|index| (direction, index))
    })
}

/// Sends a chain change to every live connection's link for `direction`; returns their acks.
fn broadcast(inner: &Inner, direction: Direction, op: impl Fn() -> LinkOp) -> Vec<oneshot::Receiver<()>> {
    inner
        .connections
        .values()
        .filter_map(|entry| {
            let (done, ack) = oneshot::channel();
            entry.links[direction as usize].send(LinkCmd { op: op(), done }).ok().map(|()| ack)
        })
        .collect()
}

async fn wait_all(acks: Vec<oneshot::Receiver<()>>) {
    let deadline = tokio::time::Instant::now() + REWIRE_TIMEOUT;
    for ack in acks {
        if tokio::time::timeout_at(deadline, ack).await.is_err() {
            crate::warn!("a connection did not apply a toxic change within {REWIRE_TIMEOUT:?}");
            return;
        }
    }
}

async fn join_all_spawned<F: std::future::Future<Output = ()> + Send + 'static>(
    futures: impl Iterator<Item = F>,
) {
    let mut set = tokio::task::JoinSet::new();
    for future in futures {
        set.spawn(future);
    }
    while set.join_next().await.is_some() {}
}

async fn accept_loop(
    proxy: Arc<Proxy>,
    listener: TcpListener,
    generation: u64,
    upstream: String,
    mut stop: oneshot::Receiver<()>,
    counters: Arc<crate::metrics::ProxyCounters>,
) {
    loop {
        let accepted = tokio::select! {
            biased;
            _ = &mut stop => break,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((client, peer)) => {
                let task =
                    conn::serve(proxy.clone(), generation, client, peer, upstream.clone(), counters.clone());
                tokio::spawn(task);
            }
            Err(err) => {
                // e.g. out of file descriptors: log and retry shortly instead of spinning.
                crate::warn!("proxy={}: error while accepting client: {err}", proxy.name);
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
    // Dropping the listener closes the port before stop() returns.
}
