//! The master process (gunicorn's "arbiter"): binds the listeners, starts a
//! loader per code generation (see `loader.rs`), has it fork the workers,
//! and supervises them: respawn with backoff, graceful stop on SIGINT/SIGTERM
//! (after `--health-drain-delay`), immediate stop on a second SIGINT or on
//! SIGQUIT, reload on SIGHUP, one worker more or fewer on SIGTTIN/SIGTTOU,
//! and recycling (`--max-requests`, `--max-lifetime`, `--reload-on-rss`,
//! `--harakiri-grace`). Every replacement starts the new worker first and
//! retires the old one only once the new one accepts, so capacity never dips.
//!
//! Signal handlers only record the signal (see `signals.rs`); this loop
//! dispatches, with the GIL released while it waits.

mod fork;
mod loader;
mod signals;
mod workers;

use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::time::{Duration, Instant};

use pyo3::prelude::*;
use signal_hook::consts::{SIGHUP, SIGINT, SIGKILL, SIGQUIT, SIGTERM, SIGTTIN, SIGTTOU};

use crate::board::{self, Board};
use crate::config::Config;
use crate::error::{Error, Result};
use crate::log;
use crate::net::{self, BoundAddress, UnixSocketFile};
use crate::worker::EXIT_APP_LOAD;
use loader::{Generation, LoaderContext, Report, SpawnOrder};
use signals::SignalQueue;
use workers::{Fleet, Jitter, WorkerProc};

/// How long the loop sleeps when nothing is scheduled.
const IDLE_TICK: Duration = Duration::from_secs(1);

/// How the master is stopping, once it is.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Stopping {
    /// `--health-drain-delay`: still serving, readiness answering 503.
    Draining { until: Instant },
    Graceful { deadline: Instant },
    Immediate,
}

/// A reload under way: its generation's workers are starting.
struct Reload {
    generation: u64,
}

/// The supervisor.
pub(crate) struct Arbiter {
    config: Config,
    listeners: Vec<BoundAddress>,
    /// Socket files to remove when the master exits.
    unix_files: Vec<UnixSocketFile>,
    app: Option<Py<PyAny>>,
    loader: Option<Py<PyAny>>,
    fleet: Fleet,
    /// Live loaders, oldest first; `current` names the one that forks respawns.
    generations: Vec<Generation>,
    /// Loaders let go of, not reaped yet.
    ending_loaders: Vec<i32>,
    current: Option<u64>,
    reload: Option<Reload>,
    /// The entry of the worker started to replace another (one at a time).
    replacing: Option<usize>,
    next_generation: u64,
    /// Some worker has accepted connections since the start.
    ever_ready: bool,
    jitter: Jitter,
    /// Where workers publish their state (mapped before any fork).
    board: Board,
    /// The board's doorbell, rung by workers that changed their entry.
    doorbell: OwnedFd,
    stopping: Option<Stopping>,
    exit_error: Option<Error>,
}

fn kill(pid: i32, signal: i32) {
    // SAFETY: kill takes plain integers.
    unsafe {
        libc::kill(pid, signal);
    }
}

fn describe_status(status: i32) -> String {
    if libc::WIFEXITED(status) {
        format!("exited with status {}", libc::WEXITSTATUS(status))
    } else if libc::WIFSIGNALED(status) {
        let signal = libc::WTERMSIG(status);
        let name = signal_hook::low_level::signal_name(signal).unwrap_or("?");
        format!("was killed by signal {signal} ({name})")
    } else {
        format!("ended with wait status {status}")
    }
}

fn failed_to_load(status: i32) -> bool {
    libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == EXIT_APP_LOAD
}

fn python_version(py: Python<'_>) -> String {
    let version = py.version_info();
    format!("{}.{}.{}", version.major, version.minor, version.patch)
}

/// Orphaned descendants (the workers, handed over by their loader's
/// intermediate process) become the master's children.
fn become_subreaper() -> Result<()> {
    #[cfg(target_os = "linux")]
    // SAFETY: prctl with PR_SET_CHILD_SUBREAPER takes an integer flag.
    if unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1) } != 0 {
        return Err(Error::system(
            "becoming the workers' reaper",
            std::io::Error::last_os_error(),
        ));
    }
    Ok(())
}

