//! Request timeouts (`--harakiri`): which request each thread of the worker
//! runs Python for, since when, and on which socket, so that the watchdog
//! (`watchdog.rs`) can answer 504 for a call that ran too long and have the
//! thread unwound, while the connection that owns the socket stays the one
//! that closes it.
//!
//! Each thread that calls the app has one entry (made the first time it
//! does, dropped when the thread ends). The app call on a runtime thread is
//! synchronous, so a thread runs at most one request's Python at a time: the
//! app call itself, or one pull of a streamed body. An entry is `Idle`,
//! `Running` (inside Python for a request; its deadline counts) or
//! `TimedOut` (the watchdog answered for it). Both sides change it under the
//! entry's lock, and the watchdog writes to the socket while holding it, so
//! exactly one of them answers, and the connection, which leaves the call
//! through that lock, cannot close the socket (and the kernel cannot hand
//! its number to a new connection) while the watchdog writes to it.
//!
//! Nothing here touches Python: raising the exception in the thread and
//! logging its stack are `wsgi::timeout`'s, which the watchdog is given.

pub(crate) mod watchdog;

use std::borrow::Cow;
use std::os::fd::RawFd;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use http::StatusCode;
use parking_lot::Mutex;

use crate::clock;
use crate::request::RequestHead;
use crate::response::encode::{encode, Exchange};
use crate::response::Response;

/// Bytes of a request line kept for the log (the rest is cut).
const LINE: usize = 160;

/// What answering for a request needs: its socket, and how its answer is
/// framed (the protocol's `Exchange`, as the encoder takes it).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Client {
    pub fd: RawFd,
    pub exchange: Exchange,
}

/// `METHOD target` of a request, copied into a fixed buffer so that
/// watching a call allocates nothing.
#[derive(Clone, Copy)]
pub(crate) struct Line {
    bytes: [u8; LINE],
    len: usize,
}

impl Line {
    /// The request line of `head`, cut to `LINE` bytes.
    pub(crate) fn new(head: &RequestHead) -> Self {
        let mut line = Self {
            bytes: [0; LINE],
            len: 0,
        };
        line.push(head.method());
        line.push(b" ");
        line.push(head.uri());
        line
    }

    fn push(&mut self, part: &[u8]) {
        let room = LINE - self.len;
        let taken = part.len().min(room);
        self.bytes[self.len..self.len + taken].copy_from_slice(&part[..taken]);
        self.len += taken;
    }

    /// The line for a log message.
    pub(crate) fn text(&self) -> Cow<'_, str> {
        String::from_utf8_lossy(&self.bytes[..self.len])
    }
}

/// One request as the watchdog must know it while a thread runs its Python.
#[derive(Clone, Copy)]
pub(crate) struct Watch {
    client: Client,
    line: Line,
    /// When the app was called (`clock::monotonic_ms`).
    started: u64,
    /// `--harakiri` in milliseconds.
    limit: u64,
}

impl Watch {
    /// Start the clock of a request about to be given to the app.
    pub(crate) fn new(client: Client, head: &RequestHead, limit: Duration) -> Self {
        Self {
            client,
            line: Line::new(head),
            started: clock::monotonic_ms(),
            limit: millis(limit),
        }
    }

    /// Whether the request has run past its limit (checked by a streamed
    /// body before it asks the app for more).
    pub(crate) fn expired(&self) -> bool {
        clock::monotonic_ms() >= self.deadline()
    }

    fn deadline(&self) -> u64 {
        self.started.saturating_add(self.limit)
    }

    /// The request line, for log lines.
    pub(crate) fn line(&self) -> &Line {
        &self.line
    }

    /// The limit, for log lines.
    pub(crate) fn limit(&self) -> Duration {
        Duration::from_millis(self.limit)
    }
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis())
        .unwrap_or(u64::MAX)
        .max(1)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Idle,
    Running,
    TimedOut,
}

/// What an entry holds, under its lock.
struct Call {
    state: State,
    /// Counts the calls entered, so a report about one call never acts on the next.
    generation: u64,
    watch: Option<Watch>,
    /// The response's head is on the wire (a streamed body is being pulled):
    /// the watchdog can no longer answer 504, only close.
    head_sent: bool,
    /// When the watchdog answered for the call (`clock::monotonic_ms`).
    timed_out_at: u64,
    /// The master was asked to replace the worker for this call.
    recycle_asked: bool,
}

/// One thread's entry.
pub(crate) struct Entry {
    call: Mutex<Call>,
    /// The thread's id as CPython knows it (`threading.get_ident()`, which
    /// is `pthread_self()`): what `PyThreadState_SetAsyncExc` and
    /// `sys._current_frames()` take.
    thread_id: u64,
}

