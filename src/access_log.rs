//! The access log: one line per answered request, made on the I/O side
//! after the response is sent, never on a Python thread and never under
//! the GIL. Lines gather in a buffer that a writer thread of its own drains
//! (at least every second, when it fills, and when the worker ends), so a
//! slow or full destination (a pipe nobody reads, a full disk) never holds
//! up a response: lines are dropped instead, with one warning a minute.
//!
//! Formats: `common` and `combined` (Apache's), and `runserver`, the lines
//! Django's development server prints (`[01/Dec/2026 14:05:00] "GET / HTTP/1.1" 200 1234`).

use std::fs::File;
use std::io::Write;
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::time::Duration;

use parking_lot::Mutex;

use crate::clock;
pub(crate) use crate::config::AccessLogFormat as Format;
use crate::finished::Finished as Entry;
use crate::log;
use crate::request::{Peer, RequestHead};

/// Buffered bytes past which a batch goes to the writer at once.
const BATCH: usize = 32 * 1024;
/// Batches that may wait for the writer before lines are dropped.
const QUEUED_BATCHES: usize = 64;
/// Seconds between two warnings about dropped lines.
const WARN_EVERY: u64 = 60;

/// A worker's access log.
pub(crate) struct AccessLog {
    format: Format,
    state: Mutex<State>,
    batches: SyncSender<Batch>,
}

/// What the writer thread is handed.
enum Batch {
    Lines(Vec<u8>),
    /// Answer once everything before it is written (the worker's end).
    Barrier(std::sync::mpsc::Sender<()>),
}

struct State {
    buffer: Vec<u8>,
    /// The second the cached timestamp is for, and its text.
    stamp: (u64, String),
    dropped: u64,
    warned_at: u64,
}

impl AccessLog {
    /// Log to `destination` (`-` for standard output, else a file opened
    /// for appending, created if missing).
    pub(crate) fn open(destination: &str, format: Format) -> std::io::Result<Self> {
        let out: Box<dyn Write + Send> = if destination == "-" {
            Box::new(std::io::stdout())
        } else {
            Box::new(
                File::options()
                    .create(true)
                    .append(true)
                    .open(destination)?,
            )
        };
        let (batches, queue) = sync_channel(QUEUED_BATCHES);
        std::thread::Builder::new()
            .name("rwsgi-access-log".into())
            .spawn(move || write_batches(&queue, out))?;
        Ok(Self {
            format,
            state: Mutex::new(State {
                buffer: Vec::with_capacity(BATCH),
                stamp: (u64::MAX, String::new()),
                dropped: 0,
                warned_at: 0,
            }),
            batches,
        })
    }

    /// Add the line for `entry`.
    pub(crate) fn record(&self, entry: &Entry<'_>) {
        let mut state = self.state.lock();
        let second = clock::unix_seconds();
        if state.stamp.0 != second {
            state.stamp = (second, timestamp(second, self.format));
        }
        let State { buffer, stamp, .. } = &mut *state;
        format_line(buffer, &stamp.1, self.format, entry);
        if state.buffer.len() >= BATCH {
            self.hand_over(&mut state);
        }
    }

    /// Send what is buffered to the writer (every second, and at the end).
    pub(crate) fn flush(&self) {
        let mut state = self.state.lock();
        if !state.buffer.is_empty() {
            self.hand_over(&mut state);
        }
    }

    /// Flush and wait (up to a second) for the writer to write it all:
    /// the worker is about to exit.
    pub(crate) fn finish(&self) {
        self.flush();
        let (done, written) = std::sync::mpsc::channel();
        if self.batches.try_send(Batch::Barrier(done)).is_ok() {
            let _ = written.recv_timeout(Duration::from_secs(1));
        }
    }

    fn hand_over(&self, state: &mut State) {
        let batch = std::mem::replace(&mut state.buffer, Vec::with_capacity(BATCH));
        let lines = memchr::memchr_iter(b'\n', &batch).count() as u64;
        if let Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) =
            self.batches.try_send(Batch::Lines(batch))
        {
            state.dropped += lines;
            let now = clock::unix_seconds();
            if now >= state.warned_at + WARN_EVERY {
                state.warned_at = now;
                log::warning(&format!(
                    "access log: its destination does not keep up; {} line(s) dropped so far",
                    state.dropped
                ));
            }
        }
    }
}

/// The writer thread: write each batch; a failed write drops it (warned once a minute).
fn write_batches(queue: &Receiver<Batch>, mut out: Box<dyn Write + Send>) {
    let mut warned_at = 0;
    while let Ok(batch) = queue.recv() {
        let batch = match batch {
            Batch::Lines(lines) => lines,
            Batch::Barrier(done) => {
                let _ = done.send(());
                continue;
            }
        };
        if let Err(error) = out.write_all(&batch).and_then(|()| out.flush()) {
            let now = clock::unix_seconds();
            if now >= warned_at + WARN_EVERY {
                warned_at = now;
                log::warning(&format!(
                    "access log: a write failed ({error}); its lines are dropped"
                ));
            }
        }
    }
}