impl Arbiter {
    /// Bind every listener; nothing is forked yet.
    pub(crate) fn new(
        config: Config,
        app: Option<Py<PyAny>>,
        loader: Option<Py<PyAny>>,
    ) -> Result<Self> {
        let mut listeners = Vec::new();
        let mut unix_files = Vec::new();
        for spec in &config.listeners {
            match net::bind(spec, config.workers, &config) {
                Ok((bound, file)) => {
                    listeners.push(bound);
                    unix_files.extend(file);
                }
                Err(error) => {
                    unix_files.iter().for_each(UnixSocketFile::remove);
                    return Err(error);
                }
            }
        }
        let (board, doorbell) = Board::new(board::MAX_SLOTS)
            .map_err(|error| Error::system("mapping the workers' board", error))?;
        Ok(Self {
            fleet: Fleet::new(config.workers, board.capacity()),
            config,
            listeners,
            unix_files,
            app,
            loader,
            generations: Vec::new(),
            ending_loaders: Vec::new(),
            current: None,
            reload: None,
            replacing: None,
            next_generation: 1,
            ever_ready: false,
            jitter: Jitter::new(),
            board,
            doorbell,
            stopping: None,
            exit_error: None,
        })
    }

    fn banner(&self, py: Python<'_>) {
        log::info(&format!(
            "rwsgi {} (Python {}) serving {}",
            env!("CARGO_PKG_VERSION"),
            python_version(py),
            self.config.app_label
        ));
        for listener in &self.listeners {
            log::info(&format!("listening on {}", listener.url()));
        }
        log::info(&format!(
            "master pid {}: {} worker(s) x {} thread(s), app {}, backlog {}",
            std::process::id(),
            self.config.workers,
            self.config.threads,
            if self.config.preload || self.app.is_some() {
                "preloaded"
            } else {
                "loaded in each worker"
            },
            self.config.backlog
        ));
    }

    /// Supervise until stopped; the error, if any, says why the master gave up.
    pub(crate) fn run(mut self, py: Python<'_>) -> Result<()> {
        self.banner(py);
        become_subreaper()?;
        let previous = python_handlers(py).map_err(|e| {
            Error::system(
                "resetting Python's signal handlers",
                std::io::Error::other(e.to_string()),
            )
        })?;
        let mut signals = SignalQueue::install()?;
        let outcome = self.supervise(py, &mut signals);
        signals.forget_in_child_or_master();
        restore_python_handlers(py, previous);
        self.listeners.clear();
        for file in &self.unix_files {
            file.remove();
        }
        outcome
    }

    fn supervise(&mut self, py: Python<'_>, signals: &mut SignalQueue) -> Result<()> {
        loop {
            if !matches!(
                self.stopping,
                Some(Stopping::Graceful { .. } | Stopping::Immediate)
            ) {
                if let Err(error) = self.manage_workers(py, signals) {
                    // Returning now would leave the workers already forked
                    // running, unsignalled and unreaped.
                    log::error(&format!("{error}; stopping the workers"));
                    self.exit_error = Some(error);
                    self.stop_gracefully("cannot start a worker");
                }
            }
            if matches!(self.stopping, Some(Stopping::Graceful { .. })) {
                self.tell_workers_to_stop();
            }
            if self.stopping.is_some()
                && self.fleet.workers.is_empty()
                && self.generations.is_empty()
                && self.ending_loaders.is_empty()
            {
                break;
            }
            let timeout = self.next_wake();
            let mut polled: Vec<RawFd> = vec![self.doorbell.as_raw_fd()];
            polled.extend(self.generations.iter().map(Generation::fd));
            let received = py.detach(|| signals.wait(timeout, &polled));
            board::drain_rings(&self.doorbell);
            for signal in received {
                self.dispatch(signal);
            }
            self.read_reports();
            self.reap_children();
            self.check_deadlines();
        }
        log::info("master stopped");
        match self.exit_error.take() {
            Some(error) => Err(error),
            None => Ok(()),
        }
    }

