//! Telling systemd (or any service manager speaking the `sd_notify`
//! protocol) how the master is doing: `READY=1`, `RELOADING=1`,
//! `STOPPING=1`, `STATUS=` lines and watchdog pings.
//!
//! The protocol itself is the `sd-notify` crate's; this module decides who
//! may send (the master only: a forked worker inherits `NOTIFY_SOCKET` but
//! must not speak for the service) and that a missing or broken socket never
//! stops the server (it is logged once). Socket activation (`LISTEN_FDS`) is
//! `net::inherited`'s.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use sd_notify::NotifyState;

use crate::log;

/// Set once a failed notification has been logged: a broken socket would
/// otherwise log a line per watchdog ping.
static FAILURE_LOGGED: AtomicBool = AtomicBool::new(false);

/// The master's link to the service manager. Made in the master; every
/// call is a no-op in any other process (a worker forked with a copy of it)
/// and when `NOTIFY_SOCKET` is unset.
#[derive(Debug)]
pub(crate) struct Notifier {
    /// The process allowed to notify: the one that made this notifier.
    pid: u32,
}

impl Notifier {
    /// A notifier for the calling process (the master).
    pub(crate) fn new() -> Self {
        Self {
            pid: std::process::id(),
        }
    }

    /// Whether a service manager listens (`NOTIFY_SOCKET` is set) and we may speak.
    #[cfg(test)]
    pub(crate) fn is_active(&self) -> bool {
        self.may_send() && std::env::var_os("NOTIFY_SOCKET").is_some()
    }

    fn may_send(&self) -> bool {
        std::process::id() == self.pid
    }

    fn send(&self, states: &[NotifyState<'_>]) {
        if !self.may_send() {
            return;
        }
        if let Err(error) = sd_notify::notify(states) {
            if !FAILURE_LOGGED.swap(true, Ordering::Relaxed) {
                let socket = std::env::var_os("NOTIFY_SOCKET").unwrap_or_default();
                log::warning(&format!(
                    "cannot notify the service manager at NOTIFY_SOCKET={}: {error} \
                     (serving on; further failures are not logged)",
                    socket.to_string_lossy()
                ));
            }
        }
    }

    /// The service serves: `READY=1` with a `STATUS=` line (after start-up, and after a reload).
    pub(crate) fn ready(&self, status: &str) {
        self.send(&[NotifyState::Ready, NotifyState::Status(status)]);
    }

    /// A reload begins: `RELOADING=1` with `MONOTONIC_USEC` (systemd 253+
    /// fails a reload without it); `ready` ends it.
    pub(crate) fn reloading(&self) {
        match NotifyState::monotonic_usec_now() {
            Ok(now) => self.send(&[
                NotifyState::Reloading,
                now,
                NotifyState::Status("reloading"),
            ]),
            Err(_) => self.send(&[NotifyState::Reloading, NotifyState::Status("reloading")]),
        }
    }

    /// A stop begins: `STOPPING=1`, with `status` as the `STATUS=` line.
    pub(crate) fn stopping(&self, status: &str) {
        self.send(&[NotifyState::Stopping, NotifyState::Status(status)]);
    }

    /// A free-form `STATUS=` line (`systemctl status` shows it).
    pub(crate) fn status(&self, text: &str) {
        self.send(&[NotifyState::Status(text)]);
    }

    /// How often to ping the watchdog: half of `WATCHDOG_USEC`, as
    /// sd_watchdog_enabled(3) advises; `None` when no watchdog is set, or it
    /// watches another process (`WATCHDOG_PID`).
    pub(crate) fn watchdog_interval(&self) -> Option<Duration> {
        if !self.may_send() {
            return None;
        }
        sd_notify::watchdog_enabled()
            .filter(|timeout| !timeout.is_zero())
            .map(|timeout| (timeout / 2).max(Duration::from_millis(1)))
    }

    /// `WATCHDOG=1`: the master's loop still turns.
    pub(crate) fn watchdog_ping(&self) {
        self.send(&[NotifyState::Watchdog]);
    }
}

/// The watchdog's schedule in the master's loop: when the next ping is due.
#[derive(Debug)]
pub(crate) struct Watchdog {
    interval: Duration,
    next: std::time::Instant,
}

impl Watchdog {
    /// A schedule pinging every `interval`, the first one at once; `None` without a watchdog.
    pub(crate) fn new(interval: Option<Duration>) -> Option<Self> {
        interval.map(|interval| Self {
            interval,
            next: std::time::Instant::now(),
        })
    }

    /// When the loop must wake up next for the watchdog.
    pub(crate) fn due(&self) -> std::time::Instant {
        self.next
    }

