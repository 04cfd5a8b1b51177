//! A set of streams an agent polls together (its watches, its durable consumer, its core
//! subscriptions, its publishes).
//!
//! Two ways, for scripts/bench-levers.sh (`FLEETSIM_POLLING`): `select_all` (the
//! default) is futures' `SelectAll`, which gives every stream its own waker and polls only
//! the ones woken; `fixed` keeps the handful of streams an agent has in a `Vec` and polls
//! each of them whenever the agent's task wakes, with no per-stream waker or allocation.

use std::pin::Pin;
use std::sync::OnceLock;
use std::task::{Context, Poll};

use futures::Stream;
use futures::StreamExt;
use futures::stream::SelectAll;

/// Whether `FLEETSIM_POLLING=fixed`, read once.
fn fixed() -> bool {
    static FIXED: OnceLock<bool> = OnceLock::new();
    *FIXED.get_or_init(|| std::env::var("FLEETSIM_POLLING").is_ok_and(|v| v == "fixed"))
}

pub(super) enum Streams<S> {
    Select(SelectAll<S>),
    Fixed {
        streams: Vec<S>,
        /// Where the next poll starts: the one after the last that yielded, so a busy
        /// stream does not starve the others.
        next: usize,
    },
}

impl<S: Stream + Unpin> Streams<S> {
    pub(super) fn new() -> Self {
        if fixed() {
            Streams::Fixed {
                streams: Vec::new(),
                next: 0,
            }
        } else {
            Streams::Select(SelectAll::new())
        }
    }

    pub(super) fn push(&mut self, stream: S) {
        match self {
            Streams::Select(all) => all.push(stream),
            Streams::Fixed { streams, .. } => streams.push(stream),
        }
    }

    pub(super) fn is_empty(&self) -> bool {
        match self {
            Streams::Select(all) => all.is_empty(),
            Streams::Fixed { streams, .. } => streams.is_empty(),
        }
    }
}

impl<S: Stream + Unpin> FromIterator<S> for Streams<S> {
    fn from_iter<I: IntoIterator<Item = S>>(iter: I) -> Self {
        let mut streams = Streams::new();
        for s in iter {
            streams.push(s);
        }
        streams
    }
}

impl<S: Stream + Unpin> Stream for Streams<S> {
    type Item = S::Item;

    /// The next item of any stream; `None` once every stream has ended (at once if
    /// there are none, as `SelectAll` does).
    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<S::Item>> {
        match self.get_mut() {
            Streams::Select(all) => all.poll_next_unpin(cx),
            Streams::Fixed { streams, next } => {
                let n = streams.len();
                let mut ended: Vec<usize> = Vec::new();
                let mut item = None;
                // Every stream is polled until one yields: each one not polled keeps a
                // wake-up it may already have used.
                for k in 0..n {
                    let at = (*next + k) % n;
                    match streams[at].poll_next_unpin(cx) {
                        Poll::Ready(Some(x)) => {
                            *next = at + 1;
                            item = Some(x);
                            break;
                        }
                        Poll::Ready(None) => ended.push(at),
                        Poll::Pending => {}
                    }
                }
                // Highest first: each swap_remove then moves a stream that stays.
                ended.sort_unstable_by(|a, b| b.cmp(a));
                for at in ended {
                    drop(streams.swap_remove(at));
                }
                match item {
                    Some(x) => Poll::Ready(Some(x)),
                    None if streams.is_empty() => Poll::Ready(None),
                    None => Poll::Pending,
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Streams;
    use futures::StreamExt;
    use futures::stream::{self, BoxStream};

    fn fixed(parts: Vec<BoxStream<'static, u32>>) -> Streams<BoxStream<'static, u32>> {
        Streams::Fixed {
            streams: parts,
            next: 0,
        }
    }

    #[tokio::test]
    async fn fixed_polling_yields_every_item_of_every_stream_then_ends() {
        let mut all = fixed(vec![
            stream::iter([1, 2, 3]).boxed(),
            stream::empty().boxed(),
            stream::iter([10, 20]).boxed(),
        ]);
        let mut got = Vec::new();
        while let Some(x) = all.next().await {
            got.push(x);
        }
        got.sort_unstable();
        assert_eq!(got, vec![1, 2, 3, 10, 20]);
        assert!(all.is_empty());
    }

    #[tokio::test]
    async fn fixed_polling_takes_turns() {
        let mut all = fixed(vec![
            stream::iter([1, 1, 1]).boxed(),
            stream::iter([2, 2, 2]).boxed(),
        ]);
        let first: Vec<u32> = (&mut all).take(4).collect().await;
        assert_eq!(first, vec![1, 2, 1, 2]);
    }

    #[tokio::test]
    async fn fixed_polling_stays_pending_while_a_stream_is() {
        let mut all = fixed(vec![stream::pending().boxed(), stream::iter([7]).boxed()]);
        assert_eq!(all.next().await, Some(7));
        let polled = futures::poll!(all.next());
        assert!(polled.is_pending(), "the pending stream keeps it open");
        assert!(!all.is_empty());
    }
}
