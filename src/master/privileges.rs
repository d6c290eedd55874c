//! `--uid` / `--gid`: the app never runs as root. Each loader switches
//! user right after its fork, before it imports the app, so the app, its
//! workers and everything they open run as that user; the master binds
//! the sockets, writes the pidfile and stays root to supervise, signal and
//! clean up (as gunicorn's `--user` does). Supplementary groups become the
//! user's own (`initgroups`), or just the group when the user has no name.

use std::ffi::{CStr, CString};

use crate::config::Config;

/// Who the loaders and workers become.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct RunAs {
    pub uid: Option<u32>,
    pub gid: Option<u32>,
}

/// Why the switch failed (the loader then exits and the master says so).
#[derive(Debug)]
pub(crate) struct SwitchError {
    step: &'static str,
    id: u32,
    source: std::io::Error,
}

impl std::fmt::Display for SwitchError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "cannot {} {}: {}", self.step, self.id, self.source)
    }
}

/// The name and primary group of user `uid`, when the user database has one.
fn user_entry(uid: u32) -> Option<(CString, u32)> {
    let mut buffer = vec![0u8; 16 * 1024];
    // SAFETY: an all-zero passwd is a valid value for getpwuid_r to fill in.
    let mut entry: libc::passwd = unsafe { std::mem::zeroed() };
    let mut found: *mut libc::passwd = std::ptr::null_mut();
    // SAFETY: every pointer is to a live local, the buffer's length is given,
    // and `found` is only read after the call says it points into `entry`.
    let status = unsafe {
        libc::getpwuid_r(
            uid,
            &raw mut entry,
            buffer.as_mut_ptr().cast(),
            buffer.len(),
            &raw mut found,
        )
    };
    if status != 0 || found.is_null() || entry.pw_name.is_null() {
        return None;
    }
    // SAFETY: getpwuid_r succeeded: pw_name is a NUL-terminated string in `buffer`.
    let name = unsafe { CStr::from_ptr(entry.pw_name) }.to_owned();
    Some((name, entry.pw_gid))
}

fn check(result: libc::c_int, step: &'static str, id: u32) -> Result<(), SwitchError> {
    if result == 0 {
        Ok(())
    } else {
        Err(SwitchError {
            step,
            id,
            source: std::io::Error::last_os_error(),
        })
    }
}

/// Become `run_as` for good (groups first: they cannot change once the
/// user is no longer root). Nothing to do when neither is set.
pub(crate) fn switch(run_as: RunAs) -> Result<(), SwitchError> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        // Not root: the option table only let through the ids we already
        // run as (an ini file naming the current user), so nothing changes.
        return Ok(());
    }
    let user = run_as.uid.map(|uid| (uid, user_entry(uid)));
    let gid = run_as.gid.or_else(|| {
        user.as_ref()
            .and_then(|(_, entry)| entry.as_ref().map(|e| e.1))
    });
    if let (Some((uid, None)), None) = (&user, gid) {
        // Keeping root's group and groups would undo half of the switch.
        return Err(SwitchError {
            step: "find the primary group of user",
            id: *uid,
            source: std::io::Error::other("it is not in the user database; give --gid"),
        });
    }
    if let Some(gid) = gid {
        match user.as_ref().and_then(|(_, entry)| entry.as_ref()) {
            // SAFETY: a NUL-terminated name we own, and a group number.
            Some((name, _)) => check(
                unsafe { libc::initgroups(name.as_ptr(), gid) },
                "set the groups of group",
                gid,
            )?,
            // SAFETY: a one-element list we own.
            None => check(
                unsafe { libc::setgroups(1, &raw const gid) },
                "set the groups to group",
                gid,
            )?,
        }
        // SAFETY: plain system calls on numbers.
        check(unsafe { libc::setgid(gid) }, "switch to group", gid)?;
    }
    if let Some((uid, _)) = user {
        // SAFETY: a plain system call on a number.
        check(unsafe { libc::setuid(uid) }, "switch to user", uid)?;
        // SAFETY: reads our own ids. A setuid that left a way back to root is refused.
        if uid != 0 && unsafe { libc::setuid(0) } == 0 {
            return Err(SwitchError {
                step: "drop root for user",
                id: uid,
                source: std::io::Error::other("root could be regained"),
            });
        }
    }
    Ok(())
}

/// After a switch, whether the new user can append to the `--access-log`
/// file its workers will open (an error names the option, file and user).
pub(crate) fn can_write_access_log(run_as: RunAs, config: &Config) -> Result<(), String> {
    if run_as.uid.is_none() && run_as.gid.is_none() {
        return Ok(());
    }
    match config.access_log.as_deref() {
        None | Some("-" | "stderr") => Ok(()),
        Some(path) => std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map(drop)
            .map_err(|error| {
                format!(
                    "--access-log {path}: the --uid/--gid user cannot open it: {error} \
                     (give that user write access, e.g. logrotate's create 0640 USER GROUP)"
                )
            }),
    }
}

#[cfg(test)]
mod tests {
    use super::{switch, user_entry, RunAs};

    #[test]
    fn nothing_to_switch_is_a_success() {
        assert!(switch(RunAs {
            uid: None,
            gid: None
        })
        .is_ok());
    }

    #[test]
    fn root_has_a_name_and_group_zero() {
        let (name, gid) = user_entry(0).expect("root is in the user database");
        assert_eq!(name.to_str(), Ok("root"));
        assert_eq!(gid, 0);
    }
}
