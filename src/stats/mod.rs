//! Stats and metrics (issue 16). Workers count what they answer in their
//! board entry (`counters.rs`: atomics only, nothing per request that
//! locks, allocates or calls the kernel); the master, which owns the
//! lifecycle facts (spawns, restarts and why), serves `--stats`: uWSGI's
//! stats JSON, so `uwsgitop` works unchanged (`report.rs`), and with
//! `--stats-http`, Prometheus text on `GET /metrics` (`metrics.rs`), from
//! its own poll loop without a thread (`server.rs`). `kernel.rs` reads what
//! only the kernel knows: listen queues, memory of a process.

mod counters;
pub(crate) mod kernel;
pub(crate) mod metrics;
pub(crate) mod report;
pub(crate) mod server;

pub(crate) use counters::Counters;

use crate::finished::Finished;
use counters::Answered;

/// Count one answered request (from `connection::account`, on the I/O side).
pub(crate) fn record(finished: &Finished<'_>) {
    let Some(counters) = counters::mine() else {
        return;
    };
    let head = finished.response;
    // A small body travels inside `response`, after the head's blank line.
    let body = if head.ends_with(b"\r\n\r\n") {
        finished.sent.unwrap_or(0)
    } else {
        0
    };
    let now = std::time::Instant::now();
    counters.count(&Answered {
        protocol: finished.protocol,
        status: finished.status,
        received: finished.head.bytes.len() as u64,
        sent: head.len() as u64 + body,
        app: finished
            .answered
            .saturating_duration_since(finished.started),
        total: now.saturating_duration_since(finished.started),
    });
}

/// Say which counters this worker process writes to (once, at its start).
pub(crate) fn adopt(counters: &'static Counters) {
    counters::adopt(counters);
}

/// Count an app call that raised.
pub(crate) fn exception() {
    if let Some(counters) = counters::mine() {
        counters.count_exception();
    }
}

/// Count a request body moved to a spool file.
pub(crate) fn spooled() {
    if let Some(counters) = counters::mine() {
        counters.count_spooled();
    }
}

/// Count request body bytes read.
pub(crate) fn received(bytes: u64) {
    if let Some(counters) = counters::mine() {
        counters.count_received(bytes);
    }
}
