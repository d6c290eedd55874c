//! The access log: one line per answered request, made on the I/O side
//! after the response is sent, never on a Python thread and never under
//! the GIL. Lines gather in a buffer that a writer thread of its own drains
//! (at least every second, when it fills, and when the worker ends), so a
//! slow or full destination (a pipe nobody reads, a full disk) never holds
//! up a response: lines are dropped instead, with one warning a minute.
//!
//! The layouts (`format.rs`): `common` and `combined` (Apache's),
//! `runserver` (Django's development server's), `json`, and uWSGI-style
//! `%(name)` templates. SIGUSR1 has the writer open its file again between
//! two batches (logrotate), losing no line.

pub(crate) mod format;

use std::fs::File;
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;

use crate::clock;
use crate::finished::Finished as Entry;
use crate::log;
use crate::log::time::LocalTime;
pub(crate) use format::Format;

/// Buffered bytes past which a batch goes to the writer at once.
const BATCH: usize = 32 * 1024;
/// Batches that may wait for the writer before lines are dropped.
const QUEUED_BATCHES: usize = 64;
/// Seconds between two warnings about dropped lines.
const WARN_EVERY: u64 = 60;

/// A worker's access log.
pub(crate) struct AccessLog {
    format: Format,
    /// The worker's position, for `%(wid)`.
    wid: usize,
    pid: u32,
    state: Mutex<State>,
    batches: SyncSender<Batch>,
    /// A reopen that could not be queued (the queue was full): the writer
    /// does it before its next batch.
    reopen_late: Arc<AtomicBool>,
}

/// What the writer thread is handed.
enum Batch {
    Lines(Vec<u8>),
    /// Open the file again before the next batch (SIGUSR1).
    Reopen,
    /// Answer once everything before it is written (the worker's end).
    Barrier(std::sync::mpsc::Sender<()>),
}

/// The texts of one second, made once for all its lines.
struct Stamps {
    unix: u64,
    apache: String,
    runserver: String,
    iso: String,
    ctime: String,
}

impl Stamps {
    fn at(unix: u64) -> Self {
        let local = LocalTime::local(unix);
        Self {
            unix,
            apache: local.apache(),
            runserver: local.runserver(),
            iso: local.iso(None),
            ctime: local.ctime(),
        }
    }
}

struct State {
    buffer: Vec<u8>,
    stamps: Stamps,
    dropped: u64,
    warned_at: u64,
}

/// Where the lines go.
enum Destination {
    Stdout,
    /// fd 2: the error log (`--log-file` points it at its file).
    Stderr,
    File(String),
}

impl Destination {
    fn open(&self) -> std::io::Result<Box<dyn Write + Send>> {
        Ok(match self {
            Self::Stdout => Box::new(std::io::stdout()),
            Self::Stderr => Box::new(std::io::stderr()),
            Self::File(path) => Box::new(File::options().create(true).append(true).open(path)?),
        })
    }
}

impl AccessLog {
    /// Log to `destination` (`-` for standard output, `stderr` for the
    /// error log, else a file opened for appending, created if missing),
    /// as worker `wid`.
    pub(crate) fn open(destination: &str, format: Format, wid: usize) -> std::io::Result<Self> {
        let destination = match destination {
            "-" => Destination::Stdout,
            "stderr" => Destination::Stderr,
            path => Destination::File(path.to_owned()),
        };
        let out = destination.open()?;
        let (batches, queue) = sync_channel(QUEUED_BATCHES);
        let reopen_late = Arc::new(AtomicBool::new(false));
        let late = Arc::clone(&reopen_late);
        std::thread::Builder::new()
            .name("rwsgi-access-log".into())
            .spawn(move || write_batches(&queue, &destination, out, &late))?;
        Ok(Self {
            format,
            wid,
            pid: std::process::id(),
            state: Mutex::new(State {
                buffer: Vec::with_capacity(BATCH),
                stamps: Stamps::at(clock::unix_seconds()),
                dropped: 0,
                warned_at: 0,
            }),
            batches,
            reopen_late,
        })
    }

    /// Add the line for `entry`.
    /// `took` is the time from its head read to now, when it is accounted.
    pub(crate) fn record(&self, entry: &Entry<'_>, took: Duration) {
        let micros = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
        let mut state = self.state.lock();
        let second = clock::unix_seconds();
        if state.stamps.unix != second {
            state.stamps = Stamps::at(second);
        }
        let State { buffer, stamps, .. } = &mut *state;
        let context = format::Context {
            apache: &stamps.apache,
            runserver: &stamps.runserver,
            iso: &stamps.iso,
            ctime: &stamps.ctime,
            unix: stamps.unix,
            wid: self.wid,
            pid: self.pid,
            micros,
        };
        format::format_line(buffer, &self.format, entry, &context);
        if state.buffer.len() >= BATCH {
            self.hand_over(&mut state);
        }
    }

    /// SIGUSR1: what is buffered goes to the current file, later lines to
    /// the file opened again at the same path.
    pub(crate) fn reopen(&self) {
        self.flush();
        if self.batches.try_send(Batch::Reopen).is_err() {
            self.reopen_late.store(true, Ordering::SeqCst);
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

/// The writer thread: write each batch; a failed write drops it (warned
/// once a minute); reopen the file between batches when asked.
fn write_batches(
    queue: &Receiver<Batch>,
    destination: &Destination,
    mut out: Box<dyn Write + Send>,
    reopen_late: &AtomicBool,
) {
    let mut warned_at = 0;
    let reopen = |out: &mut Box<dyn Write + Send>| match destination.open() {
        Ok(file) => *out = file,
        Err(error) => log::warning(&format!(
            "access log: cannot open it again ({error}); writing on to the old file"
        )),
    };
    while let Ok(batch) = queue.recv() {
        if reopen_late.swap(false, Ordering::SeqCst) {
            reopen(&mut out);
        }
        let batch = match batch {
            Batch::Lines(lines) => lines,
            Batch::Reopen => {
                reopen(&mut out);
                continue;
            }
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
