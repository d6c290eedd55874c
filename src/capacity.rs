//! How many of a worker's threads are inside the app right now, so the accept
//! loops take a new connection only when a thread is free to serve it and
//! otherwise leave it in the kernel backlog for a less busy worker. The count
//! lives in the worker's slot of the shared board, where siblings see it.

use tokio::sync::Notify;

use crate::board::Slot;

/// The busy-thread count of one worker.
pub(crate) struct Capacity {
    slot: &'static Slot,
    threads: u32,
    freed: Notify,
}

/// Marks one thread busy until dropped.
pub(crate) struct Busy<'a>(&'a Capacity);

impl Drop for Busy<'_> {
    fn drop(&mut self) {
        self.0.slot.counters().set_in_request(false);
        if self.0.slot.leave() == self.0.threads {
            self.0.freed.notify_waiters();
        }
    }
}

impl Capacity {
    /// `slot` is this worker's on the board (its counters become the
    /// process's, see `counters::adopt`).
    pub(crate) fn new(threads: usize, slot: &'static Slot) -> Self {
        crate::counters::adopt(slot.counters());
        Self {
            slot,
            threads: u32::try_from(threads).unwrap_or(u32::MAX),
            freed: Notify::new(),
        }
    }

    /// Count the calling thread as busy for the guard's life.
    pub(crate) fn enter(&self) -> Busy<'_> {
        self.slot.enter();
        self.slot.counters().set_in_request(true);
        Busy(self)
    }

    /// Wait until at least one thread is outside the app.
    pub(crate) async fn idle_thread(&self) {
        loop {
            let freed = self.freed.notified();
            tokio::pin!(freed);
            freed.as_mut().enable();
            if self.slot.busy() < self.threads {
                return;
            }
            freed.await;
        }
    }

    /// Publish that this worker accepts connections (or no longer does).
    pub(crate) fn set_serving(&self, serving: bool) {
        self.slot
            .set_serving(if serving { self.threads } else { 0 });
    }
}

#[cfg(test)]
mod tests {
    use super::Capacity;
    use crate::board::Board;

    #[tokio::test]
    async fn waits_while_every_thread_is_busy() {
        let (board, _bell) = Board::new(1).expect("mapped");
        let capacity = std::sync::Arc::new(Capacity::new(1, board.slot(0).expect("slot")));
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
