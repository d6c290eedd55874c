//! `GET /metrics` of `--stats-http`: Prometheus text, made by the
//! `prometheus-client` crate from what the master read at scrape time (the
//! workers' counters and its own ledger); nothing here is kept between
//! scrapes, so every value is the board's, as it is now.

use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, NoLabelSet};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

use super::report::{Reason, Totals};
use crate::counters::{BUCKETS_US, CLASSES, PROTOCOLS};

/// The `Content-Type` of what `text` returns.
pub(crate) const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

/// What one scrape shows.
#[derive(Debug, Default)]
pub(crate) struct Scrape {
    /// Every worker's counts, the gone ones' included.
    pub totals: Totals,
    /// `Ledger::restarts`.
    pub restarts: [u64; Reason::ALL.len()],
    /// App calls running now (each holds one thread).
    pub busy_threads: u64,
    /// Threads of the accepting workers.
    pub threads: u64,
    pub workers: u64,
    /// Per listener: its name and the connections in its queue.
    pub queues: Vec<(String, u64)>,
    /// `ListenOverflows` since the master started (the counter is system-wide).
    pub overflows: u64,
    /// Per worker process: its id, its pid and its resident memory.
    pub rss: Vec<(String, String, u64)>,
}

#[derive(Debug)]
struct Collector(Scrape);

fn seconds(micros: u64) -> f64 {
    #[allow(clippy::cast_precision_loss)] // microseconds fit f64's 52 bits for 142 years
    let micros = micros as f64;
    micros / 1e6
}

fn counter(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    value: u64,
) -> std::fmt::Result {
    let metric = ConstCounter::new(value);
    metric.encode(encoder.encode_descriptor(name, help, None, metric.metric_type())?)
}

fn gauge(encoder: &mut DescriptorEncoder, name: &str, help: &str, value: u64) -> std::fmt::Result {
    let metric = ConstGauge::new(i64::try_from(value).unwrap_or(i64::MAX));
    metric.encode(encoder.encode_descriptor(name, help, None, metric.metric_type())?)
}

fn histogram(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    (buckets, sum_us): &(Vec<u64>, u64),
) -> std::fmt::Result {
    let mut metric = encoder.encode_descriptor(name, help, None, MetricType::Histogram)?;
    let bounds: Vec<(f64, u64)> = BUCKETS_US
        .iter()
        .map(|&bound| seconds(bound))
        .chain(std::iter::once(f64::INFINITY))
        .zip(buckets.iter().copied().chain(std::iter::repeat(0)))
        .collect();
    let count = buckets.iter().sum();
    metric.encode_histogram::<NoLabelSet>(seconds(*sum_us), count, &bounds, None)
}

impl prometheus_client::collector::Collector for Collector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> std::fmt::Result {
        self.requests(&mut encoder)?;
        self.processes(&mut encoder)
    }
}

impl Collector {
    /// What the requests answered add up to.
    fn requests(&self, encoder: &mut DescriptorEncoder) -> std::fmt::Result {
        let scrape = &self.0;
        let totals = &scrape.totals;
        {
            let mut family = encoder.encode_descriptor(
                "rwsgi_requests",
                "Requests answered, by listener protocol and status class.",
                None,
                MetricType::Counter,
            )?;
            for (protocol, row) in totals.by_class.iter().enumerate() {
                for (class, &count) in row.iter().enumerate() {
                    let labels = [
                        ("protocol", PROTOCOLS[protocol].to_ascii_lowercase()),
                        ("class", CLASSES[class].to_owned()),
                    ];
                    ConstCounter::new(count).encode(family.encode_family(&labels)?)?;
                }
            }
        }
        histogram(
            encoder,
            "rwsgi_request_app_seconds",
            "From a request's head read to its answer ready (body, then app or static file).",
            &totals.app,
        )?;
        histogram(
            encoder,
            "rwsgi_request_duration_seconds",
            "From a request's head read to its answer handed to the socket.",
            &totals.total,
        )?;
        counter(
            encoder,
            "rwsgi_spooled_bodies",
            "Request bodies moved to a spool file (past --post-buffering).",
            totals.spooled,
        )?;
        counter(
            encoder,
            "rwsgi_exceptions",
            "App calls that raised (answered 500).",
            totals.exceptions,
        )?;
        counter(
            encoder,
            "rwsgi_harakiri",
            "Requests answered 504 by --harakiri.",
            totals.harakiri,
        )?;
        let mut family = encoder.encode_descriptor(
            "rwsgi_bytes",
            "Bytes received (request heads and bodies) and sent (response heads, bodies of known length).",
            None,
            MetricType::Counter,
        )?;
        for (kind, value) in [("in", totals.rx), ("out", totals.tx)] {
            ConstCounter::new(value).encode(family.encode_family(&[("kind", kind)])?)?;
        }
        Ok(())
    }