    fn next_wake(&self) -> Duration {
        let now = Instant::now();
        let mut wake = now + IDLE_TICK;
        if self.stopping.is_none() {
            for position in &self.fleet.positions {
                wake = wake.min(position.respawn_at);
            }
            for due in self.fleet.active().filter_map(|worker| worker.due) {
                wake = wake.min(due);
            }
        }
        match self.stopping {
            Some(Stopping::Graceful { deadline }) => wake = wake.min(deadline),
            Some(Stopping::Draining { until }) => wake = wake.min(until),
            _ => {}
        }
        if self.fleet.workers.iter().any(|worker| !worker.ready || worker.pid.is_none()) {
            // Readiness and pids arrive through the board; the doorbell
            // wakes us for most of it, this bounds the rest.
            wake = wake.min(now + Duration::from_millis(50));
        }
        wake.saturating_duration_since(now)
            .max(Duration::from_millis(1))
    }

    fn dispatch(&mut self, signal: i32) {
        match signal {
            SIGINT if self.stopping.is_some() => {
                log::info("second SIGINT: stopping at once");
                self.halt();
            }
            SIGTERM if matches!(self.stopping, Some(Stopping::Draining { .. })) => {
                self.stop_gracefully("second SIGTERM");
            }
            SIGINT | SIGTERM => {
                let name = signal_hook::low_level::signal_name(signal).unwrap_or("signal");
                self.begin_stop(name);
            }
            SIGQUIT => {
                log::info("SIGQUIT: stopping at once");
                self.halt();
            }
            SIGHUP if self.stopping.is_none() => self.begin_reload(),
            SIGTTIN if self.stopping.is_none() => {
                self.fleet.add_position();
                log::info(&format!(
                    "SIGTTIN: {} worker(s) from now on",
                    self.fleet.positions.len()
                ));
            }
            SIGTTOU if self.stopping.is_none() => self.remove_position(),
            _ => {}
        }
    }

    /// SIGTERM/SIGINT: drain first when `--health-drain-delay` asks.
    fn begin_stop(&mut self, why: &str) {
        if self.stopping.is_some() {
            return;
        }
        let delay = self.config.health_drain_delay;
        if delay.is_zero() {
            self.stop_gracefully(why);
            return;
        }
        log::info(&format!(
            "{why}: readiness answers 503 for {delay:?} (--health-drain-delay), then stopping"
        ));
        self.board.set_draining(true);
        self.stopping = Some(Stopping::Draining {
            until: Instant::now() + delay,
        });
    }

    /// Stop accepting, let workers drain for up to the graceful timeout;
    /// `why` starts the log line.
    fn stop_gracefully(&mut self, why: &str) {
        if matches!(
            self.stopping,
            Some(Stopping::Graceful { .. } | Stopping::Immediate)
        ) {
            return;
        }
        log::info(&format!(
            "{why}: stopping gracefully (in-flight requests get {:?})",
            self.config.graceful_timeout
        ));
        self.board.set_draining(true);
        self.stopping = Some(Stopping::Graceful {
            deadline: Instant::now() + self.config.graceful_timeout + Duration::from_secs(1),
        });
        self.listeners.clear();
        self.let_go_of_loaders(|_| true);
        self.tell_workers_to_stop();
    }

    /// SIGTERM to every worker not told yet (some pids arrive late).
    fn tell_workers_to_stop(&mut self) {
        self.fleet.learn_pids(&self.board);
        for worker in &mut self.fleet.workers {
            if let (false, Some(pid)) = (worker.told, worker.pid) {
                worker.told = true;
                kill(pid, SIGTERM);
            }
        }
    }

    /// Kill every worker and loader now.
    fn halt(&mut self) {
        self.stopping = Some(Stopping::Immediate);
        self.listeners.clear();
        for pid in self.generations.iter().map(|g| g.pid).chain(self.ending_loaders.iter().copied()) {
            kill(pid, SIGKILL);
        }
        self.fleet.learn_pids(&self.board);
        for pid in self.fleet.workers.iter().filter_map(|worker| worker.pid) {
            kill(pid, SIGKILL);
        }
    }

