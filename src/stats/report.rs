//! uWSGI's stats JSON, the layout `uwsgitop` reads (checked against uWSGI
//! 2.0's own output): top-level `version`, `listen_queue`, `load`, `pid`,
//! `sockets`, `workers`..., each worker with its requests, status, memory,
//! spawns and `cores`. Also what the master keeps across worker lives (the
//! counts of workers gone, restarts by reason), so totals never go back.

use serde_json::{json, Value};

use crate::board::Slot;
use crate::counters::{Counters, BUCKETS_US, CLASSES, PROTOCOLS};

/// Why a worker process was replaced, as `/metrics` labels it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Reason {
    /// It exited on its own.
    Exit,
    /// A signal killed it.
    Signal,
    MaxRequests,
    Lifetime,
    Rss,
    Harakiri,
    /// A reload (SIGHUP, --touch-reload, --autoreload) replaced it.
    Reload,
}

impl Reason {
    /// Every reason, in label order.
    pub(crate) const ALL: [Self; 7] = [
        Self::Exit,
        Self::Signal,
        Self::MaxRequests,
        Self::Lifetime,
        Self::Rss,
        Self::Harakiri,
        Self::Reload,
    ];

    /// The `reason` label.
    pub(crate) fn label(self) -> &'static str {
        match self {
            Self::Exit => "exit",
            Self::Signal => "signal",
            Self::MaxRequests => "max-requests",
            Self::Lifetime => "lifetime",
            Self::Rss => "rss",
            Self::Harakiri => "harakiri",
            Self::Reload => "reload",
        }
    }
}

impl From<crate::board::Recycle> for Reason {
    fn from(why: crate::board::Recycle) -> Self {
        match why {
            crate::board::Recycle::MaxRequests => Self::MaxRequests,
            crate::board::Recycle::Rss => Self::Rss,
            crate::board::Recycle::Harakiri => Self::Harakiri,
        }
    }
}

/// Counts added up over several workers (live ones, and those gone).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Totals {
    pub requests: u64,
    pub exceptions: u64,
    pub harakiri: u64,
    pub spooled: u64,
    pub rx: u64,
    pub tx: u64,
    pub by_class: [[u64; CLASSES.len()]; PROTOCOLS.len()],
    /// App time: counts per bucket of `BUCKETS_US` (plus overflow), sum in µs.
    pub app: (Vec<u64>, u64),
    /// Total time, as `app`.
    pub total: (Vec<u64>, u64),
}

impl Totals {
    /// Add one worker's counts.
    pub(crate) fn add(&mut self, requests: u64, counters: &Counters) {
        self.requests += requests;
        self.exceptions += counters.exceptions();
        self.harakiri += counters.harakiri();
        self.spooled += counters.spooled();
        self.rx += counters.rx();
        self.tx += counters.tx();
        for (protocol, row) in self.by_class.iter_mut().enumerate() {
            for (class, count) in row.iter_mut().enumerate() {
                *count += counters.by_class(protocol, class);
            }
        }
        for ((buckets, sum), histogram) in [
            (&mut self.app, counters.app()),
            (&mut self.total, counters.total()),
        ] {
            buckets.resize(BUCKETS_US.len() + 1, 0);
            for (into, count) in buckets.iter_mut().zip(histogram.buckets()) {
                *into += count;
            }
            *sum += histogram.sum_us();
        }
    }
}

/// What the master keeps for the stats between clients.
#[derive(Debug, Default)]
pub(crate) struct Ledger {
    /// The counts of every worker reaped so far.
    pub gone: Totals,
    /// Workers replaced, by `Reason` (index of `Reason::ALL`).
    pub restarts: [u64; Reason::ALL.len()],
    /// Each board entry's request count at the last stats read (for
    /// uWSGI's `delta_requests`).
    pub last_requests: std::collections::HashMap<usize, u64>,
    /// The kernel's `ListenOverflows` when the master started: the
    /// counter is system-wide and counts since boot, so the stats show the
    /// overflows since this server started, not other programs' past ones.
    pub overflows_at_start: u64,
}

impl Ledger {
    /// A ledger that counts overflows from `overflows_now`.
    pub(crate) fn starting_at(overflows_now: u64) -> Self {
        Self {
            overflows_at_start: overflows_now,
            ..Self::default()
        }
    }

    /// Connections the kernel dropped on a full accept queue since the start.
    pub(crate) fn overflows_since_start(&self, overflows_now: u64) -> u64 {
        overflows_now.saturating_sub(self.overflows_at_start)
    }

    /// Count one replacement.
    pub(crate) fn restarted(&mut self, why: Reason) {
        if let Some(index) = Reason::ALL.iter().position(|&reason| reason == why) {
            self.restarts[index] += 1;
        }
    }

    /// Keep the counts of a worker being reaped (its entry is reused later).
    pub(crate) fn fold(&mut self, entry: usize, slot: &Slot) {
        self.gone.add(slot.requests(), slot.counters());
        self.last_requests.remove(&entry);
    }
}