    /// What the workers and listeners are doing now, and the restarts.
    fn processes(&self, encoder: &mut DescriptorEncoder) -> std::fmt::Result {
        let scrape = &self.0;
        gauge(
            encoder,
            "rwsgi_requests_in_flight",
            "Requests inside the app now.",
            scrape.busy_threads,
        )?;
        gauge(
            encoder,
            "rwsgi_busy_threads",
            "App threads running a request now.",
            scrape.busy_threads,
        )?;
        gauge(
            encoder,
            "rwsgi_threads",
            "App threads of the accepting workers.",
            scrape.threads,
        )?;
        gauge(
            encoder,
            "rwsgi_workers",
            "Worker processes.",
            scrape.workers,
        )?;
        {
            let mut family = encoder.encode_descriptor(
                "rwsgi_listen_queue",
                "Connections waiting in a listener's accept queue (from the kernel).",
                None,
                MetricType::Gauge,
            )?;
            for (name, queued) in &scrape.queues {
                let metric = ConstGauge::new(i64::try_from(*queued).unwrap_or(i64::MAX));
                metric.encode(family.encode_family(&[("listener", name.as_str())])?)?;
            }
        }
        counter(
            encoder,
            "rwsgi_listen_overflows",
            "Connections the kernel dropped on a full accept queue since this server started, counted system-wide (ListenOverflows).",
            scrape.overflows,
        )?;
        {
            let mut family = encoder.encode_descriptor(
                "rwsgi_worker_restarts",
                "Worker processes replaced, by reason.",
                None,
                MetricType::Counter,
            )?;
            for (reason, &count) in Reason::ALL.iter().zip(&scrape.restarts) {
                ConstCounter::new(count)
                    .encode(family.encode_family(&[("reason", reason.label())])?)?;
            }
        }
        let mut family = encoder.encode_descriptor(
            "rwsgi_worker_rss_bytes",
            "Resident memory of each worker process.",
            None,
            MetricType::Gauge,
        )?;
        for (worker, pid, rss) in &scrape.rss {
            let metric = ConstGauge::new(i64::try_from(*rss).unwrap_or(i64::MAX));
            let labels = [("worker", worker.as_str()), ("pid", pid.as_str())];
            metric.encode(family.encode_family(&labels)?)?;
        }
        Ok(())
    }
}

/// `scrape` in Prometheus text format.
pub(crate) fn text(scrape: Scrape) -> Vec<u8> {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(Collector(scrape)));
    let mut text = String::new();
    if prometheus_client::encoding::prometheus_text::encode(&mut text, &registry).is_err() {
        text.clear();
    }
    text.into_bytes()
}

#[cfg(test)]
mod tests {
    use super::{text, Scrape};

    #[test]
    fn encodes_every_family() {
        let mut scrape = Scrape::default();
        scrape.totals.by_class[0][1] = 3;
        scrape.totals.app = (vec![2, 1], 4_000);
        scrape.restarts[2] = 1;
        scrape.queues.push(("http://127.0.0.1:1".into(), 4));
        let text = String::from_utf8(text(scrape)).expect("utf-8");
        assert!(
            text.contains("rwsgi_requests_total{protocol=\"http\",class=\"2xx\"} 3"),
            "{text}"
        );
        assert!(text.contains("rwsgi_request_app_seconds_count 3"), "{text}");
        assert!(
            text.contains("rwsgi_request_app_seconds_bucket{le=\"0.0001\"} 2"),
            "{text}"
        );
        assert!(
            text.contains("rwsgi_worker_restarts_total{reason=\"max-requests\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("rwsgi_listen_queue{listener=\"http://127.0.0.1:1\"} 4"),
            "{text}"
        );
    }
}
