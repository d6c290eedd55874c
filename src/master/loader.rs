//! A code generation's loader process. The master itself never imports the
//! app (so it can always load new code); for each generation (the start,
//! then every SIGHUP) it forks a loader, which imports the app once (unless
//! `--lazy`), then forks that generation's workers on the master's orders,
//! so they share its memory copy-on-write as preloaded workers do. A worker
//! is forked through a short-lived intermediate process so that it becomes
//! the master's child (the master is a child subreaper): the master alone
//! waits for, signals and respawns workers.
//!
//! The master talks to a loader over a socket pair, one line per message:
//! `spawn ID ENTRY WORKERS MAX_REQUESTS` down, `loaded`, `changed` (see
//! `--autoreload` below) and `failed ENTRY ERRNO` up. A loader ends when
//! the master closes its end.
//!
//! With `--autoreload`, the loader also looks for changed source files
//! every so often while it waits for orders (`rwsgi.autoreload.Watcher`,
//! built right after the import, so it knows the app's modules) and says
//! `changed` once: the master then loads a new generation as on SIGHUP.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::UnixStream;

use pyo3::prelude::*;

use crate::board::Board;
use crate::config::Config;
use crate::error::{Error, Result};
use crate::log;
use crate::net::BoundAddress;
use crate::worker::{self, WorkerListener, WorkerSpec, EXIT_APP_LOAD};

use super::fork::{self, exit_child, Forked};
use super::privileges::{self, RunAs};

/// What a worker is started with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct SpawnOrder {
    /// Its position (1-based), shown in logs.
    pub id: usize,
    /// Its board entry.
    pub entry: usize,
    /// How many positions there are now (decides which sockets it owns).
    pub workers: usize,
    /// Requests after which it asks to be replaced; 0 for never.
    pub max_requests: u64,
}

impl SpawnOrder {
    fn encode(&self) -> String {
        format!(
            "spawn {} {} {} {}\n",
            self.id, self.entry, self.workers, self.max_requests
        )
    }

    fn decode(line: &str) -> Option<Self> {
        let mut words = line.strip_prefix("spawn ")?.split_ascii_whitespace();
        let mut next = || words.next()?.parse::<u64>().ok();
        let order = Self {
            id: usize::try_from(next()?).ok()?,
            entry: usize::try_from(next()?).ok()?,
            workers: usize::try_from(next()?).ok()?,
            max_requests: next()?,
        };
        words.next().is_none().then_some(order)
    }
}

/// What a loader tells the master.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Report {
    /// The app is imported (or, lazy, the loader is ready to fork).
    Loaded,
    /// `--autoreload` saw a source file of the app change: load it again.
    Changed,
    /// The worker for `entry` could not be forked.
    Failed { entry: usize, errno: i32 },
}

impl Report {
    fn decode(line: &str) -> Option<Self> {
        match line {
            "loaded" => return Some(Self::Loaded),
            "changed" => return Some(Self::Changed),
            _ => {}
        }
        let mut words = line.strip_prefix("failed ")?.split_ascii_whitespace();
        let entry = words.next()?.parse().ok()?;
        let errno = words.next()?.parse().ok()?;
        Some(Self::Failed { entry, errno })
    }
}

/// The master's handle on one generation's loader.
pub(crate) struct Generation {
    pub number: u64,
    pub pid: i32,
    /// Whether it has reported `loaded`.
    pub loaded: bool,
    link: UnixStream,
    inbox: Vec<u8>,
}

/// Everything a loader needs, taken from the master's copy at the fork.
pub(crate) struct LoaderContext<'a> {
    pub config: &'a Config,
    pub listeners: &'a mut Vec<BoundAddress>,
    pub app: Option<Py<PyAny>>,
    pub loader: Option<Py<PyAny>>,
    pub board: Board,
    pub master: i32,
    pub number: u64,
    /// The loader's own signal actions, which its workers drop.
    pub exits: Vec<signal_hook::SigId>,
}

impl Generation {
    /// Fork generation `number`'s loader. In the child, `in_child` runs
    /// with the loader's end of the link and returns its exit status.
    pub(crate) fn start(
        py: Python<'_>,
        number: u64,
        in_child: impl FnOnce(UnixStream) -> i32,
    ) -> Result<Self> {
        let (link, far_end) =
            UnixStream::pair().map_err(|e| Error::system("creating a loader's socket pair", e))?;
        match fork::fork(py)? {
            Forked::Parent { child } => {
                drop(far_end);
                link.set_nonblocking(true)
                    .map_err(|e| Error::system("creating a loader's socket pair", e))?;
                Ok(Self {
                    number,
                    pid: child,
                    loaded: false,
                    link,
                    inbox: Vec::new(),
                })
            }
            Forked::Child => {
                // The master's end must not stay open here, or the loader
                // would never see it close.
                drop(link);
                let code = in_child(far_end);
                exit_child(py, code)
            }
        }
    }

