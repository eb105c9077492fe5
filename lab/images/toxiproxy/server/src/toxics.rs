//! The toxics, following Toxiproxy 2.12's implementations (toxics/*.go) chunk for chunk.
//!
//! Every wait is interruptible: when the link re-wires, a toxic hands the chunk it holds back to its
//! input (it is processed again, or passed on if the toxic was removed) instead of dropping it.

use crate::conn::{ConnCtl, Kill};
use crate::link::{Chunk, Stub};
use crate::model::{Toxic, ToxicKind};
use crate::random;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

/// Why a toxic stopped: the link interrupted it, or it closed its output (end of the direction).
#[derive(Debug)]
pub enum Exit {
    Interrupted,
    Closed,
}

type Flow<T = ()> = Result<T, Exit>;

enum SendError {
    Interrupted(Chunk),
    Closed,
}

struct Pipe<'a> {
    stub: &'a mut Stub,
    /// Fires on interrupt or when the link is gone; never polled again after it fired.
    interrupt: &'a mut oneshot::Receiver<()>,
}

fn millis(ms: i64) -> Duration {
    Duration::from_millis(ms.max(0) as u64)
}

fn nanos(ns: i128) -> Duration {
    Duration::from_nanos(ns.clamp(0, i128::from(u64::MAX)) as u64)
}

impl Pipe<'_> {
    /// The next chunk, `None` at the end of the stream.
    async fn recv(&mut self) -> Flow<Option<Chunk>> {
        if let Some(chunk) = self.stub.input.held.pop_front() {
            return Ok(Some(chunk));
        }
        tokio::select! {
            biased;
            _ = &mut *self.interrupt => Err(Exit::Interrupted),
            chunk = self.stub.input.rx.recv() => Ok(chunk),
        }
    }

    /// Like `recv`, but `Ok(None)` if nothing arrives within `idle`.
    async fn recv_within(&mut self, idle: Duration) -> Flow<Option<Option<Chunk>>> {
        if let Some(chunk) = self.stub.input.held.pop_front() {
            return Ok(Some(Some(chunk)));
        }
        tokio::select! {
            biased;
            _ = &mut *self.interrupt => Err(Exit::Interrupted),
            chunk = self.stub.input.rx.recv() => Ok(Some(chunk)),
            _ = tokio::time::sleep(idle) => Ok(None),
        }
    }

    async fn send_raw(&mut self, chunk: Chunk) -> Result<(), SendError> {
        let Some(output) = self.stub.output.as_ref() else {
            return Err(SendError::Closed);
        };
        let permit = tokio::select! {
            biased;
            _ = &mut *self.interrupt => None,
            permit = output.reserve() => Some(permit),
        };
        match permit {
            None => Err(SendError::Interrupted(chunk)),
            Some(Ok(permit)) => {
                permit.send(chunk);
                Ok(())
            }
            Some(Err(_)) => Err(SendError::Closed),
        }
    }

    async fn send(&mut self, chunk: Chunk) -> Flow {
        match self.send_raw(chunk).await {
            Ok(()) => Ok(()),
            Err(SendError::Interrupted(chunk)) => {
                self.unread(chunk);
                Err(Exit::Interrupted)
            }
            Err(SendError::Closed) => Err(self.close()),
        }
    }

    /// Hands a chunk back to the input, to be read again first.
    fn unread(&mut self, chunk: Chunk) {
        self.stub.input.held.push_front(chunk);
    }

    async fn sleep(&mut self, duration: Duration) -> Flow {
        if duration.is_zero() {
            return Ok(());
        }
        tokio::select! {
            biased;
            _ = &mut *self.interrupt => Err(Exit::Interrupted),
            _ = tokio::time::sleep(duration) => Ok(()),
        }
    }

    /// Sleeps while holding a chunk; on interrupt the chunk goes back to the input.
    async fn sleep_holding(&mut self, duration: Duration, chunk: Chunk) -> Flow<Chunk> {
        match self.sleep(duration).await {
            Ok(()) => Ok(chunk),
            Err(exit) => {
                self.unread(chunk);
                Err(exit)
            }
        }
    }

    async fn flush_pending(&mut self) -> Flow {
        while let Some(chunk) = self.stub.pending.pop_front() {
            match self.send_raw(chunk).await {
                Ok(()) => {}
                Err(SendError::Interrupted(chunk)) => {
                    self.stub.pending.push_front(chunk);
                    return Err(Exit::Interrupted);
                }
                Err(SendError::Closed) => return Err(self.close()),
            }
        }
        Ok(())
    }

    /// Ends this direction (Toxiproxy's stub.Close): the rest of the chain and then the writer see EOF,
    /// and the toxics before this one stop being able to send.
    fn close(&mut self) -> Exit {
        self.stub.output = None;
        self.stub.input.rx.close();
        Exit::Closed
    }
}