/// A call entered with `enter`; hand it back to `leave`.
#[must_use]
pub(crate) struct Token(u64);

/// How a watched call ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// The caller answers (or goes on sending) as usual.
    Answer,
    /// The watchdog answered for it (504, or closed a started response):
    /// the caller sends nothing more and closes.
    TimedOut,
}

impl Entry {
    fn new(thread_id: u64) -> Self {
        Self {
            call: Mutex::new(Call {
                state: State::Idle,
                generation: 0,
                watch: None,
                head_sent: false,
                timed_out_at: 0,
                recycle_asked: false,
            }),
            thread_id,
        }
    }

    fn begin(&self, watch: &Watch, head_sent: bool) -> Token {
        let mut call = self.call.lock();
        call.generation = call.generation.wrapping_add(1);
        call.state = State::Running;
        call.watch = Some(*watch);
        call.head_sent = head_sent;
        call.recycle_asked = false;
        Token(call.generation)
    }

    fn end(&self, token: Token) -> Outcome {
        let mut call = self.call.lock();
        if call.generation != token.0 {
            return Outcome::Answer;
        }
        let was = std::mem::replace(&mut call.state, State::Idle);
        call.watch = None;
        if was == State::TimedOut {
            Outcome::TimedOut
        } else {
            Outcome::Answer
        }
    }

    /// The watchdog's look at the entry at `now`: answer for a call past its
    /// deadline, notice one that did not unwind within `grace`.
    fn check(self: &Arc<Self>, now: u64, grace: u64) -> Check {
        let mut call = self.call.lock();
        let Some(watch) = call.watch else {
            return Check::Quiet { due: None };
        };
        match call.state {
            State::Idle => Check::Quiet { due: None },
            State::Running if now < watch.deadline() => Check::Quiet {
                due: Some(watch.deadline()),
            },
            State::Running => {
                let answered = !call.head_sent;
                if answered {
                    answer_504(watch.client);
                }
                close(watch.client.fd);
                call.state = State::TimedOut;
                call.timed_out_at = now;
                Check::Expired(Report {
                    entry: Arc::clone(self),
                    generation: call.generation,
                    line: watch.line,
                    limit: Duration::from_millis(watch.limit),
                    answered,
                })
            }
            State::TimedOut if call.recycle_asked => Check::Quiet { due: None },
            State::TimedOut => {
                let due = call.timed_out_at.saturating_add(grace);
                if now < due {
                    return Check::Quiet { due: Some(due) };
                }
                call.recycle_asked = true;
                Check::Stuck { line: watch.line }
            }
        }
    }
}

/// What the watchdog found in one entry.
enum Check {
    /// Nothing to do; look again at `due` at the latest.
    Quiet { due: Option<u64> },
    /// The call ran past its deadline and was answered for.
    Expired(Report),
    /// The call did not unwind within the grace after it was answered for.
    Stuck { line: Line },
}

/// A call the watchdog answered for, handed to the Python side to log the
/// thread's stack and raise the exception in it.
pub(crate) struct Report {
    entry: Arc<Entry>,
    generation: u64,
    line: Line,
    limit: Duration,
    /// A 504 went out (else the response had started: the socket was only closed).
    pub answered: bool,
}

impl Report {
    /// The request line.
    pub(crate) fn line(&self) -> &Line {
        &self.line
    }

    /// The `--harakiri` limit it ran past.
    pub(crate) fn limit(&self) -> Duration {
        self.limit
    }

    /// The thread's CPython id.
    pub(crate) fn thread_id(&self) -> u64 {
        self.entry.thread_id
    }

    /// Run `raise` (with the thread's id) if the thread is still inside the
    /// call that timed out; whether it was. Called with the GIL held: the
    /// thread leaves a call only while it holds the GIL, so it cannot leave
    /// between this check and the exception being set, and a leaving thread
    /// clears an exception set too late for its call (see `leave`).
    pub(crate) fn raise_if_inside(&self, raise: impl FnOnce(u64)) -> bool {
        let call = self.entry.call.lock();
        let inside = call.generation == self.generation && call.state == State::TimedOut;
        if inside {
            raise(self.entry.thread_id);
        }
        inside
    }
}

/// Write the 504 straight to the socket, without waiting: the runtime
/// thread that owns it is busy in the app, and a socket whose send buffer
/// is full belongs to a client that would not read the answer anyway.
fn answer_504(client: Client) {
    let exchange = Exchange {
        keep_alive: false,
        ..client.exchange
    };
    let encoded = encode(
        Response::plain(StatusCode::GATEWAY_TIMEOUT),
        exchange,
        BytesMut::new(),
    );
    #[cfg(target_os = "linux")]
    let flags = libc::MSG_NOSIGNAL | libc::MSG_DONTWAIT;
    #[cfg(not(target_os = "linux"))]
    let flags = libc::MSG_DONTWAIT;
    // SAFETY: sends from a buffer we own to a descriptor the entry's lock
    // keeps open (its connection cannot leave the call, let alone close it,
    // while we hold the lock).
    let _ = unsafe {
        libc::send(
            client.fd,
            encoded.head.as_ptr().cast(),
            encoded.head.len(),
            flags,
        )
    };
}

