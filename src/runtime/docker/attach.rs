//! A container's stdin and stdout over a local engine socket, read and
//! written without bollard's attach stream.
//!
//! Every answer of a stdio server comes this way, so this is on the critical
//! path of every relayed call. bollard's attach zeroes its whole read buffer
//! (8 KiB) before every read, and its frames then go through two more stream
//! layers before the bytes reach the line reader: about 9K instructions per
//! call, and a cache's worth of memory written, on a path that otherwise
//! holds a call for about 110 µs (BENCHMARKS.md, "Relay, eighth pass"). Here
//! the engine's upgraded connection is a plain `UnixStream`: written as it
//! is, and read into a buffer that is never zeroed, its frame headers taken
//! out as it goes.
//!
//! Used where `DOCKER_HOST` is a unix socket (or unset); other engines
//! (TCP, TLS, SSH) keep bollard's attach.
use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt, ReadBuf};
use tokio::net::UnixStream;
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};

/// How long connecting and the engine's upgrade may take.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest response head the engine may send before the stream.
const MAX_HEAD: usize = 16 * 1024;
/// What a read asks the kernel for at least.
const READ_CHUNK: usize = 8 * 1024;
/// Stream number of stdout in the engine's frame headers.
const STDOUT: u8 = 1;

/// The engine's unix socket, if `docker_host` (the `DOCKER_HOST` value, if
/// set) names one; `None` for any other kind of engine address.
pub fn local_socket(docker_host: Option<&str>) -> Option<PathBuf> {
    match docker_host {
        None => Some(PathBuf::from("/var/run/docker.sock")),
        Some(host) => host.strip_prefix("unix://").map(PathBuf::from),
    }
}

/// Attaches to container `id`'s stdin and stdout (API version `api`, such as
/// `1.47`): its stdout's bytes, and a writer to its stdin.
pub async fn stdio(
    socket: &Path,
    api: &str,
    id: &str,
) -> io::Result<(Demux<OwnedReadHalf>, OwnedWriteHalf)> {
    tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake(socket, api, id))
        .await
        .map_err(|_| {
            io::Error::new(
                io::ErrorKind::TimedOut,
                format!("the engine did not upgrade the attach within {HANDSHAKE_TIMEOUT:?}"),
            )
        })?
}

async fn handshake(
    socket: &Path,
    api: &str,
    id: &str,
) -> io::Result<(Demux<OwnedReadHalf>, OwnedWriteHalf)> {
    let mut stream = UnixStream::connect(socket).await?;
    let request = format!(
        "POST /v{api}/containers/{id}/attach?stream=1&stdin=1&stdout=1 HTTP/1.1\r\n\
         Host: docker\r\nUpgrade: tcp\r\nConnection: Upgrade\r\nContent-Length: 0\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await?;
    let mut buf = BytesMut::with_capacity(READ_CHUNK);
    let head = loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break buf.split_to(end + 4);
        }
        if buf.len() > MAX_HEAD {
            return Err(io::Error::other(
                "the engine's attach response head is too long",
            ));
        }
        if stream.read_buf(&mut buf).await? == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the engine closed the attach before answering",
            ));
        }
    };
    // 101 where the engine takes the upgrade; 200 from engines that hijack
    // the connection without one. Anything else is a refusal (404: no such
    // container), whose body says why.
    let status = head[..].split(|&b| b == b' ').nth(1).unwrap_or_default();
    if status != b"101" && status != b"200" {
        let line = head[..].split(|&b| b == b'\r').next().unwrap_or_default();
        let body = String::from_utf8_lossy(&buf[..buf.len().min(512)]);
        return Err(io::Error::other(format!(
            "the engine refused the attach: {} {}",
            String::from_utf8_lossy(line),
            body.trim()
        )));
    }
    let (read, write) = stream.into_split();
    Ok((Demux::new(read, buf), write))
}

/// The bytes of one stream (stdout) of the engine's multiplexed attach
/// stream: frames of an 8-byte header (stream number, three zero bytes, the
/// payload's length as a big-endian u32) and a payload.
pub struct Demux<R> {
    io: R,
    buf: BytesMut,
    /// Payload bytes of the current frame not yet taken from `buf`.
    left: usize,
    /// Whether the current frame is stdout's.
    keep: bool,
}

