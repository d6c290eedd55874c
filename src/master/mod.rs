//! The master process (gunicorn's "arbiter"): binds the listeners, forks the
//! workers, and supervises them — respawn with backoff, graceful stop on
//! SIGINT/SIGTERM, immediate stop on a second SIGINT or on SIGQUIT.
//!
//! Signal handlers only record the signal (see `signals.rs`); this loop
//! dispatches, with the GIL released while it waits.

mod fork;
mod pidfile;
mod signals;
mod systemd;

use std::os::fd::OwnedFd;
use std::time::{Duration, Instant};

use pyo3::prelude::*;
use signal_hook::consts::{SIGHUP, SIGINT, SIGKILL, SIGQUIT, SIGTERM, SIGTTIN, SIGTTOU};

use crate::board::{self, Board};
use crate::config::Config;
use crate::error::{Error, Result};
use crate::log;
use crate::net::{self, BoundAddress, UnixSocketFile};
use crate::proctitle;
use crate::worker::{self, WorkerListener, WorkerSpec, EXIT_APP_LOAD};
use fork::Forked;
use signals::SignalQueue;

/// A worker that dies sooner than this after its start counts as failing to boot.
const QUICK_DEATH: Duration = Duration::from_secs(2);
/// Longest wait between respawns of a worker that keeps dying at start.
const MAX_BACKOFF: Duration = Duration::from_secs(10);
/// How long the loop sleeps when nothing is scheduled.
const IDLE_TICK: Duration = Duration::from_secs(1);
/// How often the loop looks for every worker serving, until READY=1 is sent to systemd.
const READY_POLL: Duration = Duration::from_millis(50);

/// One worker position; its process comes and goes.
struct Slot {
    id: usize,
    pid: Option<i32>,
    started: Instant,
    quick_deaths: u32,
    respawn_at: Instant,
}

/// How the master is stopping, once it is.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Stopping {
    Graceful { deadline: Instant },
    Immediate,
}

