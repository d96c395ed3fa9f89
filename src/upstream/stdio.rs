//! The transport of a container's stdio: rmcp's newline-delimited JSON, as
//! its `AsyncRwTransport` speaks it, with a [`Lane`] for the requests the
//! gateway writes itself, and one shortcut on the way in.
//!
//! A success response is not read further than its envelope: its result is
//! kept as the server wrote it ([`RawResult`]). An answer to the lane goes to
//! its caller so; one to rmcp's session is read as rmcp's codec reads it
//! ([`RawResult::typed`]). Anything else takes rmcp's own reading.
use std::pin::Pin;
use std::sync::Arc;

use bytes::{BufMut, BytesMut};
use futures_util::{SinkExt, StreamExt};
use rmcp::model::{ClientJsonRpcMessage, RequestId, ServerJsonRpcMessage};
use rmcp::service::RoleClient;
use rmcp::transport::Transport;
use rmcp::transport::async_rw::{JsonRpcMessageCodec, JsonRpcMessageCodecError};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::Mutex;
use tokio_util::codec::{Decoder, Encoder, FramedRead, FramedWrite};

use super::raw::RawResult;

/// The longest line read (rmcp's own limit): a longer one is dropped.
pub const MAX_LINE: usize = 16 * 1024 * 1024;

type Reader = Pin<Box<dyn AsyncRead + Send>>;
type Writer = FramedWrite<Pin<Box<dyn AsyncWrite + Send>>, StdinCodec>;

/// One line for a server's stdin.
pub enum Outgoing {
    /// A message, written as rmcp's codec writes it: its JSON, a newline.
    Message(Box<ClientJsonRpcMessage>),
    /// A line the [`Lane`] encoded itself, newline included.
    Line(Vec<u8>),
}

impl From<ClientJsonRpcMessage> for Outgoing {
    fn from(message: ClientJsonRpcMessage) -> Self {
        Outgoing::Message(Box::new(message))
    }
}

#[derive(Default)]
struct StdinCodec;

impl Encoder<Outgoing> for StdinCodec {
    type Error = std::io::Error;

    fn encode(&mut self, item: Outgoing, dst: &mut BytesMut) -> std::io::Result<()> {
        match item {
            Outgoing::Message(message) => {
                serde_json::to_writer(dst.writer(), &message)?;
                dst.put_u8(b'\n');
            }
            Outgoing::Line(line) => dst.extend_from_slice(&line),
        }
        Ok(())
    }
}

pub mod lane;
pub use lane::{Lane, LaneCall};

/// A server's stdin, shared by rmcp's session and the [`Lane`]: each message
/// is written whole, one at a time.
struct Stdin(Mutex<Option<Writer>>);

impl Stdin {
    async fn send(&self, line: impl Into<Outgoing>) -> std::io::Result<()> {
        match self.0.lock().await.as_mut() {
            Some(w) => w.send(line.into()).await,
            None => Err(std::io::Error::new(
                std::io::ErrorKind::NotConnected,
                "the server's stdin is closed",
            )),
        }
    }
}

/// An MCP client transport over a server's stdout and stdin.
pub struct StdioTransport {
    read: FramedRead<Reader, Lines>,
    stdin: Arc<Stdin>,
    lane: Arc<Lane>,
    /// A well-formed message of no known shape came: it is owed an error.
    owes_error: bool,
}

impl StdioTransport {
    pub fn new(stdout: Reader, stdin: Pin<Box<dyn AsyncWrite + Send>>) -> Self {
        let writer = FramedWrite::new(stdin, StdinCodec);
        let stdin = Arc::new(Stdin(Mutex::new(Some(writer))));
        StdioTransport {
            read: FramedRead::new(stdout, Lines::default()),
            lane: Arc::new(Lane::new(stdin.clone())),
            stdin,
            owes_error: false,
        }
    }

    /// The session's [`Lane`], for requests the gateway writes itself.
    pub fn lane(&self) -> Arc<Lane> {
        self.lane.clone()
    }

