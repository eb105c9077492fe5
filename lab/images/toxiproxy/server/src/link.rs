//! One direction of a proxied connection: reader → hidden noop → toxics in the order added → writer.
//!
//! As in Toxiproxy, each toxic runs as its own task between two channels, and the chain is re-wired
//! in place when toxics are added, updated or removed, so live connections see the change without
//! losing bytes: a toxic is interrupted, hands back any chunk it was holding, and either restarts
//! (update) or has its queued chunks moved on to the next toxic (removal).

use crate::conn::ConnCtl;
use crate::model::Toxic;
use crate::{random, toxics};
use bytes::Bytes;
use std::collections::VecDeque;
use std::mem;
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

/// Bytes read from a socket in one read, with the time they were read (latency counts from it).
#[derive(Debug)]
pub struct Chunk {
    pub data: Bytes,
    pub ts: Instant,
}

/// Toxiproxy's channels are unbuffered unless the toxic asks for a buffer; tokio needs at least 1.
pub fn channel(buffer: usize) -> (mpsc::Sender<Chunk>, mpsc::Receiver<Chunk>) {
    mpsc::channel(buffer.max(1))
}

/// A toxic's input: its channel plus chunks handed back when it was interrupted (read first).
pub struct Input {
    pub rx: mpsc::Receiver<Chunk>,
    pub held: VecDeque<Chunk>,
}

impl Input {
    fn new(rx: mpsc::Receiver<Chunk>) -> Self {
        Self { rx, held: VecDeque::new() }
    }

    /// Everything not yet processed; only complete while no one can send (the sender is paused).
    fn drain(&mut self) -> VecDeque<Chunk> {
        let mut all = mem::take(&mut self.held);
        while let Ok(chunk) = self.rx.try_recv() {
            all.push_back(chunk);
        }
        all
    }
}

/// The per-connection slot a toxic runs in (Toxiproxy's ToxicStub).
pub struct Stub {
    pub input: Input,
    /// `None` once the toxic closed its output (the end of this direction).
    pub output: Option<mpsc::Sender<Chunk>>,
    /// Chunks already past this toxic that must reach `output` before anything else.
    pub pending: VecDeque<Chunk>,
    /// limit_data's count, kept across updates of the toxic as in Toxiproxy.
    pub bytes_transmitted: i64,
}

impl Stub {
    fn new(rx: mpsc::Receiver<Chunk>, output: Option<mpsc::Sender<Chunk>>) -> Self {
        Self { input: Input::new(rx), output, pending: VecDeque::new(), bytes_transmitted: 0 }
    }
}

struct Running {
    task: JoinHandle<Stub>,
    interrupt: oneshot::Sender<()>,
}

struct Stage {
    /// `None` for the hidden noop at the head of the chain.
    toxic: Option<Arc<Toxic>>,
    running: Option<Running>,
}

pub enum LinkOp {
    Add(Arc<Toxic>),
    /// Stage index (1-based: 0 is the hidden noop) and the toxic's new settings.
    Update(usize, Arc<Toxic>),
    Remove(usize),
}

pub struct LinkCmd {
    pub op: LinkOp,
    pub done: oneshot::Sender<()>,
}

pub struct Link {
    stages: Vec<Stage>,
    conn: Arc<ConnCtl>,
}

/// The ends a new link gives to its reader and writer tasks.
pub struct LinkEnds {
    pub input: mpsc::Sender<Chunk>,
    pub output: mpsc::Receiver<Chunk>,
}