/// The supervisor.
pub(crate) struct Arbiter {
    config: Config,
    listeners: Vec<BoundAddress>,
    /// Socket files to remove when the master exits.
    unix_files: Vec<UnixSocketFile>,
    app: Option<Py<PyAny>>,
    loader: Option<Py<PyAny>>,
    slots: Vec<Slot>,
    /// Where workers publish their busy threads (mapped before any fork).
    board: Board,
    /// The board's doorbell, rung by workers that changed their entry.
    doorbell: OwnedFd,
    stopping: Option<Stopping>,
    exit_error: Option<Error>,
    // -- systemd, pidfile, process titles (issue 13)
    /// Tells systemd how the master is doing (no-op without NOTIFY_SOCKET).
    notifier: systemd::Notifier,
    /// When the next `WATCHDOG=1` is due, if systemd set a watchdog.
    watchdog: Option<systemd::Watchdog>,
    /// Whether READY=1 was sent (once every worker serves for the first time).
    notified_ready: bool,
    /// Removed when the master (the Arbiter) is dropped.
    _pidfile: Option<pidfile::Pidfile>,
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

fn python_version(py: Python<'_>) -> String {
    let version = py.version_info();
    format!("{}.{}.{}", version.major, version.minor, version.patch)
}

/// Move every object the master has made (the preloaded app included) out of
/// the collector's reach, so collections in a worker do not touch, and so
/// copy, the pages it shares with the master.
fn freeze_for_fork(py: Python<'_>) {
    let _ = py.import("gc").and_then(|gc| gc.call_method0("freeze"));
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
        let pidfile = match config.pidfile.as_deref().map(pidfile::Pidfile::create) {
            Some(Err(error)) => {
                unix_files.iter().for_each(UnixSocketFile::remove);
                return Err(error);
            }
            Some(Ok(pidfile)) => Some(pidfile),
            None => None,
        };
        let now = Instant::now();
        let slots = (1..=config.workers)
            .map(|id| Slot {
                id,
                pid: None,
                started: now,
                quick_deaths: 0,
                respawn_at: now,
            })
            .collect();
        let (board, doorbell) = Board::new(board::MAX_SLOTS)
            .map_err(|error| Error::system("mapping the workers' board", error))?;
        Ok(Self {
            config,
            listeners,
            unix_files,
            app,
            loader,
            slots,
            board,
            doorbell,
            stopping: None,
            exit_error: None,
            notifier: systemd::Notifier::new(),
            watchdog: None,
            notified_ready: false,
            _pidfile: pidfile,
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
        log::info(&format!(
            "master pid {}: {} worker(s) x {} thread(s), app {}, backlog {}",
            std::process::id(),
            self.config.workers,
            self.config.threads,
            if self.app.is_some() {
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
        freeze_for_fork(py);
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
        proctitle::restore();
        outcome
    }

    fn supervise(&mut self, py: Python<'_>, signals: &mut SignalQueue) -> Result<()> {
        loop {
            if self.stopping.is_none() {
                if let Err(error) = self.manage_workers(py, signals) {
                    // Returning now would leave the workers already forked
                    // running, unsignalled and unreaped.
                    log::error(&format!("{error}; stopping the workers"));
                    self.exit_error = Some(error);
                    self.stop_gracefully("cannot start a worker");
                }
            }
            self.notify_systemd();
            if self.stopping.is_some() && self.live_workers() == 0 {
                break;
            }
            let timeout = self.next_wake();
            let received = py.detach(|| signals.wait(timeout));
            for signal in received {
                self.dispatch(signal);
            }
            self.reap_workers();
            if let Some(Stopping::Graceful { deadline }) = self.stopping {
                if Instant::now() >= deadline {
                    log::warning("graceful timeout passed; killing the remaining workers");
                    self.halt();
                }
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
            for slot in self.slots.iter().filter(|slot| slot.pid.is_none()) {
                wake = wake.min(slot.respawn_at);
            }
        }
        if let Some(Stopping::Graceful { deadline }) = self.stopping {
            wake = wake.min(deadline);
        }
        if let Some(watchdog) = &self.watchdog {
            wake = wake.min(watchdog.due());
        }
        if !self.notified_ready && self.stopping.is_none() && self.notifier.is_active() {
            wake = wake.min(now + READY_POLL);
        }
        wake.saturating_duration_since(now)
            .max(Duration::from_millis(1))
    }

    // -- systemd (issue 13): the integrator's `on_all_workers_ready()` replaces the READY part.
    /// Ping the watchdog when due; send READY=1 once every worker serves
    /// for the first time (read from the board: no message from workers).
    fn notify_systemd(&mut self) {
        if let Some(watchdog) = &mut self.watchdog {
            watchdog.tick(&self.notifier);
        }
        if self.notified_ready || self.stopping.is_some() {
            return;
        }
        let all_serving = self.slots.iter().all(|slot| {
            slot.pid.is_some()
                && self
                    .board
                    .slot(slot.id - 1)
                    .is_some_and(board::Slot::is_serving)
        });
        if all_serving {
            self.notified_ready = true;
            self.notifier.ready(&self.status_line());
        }
    }

    /// The STATUS= line once serving: "serving on http://..., 2 workers".
    fn status_line(&self) -> String {
        let urls: Vec<String> = self.listeners.iter().map(BoundAddress::url).collect();
        format!(
            "serving on {}, {} worker(s) x {} thread(s)",
            urls.join(" "),
            self.config.workers,
            self.config.threads
        )
    }

    fn live_workers(&self) -> usize {
        self.slots.iter().filter(|slot| slot.pid.is_some()).count()
    }

    fn dispatch(&mut self, signal: i32) {
        match signal {
            SIGINT if self.stopping.is_some() => {
                log::info("second SIGINT: stopping at once");
                self.halt();
            }
            SIGINT | SIGTERM => {
                self.stop_gracefully(signal_hook::low_level::signal_name(signal).unwrap_or("signal"));
            }
            SIGQUIT => {
                log::info("SIGQUIT: stopping at once");
                self.halt();
            }
            SIGHUP => log::warning("SIGHUP: reloading is not supported yet; ignoring"),
            // Their default action would stop (suspend) the master: gunicorn
            // users send them to add or remove a worker.
            SIGTTIN | SIGTTOU => log::warning(
                "SIGTTIN/SIGTTOU: changing the number of workers at run time is not supported yet; ignoring",
            ),
            _ => {}
        }
    }

    /// Stop accepting, let workers drain for up to the graceful timeout;
    /// `why` starts the log line.
    fn stop_gracefully(&mut self, why: &str) {
        if self.stopping.is_some() {
            return;
        }
        log::info(&format!(
            "{why}: stopping gracefully (in-flight requests get {:?})",
            self.config.graceful_timeout
        ));
        self.notifier
            .stopping(&format!("stopping gracefully ({why})"));
        self.stopping = Some(Stopping::Graceful {
            deadline: Instant::now() + self.config.graceful_timeout + Duration::from_secs(1),
        });
        self.listeners.clear();
        for pid in self.slots.iter().filter_map(|slot| slot.pid) {
            kill(pid, SIGTERM);
        }
    }

    /// Kill every worker now.
    fn halt(&mut self) {
        if self.stopping.is_none() {
            self.notifier.stopping("stopping at once");
        }
        self.stopping = Some(Stopping::Immediate);
        self.listeners.clear();
        for pid in self.slots.iter().filter_map(|slot| slot.pid) {
            kill(pid, SIGKILL);
        }
    }

    fn reap_workers(&mut self) {
        loop {
            let mut status = 0;
            // SAFETY: waitpid writes one int we own.
            let pid = unsafe { libc::waitpid(-1, &raw mut status, libc::WNOHANG) };
            if pid <= 0 {
                return;
            }
            let Some(slot) = self.slots.iter_mut().find(|slot| slot.pid == Some(pid)) else {
                continue;
            };
            slot.pid = None;
            if let Some(entry) = self.board.slot(slot.id - 1) {
                entry.clear();
            }
            let lived = slot.started.elapsed();
            let stopping = self.stopping.is_some();
            let how = describe_status(status);
            if stopping {
                log::info(&format!("worker {} (pid {pid}) {how}", slot.id));
                continue;
            }
            log::warning(&format!("worker {} (pid {pid}) {how}; respawning", slot.id));
            if libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == EXIT_APP_LOAD {
                log::error("the app failed to load in a worker; stopping instead of respawning");
                self.exit_error = Some(Error::AppLoad(self.config.app_label.clone()));
                self.halt();
                return;
            }
            if lived < QUICK_DEATH {
                slot.quick_deaths += 1;
                let backoff = Duration::from_millis(100)
                    .saturating_mul(1 << slot.quick_deaths.min(10))
                    .min(MAX_BACKOFF);
                slot.respawn_at = Instant::now()
                    + if slot.quick_deaths == 1 {
                        Duration::ZERO
                    } else {
                        backoff
                    };
            } else {
                slot.quick_deaths = 0;
                slot.respawn_at = Instant::now();
            }
        }
    }

    fn manage_workers(&mut self, py: Python<'_>, signals: &mut SignalQueue) -> Result<()> {
        let now = Instant::now();
        let due: Vec<usize> = self
            .slots
            .iter()
            .enumerate()
            .filter(|(_, slot)| slot.pid.is_none() && slot.respawn_at <= now)
            .map(|(index, _)| index)
            .collect();
        for index in due {
            self.spawn_worker(py, index, signals)?;
        }
        Ok(())
    }

    fn spawn_worker(
        &mut self,
        py: Python<'_>,
        index: usize,
        signals: &mut SignalQueue,
    ) -> Result<()> {
        match fork::fork(py)? {
            Forked::Parent { child } => {
                let slot = &mut self.slots[index];
                slot.pid = Some(child);
                slot.started = Instant::now();
                Ok(())
            }
            Forked::Child => {
                let code = self.become_worker(py, index, signals);
                exit_child(py, code)
            }
        }
    }

    /// In the child: keep only this slot's sockets and the app, then run the worker.
    fn become_worker(&mut self, py: Python<'_>, index: usize, signals: &mut SignalQueue) -> i32 {
        signals.forget_in_child_or_master();
        let mut listeners = Vec::new();
        for mut bound in std::mem::take(&mut self.listeners) {
            let own = bound.per_slot.remove(index);
            // A unix socket (or one from systemd) is one socket shared by
            // all: the copies are not siblings.
            let siblings = if bound.has_sibling_sockets() {
                std::mem::take(&mut bound.per_slot)
            } else {
                Vec::new()
            };
            listeners.push(WorkerListener {
                protocol: bound.protocol,
                address: bound.address.clone(),
                own,
                siblings,
            });
        }
        // The socket files belong to the master: a worker never removes them.
        self.unix_files.clear();
        let spec = WorkerSpec {
            id: self.slots[index].id,
            config: self.config.clone(),
            listeners,
            app: self.app.as_ref().map(|app| app.clone_ref(py)),
            loader: self.loader.as_ref().map(|loader| loader.clone_ref(py)),
            board: self.board,
        };
        worker::run(py, spec)
    }
}

/// Leave the forked child without unwinding into the caller's Python code.
fn exit_child(py: Python<'_>, code: i32) -> ! {
    for stream in ["stdout", "stderr"] {
        let _ = py
            .import("sys")
            .and_then(|sys| sys.getattr(stream)?.call_method0("flush"));
    }
    // SAFETY: _exit ends the process at once; nothing after it runs.
    unsafe { libc::_exit(code) }
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