    fn check_deadlines(&mut self) {
        let now = Instant::now();
        match self.stopping {
            Some(Stopping::Graceful { deadline }) if now >= deadline => {
                log::warning("graceful timeout passed; killing the remaining workers");
                self.halt();
            }
            Some(Stopping::Draining { until }) if now >= until => {
                self.stop_gracefully("--health-drain-delay passed");
            }
            _ => {}
        }
        let limit = self.config.graceful_timeout + Duration::from_secs(1);
        for worker in &self.fleet.workers {
            if let (Some(since), Some(pid)) = (worker.retired, worker.pid) {
                if since.elapsed() > limit {
                    log::warning(&format!(
                        "worker {} (pid {pid}) still retiring after the graceful timeout; killing it",
                        worker.id
                    ));
                    kill(pid, SIGKILL);
                }
            }
        }
    }
}

impl Arbiter {
    /// Start generation `next_generation`'s loader.
    fn start_generation(&mut self, py: Python<'_>, signals: &mut SignalQueue) -> Result<u64> {
        let number = self.next_generation;
        self.next_generation += 1;
        let master = i32::try_from(std::process::id()).unwrap_or(0);
        let generation = Generation::start(py, number, |link| {
            // What the master holds that a loader must not: the signal
            // handlers, other loaders' links, the doorbell's read end.
            signals.forget_in_child_or_master();
            self.generations.clear();
            self.unix_files.clear();
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
    fn let_go_of_loaders(&mut self, mut which: impl FnMut(&Generation) -> bool) {
        let (gone, kept): (Vec<Generation>, Vec<Generation>) =
            std::mem::take(&mut self.generations).into_iter().partition(|g| which(g));
        self.generations = kept;
        self.ending_loaders.extend(gone.iter().map(|g| g.pid));
    }

    fn generation_mut(&mut self, number: u64) -> Option<&mut Generation> {
        self.generations.iter_mut().find(|g| g.number == number)
    }

    /// Order a worker for position `id` from generation `number`'s loader.
    fn spawn_worker(&mut self, number: u64, id: usize) -> Result<()> {
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
            let jitter_ms = u64::try_from(self.config.max_lifetime_jitter.as_millis())
                .unwrap_or(u64::MAX);
            Instant::now()
                + self.config.max_lifetime
                + Duration::from_millis(self.jitter.upto(jitter_ms))
        });
        let Some(generation) = self.generation_mut(number) else {
            self.fleet.give_back(entry);
            return Ok(());
        };
        if let Err(error) = generation.order(&order) {
            log::warning(&format!("generation {number}: cannot order a worker: {error}"));
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
        });
        Ok(())
    }

