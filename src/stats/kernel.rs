//! What only the kernel knows, read by the master when a stats client
//! connects: a listening socket's accept queue, the system's listen
//! overflows, a process's memory.

use std::os::fd::{AsRawFd, OwnedFd};

/// Connections waiting in a TCP listening socket's accept queue, and the
/// queue's length (`TCP_INFO`: for a listener, `tcpi_unacked` is the queue
/// now and `tcpi_sacked` its backlog). `None` when the kernel does not say.
pub(crate) fn tcp_queue(socket: &OwnedFd) -> Option<(u64, u64)> {
    // SAFETY: all zeroes is a valid tcp_info (plain integers).
    let mut info: libc::tcp_info = unsafe { std::mem::zeroed() };
    let mut length = libc::socklen_t::try_from(std::mem::size_of::<libc::tcp_info>()).ok()?;
    // SAFETY: getsockopt writes at most `length` bytes into `info`, which we own.
    let done = unsafe {
        libc::getsockopt(
            socket.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            (&raw mut info).cast(),
            &raw mut length,
        )
    };
    (done == 0).then(|| (u64::from(info.tcpi_unacked), u64::from(info.tcpi_sacked)))
}

/// `ListenOverflows` of /proc/net/netstat: connections dropped because an
/// accept queue was full, counted by the kernel for the whole system (or
/// the network namespace), not for our sockets alone; 0 when unreadable.
pub(crate) fn listen_overflows() -> u64 {
    std::fs::read_to_string("/proc/net/netstat")
        .ok()
        .and_then(|text| netstat_field(&text, "TcpExt:", "ListenOverflows"))
        .unwrap_or(0)
}

/// A field of /proc/net/netstat: a line of names then a line of values,
/// both starting with `prefix`.
fn netstat_field(text: &str, prefix: &str, name: &str) -> Option<u64> {
    let mut lines = text.lines().filter(|line| line.starts_with(prefix));
    let names = lines.next()?;
    let values = lines.next()?;
    let index = names.split_whitespace().position(|field| field == name)?;
    values.split_whitespace().nth(index)?.parse().ok()
}

/// Resident and virtual memory of process `pid`, in bytes (/proc/PID/statm);
/// zeroes for a process gone or not yet known.
pub(crate) fn memory(pid: i32) -> (u64, u64) {
    if pid <= 0 {
        return (0, 0);
    }
    let Ok(text) = std::fs::read_to_string(format!("/proc/{pid}/statm")) else {
        return (0, 0);
    };
    // SAFETY: sysconf takes an integer and returns one.
    let page = u64::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) }).unwrap_or(4096);
    let mut fields = text
        .split_whitespace()
        .map(|field| field.parse::<u64>().unwrap_or(0));
    let vsz = fields.next().unwrap_or(0);
    let rss = fields.next().unwrap_or(0);
    (rss * page, vsz * page)
}

#[cfg(test)]
mod tests {
    use super::{memory, netstat_field, tcp_queue};
    use std::os::fd::OwnedFd;

    #[test]
    fn reads_a_netstat_field_by_name() {
        let text = "TcpExt: SyncookiesSent ListenOverflows ListenDrops\n\
                    TcpExt: 0 7 9\n\
                    IpExt: InNoRoutes\nIpExt: 1\n";
        assert_eq!(netstat_field(text, "TcpExt:", "ListenOverflows"), Some(7));
        assert_eq!(netstat_field(text, "TcpExt:", "Nope"), None);
    }

    #[test]
    fn a_listener_reports_its_queue() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bound");
        let address = listener.local_addr().expect("address");
        let held: Vec<_> = (0..2)
            .map(|_| std::net::TcpStream::connect(address).expect("queued"))
            .collect();
        let fd = OwnedFd::from(listener);
        let (queued, backlog) = tcp_queue(&fd).expect("TCP_INFO");
        assert_eq!(queued, 2);
        assert!(backlog >= 2);
        drop(held);
    }

    #[test]
    fn reads_our_own_memory() {
        let (rss, vsz) = memory(i32::try_from(std::process::id()).expect("pid"));
        assert!(rss > 0 && vsz >= rss);
        assert_eq!(memory(0), (0, 0));
    }
}