/// End both directions, so the client sees the answer's end at once (the
/// descriptor stays open until its connection drops it).
fn close(fd: RawFd) {
    // SAFETY: as in `answer_504`: the descriptor is held open meanwhile.
    let _ = unsafe { libc::shutdown(fd, libc::SHUT_RDWR) };
}

/// Every thread's entry, for the watchdog.
static ENTRIES: Mutex<Vec<Arc<Entry>>> = Mutex::new(Vec::new());

/// A thread's entry, registered in `ENTRIES` while the thread lives.
struct Registered(Arc<Entry>);

impl Registered {
    fn new() -> Self {
        // SAFETY: pthread_self has no preconditions.
        let thread_id = unsafe { libc::pthread_self() } as u64;
        let entry = Arc::new(Entry::new(thread_id));
        ENTRIES.lock().push(Arc::clone(&entry));
        Self(entry)
    }
}

impl Drop for Registered {
    fn drop(&mut self) {
        ENTRIES.lock().retain(|entry| !Arc::ptr_eq(entry, &self.0));
    }
}

thread_local! {
    static ENTRY: Registered = Registered::new();
}

/// Count `watch`'s request as running on this thread until `leave`; with
/// `head_sent`, its response has started (a streamed body is pulled).
/// Called with the GIL held, right before Python runs.
pub(crate) fn enter(watch: &Watch, head_sent: bool) -> Token {
    ENTRY
        .try_with(|registered| registered.0.begin(watch, head_sent))
        .unwrap_or(Token(0))
}

/// The thread is out of the app's code; whether it may answer. Called with
/// the GIL still held (see `Report::raise_if_inside`). Waits while the
/// watchdog writes to the socket.
pub(crate) fn leave(token: Token) -> Outcome {
    ENTRY
        .try_with(|registered| registered.0.end(token))
        .unwrap_or(Outcome::Answer)
}

#[cfg(test)]
mod tests {
    use std::io::Read;
    use std::os::fd::AsRawFd;
    use std::os::unix::net::UnixStream;
    use std::sync::Arc;
    use std::time::Duration;

    use bytes::Bytes;
    use rwsgi_codec::head::{PathInfo, Protocol, RequestHead};

    use super::{Check, Client, Entry, Line, Outcome, Watch, LINE};
    use crate::response::encode::Exchange;

    fn head(method: &str, uri: &str) -> RequestHead {
        let text = format!("{method}{uri}");
        let method_end = method.len() as u32;
        RequestHead {
            bytes: Bytes::from(text.clone()),
            method: 0..method_end,
            uri: method_end..text.len() as u32,
            path: PathInfo::Decoded(Bytes::new()),
            query: 0..0,
            protocol: Protocol::Http11,
            script_name: 0..0,
            fields: Vec::new(),
            cgi: Vec::new(),
            https: false,
            from_proxy: false,
        }
    }

    fn watch(fd: i32, is_head: bool) -> Watch {
        let client = Client {
            fd,
            exchange: Exchange {
                is_head,
                ..Exchange::refusal(true)
            },
        };
        Watch::new(client, &head("GET", "/slow?x=1"), Duration::from_secs(1))
    }

    fn read_all(mut peer: UnixStream) -> String {
        let mut answer = String::new();
        peer.read_to_string(&mut answer).expect("read to the end");
        answer
    }

    #[test]
    fn the_request_line_is_cut_to_its_buffer() {
        assert_eq!(Line::new(&head("GET", "/a?b")).text(), "GET /a?b");
        let long = "/".repeat(LINE * 2);
        let line = Line::new(&head("POST", &long));
        assert_eq!(line.text().len(), LINE);
        assert!(line.text().starts_with("POST //"));
    }

    #[test]
    fn a_call_that_ends_in_time_is_answered_by_its_connection() {
        let entry = Arc::new(Entry::new(7));
        let (ours, _peer) = UnixStream::pair().expect("pair");
        let watch = watch(ours.as_raw_fd(), false);
        let token = entry.begin(&watch, false);
        let now = watch.started;
        assert!(matches!(
            entry.check(now, 5000),
            Check::Quiet { due: Some(due) } if due == watch.deadline()
        ));
        assert_eq!(entry.end(token), Outcome::Answer);
        assert!(matches!(
            entry.check(now + 10_000, 5000),
            Check::Quiet { due: None }
        ));
    }

