//! Stats and metrics, the master's side (issue 16). Workers count what
//! they answer in their board entry (`crate::counters`: atomics only,
//! nothing per request that locks, allocates or calls the kernel); the master, which owns the
//! lifecycle facts (spawns, restarts and why), serves `--stats`: uWSGI's
//! stats JSON, so `uwsgitop` works unchanged (`report.rs`), and with
//! `--stats-http`, Prometheus text on `GET /metrics` (`metrics.rs`), from
//! its own poll loop without a thread (`server.rs`). `kernel.rs` reads what
//! only the kernel knows: listen queues, memory of a process.

pub(crate) mod kernel;
pub(crate) mod metrics;
pub(crate) mod report;
pub(crate) mod server;
