//! One server's stderr as lines, kept in memory and bounded: at most
//! [`MAX_LINES`] lines and [`MAX_BYTES`] bytes (the oldest go first), each
//! line at most [`MAX_LINE_BYTES`] (longer ones are cut and marked).
//! Readers ask for the lines after the last one they saw, and a follower
//! waits on [`LogBuffer::subscribe`] for more.
use std::collections::VecDeque;
use std::sync::Mutex;

use serde::Serialize;
use tokio::sync::watch;

use crate::catalog::Secret;

/// Lines kept per server.
pub const MAX_LINES: usize = 1000;
/// Bytes kept per server (line text and its metadata).
pub const MAX_BYTES: usize = 256 * 1024;
/// Longer lines are cut to this many bytes and marked with [`CUT`].
pub const MAX_LINE_BYTES: usize = 4096;
/// Appended to a line that was cut.
pub const CUT: &str = " …[line cut]";
/// Stands in for a secret value a server wrote to stderr.
pub const REDACTED: &str = "<redacted>";
/// Shorter values are not taken for secrets (hiding every "1" or "true"
/// would make the log unreadable).
pub const MIN_SECRET: usize = 8;

/// `line` with every one of `secrets` (of at least [`MIN_SECRET`] bytes)
/// replaced by [`REDACTED`].
pub fn redact(mut line: String, secrets: &[Secret]) -> String {
    for s in secrets.iter().map(Secret::expose) {
        if s.len() >= MIN_SECRET && line.contains(s) {
            line = line.replace(s, REDACTED);
        }
    }
    line
}

/// One line a container wrote to stderr.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Line {
    /// Numbers every line of the server, from 1; a gap means lines were dropped.
    pub seq: u64,
    /// When it was read (RFC 3339, UTC).
    pub time: String,
    /// The short id of the container that wrote it.
    pub container: String,
    /// Which capture read it: each container start is a new one.
    #[serde(skip)]
    pub run: u64,
    pub text: String,
}

impl Line {
    fn size(&self) -> usize {
        self.text.len() + self.time.len() + self.container.len() + 16
    }
}

/// What [`LogBuffer::after`] found.
#[derive(Debug, Default)]
pub struct Chunk {
    pub lines: Vec<Line>,
    /// Lines the reader wanted that had already fallen out of the buffer.
    pub dropped: u64,
    /// The buffer is closed (its server left the fleet): nothing more comes.
    pub closed: bool,
    /// The seq of the newest line pushed so far (0: none), to read after next.
    pub last: u64,
}

#[derive(Default)]
struct Inner {
    lines: VecDeque<Line>,
    bytes: usize,
    /// The seq of the last line pushed (0: none yet).
    last: u64,
    closed: bool,
}

pub struct LogBuffer {
    inner: Mutex<Inner>,
    /// The seq of the last line pushed, for followers.
    pushed: watch::Sender<u64>,
}

impl Default for LogBuffer {
    fn default() -> Self {
        LogBuffer {
            inner: Mutex::default(),
            pushed: watch::Sender::new(0),
        }
    }
}

impl LogBuffer {
    /// Appends a line, dropping the oldest ones beyond the bounds.
    pub fn push(&self, container: &str, run: u64, text: String) {
        let mut b = self.inner.lock().expect("log lock");
        b.last += 1;
        let line = Line {
            seq: b.last,
            time: now(),
            container: container.to_string(),
            run,
            text,
        };
        b.bytes += line.size();
        b.lines.push_back(line);
        while b.lines.len() > MAX_LINES || b.bytes > MAX_BYTES {
            let Some(old) = b.lines.pop_front() else {
                break;
            };
            b.bytes -= old.size();
        }
        let last = b.last;
        drop(b);
        self.pushed.send_replace(last);
    }

    /// The lines after seq `after` (all with `None`), only the last `tail`
    /// of them if given.
    pub fn after(&self, after: Option<u64>, tail: Option<usize>) -> Chunk {
        let b = self.inner.lock().expect("log lock");
        let after = after.unwrap_or(0);
        let first = b.lines.front().map_or(b.last + 1, |l| l.seq);
        let mut lines: Vec<Line> = b.lines.iter().filter(|l| l.seq > after).cloned().collect();
        if let Some(n) = tail {
            lines.drain(..lines.len().saturating_sub(n));
        }
        Chunk {
            lines,
            dropped: first.saturating_sub(after + 1),
            closed: b.closed,
            last: b.last,
        }
    }

    /// The last `n` non-blank lines that capture `run` read, oldest first.
    pub fn last_of_run(&self, run: u64, n: usize) -> Vec<String> {
        let b = self.inner.lock().expect("log lock");
        let mut last: Vec<String> = b
            .lines
            .iter()
            .rev()
            .filter(|l| l.run == run && !l.text.trim().is_empty())
            .take(n)
            .map(|l| l.text.clone())
            .collect();
        last.reverse();
        last
    }

    /// Wakes on every push (and on close).
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.pushed.subscribe()
    }

    /// No more lines will come: followers end once they have read the rest.
    pub fn close(&self) {
        self.inner.lock().expect("log lock").closed = true;
        self.pushed.send_modify(|_| {});
    }
}