    /// The descriptor the master polls for this loader's reports.
    pub(crate) fn fd(&self) -> RawFd {
        self.link.as_raw_fd()
    }

    /// Ask for one worker.
    pub(crate) fn order(&mut self, order: &SpawnOrder) -> std::io::Result<()> {
        // The link is non-blocking on this side; an order is a few bytes
        // and the loader reads them at once, so a full buffer means it is gone.
        self.link.write_all(order.encode().as_bytes())
    }

    /// Reports received since the last call.
    pub(crate) fn reports(&mut self) -> Vec<Report> {
        let mut chunk = [0u8; 512];
        while let Ok(read @ 1..) = self.link.read(&mut chunk) {
            self.inbox.extend_from_slice(&chunk[..read]);
        }
        let mut reports = Vec::new();
        while let Some(end) = self.inbox.iter().position(|&byte| byte == b'\n') {
            let line: Vec<u8> = self.inbox.drain(..=end).collect();
            let line = String::from_utf8_lossy(&line[..end]);
            match Report::decode(line.trim()) {
                Some(report) => reports.push(report),
                None => log::warning(&format!("loader {}: unknown report {line:?}", self.pid)),
            }
        }
        reports
    }
}

/// SIGTERM, SIGINT and SIGQUIT end a loader at once (it has nothing to
/// drain). The master's handlers are inherited in signal-hook's registry,
/// where setting `SIG_DFL` behind its back would also disarm the workers'
/// own later registrations: register exits instead, and let the workers
/// unregister them.
fn exit_on_signals() -> Vec<signal_hook::SigId> {
    let ids = [libc::SIGTERM, libc::SIGINT, libc::SIGQUIT]
        .into_iter()
        .filter_map(|signal| {
            // SAFETY: the action only calls `_exit`, which is async-signal-safe.
            unsafe { signal_hook::low_level::register(signal, || signal_hook::low_level::exit(0)) }
                .ok()
        })
        .collect();
    worker::unblock_stop_signals();
    ids
}

/// End with the master: a loader outliving it would keep the sockets open.
fn die_with(master: i32) -> bool {
    #[cfg(target_os = "linux")]
    // SAFETY: prctl with PR_SET_PDEATHSIG takes a signal number and no pointers.
    unsafe {
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
    }
    // SAFETY: getppid has no preconditions.
    unsafe { libc::getppid() == master }
}

/// The loader's life; returns its exit status.
pub(crate) fn run(py: Python<'_>, mut context: LoaderContext<'_>, link: UnixStream) -> i32 {
    crate::proctitle::set(&format!(
        "rwsgi: loader {} [{}]",
        context.number, context.config.app_label
    ));
    context.exits = exit_on_signals();
    // Before the app is imported, and before the parent-death signal is
    // set: a change of user clears it.
    let run_as = RunAs {
        uid: context.config.uid,
        gid: context.config.gid,
    };
    if let Err(error) = privileges::switch(run_as) {
        log::error(&format!("loader: --uid/--gid: {error}"));
        return EXIT_APP_LOAD;
    }
    if let Err(message) = privileges::can_write_access_log(run_as, context.config) {
        // Every worker would fail to open it, and be respawned for ever.
        log::error(&format!("loader: {message}"));
        return EXIT_APP_LOAD;
    }
    if !die_with(context.master) {
        return 0;
    }
    if context.app.is_none() && context.config.preload {
        match load(py, &context) {
            Ok(app) => context.app = Some(app),
            Err(code) => return code,
        }
    }
    if context.app.is_some() {
        // The app is loaded here (preload): see what it did to logging now.
        worker::bridge_python_logging(py);
    }
    // Move what the master made (the app included) out of the collector's
    // reach, so collections in a worker do not touch, and so copy, the
    // pages it shares with this loader.
    let _ = py.import("gc").and_then(|gc| gc.call_method0("freeze"));
    let mut writer = match link.try_clone() {
        Ok(writer) => writer,
        Err(error) => {
            log::error(&format!("loader: cannot use its socket: {error}"));
            return worker::EXIT_START_FAILED;
        }
    };
    if writer.write_all(b"loaded\n").is_err() {
        return 0;
    }
    let link_fd = link.as_raw_fd();
    let mut orders = BufReader::new(link);
    let mut watcher = watch(py, context.config);
    loop {
        if let Some(watching) = &watcher {
            if orders.buffer().is_empty()
                && !py.detach(|| readable_within(link_fd, watch_interval(context.config)))
            {
                if let Some(path) = changed(py, watching) {
                    log::info(&format!("autoreload: {path} changed, reloading"));
                    watcher = None;
                    if writer.write_all(b"changed\n").is_err() {
                        return 0;
                    }
                }
                continue;
            }
        }
        let mut text = String::new();
        match py.detach(|| orders.read_line(&mut text)) {
            Ok(1..) => {}
            // The master closed its end: this generation is over.
            _ => return 0,
        }
        let Some(order) = SpawnOrder::decode(text.trim()) else {
            log::warning(&format!("loader: unknown order {text:?}"));
            continue;
        };
        if let Err(errno) = spawn(py, &mut context, order, link_fd) {
            let _ = writer.write_all(format!("failed {} {errno}\n", order.entry).as_bytes());
        }
    }
}