    /// Tell a worker to finish what it has and exit (it stops accepting at once).
    fn retire(board: &Board, worker: &mut WorkerProc) {
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

    fn retire_where(&mut self, mut which: impl FnMut(&WorkerProc) -> bool) {
        for worker in &mut self.fleet.workers {
            if worker.retired.is_none() && which(worker) {
                Self::retire(&self.board, worker);
            }
        }
    }

    fn manage_workers(&mut self, py: Python<'_>, signals: &mut SignalQueue) -> Result<()> {
        self.fleet.learn_pids(&self.board);
        // A retired worker whose pid was not known yet gets its SIGTERM now.
        for worker in &mut self.fleet.workers {
            if worker.retired.is_some() && !worker.told {
                Self::retire(&self.board, worker);
            }
        }
        self.note_ready_workers();
        if self.reload.as_ref().is_some_and(|r| r.generation == 0) {
            match self.start_generation(py, signals) {
                Ok(number) => self.reload = Some(Reload { generation: number }),
                Err(error) => {
                    log::error(&format!("reload failed: {error}; the old workers keep serving"));
                    self.reload = None;
                }
            }
        }
        if self.current.is_none() && self.reload.is_none() {
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
            .filter(|&id| !self.fleet.is_filled(id) && self.fleet.positions[id - 1].respawn_at <= now)
            .collect();
        for id in empty {
            self.spawn_worker(current, id)?;
        }
        self.recycle_one(current);
        Ok(())
    }

    fn note_ready_workers(&mut self) {
        let mut replaced = None;
        for worker in self.fleet.workers.iter_mut().filter(|w| !w.ready) {
            if self.board.slot(worker.entry).is_some_and(|slot| slot.is_serving()) {
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
        }
    }

    /// Start one replacement for a worker that is due (lifetime) or asked
    /// (max-requests, rss, harakiri); one at a time, so they never all go.
    fn recycle_one(&mut self, current: u64) {
        if self.replacing.is_some() || self.reload.is_some() {
            return;
        }
        let now = Instant::now();
        let due = self.fleet.active().find_map(|worker| {
            if worker.generation != current || !worker.ready {
                return None;
            }
            let asked = self.board.slot(worker.entry).and_then(|slot| slot.recycle_asked());
            let why = match (asked, worker.due) {
                (Some(why), _) => why.describe(),
                (None, Some(due)) if due <= now => "it reached --max-lifetime",
                _ => return None,
            };
            Some((worker.id, worker.pid, why))
        });
        let Some((id, pid, why)) = due else {
            return;
        };
        log::info(&format!(
            "worker {id} (pid {}): {why}; starting its replacement",
            pid.unwrap_or(0)
        ));
        let entry_before = self.fleet.workers.len();
        if self.spawn_worker(current, id).is_ok() && self.fleet.workers.len() > entry_before {
            self.replacing = self.fleet.workers.last().map(|w| w.entry);
        }
    }

    /// SIGTTOU: retire the highest position's worker.
    fn remove_position(&mut self) {
        if self.fleet.positions.len() <= 1 {
            log::info("SIGTTOU: already at one worker");
            return;
        }
        self.fleet.positions.pop();
        let count = self.fleet.positions.len();
        self.retire_where(|worker| worker.id > count);
        log::info(&format!("SIGTTOU: {count} worker(s) from now on"));
    }
}

impl Arbiter {
    /// SIGHUP: a new generation loads the code; its workers start beside the
    /// old ones, which retire once every new one accepts.
    fn begin_reload(&mut self) {
        if let Some(previous) = self.reload.take() {
            log::info(&format!(
                "SIGHUP during a reload: generation {} is abandoned",
                previous.generation
            ));
            self.abandon(previous.generation);
        }
        log::info("SIGHUP: reloading (new workers start before the old ones retire)");
        // Started from the loop (it needs the signal queue): mark it.
        self.reload = Some(Reload { generation: 0 });
    }

    /// Retire a generation's workers and end its loader.
    fn abandon(&mut self, number: u64) {
        self.retire_where(|worker| worker.generation == number);
        self.let_go_of_loaders(|g| g.number == number);
    }

    fn advance_reload(&mut self) {
        let Some(reload) = &self.reload else {
            return;
        };
        let number = reload.generation;
        let Some(generation) = self.generations.iter().find(|g| g.number == number) else {
            return;
        };
        if !generation.loaded {
            return;
        }
        let news: Vec<&WorkerProc> = self.fleet.workers.iter().filter(|w| w.generation == number).collect();
        if news.is_empty() {
            for id in 1..=self.fleet.positions.len() {
                if let Err(error) = self.spawn_worker(number, id) {
                    log::error(&format!("reload: {error}; the old workers keep serving"));
                    self.reload = None;
                    self.abandon(number);
                    return;
                }
            }
            return;
        }
        if news.len() < self.fleet.positions.len() || news.iter().any(|w| !w.ready) {
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
        self.retire_where(|worker| worker.generation != number);
        self.let_go_of_loaders(|g| g.number != number);
        self.current = Some(number);
        self.replacing = None;
        log::info(&format!(
            "reload: generation {number} serves; generation(s) {old:?} retiring"
        ));
    }

    fn read_reports(&mut self) {
        let mut failed = Vec::new();
        for generation in &mut self.generations {
            for report in generation.reports() {
                match report {
                    Report::Loaded => {
                        generation.loaded = true;
                        log::info(&format!("generation {}: app loaded", generation.number));
                    }
                    Report::Failed { entry, errno } => failed.push((entry, errno)),
                }
            }
        }
        for (entry, errno) in failed {
            let error = std::io::Error::from_raw_os_error(errno);
            log::error(&format!("fork failed: {error}"));
            if let Some(index) = self.fleet.workers.iter().position(|w| w.entry == entry) {
                let worker = self.fleet.workers.swap_remove(index);
                self.fleet.give_back(entry);
                if !self.ever_ready {
                    self.exit_error.get_or_insert(Error::system("fork", error));
                    self.stop_gracefully("cannot start a worker");
                } else {
                    self.fleet.back_off(worker.id, Duration::ZERO);
                }
            }
        }
    }
}

impl Arbiter {
    fn reap_children(&mut self) {
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
                self.worker_ended(&worker, pid, status);
            } else {
                self.ending_loaders.retain(|&ending| ending != pid);
            }
            // Anything else: a loader already let go of, or an orphan of a
            // worker handed to us as the subreaper. Reaped, nothing to do.
        }
    }

    fn loader_ended(&mut self, generation: &Generation, status: i32) {
        let number = generation.number;
        let how = describe_status(status);
        if self.stopping.is_some() {
            return;
        }
        if self.reload.as_ref().is_some_and(|r| r.generation == number) {
            self.reload = None;
            self.abandon(number);
            if failed_to_load(status) {
                log::error(&format!(
                    "reload failed: generation {number} could not load the app (traceback above); the old workers keep serving"
                ));
            } else {
                log::error(&format!(
                    "reload failed: generation {number}'s loader {how}; the old workers keep serving"
                ));
            }
            return;
        }
        if self.current != Some(number) {
            return;
        }
        if failed_to_load(status) && !self.ever_ready {
            log::error("the app failed to load; stopping");
            self.exit_error = Some(Error::AppLoad(self.config.app_label.clone()));
            self.halt();
            return;
        }
        log::warning(&format!(
            "generation {number}'s loader (pid {}) {how}; starting a new one",
            generation.pid
        ));
        self.current = None;
    }

    fn worker_ended(&mut self, worker: &WorkerProc, pid: i32, status: i32) {
        let how = describe_status(status);
        if self.stopping.is_some() || worker.retired.is_some() {
            log::info(&format!("worker {} (pid {pid}) {how}", worker.id));
            return;
        }
        if self.replacing == Some(worker.entry) {
            self.replacing = None;
        }
        if self.reload.as_ref().is_some_and(|r| r.generation == worker.generation) {
            let number = worker.generation;
            log::error(&format!(
                "reload failed: a new worker (pid {pid}) {how} before accepting; the old workers keep serving"
            ));
            self.reload = None;
            self.abandon(number);
            return;
        }
        log::warning(&format!("worker {} (pid {pid}) {how}; respawning", worker.id));
        if failed_to_load(status) && !self.ever_ready {
            log::error("the app failed to load in a worker; stopping instead of respawning");
            self.exit_error = Some(Error::AppLoad(self.config.app_label.clone()));
            self.halt();
            return;
        }
        self.fleet.back_off(worker.id, worker.started.elapsed());
    }
}

/// Reset Python's own handlers to the default so they don't also fire, remembering them.
fn python_handlers(py: Python<'_>) -> PyResult<Vec<(i32, Py<PyAny>)>> {
    let module = py.import("signal")?;
    let default = module.getattr("SIG_DFL")?;
    let mut previous = Vec::new();
    for signal in signals::HANDLED {
        let old = module.getattr("getsignal")?.call1((signal,))?;
        module.getattr("signal")?.call1((signal, &default))?;
        previous.push((signal, old.unbind()));
    }
    Ok(previous)
}

fn restore_python_handlers(py: Python<'_>, previous: Vec<(i32, Py<PyAny>)>) {
    let Ok(module) = py.import("signal") else {
        return;
    };
    for (signal, handler) in previous {
        let handler = if handler.is_none(py) {
            module
                .getattr("SIG_DFL")
                .map(Bound::unbind)
                .unwrap_or(handler)
        } else {
            handler
        };
        let _ = module
            .getattr("signal")
            .and_then(|set| set.call1((signal, handler)));
    }
}
