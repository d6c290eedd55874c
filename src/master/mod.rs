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
mod manage;
mod pidfile;
mod privileges;
mod reap;
mod reload;
mod signals;
mod stats;
mod systemd;
mod workers;

use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::time::{Duration, Instant};

use pyo3::prelude::*;
use signal_hook::consts::{SIGHUP, SIGINT, SIGKILL, SIGQUIT, SIGTERM, SIGTTIN, SIGTTOU, SIGUSR1};

use crate::board::{self, Board};
use crate::config::Config;
use crate::error::{Error, Result};
use crate::log;
use crate::net::{self, BoundAddress, UnixSocketFile};
use crate::proctitle;
use crate::stats::report::Ledger;
use crate::stats::server::StatsServer;
use crate::worker::EXIT_APP_LOAD;
use loader::Generation;
use signals::SignalQueue;
use workers::{Fleet, Jitter};

/// Most workers SIGTTIN reaches: a reload needs a board entry for every
/// old and every new worker at once.
const MAX_WORKERS: usize = board::MAX_SLOTS / 2 - 1;
/// How long the loop sleeps when nothing is scheduled.
const IDLE_TICK: Duration = Duration::from_secs(1);

/// How the master is stopping, once it is.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Stopping {
    /// `--health-drain-delay`: still serving, readiness answering 503.
    Draining {
        until: Instant,
    },
    Graceful {
        deadline: Instant,
    },
    Immediate,
}

