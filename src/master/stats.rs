//! The master's side of `--stats`: what it knows that the workers' board
//! does not (which process fills which position, spawns, restarts and
//! why, the listeners' queues), put together with the board when a stats
//! client connects. The pages themselves are `stats::report` and
//! `stats::metrics`; the listener is `stats::server`.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::Arbiter;
use crate::config::{Address, ListenerProtocol};
use crate::stats::kernel;
use crate::stats::metrics::{self, Scrape};
use crate::stats::report::{self, Reason, SocketView, View, WorkerView};
use crate::stats::server::{Page, StatsServer};

/// Seconds since the epoch now (uWSGI's `last_spawn`).
pub(super) fn epoch_seconds() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_secs())
}

impl Arbiter {
    /// Serve the stats clients that are ready (never waits).
    pub(super) fn serve_stats(&mut self) {
        let Some(mut server) = self.stats_server.take() else {
            return;
        };
        server.turn(|page| match page {
            Page::Json => report::json(&self.stats_view()),
            Page::Metrics => metrics::text(self.scrape()),
        });
        self.stats_server = Some(server);
    }

    /// How soon the loop must come back for the stats clients.
    pub(super) fn stats_wake(&self) -> Option<Duration> {
        self.stats_server.as_ref().and_then(StatsServer::next_wake)
    }

    /// Count a worker replaced, for `/metrics`.
    pub(super) fn count_restart(&mut self, why: Reason) {
        self.ledger.restarted(why);
    }

    fn sockets(&self) -> Vec<SocketView> {
        self.listeners
            .iter()
            .map(|listener| {
                let (queue, max_queue) = match listener.address {
                    Address::Tcp(_) => listener
                        .per_slot
                        .iter()
                        .filter_map(kernel::tcp_queue)
                        .fold((0, 0), |(queue, most), (now, backlog)| {
                            (queue + now, most.max(backlog))
                        }),
                    // Every worker shares the one socket (the others are copies).
                    Address::Unix(_) | Address::Abstract(_) => listener
                        .per_slot
                        .first()
                        .and_then(kernel::unix_queue)
                        .unwrap_or((0, 0)),
                };
                SocketView {
                    name: listener.address.to_string(),
                    proto: match listener.protocol {
                        ListenerProtocol::Http => "http",
                        ListenerProtocol::Uwsgi => "uwsgi",
                    },
                    queue,
                    max_queue,
                    shared: !listener.has_sibling_sockets(),
                }
            })
            .collect()
    }

    fn stats_view(&mut self) -> View {
        self.fleet.learn_pids(&self.board);
        let mut workers = Vec::new();
        for worker in &self.fleet.workers {
            let Some(slot) = self.board.slot(worker.entry) else {
                continue;
            };
            let requests = slot.requests();
            let before = self
                .ledger
                .last_requests
                .insert(worker.entry, requests)
                .unwrap_or(0);
            let position = self.fleet.positions.get(worker.id.wrapping_sub(1));
            workers.push(WorkerView {
                id: worker.id,
                entry: worker.entry,
                pid: worker.pid.unwrap_or(0),
                slot,
                accepting: slot.is_serving() && worker.retired.is_none(),
                spawns: position.map_or(1, |position| position.spawns),
                last_spawn: worker.spawned_at,
                delta_requests: requests.saturating_sub(before),
                threads: self.config.threads,
            });
        }
        workers.sort_by_key(|worker| (worker.id, worker.entry));
        View {
            workers,
            sockets: self.sockets(),
            listen_queue_errors: self
                .ledger
                .overflows_since_start(kernel::listen_overflows()),
        }
    }

    fn scrape(&mut self) -> Scrape {
        let view = self.stats_view();
        let mut totals = self.ledger.gone.clone();
        for worker in &view.workers {
            totals.add(worker.slot.requests(), worker.slot.counters());
        }
        let threads = view
            .workers
            .iter()
            .filter(|worker| worker.accepting)
            .map(|worker| worker.threads as u64)
            .sum();
        Scrape {
            totals,
            restarts: self.ledger.restarts,
            busy_threads: view.busy(),
            threads,
            workers: view.workers.len() as u64,
            queues: view
                .sockets
                .iter()
                .map(|socket| (socket.name.clone(), socket.queue))
                .collect(),
            overflows: view.listen_queue_errors,
            rss: view
                .workers
                .iter()
                .map(|worker| {
                    let rss = kernel::memory(worker.pid).0;
                    (worker.id.to_string(), worker.pid.to_string(), rss)
                })
                .collect(),
        }
    }
}
