//! A worker process: load the app if the master did not, start one
//! multi-thread tokio runtime whose threads are also the Python threads, serve
//! until told to stop, then drain.
//!
//! Each runtime thread calls the app inline (no hand-off to another thread per
//! request). tokio's eager driver hand-off makes a thread that is about to run
//! a task pass the I/O driver to an idle thread first, so a long app call never
//! stalls the other connections while another thread is free (measured with
//! 1 worker x 4 threads: without it, quick requests on the busy thread's
//! connections waited out a 5 s request).

use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::time::Duration;

use pyo3::prelude::*;
use tokio::signal::unix::{signal, SignalKind};

use crate::access_log::{self, AccessLog};
use crate::board::Board;
use crate::capacity::Capacity;
use crate::config::{Address, Config, ListenerProtocol};
use crate::harakiri::watchdog::{self, Watchdog};
use crate::log;
use crate::recycle::Recycler;
use crate::server::{self, Listener};
use crate::shared::Shared;
use crate::shutdown::{OpenConnections, StopSignal, Stopping};
use crate::static_files::StaticFiles;
use crate::wsgi::{python_thread, timeout, WsgiApp};

#[cfg(not(tokio_unstable))]
compile_error!("rwsgi needs `--cfg tokio_unstable` (set in .cargo/config.toml) for tokio's eager driver hand-off; do not override RUSTFLAGS without it");

/// Exit status of a worker whose app could not be loaded: the master stops instead of respawning.
pub(crate) const EXIT_APP_LOAD: i32 = 4;
/// Exit status of a worker that could not start its runtime or listeners.
pub(crate) const EXIT_START_FAILED: i32 = 3;

/// One listener as a worker holds it.
pub(crate) struct WorkerListener {
    pub protocol: ListenerProtocol,
    pub address: Address,
    /// The sockets this worker accepts on (usually its own one).
    pub own: Vec<OwnedFd>,
    /// The other workers' `SO_REUSEPORT` sockets of the same address (TCP only).
    pub siblings: Vec<OwnedFd>,
}

/// What a freshly forked worker is started with.
pub(crate) struct WorkerSpec {
    /// Its position (1-based), for logs.
    pub id: usize,
    /// Its entry on the board.
    pub entry: usize,
    /// The master's pid: the worker is handed to it after the fork.
    pub master: i32,
    /// Requests after which it asks to be replaced; 0 for never.
    pub max_requests: u64,
    pub config: Config,
    pub listeners: Vec<WorkerListener>,
    pub app: Option<Py<PyAny>>,
    pub loader: Option<Py<PyAny>>,
    /// The workers' shared board; this worker's entry is `entry`.
    pub board: Board,
}

fn load_app(py: Python<'_>, spec: &WorkerSpec) -> Result<Py<PyAny>, i32> {
    if let Some(app) = &spec.app {
        return Ok(app.clone_ref(py));
    }
    let Some(loader) = &spec.loader else {
        log::error("no app and no loader given to the worker");
        return Err(EXIT_APP_LOAD);
    };
    loader.bind(py).call0().map(Bound::unbind).map_err(|error| {
        error.print(py);
        log::error(&format!(
            "worker {}: could not load the app {}",
            spec.id, spec.config.app_label
        ));
        EXIT_APP_LOAD
    })
}

/// Wait until the intermediate process that forked us has exited and we
/// are the master's child; then stop with the master if it dies, rather
/// than serve orphaned. False when the master is already gone.
fn adopt_master(master: i32) -> bool {
    let since = std::time::Instant::now();
    // SAFETY: getppid has no preconditions.
    while unsafe { libc::getppid() } != master {
        if since.elapsed() > Duration::from_secs(5) {
            return false;
        }
        std::thread::sleep(Duration::from_micros(200));
    }
    #[cfg(target_os = "linux")]
    // SAFETY: prctl with PR_SET_PDEATHSIG takes a signal number and no pointers.
    unsafe {
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
    }
    // SAFETY: as above; checked again in case the master died in between.
    unsafe { libc::getppid() == master }
}