/// How often the loader looks at `--touch-reload` files when `--autoreload` is off.
const TOUCH_POLL: std::time::Duration = std::time::Duration::from_secs(1);

/// How often the watcher is asked.
fn watch_interval(config: &Config) -> std::time::Duration {
    if config.autoreload.is_zero() {
        TOUCH_POLL
    } else {
        config.autoreload
    }
}

/// The watcher of `--autoreload` (the app's sources) and `--touch-reload`
/// (named files): `None` when both are off, or when it cannot be built
/// (the server then serves on without watching, and says so).
fn watch(py: Python<'_>, config: &Config) -> Option<Py<PyAny>> {
    if config.autoreload.is_zero() && config.touch_reload.is_empty() {
        return None;
    }
    match py
        .import("rwsgi.autoreload")
        .and_then(|module| module.getattr("Watcher"))
        .and_then(|watcher| watcher.call1((!config.autoreload.is_zero(), &config.touch_reload)))
    {
        Ok(watcher) => Some(watcher.unbind()),
        Err(error) => {
            error.print(py);
            log::error("autoreload: cannot watch the files; serving without reloading");
            None
        }
    }
}

/// The file the watcher saw change, if any.
fn changed(py: Python<'_>, watcher: &Py<PyAny>) -> Option<String> {
    match watcher.bind(py).call_method0("changed") {
        Ok(path) if path.is_none() => None,
        Ok(path) => Some(
            path.str()
                .map_or_else(|_| "a file".into(), |text| text.to_string()),
        ),
        Err(error) => {
            error.print(py);
            None
        }
    }
}

/// Wait up to `limit` for the link to have something to read.
fn readable_within(fd: RawFd, limit: std::time::Duration) -> bool {
    let mut poll = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    let millis = i32::try_from(limit.as_millis()).unwrap_or(i32::MAX).max(1);
    // SAFETY: one pollfd we own, for the length given.
    let ready = unsafe { libc::poll(&raw mut poll, 1, millis) };
    if ready < 0 {
        // A signal (the inherited SIGCHLD handler) cut the wait short: look
        // at the files and wait again. Any other error: let the read decide.
        return std::io::Error::last_os_error().kind() != std::io::ErrorKind::Interrupted;
    }
    ready > 0
}

fn load(py: Python<'_>, context: &LoaderContext<'_>) -> std::result::Result<Py<PyAny>, i32> {
    let Some(loader) = &context.loader else {
        log::error("no app and no loader given to the loader process");
        return Err(EXIT_APP_LOAD);
    };
    loader.bind(py).call0().map(Bound::unbind).map_err(|error| {
        error.print(py);
        log::error(&format!(
            "generation {}: could not load the app {}",
            context.number, context.config.app_label
        ));
        EXIT_APP_LOAD
    })
}

/// Exit status of the intermediate process when it could not fork the
/// worker; the errno travels in the status' low bits instead.
const FORK_FAILED: i32 = 100;

