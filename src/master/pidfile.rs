//! `--pidfile`: the master's pid in a file, for init scripts and
//! `kill $(cat app.pid)`.
//!
//! Written once the listeners are bound, atomically (a temporary file in the
//! same folder renamed over the path), and removed when the master ends if
//! it still holds our pid. A file naming a live rwsgi other than us means
//! another server uses it: we refuse to start rather than take it over. A
//! stale one (its process gone, or not an rwsgi) is replaced with a warning.

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::log;

/// The pid file this master wrote; removed on drop if it still names us.
#[derive(Debug)]
pub(crate) struct Pidfile {
    path: PathBuf,
    pid: u32,
}

/// Who a pid file names, as far as taking it over goes.
#[derive(Debug, PartialEq, Eq)]
enum Holder {
    /// No file there.
    Nobody,
    /// This very process (a restart in a container, where pids repeat).
    Us,
    /// A live rwsgi: refuse.
    Live(u32),
    /// A dead process, another program, or no pid at all: replace it.
    Stale(String),
}

fn option_error(message: String) -> Error {
    Error::Config {
        option: "pidfile",
        message,
    }
}

fn held_by(path: &Path, pid: u32) -> Error {
    option_error(format!(
        "--pidfile {} names rwsgi pid {pid}, which is running: another server uses this \
         pid file (stop it, or give another --pidfile)",
        path.display()
    ))
}

/// Refuse if `path` names another live rwsgi; call before binding, so a
/// second server says so instead of failing on its ports.
pub(crate) fn check(path: &Path) -> Result<()> {
    match holder(path)? {
        Holder::Live(pid) => Err(held_by(path, pid)),
        Holder::Nobody | Holder::Us | Holder::Stale(_) => Ok(()),
    }
}

impl Pidfile {
    /// Write our pid to `path` (after `check` passed and the listeners are
    /// bound), refusing it again if another rwsgi took it meanwhile.
    pub(crate) fn create(path: &Path) -> Result<Self> {
        match holder(path)? {
            Holder::Live(pid) => return Err(held_by(path, pid)),
            Holder::Stale(why) => log::warning(&format!(
                "--pidfile {}: replacing a stale pid file ({why})",
                path.display()
            )),
            Holder::Nobody | Holder::Us => {}
        }
        let pid = std::process::id();
        write_atomically(path, pid).map_err(|error| {
            option_error(format!(
                "cannot write --pidfile {}: {error}",
                path.display()
            ))
        })?;
        Ok(Self {
            path: path.to_path_buf(),
            pid,
        })
    }

    /// Remove the file if it still names this process (another server may
    /// have replaced it since; a forked worker never removes it).
    fn remove(&self) {
        if std::process::id() != self.pid {
            return;
        }
        if read_pid(&self.path) == Some(self.pid) {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

impl Drop for Pidfile {
    fn drop(&mut self) {
        self.remove();
    }
}

fn read_pid(path: &Path) -> Option<u32> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

fn holder(path: &Path) -> Result<Holder> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(Holder::Nobody),
        Err(error) => {
            return Err(option_error(format!(
                "cannot read --pidfile {}: {error}",
                path.display()
            )))
        }
    };
    let Ok(pid) = text.trim().parse::<u32>() else {
        return Ok(Holder::Stale(format!("it holds no pid: {:?}", text.trim())));
    };
    if pid == std::process::id() {
        return Ok(Holder::Us);
    }
    Ok(match process_state(pid) {
        Process::Gone => Holder::Stale(format!("pid {pid} is not running")),
        Process::Other => Holder::Stale(format!("pid {pid} is not an rwsgi")),
        Process::Rwsgi => Holder::Live(pid),
    })
}

/// What runs as a pid.
enum Process {
    Gone,
    Rwsgi,
    Other,
}

fn process_state(pid: u32) -> Process {
    let Ok(raw) = i32::try_from(pid) else {
        return Process::Gone;
    };
    if raw <= 0 {
        return Process::Gone;
    }
    // SAFETY: signal 0 only checks that the process exists.
    let exists = unsafe { libc::kill(raw, 0) } == 0
        || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM);
    if !exists || is_zombie(pid) {
        return Process::Gone;
    }
    match std::fs::read(format!("/proc/{pid}/cmdline")) {
        Ok(cmdline) if !contains(&cmdline, b"rwsgi") => Process::Other,
        // Unreadable (another user's, with /proc hidden): it may be a
        // server, so it is not taken over.
        _ => Process::Rwsgi,
    }
}

fn is_zombie(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| {
            let (_, after_name) = stat.rsplit_once(')')?;
            after_name
                .split_ascii_whitespace()
                .next()
                .map(str::to_owned)
        })
        .is_some_and(|state| state == "Z" || state == "X")
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack
        .windows(needle.len())
        .any(|window| window == needle)
}