/// The worker's whole life; returns its exit status.
pub(crate) fn run(py: Python<'_>, spec: WorkerSpec) -> i32 {
    crate::proctitle::set(&format!(
        "rwsgi: worker {} [{}]",
        spec.id, spec.config.app_label
    ));
    if !py.detach(|| adopt_master(spec.master)) {
        return 0;
    }
    log::set_worker(spec.id);
    ignore_reopen_until_serving();
    // Forked by a loader that may hold a log file rotated since: open ours.
    if let Err(error) = log::reopen() {
        log::warning(&format!(
            "worker {}: cannot open --log-file again: {error}",
            spec.id
        ));
    }
    let boot_handlers = exit_on_stop_signals();
    unblock_stop_signals();
    let app = match load_app(py, &spec) {
        Ok(app) => app,
        Err(code) => return code,
    };
    bridge_python_logging(py);
    let Some(slot) = spec.board.slot(spec.entry) else {
        log::error(&format!(
            "worker {}: no slot on the workers' board",
            spec.id
        ));
        return EXIT_START_FAILED;
    };
    let capacity = Capacity::new(spec.config.threads, slot);
    let app = match WsgiApp::new(py, app, &spec.config, capacity) {
        Ok(app) => app,
        Err(error) => {
            error.print(py);
            return EXIT_START_FAILED;
        }
    };
    let id = spec.id;
    let code = py.detach(move || serve(spec, app, boot_handlers));
    log::info(&format!("worker {id} (pid {}) stopped", std::process::id()));
    code
}

fn build_runtime(threads: usize) -> std::io::Result<tokio::runtime::Runtime> {
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    builder
        .worker_threads(threads)
        .max_blocking_threads(4)
        .thread_name("rwsgi-worker")
        .enable_all()
        .enable_eager_driver_handoff()
        .disable_lifo_slot();
    if threads == 1 {
        // Nothing else runs Python: hold the GIL except while parked.
        builder
            .on_thread_start(python_thread::attach_for_life)
            .on_thread_unpark(python_thread::hold_after_unpark)
            .on_thread_park(python_thread::release_before_park)
            .on_thread_stop(python_thread::detach_after_holding);
    } else {
        builder
            .on_thread_start(python_thread::attach_for_life)
            .on_thread_stop(python_thread::detach_for_life);
    }
    builder.build()
}

/// Turn an inherited descriptor into a listener of the worker's runtime.
fn adopt_listener(
    protocol: ListenerProtocol,
    address: &Address,
    fd: OwnedFd,
) -> std::io::Result<Listener> {
    match address {
        Address::Unix(_) | Address::Abstract(_) if protocol == ListenerProtocol::Uwsgi => {
            let listener = std::os::unix::net::UnixListener::from(fd);
            listener.set_nonblocking(true)?;
            server::watch_readable(listener).map(Listener::UwsgiUnix)
        }
        Address::Tcp(_) => {
            let listener = std::net::TcpListener::from(fd);
            listener.set_nonblocking(true)?;
            tokio::net::TcpListener::from_std(listener).map(Listener::Tcp)
        }
        Address::Unix(_) | Address::Abstract(_) => {
            let listener = std::os::unix::net::UnixListener::from(fd);
            listener.set_nonblocking(true)?;
            tokio::net::UnixListener::from_std(listener).map(Listener::Unix)
        }
    }
}

/// Until the runtime's own handlers are in place, SIGTERM/SIGINT simply end a
/// booting worker (nothing is in flight yet); without this they would be lost.
fn exit_on_stop_signals() -> Vec<signal_hook::SigId> {
    [libc::SIGTERM, libc::SIGINT]
        .into_iter()
        .filter_map(|signal| {
            // SAFETY: the action only calls `_exit`, which is async-signal-safe.
            unsafe { signal_hook::low_level::register(signal, || signal_hook::low_level::exit(0)) }
                .ok()
        })
        .collect()
}

/// SIGUSR1 (reopen the logs, forwarded by the master) must never kill a
/// worker, also before its runtime listens for it: a handler that does
/// nothing keeps the default action (terminate) away.
fn ignore_reopen_until_serving() {
    // SAFETY: the action does nothing, which is async-signal-safe.
    let _ = unsafe { signal_hook::low_level::register(libc::SIGUSR1, || {}) };
}

/// When the app left Python's root logger without handlers, send its
/// records to the server log (`rwsgi.logs`). Only for an app that uses
/// `logging` by the time it is loaded (every framework does): importing it
/// for an app that does not would cost each worker about 1 MiB, and such
/// an app's later records still reach the same stream through Python's
/// last-resort handler. The loader does it once after a preload, so the
/// module is shared by its workers; in a worker it is then a no-op.
pub(crate) fn bridge_python_logging(py: Python<'_>) {
    let uses_logging = py
        .import("sys")
        .and_then(|sys| sys.getattr("modules"))
        .and_then(|modules| modules.contains("logging"))
        .unwrap_or(false);
    if !uses_logging {
        return;
    }
    let installed = py
        .import("rwsgi.logs")
        .and_then(|logs| logs.call_method0("install"));
    if let Err(error) = installed {
        error.print(py);
    }
}

/// Have SIGUSR1 reopen the logs from now on (inside the runtime).
fn listen_for_reopen(shared: &Arc<Shared>, id: usize) {
    match signal(SignalKind::user_defined1()) {
        Ok(user1) => drop(tokio::spawn(reopen_logs_on_signal(
            Arc::clone(shared),
            id,
            user1,
        ))),
        Err(error) => log::warning(&format!(
            "worker {id}: SIGUSR1 will not reopen the logs: {error}"
        )),
    }
}

