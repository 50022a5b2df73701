//! Redacting async byte streams: a reader and a writer over a [`SecretRedactStream`].

use std::fmt;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use zeroize::{Zeroize, Zeroizing};

use super::{Findings, RedactStream, SecretRedactStream, SecretRedactor};

/// The default size, in bytes, of a [`RedactReader`]'s reads from the inner reader.
pub const DEFAULT_READ_CHUNK: usize = 8 * 1024;

/// Wraps an [`AsyncRead`] so that everything read through it is redacted.
///
/// Bytes are read from the inner reader in chunks of up to the chunk size (default
/// [`DEFAULT_READ_CHUNK`]) and fed to a streaming session; only the tail that could still
/// begin a secret is held back, and at the inner reader's end of file that tail is passed
/// through the redactor (never verbatim) before this reader reports end of file. Works on
/// bytes: invalid UTF-8 and multi-byte characters split across reads pass through unchanged.
/// The raw read buffer is zeroized after each read and on drop. `Debug` shows no bytes.
pub struct RedactReader<R> {
    inner: R,
    session: SecretRedactStream,
    raw: Zeroizing<Vec<u8>>,
    /// Redacted output not yet handed to the caller, from `pos`.
    ready: Vec<u8>,
    pos: usize,
    eof: bool,
}

impl<R> fmt::Debug for RedactReader<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedactReader")
            .field("session", &self.session)
            .field("ready_bytes", &(self.ready.len() - self.pos))
            .field("eof", &self.eof)
            .finish_non_exhaustive()
    }
}

impl<R: AsyncRead + Unpin> RedactReader<R> {
    /// Redacts what `inner` yields with `redactor`, reading [`DEFAULT_READ_CHUNK`] bytes at a
    /// time.
    pub fn new(redactor: &SecretRedactor, inner: R) -> Self {
        Self::with_chunk_size(redactor, inner, DEFAULT_READ_CHUNK)
    }

    /// As [`RedactReader::new`], reading up to `chunk` bytes (at least 1) at a time.
    pub fn with_chunk_size(redactor: &SecretRedactor, inner: R, chunk: usize) -> Self {
        Self {
            inner,
            session: redactor.stream_session(),
            raw: Zeroizing::new(vec![0; chunk.max(1)]),
            ready: Vec::new(),
            pos: 0,
            eof: false,
        }
    }

    /// What the session has found so far (replacements, case-folded-only runs, canaries).
    pub fn findings(&self) -> Findings {
        self.session.findings()
    }

    /// The inner reader.
    pub fn get_ref(&self) -> &R {
        &self.inner
    }
}

impl<R: AsyncRead + Unpin> AsyncRead for RedactReader<R> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            if this.pos < this.ready.len() {
                let n = buf.remaining().min(this.ready.len() - this.pos);
                buf.put_slice(&this.ready[this.pos..this.pos + n]);
                this.pos += n;
                if this.pos == this.ready.len() {
                    this.ready.clear();
                    this.pos = 0;
                }
                return Poll::Ready(Ok(()));
            }
            if this.eof || buf.remaining() == 0 {
                return Poll::Ready(Ok(()));
            }
            let mut read = ReadBuf::new(&mut this.raw[..]);
            ready!(Pin::new(&mut this.inner).poll_read(cx, &mut read))?;
            let n = read.filled().len();
            if n == 0 {
                this.session.finish(&mut this.ready);
                this.eof = true;
            } else {
                this.session.push(&this.raw[..n], &mut this.ready);
                this.raw[..n].zeroize();
            }
        }
    }
}

/// Wraps an [`AsyncWrite`] so that everything written through it is redacted.
///
/// Each write is accepted whole and fed to a streaming session; the redacted bytes it
/// releases go to the inner writer. Only the tail that could still begin a secret is held
/// back: `flush` writes out everything released but not that tail (it may be half a secret);
/// `shutdown` passes the tail through the redactor, writes it, then shuts the inner writer
/// down. Writing after `shutdown` fails with [`io::ErrorKind::BrokenPipe`]. Dropping the
/// writer without `shutdown` discards the held tail (never writes it verbatim).
pub struct RedactWriter<W> {
    inner: W,
    session: SecretRedactStream,
    /// Redacted output not yet accepted by the inner writer, from `pos`.
    pending: Vec<u8>,
    pos: usize,
    finished: bool,
}

impl<W> fmt::Debug for RedactWriter<W> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedactWriter")
            .field("session", &self.session)
            .field("pending_bytes", &(self.pending.len() - self.pos))
            .field("finished", &self.finished)
            .finish_non_exhaustive()
    }
}

impl<W: AsyncWrite + Unpin> RedactWriter<W> {
    /// Redacts what is written with `redactor` before it reaches `inner`.
    pub fn new(redactor: &SecretRedactor, inner: W) -> Self {
        Self {
            inner,
            session: redactor.stream_session(),
            pending: Vec::new(),
            pos: 0,
            finished: false,
        }
    }

    /// What the session has found so far (replacements, case-folded-only runs, canaries).
    pub fn findings(&self) -> Findings {
        self.session.findings()
    }

    /// The inner writer.
    pub fn get_ref(&self) -> &W {
        &self.inner
    }

    /// The inner writer, consuming this one (any held tail is discarded, not written).
    pub fn into_inner(self) -> W {
        self.inner
    }

    /// Writes pending output to the inner writer until it is all accepted or the writer
    /// is not ready.
    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.pos < self.pending.len() {
            let n = ready!(Pin::new(&mut self.inner).poll_write(cx, &self.pending[self.pos..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.pos += n;
        }
        self.pending.clear();
        self.pos = 0;
        Poll::Ready(Ok(()))
    }
}

impl<W: AsyncWrite + Unpin> AsyncWrite for RedactWriter<W> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.finished {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::BrokenPipe,
                "write after shutdown of a redacting writer",
            )));
        }
        // Bound memory: earlier output goes out before more input is taken.
        ready!(this.poll_drain(cx))?;
        this.session.push(data, &mut this.pending);
        // Best effort now; what the inner writer refuses waits for the next call.
        if let Poll::Ready(Err(e)) = this.poll_drain(cx) {
            return Poll::Ready(Err(e));
        }
        Poll::Ready(Ok(data.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_drain(cx))?;
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if !this.finished {
            ready!(this.poll_drain(cx))?;
            this.session.finish(&mut this.pending);
            this.finished = true;
        }
        ready!(this.poll_drain(cx))?;
        Pin::new(&mut this.inner).poll_shutdown(cx)
    }
}