    /// Ping if due (call on every turn of the loop).
    pub(crate) fn tick(&mut self, notifier: &Notifier) {
        let now = std::time::Instant::now();
        if now >= self.next {
            notifier.watchdog_ping();
            self.next = now + self.interval;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::net::UnixDatagram;
    use std::time::Duration;

    use super::{Notifier, Watchdog};

    /// Every test that touches the process environment runs under this lock
    /// (the test harness runs tests on several threads).
    static ENV: parking_lot::Mutex<()> = parking_lot::Mutex::new(());

    fn receive_all(socket: &UnixDatagram) -> Vec<String> {
        socket.set_nonblocking(true).expect("non-blocking");
        let mut messages = Vec::new();
        let mut buffer = [0u8; 4096];
        while let Ok(n) = socket.recv(&mut buffer) {
            messages.push(String::from_utf8_lossy(&buffer[..n]).into_owned());
        }
        messages
    }

    #[test]
    fn sends_the_states_to_notify_socket() {
        let _env = ENV.lock();
        let folder = tempfile_folder();
        let path = folder.join("notify");
        let socket = UnixDatagram::bind(&path).expect("bind");
        std::env::set_var("NOTIFY_SOCKET", &path);
        let notifier = Notifier::new();
        assert!(notifier.is_active());
        notifier.ready("serving on http://127.0.0.1:1, 2 workers");
        notifier.reloading();
        notifier.status("hello");
        notifier.stopping("stopping");
        notifier.watchdog_ping();
        std::env::remove_var("NOTIFY_SOCKET");
        let messages = receive_all(&socket);
        assert_eq!(messages.len(), 5, "{messages:?}");
        assert_eq!(
            messages[0],
            "READY=1\nSTATUS=serving on http://127.0.0.1:1, 2 workers\n"
        );
        assert!(messages[1].starts_with("RELOADING=1\nMONOTONIC_USEC="));
        let usec: u64 = messages[1]
            .lines()
            .nth(1)
            .and_then(|line| line.strip_prefix("MONOTONIC_USEC="))
            .and_then(|value| value.parse().ok())
            .expect("a number of microseconds");
        assert!(usec > 0);
        assert_eq!(messages[2], "STATUS=hello\n");
        assert_eq!(messages[3], "STOPPING=1\nSTATUS=stopping\n");
        assert_eq!(messages[4], "WATCHDOG=1\n");
        let _ = std::fs::remove_dir_all(folder);
    }

    #[test]
    fn a_missing_or_broken_socket_is_no_error() {
        let _env = ENV.lock();
        std::env::remove_var("NOTIFY_SOCKET");
        let notifier = Notifier::new();
        assert!(!notifier.is_active());
        notifier.ready("nobody listens");
        std::env::set_var("NOTIFY_SOCKET", "/nonexistent/rwsgi-notify");
        notifier.ready("nobody listens");
        notifier.watchdog_ping();
        std::env::remove_var("NOTIFY_SOCKET");
    }

    #[test]
    fn another_process_never_notifies() {
        let _env = ENV.lock();
        let folder = tempfile_folder();
        let path = folder.join("notify");
        let socket = UnixDatagram::bind(&path).expect("bind");
        std::env::set_var("NOTIFY_SOCKET", &path);
        std::env::set_var("WATCHDOG_USEC", "1000000");
        // As a forked worker sees the master's notifier.
        let notifier = Notifier {
            pid: std::process::id() + 1,
        };
        assert!(!notifier.is_active());
        notifier.ready("from a worker");
        assert_eq!(notifier.watchdog_interval(), None);
        std::env::remove_var("NOTIFY_SOCKET");
        std::env::remove_var("WATCHDOG_USEC");
        assert!(receive_all(&socket).is_empty());
        let _ = std::fs::remove_dir_all(folder);
    }

    #[test]
    fn the_watchdog_interval_is_half_the_timeout_for_us_only() {
        let _env = ENV.lock();
        let notifier = Notifier::new();
        std::env::remove_var("WATCHDOG_PID");
        std::env::remove_var("WATCHDOG_USEC");
        assert_eq!(notifier.watchdog_interval(), None);
        std::env::set_var("WATCHDOG_USEC", "400000");
        assert_eq!(
            notifier.watchdog_interval(),
            Some(Duration::from_millis(200))
        );
        std::env::set_var("WATCHDOG_PID", std::process::id().to_string());
        assert_eq!(
            notifier.watchdog_interval(),
            Some(Duration::from_millis(200))
        );
        std::env::set_var("WATCHDOG_PID", (std::process::id() + 1).to_string());
        assert_eq!(
            notifier.watchdog_interval(),
            None,
            "another process's watchdog"
        );
        std::env::remove_var("WATCHDOG_PID");
        std::env::set_var("WATCHDOG_USEC", "0");
        assert_eq!(notifier.watchdog_interval(), None);
        std::env::set_var("WATCHDOG_USEC", "soon");
        assert_eq!(notifier.watchdog_interval(), None);
        std::env::remove_var("WATCHDOG_USEC");
    }

    #[test]
    fn the_watchdog_pings_when_due() {
        let _env = ENV.lock();
        let folder = tempfile_folder();
        let path = folder.join("notify");
        let socket = UnixDatagram::bind(&path).expect("bind");
        std::env::set_var("NOTIFY_SOCKET", &path);
        let notifier = Notifier::new();
        assert!(Watchdog::new(None).is_none());
        let mut watchdog = Watchdog::new(Some(Duration::from_secs(3600))).expect("a schedule");
        watchdog.tick(&notifier);
        watchdog.tick(&notifier);
        assert!(watchdog.due() > std::time::Instant::now());
        std::env::remove_var("NOTIFY_SOCKET");
        assert_eq!(
            receive_all(&socket),
            ["WATCHDOG=1\n"],
            "one ping, then not due"
        );
        let _ = std::fs::remove_dir_all(folder);
    }

    fn tempfile_folder() -> std::path::PathBuf {
        use std::sync::atomic::{AtomicU32, Ordering};
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let folder = std::env::temp_dir().join(format!(
            "rwsgi-systemd-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&folder).expect("temp folder");
        folder
    }
}