impl Link {
    /// Starts the toxic tasks of a new connection's direction.
    pub fn start(toxics: &[Arc<Toxic>], conn: Arc<ConnCtl>) -> (Self, LinkEnds) {
        let (input, mut rx) = channel(0);
        let mut link = Self { stages: Vec::with_capacity(toxics.len() + 1), conn };
        let chain = std::iter::once(None).chain(toxics.iter().cloned().map(Some));
        for (index, toxic) in chain.enumerate() {
            // The channel into the next toxic carries that toxic's buffer; the last one feeds the writer.
            let (tx, next_rx) = channel(toxics.get(index).map_or(0, |next| next.kind.buffer_size()));
            link.stages.push(Stage { toxic, running: None });
            link.resume(index, Stub::new(rx, Some(tx)));
            rx = next_rx;
        }
        (link, LinkEnds { input, output: rx })
    }

    /// Applies toxic changes until the connection is gone (its command sender dropped).
    pub async fn run(mut self, mut commands: mpsc::UnboundedReceiver<LinkCmd>) {
        let mut broken = false;
        while let Some(LinkCmd { op, done }) = commands.recv().await {
            if !broken && self.apply(op).await.is_none() {
                // A toxic task died (a bug): the chain cannot be re-wired any more, so end the connection.
                crate::error!("toxic task failed; closing the connection");
                self.conn.kill(crate::conn::Kill::Close);
                broken = true;
            }
            let _ = done.send(());
        }
        // Dropping the stages drops their interrupt senders, which ends the toxic tasks.
    }

    async fn apply(&mut self, op: LinkOp) -> Option<()> {
        match op {
            LinkOp::Add(toxic) => {
                let last = self.stages.len() - 1;
                let mut previous = self.pause(last).await?;
                let (tx, rx) = channel(toxic.kind.buffer_size());
                let mut added = Stub::new(rx, previous.output.take());
                added.pending = mem::take(&mut previous.pending);
                if added.output.is_some() {
                    previous.output = Some(tx);
                }
                self.resume(last, previous);
                self.stages.push(Stage { toxic: Some(toxic), running: None });
                self.resume(last + 1, added);
            }
            LinkOp::Update(index, toxic) => {
                let stub = self.pause(index).await?;
                self.stages[index].toxic = Some(toxic);
                self.resume(index, stub); // re-rolls toxicity, as Toxiproxy restarts the toxic
            }
            LinkOp::Remove(index) => {
                let closes = self.stages[index].toxic.as_ref().is_some_and(|t| t.kind.closes_on_removal());
                let mut removed = self.pause(index).await?;
                if closes {
                    // Toxiproxy's timeout Cleanup: close this direction, which ends the connection.
                    self.stages.remove(index);
                    return Some(());
                }
                let mut previous = self.pause(index - 1).await?;
                // Stop the sender into the removed toxic so its queue can be drained completely.
                drop(mem::replace(&mut previous.output, removed.output.take()));
                let mut carried = mem::take(&mut removed.pending);
                carried.extend(removed.input.drain());
                carried.extend(mem::take(&mut previous.pending));
                previous.pending = carried;
                self.stages.remove(index);
                self.resume(index - 1, previous);
            }
        }
        Some(())
    }

    /// Interrupts a toxic and takes its stub back (`None` if the task panicked).
    async fn pause(&mut self, index: usize) -> Option<Stub> {
        let Running { task, interrupt } = self.stages[index].running.take()?;
        let _ = interrupt.send(());
        task.await.ok()
    }

    fn resume(&mut self, index: usize, stub: Stub) {
        let stage = &mut self.stages[index];
        // Toxicity is rolled each time a toxic starts on a connection (per connection and direction).
        let toxic = stage.toxic.clone().filter(|toxic| random::unit_f32() < toxic.toxicity);
        let (interrupt, interrupted) = oneshot::channel();
        let task = tokio::spawn(toxics::run(stub, toxic, interrupted, self.conn.clone()));
        stage.running = Some(Running { task, interrupt });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Direction, ToxicKind};
    use std::time::Duration;

    fn toxic(kind: ToxicKind) -> Arc<Toxic> {
        let name = kind.type_name().to_owned();
        Arc::new(Toxic {
            name,
            kind,
            stream: "downstream".into(),
            direction: Direction::Downstream,
            toxicity: 1.0,
        })
    }