impl<R> Demux<R> {
    /// Reads from `io`, after `buf` (what came with the response head).
    pub fn new(io: R, buf: BytesMut) -> Self {
        Demux {
            io,
            buf,
            left: 0,
            keep: false,
        }
    }
}

impl<R: AsyncRead + Unpin> AsyncRead for Demux<R> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        out: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if out.remaining() == 0 {
            return Poll::Ready(Ok(()));
        }
        loop {
            if this.left > 0 && !this.buf.is_empty() {
                let n = this.left.min(this.buf.len()).min(out.remaining());
                if this.keep {
                    out.put_slice(&this.buf[..n]);
                }
                this.buf.advance(n);
                this.left -= n;
                if this.keep {
                    return Poll::Ready(Ok(()));
                }
                continue;
            }
            if this.left == 0 && this.buf.len() >= 8 {
                let header = this.buf.split_to(8);
                this.keep = header[0] == STDOUT;
                this.left =
                    u32::from_be_bytes([header[4], header[5], header[6], header[7]]) as usize;
                continue;
            }
            this.buf.reserve(READ_CHUNK);
            let n = ready!(tokio_util::io::poll_read_buf(
                Pin::new(&mut this.io),
                cx,
                &mut this.buf
            ))?;
            if n == 0 {
                if this.left > 0 || !this.buf.is_empty() {
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "the attach stream ended inside a frame",
                    )));
                }
                return Poll::Ready(Ok(()));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    fn frame(stream: u8, payload: &[u8]) -> Vec<u8> {
        let mut f = vec![stream, 0, 0, 0];
        f.extend_from_slice(&(payload.len() as u32).to_be_bytes());
        f.extend_from_slice(payload);
        f
    }

    /// Gives its chunks one read at a time.
    struct Reads(std::collections::VecDeque<Vec<u8>>);

    impl AsyncRead for Reads {
        fn poll_read(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
            out: &mut ReadBuf<'_>,
        ) -> Poll<io::Result<()>> {
            if let Some(c) = self.get_mut().0.pop_front() {
                out.put_slice(&c);
            }
            Poll::Ready(Ok(()))
        }
    }

    /// The bytes of `wire`, delivered in reads of `chunk` bytes.
    async fn demux(wire: Vec<u8>, chunk: usize, first: &[u8]) -> io::Result<Vec<u8>> {
        let reads = Reads(wire.chunks(chunk).map(<[u8]>::to_vec).collect());
        let mut d = Demux::new(reads, BytesMut::from(first));
        let mut got = vec![];
        d.read_to_end(&mut got).await?;
        Ok(got)
    }

    #[tokio::test]
    async fn stdout_frames_come_out_whole_whatever_the_reads() {
        let mut wire = frame(1, b"{\"id\":1}\n{\"id\"");
        wire.extend(frame(2, b"a line of stderr\n"));
        wire.extend(frame(1, b""));
        wire.extend(frame(1, b":2}\n"));
        for chunk in [1, 3, 8, 9, 1000] {
            let got = demux(wire.clone(), chunk, b"").await.unwrap();
            assert_eq!(got, b"{\"id\":1}\n{\"id\":2}\n", "reads of {chunk}");
        }
        // What came with the response head is read first.
        let got = demux(wire[5..].to_vec(), 4, &wire[..5]).await.unwrap();
        assert_eq!(got, b"{\"id\":1}\n{\"id\":2}\n");
    }

    #[tokio::test]
    async fn a_stream_that_ends_inside_a_frame_is_an_error() {
        let wire = frame(1, b"cut short");
        for end in [3, 12] {
            let e = demux(wire[..end].to_vec(), 4, b"").await.unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof, "ends at {end}");
        }
    }

    #[test]
    fn only_a_unix_socket_is_local() {
        assert_eq!(
            local_socket(None),
            Some(PathBuf::from("/var/run/docker.sock"))
        );
        assert_eq!(
            local_socket(Some("unix:///tmp/d.sock")),
            Some(PathBuf::from("/tmp/d.sock"))
        );
        assert_eq!(local_socket(Some("tcp://10.0.0.1:2376")), None);
    }
}
