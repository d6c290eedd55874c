//! Socket activation: listening sockets handed over by systemd (or any
//! manager speaking its `LISTEN_FDS` protocol) instead of bound by us.
//!
//! The descriptors (3, 4, ... per `LISTEN_FDS`, for the process named by
//! `LISTEN_PID`) are read through the `sd-notify` crate, which also unsets
//! the variables so that nothing exec'd later takes them. Each one is
//! checked (a listening stream socket of a family we serve), and its address
//! found with getsockname, so it can stand in for the configured listener of
//! the same address, or, matching none, be served with the protocol its
//! `LISTEN_FDNAMES` name says. The sockets belong to the manager: we never
//! `shutdown()` them (that would stop them for the manager too) and never
//! remove an inherited unix socket's file; closing our copies is all we do.

use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::path::Path;

use socket2::{Domain, Socket, Type};

use crate::config::{Address, ListenerProtocol};
use crate::error::{Error, Result};

/// One listening socket received from the service manager.
#[derive(Debug)]
pub(crate) struct InheritedSocket {
    /// Its descriptor number at start-up, for messages.
    fd: RawFd,
    /// Its `LISTEN_FDNAMES` entry (`unknown` when none was given).
    name: String,
    /// What getsockname says it listens on.
    pub address: Address,
    socket: Socket,
}

/// The `LISTEN_FDS` sockets meant for this process; none when the
/// variables are absent or name another process. Unsets `LISTEN_PID`,
/// `LISTEN_FDS` and `LISTEN_FDNAMES`. Call in the master before it starts
/// any thread (it changes the environment).
pub(crate) fn take_from_environment() -> Result<Vec<InheritedSocket>> {
    // sd-notify would call LISTEN_FDNAMES invalid when LISTEN_PID names
    // another process (it then counts no fds): those are not ours, whatever
    // their names.
    let ours = std::env::var("LISTEN_PID")
        .ok()
        .and_then(|pid| pid.trim().parse::<u32>().ok())
        == Some(std::process::id());
    if std::env::var_os("LISTEN_FDS").is_none() || !ours {
        return Ok(Vec::new());
    }
    // SAFETY: the master is single-threaded here (it must be, to fork
    // later), so nothing reads the environment while it changes.
    let fds = unsafe { sd_notify::listen_fds_with_names_and_unset_env() }.map_err(|error| {
        Error::Config {
            option: "LISTEN_FDS",
            message: format!("unusable socket activation variables: {error}"),
        }
    })?;
    fds.map(|(fd, name)| {
        // SAFETY: LISTEN_FDS hands these descriptors to this process and
        // sd-notify checked they are open; nothing else here owns them.
        let owned = unsafe { OwnedFd::from_raw_fd(fd) };
        adopt(owned, fd, name)
    })
    .collect()
}

/// Check one inherited descriptor and read its address.
fn adopt(fd: OwnedFd, number: RawFd, name: String) -> Result<InheritedSocket> {
    let refuse = |source: std::io::Error| Error::Bind {
        address: format!("the LISTEN_FDS socket at fd {number} (LISTEN_FDNAMES {name:?})"),
        source,
    };
    let invalid = |message: &str| {
        refuse(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            message,
        ))
    };
    let socket = Socket::from(fd);
    let kind = socket
        .r#type()
        .map_err(|error| match error.raw_os_error() {
            Some(libc::ENOTSOCK) => invalid("not a socket"),
            _ => refuse(error),
        })?;
    if kind != Type::STREAM {
        return Err(invalid(
            "not a stream socket (a datagram or other socket type)",
        ));
    }
    if !socket.is_listener().map_err(refuse)? {
        return Err(invalid(
            "not a listening socket (listen() was not called on it)",
        ));
    }
    let domain = socket.domain().map_err(refuse)?;
    let local = socket.local_addr().map_err(refuse)?;
    let address = if domain == Domain::IPV4 || domain == Domain::IPV6 {
        local
            .as_socket()
            .map(Address::Tcp)
            .ok_or_else(|| invalid("an IP socket without an IP address"))?
    } else if domain == Domain::UNIX {
        if let Some(path) = local.as_pathname() {
            Address::Unix(path.to_path_buf())
        } else if let Some(name) = local.as_abstract_namespace() {
            Address::Abstract(name.to_vec())
        } else {
            return Err(invalid("an unnamed unix socket"));
        }
    } else {
        return Err(invalid("not a TCP or unix socket"));
    };
    socket.set_nonblocking(true).map_err(refuse)?;
    socket.set_cloexec(true).map_err(refuse)?;
    Ok(InheritedSocket {
        fd: number,
        name,
        address,
        socket,
    })
}

