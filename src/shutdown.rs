//! How a worker stops: one stop signal every accept loop and connection
//! watches, and a count of open connections kept by guard objects, so the
//! drain can wait for none without trusting every task to decrement it.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::sync::futures::OwnedNotified;
use tokio::sync::Notify;

/// Shutdown as a flag plus a wake-up. Reading the flag is an atomic load, so
/// connections look at it on every request; a waiter registers once.
#[derive(Default)]
pub(crate) struct StopSignal {
    stopping: AtomicBool,
    notify: Arc<Notify>,
}

impl StopSignal {
    /// Set the flag and wake every waiter.
    pub(crate) fn trigger(&self) {
        self.stopping.store(true, Ordering::Release);
        self.notify.notify_waiters();
    }

    /// Whether shutdown has begun.
    pub(crate) fn is_set(&self) -> bool {
        self.stopping.load(Ordering::Acquire)
    }

    /// A future that completes at `trigger`, for waiters that keep it across
    /// polls (a connection's idle wait). Check `is_set` after enabling it.
    pub(crate) fn wake_up(&self) -> OwnedNotified {
        Arc::clone(&self.notify).notified_owned()
    }

    /// Wait until shutdown begins (at once if it has).
    pub(crate) async fn stopped(&self) {
        let notified = self.notify.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        if self.is_set() {
            return;
        }
        notified.await;
    }
}

/// Connections still open, and a way to wait for none.
#[derive(Default)]
pub(crate) struct OpenConnections {
    count: AtomicUsize,
    idle: Notify,
}

/// Counts one connection open until dropped, also when its task panics.
pub(crate) struct ConnectionGuard(Arc<OpenConnections>);

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        if self.0.count.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.idle.notify_waiters();
        }
    }
}

impl OpenConnections {
    /// Count a new connection for the guard's life.
    pub(crate) fn open(self: &Arc<Self>) -> ConnectionGuard {
        self.count.fetch_add(1, Ordering::AcqRel);
        ConnectionGuard(Arc::clone(self))
    }

    /// Wait until every connection has closed.
    pub(crate) async fn drained(&self) {
        loop {
            let notified = self.idle.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.count.load(Ordering::Acquire) == 0 {
                return;
            }
            notified.await;
        }
    }

    /// How many are open now.
    pub(crate) fn count(&self) -> usize {
        self.count.load(Ordering::Acquire)
    }
}

#[cfg(test)]
mod tests {
    use super::{OpenConnections, StopSignal};
    use std::sync::Arc;
    use std::time::Duration;

    #[tokio::test]
    async fn a_panicking_task_still_closes_its_connection() {
        let open = Arc::new(OpenConnections::default());
        let guard = open.open();
        assert_eq!(open.count(), 1);
        let task = tokio::spawn(async move {
            let _guard = guard;
            panic!("a connection task fails");
        });
        assert!(task.await.is_err());
        tokio::time::timeout(Duration::from_secs(5), open.drained())
            .await
            .expect("drained");
        assert_eq!(open.count(), 0);
    }

    #[tokio::test]
    async fn stopped_wakes_waiters_and_late_callers() {
        let stop = Arc::new(StopSignal::default());
        let waiter = tokio::spawn({
            let stop = Arc::clone(&stop);
            async move { stop.stopped().await }
        });
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        stop.trigger();
        tokio::time::timeout(Duration::from_secs(5), waiter)
            .await
            .expect("woken")
            .expect("joined");
        stop.stopped().await;
        assert!(stop.is_set());
    }
}
