//! From a request's raw path to a file inside a mounted folder, safely.
//! The path is split on `/` before any decoding, each segment is decoded
//! once and refused if it could climb out or name something else than a
//! plain file name: `.` and `..` (also written `%2e%2e`), an encoded `/`,
//! a backslash, a NUL, an empty segment (`//`: an absolute path), a broken
//! escape. What the segments name is then looked up below the folder; the
//! precompressed siblings are that file's own name plus a suffix, so they
//! never see client text again (aiohttp's CVE-2024-23334 came from checking
//! one route and not another).

use std::ffi::OsStr;
use std::fs::{File, Metadata};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// A URL prefix mounted on a folder.
#[derive(Debug)]
pub(crate) struct Folder {
    /// The prefix's segments (`/static/admin` is `["static", "admin"]`; `/` none).
    prefix: Vec<Vec<u8>>,
    pub root: PathBuf,
    /// `root` with its links resolved, for `--static-confine`.
    real_root: Option<PathBuf>,
}

impl Folder {
    /// Mount `root` on `prefix` (as the option table checked it).
    pub(crate) fn new(prefix: &str, root: PathBuf) -> Self {
        let prefix = prefix
            .split('/')
            .filter(|segment| !segment.is_empty())
            .map(|segment| segment.as_bytes().to_vec())
            .collect();
        let real_root = std::fs::canonicalize(&root).ok();
        Self {
            prefix,
            root,
            real_root,
        }
    }

    /// How deep the prefix is: deeper mounts are searched first.
    pub(crate) fn depth(&self) -> usize {
        self.prefix.len()
    }

    /// What `path` (raw, still percent-encoded when `encoded`) names below
    /// this mount.
    pub(crate) fn locate(&self, path: &[u8], encoded: bool) -> Located {
        let Some(rest) = path.strip_prefix(b"/") else {
            return Located::Elsewhere;
        };
        let mut segments = rest.split(|&byte| byte == b'/');
        for expected in &self.prefix {
            match segments.next().map(|segment| decode(segment, encoded)) {
                Some(Ok(segment)) if segment == *expected => {}
                _ => return Located::Elsewhere,
            }
        }
        let mut relative = Vec::with_capacity(path.len());
        let mut ends_with_slash = false;
        let mut any = false;
        let mut segments = segments.peekable();
        while let Some(raw) = segments.next() {
            if raw.is_empty() && segments.peek().is_none() {
                ends_with_slash = true;
                break;
            }
            let Ok(segment) = decode(raw, encoded) else {
                return Located::Refused;
            };
            if !plain_name(&segment) {
                return Located::Refused;
            }
            if any {
                relative.push(b'/');
            }
            relative.extend_from_slice(&segment);
            any = true;
        }
        if !any || ends_with_slash {
            // The mount itself, or a folder: never listed.
            return Located::Folder;
        }
        Located::File(self.root.join(OsStr::from_bytes(&relative)))
    }

    /// Whether `path` (below this mount) really lies inside the folder once
    /// its links are resolved.
    pub(crate) fn contains_real(&self, path: &Path) -> bool {
        let (Some(real_root), Ok(real)) = (&self.real_root, std::fs::canonicalize(path)) else {
            return false;
        };
        real.starts_with(real_root)
    }

    /// Whether an absolute filesystem path (`X-Sendfile`) lies in the folder,
    /// judged on its text (no `..` or `.` components) and then on its links.
    pub(crate) fn holds_path(&self, path: &Path) -> bool {
        use std::path::Component;
        path.is_absolute()
            && path
                .components()
                .all(|part| matches!(part, Component::RootDir | Component::Normal(_)))
            && path.starts_with(&self.root)
            && !path.as_os_str().as_bytes().contains(&0)
    }
}

/// Where a request path leads under one mount.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Located {
    /// Not under this prefix.
    Elsewhere,
    /// Under it, but a segment is unsafe: a 404.
    Refused,
    /// The mount itself or a path ending in `/`: no file.
    Folder,
    /// The file the path names (it may not exist).
    File(PathBuf),
}

/// A segment that names an entry of its folder and nothing more.
fn plain_name(segment: &[u8]) -> bool {
    !(segment.is_empty()
        || segment == b"."
        || segment == b".."
        || segment.iter().any(|&byte| matches!(byte, b'/' | b'\\' | 0)))
}