    fn start(toxics: &[Arc<Toxic>]) -> (mpsc::UnboundedSender<LinkCmd>, LinkEnds) {
        let (ctl, _done, _done_rx) = crate::conn::new_ctl();
        let (link, ends) = Link::start(toxics, ctl);
        let (commands, receiver) = mpsc::unbounded_channel();
        tokio::spawn(link.run(receiver));
        (commands, ends)
    }

    async fn apply(commands: &mpsc::UnboundedSender<LinkCmd>, op: LinkOp) {
        let (done, ack) = oneshot::channel();
        commands.send(LinkCmd { op, done }).unwrap_or_else(|_| panic!("link gone"));
        ack.await.expect("acknowledged");
    }

    fn chunk(n: u32) -> Chunk {
        Chunk { data: Bytes::copy_from_slice(&n.to_be_bytes()), ts: Instant::now() }
    }

    #[tokio::test(start_paused = true)]
    async fn rewiring_under_traffic_keeps_every_chunk_in_order() {
        let (commands, LinkEnds { input, mut output }) = start(&[]);
        let feeder = tokio::spawn(async move {
            for n in 0..300 {
                input.send(chunk(n)).await.expect("link open");
                tokio::task::yield_now().await;
            }
        });
        let latency = |ms| toxic(ToxicKind::Latency { latency: ms, jitter: 0 });
        let reader = tokio::spawn(async move {
            let mut bytes = Vec::new();
            while bytes.len() < 1200 {
                bytes.extend_from_slice(&output.recv().await.expect("open").data);
            }
            bytes
        });
        for _ in 0..20 {
            apply(&commands, LinkOp::Add(latency(10))).await;
            apply(
                &commands,
                LinkOp::Add(toxic(ToxicKind::Slicer { average_size: 1, size_variation: 0, delay: 0 })),
            )
            .await;
            apply(&commands, LinkOp::Update(1, latency(3))).await;
            apply(&commands, LinkOp::Remove(1)).await;
            apply(&commands, LinkOp::Remove(1)).await;
        }
        feeder.await.expect("fed");
        let bytes = reader.await.expect("read");
        let expected: Vec<u8> = (0..300u32).flat_map(u32::to_be_bytes).collect();
        assert_eq!(bytes, expected);
    }

    #[tokio::test(start_paused = true)]
    async fn changes_do_not_wait_for_a_stalled_reader_and_lose_nothing() {
        let (commands, LinkEnds { input, mut output }) = start(&[]);
        let mut sent = Vec::new();
        for n in 0..3u32 {
            // Fill the channels: nobody reads the output yet.
            if input.try_send(chunk(n)).is_ok() {
                sent.extend_from_slice(&n.to_be_bytes());
            }
            tokio::task::yield_now().await;
        }
        let stall = toxic(ToxicKind::Bandwidth { rate: 0 });
        tokio::time::timeout(Duration::from_secs(1), async {
            apply(&commands, LinkOp::Add(stall.clone())).await;
            apply(&commands, LinkOp::Update(1, stall)).await;
            apply(&commands, LinkOp::Remove(1)).await;
        })
        .await
        .expect("changes applied while the output is full");
        drop(input);
        let mut received = Vec::new();
        while let Some(chunk) = output.recv().await {
            received.extend_from_slice(&chunk.data);
        }
        assert!(!sent.is_empty());
        assert_eq!(received, sent, "whatever entered arrives, in order");
    }

    #[tokio::test(start_paused = true)]
    async fn removing_a_timeout_closes_the_direction() {
        let (commands, LinkEnds { input, mut output }) = start(&[toxic(ToxicKind::Timeout { timeout: 0 })]);
        input.send(chunk(1)).await.expect("open");
        apply(&commands, LinkOp::Remove(1)).await;
        assert!(output.recv().await.is_none(), "the dropped data never arrives and the output ends");
    }
}