impl InheritedSocket {
    /// Whether this socket listens where a configured listener would bind.
    pub(crate) fn serves(&self, configured: &Address) -> bool {
        match (&self.address, configured) {
            (Address::Unix(ours), Address::Unix(theirs)) => same_path(ours, theirs),
            (ours, theirs) => ours == theirs,
        }
    }

    /// The protocol its `LISTEN_FDNAMES` name asks for (`FileDescriptorName=`
    /// in the .socket unit): `uwsgi`, else HTTP/1.1.
    pub(crate) fn named_protocol(&self) -> ListenerProtocol {
        protocol_for_name(&self.name)
    }

    /// The descriptor number it came in as, and its name, for messages.
    pub(crate) fn describe(&self) -> String {
        format!("fd {} ({:?})", self.fd, self.name)
    }

    /// One descriptor per worker slot, all of this one socket (shared by
    /// every worker: unlike the sockets we bind, there is one per address).
    pub(crate) fn into_slots(self, slots: usize) -> Result<(Address, Vec<OwnedFd>)> {
        let mut per_slot = Vec::with_capacity(slots);
        for _ in 1..slots.max(1) {
            per_slot.push(
                self.socket
                    .try_clone()
                    .map(OwnedFd::from)
                    .map_err(|source| Error::Bind {
                        address: format!("the LISTEN_FDS socket at {}", self.describe()),
                        source,
                    })?,
            );
        }
        per_slot.insert(0, OwnedFd::from(self.socket));
        Ok((self.address, per_slot))
    }
}

/// `http` (or no name) means HTTP/1.1, `uwsgi` the uwsgi protocol.
fn protocol_for_name(name: &str) -> ListenerProtocol {
    if name.eq_ignore_ascii_case("uwsgi") {
        ListenerProtocol::Uwsgi
    } else {
        ListenerProtocol::Http
    }
}

/// Paths name one socket if equal once made absolute (a configured path may be relative).
fn same_path(a: &Path, b: &Path) -> bool {
    a == b
        || matches!(
            (std::path::absolute(a), std::path::absolute(b)),
            (Ok(a), Ok(b)) if a == b
        )
}

#[cfg(test)]
mod tests {
    use std::os::fd::{AsRawFd, OwnedFd};
    use std::os::unix::ffi::OsStrExt;

    use socket2::{Domain, SockAddr, Socket, Type};

    use super::{adopt, protocol_for_name};
    use crate::config::{Address, ListenerProtocol};
    use crate::error::Error;

    fn listening_tcp() -> Socket {
        let socket = Socket::new(Domain::IPV4, Type::STREAM, None).expect("socket");
        socket
            .bind(
                &"127.0.0.1:0"
                    .parse::<std::net::SocketAddr>()
                    .expect("address")
                    .into(),
            )
            .expect("bind");
        socket.listen(8).expect("listen");
        socket
    }

