//! What the master learns from its children: loaders' reports (loaded, a
//! failed fork) and exits, and workers' exits, each turned into the next
//! step (respawn with backoff, abandon a reload, or stop when the app
//! cannot load at all).

use std::time::Duration;

use super::loader::{Generation, Report};
use super::workers::WorkerProc;
use super::{describe_status, failed_to_load, Arbiter};
use crate::error::Error;
use crate::log;
use crate::stats::report::Reason;

impl Arbiter {
    pub(super) fn read_reports(&mut self) {
        let mut failed = Vec::new();
        let mut changed = false;
        for generation in &mut self.generations {
            for report in generation.reports() {
                match report {
                    Report::Loaded => {
                        generation.loaded = true;
                        log::info(&format!("generation {}: app loaded", generation.number));
                    }
                    Report::Changed => changed = true,
                    Report::Failed { entry, errno } => failed.push((entry, errno)),
                }
            }
        }
        if changed && self.stopping.is_none() {
            self.begin_reload("a watched file changed (--autoreload, --touch-reload)");
        }
        for (entry, errno) in failed {
            let error = std::io::Error::from_raw_os_error(errno);
            log::error(&format!("fork failed: {error}"));
            if let Some(index) = self.fleet.workers.iter().position(|w| w.entry == entry) {
                let worker = self.fleet.workers.swap_remove(index);
                self.fleet.give_back(entry);
                if self.ever_ready {
                    self.fleet.back_off(worker.id, Duration::ZERO);
                } else {
                    self.exit_error.get_or_insert(Error::system("fork", error));
                    self.stop_gracefully("cannot start a worker");
                }
            }
        }
    }
}

impl Arbiter {
    pub(super) fn reap_children(&mut self) {
        loop {
            let mut status = 0;
            // SAFETY: waitpid writes one int we own.
            let pid = unsafe { libc::waitpid(-1, &raw mut status, libc::WNOHANG) };
            if pid <= 0 {
                return;
            }
            if let Some(index) = self.generations.iter().position(|g| g.pid == pid) {
                let generation = self.generations.remove(index);
                self.loader_ended(&generation, status);
            } else if let Some(worker) = self.fleet.remove(pid, &self.board) {
                if let Some(slot) = self.board.slot(worker.entry) {
                    self.ledger.fold(worker.entry, slot);
                }
                self.worker_ended(&worker, pid, status);
            } else {
                self.ending_loaders.retain(|&ending| ending != pid);
            }
            // Anything else: a loader already let go of, or an orphan of a
            // worker handed to us as the subreaper. Reaped, nothing to do.
        }
    }

    pub(super) fn loader_ended(&mut self, generation: &Generation, status: i32) {
        let number = generation.number;
        let how = describe_status(status);
        if self.stopping.is_some() {
            return;
        }
        if self.is_reloading(number) {
            if failed_to_load(status) {
                self.reload_failed(&format!(
                    "generation {number} could not load the app (traceback above)"
                ));
            } else {
                self.reload_failed(&format!("generation {number}'s loader {how}"));
            }
            return;
        }
        if self.current != Some(number) {
            return;
        }
        if !generation.loaded && !self.ever_ready {
            // The first loader never got the app loaded: nothing can serve.
            if !failed_to_load(status) {
                log::error(&format!("the loader {how} while importing the app"));
            }
            log::error("the app failed to load; stopping");
            self.exit_error = Some(Error::AppLoad(self.config.app_label.clone()));
            self.halt();
            return;
        }
        // The workers serve on; a loader that keeps dying is not restarted
        // more than once a second.
        log::warning(&format!(
            "generation {number}'s loader (pid {}) {how}; starting a new one",
            generation.pid
        ));
        self.current = None;
        self.next_loader_at = std::time::Instant::now() + Duration::from_secs(1);
    }

    pub(super) fn worker_ended(&mut self, worker: &WorkerProc, pid: i32, status: i32) {
        let how = describe_status(status);
        if self.replacing == Some(worker.entry) {
            self.replacing = None;
        }
        if self.stopping.is_some() || worker.retired.is_some() {
            log::info(&format!("worker {} (pid {pid}) {how}", worker.id));
            return;
        }
        if self.is_reloading(worker.generation) {
            self.reload_failed(&format!("a new worker (pid {pid}) {how} before accepting"));
            return;
        }
        log::warning(&format!(
            "worker {} (pid {pid}) {how}; respawning",
            worker.id
        ));
        self.count_restart(if libc::WIFSIGNALED(status) {
            Reason::Signal
        } else {
            Reason::Exit
        });
        if failed_to_load(status) && !self.ever_ready {
            log::error("the app failed to load in a worker; stopping instead of respawning");
            self.exit_error = Some(Error::AppLoad(self.config.app_label.clone()));
            self.halt();
            return;
        }
        self.fleet.back_off(worker.id, worker.started.elapsed());
    }
}
