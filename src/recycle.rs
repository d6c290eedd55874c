//! When a worker asks the master to replace it: after `--max-requests`
//! requests (its share of the jitter already added by the master), or once
//! its resident memory passes `--reload-on-rss`, sampled after each request
//! and every second. Asking only marks its board entry and rings the master;
//! the worker keeps serving until its replacement accepts and it is retired.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::board::{Board, Recycle, Slot};
use crate::config::Config;
use crate::log;

/// One worker's recycling rules.
pub(crate) struct Recycler {
    board: Board,
    slot: Option<&'static Slot>,
    max_requests: u64,
    rss_limit: u64,
    /// `/proc/self/statm`, kept open: one `pread` per sample.
    statm: Option<File>,
    page_size: u64,
    asked: AtomicBool,
}

impl Recycler {
    /// The rules of the worker at board `entry`.
    pub(crate) fn new(config: &Config, board: Board, entry: usize, max_requests: u64) -> Self {
        let statm = (config.reload_on_rss > 0)
            .then(|| File::open("/proc/self/statm").ok())
            .flatten();
        if config.reload_on_rss > 0 && statm.is_none() {
            log::warning("--reload-on-rss: /proc/self/statm cannot be read; memory is not watched");
        }
        // SAFETY: sysconf has no preconditions.
        let page_size = u64::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) }).unwrap_or(4096);
        Self {
            board,
            slot: board.slot(entry),
            max_requests,
            rss_limit: config.reload_on_rss,
            statm,
            page_size,
            asked: AtomicBool::new(false),
        }
    }

    /// Whether the memory is watched (and needs the one-second sampler).
    pub(crate) fn samples_memory(&self) -> bool {
        self.statm.is_some()
    }

    /// Count a finished request and apply the rules.
    pub(crate) fn request_done(&self) {
        let Some(slot) = self.slot else {
            return;
        };
        let served = slot.count_request();
        if self.max_requests > 0 && served >= self.max_requests {
            self.ask(Recycle::MaxRequests, &format!("served {served} requests"));
        }
        if self.statm.is_some() {
            self.check_memory();
        }
    }

    /// Ask for a replacement if the resident memory is over the limit.
    pub(crate) fn check_memory(&self) {
        if let Some(rss) = self.resident_bytes() {
            if rss > self.rss_limit {
                self.ask(Recycle::Rss, &format!("resident memory {} MiB", rss >> 20));
            }
        }
    }

    fn resident_bytes(&self) -> Option<u64> {
        let statm = self.statm.as_ref()?;
        let mut text = [0u8; 128];
        let read = statm.read_at(&mut text, 0).ok()?;
        let text = std::str::from_utf8(&text[..read]).ok()?;
        let pages: u64 = text.split_ascii_whitespace().nth(1)?.parse().ok()?;
        Some(pages.saturating_mul(self.page_size))
    }

    fn ask(&self, why: Recycle, detail: &str) {
        if self.asked.swap(true, Ordering::AcqRel) {
            return;
        }
        log::info(&format!(
            "worker (pid {}): {detail}; {}, asking the master for a replacement",
            std::process::id(),
            why.describe()
        ));
        if let Some(slot) = self.slot {
            slot.ask_recycle(why);
        }
        self.board.ring();
    }
}
