//! Keeping the wanted workers running: start a generation's loader, order
//! workers from it for empty positions, notice which accept, and replace a
//! worker that is due for recycling (one at a time, its successor first).

use std::time::{Duration, Instant};

use pyo3::prelude::*;
use signal_hook::consts::SIGTERM;

use super::loader::{self, Generation, LoaderContext, SpawnOrder};
use super::signals::SignalQueue;
use super::workers::WorkerProc;
use super::{kill, Arbiter, Reload};
use crate::board::{Board, Slot};
use crate::error::{Error, Result};
use crate::log;
use crate::stats::report::Reason;

impl Arbiter {
    /// Start generation `next_generation`'s loader.
    pub(super) fn start_generation(
        &mut self,
        py: Python<'_>,
        signals: &mut SignalQueue,
    ) -> Result<u64> {
        let number = self.next_generation;
        self.next_generation += 1;
        let master = i32::try_from(std::process::id()).unwrap_or(0);
        let generation = Generation::start(py, number, |link| {
            // What the master holds that a loader must not: its signal
            // handlers, other loaders' links (each loader must see its
            // own close), the socket files to remove at exit.
            signals.forget_in_child_or_master();
            self.generations.clear();
            self.unix_files.clear();
            // Closed here, so no worker holds the stats socket.
            self.stats_server = None;
            let context = LoaderContext {
                config: &self.config,
                listeners: &mut self.listeners,
                app: self.app.take(),
                loader: self.loader.take(),
                board: self.board,
                master,
                number,
                exits: Vec::new(),
            };
            loader::run(py, context, link)
        })?;
        log::info(&format!(
            "generation {number}: loader pid {} {}",
            generation.pid,
            if self.config.preload && self.app.is_none() {
                "importing the app"
            } else {
                "started"
            }
        ));
        self.generations.push(generation);
        Ok(number)
    }

    /// End the loaders `which` picks: closing its link ends a loader; the
    /// master still reaps it before it exits itself.
    pub(super) fn let_go_of_loaders(&mut self, mut which: impl FnMut(&Generation) -> bool) {
        let (gone, kept): (Vec<Generation>, Vec<Generation>) =
            std::mem::take(&mut self.generations)
                .into_iter()
                .partition(|g| which(g));
        self.generations = kept;
        self.ending_loaders.extend(gone.iter().map(|g| g.pid));
    }

    pub(super) fn generation_mut(&mut self, number: u64) -> Option<&mut Generation> {
        self.generations.iter_mut().find(|g| g.number == number)
    }

    /// Order a worker for position `id` from generation `number`'s loader.
    pub(super) fn spawn_worker(&mut self, number: u64, id: usize) -> Result<()> {
        let Some(entry) = self.fleet.take_entry(&self.board) else {
            return Err(Error::system(
                "starting a worker",
                std::io::Error::other("every entry of the workers' board is in use"),
            ));
        };
        let max_requests = match self.config.max_requests {
            0 => 0,
            most => most + self.jitter.upto(self.config.max_requests_jitter),
        };
        let order = SpawnOrder {
            id,
            entry,
            workers: self.fleet.positions.len(),
            max_requests,
        };
        let due = (!self.config.max_lifetime.is_zero()).then(|| {
            let jitter_ms =
                u64::try_from(self.config.max_lifetime_jitter.as_millis()).unwrap_or(u64::MAX);
            Instant::now()
                + self.config.max_lifetime
                + Duration::from_millis(self.jitter.upto(jitter_ms))
        });
        let Some(generation) = self.generation_mut(number) else {
            self.fleet.give_back(entry);
            return Ok(());
        };
        if let Err(error) = generation.order(&order) {
            log::warning(&format!(
                "generation {number}: cannot order a worker: {error}"
            ));
            self.fleet.give_back(entry);
            return Ok(());
        }
        self.fleet.workers.push(WorkerProc {
            id,
            entry,
            pid: None,
            generation: number,
            started: Instant::now(),
            ready: false,
            retired: None,
            told: false,
            due,
            spawned_at: super::stats::epoch_seconds(),
        });
        if let Some(position) = self.fleet.positions.get_mut(id.wrapping_sub(1)) {
            position.spawns += 1;
        }
        Ok(())
    }

    /// Tell a worker to finish what it has and exit (it stops accepting at once).
    pub(super) fn retire(board: &Board, worker: &mut WorkerProc) {
        if worker.retired.is_none() {
            worker.retired = Some(Instant::now());
            if let Some(slot) = board.slot(worker.entry) {
                slot.set_retiring();
            }
        }
        if let (false, Some(pid)) = (worker.told, worker.pid) {
            worker.told = true;
            kill(pid, SIGTERM);
        }
    }

