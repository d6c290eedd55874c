//! Closing a listener without resetting the connections in its queue.
//!
//! When the last descriptor of a listening TCP socket closes, the kernel
//! resets every connection still waiting in its accept queue: behind a load
//! balancer those are requests already sent (nginx does not pass a POST on
//! to another host once sent, so the client gets a 502). Measured with
//! `benches/fleet.py`: a rolling restart of three hosts under 750 req/s lost
//! 5 POSTs this way. So a stop first makes the socket drop new connection
//! attempts (a socket filter that accepts no packet: SYNs are dropped, and
//! the client's retry then finds the socket closed and is refused, which a
//! load balancer passes on to another host), the workers accept what is
//! already queued, and only then are the descriptors closed.

use std::os::fd::AsRawFd;

/// `SO_ATTACH_FILTER`, the asm-generic value (x86, ARM, RISC-V, PowerPC);
/// the libc crate does not export it for glibc targets.
#[cfg(target_os = "linux")]
const SO_ATTACH_FILTER: libc::c_int = 26;

/// Have the kernel drop every new connection attempt on `socket`, a
/// listening TCP socket, while what its queue holds stays to be accepted.
#[cfg(target_os = "linux")]
pub(crate) fn stop_new_connections(socket: &impl AsRawFd) -> std::io::Result<()> {
    // One instruction: return 0, "keep no byte of this packet".
    #[allow(clippy::cast_possible_truncation)] // BPF_RET | BPF_K is 6
    let mut program = [libc::sock_filter {
        code: (libc::BPF_RET | libc::BPF_K) as u16,
        jt: 0,
        jf: 0,
        k: 0,
    }];
    let filter = libc::sock_fprog {
        len: 1,
        filter: program.as_mut_ptr(),
    };
    #[allow(clippy::cast_possible_truncation)] // a two-word struct
    let length = std::mem::size_of::<libc::sock_fprog>() as libc::socklen_t;
    // SAFETY: `filter` points at `program`, both alive for the call, and the
    // kernel copies the program before returning.
    let done = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            SO_ATTACH_FILTER,
            (&raw const filter).cast(),
            length,
        )
    };
    if done == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Elsewhere the queue is lost at close, as it always was.
#[cfg(not(target_os = "linux"))]
pub(crate) fn stop_new_connections(_socket: &impl AsRawFd) -> std::io::Result<()> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::stop_new_connections;
    use std::io::{Read, Write};
    use std::net::{TcpListener, TcpStream};
    use std::time::Duration;

    #[test]
    fn queued_connections_survive_and_new_ones_are_dropped() {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let address = listener.local_addr().expect("address");
        let mut queued = TcpStream::connect(address).expect("connect");
        queued.write_all(b"sent before").expect("write");
        stop_new_connections(&listener).expect("filter");
        // A new attempt gets no answer at all (its SYN is dropped).
        let late = TcpStream::connect_timeout(&address, Duration::from_millis(300));
        assert!(late.is_err(), "a connection was accepted after the filter");
        // The one queued before is still there, with its bytes.
        let (mut accepted, _) = listener.accept().expect("accept");
        let mut received = [0u8; 11];
        accepted.read_exact(&mut received).expect("read");
        assert_eq!(&received, b"sent before");
        accepted.write_all(b"answer").expect("answer");
        let mut answer = [0u8; 6];
        queued.read_exact(&mut answer).expect("read the answer");
        assert_eq!(&answer, b"answer");
    }
}
