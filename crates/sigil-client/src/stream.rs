//! A stream of items from the server, as a [`futures_util::Stream`].

use std::fmt;
use std::marker::PhantomData;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures_util::Stream;
use serde::de::DeserializeOwned;
use tokio::sync::mpsc;

use crate::connection::{Control, Piece};
use crate::error::ClientError;

/// The items of a stream call ([`Client::stream`](crate::Client::stream)),
/// deserialized as `T`. It ends after the server completes the stream, or
/// after one error item. Taking an item lets the server send another (the
/// window moves on); dropping the stream before its end cancels it.
#[must_use = "a stream is cancelled when dropped"]
pub struct ItemStream<T> {
    pieces: mpsc::UnboundedReceiver<Piece>,
    controls: mpsc::UnboundedSender<Control>,
    token: u64,
    /// `object.method`, for errors.
    label: String,
    ended: bool,
    item: PhantomData<fn() -> T>,
}

impl<T> ItemStream<T> {
    pub(crate) fn new(
        pieces: mpsc::UnboundedReceiver<Piece>,
        controls: mpsc::UnboundedSender<Control>,
        token: u64,
        label: String,
    ) -> ItemStream<T> {
        ItemStream {
            pieces,
            controls,
            token,
            label,
            ended: false,
            item: PhantomData,
        }
    }
}

impl<T: DeserializeOwned> ItemStream<T> {
    /// The next item; `None` once the stream has ended (after its last
    /// item, or after an error). The same as `StreamExt::next`, without
    /// the import.
    pub async fn next(&mut self) -> Option<Result<T, ClientError>> {
        std::future::poll_fn(|cx| Pin::new(&mut *self).poll_next(cx)).await
    }
}

impl<T: DeserializeOwned> Stream for ItemStream<T> {
    type Item = Result<T, ClientError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.ended {
            return Poll::Ready(None);
        }
        let piece = match self.pieces.poll_recv(cx) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(piece) => piece,
        };
        Poll::Ready(match piece {
            Some(Piece::Item(value)) => {
                let token = self.token;
                let _ = self.controls.send(Control::Consumed { token, n: 1 });
                Some(serde_json::from_str(value.get()).map_err(|e| {
                    ClientError::InvalidResult(format!(
                        "an item of stream {} does not fit the expected type: {e}",
                        self.label
                    ))
                }))
            }
            Some(Piece::End(outcome)) => {
                self.ended = true;
                outcome.err().map(Err)
            }
            None => {
                self.ended = true;
                Some(Err(ClientError::closed()))
            }
        })
    }
}

impl<T> Drop for ItemStream<T> {
    fn drop(&mut self) {
        if !self.ended {
            let token = self.token;
            // Fails only when the connection is gone, and the stream with it.
            let _ = self.controls.send(Control::Cancel { token });
        }
    }
}

impl<T> fmt::Debug for ItemStream<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ItemStream")
            .field("stream", &self.label)
            .field("ended", &self.ended)
            .finish_non_exhaustive()
    }
}
