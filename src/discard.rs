//! How much of a refused request body is read and thrown away before the
//! connection closes. A proxy such as nginx sends the whole body before it
//! reads the answer; closing with input unread resets the connection and the
//! proxy answers 502 instead of relaying our 413. Both protocols use this
//! budget; each reads its own way.

use std::time::Duration;

use tokio::time::Instant;

/// Most bytes read and dropped.
const LIMIT: u64 = 1 << 30;
/// Longest the discarding may take in all.
const TOTAL_TIME: Duration = Duration::from_secs(30);

/// The bytes and time left for discarding one body.
pub(crate) struct DiscardBudget {
    idle: Duration,
    deadline: Instant,
    read: u64,
}

impl DiscardBudget {
    /// `idle` is the longest silence allowed between reads (0: no own limit).
    pub(crate) fn new(idle: Duration) -> Self {
        Self {
            idle: if idle.is_zero() { TOTAL_TIME } else { idle },
            deadline: Instant::now() + TOTAL_TIME,
            read: 0,
        }
    }

    /// How long the next read may wait; `None` once the byte budget is spent.
    pub(crate) fn next_wait(&self) -> Option<Duration> {
        (self.read < LIMIT).then(|| {
            self.idle
                .min(self.deadline.saturating_duration_since(Instant::now()))
        })
    }

    /// Count bytes read and dropped.
    pub(crate) fn spent(&mut self, bytes: usize) {
        self.read += bytes as u64;
    }
}