/// One worker as the stats show it.
pub(crate) struct WorkerView {
    /// Its position, 1-based (uWSGI's worker id).
    pub id: usize,
    /// Its board entry.
    pub entry: usize,
    /// 0 until the master learns it.
    pub pid: i32,
    /// Where its counters are.
    pub slot: &'static Slot,
    /// Accepting connections (not booting, not retiring).
    pub accepting: bool,
    /// Processes started for this position so far.
    pub spawns: u64,
    /// When this process was started, in seconds since the epoch.
    pub last_spawn: u64,
    /// Requests since the previous stats read.
    pub delta_requests: u64,
    /// `--threads`: how many `cores` it reports.
    pub threads: usize,
}

/// One listener as the stats show it.
pub(crate) struct SocketView {
    /// Its address, as the banner shows it.
    pub name: String,
    /// uWSGI's protocol names: `http` or `uwsgi`.
    pub proto: &'static str,
    pub queue: u64,
    pub max_queue: u64,
    /// One socket every worker shares (unix, inherited) rather than one each.
    pub shared: bool,
}

/// Everything one stats read shows.
pub(crate) struct View {
    pub workers: Vec<WorkerView>,
    pub sockets: Vec<SocketView>,
    /// `ListenOverflows` since the master started (the counter is system-wide).
    pub listen_queue_errors: u64,
}

impl View {
    /// Connections waiting in every listener's queue.
    pub(crate) fn listen_queue(&self) -> u64 {
        self.sockets.iter().map(|socket| socket.queue).sum()
    }

    /// App calls running now, in every worker.
    pub(crate) fn busy(&self) -> u64 {
        self.workers
            .iter()
            .map(|worker| u64::from(worker.slot.busy()))
            .sum()
    }
}

fn worker_json(worker: &WorkerView) -> Value {
    let counters = worker.slot.counters();
    let requests = worker.slot.requests();
    let busy = worker.slot.busy();
    let status = if !worker.accepting && requests == 0 && busy == 0 {
        "cheap"
    } else if busy > 0 {
        "busy"
    } else {
        "idle"
    };
    let total_us = counters.total().sum_us();
    let (rss, vsz) = super::kernel::memory(worker.pid);
    let cores: Vec<Value> = counters
        .cores(worker.threads)
        .iter()
        .enumerate()
        .map(|(id, core)| {
            json!({
                "id": id,
                "requests": core.requests(),
                "static_requests": 0,
                "routed_requests": 0,
                "offloaded_requests": 0,
                "write_errors": 0,
                "read_errors": 0,
                "in_request": u8::from(core.in_request()),
                "vars": [],
                "req_info": {},
            })
        })
        .collect();
    json!({
        "id": worker.id,
        "pid": worker.pid,
        "accepting": u8::from(worker.accepting),
        "requests": requests,
        "delta_requests": worker.delta_requests,
        "exceptions": counters.exceptions(),
        "harakiri_count": counters.harakiri(),
        "signals": 0,
        "signal_queue": 0,
        "status": status,
        "rss": rss,
        "vsz": vsz,
        "running_time": total_us,
        "last_spawn": worker.last_spawn,
        "respawn_count": worker.spawns,
        "tx": counters.tx(),
        "avg_rt": total_us.checked_div(requests).unwrap_or(0),
        "apps": [],
        "cores": cores,
        // Ours, past uWSGI's layout.
        "in_flight": busy,
        "busy_threads": busy,
        "threads": worker.threads,
        "rx": counters.rx(),
        "spooled": counters.spooled(),
    })
}

/// The stats JSON of `view`.
pub(crate) fn json(view: &View) -> Vec<u8> {
    // SAFETY: getuid/getgid cannot fail.
    let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
    let cwd = std::env::current_dir()
        .map(|dir| dir.display().to_string())
        .unwrap_or_default();
    let sockets: Vec<Value> = view
        .sockets
        .iter()
        .map(|socket| {
            json!({
                "name": socket.name,
                "proto": socket.proto,
                "queue": socket.queue,
                "max_queue": socket.max_queue,
                "shared": u8::from(socket.shared),
                "can_offload": 0,
            })
        })
        .collect();
    let workers: Vec<Value> = view.workers.iter().map(worker_json).collect();
    let document = json!({
        "version": concat!("rwsgi-", env!("CARGO_PKG_VERSION")),
        "listen_queue": view.listen_queue(),
        "listen_queue_errors": view.listen_queue_errors,
        "signal_queue": 0,
        "load": view.busy(),
        "pid": std::process::id(),
        "uid": uid,
        "gid": gid,
        "cwd": cwd,
        "locks": [],
        "sockets": sockets,
        "workers": workers,
    });
    let mut bytes = serde_json::to_vec(&document).unwrap_or_default();
    bytes.push(b'\n');
    bytes
}
