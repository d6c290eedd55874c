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

/// Connections waiting in a unix listening socket's accept queue, and the
/// queue's length, from `sock_diag` (`UNIX_DIAG_RQLEN`: for a listener, the
/// receive queue is the connections waiting and the write queue its
/// backlog). `None` when the kernel does not say (no `sock_diag`).
pub(crate) fn unix_queue(socket: &OwnedFd) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    /// `SOCK_DIAG_BY_FAMILY` of linux/sock_diag.h.
    const SOCK_DIAG_BY_FAMILY: u16 = 20;
    /// `UDIAG_SHOW_RQLEN` and `UNIX_DIAG_RQLEN` of linux/unix_diag.h.
    const UDIAG_SHOW_RQLEN: u32 = 0x10;
    const UNIX_DIAG_RQLEN: u16 = 4;
    const TCP_LISTEN: u32 = 10;
    let inode = u32::try_from(
        std::fs::File::from(socket.try_clone().ok()?)
            .metadata()
            .ok()?
            .ino(),
    )
    .ok()?;
    // nlmsghdr (16 bytes), then unix_diag_req (24 bytes).
    let mut request = Vec::with_capacity(40);
    request.extend_from_slice(&40u32.to_ne_bytes());
    request.extend_from_slice(&SOCK_DIAG_BY_FAMILY.to_ne_bytes());
    request.extend_from_slice(&(libc::NLM_F_REQUEST as u16).to_ne_bytes());
    request.extend_from_slice(&1u32.to_ne_bytes()); // sequence
    request.extend_from_slice(&0u32.to_ne_bytes()); // port: the kernel's
    request.push(libc::AF_UNIX as u8);
    request.extend_from_slice(&[0, 0, 0]); // protocol, padding
    request.extend_from_slice(&(1u32 << TCP_LISTEN).to_ne_bytes());
    request.extend_from_slice(&inode.to_ne_bytes());
    request.extend_from_slice(&UDIAG_SHOW_RQLEN.to_ne_bytes());
    request.extend_from_slice(&[0xff; 8]); // no cookie
                                           // SAFETY: plain integers in, a descriptor (or -1) out.
    let fd = unsafe {
        libc::socket(
            libc::AF_NETLINK,
            libc::SOCK_DGRAM | libc::SOCK_CLOEXEC,
            libc::NETLINK_SOCK_DIAG,
        )
    };
    if fd < 0 {
        return None;
    }
    // SAFETY: a fresh descriptor owned by nothing else.
    let netlink = unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) };
    let mut reply = [0u8; 512];
    // SAFETY: each call gets a buffer we own and its true length; with no
    // address, send goes to the kernel (netlink port 0), which answers
    // before send returns, so the receive never needs to wait.
    let read = unsafe {
        if libc::send(
            netlink.as_raw_fd(),
            request.as_ptr().cast(),
            request.len(),
            0,
        ) < 0
        {
            return None;
        }
        libc::recv(
            netlink.as_raw_fd(),
            reply.as_mut_ptr().cast(),
            reply.len(),
            libc::MSG_DONTWAIT,
        )
    };
    parse_rqlen(&reply[..usize::try_from(read).ok()?], UNIX_DIAG_RQLEN)
}

/// The `UNIX_DIAG_RQLEN` attribute of a sock_diag reply: (queue, backlog).
fn parse_rqlen(reply: &[u8], wanted: u16) -> Option<(u64, u64)> {
    let u16_at = |at: usize| Some(u16::from_ne_bytes(reply.get(at..at + 2)?.try_into().ok()?));
    let u32_at = |at: usize| Some(u32::from_ne_bytes(reply.get(at..at + 4)?.try_into().ok()?));
    let length = usize::try_from(u32_at(0)?).ok()?.min(reply.len());
    if u16_at(4)? != 20 {
        return None; // NLMSG_ERROR or anything but a sock_diag answer
    }
    // nlmsghdr (16) + unix_diag_msg (16), then 4-byte aligned attributes.
    let mut at = 32;
    while at + 4 <= length {
        let size = usize::from(u16_at(at)?);
        if size < 4 {
            return None;
        }
        if u16_at(at + 2)? == wanted && size >= 12 {
            return Some((u64::from(u32_at(at + 4)?), u64::from(u32_at(at + 8)?)));
        }
        at += (size + 3) & !3;
    }
    None
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
    use super::{memory, netstat_field, tcp_queue, unix_queue};
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
    fn a_unix_listener_reports_its_queue() {
        let name = format!("\0rwsgi-kernel-test-{}", std::process::id());
        let address = socket2::SockAddr::unix(&name).expect("address");
        let listener =
            socket2::Socket::new(socket2::Domain::UNIX, socket2::Type::STREAM, None).expect("made");
        listener.bind(&address).expect("bound");
        listener.listen(7).expect("listening");
        let held: Vec<_> = (0..3)
            .map(|_| {
                let client =
                    socket2::Socket::new(socket2::Domain::UNIX, socket2::Type::STREAM, None)
                        .expect("made");
                client.connect(&address).expect("queued");
                client
            })
            .collect();
        let fd = OwnedFd::from(listener);
        assert_eq!(unix_queue(&fd), Some((3, 7)));
        drop(held);
    }

    #[test]
    fn reads_our_own_memory() {
        let (rss, vsz) = memory(i32::try_from(std::process::id()).expect("pid"));
        assert!(rss > 0 && vsz >= rss);
        assert_eq!(memory(0), (0, 0));
    }
}