/// Fork one worker through an intermediate process that exits at once, so
/// the worker is handed to the master. Returns the errno on failure.
fn spawn(
    py: Python<'_>,
    context: &mut LoaderContext<'_>,
    order: SpawnOrder,
    link_fd: RawFd,
) -> std::result::Result<(), i32> {
    let errno_of = |error: Error| match error {
        Error::System { source, .. } => source.raw_os_error().unwrap_or(libc::EAGAIN),
        _ => libc::EAGAIN,
    };
    match fork::fork(py).map_err(errno_of)? {
        Forked::Parent { child } => {
            let status = py.detach(|| fork::wait_for(child)).unwrap_or(0);
            if libc::WIFEXITED(status) && libc::WEXITSTATUS(status) >= FORK_FAILED {
                return Err(libc::WEXITSTATUS(status) - FORK_FAILED);
            }
            Ok(())
        }
        Forked::Child => match fork::fork(py) {
            Ok(Forked::Parent { child }) => {
                if let Some(slot) = context.board.slot(order.entry) {
                    // Before this process exits, so the master can name
                    // the worker whenever it reaps it.
                    slot.set_pid(child);
                }
                exit_child(py, 0)
            }
            Ok(Forked::Child) => {
                // SAFETY: the loader's socket is not the worker's; it is
                // closed once here, and this process never returns to the
                // code that owns it (exit_child ends it).
                unsafe {
                    libc::close(link_fd);
                }
                for id in context.exits.drain(..) {
                    signal_hook::low_level::unregister(id);
                }
                let spec = worker_spec(py, context, order);
                let code = worker::run(py, spec);
                exit_child(py, code)
            }
            Err(error) => exit_child(py, FORK_FAILED + errno_of(error).min(100)),
        },
    }
}

/// Which of a listener's `sockets` descriptors a worker at position `id`
/// of `workers` accepts on: its own SO_REUSEPORT socket, and any left over
/// when there are more sockets than workers; past them, it shares one.
pub(crate) fn owned_sockets(sockets: usize, id: usize, workers: usize) -> Vec<usize> {
    let (index, workers) = (id.saturating_sub(1), workers.max(1));
    if sockets == 0 {
        return Vec::new();
    }
    if index >= sockets {
        return vec![index % sockets];
    }
    (index..sockets).step_by(workers).collect()
}

/// In the new worker: keep its sockets (and, for TCP, its siblings' to
/// steal from), close the others, and hand it the app.
fn worker_spec(py: Python<'_>, context: &mut LoaderContext<'_>, order: SpawnOrder) -> WorkerSpec {
    let mut listeners = Vec::new();
    for bound in std::mem::take(context.listeners) {
        let own = owned_sockets(bound.per_slot.len(), order.id, order.workers);
        let shared_socket = !bound.has_sibling_sockets();
        let (mut mine, mut others) = (Vec::new(), Vec::new());
        for (index, fd) in bound.per_slot.into_iter().enumerate() {
            if own.contains(&index) {
                mine.push(fd);
            } else if !shared_socket {
                others.push(fd);
            }
        }
        listeners.push(WorkerListener {
            protocol: bound.protocol,
            address: bound.address,
            own: mine,
            siblings: others,
        });
    }
    WorkerSpec {
        id: order.id,
        entry: order.entry,
        config: context.config.clone(),
        listeners,
        app: context.app.as_ref().map(|app| app.clone_ref(py)),
        loader: context.loader.as_ref().map(|loader| loader.clone_ref(py)),
        board: context.board,
        master: context.master,
        max_requests: order.max_requests,
    }
}

#[cfg(test)]
mod tests {
    use super::{owned_sockets, Report, SpawnOrder};

    #[test]
    fn orders_and_reports_round_trip() {
        let order = SpawnOrder {
            id: 3,
            entry: 17,
            workers: 4,
            max_requests: 5_021,
        };
        assert_eq!(SpawnOrder::decode(order.encode().trim()), Some(order));
        assert_eq!(SpawnOrder::decode("spawn 1 2 3"), None);
        assert_eq!(SpawnOrder::decode("spawn 1 2 3 4 5"), None);
        assert_eq!(SpawnOrder::decode("spawn a 2 3 4"), None);
        assert_eq!(Report::decode("loaded"), Some(Report::Loaded));
        assert_eq!(Report::decode("changed"), Some(Report::Changed));
        assert_eq!(
            Report::decode("failed 4 11"),
            Some(Report::Failed {
                entry: 4,
                errno: 11
            })
        );
        assert_eq!(Report::decode("nonsense"), None);
    }

    #[test]
    fn every_socket_has_an_owner_whatever_the_worker_count() {
        // As many workers as sockets: one each.
        assert_eq!(owned_sockets(2, 1, 2), vec![0]);
        assert_eq!(owned_sockets(2, 2, 2), vec![1]);
        // Fewer workers (after SIGTTOU): the left-over sockets are shared out.
        assert_eq!(owned_sockets(3, 1, 1), vec![0, 1, 2]);
        assert_eq!(owned_sockets(4, 1, 2), vec![0, 2]);
        assert_eq!(owned_sockets(4, 2, 2), vec![1, 3]);
        // More workers (after SIGTTIN): the new ones share a socket.
        assert_eq!(owned_sockets(2, 3, 3), vec![0]);
        assert_eq!(owned_sockets(2, 4, 4), vec![1]);
        assert_eq!(owned_sockets(0, 1, 1), Vec::<usize>::new());
    }
}
