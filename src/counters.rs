//! What each worker counts about the requests it answers, in its entry of
//! the workers' board (shared memory the master reads when a stats client
//! connects): relaxed atomic adds on the worker's own cache lines, no lock,
//! no system call and no allocation per request. The request's path calls
//! the free functions below (`count` from `connection::account`, the others
//! where a body is spooled or an app raises); turning the counts into JSON
//! or Prometheus text is the master's (`stats::report`, `stats::metrics`).

use std::cell::Cell;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

/// Most runtime threads a worker reports one by one (uWSGI's `cores`); the
/// threads past it share entries (thread `n` counts in entry `n % MAX_CORES`).
pub(crate) const MAX_CORES: usize = 64;

/// Upper bounds of the latency histograms' buckets, in microseconds
/// (100 µs to 10 s: Prometheus' defaults stretched down, since a request
/// the server answers from Rust or a small view takes well under 1 ms);
/// one more bucket holds everything slower.
pub(crate) const BUCKETS_US: [u64; 17] = [
    100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000,
    1_000_000, 2_500_000, 5_000_000, 7_500_000, 10_000_000,
];

/// The listener protocols counted apart, as `Protocol::NAME` spells them.
pub(crate) const PROTOCOLS: [&str; 2] = ["HTTP", "uwsgi"];

/// Status classes counted: 1xx to 5xx (anything else counts as 5xx).
pub(crate) const CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

/// One runtime thread's counts (uWSGI's "core"), alone on its cache line.
#[repr(C, align(64))]
#[derive(Default)]
pub(crate) struct Core {
    requests: AtomicU64,
    /// 1 while this thread runs the app.
    in_request: AtomicU32,
}

impl Core {
    /// Requests this thread answered.
    pub(crate) fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    /// Whether this thread is inside the app now.
    pub(crate) fn in_request(&self) -> bool {
        self.in_request.load(Ordering::Relaxed) > 0
    }
}

/// A latency histogram: a count per bucket of `BUCKETS_US`, plus overflow.
#[repr(C)]
#[derive(Default)]
pub(crate) struct Histogram {
    buckets: [AtomicU64; BUCKETS_US.len() + 1],
    sum_us: AtomicU64,
}

impl Histogram {
    fn observe(&self, took: Duration) {
        let micros = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
        let index = BUCKETS_US.partition_point(|&bound| bound < micros);
        self.buckets[index].fetch_add(1, Ordering::Relaxed);
        self.sum_us.fetch_add(micros, Ordering::Relaxed);
    }

    /// Counts per bucket (not cumulative), the last one past `BUCKETS_US`.
    pub(crate) fn buckets(&self) -> [u64; BUCKETS_US.len() + 1] {
        std::array::from_fn(|index| self.buckets[index].load(Ordering::Relaxed))
    }

    /// Every observation added up, in microseconds.
    pub(crate) fn sum_us(&self) -> u64 {
        self.sum_us.load(Ordering::Relaxed)
    }

    fn reset(&self) {
        for bucket in &self.buckets {
            bucket.store(0, Ordering::Relaxed);
        }
        self.sum_us.store(0, Ordering::Relaxed);
    }
}

/// One worker process's request counts (each board entry embeds one).
/// All zeroes is a valid value: the board's mapping starts zero-filled.
#[repr(C, align(64))]
pub(crate) struct Counters {
    /// App calls that raised (answered 500 by the server).
    exceptions: AtomicU64,
    /// Requests answered 504 by `--harakiri`.
    harakiri: AtomicU64,
    /// Request bodies moved to a spool file (past `--post-buffering`).
    spooled: AtomicU64,
    /// Bytes received: request heads and bodies.
    rx: AtomicU64,
    /// Bytes sent: response heads and the bodies whose length was known.
    tx: AtomicU64,
    /// Requests by listener protocol and status class.
    by_class: [[AtomicU64; CLASSES.len()]; PROTOCOLS.len()],
    /// From the head read to the answer ready (body read, app or static file).
    app: Histogram,
    /// From the head read to the answer handed to the socket.
    total: Histogram,
    cores: [Core; MAX_CORES],
}

