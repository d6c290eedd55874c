//! How a worker stops: one stop signal every accept loop and connection
//! watches, and a count of open connections kept by guard objects, so the
//! drain can wait for none without trusting every task to decrement it.
//!
//! A worker drains in one of two ways (`Stopping`): a stop closes its idle
//! keep-alive connections at once; a retirement (the master replaces the
//! worker in a reload or recycling) keeps them until their next request,
//! answered with `Connection: close`, so a client that sends it just then is
//! never reset. Both stop accepting and answer requests in flight with
//! `Connection: close`.

use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::sync::futures::OwnedNotified;
use tokio::sync::Notify;

/// How a worker drains.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Stopping {
    /// The server stops: idle connections are closed at once.
    Stop,
    /// This worker is replaced: idle connections wait for their next request.
    Retire,
}

const RUNNING: u8 = 0;
const STOP: u8 = 1;
const RETIRE: u8 = 2;

/// Shutdown as a flag plus a wake-up. Reading the flag is an atomic load, so
/// connections look at it on every request; a waiter registers once.
#[derive(Default)]
pub(crate) struct StopSignal {
    /// `RUNNING`, or how the worker drains.
    state: AtomicU8,
    notify: Arc<Notify>,
}

impl StopSignal {
    /// Begin draining as `how` says and wake every waiter. A stop outranks a
    /// retirement: a retiring worker told to stop closes its idle connections.
    pub(crate) fn trigger(&self, how: Stopping) {
        let code = match how {
            Stopping::Stop => STOP,
            Stopping::Retire => RETIRE,
        };
        let _ = self
            .state
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |now| {
                (now == RUNNING || (now == RETIRE && code == STOP)).then_some(code)
            });
        self.notify.notify_waiters();
    }

    /// Whether shutdown (of either kind) has begun.
    pub(crate) fn is_set(&self) -> bool {
        self.state.load(Ordering::Acquire) != RUNNING
    }

    /// How the worker drains; `None` while it serves.
    pub(crate) fn mode(&self) -> Option<Stopping> {
        match self.state.load(Ordering::Acquire) {
            STOP => Some(Stopping::Stop),
            RETIRE => Some(Stopping::Retire),
            _ => None,
        }
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
    use super::{OpenConnections, StopSignal, Stopping};
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
        stop.trigger(Stopping::Retire);
        tokio::time::timeout(Duration::from_secs(5), waiter)
            .await
            .expect("woken")
            .expect("joined");
        stop.stopped().await;
        assert!(stop.is_set());
        assert_eq!(stop.mode(), Some(Stopping::Retire));
    }

    #[test]
    fn a_stop_outranks_a_retirement_and_nothing_undoes_a_stop() {
        let stop = StopSignal::default();
        assert_eq!(stop.mode(), None);
        assert!(!stop.is_set());
        stop.trigger(Stopping::Retire);
        stop.trigger(Stopping::Stop);
        assert_eq!(stop.mode(), Some(Stopping::Stop));
        stop.trigger(Stopping::Retire);
        assert_eq!(stop.mode(), Some(Stopping::Stop));
    }
}