    pub(super) fn retire_where(&mut self, mut which: impl FnMut(&WorkerProc) -> bool) {
        for worker in &mut self.fleet.workers {
            if worker.retired.is_none() && which(worker) {
                Self::retire(&self.board, worker);
            }
        }
    }

    pub(super) fn manage_workers(
        &mut self,
        py: Python<'_>,
        signals: &mut SignalQueue,
    ) -> Result<()> {
        self.fleet.learn_pids(&self.board);
        // A retired worker whose pid was not known yet gets its SIGTERM now.
        for worker in &mut self.fleet.workers {
            if worker.retired.is_some() && !worker.told {
                Self::retire(&self.board, worker);
            }
        }
        self.note_ready_workers();
        if self.reload == Some(Reload::Asked) {
            match self.start_generation(py, signals) {
                Ok(number) => self.reload = Some(Reload::Loading(number)),
                Err(error) => self.reload_failed(&error.to_string()),
            }
        }
        if self.current.is_none() && self.reload.is_none() && Instant::now() >= self.next_loader_at
        {
            let number = self.start_generation(py, signals)?;
            self.current = Some(number);
        }
        self.advance_reload();
        let Some(current) = self.current else {
            return Ok(());
        };
        if !self.generation_mut(current).is_some_and(|g| g.loaded) {
            return Ok(());
        }
        let now = Instant::now();
        let empty: Vec<usize> = (1..=self.fleet.positions.len())
            .filter(|&id| {
                !self.fleet.is_filled(id) && self.fleet.positions[id - 1].respawn_at <= now
            })
            .collect();
        for id in empty {
            self.spawn_worker(current, id)?;
        }
        self.recycle_one(current);
        Ok(())
    }

    pub(super) fn note_ready_workers(&mut self) {
        let mut replaced = None;
        for worker in self.fleet.workers.iter_mut().filter(|w| !w.ready) {
            if self.board.slot(worker.entry).is_some_and(Slot::is_serving) {
                worker.ready = true;
                if self.replacing == Some(worker.entry) {
                    replaced = Some((worker.id, worker.entry));
                }
            }
        }
        if let Some((id, entry)) = replaced {
            // The replacement accepts: its predecessor goes.
            self.replacing = None;
            self.retire_where(|old| old.id == id && old.entry != entry);
        }
        let ready = self.fleet.workers.iter().filter(|w| w.ready).count();
        if !self.ever_ready && ready >= self.fleet.positions.len() {
            self.ever_ready = true;
            self.notifier.ready(&self.status_line());
        }
    }

    /// Start one replacement for a worker that is due (lifetime) or asked
    /// (max-requests, rss, harakiri); one at a time, so they never all go.
    pub(super) fn recycle_one(&mut self, current: u64) {
        if self.replacing.is_some() || self.reload.is_some() {
            return;
        }
        let now = Instant::now();
        let due = self.fleet.active().find_map(|worker| {
            // Any generation's: after a loader died, its workers live on.
            if !worker.ready {
                return None;
            }
            let asked = self.board.slot(worker.entry).and_then(Slot::recycle_asked);
            let (why, reason) = match (asked, worker.due) {
                (Some(why), _) => (why.describe(), Reason::from(why)),
                (None, Some(due)) if due <= now => ("it reached --max-lifetime", Reason::Lifetime),
                _ => return None,
            };
            let served = self.board.slot(worker.entry).map_or(0, Slot::requests);
            Some((worker.id, worker.pid, why, served, reason))
        });
        let Some((id, pid, why, served, reason)) = due else {
            return;
        };
        self.count_restart(reason);
        log::info(&format!(
            "worker {id} (pid {}, {served} requests served): {why}; starting its replacement",
            pid.unwrap_or(0)
        ));
        let entry_before = self.fleet.workers.len();
        if self.spawn_worker(current, id).is_ok() && self.fleet.workers.len() > entry_before {
            self.replacing = self.fleet.workers.last().map(|w| w.entry);
        }
    }

    /// SIGTTOU: retire the highest position's worker.
    pub(super) fn remove_position(&mut self) {
        if self.fleet.positions.len() <= 1 {
            log::info("SIGTTOU: already at one worker");
            return;
        }
        self.fleet.positions.pop();
        let count = self.fleet.positions.len();
        self.retire_where(|worker| worker.id > count);
        log::info(&format!("SIGTTOU: {count} worker(s) from now on"));
        self.notifier.status(&self.status_line());
    }
}
