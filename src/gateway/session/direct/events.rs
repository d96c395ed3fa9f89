//! The response stream of a direct call, and its resumption (SEP-1699), as
//! rmcp does for the streams it serves: a priming event (an id, no data,
//! `retry`) first, then every event with an id. A stream the client leaves
//! before its call's response is parked: the call runs on, what it sends is
//! kept, and a GET with `Last-Event-ID` replays what followed that event and
//! then goes on live, until [`RESUMABLE`] after the call ended.
//!
//! A stream that handed out its response is not kept, so a response lost in
//! the network after it left the gateway cannot be fetched again.
use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::{Stream, StreamExt};
use rmcp::model::ServerJsonRpcMessage;
use rmcp::transport::streamable_http_server::session::ServerSseMessage;
use tokio::sync::{Notify, mpsc};

use crate::gateway::shortcut::{Events, Final};

/// A call being served: its response, or `None` if it was cancelled.
pub(super) type Call = Pin<Box<dyn Future<Output = Option<Final>> + Send>>;

/// How long a client waits before it resumes a broken stream (rmcp's default).
const RETRY: Duration = Duration::from_secs(3);
/// How long a left stream stays resumable after its call ended (rmcp's: 60 s).
const RESUMABLE: Duration = Duration::from_secs(60);
/// Left streams one session keeps; beyond them a left call still runs to its
/// end, but cannot be resumed.
const MAX_PARKED: usize = 64;
/// Events one stream keeps for a resumption (a call sends a few; a long one
/// with much progress more): beyond them the oldest go, and a resumption
/// from before them starts at the oldest kept.
const MAX_KEPT: usize = 256;

/// Event ids of direct streams, `d<stream>-<index>`: never one of rmcp's
/// (`<index>` or `<index>/<request>`), so a resumption finds its way.
fn event_id(stream: u64, index: usize) -> String {
    format!("d{stream}-{index}")
}

fn parse_event_id(id: &str) -> Option<(u64, usize)> {
    let (stream, index) = id.strip_prefix('d')?.split_once('-')?;
    Some((stream.parse().ok()?, index.parse().ok()?))
}

/// The direct streams of one session: their numbers, and those parked.
#[derive(Default)]
pub(super) struct Parking {
    next: AtomicU64,
    parked: Mutex<HashMap<u64, Arc<Parked>>>,
}