    /// The next message for rmcp's session (answers to the lane go to it).
    async fn read_message(&mut self) -> Option<ServerJsonRpcMessage> {
        loop {
            // Owed before the next read: a cancelled receive pays it next time.
            if self.owes_error {
                let error = ClientJsonRpcMessage::error(
                    rmcp::ErrorData::invalid_request("Invalid request", None),
                    None,
                );
                self.stdin.send(error).await.ok()?;
                self.owes_error = false;
            }
            match self.read.next().await? {
                Ok(Line::Message(m)) => match self.lane.answer(*m) {
                    Some(m) => return Some(m),
                    None => tokio::task::yield_now().await,
                },
                Ok(Line::Result(id, raw)) => match self.lane.answer_raw(id, raw) {
                    Some((id, raw)) => match raw.typed() {
                        Ok(result) => return Some(ServerJsonRpcMessage::response(result, id)),
                        // Not reached: any JSON is at least a `CustomResult`.
                        Err(e) => {
                            tracing::debug!("a server sent a result rmcp cannot read: {e}");
                            self.owes_error = true;
                        }
                    },
                    // The caller of the lane request answered runs before this
                    // task reads on: the next read is on no one's critical path.
                    None => tokio::task::yield_now().await,
                },
                // Answered with Invalid Request, as rmcp's transport does.
                Ok(Line::Invalid) => self.owes_error = true,
                Err(e) => {
                    tracing::error!("reading a server's stdout failed: {e}");
                    return None;
                }
            }
        }
    }
}

impl Transport<RoleClient> for StdioTransport {
    type Error = std::io::Error;

    fn send(
        &mut self,
        item: ClientJsonRpcMessage,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send + 'static {
        let stdin = self.stdin.clone();
        async move { stdin.send(item).await }
    }

    async fn receive(&mut self) -> Option<ServerJsonRpcMessage> {
        let message = self.read_message().await;
        if message.is_none() {
            self.lane.close();
        }
        message
    }

    async fn close(&mut self) -> Result<(), Self::Error> {
        self.stdin.0.lock().await.take();
        Ok(())
    }
}

/// What one line of a server's stdout is.
pub enum Line {
    Message(Box<ServerJsonRpcMessage>),
    /// A success response, its result unread.
    Result(RequestId, RawResult),
    /// Well-formed JSON that is no message.
    Invalid,
}

/// Splits a server's stdout into lines (bounded by [`MAX_LINE`]) and reads
/// each: a success response's envelope only, the rest with rmcp's codec.
#[derive(Default)]
pub struct Lines {
    /// How far the buffer is known to hold no newline.
    scanned: usize,
    /// Dropping an over-long line up to its newline.
    discarding: bool,
}

impl Decoder for Lines {
    type Item = Line;
    type Error = std::io::Error;

    fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Line>, std::io::Error> {
        loop {
            let end = buf.len().min(MAX_LINE + 1);
            let Some(at) = buf[self.scanned..end].iter().position(|b| *b == b'\n') else {
                if buf.len() > MAX_LINE && !self.discarding {
                    tracing::error!(
                        max = MAX_LINE,
                        "a server sent a longer line than allowed; dropped"
                    );
                    self.discarding = true;
                }
                // A line being dropped is not kept while its end is awaited.
                if self.discarding {
                    buf.clear();
                    self.scanned = 0;
                } else {
                    self.scanned = end;
                }
                return Ok(None);
            };
            let line = buf.split_to(self.scanned + at + 1);
            self.scanned = 0;
            if std::mem::take(&mut self.discarding) {
                continue;
            }
            if let Some(line) = read_line(line) {
                return Ok(Some(line));
            }
        }
    }

    fn decode_eof(&mut self, buf: &mut BytesMut) -> Result<Option<Line>, std::io::Error> {
        // A last line without its newline is an incomplete message: nothing to read.
        let line = self.decode(buf)?;
        if line.is_none() {
            buf.clear();
        }
        Ok(line)
    }
}

/// One whole line, with its newline; `None` if it is to be skipped.
fn read_line(line: BytesMut) -> Option<Line> {
    let mut end = line.len();
    for suffix in [b'\n', b'\r'] {
        if end > 0 && line[end - 1] == suffix {
            end -= 1;
        }
    }
    if end == 0 {
        return None;
    }
    let line = line.freeze();
    if let Some((id, raw)) = RawResult::read(line.slice(..end)) {
        return Some(Line::Result(id, raw));
    }
    // rmcp's codec, given one whole line, reads it exactly as its transport
    // does (a copy: the line shares the read buffer). Only lines that are no
    // success response come here: notifications, errors, requests.
    let mut whole = BytesMut::from(&line[..]);
    match JsonRpcMessageCodec::<ServerJsonRpcMessage>::default().decode(&mut whole) {
        Ok(Some(m)) => Some(Line::Message(Box::new(m))),
        Ok(None) => None,
        Err(JsonRpcMessageCodecError::Serde(e)) if e.is_data() => {
            tracing::debug!("a server sent JSON that is no MCP message: {e}");
            Some(Line::Invalid)
        }
        Err(e) => {
            tracing::debug!("a server sent a line that is not JSON: {e}");
            None
        }
    }
}

#[cfg(test)]
mod tests;
