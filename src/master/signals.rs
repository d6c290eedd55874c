//! The master's signal handling: handlers only record the signal and wake the
//! arbiter's loop through a self-pipe; the loop dispatches (as gunicorn does).

use std::io::Read;
use std::os::fd::{AsFd, AsRawFd, RawFd};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use signal_hook::consts::{SIGCHLD, SIGHUP, SIGINT, SIGQUIT, SIGTERM, SIGTTIN, SIGTTOU, SIGUSR1};
use signal_hook::SigId;

use crate::error::{Error, Result};

/// The signals the master acts on, in the order they are dispatched; Python's
/// own handlers for them are set aside while the master runs.
pub(crate) const HANDLED: [i32; 8] = [
    SIGCHLD, SIGINT, SIGTERM, SIGQUIT, SIGHUP, SIGTTIN, SIGTTOU, SIGUSR1,
];

/// Signals received since the last `wait`, and the pipe that wakes the loop.
pub(crate) struct SignalQueue {
    flags: Vec<(i32, Arc<AtomicBool>)>,
    ids: Vec<SigId>,
    wake_read: UnixStream,
}

impl SignalQueue {
    /// Install the handlers. No thread is started: the master must stay single-threaded to fork.
    pub(crate) fn install() -> Result<Self> {
        let (wake_read, wake_write) =
            UnixStream::pair().map_err(|e| Error::system("creating the signal pipe", e))?;
        for end in [&wake_read, &wake_write] {
            end.set_nonblocking(true)
                .map_err(|e| Error::system("creating the signal pipe", e))?;
        }
        let mut flags = Vec::new();
        let mut ids = Vec::new();
        for signal in HANDLED {
            let flag = Arc::new(AtomicBool::new(false));
            ids.push(
                signal_hook::flag::register(signal, Arc::clone(&flag))
                    .map_err(|e| Error::system("installing a signal handler", e))?,
            );
            let writer = wake_write
                .try_clone()
                .map_err(|e| Error::system("creating the signal pipe", e))?;
            ids.push(
                signal_hook::low_level::pipe::register(signal, writer)
                    .map_err(|e| Error::system("installing a signal handler", e))?,
            );
            flags.push((signal, flag));
        }
        Ok(Self {
            flags,
            ids,
            wake_read,
        })
    }

    /// Block until a signal arrives, one of `also` is readable, or
    /// `timeout` passes; returns the signals seen.
    pub(crate) fn wait(&mut self, timeout: Duration, also: &[RawFd]) -> Vec<i32> {
        let pending = self.take();
        if !pending.is_empty() {
            return pending;
        }
        let mut poll_fds: Vec<libc::pollfd> = std::iter::once(self.wake_read.as_fd().as_raw_fd())
            .chain(also.iter().copied())
            .map(|fd| libc::pollfd {
                fd,
                events: libc::POLLIN,
                revents: 0,
            })
            .collect();
        let millis = i32::try_from(timeout.as_millis()).unwrap_or(i32::MAX);
        let count = libc::nfds_t::try_from(poll_fds.len()).unwrap_or(1);
        // SAFETY: `count` valid pollfds for the duration of the call.
        unsafe { libc::poll(poll_fds.as_mut_ptr(), count, millis) };
        let mut sink = [0u8; 64];
        while matches!(self.wake_read.read(&mut sink), Ok(n) if n > 0) {}
        self.take()
    }

    fn take(&self) -> Vec<i32> {
        self.flags
            .iter()
            .filter(|(_, flag)| flag.swap(false, Ordering::SeqCst))
            .map(|(signal, _)| *signal)
            .collect()
    }

    /// Remove our handlers: in a freshly forked worker, or when the master ends.
    pub(crate) fn forget_in_child_or_master(&mut self) {
        for id in self.ids.drain(..) {
            signal_hook::low_level::unregister(id);
        }
    }
}