/// Runs one toxic on a stub until it is interrupted or closes; `None` runs the pass-through noop
/// (the hidden head of every chain, and toxics whose toxicity roll failed).
pub async fn run(
    mut stub: Stub,
    toxic: Option<Arc<Toxic>>,
    mut interrupt: oneshot::Receiver<()>,
    conn: Arc<ConnCtl>,
) -> Stub {
    if stub.output.is_none() {
        return stub;
    }
    let mut pipe = Pipe { stub: &mut stub, interrupt: &mut interrupt };
    if pipe.flush_pending().await.is_ok() {
        let kind = toxic.as_ref().map_or(&ToxicKind::Noop, |toxic| &toxic.kind);
        let _exit = match *kind {
            ToxicKind::Noop => noop(&mut pipe).await,
            ToxicKind::Latency { latency, jitter } => self::latency(&mut pipe, latency, jitter).await,
            ToxicKind::Bandwidth { rate } => bandwidth(&mut pipe, rate).await,
            ToxicKind::SlowClose { delay } => slow_close(&mut pipe, delay).await,
            ToxicKind::Timeout { timeout } => self::timeout(&mut pipe, timeout).await,
            ToxicKind::ResetPeer { timeout } => reset_peer(&mut pipe, timeout, &conn).await,
            ToxicKind::Slicer { average_size, size_variation, delay } => {
                slicer(&mut pipe, average_size, size_variation, delay).await
            }
            ToxicKind::LimitData { bytes } => limit_data(&mut pipe, bytes).await,
        };
    }
    stub
}

async fn noop(p: &mut Pipe<'_>) -> Flow {
    while let Some(chunk) = p.recv().await? {
        p.send(chunk).await?;
    }
    Err(p.close())
}

/// Each chunk leaves `latency ± jitter` ms after it was read (queued chunks are not delayed twice).
async fn latency(p: &mut Pipe<'_>, latency: i64, jitter: i64) -> Flow {
    while let Some(mut chunk) = p.recv().await? {
        let mut delay_ms = i128::from(latency);
        if jitter > 0 {
            delay_ms += i128::from(random::below(jitter.saturating_mul(2))) - i128::from(jitter);
        }
        let wait = delay_ms * 1_000_000 - chunk.ts.elapsed().as_nanos() as i128;
        if wait > 0 {
            chunk = p.sleep_holding(nanos(wait), chunk).await?;
            chunk.ts = chunk.ts.checked_add(nanos(wait)).unwrap_or(chunk.ts);
        } else {
            chunk.ts = chunk.ts.checked_sub(nanos(-wait)).unwrap_or(chunk.ts);
        }
        p.send(chunk).await?;
    }
    Err(p.close())
}

/// Paces output to `rate` KB/s, in 100 ms slices for large chunks. At rate 0 no data gets through
/// (Toxiproxy's loop makes no progress), which clients use as a "cut" that keeps sockets open.
async fn bandwidth(p: &mut Pipe<'_>, rate: i64) -> Flow {
    const SLICE_INTERVAL: Duration = Duration::from_millis(100);
    let mut owed_ns: i128 = 0;
    while let Some(mut chunk) = p.recv().await? {
        if rate <= 0 {
            p.sleep_holding(Duration::MAX, chunk).await?;
            continue;
        }
        owed_ns += chunk.data.len() as i128 * 1_000_000 / i128::from(rate);
        let slice = usize::try_from(rate.saturating_mul(100)).unwrap_or(usize::MAX);
        while chunk.data.len() > slice {
            chunk = p.sleep_holding(SLICE_INTERVAL, chunk).await?;
            let part = Chunk { data: chunk.data.split_to(slice), ts: chunk.ts };
            match p.send_raw(part).await {
                Ok(()) => owed_ns -= SLICE_INTERVAL.as_nanos() as i128,
                Err(SendError::Interrupted(part)) => {
                    p.unread(chunk);
                    p.unread(part);
                    return Err(Exit::Interrupted);
                }
                Err(SendError::Closed) => return Err(p.close()),
            }
        }
        let started = Instant::now();
        chunk = p.sleep_holding(nanos(owed_ns), chunk).await?;
        // Timers overshoot: carry the error into the next chunk's wait, as Toxiproxy does.
        owed_ns -= started.elapsed().as_nanos() as i128;
        p.send(chunk).await?;
    }
    Err(p.close())
}

/// Passes data; after the input ends, waits `delay` ms before closing.
async fn slow_close(p: &mut Pipe<'_>, delay: i64) -> Flow {
    while let Some(chunk) = p.recv().await? {
        p.send(chunk).await?;
    }
    p.sleep(millis(delay)).await?;
    Err(p.close())
}

