//! A read budget for the time before a peer is authenticated.
//!
//! The WebSocket layer's message limit is `max_message_size` (for
//! sessions), but before the handshake no valid message is larger than
//! message 1. [`Budgeted`] lets a stream deliver at most a fixed number of
//! bytes until [`ReadBudget::lift`] is called; past it, reads fail and the
//! connection ends. So a stranger can make the server hold no more than
//! that budget, whatever it sends (a huge message, or a stream of pings).
//! It also counts the bytes each way, for the metrics.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::metrics::Metrics;

/// The bytes a [`Budgeted`] stream may still deliver; `usize::MAX` once lifted.
#[derive(Clone)]
pub(crate) struct ReadBudget(Arc<AtomicUsize>);

impl ReadBudget {
    pub(crate) fn new(bytes: usize) -> ReadBudget {
        ReadBudget(Arc::new(AtomicUsize::new(bytes)))
    }

    /// Removes the budget (the peer is authenticated).
    pub(crate) fn lift(&self) {
        self.0.store(usize::MAX, Ordering::Relaxed);
    }
}

/// A stream whose reads are limited by a [`ReadBudget`].
pub(crate) struct Budgeted<S> {
    inner: S,
    budget: ReadBudget,
    metrics: Metrics,
}

impl<S> Budgeted<S> {
    pub(crate) fn new(inner: S, budget: ReadBudget) -> Budgeted<S> {
        Budgeted {
            inner,
            budget,
            metrics: Metrics::default(),
        }
    }

    /// Counts the bytes read and written in `metrics`.
    pub(crate) fn counted(self, metrics: Metrics) -> Budgeted<S> {
        Budgeted { metrics, ..self }
    }
}

/// Bytes read at a time while the budget is in force (small: only
/// handshakes are read this way).
const CHUNK: usize = 1024;

impl<S: AsyncRead + Unpin> AsyncRead for Budgeted<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let left = self.budget.0.load(Ordering::Relaxed);
        if left == usize::MAX {
            let before = buf.filled().len();
            let read = Pin::new(&mut self.inner).poll_read(cx, buf);
            self.metrics.received(buf.filled().len() - before);
            return read;
        }
        if left == 0 {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "more data than a handshake before authentication",
            )));
        }
        let mut chunk = [0u8; CHUNK];
        let n = left.min(CHUNK).min(buf.remaining());
        let mut small = ReadBuf::new(&mut chunk[..n]);
        match Pin::new(&mut self.inner).poll_read(cx, &mut small) {
            Poll::Ready(Ok(())) => {
                let got = small.filled();
                buf.put_slice(got);
                self.metrics.received(got.len());
                // Lifted meanwhile: MAX stays MAX; else count down.
                let _ = self
                    .budget
                    .0
                    .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |b| {
                        (b != usize::MAX).then(|| b.saturating_sub(got.len()))
                    });
                Poll::Ready(Ok(()))
            }
            other => other,
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Budgeted<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let written = Pin::new(&mut self.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = written {
            self.metrics.sent(n);
        }
        written
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let written = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if let Poll::Ready(Ok(n)) = written {
            self.metrics.sent(n);
        }
        written
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt as _;

    #[tokio::test]
    async fn reads_stop_at_the_budget_until_lifted() {
        let data = vec![7u8; 5000];
        let budget = ReadBudget::new(1500);
        let mut s = Budgeted::new(&data[..], budget.clone());
        let mut buf = vec![0u8; 4096];
        let mut total = 0;
        let err = loop {
            match s.read(&mut buf).await {
                Ok(n) => total += n,
                Err(e) => break e,
            }
        };
        assert_eq!(total, 1500);
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        budget.lift();
        let mut rest = Vec::new();
        s.read_to_end(&mut rest).await.expect("lifted");
        assert_eq!(total + rest.len(), 5000);
    }
}