/// Write `PID\n` to a temporary file beside `path`, mode 0644, then rename
/// it over `path`: a reader sees the old file or the whole new one.
fn write_atomically(path: &Path, pid: u32) -> std::io::Result<()> {
    let name = path
        .file_name()
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidInput, "not a file path"))?;
    let mut temporary_name = std::ffi::OsString::from(".");
    temporary_name.push(name);
    temporary_name.push(format!(".{pid}.tmp"));
    let temporary = path.with_file_name(temporary_name);
    let result = (|| {
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o644)
            .open(&temporary)?;
        // The umask must not narrow it: readers are other users' scripts.
        file.set_permissions(std::fs::Permissions::from_mode(0o644))?;
        file.write_all(format!("{pid}\n").as_bytes())?;
        std::fs::rename(&temporary, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&temporary);
    }
    result
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;
    use std::os::unix::process::CommandExt;
    use std::path::PathBuf;

    use super::{check, holder, Holder, Pidfile};
    use crate::error::Error;

    /// Wait until `child` has exec'd (its command line is no longer the test binary's).
    fn started(child: std::process::Child, first: &str) -> std::process::Child {
        let path = format!("/proc/{}/cmdline", child.id());
        for _ in 0..500 {
            if std::fs::read(&path).is_ok_and(|cmdline| cmdline.starts_with(first.as_bytes())) {
                return child;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        panic!("{first} did not start");
    }

    fn folder(tag: &str) -> PathBuf {
        let path = std::env::temp_dir().join(format!("rwsgi-pidfile-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).expect("folder");
        path
    }

    #[test]
    fn written_with_our_pid_and_removed_on_drop() {
        let folder = folder("write");
        let path = folder.join("app.pid");
        let pidfile = Pidfile::create(&path).expect("written");
        assert_eq!(
            std::fs::read_to_string(&path).expect("read"),
            format!("{}\n", std::process::id())
        );
        let mode = std::fs::metadata(&path)
            .expect("metadata")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o644);
        assert_eq!(
            std::fs::read_dir(&folder).expect("list").count(),
            1,
            "no temporary left"
        );
        assert_eq!(holder(&path).expect("read"), Holder::Us);
        drop(pidfile);
        assert!(!path.exists());
        let _ = std::fs::remove_dir_all(folder);
    }

    #[test]
    fn a_file_replaced_since_is_left_alone() {
        let folder = folder("replaced");
        let path = folder.join("app.pid");
        let pidfile = Pidfile::create(&path).expect("written");
        std::fs::write(&path, "1\n").expect("replace");
        drop(pidfile);
        assert_eq!(std::fs::read_to_string(&path).expect("still there"), "1\n");
        let _ = std::fs::remove_dir_all(folder);
    }

    #[test]
    fn stale_files_are_replaced_and_live_rwsgi_ones_refused() {
        let folder = folder("stale");
        let path = folder.join("app.pid");
        std::fs::write(&path, "garbage").expect("write");
        assert!(matches!(holder(&path).expect("read"), Holder::Stale(_)));
        // A pid that cannot exist (above the kernel's pid_max limit).
        std::fs::write(&path, "4194305\n").expect("write");
        assert!(matches!(holder(&path).expect("read"), Holder::Stale(_)));
        // A live process that is not an rwsgi.
        let mut child = started(
            std::process::Command::new("sleep")
                .arg("30")
                .spawn()
                .expect("sleep"),
            "sleep",
        );
        std::fs::write(&path, format!("{}\n", child.id())).expect("write");
        assert!(matches!(holder(&path).expect("read"), Holder::Stale(_)));
        check(&path).expect("a stale file does not stop us");
        let _ = child.kill();
        let _ = child.wait();
        drop(Pidfile::create(&path).expect("replaced"));
        // A live rwsgi: a process whose command line says so.
        let mut child = started(
            std::process::Command::new("sleep")
                .arg0("rwsgi-test")
                .arg("30")
                .spawn()
                .expect("sleep"),
            "rwsgi-test",
        );
        std::fs::write(&path, format!("{}\n", child.id())).expect("write");
        assert_eq!(holder(&path).expect("read"), Holder::Live(child.id()));
        let error = Pidfile::create(&path).expect_err("refused");
        let message = error.to_string();
        assert!(matches!(
            error,
            Error::Config {
                option: "pidfile",
                ..
            }
        ));
        assert!(message.contains("--pidfile"), "{message}");
        assert!(message.contains(&child.id().to_string()), "{message}");
        assert!(message.contains(&*path.to_string_lossy()), "{message}");
        let _ = child.kill();
        let _ = child.wait();
        let _ = std::fs::remove_dir_all(folder);
    }

    #[test]
    fn an_unwritable_folder_is_an_error_naming_the_option() {
        let error = Pidfile::create(std::path::Path::new("/nonexistent-rwsgi/app.pid"))
            .expect_err("no such folder");
        let message = error.to_string();
        assert!(
            message.starts_with("pidfile: cannot write --pidfile /nonexistent-rwsgi/app.pid"),
            "{message}"
        );
    }
}