fn now() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// Cuts a byte stream into lines (at `\n`, a trailing `\r` dropped), each at
/// most [`MAX_LINE_BYTES`]: the rest of a longer line is skipped, so a
/// server that never writes a newline cannot grow it.
#[derive(Default)]
pub struct LineSplitter {
    partial: Vec<u8>,
    /// Skipping the rest of a line that was cut.
    cut: bool,
}

impl LineSplitter {
    /// Feeds `bytes`; `out` gets each complete line.
    pub fn push(&mut self, mut bytes: &[u8], mut out: impl FnMut(String)) {
        while !bytes.is_empty() {
            let end = bytes.iter().position(|&b| b == b'\n');
            let segment = &bytes[..end.unwrap_or(bytes.len())];
            bytes = end.map_or(&[][..], |i| &bytes[i + 1..]);
            if !self.cut {
                let room = MAX_LINE_BYTES - self.partial.len();
                if segment.len() > room {
                    self.partial.extend_from_slice(&segment[..room]);
                    out(self.take(true));
                    self.cut = true;
                } else {
                    self.partial.extend_from_slice(segment);
                }
            }
            if end.is_some() {
                if !self.cut {
                    out(self.take(false));
                }
                self.cut = false;
            }
        }
    }

    /// The stream ended: a last line without a newline still counts.
    pub fn finish(&mut self, mut out: impl FnMut(String)) {
        if !self.partial.is_empty() && !self.cut {
            out(self.take(false));
        }
    }

    fn take(&mut self, cut: bool) -> String {
        let mut bytes = std::mem::take(&mut self.partial);
        if bytes.last() == Some(&b'\r') {
            bytes.pop();
        }
        let mut line = String::from_utf8_lossy(&bytes).into_owned();
        if cut {
            line.push_str(CUT);
        }
        line
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(chunks: &[&[u8]]) -> Vec<String> {
        let mut s = LineSplitter::default();
        let mut out = vec![];
        for c in chunks {
            s.push(c, |l| out.push(l));
        }
        s.finish(|l| out.push(l));
        out
    }

    #[test]
    fn secrets_are_redacted_short_values_are_not() {
        let secrets = [Secret::new("sk-live-0123456789"), Secret::new("true")];
        assert_eq!(
            redact("key sk-live-0123456789 is true".into(), &secrets),
            "key <redacted> is true"
        );
    }

    #[test]
    fn lines_split_across_chunks_and_crlf() {
        assert_eq!(
            split(&[b"one\r\ntw", b"o\n\nthr", b"ee"]),
            ["one", "two", "", "three"]
        );
    }

    #[test]
    fn a_long_line_is_cut_and_its_rest_skipped() {
        let long = vec![b'x'; MAX_LINE_BYTES + 10];
        let out = split(&[&long, b"yyy\nnext\n"]);
        assert_eq!(out.len(), 2);
        assert_eq!(out[0], format!("{}{CUT}", "x".repeat(MAX_LINE_BYTES)));
        assert_eq!(out[1], "next");
        // Exactly the limit is not cut.
        let exact = vec![b'z'; MAX_LINE_BYTES];
        assert_eq!(split(&[&exact, b"\n"]), [String::from_utf8(exact).unwrap()]);
    }

    #[test]
    fn the_buffer_keeps_the_newest_lines_within_both_bounds() {
        let b = LogBuffer::default();
        for i in 0..MAX_LINES + 5 {
            b.push("c", 1, format!("line {i}"));
        }
        let all = b.after(None, None);
        assert_eq!(all.lines.len(), MAX_LINES);
        assert_eq!(all.dropped, 5);
        assert_eq!(all.lines[0].text, "line 5");

        let b = LogBuffer::default();
        let big = "b".repeat(MAX_LINE_BYTES);
        for _ in 0..200 {
            b.push("c", 1, big.clone());
        }
        let kept = b.after(None, None).lines;
        assert!(
            kept.len() < MAX_BYTES / MAX_LINE_BYTES + 1,
            "{}",
            kept.len()
        );
        assert_eq!(kept.last().unwrap().seq, 200);
    }

    #[test]
    fn readers_get_what_came_after_and_the_tail() {
        let b = LogBuffer::default();
        for t in ["a", "b", "c", "d"] {
            b.push("c", 1, t.into());
        }
        let texts = |c: Chunk| c.lines.into_iter().map(|l| l.text).collect::<Vec<_>>();
        assert_eq!(texts(b.after(Some(2), None)), ["c", "d"]);
        assert_eq!(texts(b.after(None, Some(3))), ["b", "c", "d"]);
        assert_eq!(texts(b.after(Some(4), None)), Vec::<String>::new());
    }

    #[test]
    fn the_last_lines_of_one_run() {
        let b = LogBuffer::default();
        b.push("c", 1, "old run".into());
        for t in ["x", "y", "z", " ", "w"] {
            b.push("c", 2, t.into());
        }
        b.push("d", 3, "other".into());
        assert_eq!(b.last_of_run(2, 3), ["y", "z", "w"]);
        assert_eq!(b.last_of_run(4, 3), Vec::<String>::new());
    }

    #[tokio::test]
    async fn followers_wake_on_push_and_on_close() {
        let b = LogBuffer::default();
        let mut rx = b.subscribe();
        b.push("c", 1, "a".into());
        rx.changed().await.unwrap();
        assert_eq!(*rx.borrow_and_update(), 1);
        b.close();
        rx.changed().await.unwrap();
        assert!(b.after(Some(1), None).closed);
    }
}