/// What one answered request adds (see `Counters::count`).
pub(crate) struct Answered {
    /// `Protocol::NAME` of the listener.
    pub protocol: &'static str,
    pub status: u16,
    /// Bytes of the request head.
    pub received: u64,
    /// Bytes of the response head and body.
    pub sent: u64,
    /// Head read to answer ready.
    pub app: Duration,
    /// Head read to answer handed to the socket.
    pub total: Duration,
}

impl Counters {
    /// Count one answered request, on the thread that answered it.
    pub(crate) fn count(&self, answered: &Answered) {
        let protocol = PROTOCOLS
            .iter()
            .position(|&name| name == answered.protocol)
            .unwrap_or(0);
        let class = match answered.status {
            100..=199 => 0,
            200..=299 => 1,
            300..=399 => 2,
            400..=499 => 3,
            _ => 4,
        };
        self.by_class[protocol][class].fetch_add(1, Ordering::Relaxed);
        self.rx.fetch_add(answered.received, Ordering::Relaxed);
        self.tx.fetch_add(answered.sent, Ordering::Relaxed);
        self.app.observe(answered.app);
        self.total.observe(answered.total);
        self.core().requests.fetch_add(1, Ordering::Relaxed);
    }

    /// The calling thread's core entry.
    fn core(&self) -> &Core {
        &self.cores[core_index() % MAX_CORES]
    }

    /// Mark the calling thread inside the app (or out of it again).
    pub(crate) fn set_in_request(&self, inside: bool) {
        self.core()
            .in_request
            .store(u32::from(inside), Ordering::Relaxed);
    }

    /// Count an app call that raised.
    pub(crate) fn count_exception(&self) {
        self.exceptions.fetch_add(1, Ordering::Relaxed);
    }

    /// Count a request answered 504 by the `--harakiri` watchdog.
    pub(crate) fn count_harakiri(&self) {
        self.harakiri.fetch_add(1, Ordering::Relaxed);
    }

    /// Count a body moved to a spool file.
    pub(crate) fn count_spooled(&self) {
        self.spooled.fetch_add(1, Ordering::Relaxed);
    }

    /// Count request body bytes read.
    pub(crate) fn count_received(&self, bytes: u64) {
        self.rx.fetch_add(bytes, Ordering::Relaxed);
    }

    /// App calls that raised.
    pub(crate) fn exceptions(&self) -> u64 {
        self.exceptions.load(Ordering::Relaxed)
    }

    /// Requests answered 504 by `--harakiri`.
    pub(crate) fn harakiri(&self) -> u64 {
        self.harakiri.load(Ordering::Relaxed)
    }

    /// Bodies moved to a spool file.
    pub(crate) fn spooled(&self) -> u64 {
        self.spooled.load(Ordering::Relaxed)
    }

    /// Bytes received (heads and bodies).
    pub(crate) fn rx(&self) -> u64 {
        self.rx.load(Ordering::Relaxed)
    }

    /// Bytes sent (heads, and bodies of known length).
    pub(crate) fn tx(&self) -> u64 {
        self.tx.load(Ordering::Relaxed)
    }

    /// Requests answered on `protocol` (an index of `PROTOCOLS`) with a
    /// status of class `class` (an index of `CLASSES`).
    pub(crate) fn by_class(&self, protocol: usize, class: usize) -> u64 {
        self.by_class[protocol][class].load(Ordering::Relaxed)
    }

    /// App time (head read to answer ready).
    pub(crate) fn app(&self) -> &Histogram {
        &self.app
    }

    /// Total time (head read to answer sent).
    pub(crate) fn total(&self) -> &Histogram {
        &self.total
    }

    /// The first `threads` core entries (at most `MAX_CORES`).
    pub(crate) fn cores(&self, threads: usize) -> &[Core] {
        &self.cores[..threads.min(MAX_CORES)]
    }

