//! The workers' board: memory the master maps before its first fork and
//! every process inherits. Each worker process has an entry (handed out by
//! the master, one per process, so an old and a new worker of the same
//! position never share one during a reload) where it publishes how many of
//! its threads are inside the app, whether it accepts, and whether it wants
//! to be replaced; the master publishes whether the server is draining.
//! A busy worker reads its siblings' entries to see whether one could serve
//! a connection waiting on its socket (see `server.rs`), with no message
//! between processes; the master's stats server reads it too (each entry
//! embeds the worker's request counters, see `crate::counters`).
//!
//! The board's doorbell is a pipe whose write end every process inherits:
//! a worker that changed something the master must act on (ready, wants
//! recycling) rings it, and the master's loop wakes up and reads the board.

use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU32, AtomicU64, Ordering};

use crate::counters::Counters;

/// Most entries a board holds (processes alive at once, old and new).
pub(crate) const MAX_SLOTS: usize = 1024;

/// Why a worker asks the master to replace it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub(crate) enum Recycle {
    /// It served `--max-requests` requests.
    MaxRequests = 1,
    /// Its resident memory passed `--reload-on-rss`.
    Rss = 2,
    /// A request's thread did not unwind within `--harakiri-grace`.
    Harakiri = 3,
}

impl Recycle {
    fn from_code(code: u32) -> Option<Self> {
        match code {
            1 => Some(Self::MaxRequests),
            2 => Some(Self::Rss),
            3 => Some(Self::Harakiri),
            _ => None,
        }
    }

    /// How the master's log names it.
    pub(crate) fn describe(self) -> &'static str {
        match self {
            Self::MaxRequests => "it reached --max-requests",
            Self::Rss => "its memory passed --reload-on-rss",
            Self::Harakiri => "a timed-out request did not unwind within --harakiri-grace",
        }
    }
}

/// One worker's entry, alone on its cache line (each worker writes its own).
#[repr(C, align(64))]
pub(crate) struct Slot {
    /// Threads inside the app now.
    busy: AtomicU32,
    /// The worker's thread count while it accepts connections; 0 otherwise.
    serving: AtomicU32,
    /// The process using this entry (written by whoever forked it).
    pid: AtomicI32,
    /// A `Recycle` code once the worker asked to be replaced; 0 before.
    recycle: AtomicU32,
    /// Requests this process has finished.
    requests: AtomicU64,
    /// Set by the master before it sends SIGTERM to a worker it replaces
    /// (reload, recycling): the worker then retires instead of stopping.
    retiring: AtomicBool,
    /// What the stats report about this process's requests.
    counters: Counters,
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

    /// Whether the worker has said it accepts connections.
    pub(crate) fn is_serving(&self) -> bool {
        self.serving.load(Ordering::Acquire) > 0
    }

    /// Record the process that uses this entry.
    pub(crate) fn set_pid(&self, pid: i32) {
        self.pid.store(pid, Ordering::Release);
    }

    pub(crate) fn pid(&self) -> i32 {
        self.pid.load(Ordering::Acquire)
    }

    /// Ask to be replaced; the first reason given is the one kept.
    pub(crate) fn ask_recycle(&self, why: Recycle) {
        let _ = self
            .recycle
            .compare_exchange(0, why as u32, Ordering::AcqRel, Ordering::Acquire);
    }

    /// Why the worker asked to be replaced, if it did.
    pub(crate) fn recycle_asked(&self) -> Option<Recycle> {
        Recycle::from_code(self.recycle.load(Ordering::Acquire))
    }

