//! How many of a worker's threads are inside the app right now, so the accept
//! loops take a new connection only when a thread is free to serve it and
//! otherwise leave it in the kernel backlog for a less busy worker.

use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::sync::Notify;

/// The busy-thread count of one worker.
pub(crate) struct Capacity {
    busy: AtomicUsize,
    threads: usize,
    freed: Notify,
}

/// Marks one thread busy until dropped.
pub(crate) struct Busy<'a>(&'a Capacity);

impl Drop for Busy<'_> {
    fn drop(&mut self) {
        if self.0.busy.fetch_sub(1, Ordering::AcqRel) == self.0.threads {
            self.0.freed.notify_waiters();
        }
    }
}

impl Capacity {
    pub(crate) fn new(threads: usize) -> Self {
        Self {
            busy: AtomicUsize::new(0),
            threads,
            freed: Notify::new(),
        }
    }

    /// Count the calling thread as busy for the guard's life.
    pub(crate) fn enter(&self) -> Busy<'_> {
        self.busy.fetch_add(1, Ordering::AcqRel);
        Busy(self)
    }

    /// Wait until at least one thread is outside the app.
    pub(crate) async fn idle_thread(&self) {
        loop {
            let freed = self.freed.notified();
            tokio::pin!(freed);
            freed.as_mut().enable();
            if self.busy.load(Ordering::Acquire) < self.threads {
                return;
            }
            freed.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Capacity;

    #[tokio::test]
    async fn waits_while_every_thread_is_busy() {
        let capacity = std::sync::Arc::new(Capacity::new(1));
        let busy = capacity.enter();
        let waiter = tokio::spawn({
            let capacity = std::sync::Arc::clone(&capacity);
            async move { capacity.idle_thread().await }
        });
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        drop(busy);
        tokio::time::timeout(std::time::Duration::from_secs(1), waiter)
            .await
            .expect("released")
            .expect("joined");
        capacity.idle_thread().await;
    }
}
