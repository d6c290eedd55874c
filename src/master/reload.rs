//! SIGHUP: a new generation loads the code; its workers start beside the
//! old ones, which retire once every new one accepts. A generation whose
//! loader or workers fail before that is abandoned and the old one serves on.

use super::workers::WorkerProc;
use super::{Arbiter, Reload};
use crate::log;

impl Arbiter {
    /// SIGHUP: a new generation loads the code; its workers start beside the
    /// old ones, which retire once every new one accepts.
    /// `cause` names what asked, for the log.
    pub(super) fn begin_reload(&mut self, cause: &str) {
        if let Some(Reload::Loading(previous)) = self.reload.take() {
            log::info(&format!(
                "{cause} during a reload: generation {previous} is abandoned"
            ));
            self.abandon(previous);
        }
        log::info(&format!(
            "{cause}: reloading (new workers start before the old ones retire)"
        ));
        self.notifier.reloading();
        self.reload = Some(Reload::Asked);
    }

    /// Retire a generation's workers and end its loader.
    pub(super) fn abandon(&mut self, number: u64) {
        self.retire_where(|worker| worker.generation == number);
        self.let_go_of_loaders(|g| g.number == number);
    }

    pub(super) fn advance_reload(&mut self) {
        let Some(Reload::Loading(number)) = self.reload else {
            return;
        };
        let Some(generation) = self.generations.iter().find(|g| g.number == number) else {
            return;
        };
        if !generation.loaded {
            return;
        }
        // One new worker per position (positions may change meanwhile).
        let missing: Vec<usize> = (1..=self.fleet.positions.len())
            .filter(|&id| {
                !self
                    .fleet
                    .active()
                    .any(|w| w.generation == number && w.id == id)
            })
            .collect();
        for id in &missing {
            if let Err(error) = self.spawn_worker(number, *id) {
                self.reload_failed(&error.to_string());
                return;
            }
        }
        let waiting = self
            .fleet
            .active()
            .any(|w: &WorkerProc| w.generation == number && !w.ready);
        if !missing.is_empty() || waiting {
            return;
        }
        // Every new worker accepts: the old ones go.
        self.reload = None;
        let old: Vec<u64> = self
            .generations
            .iter()
            .map(|g| g.number)
            .filter(|&g| g != number)
            .collect();
        let replaced = self
            .fleet
            .active()
            .filter(|worker| worker.generation != number)
            .count();
        for _ in 0..replaced {
            self.count_restart(crate::stats::report::Reason::Reload);
        }
        self.retire_where(|worker| worker.generation != number);
        self.let_go_of_loaders(|g| g.number != number);
        self.current = Some(number);
        self.notifier.ready(&self.status_line());
        self.replacing = None;
        log::info(&format!(
            "reload: generation {number} serves; generation(s) {old:?} retiring"
        ));
    }

    /// Give up the reload under way: its generation (if started) is
    /// abandoned, the old workers serve on, systemd hears we are ready again.
    pub(super) fn reload_failed(&mut self, why: &str) {
        log::error(&format!(
            "reload failed: {why}; the old workers keep serving"
        ));
        if let Some(Reload::Loading(number)) = self.reload.take() {
            self.abandon(number);
        }
        self.notifier.ready(&self.status_line());
    }
}
