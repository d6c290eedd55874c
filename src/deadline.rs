//! Time limits on client I/O, written once: "0 means no limit" is decided
//! here and nowhere else, and the head deadline's lazily armed timer lives
//! here too.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::time::{Instant, Sleep};

use crate::clock;

/// A limit ran out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TimedOut;

/// Run `step` within `limit`; a zero limit means none.
pub(crate) async fn within<F: Future>(limit: Duration, step: F) -> Result<F::Output, TimedOut> {
    if limit.is_zero() {
        Ok(step.await)
    } else {
        tokio::time::timeout(limit, step)
            .await
            .map_err(|_| TimedOut)
    }
}

/// The coarse-clock millisecond `limit` from now; `None` for a zero limit.
pub(crate) fn after_ms(limit: Duration) -> Option<u64> {
    (!limit.is_zero())
        .then(|| clock::monotonic_ms() + u64::try_from(limit.as_millis()).unwrap_or(u64::MAX / 4))
}

/// A deadline's timer, armed once per connection and moved only when it
/// fires early, instead of a timer per request: the deadline moves forward
/// with every request, and re-arming (or even polling) a timer each time was
/// a visible cost in profiles. Between firings only its state is read. A
/// deadline earlier than the armed one (a keep-alive limit shorter than the
/// header timeout) moves the timer back.
#[derive(Default)]
pub(crate) struct LazyDeadline {
    timer: Option<Pin<Box<Sleep>>>,
    /// Polled since last armed, so it will wake the task when it fires.
    registered: bool,
    /// The coarse-clock millisecond the armed timer is due at.
    armed_ms: u64,
}

impl LazyDeadline {
    /// Ready once the coarse monotonic clock reaches `due_ms`.
    pub(crate) fn poll_passed(&mut self, due_ms: u64, cx: &mut Context<'_>) -> Poll<()> {
        if let Some(timer) = &self.timer {
            if self.registered && due_ms >= self.armed_ms && !timer.is_elapsed() {
                return Poll::Pending;
            }
        }
        // Not armed yet, or it fired: the clock decides.
        let now = clock::monotonic_ms();
        if now >= due_ms {
            return Poll::Ready(());
        }
        let deadline = Instant::now() + Duration::from_millis(due_ms - now);
        let timer = match &mut self.timer {
            Some(timer) => {
                if timer.is_elapsed() || timer.deadline() > deadline {
                    timer.as_mut().reset(deadline);
                    self.armed_ms = due_ms;
                }
                timer
            }
            empty @ None => {
                self.armed_ms = due_ms;
                empty.insert(Box::pin(tokio::time::sleep_until(deadline)))
            }
        };
        self.registered = timer.as_mut().poll(cx).is_pending();
        if !self.registered {
            // Due by the runtime's clock a hair before the coarse one: look again.
            cx.waker().wake_by_ref();
        }
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::{within, LazyDeadline, TimedOut};
    use crate::clock;
    use std::future::poll_fn;
    use std::time::Duration;

    #[tokio::test]
    async fn an_earlier_deadline_moves_the_armed_timer_back() {
        let mut deadline = LazyDeadline::default();
        let late = clock::monotonic_ms() + 60_000;
        let polled = poll_fn(|cx| std::task::Poll::Ready(deadline.poll_passed(late, cx))).await;
        assert!(polled.is_pending());
        let soon = clock::monotonic_ms() + 20;
        tokio::time::timeout(
            Duration::from_secs(5),
            poll_fn(|cx| deadline.poll_passed(soon, cx)),
        )
        .await
        .expect("the earlier deadline fired, not the armed one");
    }

    #[tokio::test]
    async fn zero_means_no_limit() {
        assert_eq!(within(Duration::ZERO, async { 7 }).await, Ok(7));
        assert!(super::after_ms(Duration::ZERO).is_none());
        let slow = within(Duration::from_millis(10), std::future::pending::<()>());
        assert_eq!(slow.await, Err(TimedOut));
    }
}