    #[test]
    fn the_watchdog_answers_504_once_and_the_connection_then_sends_nothing() {
        let entry = Arc::new(Entry::new(7));
        let (ours, peer) = UnixStream::pair().expect("pair");
        let watch = watch(ours.as_raw_fd(), false);
        let token = entry.begin(&watch, false);
        let late = watch.deadline();
        let Check::Expired(report) = entry.check(late, 5000) else {
            panic!("not expired at its deadline");
        };
        assert!(report.answered);
        assert_eq!(report.thread_id(), 7);
        assert_eq!(report.line().text(), "GET /slow?x=1");
        let answer = read_all(peer);
        assert!(
            answer.starts_with("HTTP/1.1 504 Gateway Timeout\r\n"),
            "{answer}"
        );
        assert!(answer.contains("connection: close\r\n"), "{answer}");
        assert!(answer.ends_with("\r\n\r\nGateway Timeout\n"), "{answer}");
        // A second look does not answer again; the grace is counted from the answer.
        assert!(matches!(
            entry.check(late + 1, 5000),
            Check::Quiet { due: Some(due) } if due == late + 5000
        ));
        assert!(report.raise_if_inside(|id| assert_eq!(id, 7)));
        assert_eq!(entry.end(token), Outcome::TimedOut);
        assert!(
            !report.raise_if_inside(|_| panic!("raised after the call ended")),
            "the call is over"
        );
        // The thread's next call starts clean.
        let next = entry.begin(&watch, false);
        assert!(!report.raise_if_inside(|_| panic!("raised in the next call")));
        assert_eq!(entry.end(next), Outcome::Answer);
    }

    #[test]
    fn a_head_request_gets_a_504_without_a_body_and_a_started_one_only_closes() {
        let entry = Arc::new(Entry::new(1));
        let (ours, peer) = UnixStream::pair().expect("pair");
        let head_watch = watch(ours.as_raw_fd(), true);
        let _token = entry.begin(&head_watch, false);
        assert!(matches!(
            entry.check(head_watch.deadline(), 1),
            Check::Expired(_)
        ));
        let answer = read_all(peer);
        assert!(
            answer.ends_with("content-length: 16\r\nconnection: close\r\n\r\n"),
            "{answer}"
        );

        let (ours, peer) = UnixStream::pair().expect("pair");
        let streaming = watch(ours.as_raw_fd(), false);
        let _token = entry.begin(&streaming, true);
        let Check::Expired(report) = entry.check(streaming.deadline(), 1) else {
            panic!("not expired");
        };
        assert!(!report.answered);
        assert_eq!(
            read_all(peer),
            "",
            "nothing is written after a started response"
        );
    }

    #[test]
    fn a_call_stuck_past_the_grace_is_reported_once() {
        let entry = Arc::new(Entry::new(1));
        let (ours, _peer) = UnixStream::pair().expect("pair");
        let watch = watch(ours.as_raw_fd(), false);
        let token = entry.begin(&watch, false);
        let late = watch.deadline();
        assert!(matches!(entry.check(late, 2000), Check::Expired(_)));
        assert!(matches!(
            entry.check(late + 1999, 2000),
            Check::Quiet { .. }
        ));
        assert!(matches!(
            entry.check(late + 2000, 2000),
            Check::Stuck { .. }
        ));
        assert!(matches!(
            entry.check(late + 9000, 2000),
            Check::Quiet { due: None }
        ));
        assert_eq!(entry.end(token), Outcome::TimedOut);
    }

    #[test]
    fn a_stale_token_does_not_end_a_later_call() {
        let entry = Arc::new(Entry::new(1));
        let (ours, _peer) = UnixStream::pair().expect("pair");
        let watch = watch(ours.as_raw_fd(), false);
        let stale = entry.begin(&watch, false);
        let current = entry.begin(&watch, false);
        assert_eq!(entry.end(stale), Outcome::Answer);
        assert!(matches!(
            entry.check(watch.started, 1),
            Check::Quiet { due: Some(_) }
        ));
        assert_eq!(entry.end(current), Outcome::Answer);
    }

    #[test]
    fn threads_register_their_entry_while_they_live() {
        let count = || super::ENTRIES.lock().len();
        let before = count();
        std::thread::spawn(move || {
            let (ours, _peer) = UnixStream::pair().expect("pair");
            let token = super::enter(&watch(ours.as_raw_fd(), false), false);
            assert!(count() > before);
            assert_eq!(super::leave(token), Outcome::Answer);
        })
        .join()
        .expect("joined");
        assert_eq!(count(), before);
    }
}