/// A reload under way.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Reload {
    /// SIGHUP came; the loop starts the generation (forking needs the
    /// signal queue, which the dispatcher does not hold).
    Asked,
    /// This generation is loading or starting its workers.
    Loading(u64),
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
    /// No new loader is started before this (after one died).
    next_loader_at: Instant,
    /// Some worker has accepted connections since the start.
    ever_ready: bool,
    jitter: Jitter,
    /// Where workers publish their state (mapped before any fork).
    board: Board,
    /// The board's doorbell, rung by workers that changed their entry.
    doorbell: OwnedFd,
    stopping: Option<Stopping>,
    exit_error: Option<Error>,
    /// Tells systemd how the master is doing (no-op without NOTIFY_SOCKET).
    notifier: systemd::Notifier,
    /// When the next `WATCHDOG=1` is due, if systemd set a watchdog.
    watchdog: Option<systemd::Watchdog>,
    /// Removed when the master (the Arbiter) is dropped.
    _pidfile: Option<pidfile::Pidfile>,
    /// `--stats`, when given (bound with the listeners, never inherited).
    stats_server: Option<StatsServer>,
    /// What the stats keep across worker lives.
    ledger: Ledger,
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
        if let Some(path) = &config.pidfile {
            pidfile::check(path)?;
        }
        let (listeners, unix_files) = net::listen(&config, config.workers)?;
        let stats_server = match config
            .stats
            .as_ref()
            .map(|address| StatsServer::bind(address, config.stats_http, &config))
        {
            Some(Err(error)) => {
                unix_files.iter().for_each(UnixSocketFile::remove);
                return Err(error);
            }
            Some(Ok(server)) => Some(server),
            None => None,
        };
        let pidfile = match config.pidfile.as_deref().map(pidfile::Pidfile::create) {
            Some(Err(error)) => {
                unix_files.iter().for_each(UnixSocketFile::remove);
                if let Some(server) = &stats_server {
                    server.remove_file();
                }
                return Err(error);
            }
            Some(Ok(pidfile)) => Some(pidfile),
            None => None,
        };
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
            next_loader_at: Instant::now(),
            ever_ready: false,
            jitter: Jitter::new(),
            board,
            doorbell,
            stopping: None,
            exit_error: None,
            notifier: systemd::Notifier::new(),
            watchdog: None,
            _pidfile: pidfile,
            stats_server,
            ledger: Ledger::starting_at(crate::stats::kernel::listen_overflows()),
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
            log::info(&listener.listening_line());
        }
        if let Some(server) = &self.stats_server {
            log::info(&server.describe());
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
        proctitle::set(&format!("rwsgi: master [{}]", self.config.app_label));
        self.banner(py);
        self.watchdog = systemd::Watchdog::new(self.notifier.watchdog_interval());
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
        if let Some(server) = self.stats_server.take() {
            server.remove_file();
        }
        proctitle::restore();
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
            if let Some(server) = &self.stats_server {
                polled.extend(server.fds());
            }
            let received = py.detach(|| signals.wait(timeout, &polled));
            board::drain_rings(&self.doorbell);
            for signal in received {
                self.dispatch(signal);
            }
            self.read_reports();
            self.reap_children();
            self.serve_stats();
            self.check_deadlines();
            if let Some(watchdog) = &mut self.watchdog {
                watchdog.tick(&self.notifier);
            }
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
            // Only an empty position waits for its respawn time: a filled
            // one's is in the past, and would wake the loop every 1 ms.
            for (index, position) in self.fleet.positions.iter().enumerate() {
                if !self.fleet.is_filled(index + 1) {
                    wake = wake.min(position.respawn_at);
                }
            }
            for due in self.fleet.active().filter_map(|worker| worker.due) {
                wake = wake.min(due);
            }
            if self.current.is_none() {
                wake = wake.min(self.next_loader_at);
            }
        }
        match self.stopping {
            Some(Stopping::Graceful { deadline }) => wake = wake.min(deadline),
            Some(Stopping::Draining { until }) => wake = wake.min(until),
            _ => {}
        }
        if let Some(watchdog) = &self.watchdog {
            wake = wake.min(watchdog.due());
        }
        if let Some(soon) = self.stats_wake() {
            wake = wake.min(now + soon);
        }
        if self
            .fleet
            .workers
            .iter()
            .any(|worker| !worker.ready || worker.pid.is_none())
        {
            // Readiness and pids arrive through the board; the doorbell
            // wakes us for most of it, this bounds the rest.
            wake = wake.min(now + Duration::from_millis(50));
        }
        wake.saturating_duration_since(now)
            .max(Duration::from_millis(1))
    }

    /// The STATUS= line once serving: "serving on http://..., 2 worker(s)".
    fn status_line(&self) -> String {
        let urls: Vec<String> = self.listeners.iter().map(BoundAddress::url).collect();
        format!(
            "serving on {}, {} worker(s) x {} thread(s)",
            urls.join(" "),
            self.fleet.positions.len(),
            self.config.threads
        )
    }

    /// Whether generation `number` is the reload under way.
    fn is_reloading(&self, number: u64) -> bool {
        self.reload == Some(Reload::Loading(number))
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
            SIGHUP if self.stopping.is_none() => self.begin_reload("SIGHUP"),
            SIGTTIN if self.stopping.is_none() && self.fleet.positions.len() >= MAX_WORKERS => {
                log::warning(&format!(
                    "SIGTTIN: already at {MAX_WORKERS} workers, the most"
                ));
            }
            SIGTTIN if self.stopping.is_none() => {
                self.fleet.add_position();
                log::info(&format!(
                    "SIGTTIN: {} worker(s) from now on",
                    self.fleet.positions.len()
                ));
                self.notifier.status(&self.status_line());
            }
            SIGTTOU if self.stopping.is_none() => self.remove_position(),
            SIGUSR1 => self.reopen_logs(),
            _ => {}
        }
    }

    /// SIGUSR1 (logrotate): open `--log-file` again here, then have every
    /// worker reopen its own log files.
    fn reopen_logs(&mut self) {
        if let Err(error) = log::reopen() {
            log::warning(&format!("SIGUSR1: cannot open --log-file again: {error}"));
        }
        self.fleet.learn_pids(&self.board);
        for pid in self.fleet.workers.iter().filter_map(|worker| worker.pid) {
            kill(pid, SIGUSR1);
        }
        log::info("SIGUSR1: log files reopened");
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
        self.notifier
            .stopping(&format!("draining for {delay:?} ({why})"));
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
        self.notifier
            .stopping(&format!("stopping gracefully ({why})"));
        self.stopping = Some(Stopping::Graceful {
            deadline: Instant::now() + self.config.graceful_timeout + Duration::from_secs(1),
        });
        self.close_listeners_gently();
        self.let_go_of_loaders(|_| true);
        self.tell_workers_to_stop();
    }

    /// Stop new connections from queueing while the workers take what is
    /// queued (see `net::closing`), then let go of the master's copies.
    /// Sockets inherited from systemd stay as they are: they outlive us, and
    /// their queue waits for the next start.
    fn close_listeners_gently(&mut self) {
        for listener in self.listeners.iter().filter(|l| !l.inherited) {
            if matches!(listener.address, crate::config::Address::Tcp(_)) {
                for socket in &listener.per_slot {
                    if let Err(error) = net::stop_new_connections(socket) {
                        log::warning(&format!(
                            "{}: cannot hold off new connections while stopping: {error}",
                            listener.url()
                        ));
                    }
                }
            }
        }
        // A unix socket's path goes first: a new connect then fails at once.
        for file in &self.unix_files {
            file.remove();
        }
        self.listeners.clear();
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
        if self.stopping.is_none() {
            self.notifier.stopping("stopping at once");
        }
        self.stopping = Some(Stopping::Immediate);
        self.listeners.clear();
        for pid in self
            .generations
            .iter()
            .map(|g| g.pid)
            .chain(self.ending_loaders.iter().copied())
        {
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
