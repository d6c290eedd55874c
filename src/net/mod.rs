//! Listeners, bound by the master before it forks.
//!
//! Each address gets one socket per worker slot, all bound with `SO_REUSEPORT`
//! so the kernel spreads new connections evenly between workers (measured: with
//! one shared socket, one worker once took all 100 connections of a benchmark).
//! A worker keeps only its own slot's sockets; the master keeps them all so a
//! respawned worker inherits a socket whose backlog never stopped queueing.

use std::net::{SocketAddr, TcpListener};
use std::os::fd::OwnedFd;

use socket2::{Domain, Protocol, Socket, Type};

use crate::error::{Error, Result};

/// What a listener speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ListenerProtocol {
    /// HTTP/1.1 through hyper.
    Http,
}

/// One address the user asked for, with a socket per worker slot.
#[derive(Debug)]
pub(crate) struct BoundAddress {
    pub protocol: ListenerProtocol,
    /// The address actually bound (port 0 replaced by the kernel's choice).
    pub local: SocketAddr,
    pub per_slot: Vec<OwnedFd>,
}

impl BoundAddress {
    /// How the banner and the logs show this listener.
    pub(crate) fn url(&self) -> String {
        match self.protocol {
            ListenerProtocol::Http => format!("http://{}", self.local),
        }
    }
}

fn bind_one(address: SocketAddr, backlog: i32) -> std::io::Result<Socket> {
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

/// Bind `slots` sockets on `address`; the first one decides the port when 0 was asked.
pub(crate) fn bind_http(address: SocketAddr, slots: usize, backlog: i32) -> Result<BoundAddress> {
    let bind_error = |source| Error::Bind {
        address: address.to_string(),
        source,
    };
    let first = bind_one(address, backlog).map_err(bind_error)?;
    let local = first
        .local_addr()
        .map_err(bind_error)?
        .as_socket()
        .unwrap_or(address);
    let mut per_slot = vec![OwnedFd::from(first)];
    for _ in 1..slots {
        per_slot.push(OwnedFd::from(bind_one(local, backlog).map_err(bind_error)?));
    }
    Ok(BoundAddress {
        protocol: ListenerProtocol::Http,
        local,
        per_slot,
    })
}

/// Turn an inherited slot socket into a std listener for the worker's runtime.
pub(crate) fn into_std_listener(fd: OwnedFd) -> std::io::Result<TcpListener> {
    let listener = TcpListener::from(fd);
    listener.set_nonblocking(true)?;
    Ok(listener)
}