/// Decode a segment's `%XX` escapes (when the path is still encoded); a
/// broken escape is an error.
fn decode(segment: &[u8], encoded: bool) -> Result<Vec<u8>, ()> {
    if !encoded || !segment.contains(&b'%') {
        return Ok(segment.to_vec());
    }
    let mut out = Vec::with_capacity(segment.len());
    let mut bytes = segment.iter();
    while let Some(&byte) = bytes.next() {
        if byte != b'%' {
            out.push(byte);
            continue;
        }
        let high = bytes.next().and_then(|&digit| hex(digit)).ok_or(())?;
        let low = bytes.next().and_then(|&digit| hex(digit)).ok_or(())?;
        out.push(high << 4 | low);
    }
    Ok(out)
}

fn hex(digit: u8) -> Option<u8> {
    (digit as char).to_digit(16).map(|value| value as u8)
}

/// What is at a path a request names.
pub(crate) enum Entry {
    /// A regular file, open, and its metadata.
    File(File, Metadata),
    /// Nothing, or a folder: not ours to answer.
    Absent,
    /// A fifo, socket or device: never served, a 404.
    Unservable,
}

/// Open `path` if it is a regular file (links followed). A fifo or device
/// is never read: `O_NONBLOCK` keeps a fifo from blocking the open, and the
/// type is checked on the open descriptor, so nothing can be swapped in
/// between.
pub(crate) fn open_regular(path: &Path) -> Entry {
    let Ok(file) = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
    else {
        return Entry::Absent;
    };
    match file.metadata() {
        Ok(metadata) if metadata.is_file() => Entry::File(file, metadata),
        Ok(metadata) if metadata.is_dir() => Entry::Absent,
        Ok(_) => Entry::Unservable,
        Err(_) => Entry::Absent,
    }
}

#[cfg(test)]
mod tests {
    use super::{Folder, Located};
    use std::path::PathBuf;

    fn folder(prefix: &str) -> Folder {
        Folder::new(prefix, PathBuf::from("/srv/static"))
    }

    fn file(path: &str) -> Located {
        Located::File(PathBuf::from(path))
    }

    #[test]
    fn names_files_below_the_prefix_only() {
        let mount = folder("/static");
        assert_eq!(
            mount.locate(b"/static/app.css", true),
            file("/srv/static/app.css")
        );
        assert_eq!(
            mount.locate(b"/static/a/b.js", true),
            file("/srv/static/a/b.js")
        );
        assert_eq!(
            mount.locate(b"/static/a%20b.js", true),
            file("/srv/static/a b.js")
        );
        assert_eq!(mount.locate(b"/st%61tic/x", true), file("/srv/static/x"));
        assert_eq!(mount.locate(b"/staticfoo/x", true), Located::Elsewhere);
        assert_eq!(mount.locate(b"/other/static/x", true), Located::Elsewhere);
        assert_eq!(mount.locate(b"static/x", true), Located::Elsewhere);
        assert_eq!(mount.locate(b"/static", true), Located::Folder);
        assert_eq!(mount.locate(b"/static/", true), Located::Folder);
        assert_eq!(mount.locate(b"/static/sub/", true), Located::Folder);
        let root = folder("/");
        assert_eq!(root.locate(b"/x.txt", true), file("/srv/static/x.txt"));
        assert_eq!(folder("/static/admin").depth(), 2);
    }

    #[test]
    fn refuses_every_way_out() {
        let mount = folder("/static");
        for path in [
            &b"/static/../secret"[..],
            b"/static/%2e%2e/secret",
            b"/static/%2E%2e%2Fsecret",
            b"/static/..%2fsecret",
            b"/static/a%2fb",
            b"/static/a\\b",
            b"/static/a%5cb",
            b"/static/a%00b",
            b"/static//etc/passwd",
            b"/static/./x.css",
            b"/static/%2e/x.css",
            b"/static/a%zz",
            b"/static/a%2",
            b"/static/x/../../secret",
        ] {
            assert_eq!(
                mount.locate(path, true),
                Located::Refused,
                "{}",
                String::from_utf8_lossy(path)
            );
        }
        // A decoded path (a proxy's PATH_INFO) is not decoded twice.
        assert_eq!(
            mount.locate(b"/static/%2e%2e", false),
            file("/srv/static/%2e%2e")
        );
        assert_eq!(mount.locate(b"/static/../x", false), Located::Refused);
    }

    #[test]
    fn sendfile_paths_must_sit_plainly_inside() {
        let mount = folder("/protected");
        assert!(mount.holds_path(std::path::Path::new("/srv/static/a/b.pdf")));
        assert!(!mount.holds_path(std::path::Path::new("/srv/static/../etc/passwd")));
        assert!(!mount.holds_path(std::path::Path::new("/srv/staticx/b.pdf")));
        assert!(!mount.holds_path(std::path::Path::new("relative/b.pdf")));
    }
}