/// SIGUSR1: open the log files again (logrotate), off the GIL.
async fn reopen_logs_on_signal(
    shared: Arc<Shared>,
    id: usize,
    mut user1: tokio::signal::unix::Signal,
) {
    while user1.recv().await.is_some() {
        if let Err(error) = log::reopen() {
            log::warning(&format!("SIGUSR1: cannot open --log-file again: {error}"));
        }
        if let Some(access_log) = &shared.access_log {
            access_log.reopen();
        }
        log::info(&format!("worker {id}: log files reopened"));
    }
}

/// SIGTERM and SIGINT: the signals that stop a worker.
fn stop_signal_set() -> libc::sigset_t {
    // SAFETY: sigemptyset initialises the set we own, sigaddset adds to it.
    unsafe {
        let mut set = std::mem::zeroed::<libc::sigset_t>();
        libc::sigemptyset(&raw mut set);
        libc::sigaddset(&raw mut set, libc::SIGTERM);
        libc::sigaddset(&raw mut set, libc::SIGINT);
        set
    }
}

/// Block SIGTERM and SIGINT in the calling thread; returns the mask to
/// restore. The master holds them blocked across the fork, so one sent to a
/// new worker before it has handlers for it stays pending until `run`
/// unblocks it, instead of being lost (the worker would then serve on until
/// killed at the graceful timeout).
pub(crate) fn block_stop_signals() -> libc::sigset_t {
    let set = stop_signal_set();
    // SAFETY: both sets are ours and valid for the call.
    unsafe {
        let mut previous = std::mem::zeroed::<libc::sigset_t>();
        libc::pthread_sigmask(libc::SIG_BLOCK, &raw const set, &raw mut previous);
        previous
    }
}

/// Put back the mask `block_stop_signals` returned (in the master, after the fork).
pub(crate) fn restore_signal_mask(previous: &libc::sigset_t) {
    // SAFETY: the set is valid for the call; no old mask is asked for.
    unsafe {
        libc::pthread_sigmask(libc::SIG_SETMASK, previous, std::ptr::null_mut());
    }
}

/// Let SIGTERM and SIGINT in again (a new process, once it handles them).
pub(crate) fn unblock_stop_signals() {
    let set = stop_signal_set();
    // SAFETY: the set is ours and valid for the call; no old mask is asked for.
    unsafe {
        libc::pthread_sigmask(libc::SIG_UNBLOCK, &raw const set, std::ptr::null_mut());
    }
}

/// How a SIGTERM drains this worker: a retirement when the master marked its
/// board entry before sending it (a reload or recycling replaces it), a stop
/// otherwise.
fn on_terminate(shared: &Shared) -> Stopping {
    let marked = shared
        .board
        .slot(shared.slot)
        .is_some_and(crate::board::Slot::is_retiring);
    if marked {
        Stopping::Retire
    } else {
        Stopping::Stop
    }
}

