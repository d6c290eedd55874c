//! The workers' board: a page of memory the master maps before its first
//! fork and every worker inherits, where each worker publishes how many of
//! its threads are inside the app and whether it is serving. It lets a busy
//! worker see whether a sibling could serve a connection waiting on its
//! socket (see `server.rs`), without any message between processes; the
//! stats of a later issue can read it too.

use std::sync::atomic::{AtomicU32, Ordering};

/// Most worker slots a board holds.
pub(crate) const MAX_SLOTS: usize = 1024;

/// One worker's entry, alone on its cache line (each worker writes its own).
#[repr(C, align(64))]
pub(crate) struct Slot {
    /// Threads inside the app now.
    busy: AtomicU32,
    /// The worker's thread count while it accepts connections; 0 otherwise.
    serving: AtomicU32,
}

impl Slot {
    /// Count one more thread inside the app.
    pub(crate) fn enter(&self) -> u32 {
        self.busy.fetch_add(1, Ordering::AcqRel)
    }

    /// Count one thread fewer; returns the count before.
    pub(crate) fn leave(&self) -> u32 {
        self.busy.fetch_sub(1, Ordering::AcqRel)
    }

    pub(crate) fn busy(&self) -> u32 {
        self.busy.load(Ordering::Acquire)
    }

    /// Say this worker accepts with `threads` threads (0: it no longer does).
    pub(crate) fn set_serving(&self, threads: u32) {
        self.serving.store(threads, Ordering::Release);
    }

    /// Forget a worker that is gone (the master, on reaping it).
    pub(crate) fn clear(&self) {
        self.serving.store(0, Ordering::Release);
        self.busy.store(0, Ordering::Release);
    }

    fn has_free_thread(&self) -> bool {
        let serving = self.serving.load(Ordering::Acquire);
        serving > 0 && self.busy.load(Ordering::Acquire) < serving
    }
}

/// The slots of every worker, shared between processes.
#[derive(Clone, Copy)]
pub(crate) struct Board {
    slots: &'static [Slot],
}

impl Board {
    /// Map a board of `slots` slots (before forking: the mapping is inherited).
    pub(crate) fn new(slots: usize) -> std::io::Result<Self> {
        let slots = slots.clamp(1, MAX_SLOTS);
        let bytes = slots * std::mem::size_of::<Slot>();
        // SAFETY: an anonymous shared mapping with no address hint; the
        // result is checked against MAP_FAILED before use.
        let memory = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                bytes,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if memory == libc::MAP_FAILED {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: the mapping is `bytes` long, page-aligned (so aligned for
        // Slot), zero-filled (a valid Slot is all zeroes: two atomics), and
        // never unmapped: it lives as long as the process, like `'static`.
        let slots = unsafe { std::slice::from_raw_parts(memory.cast::<Slot>(), slots) };
        Ok(Self { slots })
    }

    /// Worker `index`'s slot (0-based); `None` past the board.
    pub(crate) fn slot(&self, index: usize) -> Option<&'static Slot> {
        self.slots.get(index)
    }

    /// Whether a serving worker other than `me` has a thread outside the app.
    pub(crate) fn sibling_has_free_thread(&self, me: usize) -> bool {
        self.slots
            .iter()
            .enumerate()
            .any(|(index, slot)| index != me && slot.has_free_thread())
    }
}

#[cfg(test)]
mod tests {
    use super::Board;

    #[test]
    fn siblings_see_each_others_free_threads() {
        let board = Board::new(2).expect("mapped");
        let (first, second) = (board.slot(0).expect("slot"), board.slot(1).expect("slot"));
        assert!(
            !board.sibling_has_free_thread(0),
            "a worker not serving has no free thread"
        );
        second.set_serving(1);
        assert!(board.sibling_has_free_thread(0));
        second.enter();
        assert!(!board.sibling_has_free_thread(0));
        first.set_serving(2);
        assert!(board.sibling_has_free_thread(1));
        second.clear();
        assert_eq!(second.busy(), 0);
        assert!(board.slot(2).is_none());
    }

    #[test]
    fn the_board_is_shared_with_a_forked_child() {
        let board = Board::new(1).expect("mapped");
        let slot = board.slot(0).expect("slot");
        // SAFETY: the child only touches the shared slot and exits at once.
        let pid = unsafe { libc::fork() };
        if pid == 0 {
            slot.set_serving(3);
            // SAFETY: leave the child without running the parent's test harness.
            unsafe { libc::_exit(0) };
        }
        let mut status = 0;
        // SAFETY: waits for the child we just forked.
        unsafe { libc::waitpid(pid, &raw mut status, 0) };
        assert!(board.sibling_has_free_thread(1));
    }
}