/// Drops all data; closes after `timeout` ms without input (0: never). Removing it closes too (link).
async fn timeout(p: &mut Pipe<'_>, timeout: i64) -> Flow {
    if timeout > 0 {
        // The timer restarts with every chunk, as Toxiproxy's time.After in its select loop does.
        while let Some(Some(_dropped)) = p.recv_within(millis(timeout)).await? {}
    } else {
        while p.recv().await?.is_some() {}
    }
    Err(p.close())
}

/// On the first data (or end of input), waits `timeout` ms, then resets both sockets (RST).
async fn reset_peer(p: &mut Pipe<'_>, timeout: i64, conn: &ConnCtl) -> Flow {
    match p.recv().await? {
        Some(chunk) => drop(p.sleep_holding(millis(timeout), chunk).await?),
        None => p.sleep(millis(timeout)).await?,
    }
    conn.kill(Kill::Reset);
    Err(p.close())
}

/// Splits each chunk into slices of about `average_size` ± `size_variation` bytes, `delay` µs apart.
async fn slicer(p: &mut Pipe<'_>, average_size: i64, size_variation: i64, delay: i64) -> Flow {
    let delay = Duration::from_micros(delay.max(0) as u64);
    while let Some(chunk) = p.recv().await? {
        for (start, end) in slice_bounds(chunk.data.len(), average_size, size_variation) {
            let part = Chunk { data: chunk.data.slice(start..end), ts: chunk.ts };
            match p.send_raw(part).await {
                Ok(()) => {}
                Err(SendError::Interrupted(_)) => {
                    p.unread(Chunk { data: chunk.data.slice(start..), ts: chunk.ts });
                    return Err(Exit::Interrupted);
                }
                Err(SendError::Closed) => return Err(p.close()),
            }
            if let Err(exit) = p.sleep(delay).await {
                if end < chunk.data.len() {
                    p.unread(Chunk { data: chunk.data.slice(end..), ts: chunk.ts });
                }
                return Err(exit);
            }
        }
    }
    Err(p.close())
}

/// Toxiproxy's recursive halving with a random offset; bounds are clamped so that odd settings
/// (zero sizes, variation above the average) still make progress instead of failing.
pub fn slice_bounds(len: usize, average_size: i64, size_variation: i64) -> Vec<(usize, usize)> {
    fn split(start: i64, end: i64, average: i64, variation: i64, out: &mut Vec<(usize, usize)>) {
        if (end - start) - average <= variation || end - start <= 1 {
            out.push((start as usize, end as usize));
            return;
        }
        let offset = if variation > 0 { random::below(variation * 2) - variation } else { 0 };
        let mid = (start + (end - start) / 2 + offset).clamp(start + 1, end - 1);
        split(start, mid, average, variation, out);
        split(mid, end, average, variation, out);
    }
    let mut out = Vec::new();
    if len > 0 {
        let len = i64::try_from(len).unwrap_or(i64::MAX);
        split(0, len, average_size.max(1), size_variation.clamp(0, len), &mut out);
    }
    out
}

/// Passes at most `bytes` bytes per connection and direction, then closes.
async fn limit_data(p: &mut Pipe<'_>, bytes: i64) -> Flow {
    while let Some(mut chunk) = p.recv().await? {
        let remaining = bytes.saturating_sub(p.stub.bytes_transmitted).max(0);
        if (remaining as u64) < chunk.data.len() as u64 {
            chunk.data.truncate(remaining as usize);
        }
        let sent = chunk.data.len() as i64;
        if sent > 0 {
            p.send(chunk).await?;
            p.stub.bytes_transmitted += sent;
        }
        if bytes.saturating_sub(p.stub.bytes_transmitted) <= 0 {
            return Err(p.close());
        }
    }
    Err(p.close())
}

#[cfg(test)]
mod tests {
    use super::slice_bounds;

    fn check(len: usize, average: i64, variation: i64) -> Vec<(usize, usize)> {
        let bounds = slice_bounds(len, average, variation);
        let mut position = 0;
        for &(start, end) in &bounds {
            assert_eq!(start, position, "contiguous");
            assert!(end > start, "non-empty");
            position = end;
        }
        assert_eq!(position, len, "covers everything");
        bounds
    }

    #[test]
    fn slices_cover_the_chunk_in_order() {
        let bounds = check(1000, 10, 0);
        assert!(bounds.iter().all(|(s, e)| e - s <= 10), "{bounds:?}");
        assert!(bounds.len() >= 100);
        check(1000, 10, 5);
        check(7, 100, 3);
        assert_eq!(check(7, 100, 3).len(), 1);
    }

    #[test]
    fn odd_settings_do_not_hang() {
        check(64, 0, 0);
        check(64, 1, 1000);
        check(64, -5, -5);
        assert!(slice_bounds(0, 10, 0).is_empty());
    }
}