    /// Count one finished request; returns the count after it.
    pub(crate) fn count_request(&self) -> u64 {
        self.requests.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// Requests finished so far.
    pub(crate) fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    /// Mark the worker as being replaced (the master, before its SIGTERM):
    /// it keeps idle keep-alive connections until their next request,
    /// answered with `Connection: close`, instead of closing them at once.
    pub(crate) fn set_retiring(&self) {
        self.retiring.store(true, Ordering::Release);
    }

    /// Whether the SIGTERM this worker got means "retire" (see `set_retiring`).
    pub(crate) fn is_retiring(&self) -> bool {
        self.retiring.load(Ordering::Acquire)
    }

    /// This process's request counts, for the stats.
    pub(crate) fn counters(&self) -> &Counters {
        &self.counters
    }

    /// Make the entry blank for a new process (the master, before forking one).
    pub(crate) fn reset(&self) {
        self.counters.reset();
        self.serving.store(0, Ordering::Release);
        self.busy.store(0, Ordering::Release);
        self.pid.store(0, Ordering::Release);
        self.recycle.store(0, Ordering::Release);
        self.requests.store(0, Ordering::Release);
        self.retiring.store(false, Ordering::Release);
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

/// What the master publishes to every worker.
#[repr(C, align(64))]
struct Header {
    /// Set while the server drains (a stop or `--health-drain-delay`):
    /// readiness checks answer 503.
    draining: AtomicBool,
    /// One past the highest entry ever handed out: scans stop there.
    used: AtomicU32,
}

/// The entries of every worker, shared between processes.
#[derive(Clone, Copy)]
pub(crate) struct Board {
    header: &'static Header,
    slots: &'static [Slot],
    /// The doorbell's write end (non-blocking; inherited by every process).
    bell: RawFd,
}

impl Board {
    /// Map a board of `slots` entries and make its doorbell (before
    /// forking: both are inherited). Returns the doorbell's read end, which
    /// only the master reads.
    pub(crate) fn new(slots: usize) -> std::io::Result<(Self, OwnedFd)> {
        let slots = slots.clamp(1, MAX_SLOTS);
        let bytes = std::mem::size_of::<Header>() + slots * std::mem::size_of::<Slot>();
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
        // Header and Slot, both 64-byte aligned and 64-byte multiples),
        // zero-filled (all zeroes is a valid Header and Slot: atomics only),
        // and never unmapped: it lives as long as the process, like `'static`.
        let (header, slots) = unsafe {
            let header = &*memory.cast::<Header>();
            let first = memory.cast::<Header>().add(1).cast::<Slot>();
            (header, std::slice::from_raw_parts(first, slots))
        };
        let (read, write) = doorbell()?;
        // The write end lives as long as the process, like the mapping.
        let bell = write.as_raw_fd();
        std::mem::forget(write);
        Ok((
            Self {
                header,
                slots,
                bell,
            },
            read,
        ))
    }

    /// Entry `index` (0-based); `None` past the board.
    pub(crate) fn slot(&self, index: usize) -> Option<&'static Slot> {
        let slot = self.slots.get(index)?;
        let used = u32::try_from(index + 1).unwrap_or(u32::MAX);
        self.header.used.fetch_max(used, Ordering::AcqRel);
        Some(slot)
    }

    /// How many entries exist in all.
    pub(crate) fn capacity(&self) -> usize {
        self.slots.len()
    }

    fn in_use(&self) -> &'static [Slot] {
        let used = self.header.used.load(Ordering::Acquire) as usize;
        &self.slots[..used.min(self.slots.len())]
    }

    /// Whether a serving worker other than `me` has a thread outside the app.
    pub(crate) fn sibling_has_free_thread(&self, me: usize) -> bool {
        self.in_use()
            .iter()
            .enumerate()
            .any(|(index, slot)| index != me && slot.has_free_thread())
    }

    /// Tell the master to look at the board (a worker got ready or asked
    /// to be recycled). Never blocks: a full pipe already holds a ring.
    pub(crate) fn ring(&self) {
        let byte = 1u8;
        // SAFETY: writes one byte from a live local to our own descriptor.
        let _ = unsafe { libc::write(self.bell, (&raw const byte).cast(), 1) };
    }

    /// Publish that the server drains (readiness answers 503) or no longer does.
    pub(crate) fn set_draining(&self, draining: bool) {
        self.header.draining.store(draining, Ordering::Release);
    }

    /// Whether the master said the server drains.
    pub(crate) fn is_draining(&self) -> bool {
        self.header.draining.load(Ordering::Acquire)
    }
}

/// A non-blocking, close-on-exec pipe.
fn doorbell() -> std::io::Result<(OwnedFd, OwnedFd)> {
    use std::os::fd::FromRawFd;
    let mut ends = [0; 2];
    // SAFETY: pipe2 writes two descriptors into the array we own.
    if unsafe { libc::pipe2(ends.as_mut_ptr(), libc::O_NONBLOCK | libc::O_CLOEXEC) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: both are fresh descriptors owned by nothing else.
    Ok(unsafe { (OwnedFd::from_raw_fd(ends[0]), OwnedFd::from_raw_fd(ends[1])) })
}

/// Read every pending ring off the doorbell's read end (the master).
pub(crate) fn drain_rings(read: &OwnedFd) {
    let mut sink = [0u8; 256];
    // SAFETY: reads into a buffer we own, from our own descriptor.
    while unsafe { libc::read(read.as_raw_fd(), sink.as_mut_ptr().cast(), sink.len()) } > 0 {}
}

#[cfg(test)]
mod tests {
    use super::{drain_rings, Board, Recycle};

    #[test]
    fn siblings_see_each_others_free_threads() {
        let (board, _bell) = Board::new(2).expect("mapped");
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
        let (board, bell) = Board::new(1).expect("mapped");
        let slot = board.slot(0).expect("slot");
        // SAFETY: the child only touches the shared slot and exits at once.
        let pid = unsafe { libc::fork() };
        if pid == 0 {
            slot.set_serving(3);
            slot.ask_recycle(Recycle::Rss);
            slot.ask_recycle(Recycle::MaxRequests);
            board.ring();
            // SAFETY: leave the child without running the parent's test harness.
            unsafe { libc::_exit(0) };
        }
        let mut status = 0;
        // SAFETY: waits for the child we just forked.
        unsafe { libc::waitpid(pid, &raw mut status, 0) };
        assert!(board.sibling_has_free_thread(1));
        assert_eq!(
            slot.recycle_asked(),
            Some(Recycle::Rss),
            "the first reason is kept"
        );
        drain_rings(&bell);
        slot.reset();
        assert_eq!(slot.recycle_asked(), None);
        assert!(!slot.is_serving());
    }

    #[test]
    fn scans_stop_at_the_highest_entry_handed_out() {
        let (board, _bell) = Board::new(8).expect("mapped");
        assert_eq!(board.in_use().len(), 0);
        board.slot(2).expect("slot").set_serving(1);
        assert_eq!(board.in_use().len(), 3);
        assert!(board.sibling_has_free_thread(0));
        assert!(!board.sibling_has_free_thread(2));
    }
}
