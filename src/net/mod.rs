//! Listeners, bound by the master before it forks.
//!
//! A TCP address gets one socket per worker slot, all bound with `SO_REUSEPORT`
//! so the kernel spreads new connections evenly between workers (measured: with
//! one shared socket, one worker once took all 100 connections of a benchmark).
//! A unix socket is bound once and shared. A worker keeps only its own slot's
//! descriptors; the master keeps them all, so a respawned worker inherits a
//! socket whose backlog never stopped queueing. A socket inherited from
//! systemd (`inherited.rs`) is one socket shared by every worker.

mod closing;
mod inherited;
mod unix;

use std::net::SocketAddr;
use std::os::fd::OwnedFd;

use socket2::{Domain, Protocol, Socket, Type};

use crate::config::{Address, Config, ListenerProtocol, ListenerSpec};
use crate::error::{Error, Result};
pub(crate) use closing::stop_new_connections;
pub(crate) use unix::UnixSocketFile;

/// One listener the user asked for, with a descriptor per worker slot.
#[derive(Debug)]
pub(crate) struct BoundAddress {
    pub protocol: ListenerProtocol,
    /// The address actually bound (port 0 replaced by the kernel's choice).
    pub address: Address,
    pub per_slot: Vec<OwnedFd>,
    /// Received from systemd (`LISTEN_FDS`) rather than bound: one socket
    /// shared by every slot (no `SO_REUSEPORT` siblings to watch).
    pub inherited: bool,
}

impl BoundAddress {
    /// How the banner and the logs show this listener.
    pub(crate) fn url(&self) -> String {
        let scheme = match self.protocol {
            ListenerProtocol::Http => "http",
            ListenerProtocol::Uwsgi => "uwsgi",
        };
        match &self.address {
            Address::Tcp(address) => format!("{scheme}://{address}"),
            Address::Unix(path) => format!("{scheme}+unix://{}", path.display()),
            Address::Abstract(name) => {
                format!("{scheme}+unix://@{}", String::from_utf8_lossy(name))
            }
        }
    }

    /// The banner's line for this listener.
    pub(crate) fn listening_line(&self) -> String {
        let origin = if self.inherited {
            " (from systemd)"
        } else {
            ""
        };
        format!("listening on {}{origin}", self.url())
    }

    /// Whether each slot has a socket of its own (`SO_REUSEPORT`), so a
    /// worker can watch its siblings' for connections waiting too long.
    pub(crate) fn has_sibling_sockets(&self) -> bool {
        matches!(self.address, Address::Tcp(_)) && !self.inherited
    }
}

/// Every listener of `config`, for `slots` workers: the sockets systemd
/// passed (`LISTEN_FDS`) where they match a configured address or match
/// none, the rest bound here. Also returns the unix socket files to remove
/// at exit (on an error, those made so far are removed at once).
pub(crate) fn listen(
    config: &Config,
    slots: usize,
) -> Result<(Vec<BoundAddress>, Vec<UnixSocketFile>)> {
    let mut unix_files = Vec::new();
    match listen_into(config, slots, &mut unix_files) {
        Ok(listeners) => Ok((listeners, unix_files)),
        Err(error) => {
            unix_files.iter().for_each(UnixSocketFile::remove);
            Err(error)
        }
    }
}

fn listen_into(
    config: &Config,
    slots: usize,
    unix_files: &mut Vec<UnixSocketFile>,
) -> Result<Vec<BoundAddress>> {
    let mut inherited = inherited::take_from_environment()?;
    let mut listeners = Vec::new();
    for spec in &config.listeners {
        if let Some(index) = inherited
            .iter()
            .position(|socket| socket.serves(&spec.address))
        {
            // The configured protocol wins over the socket's name.
            listeners.push(from_systemd(inherited.remove(index), spec.protocol, slots)?);
            continue;
        }
        let (bound, file) = bind(spec, slots, config)?;
        listeners.push(bound);
        unix_files.extend(file);
    }
    for socket in inherited {
        let protocol = socket.named_protocol();
        listeners.push(from_systemd(socket, protocol, slots)?);
    }
    if listeners.is_empty() {
        return Err(Error::Config {
            option: "http",
            message: "no listener given (and no socket passed by systemd in LISTEN_FDS)".into(),
        });
    }
    Ok(listeners)
}

