//! Connection limits per port. Each listener holds a fixed number of connection permits; a
//! connection accepted beyond them is closed at once (load shedding at the door), so idle or
//! slow clients on one port can never take the descriptors the other port needs, nor the
//! process's memory. Together with the header-read and TLS-handshake timeouts set in
//! [`crate::server`], a connection that sends nothing useful is gone within seconds.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum_server::accept::Accept;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// An acceptor that admits at most `limit` connections at once.
#[derive(Debug, Clone)]
pub struct Limit {
    permits: Arc<Semaphore>,
    port: &'static str,
}

impl Limit {
    pub fn new(limit: usize, port: &'static str) -> Limit {
        Limit { permits: Arc::new(Semaphore::new(limit.max(1))), port }
    }
}

impl<I, S> Accept<I, S> for Limit
where
    I: Send + 'static,
    S: Send + 'static,
{
    type Stream = Counted<I>;
    type Service = S;
    type Future = Pin<Box<dyn Future<Output = io::Result<(Counted<I>, S)>> + Send>>;

    fn accept(&self, stream: I, service: S) -> Self::Future {
        let permit = self.permits.clone().try_acquire_owned();
        let port = self.port;
        Box::pin(async move {
            match permit {
                Ok(permit) => Ok((Counted { inner: stream, _permit: permit }, service)),
                Err(_) => {
                    tracing::warn!(port, "connection refused: the port is at its connection limit");
                    // Dropping the stream closes the connection.
                    Err(io::Error::other("connection limit reached"))
                }
            }
        })
    }
}

/// A stream that holds its connection permit until it is dropped.
#[derive(Debug)]
pub struct Counted<I> {
    inner: I,
    _permit: OwnedSemaphorePermit,
}

impl<I: AsyncRead + Unpin> AsyncRead for Counted<I> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for Counted<I> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
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
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}