    /// Zero everything for a new process (the master, before it forks one).
    pub(crate) fn reset(&self) {
        for counter in [
            &self.exceptions,
            &self.harakiri,
            &self.spooled,
            &self.rx,
            &self.tx,
        ] {
            counter.store(0, Ordering::Relaxed);
        }
        for counter in self.by_class.iter().flatten() {
            counter.store(0, Ordering::Relaxed);
        }
        self.app.reset();
        self.total.reset();
        for core in &self.cores {
            core.requests.store(0, Ordering::Relaxed);
            core.in_request.store(0, Ordering::Relaxed);
        }
    }
}

/// Hands out core numbers to a process's threads, in the order they first count.
static NEXT_CORE: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    static CORE: Cell<Option<usize>> = const { Cell::new(None) };
}

fn core_index() -> usize {
    CORE.with(|core| {
        core.get().unwrap_or_else(|| {
            let index = NEXT_CORE.fetch_add(1, Ordering::Relaxed);
            core.set(Some(index));
            index
        })
    })
}

/// This process's counters, for the places no board entry reaches
/// (the body sink's spooling); set once by the worker at start.
static MINE: OnceLock<&'static Counters> = OnceLock::new();

/// Say which counters this worker process writes to.
pub(crate) fn adopt(counters: &'static Counters) {
    let _ = MINE.set(counters);
}

/// This process's counters, once a worker adopted them.
pub(crate) fn mine() -> Option<&'static Counters> {
    MINE.get().copied()
}

/// Count one answered request (from `connection::account`, on the I/O side).
pub(crate) fn count(answered: &Answered) {
    if let Some(counters) = mine() {
        counters.count(answered);
    }
}

/// Count an app call that raised.
pub(crate) fn exception() {
    if let Some(counters) = mine() {
        counters.count_exception();
    }
}

/// Count a request body moved to a spool file.
pub(crate) fn spooled() {
    if let Some(counters) = mine() {
        counters.count_spooled();
    }
}

/// Count request body bytes read.
pub(crate) fn received(bytes: u64) {
    if let Some(counters) = mine() {
        counters.count_received(bytes);
    }
}

#[cfg(test)]
mod tests {
    use super::{Answered, Counters, BUCKETS_US};
    use std::time::Duration;

    /// Counters in their own memory, as the board's zero-filled mapping makes them.
    fn zeroed() -> Box<Counters> {
        // SAFETY: Counters is atomics only, for which all zeroes is a valid value.
        Box::new(unsafe { std::mem::zeroed() })
    }

    fn answered(status: u16, millis: u64) -> Answered {
        Answered {
            protocol: "uwsgi",
            status,
            received: 10,
            sent: 100,
            app: Duration::from_millis(millis),
            total: Duration::from_millis(millis + 1),
        }
    }

    #[test]
    fn counts_by_class_and_bucket() {
        let counters = zeroed();
        counters.count(&answered(200, 1));
        counters.count(&answered(404, 30));
        counters.count(&answered(999, 60_000));
        assert_eq!(counters.by_class(1, 1), 1);
        assert_eq!(counters.by_class(1, 3), 1);
        assert_eq!(counters.by_class(1, 4), 1, "odd statuses count as 5xx");
        assert_eq!(counters.by_class(0, 1), 0);
        let app = counters.app().buckets();
        assert_eq!(app[3], 1, "1 ms is in the 1 ms bucket (le)");
        assert_eq!(app[..3].iter().sum::<u64>(), 0);
        assert_eq!(app[BUCKETS_US.len()], 1, "a minute overflows");
        assert_eq!(app.iter().sum::<u64>(), 3);
        assert_eq!(counters.total().sum_us(), (1 + 30 + 60_000 + 3) * 1000);
        assert_eq!((counters.rx(), counters.tx()), (30, 300));
        assert_eq!(counters.core().requests(), 3);
        counters.set_in_request(true);
        assert!(counters.core().in_request());
        counters.reset();
        assert_eq!(counters.app().buckets().iter().sum::<u64>(), 0);
        assert!(!counters.core().in_request());
    }
}