/// Flush `log` every second until the worker's runtime ends.
pub(crate) async fn flush_every_second(log: std::sync::Arc<AccessLog>) {
    let mut ticks = tokio::time::interval(Duration::from_secs(1));
    loop {
        ticks.tick().await;
        log.flush();
    }
}

fn format_line(out: &mut Vec<u8>, stamp: &str, format: Format, entry: &Entry<'_>) {
    let head = entry.head;
    let bytes = entry
        .sent
        .map_or_else(|| "-".to_owned(), |bytes| bytes.to_string());
    let request_line = |out: &mut Vec<u8>| {
        out.push(b'"');
        escaped(out, head.method());
        out.push(b' ');
        escaped(out, head.uri());
        out.push(b' ');
        out.extend_from_slice(protocol(head).as_bytes());
        out.push(b'"');
    };
    match format {
        Format::Runserver => {
            out.push(b'[');
            out.extend_from_slice(stamp.as_bytes());
            out.extend_from_slice(b"] ");
            request_line(out);
            let _ = write!(out, " {} {}", entry.status, bytes);
        }
        Format::Common | Format::Combined => {
            // Behind a proxy (uwsgi), the client is the one it names.
            let proxied = head
                .from_proxy
                .then(|| head.cgi().find(|(name, _)| *name == b"REMOTE_ADDR"))
                .flatten();
            match (proxied, entry.peer) {
                (Some((_, address)), _) => escaped(out, address),
                (None, Peer::Tcp(address)) => {
                    let _ = write!(out, "{}", address.ip());
                }
                (None, Peer::Unix) => out.push(b'-'),
            }
            out.extend_from_slice(b" - - [");
            out.extend_from_slice(stamp.as_bytes());
            out.extend_from_slice(b"] ");
            request_line(out);
            let _ = write!(out, " {} {}", entry.status, bytes);
            if format == Format::Combined {
                for name in [&b"referer"[..], b"user-agent"] {
                    out.extend_from_slice(b" \"");
                    escaped(out, head.header(name).unwrap_or(b"-"));
                    out.push(b'"');
                }
            }
        }
    }
    out.push(b'\n');
}

fn protocol(head: &RequestHead) -> &str {
    match &head.protocol {
        crate::request::Protocol::Http10 => "HTTP/1.0",
        crate::request::Protocol::Http11 => "HTTP/1.1",
        crate::request::Protocol::Other(span) => {
            std::str::from_utf8(head.slice(span)).unwrap_or("HTTP/?")
        }
    }
}

/// Client text as it was, but quotes, backslashes and control or non-ASCII
/// bytes escaped (`\xNN`), so no request can forge a line.
fn escaped(out: &mut Vec<u8>, text: &[u8]) {
    for &byte in text {
        match byte {
            b'"' | b'\\' => {
                out.push(b'\\');
                out.push(byte);
            }
            0x20..=0x7e => out.push(byte),
            _ => {
                let _ = write!(out, "\\x{byte:02x}");
            }
        }
    }
}

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// `01/Dec/2026:14:05:00 +0000` (common) or `01/Dec/2026 14:05:00` (runserver), in UTC.
fn timestamp(unix: u64, format: Format) -> String {
    let (year, month, day) = civil_date(unix / 86_400);
    let seconds = unix % 86_400;
    let (hour, minute, second) = (seconds / 3600, seconds % 3600 / 60, seconds % 60);
    let month = MONTHS[(month - 1) as usize];
    match format {
        Format::Runserver => {
            format!("{day:02}/{month}/{year} {hour:02}:{minute:02}:{second:02}")
        }
        _ => format!("{day:02}/{month}/{year}:{hour:02}:{minute:02}:{second:02} +0000"),
    }
}

/// The (year, month, day) of a day count since 1970-01-01 (Howard
/// Hinnant's days-to-civil algorithm).
fn civil_date(days: u64) -> (i64, u32, u32) {
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let shifted_month = (5 * day_of_year + 2) / 153;
    let day = (day_of_year - (153 * shifted_month + 2) / 5 + 1) as u32;
    let month = if shifted_month < 10 {
        shifted_month + 3
    } else {
        shifted_month - 9
    } as u32;
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::{civil_date, escaped, timestamp, Format};

    #[test]
    fn dates_in_both_layouts() {
        assert_eq!(civil_date(0), (1970, 1, 1));
        assert_eq!(civil_date(11_016), (2000, 2, 29));
        // 2026-12-01 14:05:00 UTC
        let at = 1_796_133_900;
        assert_eq!(timestamp(at, Format::Common), "01/Dec/2026:14:05:00 +0000");
        assert_eq!(timestamp(at, Format::Runserver), "01/Dec/2026 14:05:00");
    }

    #[test]
    fn client_text_cannot_forge_a_line() {
        let mut out = Vec::new();
        escaped(&mut out, b"/a\"b\\c\r\n\x7f\xff");
        assert_eq!(out, b"/a\\\"b\\\\c\\x0d\\x0a\\x7f\\xff");
    }
}
