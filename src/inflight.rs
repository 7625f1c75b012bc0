//! Back-pressure on one connection's requests: the next frame is read from the socket only
//! while fewer than `max_in_flight_requests` of that connection's requests are being worked
//! on. Each frame comes with a [`Permit`] that the session holds until it has answered; at the
//! limit, the stream stops polling the socket, TCP flow control slows the client, and nothing
//! is refused or buffered on our side.

use futures_util::Stream;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// One request's share of the connection's in-flight budget; dropping it frees the share.
pub type Permit = OwnedSemaphorePermit;

type Acquire = Pin<Box<dyn Future<Output = Permit>>>;

/// A stream of frames, each with its permit.
pub struct Gated<S> {
    inner: S,
    permits: Arc<Semaphore>,
    /// Waiting for a permit to free up.
    acquiring: Option<Acquire>,
    /// A permit taken but not yet handed out with a frame.
    held: Option<Permit>,
}

impl<S> Gated<S> {
    /// Gates `inner` at `max` requests in flight (at least one).
    pub fn new(inner: S, max: usize) -> Self {
        Gated {
            inner,
            permits: Arc::new(Semaphore::new(max.max(1))),
            acquiring: None,
            held: None,
        }
    }
}

impl<S: Stream + Unpin> Stream for Gated<S> {
    type Item = (S::Item, Permit);

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if this.held.is_none() && this.acquiring.is_none() {
            // The common case: a permit is free, no future to allocate.
            this.held = Arc::clone(&this.permits).try_acquire_owned().ok();
        }
        if this.held.is_none() {
            let permits = &this.permits;
            let acquiring = this.acquiring.get_or_insert_with(|| {
                let permits = Arc::clone(permits);
                Box::pin(async move {
                    // The semaphore is never closed, so acquiring only waits.
                    permits
                        .acquire_owned()
                        .await
                        .expect("the in-flight semaphore is never closed")
                })
            });
            match acquiring.as_mut().poll(cx) {
                Poll::Ready(permit) => {
                    this.acquiring = None;
                    this.held = Some(permit);
                }
                Poll::Pending => return Poll::Pending,
            }
        }
        match Pin::new(&mut this.inner).poll_next(cx) {
            Poll::Ready(Some(item)) => match this.held.take() {
                Some(permit) => Poll::Ready(Some((item, permit))),
                None => unreachable!("a permit is held before the socket is read"),
            },
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::StreamExt;

    #[tokio::test]
    async fn the_next_item_waits_for_a_free_permit() {
        let mut gated = Gated::new(futures_util::stream::iter([1, 2, 3]), 2);
        let (one, first) = gated.next().await.unwrap();
        let (two, second) = gated.next().await.unwrap();
        assert_eq!((one, two), (1, 2));
        // Both permits are out: the third item is not read.
        assert!(futures_util::poll!(gated.next()).is_pending());
        drop(first);
        let (three, _third) = gated.next().await.unwrap();
        assert_eq!(three, 3);
        drop(second);
        assert!(gated.next().await.is_none());
    }
}