fn from_systemd(
    socket: inherited::InheritedSocket,
    protocol: ListenerProtocol,
    slots: usize,
) -> Result<BoundAddress> {
    let (address, per_slot) = socket.into_slots(slots)?;
    Ok(BoundAddress {
        protocol,
        address,
        per_slot,
        inherited: true,
    })
}

fn bind_tcp_socket(address: SocketAddr, backlog: i32) -> std::io::Result<Socket> {
    let socket = Socket::new(
        Domain::for_address(address),
        Type::STREAM,
        Some(Protocol::TCP),
    )?;
    if address.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    socket.set_cloexec(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&address.into())?;
    socket.listen(backlog)?;
    Ok(socket)
}

/// `SO_REUSEPORT` would let a second server of the same user share the port
/// without a word (measured: two rwsgi masters on one port, each taking half
/// the connections). A bind without it fails on any socket already bound
/// there, so try one first and report the port as in use.
fn refuse_if_in_use(address: SocketAddr) -> std::io::Result<()> {
    let probe = Socket::new(
        Domain::for_address(address),
        Type::STREAM,
        Some(Protocol::TCP),
    )?;
    if address.is_ipv6() {
        probe.set_only_v6(true)?;
    }
    probe.set_reuse_address(true)?;
    probe.bind(&address.into()).map_err(|error| {
        if error.kind() == std::io::ErrorKind::AddrInUse {
            std::io::Error::new(
                std::io::ErrorKind::AddrInUse,
                "address already in use (another server is listening there)",
            )
        } else {
            error
        }
    })
}

/// Bind `slots` sockets on `address`; the first one decides the port when 0 was asked.
fn bind_tcp(address: SocketAddr, slots: usize, backlog: i32) -> Result<(SocketAddr, Vec<OwnedFd>)> {
    let bind_error = |source| Error::Bind {
        address: address.to_string(),
        source,
    };
    if address.port() != 0 {
        refuse_if_in_use(address).map_err(bind_error)?;
    }
    let first = bind_tcp_socket(address, backlog).map_err(bind_error)?;
    let local = first
        .local_addr()
        .map_err(bind_error)?
        .as_socket()
        .unwrap_or(address);
    let mut per_slot = vec![OwnedFd::from(first)];
    for _ in 1..slots {
        per_slot.push(OwnedFd::from(
            bind_tcp_socket(local, backlog).map_err(bind_error)?,
        ));
    }
    Ok((local, per_slot))
}

/// Bind one listener for `slots` workers. A unix socket file is returned too, for removal at exit.
pub(crate) fn bind(
    spec: &ListenerSpec,
    slots: usize,
    config: &Config,
) -> Result<(BoundAddress, Option<UnixSocketFile>)> {
    match &spec.address {
        Address::Tcp(address) => {
            let (local, per_slot) = bind_tcp(*address, slots, config.backlog)?;
            let bound = BoundAddress {
                protocol: spec.protocol,
                address: Address::Tcp(local),
                per_slot,
                inherited: false,
            };
            Ok((bound, None))
        }
        Address::Unix(_) | Address::Abstract(_) => {
            let (socket, file) = unix::bind(&spec.address, config)?;
            let per_slot = (0..slots)
                .map(|_| socket.try_clone().map(OwnedFd::from))
                .collect::<std::io::Result<Vec<_>>>()
                .map_err(|source| Error::Bind {
                    address: spec.address.to_string(),
                    source,
                })?;
            let bound = BoundAddress {
                protocol: spec.protocol,
                address: spec.address.clone(),
                per_slot,
                inherited: false,
            };
            Ok((bound, file))
        }
    }
}