impl Parking {
    fn parked(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Arc<Parked>>> {
        self.parked.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(super) fn next_stream(&self) -> u64 {
        self.next.fetch_add(1, Ordering::Relaxed)
    }

    fn park(&self, stream: u64, sent: Kept) -> Option<Arc<Parked>> {
        let mut parked = self.parked();
        if parked.len() >= MAX_PARKED {
            tracing::debug!("a left call stream cannot be kept for resumption: too many are");
            return None;
        }
        let p = Arc::new(Parked {
            events: Mutex::new(sent),
            done: AtomicBool::new(false),
            changed: Notify::new(),
        });
        parked.insert(stream, p.clone());
        Some(p)
    }

    /// The events after `last_event_id` of a parked stream, then its live
    /// ones; `None` if the id names no stream parked here.
    pub(super) fn resume(&self, last_event_id: &str) -> Option<Events> {
        let (stream, index) = parse_event_id(last_event_id)?;
        let parked = self.parked().get(&stream).cloned()?;
        Some(Box::pin(parked.after(index + 1)))
    }
}

/// The last [`MAX_KEPT`] events of a stream, by index.
#[derive(Default)]
struct Kept {
    /// The index of the oldest event kept.
    first: usize,
    events: VecDeque<ServerSseMessage>,
}

impl Kept {
    fn push(&mut self, event: ServerSseMessage) {
        if self.events.len() == MAX_KEPT {
            self.events.pop_front();
            self.first += 1;
        }
        self.events.push_back(event);
    }

    /// The event at `index` (or the oldest kept, if that one is gone) and its index.
    fn get(&self, index: usize) -> Option<(usize, ServerSseMessage)> {
        let index = index.max(self.first);
        let event = self.events.get(index - self.first)?;
        Some((index, event.clone()))
    }
}

/// What a left stream sent (priming included) and sends while its call runs.
struct Parked {
    events: Mutex<Kept>,
    done: AtomicBool,
    changed: Notify,
}

impl Parked {
    fn push(&self, event: ServerSseMessage) {
        self.events
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(event);
        self.changed.notify_waiters();
    }

    fn finish(&self) {
        self.done.store(true, Ordering::Release);
        self.changed.notify_waiters();
    }

    fn get(&self, index: usize) -> Option<(usize, ServerSseMessage)> {
        self.events
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(index)
    }

    /// The events from `index` on, until the call has ended.
    fn after(self: Arc<Self>, index: usize) -> impl Stream<Item = ServerSseMessage> + Send + Sync {
        futures_util::stream::unfold((self, index), |(p, i)| async move {
            loop {
                // Made before looking: it hears a push that comes in between.
                let changed = p.changed.notified();
                if let Some((at, event)) = p.get(i) {
                    drop(changed);
                    return Some((event, (p, at + 1)));
                }
                if p.done.load(Ordering::Acquire) {
                    return None;
                }
                changed.await;
            }
        })
    }
}

/// The response stream of one direct call: a priming event, what the
/// upstream sent on the call's behalf in order, then the response.
pub(super) struct CallEvents {
    /// The call, until it ends (a mutex only to make the stream `Sync`; it is
    /// never locked, `get_mut` reaches it).
    call: Option<Mutex<Call>>,
    rx: mpsc::Receiver<ServerJsonRpcMessage>,
    /// A message taken while waiting for the first (see [`Self::hold`]).
    early: Option<ServerJsonRpcMessage>,
    last: Option<Final>,
    stream: u64,
    /// The index of the next event.
    index: usize,
    /// The events handed out, to park.
    sent: Kept,
    /// Where to park the stream if the client leaves it; `None` once parked.
    parking: Option<Arc<Parking>>,
}

impl CallEvents {
    pub(super) fn new(
        call: Call,
        rx: mpsc::Receiver<ServerJsonRpcMessage>,
        parking: Arc<Parking>,
    ) -> Self {
        CallEvents {
            call: Some(Mutex::new(call)),
            rx,
            early: None,
            last: None,
            stream: parking.next_stream(),
            index: 0,
            sent: Kept::default(),
            parking: Some(parking),
        }
    }

    /// Waits, at most `limit`, until the call has something to send, without
    /// sending anything: a short answer then leaves in one write (headers,
    /// events and end of stream), instead of three that each wake the client.
    pub(super) async fn hold(&mut self, limit: Duration) {
        let first = std::future::poll_fn(|cx| self.poll_first(cx));
        let _ = tokio::time::timeout(limit, first).await;
    }

    /// The response, if the call ended having sent nothing else (then the
    /// stream has nothing left to send, nor to keep for a resumption).
    pub(super) fn answer_alone(&mut self) -> Option<Final> {
        if self.call.is_some() || self.early.is_some() || self.index > 0 {
            return None;
        }
        if let Ok(m) = self.rx.try_recv() {
            self.early = Some(m);
            return None;
        }
        self.last.take()
    }

    fn poll_first(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        if self.early.is_some() || self.call.is_none() {
            return Poll::Ready(());
        }
        if let Poll::Ready(Some(m)) = self.rx.poll_recv(cx) {
            self.early = Some(m);
            return Poll::Ready(());
        }
        self.poll_call(cx)
    }

    /// Polls the call; when it ends, its response waits in `last`.
    fn poll_call(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let Some(call) = &mut self.call else {
            return Poll::Ready(());
        };
        let call = call.get_mut().unwrap_or_else(|e| e.into_inner());
        let last = std::task::ready!(call.as_mut().poll(cx));
        self.call = None;
        self.last = last;
        Poll::Ready(())
    }

    fn hand_out(&mut self, message: Option<ServerJsonRpcMessage>) -> ServerSseMessage {
        let id = event_id(self.stream, self.index);
        self.index += 1;
        let event = match message {
            Some(m) => ServerSseMessage::new(id, m),
            None => ServerSseMessage::priming(id, RETRY),
        };
        if self.parking.is_some() {
            self.sent.push(event.clone());
        }
        event
    }

    fn left_over(&self) -> bool {
        self.call.is_some() || self.early.is_some() || self.last.is_some()
    }
}

impl Stream for CallEvents {
    type Item = ServerSseMessage;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<ServerSseMessage>> {
        let this = self.get_mut();
        if this.index == 0 {
            return Poll::Ready(Some(this.hand_out(None)));
        }
        if let Some(m) = this.early.take() {
            return Poll::Ready(Some(this.hand_out(Some(m))));
        }
        loop {
            if let Poll::Ready(Some(m)) = this.rx.poll_recv(cx) {
                return Poll::Ready(Some(this.hand_out(Some(m))));
            }
            if this.call.is_none() {
                let last = this.last.take();
                return Poll::Ready(last.map(|m| this.hand_out(Some(m.into_message()))));
            }
            // When the call ends, look at the queue once more: what it sent
            // before its response goes first.
            std::task::ready!(this.poll_call(cx));
        }
    }
}

impl Drop for CallEvents {
    /// The client left before the response: not a cancellation. The call
    /// runs on (to its answer, its deadline or its session's end), parked
    /// for a resumption.
    fn drop(&mut self) {
        // Only the stream a client had goes on; a continuation that is
        // dropped (the runtime shutting down) just ends.
        let Some(parking) = self.parking.take() else {
            return;
        };
        if !self.left_over() {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let parked = parking.park(self.stream, std::mem::take(&mut self.sent));
        let mut rest = CallEvents {
            call: self.call.take(),
            rx: std::mem::replace(&mut self.rx, mpsc::channel(1).1),
            early: self.early.take(),
            last: self.last.take(),
            stream: self.stream,
            index: self.index.max(1),
            sent: Kept::default(),
            parking: None,
        };
        let stream = self.stream;
        tracing::debug!(stream, "a client left a call's stream; the call runs on");
        runtime.spawn(async move {
            while let Some(event) = rest.next().await {
                if let Some(p) = &parked {
                    p.push(event);
                }
            }
            if let Some(p) = parked {
                p.finish();
                tokio::time::sleep(RESUMABLE).await;
                parking.parked().remove(&stream);
            }
        });
    }
}

#[cfg(test)]
mod tests;