    #[test]
    fn a_tcp_listener_is_adopted_with_its_address() {
        let socket = listening_tcp();
        let local = socket
            .local_addr()
            .expect("address")
            .as_socket()
            .expect("inet");
        let inherited = adopt(OwnedFd::from(socket), 3, "http".into()).expect("adopted");
        assert_eq!(inherited.address, Address::Tcp(local));
        assert!(inherited.serves(&Address::Tcp(local)));
        assert!(!inherited.serves(&Address::Tcp("127.0.0.1:1".parse().expect("address"))));
        assert_eq!(inherited.named_protocol(), ListenerProtocol::Http);
        assert!(inherited.socket.nonblocking().expect("flag"));
        // SAFETY: F_GETFD on a descriptor we own.
        let flags = unsafe { libc::fcntl(inherited.socket.as_raw_fd(), libc::F_GETFD) };
        assert_ne!(flags & libc::FD_CLOEXEC, 0);
        let (address, per_slot) = inherited.into_slots(3).expect("dups");
        assert_eq!(address, Address::Tcp(local));
        assert_eq!(per_slot.len(), 3);
    }

    #[test]
    fn unix_listeners_keep_their_path_or_abstract_name() {
        let folder = std::env::temp_dir().join(format!("rwsgi-inherited-{}", std::process::id()));
        std::fs::create_dir_all(&folder).expect("folder");
        let path = folder.join("app.sock");
        let _ = std::fs::remove_file(&path);
        let socket = Socket::new(Domain::UNIX, Type::STREAM, None).expect("socket");
        socket
            .bind(&SockAddr::unix(&path).expect("address"))
            .expect("bind");
        socket.listen(8).expect("listen");
        let inherited = adopt(OwnedFd::from(socket), 4, "uwsgi".into()).expect("adopted");
        assert_eq!(inherited.address, Address::Unix(path.clone()));
        assert!(inherited.serves(&Address::Unix(path.clone())));
        assert_eq!(inherited.named_protocol(), ListenerProtocol::Uwsgi);
        drop(inherited);
        assert!(path.exists(), "an inherited socket's file is never removed");
        let _ = std::fs::remove_dir_all(&folder);

        let name = format!("rwsgi-inherited-{}", std::process::id());
        let mut raw = vec![0u8];
        raw.extend_from_slice(name.as_bytes());
        let socket = Socket::new(Domain::UNIX, Type::STREAM, None).expect("socket");
        socket
            .bind(&SockAddr::unix(std::ffi::OsStr::from_bytes(&raw)).expect("address"))
            .expect("bind");
        socket.listen(8).expect("listen");
        let inherited = adopt(OwnedFd::from(socket), 5, "unknown".into()).expect("adopted");
        assert_eq!(inherited.address, Address::Abstract(name.into_bytes()));
    }

    #[test]
    fn what_is_not_a_listening_stream_socket_is_refused_by_fd_and_name() {
        let bound_only = Socket::new(Domain::IPV4, Type::STREAM, None).expect("socket");
        let datagram = Socket::new(Domain::IPV4, Type::DGRAM, None).expect("socket");
        let file: OwnedFd = std::fs::File::open("/dev/null").expect("file").into();
        for (fd, why) in [
            (OwnedFd::from(bound_only), "not a listening socket"),
            (OwnedFd::from(datagram), "not a stream socket"),
            (file, "not a socket"),
        ] {
            let error = adopt(fd, 7, "web".into()).expect_err(why);
            assert!(matches!(error, Error::Bind { .. }));
            let message = error.to_string();
            assert!(message.contains("fd 7"), "{message}");
            assert!(message.contains("\"web\""), "{message}");
            assert!(message.contains(why), "{message}");
        }
    }

    #[test]
    fn names_choose_the_protocol() {
        assert_eq!(protocol_for_name("uwsgi"), ListenerProtocol::Uwsgi);
        assert_eq!(protocol_for_name("UWSGI"), ListenerProtocol::Uwsgi);
        assert_eq!(protocol_for_name("http"), ListenerProtocol::Http);
        assert_eq!(protocol_for_name("unknown"), ListenerProtocol::Http);
        assert_eq!(protocol_for_name(""), ListenerProtocol::Http);
    }
}
