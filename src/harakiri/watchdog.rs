//! The watchdog of `--harakiri`: a plain thread per worker (not a tokio
//! task: when every runtime thread is inside the app, nothing would poll a
//! timer) that sleeps until the earliest deadline, answers for the calls
//! past it (see `Entry::check`), and asks the master to replace the worker
//! when a call has not unwound within `--harakiri-grace`.
//!
//! The Python side of a timeout (the thread's stack in the log, the
//! exception raised in it) needs the GIL, which a thread stuck in C may
//! hold: it runs on a second thread, fed reports through a channel, so the
//! watchdog itself never waits for the GIL and the grace still counts.

use std::sync::mpsc;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use parking_lot::{Condvar, Mutex};

use super::{millis, Check, Report, ENTRIES};
use crate::board::{Board, Recycle, Slot};
use crate::clock;
use crate::log;

/// What the watchdog of one worker needs.
pub(crate) struct Settings {
    /// `--harakiri`.
    pub limit: Duration,
    /// `--harakiri-grace`.
    pub grace: Duration,
    /// The worker's number, for log lines.
    pub worker: usize,
    pub board: Board,
    /// This worker's entry on the board.
    pub slot: &'static Slot,
    /// The Python side: log the thread's stack, raise the exception in it.
    pub unwind: fn(&Report),
}

/// The running watchdog; `stop` ends it.
pub(crate) struct Watchdog {
    stop: Arc<(Mutex<bool>, Condvar)>,
    thread: Option<JoinHandle<()>>,
}

impl Watchdog {
    /// Start the watchdog and its Python helper.
    pub(crate) fn start(settings: Settings) -> std::io::Result<Self> {
        let (reports, inbox) = mpsc::channel::<Report>();
        let unwind = settings.unwind;
        // Not joined: it may be waiting for a GIL a stuck thread holds; it
        // ends when the watchdog drops the channel.
        std::thread::Builder::new()
            .name("rwsgi-harakiri-py".into())
            .spawn(move || {
                for report in inbox {
                    unwind(&report);
                }
            })?;
        let stop = Arc::new((Mutex::new(false), Condvar::new()));
        let thread = std::thread::Builder::new()
            .name("rwsgi-harakiri".into())
            .spawn({
                let stop = Arc::clone(&stop);
                move || watch(&settings, &stop, &reports)
            })?;
        Ok(Self {
            stop,
            thread: Some(thread),
        })
    }

    /// Stop the watchdog and wait for it.
    pub(crate) fn stop(mut self) {
        let (stopped, wake) = &*self.stop;
        *stopped.lock() = true;
        wake.notify_all();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn watch(settings: &Settings, stop: &(Mutex<bool>, Condvar), reports: &mpsc::Sender<Report>) {
    let limit = millis(settings.limit);
    let grace = millis(settings.grace);
    let (stopped, wake) = stop;
    loop {
        let now = clock::monotonic_ms();
        // A call entered after this scan has its deadline a whole limit away.
        let mut due = now.saturating_add(limit);
        let mut stuck = Vec::new();
        for entry in ENTRIES.lock().iter() {
            match entry.check(now, grace) {
                Check::Quiet { due: Some(at) } => due = due.min(at),
                Check::Quiet { due: None } => {}
                Check::Expired(report) => {
                    settings.slot.counters().count_harakiri();
                    due = due.min(now.saturating_add(grace));
                    let _ = reports.send(report);
                }
                Check::Stuck { line } => stuck.push(line),
            }
        }
        for line in stuck {
            log::error(&format!(
                "harakiri: the thread running {} did not unwind within {:?} of its timeout; \
                 asking the master to replace worker {}",
                line.text(),
                settings.grace,
                settings.worker
            ));
            settings.slot.ask_recycle(Recycle::Harakiri);
            settings.board.ring();
        }
        // The coarse clock may lag a few milliseconds: wake just past the deadline.
        let wait = Duration::from_millis(due.saturating_sub(now).saturating_add(5));
        let mut stopped = stopped.lock();
        if !*stopped {
            wake.wait_for(&mut stopped, wait);
        }
        if *stopped {
            return;
        }
    }
}