fn serve(spec: WorkerSpec, app: WsgiApp, boot_handlers: Vec<signal_hook::SigId>) -> i32 {
    let runtime = match build_runtime(spec.config.threads) {
        Ok(runtime) => runtime,
        Err(error) => {
            log::error(&format!(
                "worker {}: cannot start its runtime: {error}",
                spec.id
            ));
            return EXIT_START_FAILED;
        }
    };
    let graceful_timeout = spec.config.graceful_timeout;
    let id = spec.id;
    let listeners = spec.listeners;
    let open = Arc::new(OpenConnections::default());
    let recycler = Recycler::new(&spec.config, spec.board, spec.entry, spec.max_requests);
    let Ok(access_log) = open_access_log(&spec.config, id) else {
        return EXIT_START_FAILED;
    };
    let shared = Arc::new(Shared {
        app,
        static_files: StaticFiles::new(&spec.config),
        access_log,
        config: spec.config,
        open: Arc::clone(&open),
        stop: StopSignal::default(),
        board: spec.board,
        slot: spec.entry,
        recycler,
    });
    let watchdog = match start_watchdog(&shared, id) {
        Ok(watchdog) => watchdog,
        Err(error) => {
            log::error(&format!(
                "worker {id}: cannot start the --harakiri watchdog: {error}"
            ));
            return EXIT_START_FAILED;
        }
    };
    let at_end = Arc::clone(&shared);
    let code = runtime.block_on(async move {
        let (Ok(mut terminate), Ok(mut interrupt), Ok(mut quit)) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
            signal(SignalKind::quit()),
        ) else {
            log::error(&format!("worker {id}: cannot install signal handlers"));
            return EXIT_START_FAILED;
        };
        for handler in boot_handlers {
            signal_hook::low_level::unregister(handler);
        }
        listen_for_reopen(&shared, id);
        let Some(accept_loops) = start_accepting(listeners, &shared, id) else {
            return EXIT_START_FAILED;
        };
        spawn_housekeeping(&shared);
        shared.app.capacity.set_serving(true);
        log::info(&format!("worker {id} (pid {}) ready", std::process::id()));
        // The master waits for this before retiring the worker this one replaces.
        shared.board.ring();
        let how = tokio::select! {
            _ = terminate.recv() => on_terminate(&shared),
            _ = interrupt.recv() => Stopping::Stop,
            _ = quit.recv() => return 0,
        };
        shared.app.capacity.set_serving(false);
        shared.stop.trigger(how);
        for accept_loop in accept_loops {
            let _ = accept_loop.await;
        }
        let in_flight = open.count();
        if in_flight > 0 {
            let until = match how {
                Stopping::Stop => "",
                Stopping::Retire => " until their next request (retiring)",
            };
            log::info(&format!("worker {id}: draining {in_flight} connection(s){until}"));
        }
        let graceful = tokio::time::sleep(graceful_timeout);
        tokio::pin!(graceful);
        loop {
            tokio::select! {
                () = open.drained() => return 0,
                () = &mut graceful => {
                    log::warning(&format!("worker {id}: graceful timeout passed with {} connection(s) open", open.count()));
                    return 0;
                }
                // A retiring worker told to stop: close its idle connections now.
                _ = terminate.recv() => shared.stop.trigger(Stopping::Stop),
                _ = interrupt.recv() => return 0,
                _ = quit.recv() => return 0,
            }
        }
    });
    runtime.shutdown_timeout(Duration::from_millis(200));
    if let Some(watchdog) = watchdog {
        watchdog.stop();
    }
    if let Some(access_log) = &at_end.access_log {
        access_log.finish();
    }
    code
}

/// Spawn an accept loop per socket this worker owns and a steal loop per
/// sibling socket; `None` (logged) when a socket cannot be used.
fn start_accepting(
    listeners: Vec<WorkerListener>,
    shared: &Arc<Shared>,
    id: usize,
) -> Option<Vec<tokio::task::JoinHandle<()>>> {
    let mut accept_loops = Vec::new();
    for WorkerListener {
        protocol,
        address,
        own,
        siblings,
    } in listeners
    {
        for sibling in siblings {
            let sibling = std::net::TcpListener::from(sibling);
            let steal = server::steal_loop(sibling, protocol, Arc::clone(shared));
            accept_loops.push(tokio::spawn(steal));
        }
        for own in own {
            match adopt_listener(protocol, &address, own) {
                Ok(listener) => {
                    let accept = server::accept_loop(listener, protocol, Arc::clone(shared));
                    accept_loops.push(tokio::spawn(accept));
                }
                Err(error) => {
                    log::error(&format!(
                        "worker {id}: cannot use the socket for {address}: {error}"
                    ));
                    return None;
                }
            }
        }
    }
    Some(accept_loops)
}

/// The `--access-log` (`None` when off); an error (logged) when it
/// cannot be opened.
fn open_access_log(config: &Config, id: usize) -> std::result::Result<Option<Arc<AccessLog>>, ()> {
    let Some(destination) = &config.access_log else {
        return Ok(None);
    };
    AccessLog::open(destination, config.access_log_format.clone(), id)
        .map(|log| Some(Arc::new(log)))
        .map_err(|error| {
            log::error(&format!(
                "worker {id}: cannot open the access log {destination}: {error}"
            ));
        })
}

/// The worker's once-a-second chores.
fn spawn_housekeeping(shared: &Arc<Shared>) {
    if shared.recycler.samples_memory() {
        tokio::spawn(sample_memory_every_second(Arc::clone(shared)));
    }
    if let Some(log) = &shared.access_log {
        tokio::spawn(access_log::flush_every_second(Arc::clone(log)));
    }
}

/// The `--harakiri` watchdog, when the option is on.
fn start_watchdog(shared: &Shared, id: usize) -> std::io::Result<Option<Watchdog>> {
    let config = &shared.config;
    if config.harakiri.is_zero() {
        return Ok(None);
    }
    let slot = shared
        .board
        .slot(shared.slot)
        .ok_or_else(|| std::io::Error::other("no slot on the workers' board"))?;
    Watchdog::start(watchdog::Settings {
        limit: config.harakiri,
        grace: config.harakiri_grace,
        worker: id,
        board: shared.board,
        slot,
        unwind: timeout::unwind,
    })
    .map(Some)
}

/// `--reload-on-rss`: check the memory every second, also while no request finishes.
async fn sample_memory_every_second(shared: Arc<Shared>) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            () = shared.stop.stopped() => return,
            _ = tick.tick() => shared.recycler.check_memory(),
        }
    }
}
