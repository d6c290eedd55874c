//! Unix socket listeners: replacing a stale socket file left by a crashed run,
//! refusing to steal one that a live server answers on, mode and owner, and
//! removing the file at exit only if it is still ours.

use std::ffi::{CString, OsStr};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use socket2::{Domain, SockAddr, Socket, Type};

use crate::config::{Address, Config};
use crate::error::{Error, Result};

/// A socket file this master created; removed at exit if it still is the same file.
#[derive(Debug)]
pub(crate) struct UnixSocketFile {
    path: PathBuf,
    device: u64,
    inode: u64,
}

impl UnixSocketFile {
    /// Remove the file unless another process has replaced it since.
    pub(crate) fn remove(&self) {
        if let Ok(metadata) = std::fs::symlink_metadata(&self.path) {
            if metadata.dev() == self.device && metadata.ino() == self.inode {
                let _ = std::fs::remove_file(&self.path);
            }
        }
    }
}

fn bind_error(address: &Address, source: io::Error) -> Error {
    Error::Bind {
        address: address.to_string(),
        source,
    }
}

/// Make way for a new socket at `path`: remove a stale socket, refuse a live one or a non-socket.
fn clear_stale(path: &Path, address: &Address) -> Result<()> {
    let metadata = match std::fs::symlink_metadata(path) {
        Ok(metadata) => metadata,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(error) => return Err(bind_error(address, error)),
    };
    if !metadata.file_type().is_socket() {
        return Err(bind_error(
            address,
            io::Error::new(
                io::ErrorKind::AlreadyExists,
                "the path exists and is not a socket",
            ),
        ));
    }
    match std::os::unix::net::UnixStream::connect(path) {
        Ok(_) => Err(bind_error(
            address,
            io::Error::new(
                io::ErrorKind::AddrInUse,
                "another server is listening on this socket (stop it, or choose another path)",
            ),
        )),
        Err(_) => std::fs::remove_file(path).map_err(|error| bind_error(address, error)),
    }
}

fn lookup_id(name: &str, group: bool) -> io::Result<u32> {
    if let Ok(id) = name.parse::<u32>() {
        return Ok(id);
    }
    let not_found = || {
        io::Error::new(
            io::ErrorKind::NotFound,
            format!("no such {} {name:?}", if group { "group" } else { "user" }),
        )
    };
    let c_name = CString::new(name).map_err(|_| not_found())?;
    // SAFETY: getpwnam/getgrnam take a NUL-terminated name and return a pointer
    // into static storage (or NULL), read at once; the master is single-threaded.
    unsafe {
        if group {
            let entry = libc::getgrnam(c_name.as_ptr());
            if entry.is_null() {
                return Err(not_found());
            }
            Ok((*entry).gr_gid)
        } else {
            let entry = libc::getpwnam(c_name.as_ptr());
            if entry.is_null() {
                return Err(not_found());
            }
            Ok((*entry).pw_uid)
        }
    }
}

/// Resolve `USER[:GROUP]` into ids; an empty part stays unchanged.
fn owner_ids(owner: &str) -> io::Result<(Option<u32>, Option<u32>)> {
    let (user, group) = owner.split_once(':').unwrap_or((owner, ""));
    let uid = if user.is_empty() {
        None
    } else {
        Some(lookup_id(user, false)?)
    };
    let gid = if group.is_empty() {
        None
    } else {
        Some(lookup_id(group, true)?)
    };
    Ok((uid, gid))
}

/// Bind and listen on a unix path or abstract name.
pub(super) fn bind(address: &Address, config: &Config) -> Result<(Socket, Option<UnixSocketFile>)> {
    let socket_address = match address {
        Address::Unix(path) => {
            clear_stale(path, address)?;
            SockAddr::unix(path)
        }
        Address::Abstract(name) => {
            let mut raw = vec![0u8];
            raw.extend_from_slice(name);
            SockAddr::unix(OsStr::from_bytes(&raw))
        }
        Address::Tcp(_) => unreachable!("TCP addresses are bound in net::bind_tcp"),
    }
    .map_err(|error| bind_error(address, error))?;
    let socket = Socket::new(Domain::UNIX, Type::STREAM, None)
        .map_err(|error| bind_error(address, error))?;
    socket
        .set_cloexec(true)
        .map_err(|error| bind_error(address, error))?;
    socket
        .set_nonblocking(true)
        .map_err(|error| bind_error(address, error))?;
    socket
        .bind(&socket_address)
        .map_err(|error| bind_error(address, error))?;
    let file = match address {
        Address::Unix(path) => {
            let file = adopt_file(path, config).map_err(|error| {
                let _ = std::fs::remove_file(path);
                bind_error(address, error)
            })?;
            Some(file)
        }
        _ => None,
    };
    socket
        .listen(config.backlog)
        .map_err(|error| bind_error(address, error))?;
    Ok((socket, file))
}

fn adopt_file(path: &Path, config: &Config) -> io::Result<UnixSocketFile> {
    if let Some(mode) = config.chmod_socket {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))?;
    }
    if let Some(owner) = &config.chown_socket {
        let (uid, gid) = owner_ids(owner)?;
        std::os::unix::fs::lchown(path, uid, gid)?;
    }
    let metadata = std::fs::symlink_metadata(path)?;
    Ok(UnixSocketFile {
        path: std::path::absolute(path)?,
        device: metadata.dev(),
        inode: metadata.ino(),
    })
}
